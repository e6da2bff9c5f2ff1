"""Supervised AAE, style vs content, on SVHN (paper Fig 7).

    python -m aae_jax.main --config=configs/svhn_supervised.py --workdir=runs/svhn_supervised

TFDS downloads svhn_cropped (not possible on the project's offline machines; the
tests run this config on generated data of its shape). ``,smoke`` for tests.
"""

from configs import common
from configs import mnist_supervised

ARGS = {}


def get_config(arg: str = ''):
  a = common.parse_arg(arg, **ARGS)
  c = common.svhn(mnist_supervised.supervised(common.base(), style_dim=20), epochs=100)
  common.set_optimizers(c, ('recon', 'disc', 'gen'), 'adam', 1e-4, b1=0.5,
                        decay_epochs=(50, 75), decay_factor=0.1)
  return common.smoke(c) if a.smoke else c
