"""Supervised AAE, style vs content, on SVHN (paper Fig 7).

    python -m aae_jax.main --config=configs/svhn_supervised.py --workdir=runs/svhn_supervised

TFDS downloads svhn_cropped (not possible on the project's offline machines; the
tests run this config on generated data of its shape). ``,smoke`` for tests.
"""

from configs import common
from configs import mnist_supervised
from configs import svhn


def get_config(arg: str = ''):
  _, smoke = common.parse_arg(arg, ('',), '')
  c = svhn.svhn(mnist_supervised.supervised(common.get_config(), style_dim=20, smoke=False))
  c = svhn.epochs(c, 100)
  decay = dict(b1=0.5, decay_epochs=(50, 75), decay_factor=0.1)
  for phase in ('recon', 'disc', 'gen'):
    c.optim[phase] = common.optimizer('adam', 1e-4, **decay)
  return svhn.smoke(c) if smoke else c
