"""The training phases of an adversarial autoencoder, as data.

A ``Phase`` names the parameter sub-trees it owns, an objective and its own
optax transform. The train step (``train.train_step``) runs the phases of a
config in order, each differentiating only what it owns against the parameters
that earlier phases of the same step have already updated. An experiment is a
tuple of phases; adding a phase or a loss term happens here, in one place.

Objectives have the signature ``objective(params, batch, key) -> (loss, metrics)``
where ``params`` maps module names to parameters, ``batch`` holds this device's
``x`` (n, D), ``label`` (n,), ``position`` (n,) (each example's place in the
global batch, which keys its noise) and ``step`` (the step number, for
schedules such as the annealed D_y noise), and ``key`` is the phase's PRNG key.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import optax

from aae_jax import errors
from aae_jax import losses
from aae_jax import models
from aae_jax import optim
from aae_jax import priors

Params = dict[str, Any]
Objective = Callable[[Params, dict, chex.PRNGKey], tuple[chex.Array, dict]]
RECONSTRUCTION_LOSSES = ('bernoulli', 'squared_error')
# How the code is matched to the prior: the AAE's adversarial phases, or the
# VAE baseline's KL term (same networks and priors; paper Fig 2).
REGULARIZERS = ('adversarial', 'vae')


@dataclasses.dataclass(frozen=True)
class Phase:
  name: str
  owns: tuple[str, ...]
  objective: Objective
  tx: optax.GradientTransformation


# ----------------------------------------------------------------------------
# Per-example randomness: the same draws whatever the number of devices.


def per_example_normal(key, positions, shapes: dict[str, tuple[int, ...]]):
  """Standard normal arrays keyed by each example's position in the global batch."""
  names = sorted(shapes)

  def one(position):
    keys = jax.random.split(jax.random.fold_in(key, position), max(len(names), 1))
    return {n: jax.random.normal(k, shapes[n]) for n, k in zip(names, keys)}

  return jax.vmap(one)(positions)


def per_example_prior(prior, key, positions, labels=None):
  """One prior sample per example, keyed by position; ``labels`` pick components."""
  keys = jax.vmap(lambda p: jax.random.fold_in(key, p))(positions)
  if labels is None:
    return jax.vmap(lambda k: prior.sample(k, 1)[0])(keys)
  return jax.vmap(lambda k, y: prior.sample(k, 1, labels=y[None])[0])(keys, labels)


# ----------------------------------------------------------------------------
# The pieces objectives are made of.


def reconstruction_fn(kind: str, output_activation: str):
  """Per-example reconstruction loss on decoder logits, by config name."""
  if kind == 'bernoulli':
    if output_activation != 'sigmoid':
      raise errors.UserError('loss.reconstruction="bernoulli" needs '
                       'model.output_activation="sigmoid".')
    return lambda logits, x: losses.bernoulli_nll(logits=logits, targets=x)
  if kind == 'squared_error':
    read = decoder_output(output_activation)
    return lambda logits, x: losses.squared_error(predictions=read(logits), targets=x)
  raise errors.UserError(f'loss.reconstruction={kind!r} is not a reconstruction loss; '
                   f'choose one of {", ".join(RECONSTRUCTION_LOSSES)}.')


def decoder_output(output_activation: str):
  if output_activation == 'sigmoid':
    return jax.nn.sigmoid
  if output_activation == 'linear':
    return lambda logits: logits
  raise errors.UserError(f'model.output_activation={output_activation!r}: choose sigmoid or linear.')


DECODER_INPUTS = ('z', 'y_z', 'label_z', 'heads')
# Key of an objective's aux dict holding new non-trained variables (batch-norm
# statistics), by params key; the train step stores them after the phase.
STATE_KEY = 'state'
STATS_SUFFIX = '_batch_stats'


def one_hot_condition(labels, num_classes: int):
  """One-hot of ``labels`` with an extra last class for unlabelled (label -1) examples."""
  return jax.nn.one_hot(jnp.where(labels < 0, num_classes, labels), num_classes + 1)


def noise_anneal(step, start: int, num_steps: int):
  """1 until ``start``, then a linear fall to 0 at ``start + num_steps``, then 0."""
  return jnp.clip(1.0 - (step - start).astype(jnp.float32) / num_steps, 0.0, 1.0)


def head_separation_cost(heads, threshold: float):
  """Sum over pairs of cluster heads of max(0, threshold - distance) (paper section 7)."""
  diff = heads[:, None, :] - heads[None, :, :]
  dist = jnp.sqrt(jnp.sum(diff**2, axis=-1) + 1e-12)
  pairs = 1.0 - jnp.eye(heads.shape[0])
  return 0.5 * jnp.sum(pairs * jax.nn.relu(threshold - dist))


@dataclasses.dataclass(frozen=True)
class AAE:
  """An adversarial autoencoder's modules and priors, with the objectives phases use.

  The unsupervised AAE needs only the first six fields. The others compose the
  paper's label-aware models:

  * ``num_classes`` > 0: the encoder also has a softmax head q(y|x); with
    ``disc_y`` a categorical discriminator matches it to one-hot samples
    (semi-supervised, clustering, dimensionality reduction).
  * ``decoder_input``: what the decoder reads: ``z``; ``y_z`` = [q(y|x), z];
    ``label_z`` = [one-hot true label, z] (supervised style/content);
    ``heads`` = q(y|x) W_c + z with learned cluster heads W_c (params['heads']).
  * ``condition_classes`` > 0: the z discriminator also sees the label one-hot
    with an extra "unlabelled" class. With a prior that has components (E2),
    labelled examples' prior samples come from their class's component and
    unlabelled ones' from the whole prior; with one that has none (e.g. the
    Gaussian style of the supervised model) every sample comes from the whole
    prior, so the discriminator tells apart codes that depend on the label.
  """
  encoder: models.Encoder
  decoder: models.Decoder
  discriminator: models.Discriminator
  prior: Any
  reconstruction: Callable[[chex.Array, chex.Array], chex.Array]  # (logits, x) -> (N,)
  output: Callable[[chex.Array], chex.Array]  # decoder logits -> data space
  disc_y: models.Discriminator | None = None
  decoder_input: str = 'z'
  label_classes: int = 0  # size of the one-hot label for decoder_input='label_z'
  condition_classes: int = 0
  heads_threshold: float = 0.0
  heads_weight: float = 0.0
  heads_init_std: float = 1.0
  regularizer: str = 'adversarial'
  # > 0: the categorical discriminator's input noise keeps its std until step
  # ``disc_y_noise_anneal_start``, then falls linearly to zero over this many
  # steps (a function of the step alone, so resume stays exact).
  disc_y_noise_anneal_steps: int = 0
  disc_y_noise_anneal_start: int = 0
  # The z discriminator also sees stop_gradient(q(y|x)), and its real pairs are
  # a prior sample with the same q: it matches q(y, z) to q(y) p(z), so z must
  # not depend on the category (the paper's p(y) p(z) factorisation).
  z_sees_y: bool = False

  @property
  def num_classes(self) -> int:
    return self.encoder.num_classes

  # --- module calls -----------------------------------------------------------

  def _apply(self, name, module, params, *args, train=False, record=None):
    """``module.apply`` with its batch-norm statistics, if it has any.

    In training mode new statistics go into ``record`` (when given) under
    ``name + STATS_SUFFIX``; otherwise they are dropped.
    """
    variables = {'params': params[name]}
    stats = name + STATS_SUFFIX
    if stats not in params:
      return module.apply(variables, *args, train=train)
    variables['batch_stats'] = params[stats]
    if not train:
      return module.apply(variables, *args, train=False)
    out, new = module.apply(variables, *args, train=True, mutable=['batch_stats'])
    if record is not None:
      record[stats] = new['batch_stats']
    return out

  def encode(self, params, batch, key, train=True, record=None) -> models.Code:
    shapes = self.encoder.noise_shapes(batch['x'].shape[-1], train)
    noise = per_example_normal(key, batch['position'], shapes) if shapes else None
    return self._apply('encoder', self.encoder, params, batch['x'], noise,
                       train=train, record=record)

  def decoder_input_from(self, params, z, y):
    """The decoder's input for codes z (N, dim) and class vectors y (N, C) or None."""
    if self.decoder_input == 'z':
      return z
    if self.decoder_input == 'heads':
      return y @ params['heads'] + z
    return jnp.concatenate([y, z], axis=-1)

  def decoder_in(self, params, code: models.Code, batch):
    y = None
    if self.decoder_input == 'label_z':
      y = jax.nn.one_hot(batch['label'], self.label_classes)
    elif self.decoder_input != 'z':
      y = jax.nn.softmax(code.y_logits)
    return self.decoder_input_from(params, code.z, y)

  def decode_logits(self, params, h, train=False, record=None):
    return self._apply('decoder', self.decoder, params, h, train=train, record=record)

  def discriminate(self, params, z, batch, key, condition=None, name='discriminator'):
    module = self.discriminator if name == 'discriminator' else self.disc_y
    noise = None
    if module.input_noise_std > 0:
      noise = per_example_normal(key, batch['position'], {'d': (z.shape[-1],)})['d']
      if name == 'disc_y' and self.disc_y_noise_anneal_steps > 0:
        noise = noise * noise_anneal(batch['step'], self.disc_y_noise_anneal_start,
                                     self.disc_y_noise_anneal_steps)
    return module.apply({'params': params[name]}, z, noise, condition)

  def _z_condition(self, batch, code: models.Code):
    """What the z discriminator sees besides z: the label (E2), q(y|x) or nothing."""
    if self.z_sees_y:
      return jax.lax.stop_gradient(jax.nn.softmax(code.y_logits))
    if not self.condition_classes:
      return None
    return one_hot_condition(batch['label'], self.condition_classes)

  def init(self, key, data_dim: int) -> Params:
    k_enc, k_dec, k_disc, k_y, k_heads = jax.random.split(key, 5)
    x = jnp.zeros((1, data_dim))
    noise = {n: jnp.zeros((1,) + s)
             for n, s in self.encoder.noise_shapes(data_dim, train=True).items()}
    z = jnp.zeros((1, self.encoder.code_dim))
    y = jnp.zeros((1, self.num_classes or self.label_classes))
    h = self.decoder_input_from({'heads': jnp.zeros((y.shape[1], z.shape[1]))}, z, y)
    condition = None
    if self.z_sees_y:
      condition = y
    elif self.condition_classes:
      condition = jnp.zeros((1, self.condition_classes + 1))
    variables = {
        'encoder': self.encoder.init(k_enc, x, noise),
        'decoder': self.decoder.init(k_dec, h),
        'discriminator': self.discriminator.init(k_disc, z, None, condition),
    }
    if self.disc_y is not None:
      variables['disc_y'] = self.disc_y.init(k_y, y)
    params = {}
    for name, v in variables.items():
      params[name] = v['params']
      if 'batch_stats' in v:
        params[name + STATS_SUFFIX] = v['batch_stats']
    if self.decoder_input == 'heads':
      params['heads'] = self.heads_init_std * jax.random.normal(
          k_heads, (self.num_classes, self.encoder.code_dim))
    return params

  # --- objectives -----------------------------------------------------------

  def _reconstruct(self, params, batch, key):
    """Training-mode encode and decode of the batch: (code, mean reconstruction
    loss, new batch-norm statistics by params key)."""
    record = {}
    code = self.encode(params, batch, key, record=record)
    logits = self.decode_logits(params, self.decoder_in(params, code, batch),
                                train=True, record=record)
    return code, jnp.mean(self.reconstruction(logits, batch['x'])), record

  def reconstruction_objective(self, params, batch, key):
    _, loss, record = self._reconstruct(params, batch, key)
    metrics = {'train/recon_loss': loss}
    if self.decoder_input == 'heads' and self.heads_weight > 0:
      cost = head_separation_cost(params['heads'], self.heads_threshold)
      metrics['train/head_cost'] = cost
      loss = loss + self.heads_weight * cost
    return loss, {**metrics, STATE_KEY: record}

  def kl(self, code: models.Code):
    """Per-example KL(q(z|x) || p(z)) of a Gaussian encoder (the VAE baseline).

    Closed form for the isotropic Gaussian prior; for any other prior the
    one-sample estimate log q(z|x) - log p(z) at the reparameterised ``z``.
    """
    mean, log_var = code.mean, code.log_var
    if isinstance(self.prior, priors.Gaussian):
      var_ratio = jnp.exp(log_var) / self.prior.std**2
      return 0.5 * jnp.sum(var_ratio + jnp.square(mean) / self.prior.std**2 - 1.0
                           - jnp.log(var_ratio), axis=-1)
    z = code.z
    log_q = -0.5 * jnp.sum(jnp.square(z - mean) * jnp.exp(-log_var) + log_var
                           + jnp.log(2 * jnp.pi), axis=-1)
    return log_q - self.prior.log_prob(z)

  def vae_objective(self, params, batch, key):
    """The VAE baseline's negative ELBO: reconstruction of a reparameterised
    sample plus KL to the prior, in one phase that owns the autoencoder."""
    code, recon, record = self._reconstruct(params, batch, key)
    kl = jnp.mean(self.kl(code))
    return recon + kl, {'train/recon_loss': recon, 'train/kl': kl,
                        'train/neg_elbo': recon + kl, STATE_KEY: record}

  def prior_samples(self, batch, key):
    """One sample of the z prior per example; labelled ones from their component (E2)."""
    if not (self.condition_classes and self.prior.num_components):
      return per_example_prior(self.prior, key, batch['position'])
    k_comp, k_sample = jax.random.split(key)
    random = jax.vmap(lambda p: jax.random.randint(
        jax.random.fold_in(k_comp, p), (), 0, self.prior.num_components))(batch['position'])
    components = jnp.where(batch['label'] < 0, random, batch['label'])
    return per_example_prior(self.prior, k_sample, batch['position'], components)

  def discriminator_objective(self, params, batch, key):
    k_enc, k_prior, k_real, k_fake = jax.random.split(key, 4)
    code = self.encode(params, batch, k_enc)
    real = self.prior_samples(batch, k_prior)
    condition = self._z_condition(batch, code)
    real_logits = self.discriminate(params, real, batch, k_real, condition)
    fake_logits = self.discriminate(params, code.z, batch, k_fake, condition)
    return _discriminator_metrics('disc', real_logits, fake_logits)

  def disc_y_objective(self, params, batch, key):
    k_enc, k_prior, k_real, k_fake = jax.random.split(key, 4)
    fake = jax.nn.softmax(self.encode(params, batch, k_enc).y_logits)
    real = per_example_prior(priors.Categorical(self.num_classes), k_prior, batch['position'])
    real_logits = self.discriminate(params, real, batch, k_real, name='disc_y')
    fake_logits = self.discriminate(params, fake, batch, k_fake, name='disc_y')
    return _discriminator_metrics('disc_y', real_logits, fake_logits)

  def generator_objective(self, params, batch, key):
    """The encoder fools the z discriminator (and the categorical one, if any)."""
    k_enc, k_fake, k_fake_y = jax.random.split(key, 3)
    code = self.encode(params, batch, k_enc)
    fake_logits = self.discriminate(params, code.z, batch, k_fake,
                                    self._z_condition(batch, code))
    loss = losses.generator_loss(fake_logits=fake_logits)
    metrics = {'train/gen_loss': loss}
    if self.disc_y is not None:
      y_logits = self.discriminate(params, jax.nn.softmax(code.y_logits), batch,
                                   k_fake_y, name='disc_y')
      loss_y = losses.generator_loss(fake_logits=y_logits)
      metrics['train/gen_y_loss'] = loss_y
      loss = loss + loss_y
    return loss, metrics

  def supervised_objective(self, params, batch, key):
    """Cross-entropy of q(y|x) on the step's labelled mini-batch (``batch['labelled']``)."""
    labelled = batch['labelled']
    logits = self.encode(params, labelled, key).y_logits
    loss = jnp.mean(losses.categorical_cross_entropy(logits=logits, labels=labelled['label']))
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labelled['label'])
    return loss, {'train/ce_loss': loss, 'train/labelled_accuracy': accuracy}


def _discriminator_metrics(name, real_logits, fake_logits):
  loss = losses.discriminator_loss(real_logits=real_logits, fake_logits=fake_logits)
  accuracy = 0.5 * (jnp.mean(real_logits > 0) + jnp.mean(fake_logits < 0))
  return loss, {f'train/{name}_loss': loss, f'train/{name}_accuracy': accuracy}


def aae_from_config(config, prior, data_dim: int, num_classes: int = 10) -> AAE:
  """The AAE that ``config.model`` / ``config.loss`` describe.

  ``num_classes`` is the dataset's number of classes (for label one-hots).
  """
  m = config.model
  if m.decoder_input not in DECODER_INPUTS:
    raise errors.UserError(f'model.decoder_input={m.decoder_input!r}: choose one of '
                           f'{", ".join(DECODER_INPUTS)}.')
  if m.decoder_input in ('y_z', 'heads') and m.num_classes <= 0:
    raise errors.UserError(f'model.decoder_input={m.decoder_input!r} reads q(y|x): set '
                           'model.num_classes to the number of categories (e.g. 10).')
  if m.regularizer not in REGULARIZERS:
    raise errors.UserError(f'model.regularizer={m.regularizer!r}: choose one of '
                           f'{", ".join(REGULARIZERS)}.')
  if m.regularizer == 'vae' and (m.encoder != 'gaussian' or m.num_classes
                                 or m.label_condition or m.decoder_input != 'z'):
    raise errors.UserError('model.regularizer="vae" is the unsupervised VAE baseline: it '
                           'needs model.encoder="gaussian", model.num_classes=0, '
                           'model.label_condition=False and model.decoder_input="z".')
  if m.disc_z_sees_y and (m.num_classes <= 0 or m.label_condition):
    raise errors.UserError('model.disc_z_sees_y=True conditions the z discriminator on '
                           'q(y|x): it needs model.num_classes > 0 and '
                           'model.label_condition=False.')
  if m.disc_y_noise_anneal_steps < 0 or m.disc_y_noise_anneal_start < 0:
    raise errors.UserError(
        f'model.disc_y_noise_anneal_steps={m.disc_y_noise_anneal_steps} and '
        f'model.disc_y_noise_anneal_start={m.disc_y_noise_anneal_start} must be >= 0 '
        '(anneal_steps 0: constant noise).')
  encoder, decoder, discriminator, disc_y = models.from_config(m, data_dim)
  return AAE(encoder=encoder, decoder=decoder, discriminator=discriminator,
             prior=prior,
             reconstruction=reconstruction_fn(config.loss.reconstruction,
                                              m.output_activation),
             output=decoder_output(m.output_activation),
             disc_y=disc_y,
             decoder_input=m.decoder_input,
             label_classes=num_classes,
             condition_classes=(prior.num_components or num_classes) if m.label_condition else 0,
             heads_threshold=config.loss.head_threshold,
             heads_weight=config.loss.head_weight,
             heads_init_std=m.heads_init_std,
             regularizer=m.regularizer,
             disc_y_noise_anneal_steps=m.disc_y_noise_anneal_steps,
             disc_y_noise_anneal_start=m.disc_y_noise_anneal_start,
             z_sees_y=m.disc_z_sees_y)


def aae_phases(aae: AAE, config, steps_per_epoch: int,
               supervised: bool = False) -> tuple[Phase, ...]:
  """The paper's order: reconstruction; discriminator(s); generator; then, with
  ``supervised``, cross-entropy of q(y|x) on a labelled mini-batch. The VAE
  baseline has one phase, ``vae`` (negative ELBO), with ``config.optim.recon``."""

  def tx(name):
    return optim.from_config(config.optim[name], steps_per_epoch, f'optim.{name}')

  autoencoder = ('encoder', 'decoder') + (('heads',) if aae.decoder_input == 'heads' else ())
  if aae.regularizer == 'vae':  # one phase; the discriminator stays unused
    return (Phase('vae', autoencoder, aae.vae_objective, tx('recon')),)
  phase_list = [
      Phase('recon', autoencoder, aae.reconstruction_objective, tx('recon')),
      Phase('disc', ('discriminator',), aae.discriminator_objective, tx('disc')),
  ]
  if aae.disc_y is not None:
    phase_list.append(Phase('disc_y', ('disc_y',), aae.disc_y_objective, tx('disc_y')))
  phase_list.append(Phase('gen', ('encoder',), aae.generator_objective, tx('gen')))
  if supervised:
    phase_list.append(
        Phase('supervised', ('encoder',), aae.supervised_objective, tx('supervised')))
  return tuple(phase_list)
