"""Priors p(z): each is a sampler plus a log-density, nothing else.

Every prior has ``sample(key, n, labels=None) -> (n, dim)`` and
``log_prob(z) -> (n,)``. For the label-aware experiments, the mixture and the
swiss roll take ``labels`` (ints in ``[0, num_components)``) that pick each
sample's component or section.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol

import chex
import jax
import jax.numpy as jnp
import numpy as np

from aae_jax import errors


class Prior(Protocol):
  name: str
  dim: int
  num_components: int  # label-selectable parts; 0 where labels mean nothing

  def sample(self, key: chex.PRNGKey, n: int,
             labels: chex.Array | None = None) -> chex.Array:
    ...

  def log_prob(self, z: chex.Array) -> chex.Array:
    ...


def _check_labels(prior, labels, n):
  if labels is not None:
    if not prior.num_components:
      raise ValueError(f'prior {prior.name!r} has no components to pick with labels')
    chex.assert_shape(labels, (n,))


def _gaussian_log_prob(z, mean, std):
  d = z.shape[-1]
  return (-0.5 * jnp.sum(jnp.square((z - mean) / std), axis=-1)
          - d * jnp.log(std) - 0.5 * d * math.log(2 * math.pi))


@dataclasses.dataclass(frozen=True)
class Gaussian:
  """Isotropic N(0, std^2 I)."""
  dim: int
  std: float = 1.0
  name: str = 'gaussian'
  num_components: int = 0

  def sample(self, key, n, labels=None):
    _check_labels(self, labels, n)
    return self.std * jax.random.normal(key, (n, self.dim))

  def log_prob(self, z):
    chex.assert_shape(z, (None, self.dim))
    return _gaussian_log_prob(z, 0.0, self.std)


@dataclasses.dataclass(frozen=True)
class Uniform:
  """Uniform on the box [low, high]^dim."""
  dim: int
  low: float = -1.0
  high: float = 1.0
  name: str = 'uniform'
  num_components: int = 0

  def sample(self, key, n, labels=None):
    _check_labels(self, labels, n)
    return jax.random.uniform(key, (n, self.dim), minval=self.low, maxval=self.high)

  def log_prob(self, z):
    chex.assert_shape(z, (None, self.dim))
    inside = jnp.all((z >= self.low) & (z <= self.high), axis=-1)
    return jnp.where(inside, -self.dim * math.log(self.high - self.low), -jnp.inf)


@dataclasses.dataclass(frozen=True)
class MixtureOfGaussians:
  """Equal-weight mixture of 2-D Gaussians spread around a circle (Fig 2b/3).

  Component k sits at angle 2*pi*k/K and radius ``radius``; its covariance is
  elongated along the radius (``radial_std``) and thin across (``tangential_std``).
  """
  num_components: int = 10
  radius: float = 4.0
  radial_std: float = 1.0
  tangential_std: float = 0.25
  dim: int = 2
  name: str = 'mog'

  def _frames(self):
    angles = 2 * jnp.pi * jnp.arange(self.num_components) / self.num_components
    radial = jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)  # (K, 2)
    tangential = jnp.stack([-radial[:, 1], radial[:, 0]], axis=-1)
    return self.radius * radial, radial, tangential

  def sample(self, key, n, labels=None):
    _check_labels(self, labels, n)
    k_comp, k_eps = jax.random.split(key)
    if labels is None:
      labels = jax.random.randint(k_comp, (n,), 0, self.num_components)
    means, radial, tangential = self._frames()
    eps = jax.random.normal(k_eps, (n, 2))
    return (means[labels] + self.radial_std * eps[:, :1] * radial[labels]
            + self.tangential_std * eps[:, 1:] * tangential[labels])

  def component_log_probs(self, z):
    """log p(z | component k) for every k: (n, K)."""
    chex.assert_shape(z, (None, 2))
    means, radial, tangential = self._frames()
    d = z[:, None, :] - means[None]
    u = jnp.sum(d * radial[None], axis=-1) / self.radial_std
    v = jnp.sum(d * tangential[None], axis=-1) / self.tangential_std
    return (-0.5 * (u**2 + v**2) - math.log(self.radial_std * self.tangential_std)
            - math.log(2 * math.pi))

  def log_prob(self, z):
    return (jax.nn.logsumexp(self.component_log_probs(z), axis=-1)
            - math.log(self.num_components))


@dataclasses.dataclass(frozen=True)
class SwissRoll:
  """A 2-D swiss roll: a spiral curve blurred by isotropic Gaussian noise.

  The curve is c(u) = r(u) (cos 4 pi sqrt(u), sin 4 pi sqrt(u)) with
  r(u) = ``scale`` * sqrt(u), u ~ Uniform(0, 1); label k draws u from the k-th
  of ``num_components`` equal sections. We define the density as the curve's
  distribution convolved with N(0, ``noise_std``^2 I):

      p(z) = integral_0^1 N(z; c(u), noise_std^2 I) du,

  which has no closed form. ``log_prob`` evaluates it by the midpoint rule with
  ``quadrature_points`` nodes in u (log-sum-exp over nodes minus log of their
  number); tests check it against a much finer grid.
  """
  num_components: int = 10
  scale: float = 3.0
  noise_std: float = 0.1
  quadrature_points: int = 4000
  dim: int = 2
  name: str = 'swiss_roll'

  def curve(self, u):
    radius = self.scale * jnp.sqrt(u)
    angle = 4 * jnp.pi * jnp.sqrt(u)
    return jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)], axis=-1)

  def sample(self, key, n, labels=None):
    _check_labels(self, labels, n)
    k_u, k_eps = jax.random.split(key)
    u = jax.random.uniform(k_u, (n,))
    if labels is not None:
      u = (labels + u) / self.num_components
    return self.curve(u) + self.noise_std * jax.random.normal(k_eps, (n, 2))

  def _log_kernel(self, z):
    chex.assert_shape(z, (None, 2))
    m = self.quadrature_points
    nodes = self.curve((jnp.arange(m) + 0.5) / m)  # (m, 2)
    return _gaussian_log_prob(z[:, None, :], nodes[None], self.noise_std)

  def log_prob(self, z):
    log_kernel = self._log_kernel(z)
    return jax.nn.logsumexp(log_kernel, axis=-1) - math.log(log_kernel.shape[-1])

  def component_log_probs(self, z):
    """log p(z | section k) for every k: (n, K), by the same quadrature per section."""
    k = self.num_components
    if self.quadrature_points % k:
      raise ValueError(f'quadrature_points={self.quadrature_points} must be a multiple '
                       f'of num_components={k}')
    log_kernel = self._log_kernel(z).reshape(z.shape[0], k, -1)
    return jax.nn.logsumexp(log_kernel, axis=-1) - math.log(log_kernel.shape[-1])


@dataclasses.dataclass(frozen=True)
class Categorical:
  """Uniform categorical over ``dim`` classes, as one-hot vectors."""
  dim: int = 10
  name: str = 'categorical'

  @property
  def num_components(self):
    return self.dim

  def sample(self, key, n, labels=None):
    _check_labels(self, labels, n)
    if labels is None:
      labels = jax.random.randint(key, (n,), 0, self.dim)
    return jax.nn.one_hot(labels, self.dim)

  def log_prob(self, z):
    chex.assert_shape(z, (None, self.dim))
    is_one_hot = jnp.all((z == 0) | (z == 1), axis=-1) & (jnp.sum(z, axis=-1) == 1)
    return jnp.where(is_one_hot, -math.log(self.dim), -jnp.inf)


# prior name -> (its class, the fields a config sets); every other field of the
# class keeps its default.
_REGISTRY = {
    'gaussian': (Gaussian, ('dim', 'std')),
    'uniform': (Uniform, ('dim', 'low', 'high')),
    'mog': (MixtureOfGaussians, ('num_components', 'radius', 'radial_std', 'tangential_std')),
    'swiss_roll': (SwissRoll, ('num_components', 'scale', 'noise_std')),
    'categorical': (Categorical, ('dim',)),
}
NAMES = tuple(_REGISTRY)


def _known(name: str):
  if name not in _REGISTRY:
    raise errors.UserError(f'prior.name={name!r} is not a prior; choose one of '
                           f'{", ".join(NAMES)}.')
  return _REGISTRY[name]


def default_config(name: str, **fields) -> dict:
  """``config.prior`` for prior ``name``: its name and its fields, at their defaults
  unless given. A field the prior does not have is an error."""
  cls, names = _known(name)
  unknown = sorted(set(fields) - set(names))
  if unknown:
    raise ValueError(f'prior {name!r} has no field {", ".join(unknown)}; '
                     f'its fields: {", ".join(names)}.')
  defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.name in names}
  return {'name': name, **defaults, **fields}


def from_config(prior_config) -> Prior:
  """Builds the prior that ``config.prior`` names, from exactly that prior's fields.

  A field of another prior (``--config.prior.radius=9`` on the Gaussian), or a
  missing one, is a user error: nothing is silently ignored.
  """
  cls, names = _known(prior_config.name)
  given = set(prior_config.keys()) - {'name'}
  if given != set(names):
    extra, missing = sorted(given - set(names)), sorted(set(names) - given)
    problem = '; '.join(
        ([f'it has no field {", ".join(extra)}'] if extra else []) +
        ([f'{", ".join(missing)} missing'] if missing else []))
    raise errors.UserError(
        f'config.prior does not fit prior.name={prior_config.name!r} ({problem}): its '
        f'fields are {", ".join(names)}. Build it with configs.common.prior('
        f'{prior_config.name!r}, ...) in the config file rather than changing prior.name '
        'alone.')
  return cls(**{n: prior_config[n] for n in names})


def moments(prior: Prior, key: chex.PRNGKey, n: int = 200_000):
  """Monte Carlo mean and covariance of the prior (reference for eval metrics)."""
  z = np.asarray(prior.sample(key, n), np.float64)
  return z.mean(axis=0), np.cov(z, rowvar=False).reshape(prior.dim, prior.dim)
