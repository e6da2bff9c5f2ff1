"""Label information in the adversarial regularisation: mixture of 10 Gaussians
(paper section 3, Fig 3).

    python -m aae_jax.main --config=configs/mnist_labeled_mog.py --workdir=runs/labeled_mog

The discriminator also sees a one-hot label with an 11th "unlabelled" class. The
10,000 labelled training examples (class-balanced, drawn with ``seed``) are
matched to their class's mixture component, the other 40,000 to the whole
mixture. ``eval/test_component_accuracy``: the share of test codes whose most
likely component is their own class. ``,smoke`` for tests.
"""

from configs import common


ARGS = {}


def get_config(arg: str = ''):
  a = common.parse_arg(arg, **ARGS)
  return labeled(common.base(), 'mog', a.smoke)


def labeled(c, prior: str, smoke: bool):
  c.prior = common.prior(prior)
  c.model.code_dim = 2
  c.model.label_condition = True
  c.data.num_labels = 10_000
  c.num_train_steps = 5_000  # 10 epochs
  c.eval_every = c.checkpoint_every = 1_000
  common.set_optimizers(c, ('recon', 'disc', 'gen'), 'adam', 5e-4, b1=0.5,
                        decay_epochs=(6, 8), decay_factor=0.3)
  return common.smoke(c) if smoke else c
