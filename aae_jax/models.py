"""Flax modules, used functionally through ``init`` / ``apply``.

The modules hold no randomness of their own: every stochastic input (input
noise, reparameterisation noise, the universal approximator's eta, the
discriminator's input noise) is an explicit array argument. The train step
draws it per example (see ``train.per_example``), so that a run gives the same
numbers on one device or many.
"""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
from flax import struct
import jax.numpy as jnp

from aae_jax import errors

ENCODER_KINDS = ('deterministic', 'gaussian', 'universal')


def kernel_init(init_std: float):
  """N(0, init_std^2) as in the paper when init_std > 0, else LeCun normal."""
  return nn.initializers.normal(init_std) if init_std > 0 else nn.initializers.lecun_normal()


class MLP(nn.Module):
  """ReLU hidden layers, then a linear output layer."""
  hidden: Sequence[int]
  out_dim: int
  init_std: float = 0.0

  @nn.compact
  def __call__(self, x):
    chex.assert_rank(x, 2)
    init = kernel_init(self.init_std)
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, kernel_init=init, name=f'hidden_{i}')(x))
    return nn.Dense(self.out_dim, kernel_init=init, name='out')(x)


@struct.dataclass
class Code:
  """An encoder's output. ``mean`` / ``log_var`` only for the Gaussian kind."""
  z: chex.Array
  mean: chex.Array | None = None
  log_var: chex.Array | None = None


class Encoder(nn.Module):
  """q(z|x) of one of three kinds (section 2.1 of the paper).

  * ``deterministic``: z = f(x).
  * ``gaussian``: z = mu(x) + sigma(x) * eps, eps ~ N(0, I) (reparameterised).
  * ``universal``: z = f(x, eta), eta ~ N(0, I) of ``noise_dim`` fed with x.

  Attributes:
    input_noise_std: std of Gaussian noise added to x at training time only.
  """
  kind: str
  hidden: Sequence[int]
  code_dim: int
  noise_dim: int = 0
  input_noise_std: float = 0.0
  init_std: float = 0.0

  def noise_shapes(self, x_dim: int, train: bool) -> dict[str, tuple[int, ...]]:
    """Per-example shapes of the noise arrays ``__call__`` expects."""
    shapes = {}
    if train and self.input_noise_std > 0:
      shapes['input'] = (x_dim,)
    if self.kind == 'gaussian' and train:
      shapes['latent'] = (self.code_dim,)
    if self.kind == 'universal':
      shapes['eta'] = (self.noise_dim,)
    return shapes

  @nn.compact
  def __call__(self, x, noise: dict[str, chex.Array] | None = None) -> Code:
    """Encodes x (N, D). Without ``noise['latent']`` the Gaussian kind returns its mean."""
    noise = noise or {}
    chex.assert_rank(x, 2)
    n = x.shape[0]
    if 'input' in noise:
      chex.assert_equal_shape([noise['input'], x])
      x = x + self.input_noise_std * noise['input']
    if self.kind == 'universal':
      chex.assert_shape(noise['eta'], (n, self.noise_dim))
      x = jnp.concatenate([x, noise['eta']], axis=-1)
    out_dim = 2 * self.code_dim if self.kind == 'gaussian' else self.code_dim
    h = MLP(self.hidden, out_dim, self.init_std, name='mlp')(x)
    if self.kind != 'gaussian':
      chex.assert_shape(h, (n, self.code_dim))
      return Code(z=h)
    mean, log_var = jnp.split(h, 2, axis=-1)
    z = mean
    if 'latent' in noise:
      chex.assert_equal_shape([noise['latent'], mean])
      z = mean + jnp.exp(0.5 * log_var) * noise['latent']
    return Code(z=z, mean=mean, log_var=log_var)


class Decoder(nn.Module):
  """p(x|z): returns logits (N, out_dim); the loss decides how to read them."""
  hidden: Sequence[int]
  out_dim: int
  init_std: float = 0.0

  @nn.compact
  def __call__(self, z):
    logits = MLP(self.hidden, self.out_dim, self.init_std, name='mlp')(z)
    chex.assert_shape(logits, (z.shape[0], self.out_dim))
    return logits


class Discriminator(nn.Module):
  """D(z): one logit per example, "real" meaning drawn from the prior.

  Attributes:
    input_noise_std: std of Gaussian noise added to D's input (``noise`` array)
      at training time; public ports found it stabilises training.
  """
  hidden: Sequence[int]
  input_noise_std: float = 0.0
  init_std: float = 0.0

  @nn.compact
  def __call__(self, z, noise: chex.Array | None = None):
    chex.assert_rank(z, 2)
    if noise is not None and self.input_noise_std > 0:
      chex.assert_equal_shape([noise, z])
      z = z + self.input_noise_std * noise
    logits = MLP(self.hidden, 1, self.init_std, name='mlp')(z)[:, 0]
    chex.assert_shape(logits, (z.shape[0],))
    return logits


def _widths(value, field: str) -> tuple[int, ...]:
  if not (isinstance(value, (tuple, list)) and
          all(isinstance(w, int) and w > 0 for w in value)):
    raise errors.UserError(f'{field}={value!r} must be a tuple of layer widths, '
                           'such as (1000, 1000).')
  return tuple(value)


def from_config(model_config, data_dim: int):
  """The (encoder, decoder, discriminator) modules that ``config.model`` describes."""
  m = model_config
  hidden = _widths(m.hidden, 'model.hidden')
  disc_hidden = _widths(m.disc_hidden, 'model.disc_hidden')
  if m.encoder not in ENCODER_KINDS:
    raise errors.UserError(f'model.encoder={m.encoder!r} is not an encoder kind; '
                     f'choose one of {", ".join(ENCODER_KINDS)}.')
  if m.encoder == 'universal' and m.noise_dim <= 0:
    raise errors.UserError('model.encoder="universal" needs model.noise_dim > 0.')
  encoder = Encoder(kind=m.encoder, hidden=hidden, code_dim=m.code_dim,
                    noise_dim=m.noise_dim, input_noise_std=m.input_noise_std,
                    init_std=m.init_std)
  decoder = Decoder(hidden=hidden, out_dim=data_dim, init_std=m.init_std)
  discriminator = Discriminator(hidden=disc_hidden,
                                input_noise_std=m.disc_input_noise_std,
                                init_std=m.init_std)
  return encoder, decoder, discriminator
