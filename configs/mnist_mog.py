"""Unsupervised AAE on MNIST with a mixture of 10 2-D Gaussians as prior (paper Fig 2b).

    python -m aae_jax.main --config=configs/mnist_mog.py --workdir=runs/mnist_mog

Variants: ``configs/mnist_mog.py:smoke`` (tests).
Measured (results/mnist_mog, 2-core CPU): after 15,000 steps (30 epochs, 937 s at
16.0 steps/s sharing the cores) the test codes follow the ten arms; their mean is within
0.14 prior std and their covariance within 11 % of the prior's; reconstruction NLL 147.4.
"""

from configs import common


ARGS = {}


def get_config(arg: str = ''):
  a = common.parse_arg(arg, **ARGS)
  c = common.base()
  c.prior = common.prior('mog')
  c.model.code_dim = 2
  return common.smoke(c) if a.smoke else c
