"""The training phases of an adversarial autoencoder, as data.

A ``Phase`` names the parameter sub-trees it owns, an objective and its own
optax transform. The train step (``train.train_step``) runs the phases of a
config in order, each differentiating only what it owns against the parameters
that earlier phases of the same step have already updated. An experiment is a
tuple of phases; adding a phase or a loss term happens here, in one place.

Objectives have the signature ``objective(params, batch, key) -> (loss, metrics)``
where ``params`` maps module names to parameters, ``batch`` holds this device's
``x`` (n, D), ``label`` (n,) and ``position`` (n,) (each example's place in the
global batch, which keys its noise), and ``key`` is the phase's PRNG key.
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

Params = dict[str, Any]
Objective = Callable[[Params, dict, chex.PRNGKey], tuple[chex.Array, dict]]
RECONSTRUCTION_LOSSES = ('bernoulli', 'squared_error')


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


@dataclasses.dataclass(frozen=True)
class AAE:
  """The modules and prior of an unsupervised AAE, with the calls phases share."""
  encoder: models.Encoder
  decoder: models.Decoder
  discriminator: models.Discriminator
  prior: Any
  reconstruction: Callable[[chex.Array, chex.Array], chex.Array]  # (logits, x) -> (N,)
  output: Callable[[chex.Array], chex.Array]  # decoder logits -> data space

  def encode(self, params, batch, key, train=True) -> models.Code:
    shapes = self.encoder.noise_shapes(batch['x'].shape[-1], train)
    noise = per_example_normal(key, batch['position'], shapes) if shapes else None
    return self.encoder.apply({'params': params['encoder']}, batch['x'], noise)

  def discriminate(self, params, z, positions, key):
    noise = None
    if self.discriminator.input_noise_std > 0:
      noise = per_example_normal(key, positions, {'d': (z.shape[-1],)})['d']
    return self.discriminator.apply({'params': params['discriminator']}, z, noise)

  def init(self, key, data_dim: int) -> Params:
    k_enc, k_dec, k_disc = jax.random.split(key, 3)
    x = jnp.zeros((1, data_dim))
    noise = {n: jnp.zeros((1,) + s)
             for n, s in self.encoder.noise_shapes(data_dim, train=True).items()}
    z = jnp.zeros((1, self.encoder.code_dim))
    return {
        'encoder': self.encoder.init(k_enc, x, noise)['params'],
        'decoder': self.decoder.init(k_dec, z)['params'],
        'discriminator': self.discriminator.init(k_disc, z)['params'],
    }

  # --- objectives -----------------------------------------------------------

  def reconstruction_objective(self, params, batch, key):
    code = self.encode(params, batch, key)
    logits = self.decoder.apply({'params': params['decoder']}, code.z)
    loss = jnp.mean(self.reconstruction(logits, batch['x']))
    return loss, {'train/recon_loss': loss}

  def discriminator_objective(self, params, batch, key):
    k_enc, k_prior, k_real, k_fake = jax.random.split(key, 4)
    fake = self.encode(params, batch, k_enc).z
    real = per_example_prior(self.prior, k_prior, batch['position'])
    real_logits = self.discriminate(params, real, batch['position'], k_real)
    fake_logits = self.discriminate(params, fake, batch['position'], k_fake)
    loss = losses.discriminator_loss(real_logits=real_logits, fake_logits=fake_logits)
    accuracy = 0.5 * (jnp.mean(real_logits > 0) + jnp.mean(fake_logits < 0))
    return loss, {'train/disc_loss': loss, 'train/disc_accuracy': accuracy}

  def generator_objective(self, params, batch, key):
    k_enc, k_fake = jax.random.split(key)
    fake = self.encode(params, batch, k_enc).z
    fake_logits = self.discriminate(params, fake, batch['position'], k_fake)
    loss = losses.generator_loss(fake_logits=fake_logits)
    return loss, {'train/gen_loss': loss}


def aae_from_config(config, prior, data_dim: int) -> AAE:
  encoder, decoder, discriminator = models.from_config(config.model, data_dim)
  return AAE(encoder=encoder, decoder=decoder, discriminator=discriminator,
             prior=prior,
             reconstruction=reconstruction_fn(config.loss.reconstruction,
                                              config.model.output_activation),
             output=decoder_output(config.model.output_activation))


def aae_phases(aae: AAE, config, steps_per_epoch: int) -> tuple[Phase, ...]:
  """The paper's order: reconstruction, then discriminator, then generator."""

  def tx(name):
    return optim.from_config(config.optim[name], steps_per_epoch, f'optim.{name}')

  return (
      Phase('recon', ('encoder', 'decoder'), aae.reconstruction_objective, tx('recon')),
      Phase('disc', ('discriminator',), aae.discriminator_objective, tx('disc')),
      Phase('gen', ('encoder',), aae.generator_objective, tx('gen')),
  )
