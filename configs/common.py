"""Defaults shared by every experiment, and the helpers experiment files build on.

Every ``configs/<name>.py`` other than this one is an experiment: it declares
``ARGS`` (the words its ``--config=configs/<name>.py:<arg>`` argument takes, see
``parse_arg``) and ``get_config(arg)``. The test suite runs each one.
"""

import ml_collections

from aae_jax import priors


def optimizer(name='adam', lr=1e-3, *, momentum=0.9, dampening=0.0, b1=0.9, b2=0.999,
              decay_epochs=(), decay_factor=0.1, clip=0.0):
  """One phase's optimizer: 'sgd' (with momentum) or 'adam', step-decayed by epoch.

  ``dampening`` (sgd only): the momentum trace adds ``(1 - dampening) * g``
  (aae_jax/optim.py, ``dampened_trace``); 0 is optax's and PyTorch's default, and
  ``dampening=momentum`` was Torch7's, whose steady step is ``lr * g`` instead of
  ``lr * g / (1 - momentum)``."""
  return ml_collections.ConfigDict(dict(
      name=name, lr=lr, momentum=momentum, dampening=dampening, b1=b1, b2=b2,
      decay_epochs=tuple(decay_epochs), decay_factor=decay_factor, clip=clip))


def base():
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
  # A rerun on a workdir must train the experiment its config.json records (a
  # change of data, labels, seed, model, prior or optimizers is refused) unless
  # allow_config_change; with every checkpoint damaged it stops rather than
  # start again from step 0, unless allow_restart (aae_jax/workdir.py).
  c.allow_config_change = False
  c.allow_restart = False
  # > 0: a jax.profiler trace of this many steps (from the second chunk, once the
  # step has compiled) in <workdir>/profile, for TensorBoard's profile plugin.
  c.profile_steps = 0
  # Log each phase's gradient norm (train/grad_norm_<phase>, before clipping):
  # one more pass over the gradients per phase, about 8 % of a step on a CPU.
  c.log_grad_norms = False

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

  # The chosen prior's name and its own fields only (see prior() below): a field
  # of another prior is refused, on the command line too.
  c.prior = prior('gaussian', dim=2)

  c.model = ml_collections.ConfigDict(dict(
      encoder='deterministic',  # or 'gaussian', 'universal'
      hidden=(1000, 1000), code_dim=2,
      noise_dim=0,  # eta's size for the universal encoder
      input_noise_std=0.0,  # on the encoder's input, training only
      disc_hidden=(1000, 1000), disc_input_noise_std=0.0,
      init_std=0.01,  # N(0, 0.01^2) weights as in the paper; 0 for LeCun normal
      # Matmul inputs in 'bfloat16' (float32 accumulation, parameters, optimizer
      # states, losses and metrics), or all 'float32'; 'auto' picks bfloat16 where
      # the hardware runs it faster (GPU, TPU, CPUs with AMX or AVX-512 BF16); a
      # run records its pick and keeps it on resume. See aae_jax/precision.py.
      precision='auto',
      output_activation='sigmoid',
      batch_norm=False,  # in every encoder / decoder hidden layer (SVHN recipe)
      input_dropout=0.0,  # on the encoder's input, training only
      # Label-aware models (see aae_jax/model.py, AAE):
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
      # 'adversarial' (the AAE); 'vae': the VAE baseline with the same networks
      # and prior (needs encoder='gaussian'), one phase using optim.recon; 'none':
      # q(y|x) on the labels alone, the semi-supervised table's NN baseline
      # (aae_jax/phases.py, PHASE_LISTS).
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
      # 'sum': the per-example cost summed over pixels (nats); 'mean': its per-pixel
      # mean, 1/784 of the gradient on MNIST (what the paper's SGD rates fit).
      recon_reduction='sum',
      head_threshold=0.0, head_weight=0.0))  # dimensionality reduction's head cost
  # The CPU-scale unsupervised recipe: one Adam per phase at the same rate, so
  # neither reconstruction nor regularisation dominates the encoder, and step
  # decay (as in the paper's SGD schedules) to let the adversarial game settle.
  # Without the decay the codes' moments kept oscillating by +-0.3 std.
  # disc_y is used with model.num_classes, supervised with data.num_labels.
  c.optim = ml_collections.ConfigDict()
  set_optimizers(c, PHASES, 'adam', 5e-4, b1=0.5, decay_epochs=(15, 25), decay_factor=0.1)
  return c


PHASES = ('recon', 'disc', 'gen', 'disc_y', 'supervised')  # the fields of config.optim
STEPS_PER_EPOCH = 500  # MNIST's 50,000 training examples at batch 100


def scaled_decays(decays, default_epochs: int, epochs: int) -> tuple[int, ...]:
  """Rate-decay epochs at the same fractions of an ``epochs``-long run as ``decays``
  are of a ``default_epochs``-long one (rounded down): an ``epochs=N`` choice's schedule."""
  return tuple(d * epochs // default_epochs for d in decays)


def eval_schedule(c, epochs: int, default_epochs: int = 10):
  """Evals for an ``epochs``-long MNIST run: every 2 epochs at the CPU-scale default
  length, every epoch up to 100 (the learning curve against the paper's points),
  every 5 beyond (the paper's schedules); checkpoints at least every 5 epochs."""
  if epochs == default_epochs:
    c.eval_every = c.checkpoint_every = 2 * STEPS_PER_EPOCH
  elif epochs <= 100:
    c.eval_every, c.checkpoint_every = STEPS_PER_EPOCH, 5 * STEPS_PER_EPOCH
  else:
    c.eval_every = c.checkpoint_every = 5 * STEPS_PER_EPOCH
  return c


def set_optimizers(c, phases, name='adam', lr=1e-3, **options):
  """Gives each phase in ``phases`` the same optimizer (see ``optimizer``)."""
  for phase in phases:
    c.optim[phase] = optimizer(name, lr, **options)
  return c


PAPER_DECAY_EPOCHS = (50, 1000)  # the appendix: every rate / 10 after epochs 50 and 1000


def paper_sgd(c, phases=PHASES, decay_epochs=PAPER_DECAY_EPOCHS, adversarial_clip=5.0,
              recon_clip=100.0, torch7=False):
  """The appendix's optimizers as this project reads them: SGD with momentum 0.9
  for reconstruction (rate 0.01) and cross-entropy (0.1), momentum 0.1 for both
  adversarial players (0.1); each rate / 10 at ``decay_epochs``; weights N(0, 0.01),
  no batch norm; the reconstruction cost summed over pixels (nats per example).

  One departure, measured (docs/paper_recipe.md): gradients are clipped to a global
  norm, the adversarial phases' at ``adversarial_clip`` (below the generator's usual
  6-8, so it acts every step) and reconstruction's at ``recon_clip`` (its usual norm
  is 20-45: it caps spikes only). Without the first the z discriminator's phase
  turned non-finite at step 134 (100 labels, seed 0); without the second 3 of 6 runs
  (100 labels seed 2, 1000 labels seeds 1 and 2) turned non-finite at steps 100-242.
  With the cost averaged over pixels instead (``loss.recon_reduction='mean'``) nothing
  diverges but reconstruction stalls near 530 nats for 4 epochs and the 100-label
  error was 22.5 % after 50 epochs.

  ``torch7``: momentum as Torch7's ``optim.sgd`` (and PyTorch's ``SGD``) define it
  with their dampening set to the momentum, Torch7's default: each phase's
  ``dampening`` is its momentum, so a steady gradient g moves the weights by
  ``lr * g`` rather than ``lr * g / (1 - momentum)`` (10x less for reconstruction and
  cross-entropy). The rates as stated may assume either convention; the paper does not
  say (docs/paper_recipe.md)."""
  decay = dict(decay_epochs=decay_epochs, decay_factor=0.1)
  rates = dict(recon=(0.01, 0.9, recon_clip), supervised=(0.1, 0.9, 0.0),
               disc=(0.1, 0.1, adversarial_clip), disc_y=(0.1, 0.1, adversarial_clip),
               gen=(0.1, 0.1, adversarial_clip))
  for phase in phases:
    lr, momentum, clip = rates[phase]
    set_optimizers(c, (phase,), 'sgd', lr, momentum=momentum, clip=clip,
                   dampening=momentum if torch7 else 0.0, **decay)
  c.loss.recon_reduction = 'sum'
  c.model.init_std = 0.01
  return c


def prior(name: str, **fields) -> ml_collections.ConfigDict:
  """``config.prior`` for the prior ``name`` (aae_jax/priors.py): its name and its
  own fields, at their defaults unless given; e.g. ``prior('gaussian', dim=8, std=5.0)``."""
  return ml_collections.ConfigDict(priors.default_config(name, **fields))


# The paper-recipe flags every config with ``,paper`` takes: ``torch7`` reads its
# momenta as Torch7 did (``paper_sgd``).
PAPER_FLAGS = dict(paper=False, torch7=False)
# A flag that only means something beside another: parse_arg refuses it alone.
FLAG_REQUIRES = dict(torch7='paper')


def parse_arg(arg: str, **spec) -> ml_collections.ConfigDict:
  """The words of a config argument (``configs/<name>.py:<arg>``), checked against ``spec``.

  ``spec`` maps each accepted key to its default. A tuple lists a key's choices,
  the first being the default; a bool is a flag, set by its bare name. Words are
  separated by commas: ``key=value``, a flag's name, or a bare value of the first
  key with choices (``1000,paper`` = ``labels=1000,paper``). Every config also
  takes ``smoke`` (the test-sized run). An unknown word or value is a ValueError
  naming what the argument accepts, so a typo never runs the full experiment; so is
  a flag of ``FLAG_REQUIRES`` without the flag it modifies (``torch7`` alone).
  """
  spec = {**spec, 'smoke': False}
  choice_keys = [k for k, v in spec.items() if isinstance(v, tuple)]
  out = {k: (v[0] if isinstance(v, tuple) else v) for k, v in spec.items()}
  accepted = ', '.join([f'{k}={"|".join(spec[k])}' for k in choice_keys] +
                       [k for k in spec if k not in choice_keys])

  def fail(problem):
    raise ValueError(f'config argument {arg!r}: {problem}; it accepts {accepted} '
                     '(comma-separated; a bare value sets the first key).')

  for word in (w.strip() for w in arg.split(',')):
    if not word:
      continue
    key, _, value = word.partition('=')
    if not value:
      if key in spec and not isinstance(spec[key], tuple):
        out[key] = True
        continue
      if not choice_keys:
        fail(f'unknown word {word!r}')
      key, value = choice_keys[0], word
    if key not in spec:
      fail(f'unknown key {key!r}')
    if isinstance(spec[key], tuple):
      if value not in spec[key]:
        fail(f'{key}={value!r} is not one of its choices')
      out[key] = value
    elif value.lower() in ('true', 'false'):
      out[key] = value.lower() == 'true'
    else:
      fail(f'{key} is a flag: give it alone or as {key}=true|false')
  for key, needed in FLAG_REQUIRES.items():
    if out.get(key) and not out.get(needed):
      fail(f'{key!r} modifies {needed!r}; add it ({needed},{key})')
  return ml_collections.ConfigDict(out)


def label_aware(c, *, num_classes: int, style_dim: int, num_labels: int):
  """The semi-supervised / clustering AAE (paper Fig 8): an encoder trunk with a
  softmax q(y|x) head and a linear style head z; a categorical discriminator on
  y and a Gaussian one on z; the decoder reads [y, z]. With ``num_labels`` a
  cross-entropy phase trains q(y|x) on a labelled mini-batch each step."""
  c.model.num_classes = num_classes
  c.model.decoder_input = 'y_z'
  # Without noise on its input the categorical discriminator wins (tells soft or
  # collapsed q(y|x) from one-hot samples) and its gradient stops helping the
  # encoder; see docs/clustering.md.
  c.model.disc_y_input_noise_std = 0.3
  c.model.code_dim = style_dim
  c.prior = prior('gaussian', dim=style_dim)
  c.data.num_labels = num_labels
  return c


def svhn(c, epochs: int, examples: int = 63_257):
  """The SVHN recipe: svhn_cropped (downloaded by TFDS), standardised per
  dimension; batch norm in every autoencoder layer, 20 % dropout on the encoder's
  input, a linear output with Euclidean reconstruction cost; ``epochs`` of the
  training split (73,257 - 10,000 valid), logged every epoch, evaluated every 10."""
  c.data.name = 'svhn_cropped'
  c.data.standardize = True
  c.model.batch_norm = True
  c.model.input_dropout = 0.2
  c.model.input_noise_std = 0.0
  c.model.output_activation = 'linear'
  c.loss.reconstruction = 'squared_error'
  steps_per_epoch = examples // c.batch_size
  c.num_train_steps = epochs * steps_per_epoch
  c.log_every = steps_per_epoch
  c.eval_every = c.checkpoint_every = 10 * steps_per_epoch
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
