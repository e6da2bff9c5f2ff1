"""The generative AAE of Table 1: 8-D code, Gaussian prior of std 5, Euclidean cost.

    python -m aae_jax.main --config=configs/mnist_parzen.py --workdir=runs/mnist_parzen

Every eval reports the Parzen-window log-likelihood of 10,000 decoded prior
samples on the test set (``eval/parzen_ll`` +- ``eval/parzen_ll_se``, kernel width
``eval/parzen_sigma`` picked on 1,000 validation images; paper: 340 +- 2 nats),
their FID to the test set (``eval/fid``) and denoising PSNRs. The VAE baseline
of the same networks and prior: ``configs/mnist_vae.py:parzen``.
``:epochs=100`` trains 100 epochs instead of 30, the two rate decays scaled with
the run (at half and five sixths of it, as 15 and 25 of 30); ``:smoke`` for tests.
Measured (results/mnist_parzen, 2-core CPU shared with other runs): after 30 epochs
Parzen log-likelihood 315.1 +- 1.7 nats (sigma 0.167), FID 11.7; 1398 s of training.
``:epochs=100``, seed 0 (results/mnist_parzen_100ep, beside one other training): 323.3
+- 1.7 nats at the best validation eval (epoch 90) and after epoch 100 (FID 7.8); flat
from epoch 55 on (320.6-323.3 nats); 77.9 min of training (10.7 steps/s). Seed 1
(results/mnist_parzen_100ep_seed1, sharing the cores for most of its run): 325.6 +- 1.7
nats at the best validation eval (epoch 70), 328.1 after epoch 100 (FID 8.2), within
325-328 from epoch 55 on; 117.2 min of training (7.1 steps/s; 12.0-12.6 alone). Seed 2
(results/mnist_parzen_100ep_seed2, alone on a slower 2-core CPU without AVX-512): 324.2
+- 1.7 nats at the best validation eval (epoch 90), 323.5 after epoch 100 (FID 6.8),
within 322.2-324.2 from epoch 55 on; 117.9 min of training (7.1 steps/s). Three seeds:
324.4 +- 1.2 nats, 15.6 below the paper's 340.

``:paper`` (with ``epochs=100``): the paper's SGD as the semi-supervised model states it
(``common.paper_sgd`` on the reconstruction and the two adversarial phases: momentum 0.9
and rate 0.01 for the summed Euclidean cost, 0.1 and 0.1 for the players, gradients
clipped at norm 5 (players) and 100 (reconstruction), every rate / 10 after epoch 50),
N(0, 0.01) weights; ``:paper,torch7`` with Torch7's momentum convention
(``common.paper_sgd``): 320.7 nats at ``epochs=100``, seed 0 (bfloat16;
results/mnist_parzen_paper_torch7_100ep), against 302.7 for ``:paper`` on that seed.
"""

from configs import common


ARGS = dict(epochs=('30', '100'), **common.PAPER_FLAGS)


def get_config(arg: str = ''):
  a = common.parse_arg(arg, **ARGS)
  c = common.base()
  epochs = int(a.epochs)  # base(): 30 epochs, decays at 15 and 25
  c.num_train_steps = epochs * common.STEPS_PER_EPOCH
  if a.paper:
    common.paper_sgd(c, ('recon', 'disc', 'gen'), torch7=a.torch7)
  else:
    for phase in common.PHASES:
      c.optim[phase].decay_epochs = common.scaled_decays(c.optim[phase].decay_epochs, 30,
                                                         epochs)
  c.prior = common.prior('gaussian', dim=8, std=5.0)
  c.model.code_dim = 8
  c.loss.reconstruction = 'squared_error'
  c.evaluation.parzen = c.evaluation.fid = True
  return common.smoke(c) if a.smoke else c
