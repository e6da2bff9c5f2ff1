"""The NN baseline of Table 2: the semi-supervised trunk trained on the labels alone.

    python -m aae_jax.main --config=configs/mnist_nn_baseline.py:100 --workdir=runs/nn_100

The argument and the schedule words are those of ``configs/mnist_semisup.py``
(``100``, ``1000`` or ``all`` labels; ``,epochs=50``): the same encoder (2x1000
ReLU trunk, softmax head, 0.3 input noise), the same labelled set for a seed, the
same optimizer, rate schedule, parameter average and number of steps, but one
phase only, cross-entropy of q(y|x) on a labelled mini-batch
(``model.regularizer='none'``): no reconstruction, no discriminators. The gap to
the semi-supervised row is what the autoencoder and the adversarial phases add.
``eval/valid_error`` selects the eval, ``eval/test_error`` is reported.

Measured (results/mnist_nn_baseline_100_50ep*, ``:100,epochs=50``, seeds 0-2, one run
at a time on a 2-core CPU, partly shared with test runs): 21.97 +- 2.40 % test error
(22.43 / 24.11 / 19.37 % at the epoch validation selects, 31 / 46 / 19), 5.6-7.4 min of
training each at 56-75 steps/s; the paper: 25.80 %. Seed 0 at ``:1000,epochs=50``: 6.02 %
(epoch 38; 5.6 min alone at 74.8 steps/s; paper 8.73 %), seed 1: 6.08 % (epoch 29; 11.6
min at 36.0 steps/s beside another run and the tests), seed 2: 5.94 % (epoch 43; 8.9 min
at 46.8 steps/s beside another run): 6.01 +- 0.07 % over the three; at ``:all,epochs=50``: 1.12 %
(epoch 46; 8.3 min at 50.3 steps/s beside another run; paper 1.25 %), seed 1: 1.07 %
(epoch 43; 10.3 min at 40.3 steps/s beside another run and the tests), seed 2: 1.09 %
(epoch 28; 8.7 min at 47.9 steps/s beside another run): 1.09 +- 0.03 % over the three.
"""

from configs import common
from configs import mnist_semisup

ARGS = {k: v for k, v in mnist_semisup.ARGS.items() if k not in common.PAPER_FLAGS}


def get_config(arg: str = '1000'):
  a = common.parse_arg(arg, **ARGS)
  c = mnist_semisup.get_config(f'{a.labels},epochs={a.epochs}')
  c.model.regularizer = 'none'
  return common.smoke(c) if a.smoke else c
