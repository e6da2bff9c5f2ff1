"""Unsupervised AAE on MNIST with a 2-D Gaussian prior (paper Fig 2a).

    python -m aae_jax.main --config=configs/mnist_gaussian.py --workdir=runs/mnist_gaussian

Variants: ``configs/mnist_gaussian.py:smoke`` (tests).
Measured: see README (results/mnist_gaussian).
"""

from configs import common


def get_config(arg: str = ''):
  c = common.get_config()
  c.prior.name = 'gaussian'
  c.prior.dim = c.model.code_dim = 2
  return common.smoke(c) if arg == 'smoke' else c
