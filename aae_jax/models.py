"""Flax modules, used functionally through ``init`` / ``apply``.

The modules hold no randomness of their own: every stochastic input (input
noise, reparameterisation noise, the universal approximator's eta, the
discriminator's input noise) is an explicit array argument. The objectives
draw it per example (``noise.py``), so that a run gives the same numbers on one
device or many.
"""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
from flax import struct
import jax
import jax.numpy as jnp
import jax.scipy.stats  # pylint: disable=unused-import

from aae_jax import errors
from aae_jax import precision as precision_lib

ENCODER_KINDS = ('deterministic', 'gaussian', 'universal')
# model.output_activation -> how decoder logits map to data space.
OUTPUT_ACTIVATIONS = {'sigmoid': jax.nn.sigmoid, 'linear': lambda logits: logits}


def output_fn(output_activation: str):
  """Decoder logits -> data space, by ``model.output_activation``."""
  if output_activation not in OUTPUT_ACTIVATIONS:
    raise errors.UserError(f'model.output_activation={output_activation!r}: choose one of '
                           f'{", ".join(OUTPUT_ACTIVATIONS)}.')
  return OUTPUT_ACTIVATIONS[output_activation]


def kernel_init(init_std: float):
  """N(0, init_std^2) as in the paper when init_std > 0, else LeCun normal."""
  return nn.initializers.normal(init_std) if init_std > 0 else nn.initializers.lecun_normal()


def dense(features: int, init_std: float, name: str, precision: str = 'float32',
          use_bias: bool = True) -> nn.Dense:
  """A dense layer whose products follow the precision policy (``precision.py``)."""
  return nn.Dense(features, kernel_init=kernel_init(init_std), use_bias=use_bias,
                  dot_general=precision_lib.dot_general(precision), name=name)


class MLP(nn.Module):
  """ReLU hidden layers (batch-normalised before the ReLU if asked), then a linear layer.

  With ``batch_norm``, ``train=True`` normalises by the statistics of the global
  batch (averaged over ``axis_name`` when called inside the data-parallel step)
  and updates the ``batch_stats`` collection; ``train=False`` uses the running
  averages.
  """
  hidden: Sequence[int]
  out_dim: int
  init_std: float = 0.0
  batch_norm: bool = False
  precision: str = 'float32'  # the matmul policy: see aae_jax/precision.py
  axis_name: str | None = None  # the data-parallel axis, for batch norm's statistics

  @nn.compact
  def __call__(self, x, train: bool = False):
    chex.assert_rank(x, 2)
    for i, width in enumerate(self.hidden):
      x = dense(width, self.init_std, f'hidden_{i}', self.precision,
                use_bias=not self.batch_norm)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                         axis_name=self.axis_name if train else None, name=f'bn_{i}')(x)
      x = nn.relu(x)
    if self.out_dim == 0:  # a trunk: the caller adds its own heads
      return x
    return dense(self.out_dim, self.init_std, 'out', self.precision)(x)


@struct.dataclass
class Code:
  """An encoder's output.

  ``mean`` / ``log_var`` only for the Gaussian kind; ``y_logits`` (N, num_classes)
  only for encoders with a categorical head q(y|x).
  """
  z: chex.Array
  mean: chex.Array | None = None
  log_var: chex.Array | None = None
  y_logits: chex.Array | None = None


class Encoder(nn.Module):
  """q(z|x) of one of three kinds (section 2.1 of the paper), optionally with q(y|x).

  * ``deterministic``: z = f(x).
  * ``gaussian``: z = mu(x) + sigma(x) * eps, eps ~ N(0, I) (reparameterised).
  * ``universal``: z = f(x, eta), eta ~ N(0, I) of ``noise_dim`` fed with x.

  With ``num_classes`` > 0 a softmax head q(y|x) shares the trunk with the
  linear style head z (the semi-supervised / clustering encoder, section 5-6).

  Attributes:
    input_noise_std: std of Gaussian noise added to x at training time only.
    input_dropout: rate of dropout on x at training time only; the mask comes
      from the ``dropout`` noise array (standard normals, dropped where their
      normal CDF falls below the rate).
  """
  kind: str
  hidden: Sequence[int]
  code_dim: int
  noise_dim: int = 0
  input_noise_std: float = 0.0
  input_dropout: float = 0.0
  num_classes: int = 0
  batch_norm: bool = False
  init_std: float = 0.0
  precision: str = 'float32'
  axis_name: str | None = None  # see MLP

  def noise_shapes(self, x_dim: int, train: bool) -> dict[str, tuple[int, ...]]:
    """Per-example shapes of the noise arrays ``__call__`` expects."""
    shapes = {}
    if train and self.input_noise_std > 0:
      shapes['input'] = (x_dim,)
    if train and self.input_dropout > 0:
      shapes['dropout'] = (x_dim,)
    if self.kind == 'gaussian' and train:
      shapes['latent'] = (self.code_dim,)
    if self.kind == 'universal':
      shapes['eta'] = (self.noise_dim,)
    return shapes

  @nn.compact
  def __call__(self, x, noise: dict[str, chex.Array] | None = None,
               train: bool = False) -> Code:
    """Encodes x (N, D). Without ``noise['latent']`` the Gaussian kind returns its mean."""
    noise = noise or {}
    chex.assert_rank(x, 2)
    n = x.shape[0]
    if 'input' in noise:
      chex.assert_equal_shape([noise['input'], x])
      x = x + self.input_noise_std * noise['input']
    if 'dropout' in noise:
      chex.assert_equal_shape([noise['dropout'], x])
      keep = jax.scipy.stats.norm.cdf(noise['dropout']) >= self.input_dropout
      x = jnp.where(keep, x / (1.0 - self.input_dropout), 0.0)
    if self.kind == 'universal':
      chex.assert_shape(noise['eta'], (n, self.noise_dim))
      x = jnp.concatenate([x, noise['eta']], axis=-1)
    out_dim = 2 * self.code_dim if self.kind == 'gaussian' else self.code_dim
    y_logits = None
    if self.num_classes:
      h = MLP(self.hidden, 0, self.init_std, self.batch_norm, self.precision,
              self.axis_name, name='mlp')(x, train)
      y_logits = dense(self.num_classes, self.init_std, 'y_head', self.precision)(h)
      chex.assert_shape(y_logits, (n, self.num_classes))
      h = dense(out_dim, self.init_std, 'z_head', self.precision)(h)
    else:
      h = MLP(self.hidden, out_dim, self.init_std, self.batch_norm, self.precision,
              self.axis_name, name='mlp')(x, train)
    if self.kind != 'gaussian':
      chex.assert_shape(h, (n, self.code_dim))
      return Code(z=h, y_logits=y_logits)
    mean, log_var = jnp.split(h, 2, axis=-1)
    z = mean
    if 'latent' in noise:
      chex.assert_equal_shape([noise['latent'], mean])
      z = mean + jnp.exp(0.5 * log_var) * noise['latent']
    return Code(z=z, mean=mean, log_var=log_var, y_logits=y_logits)


class Decoder(nn.Module):
  """p(x|h): returns logits (N, out_dim); the loss decides how to read them."""
  hidden: Sequence[int]
  out_dim: int
  init_std: float = 0.0
  batch_norm: bool = False
  precision: str = 'float32'
  axis_name: str | None = None  # see MLP

  @nn.compact
  def __call__(self, h, train: bool = False):
    logits = MLP(self.hidden, self.out_dim, self.init_std, self.batch_norm, self.precision,
                 self.axis_name, name='mlp')(h, train)
    chex.assert_shape(logits, (h.shape[0], self.out_dim))
    return logits


class Discriminator(nn.Module):
  """D(z) or D(z, c): one logit per example, "real" meaning drawn from the prior.

  Attributes:
    input_noise_std: std of Gaussian noise added to D's input (``noise`` array)
      at training time; public ports found it stabilises training.
  """
  hidden: Sequence[int]
  input_noise_std: float = 0.0
  init_std: float = 0.0
  precision: str = 'float32'

  @nn.compact
  def __call__(self, z, noise: chex.Array | None = None,
               condition: chex.Array | None = None):
    """``condition`` (N, C), e.g. a one-hot label, is concatenated to the (noisy) input."""
    chex.assert_rank(z, 2)
    if noise is not None and self.input_noise_std > 0:
      chex.assert_equal_shape([noise, z])
      z = z + self.input_noise_std * noise
    if condition is not None:
      chex.assert_rank(condition, 2)
      z = jnp.concatenate([z, condition], axis=-1)
    logits = MLP(self.hidden, 1, self.init_std, precision=self.precision, name='mlp')(z)[:, 0]
    chex.assert_shape(logits, (z.shape[0],))
    return logits


def _widths(value, field: str) -> tuple[int, ...]:
  if not (isinstance(value, (tuple, list)) and
          all(isinstance(w, int) and w > 0 for w in value)):
    raise errors.UserError(f'{field}={value!r} must be a tuple of layer widths, '
                           'such as (1000, 1000).')
  return tuple(value)


def from_config(model_config, data_dim: int, axis_name: str | None = None):
  """The (encoder, decoder, discriminator, disc_y) modules ``config.model`` describes.

  ``disc_y`` (the categorical discriminator on q(y|x)) is None unless
  ``model.num_classes`` > 0 and ``model.disc_y`` is True. ``axis_name``: the
  data-parallel axis batch norm averages over in training mode.
  """
  m = model_config
  hidden = _widths(m.hidden, 'model.hidden')
  disc_hidden = _widths(m.disc_hidden, 'model.disc_hidden')
  if m.encoder not in ENCODER_KINDS:
    raise errors.UserError(f'model.encoder={m.encoder!r} is not an encoder kind; '
                     f'choose one of {", ".join(ENCODER_KINDS)}.')
  if m.encoder == 'universal' and m.noise_dim <= 0:
    raise errors.UserError('model.encoder="universal" needs model.noise_dim > 0.')
  precision = precision_lib.resolve(m.precision)  # 'auto' picks; an unknown one is refused
  encoder = Encoder(kind=m.encoder, hidden=hidden, code_dim=m.code_dim,
                    noise_dim=m.noise_dim, input_noise_std=m.input_noise_std,
                    input_dropout=m.input_dropout, num_classes=m.num_classes,
                    batch_norm=m.batch_norm, init_std=m.init_std, precision=precision,
                    axis_name=axis_name)
  decoder = Decoder(hidden=hidden, out_dim=data_dim, init_std=m.init_std,
                    batch_norm=m.batch_norm, precision=precision, axis_name=axis_name)
  discriminator = Discriminator(hidden=disc_hidden,
                                input_noise_std=m.disc_input_noise_std,
                                init_std=m.init_std, precision=precision)
  disc_y = None
  if m.num_classes and m.disc_y:
    disc_y = Discriminator(hidden=disc_hidden, input_noise_std=m.disc_y_input_noise_std,
                           init_std=m.init_std, precision=precision)
  return encoder, decoder, discriminator, disc_y
