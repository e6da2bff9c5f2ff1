"""The adversarial autoencoder: its modules, its prior and the objectives phases use.

Every config choice is resolved once, in ``from_config``, into an object with
behaviour: what the decoder reads (``DecoderInput``), what the z discriminator
sees besides z (``ZCondition``), each discriminator with its input noise
(``Critic``). The ``AAE`` then calls them without comparing config strings.

Objectives have the signature ``objective(variables, batch, key) -> (loss,
(metrics, batch_stats))``. ``variables`` is ``{'params': ..., 'batch_stats':
...}``, each mapping module names to their variables (``batch_stats`` only for
modules with batch norm); the returned ``batch_stats`` are the new statistics of
the modules the objective ran in training mode (often none). ``batch`` holds
this device's ``x`` (n, D), ``label`` (n,), ``position`` (n,) (each example's
place in the global batch, which keys its noise: see ``noise.py``) and ``step``
(the step number, for schedules); ``key`` is the phase's PRNG key.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar

import chex
import jax
import jax.numpy as jnp

from aae_jax import errors
from aae_jax import losses
from aae_jax import models
from aae_jax import noise
from aae_jax import priors

Variables = dict[str, dict[str, Any]]  # {'params': {...}, 'batch_stats': {...}}
Aux = tuple[dict, dict]  # (metrics, new batch statistics by module name)


# ----------------------------------------------------------------------------
# What the decoder reads.


@dataclasses.dataclass(frozen=True)
class DecoderInput:
  """The decoder reads the code z alone (``model.decoder_input='z'``).

  Subclasses add a class vector y (N, ``num_classes``). They are the registry
  ``DECODER_INPUTS``, keyed by ``name``.
  """
  name: ClassVar[str] = 'z'
  reads_labels: ClassVar[bool] = False  # y is the true label: every example needs one
  params: ClassVar[tuple[str, ...]] = ()  # parameters of its own (trained with the autoencoder)
  num_classes: int = 0  # size of y; 0 without one

  def class_vector(self, y_probs, labels):
    """y from q(y|x) probabilities (or None) and labels (N,); None for z alone."""
    del y_probs, labels
    return None

  def combine(self, params, z, y):
    """The decoder's input for codes z (N, dim) and class vectors y (N, C)."""
    del params, y
    return z

  def init(self, key, code_dim: int) -> dict:
    """Initial values of ``params``."""
    del key, code_dim
    return {}

  def shown(self, params, z, y):
    """What figures show as an example's code."""
    del params, y
    return z

  def marks(self, params):
    """Points figures mark beside the codes (cluster heads), or None."""
    del params
    return None

  def penalty(self, params):
    """(metric name, cost, weight) added to the reconstruction loss, or None."""
    del params
    return None


@dataclasses.dataclass(frozen=True)
class ClassAndZ(DecoderInput):
  """[q(y|x), z]: the semi-supervised and clustering decoder (paper Fig 8)."""
  name: ClassVar[str] = 'y_z'

  def class_vector(self, y_probs, labels):
    del labels
    return y_probs

  def combine(self, params, z, y):
    del params
    return jnp.concatenate([y, z], axis=-1)


@dataclasses.dataclass(frozen=True)
class LabelAndZ(ClassAndZ):
  """[one-hot true label, z]: the supervised style/content decoder (paper Fig 6)."""
  name: ClassVar[str] = 'label_z'
  reads_labels: ClassVar[bool] = True

  def class_vector(self, y_probs, labels):
    del y_probs
    return jax.nn.one_hot(labels, self.num_classes)


@dataclasses.dataclass(frozen=True)
class ClusterHeads(ClassAndZ):
  """q(y|x) W_c + z with learned cluster heads W_c (dimensionality reduction,
  paper section 7), and the cost pushing apart heads closer than ``threshold``."""
  name: ClassVar[str] = 'heads'
  params: ClassVar[tuple[str, ...]] = ('heads',)
  init_std: float = 1.0
  threshold: float = 0.0
  weight: float = 0.0

  def combine(self, params, z, y):
    return y @ params['heads'] + z

  def init(self, key, code_dim):
    return {'heads': self.init_std * jax.random.normal(key, (self.num_classes, code_dim))}

  def shown(self, params, z, y):
    return self.combine(params, z, y)

  def marks(self, params):
    return params['heads']

  def penalty(self, params):
    if self.weight <= 0:
      return None
    cost = losses.head_separation_cost(heads=params['heads'], threshold=self.threshold)
    return 'train/head_cost', cost, self.weight


DECODER_INPUTS = {c.name: c for c in (DecoderInput, ClassAndZ, LabelAndZ, ClusterHeads)}


# ----------------------------------------------------------------------------
# What the z discriminator sees besides z.


def one_hot_condition(labels, num_classes: int):
  """One-hot of ``labels`` with an extra last class for unlabelled (label -1) examples."""
  return jax.nn.one_hot(jnp.where(labels < 0, num_classes, labels), num_classes + 1)


@dataclasses.dataclass(frozen=True)
class ZCondition:
  """The z discriminator sees z alone; its real examples are prior samples."""
  reads_labels: ClassVar[bool] = False
  by_component: ClassVar[bool] = False  # labelled prior samples come from their component

  @property
  def width(self) -> int:
    return 0

  def value(self, code: models.Code, labels):
    del code, labels
    return None

  def prior_samples(self, prior, batch, key):
    """One sample of the z prior per example."""
    return noise.per_example_prior(prior, key, batch['position'])


@dataclasses.dataclass(frozen=True)
class OnClassProbs(ZCondition):
  """It also sees stop_gradient(q(y|x)); real pairs are a prior sample with the
  same q. It matches q(y, z) to q(y) p(z), so z must not depend on the category
  (the paper's p(y) p(z) factorisation; ``model.disc_z_sees_y``)."""
  num_classes: int = 0

  @property
  def width(self) -> int:
    return self.num_classes

  def value(self, code, labels):
    del labels
    return jax.lax.stop_gradient(jax.nn.softmax(code.y_logits))


@dataclasses.dataclass(frozen=True)
class OnLabel(ZCondition):
  """It also sees the label one-hot with an extra "unlabelled" class
  (``model.label_condition``, paper section 3). With a prior that has components
  (E2), labelled examples' prior samples come from their class's component and
  unlabelled ones' from the whole prior; with one that has none (the Gaussian
  style of the supervised model) every sample comes from the whole prior, so
  the discriminator tells apart codes that depend on the label."""
  reads_labels: ClassVar[bool] = True
  num_classes: int = 0
  num_components: int = 0  # the prior's; > 0 turns on sampling by component

  @property
  def by_component(self) -> bool:
    return self.num_components > 0

  @property
  def width(self) -> int:
    return self.num_classes + 1

  def value(self, code, labels):
    del code
    return one_hot_condition(labels, self.num_classes)

  def prior_samples(self, prior, batch, key):
    if not self.by_component:
      return super().prior_samples(prior, batch, key)
    k_comp, k_sample = jax.random.split(key)
    random = jax.vmap(lambda p: jax.random.randint(
        jax.random.fold_in(k_comp, p), (), 0, self.num_components))(batch['position'])
    components = jnp.where(batch['label'] < 0, random, batch['label'])
    return noise.per_example_prior(prior, k_sample, batch['position'], components)


# ----------------------------------------------------------------------------
# A discriminator with its input noise.


@dataclasses.dataclass(frozen=True)
class Critic:
  """A discriminator under ``variables['params'][name]``, with per-example input
  noise; with ``anneal_steps`` > 0 the noise keeps its std until step
  ``anneal_start`` and then falls linearly to zero over that many steps."""
  name: str
  module: models.Discriminator
  anneal_start: int = 0
  anneal_steps: int = 0

  def logits(self, params, x, batch, key, condition=None):
    eps = None
    if self.module.input_noise_std > 0:
      eps = noise.per_example_normal(key, batch['position'], {'d': (x.shape[-1],)})['d']
      if self.anneal_steps > 0:
        eps = eps * noise.linear_anneal(batch['step'], self.anneal_start, self.anneal_steps)
    return self.module.apply({'params': params[self.name]}, x, eps, condition)


def _discriminator_metrics(name, real_logits, fake_logits):
  loss = losses.discriminator_loss(real_logits=real_logits, fake_logits=fake_logits)
  accuracy = 0.5 * (jnp.mean(real_logits > 0) + jnp.mean(fake_logits < 0))
  return loss, ({f'train/{name}_loss': loss, f'train/{name}_accuracy': accuracy}, {})


# ----------------------------------------------------------------------------
# The model.


@dataclasses.dataclass(frozen=True)
class AAE:
  """An adversarial autoencoder's modules and prior, with the objectives phases use.

  With ``encoder.num_classes`` > 0 the encoder also has a softmax head q(y|x),
  and with ``critic_y`` a categorical discriminator matches it to one-hot
  samples (semi-supervised, clustering, dimensionality reduction).
  """
  encoder: models.Encoder
  decoder: models.Decoder
  critic_z: Critic
  prior: Any
  reconstruction: Callable[[chex.Array, chex.Array], chex.Array]  # (logits, x) -> (N,)
  output: Callable[[chex.Array], chex.Array]  # decoder logits -> data space
  # The reconstruction phase minimises recon_scale times the per-example cost
  # summed over pixels: 1 ('sum'), or 1 / pixels ('mean', the per-pixel mean whose
  # gradient learning rates in the paper's range fit). Logs stay in summed nats.
  recon_scale: float = 1.0
  decoder_input: DecoderInput = DecoderInput()
  z_condition: ZCondition = ZCondition()
  critic_y: Critic | None = None

  @property
  def num_classes(self) -> int:
    return self.encoder.num_classes

  @property
  def reads_labels(self) -> bool:
    """Whether any phase reads training labels (besides the supervised one)."""
    return self.decoder_input.reads_labels or self.z_condition.reads_labels

  @property
  def autoencoder(self) -> tuple[str, ...]:
    """The parameter sub-trees the reconstruction phase owns."""
    return ('encoder', 'decoder') + self.decoder_input.params

  # --- module calls -----------------------------------------------------------

  @staticmethod
  def _apply(name, module, variables, *args, train=False):
    """``module.apply`` with its batch-norm statistics, if it has any:
    (output, new statistics by module name; empty unless ``train``)."""
    v = {'params': variables['params'][name]}
    if name not in variables['batch_stats']:
      return module.apply(v, *args, train=train), {}
    v['batch_stats'] = variables['batch_stats'][name]
    if not train:
      return module.apply(v, *args, train=False), {}
    out, new = module.apply(v, *args, train=True, mutable=['batch_stats'])
    return out, {name: new['batch_stats']}

  def _encode(self, variables, batch, key, train=True):
    shapes = self.encoder.noise_shapes(batch['x'].shape[-1], train)
    eps = noise.per_example_normal(key, batch['position'], shapes) if shapes else None
    return self._apply('encoder', self.encoder, variables, batch['x'], eps, train=train)

  def encode(self, variables, batch, key, train=True) -> models.Code:
    """The code of ``batch['x']``; ``train`` draws the encoder's noise and uses batch statistics."""
    return self._encode(variables, batch, key, train)[0]

  def decoder_in(self, params, code: models.Code, labels):
    """What the decoder reads for ``code`` and the examples' labels."""
    y_probs = None if code.y_logits is None else jax.nn.softmax(code.y_logits)
    y = self.decoder_input.class_vector(y_probs, labels)
    return self.decoder_input.combine(params, code.z, y)

  def _decode_logits(self, variables, h, train=False):
    return self._apply('decoder', self.decoder, variables, h, train=train)

  def decode_logits(self, variables, h):
    """Decoder logits of inputs h (evaluation mode)."""
    return self._decode_logits(variables, h)[0]

  def init(self, key, data_dim: int) -> Variables:
    k_enc, k_dec, k_disc, k_y, k_heads = jax.random.split(key, 5)
    x = jnp.zeros((1, data_dim))
    eps = {n: jnp.zeros((1,) + s)
           for n, s in self.encoder.noise_shapes(data_dim, train=True).items()}
    z = jnp.zeros((1, self.encoder.code_dim))
    y = jnp.zeros((1, self.decoder_input.num_classes))
    zero_heads = {'heads': jnp.zeros((y.shape[1], z.shape[1]))}
    width = self.z_condition.width
    condition = jnp.zeros((1, width)) if width else None
    modules = {
        'encoder': self.encoder.init(k_enc, x, eps),
        'decoder': self.decoder.init(k_dec, self.decoder_input.combine(zero_heads, z, y)),
        'discriminator': self.critic_z.module.init(k_disc, z, None, condition),
    }
    if self.critic_y is not None:
      modules[self.critic_y.name] = self.critic_y.module.init(
          k_y, jnp.zeros((1, self.num_classes)))
    params = {name: v['params'] for name, v in modules.items()}
    params.update(self.decoder_input.init(k_heads, self.encoder.code_dim))
    batch_stats = {name: v['batch_stats'] for name, v in modules.items() if 'batch_stats' in v}
    return {'params': params, 'batch_stats': batch_stats}

  # --- objectives -------------------------------------------------------------

  def _reconstruct(self, variables, batch, key):
    """Training-mode encode and decode of the batch: (code, mean reconstruction
    loss, new batch-norm statistics)."""
    code, stats = self._encode(variables, batch, key)
    h = self.decoder_in(variables['params'], code, batch['label'])
    logits, dec_stats = self._decode_logits(variables, h, train=True)
    return code, jnp.mean(self.reconstruction(logits, batch['x'])), {**stats, **dec_stats}

  def reconstruction_objective(self, variables, batch, key):
    _, recon, stats = self._reconstruct(variables, batch, key)
    metrics = {'train/recon_loss': recon}
    loss = self.recon_scale * recon
    penalty = self.decoder_input.penalty(variables['params'])
    if penalty is not None:
      name, cost, weight = penalty
      metrics[name] = cost
      loss = loss + weight * cost
    return loss, (metrics, stats)

  def kl(self, code: models.Code):
    """Per-example KL(q(z|x) || p(z)) of a Gaussian encoder (the VAE baseline).

    Closed form for the isotropic Gaussian prior; for any other prior the
    one-sample estimate log q(z|x) - log p(z) at the reparameterised ``z``.
    """
    if isinstance(self.prior, priors.Gaussian):
      return losses.gaussian_kl(mean=code.mean, log_var=code.log_var,
                                prior_std=self.prior.std)
    mean, log_var, z = code.mean, code.log_var, code.z
    log_q = -0.5 * jnp.sum(jnp.square(z - mean) * jnp.exp(-log_var) + log_var
                           + jnp.log(2 * jnp.pi), axis=-1)
    return log_q - self.prior.log_prob(z)

  def vae_objective(self, variables, batch, key):
    """The VAE baseline's negative ELBO: reconstruction of a reparameterised
    sample plus KL to the prior, in one phase that owns the autoencoder."""
    code, recon, stats = self._reconstruct(variables, batch, key)
    kl = jnp.mean(self.kl(code))
    return recon + kl, ({'train/recon_loss': recon, 'train/kl': kl,
                         'train/neg_elbo': recon + kl}, stats)

  def prior_samples(self, batch, key):
    """One sample of the z prior per example (labelled ones by component, E2)."""
    return self.z_condition.prior_samples(self.prior, batch, key)

  def discriminator_objective(self, variables, batch, key):
    k_enc, k_prior, k_real, k_fake = jax.random.split(key, 4)
    params = variables['params']
    code = self.encode(variables, batch, k_enc)
    real = self.prior_samples(batch, k_prior)
    condition = self.z_condition.value(code, batch['label'])
    real_logits = self.critic_z.logits(params, real, batch, k_real, condition)
    fake_logits = self.critic_z.logits(params, code.z, batch, k_fake, condition)
    return _discriminator_metrics('disc', real_logits, fake_logits)

  def disc_y_objective(self, variables, batch, key):
    k_enc, k_prior, k_real, k_fake = jax.random.split(key, 4)
    params = variables['params']
    fake = jax.nn.softmax(self.encode(variables, batch, k_enc).y_logits)
    real = noise.per_example_prior(priors.Categorical(self.num_classes), k_prior,
                                   batch['position'])
    real_logits = self.critic_y.logits(params, real, batch, k_real)
    fake_logits = self.critic_y.logits(params, fake, batch, k_fake)
    return _discriminator_metrics('disc_y', real_logits, fake_logits)

  def generator_objective(self, variables, batch, key):
    """The encoder fools the z discriminator (and the categorical one, if any)."""
    k_enc, k_fake, k_fake_y = jax.random.split(key, 3)
    params = variables['params']
    code = self.encode(variables, batch, k_enc)
    fake_logits = self.critic_z.logits(params, code.z, batch, k_fake,
                                       self.z_condition.value(code, batch['label']))
    loss = losses.generator_loss(fake_logits=fake_logits)
    metrics = {'train/gen_loss': loss}
    if self.critic_y is not None:
      y_logits = self.critic_y.logits(params, jax.nn.softmax(code.y_logits), batch, k_fake_y)
      loss_y = losses.generator_loss(fake_logits=y_logits)
      metrics['train/gen_y_loss'] = loss_y
      loss = loss + loss_y
    return loss, (metrics, {})

  def supervised_objective(self, variables, batch, key):
    """Cross-entropy of q(y|x) on the step's labelled mini-batch (``batch['labelled']``)."""
    labelled = batch['labelled']
    logits = self.encode(variables, labelled, key).y_logits
    loss = jnp.mean(losses.categorical_cross_entropy(logits=logits, labels=labelled['label']))
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labelled['label'])
    return loss, ({'train/ce_loss': loss, 'train/labelled_accuracy': accuracy}, {})


# ----------------------------------------------------------------------------
# From a config.

RECONSTRUCTION_LOSSES = ('bernoulli', 'squared_error')
RECON_REDUCTIONS = ('sum', 'mean')


def recon_scale(loss_config, data_dim: int, regularizer: str) -> float:
  """The reconstruction objective's factor on the per-example summed cost."""
  reduction = loss_config.recon_reduction
  if reduction not in RECON_REDUCTIONS:
    raise errors.UserError(f'loss.recon_reduction={reduction!r}: choose one of '
                           f'{", ".join(RECON_REDUCTIONS)} (sum over pixels, or their mean).')
  if reduction == 'mean' and regularizer == 'vae':
    raise errors.UserError('loss.recon_reduction="mean" would reweight the VAE\'s ELBO '
                           'against its KL term: keep "sum" with model.regularizer="vae".')
  return 1.0 if reduction == 'sum' else 1.0 / data_dim


def reconstruction_fn(kind: str, output_activation: str):
  """Per-example reconstruction loss on decoder logits, by config name."""
  if kind == 'bernoulli':
    if output_activation != 'sigmoid':
      raise errors.UserError('loss.reconstruction="bernoulli" needs '
                             'model.output_activation="sigmoid".')
    return lambda logits, x: losses.bernoulli_nll(logits=logits, targets=x)
  if kind == 'squared_error':
    read = models.output_fn(output_activation)
    return lambda logits, x: losses.squared_error(predictions=read(logits), targets=x)
  raise errors.UserError(f'loss.reconstruction={kind!r} is not a reconstruction loss; '
                         f'choose one of {", ".join(RECONSTRUCTION_LOSSES)}.')


def _decoder_input(config, num_label_classes: int) -> DecoderInput:
  m = config.model
  kind = DECODER_INPUTS.get(m.decoder_input)
  if kind is None:
    raise errors.UserError(f'model.decoder_input={m.decoder_input!r}: choose one of '
                           f'{", ".join(DECODER_INPUTS)}.')
  if kind is DecoderInput:
    return DecoderInput()
  if kind is LabelAndZ:
    return LabelAndZ(num_classes=num_label_classes)
  if m.num_classes <= 0:
    raise errors.UserError(f'model.decoder_input={m.decoder_input!r} reads q(y|x): set '
                           'model.num_classes to the number of categories (e.g. 10).')
  if kind is ClusterHeads:
    return ClusterHeads(num_classes=m.num_classes, init_std=m.heads_init_std,
                        threshold=config.loss.head_threshold, weight=config.loss.head_weight)
  return ClassAndZ(num_classes=m.num_classes)


def _z_condition(m, prior, num_label_classes: int) -> ZCondition:
  if m.disc_z_sees_y:
    if m.num_classes <= 0 or m.label_condition:
      raise errors.UserError('model.disc_z_sees_y=True conditions the z discriminator on '
                             'q(y|x): it needs model.num_classes > 0 and '
                             'model.label_condition=False.')
    return OnClassProbs(num_classes=m.num_classes)
  if m.label_condition:
    return OnLabel(num_classes=prior.num_components or num_label_classes,
                   num_components=prior.num_components)
  return ZCondition()


def from_config(config, prior, data_dim: int, num_classes: int = 10,
                axis_name: str | None = None) -> AAE:
  """The AAE that ``config.model`` / ``config.loss`` describe.

  ``num_classes`` is the dataset's number of classes (for label one-hots);
  ``axis_name`` the data-parallel axis batch norm averages its statistics over.
  """
  m = config.model
  if m.disc_y_noise_anneal_steps < 0 or m.disc_y_noise_anneal_start < 0:
    raise errors.UserError(
        f'model.disc_y_noise_anneal_steps={m.disc_y_noise_anneal_steps} and '
        f'model.disc_y_noise_anneal_start={m.disc_y_noise_anneal_start} must be >= 0 '
        '(anneal_steps 0: constant noise).')
  encoder, decoder, discriminator, disc_y = models.from_config(m, data_dim, axis_name)
  critic_y = None
  if disc_y is not None:
    critic_y = Critic('disc_y', disc_y, anneal_start=m.disc_y_noise_anneal_start,
                      anneal_steps=m.disc_y_noise_anneal_steps)
  return AAE(encoder=encoder, decoder=decoder,
             critic_z=Critic('discriminator', discriminator),
             prior=prior,
             reconstruction=reconstruction_fn(config.loss.reconstruction,
                                              m.output_activation),
             recon_scale=recon_scale(config.loss, data_dim, m.regularizer),
             output=models.output_fn(m.output_activation),
             decoder_input=_decoder_input(config, num_classes),
             z_condition=_z_condition(m, prior, num_classes),
             critic_y=critic_y)
