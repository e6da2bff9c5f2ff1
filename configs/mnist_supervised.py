"""Supervised AAE: disentangling style from content on MNIST (paper section 4, Fig 6/7).

    python -m aae_jax.main --config=configs/mnist_supervised.py --workdir=runs/supervised

The decoder reads the one-hot label and the style z; z alone is matched to a
Gaussian. Figure ``style.png``: each row one style z from the prior, each column
a label. ``,smoke`` for tests.

``:conditional`` also shows the label to the discriminator (real pairs: a prior
sample with the example's label), which penalises styles that depend on the
label; not in the paper (docs/experiments.md: with the unconditional discriminator the
style z still carried the digit after 6 epochs).
"""

from configs import common


ARGS = dict(conditional=False)


def get_config(arg: str = ''):
  a = common.parse_arg(arg, **ARGS)
  c = supervised(common.base(), style_dim=10)
  c.model.label_condition = a.conditional
  return common.smoke(c) if a.smoke else c


def supervised(c, style_dim: int):
  c.model.decoder_input = 'label_z'
  c.prior = common.prior('gaussian', dim=style_dim)
  c.model.code_dim = style_dim
  c.data.num_labels = -1  # every training label
  c.num_train_steps = 3_000  # 6 epochs: the figures settle by then on a 2-core CPU
  c.eval_every = c.checkpoint_every = 1_000
  common.set_optimizers(c, ('recon', 'disc', 'gen'), 'adam', 5e-4, b1=0.5,
                        decay_epochs=(4, 5), decay_factor=0.3)
  return c
