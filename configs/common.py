"""Defaults shared by every experiment; experiment files override them."""

import ml_collections


def optimizer(name='adam', lr=1e-3, *, momentum=0.9, b1=0.9, b2=0.999,
              decay_epochs=(), decay_factor=0.1, clip=0.0):
  """One phase's optimizer: 'sgd' (with momentum) or 'adam', step-decayed by epoch."""
  return ml_collections.ConfigDict(dict(
      name=name, lr=lr, momentum=momentum, b1=b1, b2=b2,
      decay_epochs=tuple(decay_epochs), decay_factor=decay_factor, clip=clip))


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 100
  c.num_train_steps = 15_000  # 30 epochs of 50,000 at batch 100
  c.steps_per_dispatch = 100  # steps per device round trip (lax.scan)
  c.log_every = 500
  c.eval_every = 2_500
  c.checkpoint_every = 2_500
  c.checkpoints_to_keep = 3
  c.eval_batch_size = 1_000
  # > 0: evaluate (and draw figures from) an exponential moving average of the
  # parameters with this decay per step; the training itself is unchanged.
  c.ema_decay = 0.0

  # manual_dir: folder holding <name>/ with the official files; '' means
  # $AAE_DATA_DIR, and without it TFDS downloads. cache_dir: where prepared
  # datasets go ('' means $TFDS_DATA_DIR or ~/tensorflow_datasets).
  c.data = ml_collections.ConfigDict(dict(
      name='mnist', manual_dir='', cache_dir='', num_valid=10_000,
      verify_checksums=True,
      # Labels training may use: 0 none, -1 all, n a class-balanced set of n
      # training examples drawn with `seed` (never from valid or test).
      num_labels=0,
      standardize=False,  # per-dimension standardisation (SVHN recipe)
      # >= 0: leave this class out of train and valid (anomaly detection); the
      # test split keeps it and scores it against the other classes.
      exclude_class=-1))
  # backend: 'shard_map' or 'pmap'. Multi-process (one process per host, see
  # aae_jax/distributed.py): distributed=True or AAE_DISTRIBUTED=1; the other
  # fields may stay unset ('', 0, -1) where JAX detects them (TPU VMs, SLURM).
  c.parallel = ml_collections.ConfigDict(dict(
      backend='shard_map', distributed=False, coordinator_address='',
      num_processes=0, process_id=-1))

  # Every prior's fields live here; each prior reads its own (see priors.py).
  c.prior = ml_collections.ConfigDict(dict(
      name='gaussian', dim=2, std=1.0,  # gaussian
      low=-1.0, high=1.0,  # uniform
      num_components=10, radius=4.0, radial_std=1.0, tangential_std=0.25,  # mog
      scale=3.0, noise_std=0.1))  # swiss_roll (num_components too)

  c.model = ml_collections.ConfigDict(dict(
      encoder='deterministic',  # or 'gaussian', 'universal'
      hidden=(1000, 1000), code_dim=2,
      noise_dim=0,  # eta's size for the universal encoder
      input_noise_std=0.0,  # on the encoder's input, training only
      disc_hidden=(1000, 1000), disc_input_noise_std=0.0,
      init_std=0.01,  # N(0, 0.01^2) weights as in the paper; 0 for LeCun normal
      # Matmul inputs in 'bfloat16' (float32 accumulation, parameters, optimizer
      # states, losses and metrics), or all 'float32'; see aae_jax/precision.py.
      precision='float32',
      output_activation='sigmoid',
      batch_norm=False,  # in every encoder / decoder hidden layer (SVHN recipe)
      input_dropout=0.0,  # on the encoder's input, training only
      # Label-aware models (see aae_jax/phases.py, AAE):
      num_classes=0,  # > 0: a softmax head q(y|x) with this many categories
      disc_y=True,  # with num_classes: a categorical discriminator on q(y|x)
      disc_y_input_noise_std=0.0,
      # > 0: that noise keeps its std until step disc_y_noise_anneal_start, then
      # falls linearly to 0 over disc_y_noise_anneal_steps steps.
      disc_y_noise_anneal_steps=0, disc_y_noise_anneal_start=0,
      # The z discriminator also sees stop_gradient(q(y|x)) (real pairs: a prior
      # sample with the same q), so z must not depend on the category.
      disc_z_sees_y=False,
      decoder_input='z',  # 'z', 'y_z', 'label_z' or 'heads'
      label_condition=False,  # the z discriminator also sees the label (E2)
      heads_init_std=1.0,  # cluster heads W_c (decoder_input='heads')
      # 'adversarial' (the AAE) or 'vae': the VAE baseline with the same
      # networks and prior (needs encoder='gaussian'), one phase using optim.recon.
      regularizer='adversarial'))
  # Extra evaluations (aae_jax/evaluate.py), at every eval:
  # parzen: Parzen-window log-likelihood of num_samples decoded prior samples
  #   (kernel width picked on parzen_valid validation images, Table 1's protocol);
  # fid: Frechet distance of num_samples samples to the test split in the
  #   features of a small classifier trained once and cached in fid_cache_dir
  #   ('' means $AAE_CACHE_DIR or ~/.cache/aae_jax);
  # denoise: PSNR of reconstructions of noisy test images (Gaussian noise of
  #   noise_std, clipped; salt-and-pepper on a salt_pepper share of pixels).
  c.evaluation = ml_collections.ConfigDict(dict(
      parzen=False, fid=False, num_samples=10_000, parzen_valid=1_000,
      fid_cache_dir='', fid_epochs=5,
      denoise=True, noise_std=0.5, salt_pepper=0.2))
  c.loss = ml_collections.ConfigDict(dict(
      reconstruction='bernoulli',
      head_threshold=0.0, head_weight=0.0))  # dimensionality reduction's head cost
  # The CPU-scale unsupervised recipe: one Adam per phase at the same rate, so
  # neither reconstruction nor regularisation dominates the encoder, and step
  # decay (as in the paper's SGD schedules) to let the adversarial game settle.
  # Without the decay the codes' moments kept oscillating by +-0.3 std.
  recipe = dict(b1=0.5, decay_epochs=(15, 25), decay_factor=0.1)
  c.optim = ml_collections.ConfigDict(dict(
      recon=optimizer('adam', 5e-4, **recipe),
      disc=optimizer('adam', 5e-4, **recipe),
      gen=optimizer('adam', 5e-4, **recipe),
      disc_y=optimizer('adam', 5e-4, **recipe),  # used with model.num_classes
      supervised=optimizer('adam', 5e-4, **recipe)))  # used with data.num_labels
  return c


def parse_arg(arg: str, choices: tuple[str, ...], default: str) -> tuple[str, bool]:
  """Splits a config argument such as ``1000`` or ``1000,smoke`` into (choice, smoke)."""
  parts = [p for p in arg.split(',') if p]
  smoke_run = 'smoke' in parts
  rest = [p for p in parts if p != 'smoke']
  choice = rest[0] if rest else default
  if len(rest) > 1 or choice not in choices:
    raise ValueError(f'config argument {arg!r}: expected one of {", ".join(choices)}, '
                     'optionally followed by ",smoke"')
  return choice, smoke_run


def label_aware(c, *, num_classes: int, style_dim: int, num_labels: int):
  """The semi-supervised / clustering AAE (paper Fig 8): an encoder trunk with a
  softmax q(y|x) head and a linear style head z; a categorical discriminator on
  y and a Gaussian one on z; the decoder reads [y, z]. With ``num_labels`` a
  cross-entropy phase trains q(y|x) on a labelled mini-batch each step."""
  c.model.num_classes = num_classes
  c.model.decoder_input = 'y_z'
  # Without noise on its input the categorical discriminator wins (tells soft or
  # collapsed q(y|x) from one-hot samples) and its gradient stops helping the
  # encoder; see README, "Clustering: why q(y|x) did not become one-hot".
  c.model.disc_y_input_noise_std = 0.3
  c.model.code_dim = c.prior.dim = style_dim
  c.prior.name = 'gaussian'
  c.data.num_labels = num_labels
  return c


def smoke(c):
  """Shrinks a config to a few seconds: tiny networks, 4 steps, tiny splits."""
  if c.data.num_labels > 0:
    c.data.num_labels = 100
  c.batch_size = 20
  c.num_train_steps = 4
  c.steps_per_dispatch = 2
  c.log_every = c.eval_every = c.checkpoint_every = 2
  c.eval_batch_size = 50
  c.data.num_valid = 100
  c.model.hidden = (32, 32)
  c.model.disc_hidden = (32, 32)
  c.evaluation.num_samples = 200
  c.evaluation.parzen_valid = 50
  c.evaluation.fid_epochs = 1
  return c
