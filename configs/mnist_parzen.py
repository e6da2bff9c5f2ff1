"""The generative AAE of Table 1: 8-D code, Gaussian prior of std 5, Euclidean cost.

    python -m aae_jax.main --config=configs/mnist_parzen.py --workdir=runs/mnist_parzen

The Parzen-window log-likelihood of its samples (paper: 340 +- 2 nats with 10K
samples) is computed by the evaluation of a later issue; this config trains the
model. Variants: ``configs/mnist_parzen.py:smoke`` (tests).
Not yet measured on real data: the Parzen evaluation comes with a later issue.
"""

from configs import common


def get_config(arg: str = ''):
  c = common.get_config()
  c.prior.name = 'gaussian'
  c.prior.std = 5.0
  c.prior.dim = c.model.code_dim = 8
  c.loss.reconstruction = 'squared_error'
  return common.smoke(c) if arg == 'smoke' else c
