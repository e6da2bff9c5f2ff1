"""Semi-supervised classification on SVHN with 1000 labels (paper Table 2).

    python -m aae_jax.main --config=configs/svhn_semisup.py --workdir=runs/svhn_semisup

The recipe as this project reads the paper's appendix: 10-D label, 20-D style, 20 %
input dropout, batch norm in every autoencoder layer, per-dimension
standardisation; rates: reconstruction 1e-4 -> 1e-5 after 250 epochs,
cross-entropy 0.1 -> 0.01, adversarial 0.01 -> 0.001; 1000 epochs (SGD with the
MNIST momenta: 0.9 for reconstruction and cross-entropy, 0.1 adversarial).
The labelled set: 1000 class-balanced training examples drawn with ``seed``.
TFDS downloads svhn_cropped; the tests run this config on generated data of its
shape. ``,smoke`` for tests.
"""

from configs import common

ARGS = {}


def get_config(arg: str = ''):
  a = common.parse_arg(arg, **ARGS)
  c = common.label_aware(common.base(), num_classes=10, style_dim=20, num_labels=1000)
  c = common.svhn(c, epochs=1000)
  decay = dict(decay_epochs=(250,), decay_factor=0.1)
  common.set_optimizers(c, ('recon',), 'sgd', 1e-4, momentum=0.9, **decay)
  common.set_optimizers(c, ('supervised',), 'sgd', 0.1, momentum=0.9, **decay)
  common.set_optimizers(c, ('disc', 'disc_y', 'gen'), 'sgd', 0.01, momentum=0.1, **decay)
  return common.smoke(c) if a.smoke else c
