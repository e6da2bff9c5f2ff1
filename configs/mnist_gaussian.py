"""Unsupervised AAE on MNIST with a 2-D Gaussian prior (paper Fig 2a).

    python -m aae_jax.main --config=configs/mnist_gaussian.py --workdir=runs/mnist_gaussian

Variants: ``:epochs=10`` trains 10 epochs with the two rate decays at the same
fractions of the run (epochs 5 and 8): the precision parity runs
(docs/performance.md); ``configs/mnist_gaussian.py:smoke`` (tests).
Measured (results/mnist_gaussian, 2-core CPU): after 15,000 steps (30 epochs, 958 s at
15.7 steps/s sharing the cores with another run) the test codes' mean is (-0.039, -0.015)
and their covariance [[0.963, 0.017], [0.017, 0.954]]; reconstruction NLL 150.9 nats.
"""

from configs import common


ARGS = dict(epochs=('30', '10'))


def get_config(arg: str = ''):
  a = common.parse_arg(arg, **ARGS)
  c = common.base()
  epochs = int(a.epochs)  # base(): 30 epochs, decays at 15 and 25
  c.num_train_steps = epochs * common.STEPS_PER_EPOCH
  for phase in common.PHASES:
    c.optim[phase].decay_epochs = common.scaled_decays(c.optim[phase].decay_epochs, 30, epochs)
  c.prior = common.prior('gaussian', dim=2)
  c.model.code_dim = 2
  return common.smoke(c) if a.smoke else c
