"""Unsupervised AAE on MNIST with a mixture of 10 2-D Gaussians as prior (paper Fig 2b).

    python -m aae_jax.main --config=configs/mnist_mog.py --workdir=runs/mnist_mog

Variants: ``configs/mnist_mog.py:smoke`` (tests).
Measured: see README.
"""

from configs import common


def get_config(arg: str = ''):
  c = common.get_config()
  c.prior.name = 'mog'
  c.prior.dim = c.model.code_dim = 2
  return common.smoke(c) if arg == 'smoke' else c
