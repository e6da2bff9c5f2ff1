"""What the SVHN experiments share (paper appendix, recalled in PAPER.md [R])."""

from configs import common


def svhn(c):
  """svhn_cropped (downloaded by TFDS), standardised per dimension; batch norm in
  every autoencoder layer, 20 % dropout on the encoder's input, a linear output
  with Euclidean reconstruction cost."""
  c.data.name = 'svhn_cropped'
  c.data.standardize = True
  c.model.batch_norm = True
  c.model.input_dropout = 0.2
  c.model.input_noise_std = 0.0
  c.model.output_activation = 'linear'
  c.loss.reconstruction = 'squared_error'
  return c


def epochs(c, n: int, examples: int = 63_257):
  """Sets the schedule to ``n`` epochs of the training split (73,257 - 10,000 valid)."""
  steps_per_epoch = examples // c.batch_size
  c.num_train_steps = n * steps_per_epoch
  c.log_every = steps_per_epoch
  c.eval_every = c.checkpoint_every = 10 * steps_per_epoch
  return c


def smoke(c):
  c = common.smoke(c)
  c.data.num_valid = 100
  return c
