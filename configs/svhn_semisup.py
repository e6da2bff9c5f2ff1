"""Semi-supervised classification on SVHN with 1000 labels (paper Table 2).

    python -m aae_jax.main --config=configs/svhn_semisup.py --workdir=runs/svhn_semisup

The recipe PAPER.md recalls from the appendix [R]: 10-D label, 20-D style, 20 %
input dropout, batch norm in every autoencoder layer, per-dimension
standardisation; rates: reconstruction 1e-4 -> 1e-5 after 250 epochs,
cross-entropy 0.1 -> 0.01, adversarial 0.01 -> 0.001; 1000 epochs (SGD with the
MNIST momenta: 0.9 for reconstruction and cross-entropy, 0.1 adversarial).
The labelled set: 1000 class-balanced training examples drawn with ``seed``.
TFDS downloads svhn_cropped; the tests run this config on generated data of its
shape. ``,smoke`` for tests.
"""

from configs import common
from configs import svhn


def get_config(arg: str = ''):
  _, smoke = common.parse_arg(arg, ('',), '')
  c = common.label_aware(common.get_config(), num_classes=10, style_dim=20, num_labels=1000)
  c = svhn.epochs(svhn.svhn(c), 1000)
  decay = dict(decay_epochs=(250,), decay_factor=0.1)
  c.optim.recon = common.optimizer('sgd', 1e-4, momentum=0.9, **decay)
  c.optim.supervised = common.optimizer('sgd', 0.1, momentum=0.9, **decay)
  for phase in ('disc', 'disc_y', 'gen'):
    c.optim[phase] = common.optimizer('sgd', 0.01, momentum=0.1, **decay)
  return svhn.smoke(c) if smoke else c
