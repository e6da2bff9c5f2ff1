"""Parzen-window log-likelihood of held-out data under a generator's samples.

The protocol of Goodfellow et al. (2014) used by the AAE paper (Table 1): fit an
isotropic Gaussian kernel density on generated samples, pick its width on a
validation split and report the mean log-likelihood of the test split with its
standard error.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from aae_jax import errors
from aae_jax import batching

DEFAULT_SIGMAS = np.logspace(-1, 0, 10)


def _as_matrix(name: str, a) -> jax.Array:
  """``a`` as a float32 (rows, features) array, refusing anything else."""
  a = jnp.asarray(a, jnp.float32)
  if a.ndim != 2:
    raise errors.UserError(f'parzen: {name} must be 2-D (rows, features), got shape '
                           f'{a.shape}; flatten images with .reshape(len(x), -1)')
  if a.shape[0] == 0 or a.shape[1] == 0:
    raise errors.UserError(f'parzen: {name} is empty (shape {a.shape})')
  return a


def _as_sigmas(sigmas) -> np.ndarray:
  """Kernel widths as a non-empty 1-D float array of positive finite values."""
  sigmas = np.atleast_1d(np.asarray(sigmas, np.float64))
  if sigmas.ndim != 1 or sigmas.size == 0:
    raise errors.UserError(f'parzen: sigmas must be a non-empty 1-D list, got shape '
                           f'{sigmas.shape}')
  if not np.all(np.isfinite(sigmas) & (sigmas > 0)):
    raise errors.UserError(f'parzen: sigmas must be positive and finite, got {sigmas}')
  return sigmas


def _check_batch(name: str, value) -> int:
  if int(value) != value or value < 1:
    raise errors.UserError(f'parzen: {name} must be a positive integer, got {value}')
  return int(value)


def _check_features(samples: jax.Array, name: str, x: jax.Array) -> None:
  if x.shape[1] != samples.shape[1]:
    raise errors.UserError(f'parzen: {name} has {x.shape[1]} features but samples have '
                           f'{samples.shape[1]}')


def _chunk_samples(samples: jax.Array, sample_batch: int) -> tuple[jax.Array, jax.Array]:
  """Samples padded to whole chunks, (C, sample_batch, D), and which rows are real."""
  m = samples.shape[0]
  num_chunks = -(-m // sample_batch)
  pad = num_chunks * sample_batch - m
  chunks = jnp.pad(samples, [(0, pad), (0, 0)]).reshape(num_chunks, sample_batch, -1)
  real = (jnp.arange(num_chunks * sample_batch) < m).reshape(num_chunks, sample_batch)
  return chunks, real


def _squared_distances(x: jax.Array, x_sq: jax.Array, s: jax.Array,
                       s_sq: jax.Array) -> jax.Array:
  """|x - s|^2 for all pairs, (B, S), through |x|^2 + |s|^2 - 2 x.s, clamped at 0."""
  cross = jnp.dot(x, s.T, precision=jax.lax.Precision.HIGHEST)
  return jnp.maximum(x_sq[:, None] + s_sq[None, :] - 2.0 * cross, 0.0)


@functools.partial(jax.jit, static_argnames=('x_batch', 'sample_batch'))
def _log_likelihoods(samples: jax.Array, x: jax.Array, sigmas: jax.Array, x_batch: int,
                     sample_batch: int) -> jax.Array:
  """Jitted core of :func:`log_likelihoods`: x in row batches, samples in chunks."""
  m, d = samples.shape
  chunks, real = _chunk_samples(samples, sample_batch)
  chunks_sq = jnp.sum(jnp.square(chunks), axis=-1)
  inv_two_var = 0.5 / jnp.square(sigmas)

  def rows(batch):
    (xb,) = batch
    xb_sq = jnp.sum(jnp.square(xb), axis=-1)

    def step(acc, chunk):
      s, s_sq, is_real = chunk
      d2 = _squared_distances(xb, xb_sq, s, s_sq)
      log_k = -d2[:, :, None] * inv_two_var  # (B, S, K): every sigma from one distance
      log_k = jnp.where(is_real[None, :, None], log_k, -jnp.inf)
      return jnp.logaddexp(acc, jax.nn.logsumexp(log_k, axis=1)), None

    init = jnp.full((xb.shape[0], sigmas.shape[0]), -jnp.inf, xb.dtype)
    acc, _ = jax.lax.scan(step, init, (chunks, chunks_sq, real))
    return acc

  log_sum = batching.batched(rows, (x,), x_batch)
  log_norm = jnp.log(float(m)) + 0.5 * d * jnp.log(2.0 * jnp.pi * jnp.square(sigmas))
  return log_sum - log_norm


def log_likelihoods(samples, x, sigmas, *, x_batch: int = 500,
                    sample_batch: int = 1000) -> jax.Array:
  """Per-example Parzen-window log-likelihoods for each kernel width.

  Entry (n, k) is log (1/M) sum_m N(x_n; samples_m, sigma_k^2 I). Computed on the
  device with x in batches of ``x_batch`` rows and the samples in chunks of
  ``sample_batch``, combined by a running log-sum-exp, so memory is bounded by
  one (x_batch, sample_batch, K) block.

  Args:
    samples: (M, D) kernel centres, e.g. generated images flattened.
    x: (N, D) points to score.
    sigmas: (K,) kernel widths, or one width.
    x_batch: rows of ``x`` per batch.
    sample_batch: samples per chunk.

  Returns:
    A float32 (N, K) array.

  Raises:
    errors.UserError: on empty or non-2-D inputs, mismatched feature dimensions,
      non-positive widths or batch sizes.
  """
  samples = _as_matrix('samples', samples)
  x = _as_matrix('x', x)
  _check_features(samples, 'x', x)
  sigmas = jnp.asarray(_as_sigmas(sigmas), jnp.float32)
  # No point padding a small input up to a large batch.
  x_batch = min(_check_batch('x_batch', x_batch), x.shape[0])
  sample_batch = min(_check_batch('sample_batch', sample_batch), samples.shape[0])
  return _log_likelihoods(samples, x, sigmas, x_batch=x_batch, sample_batch=sample_batch)


def select_sigma(samples, valid_x, sigmas=DEFAULT_SIGMAS, **batch_sizes
                 ) -> tuple[float, np.ndarray]:
  """The kernel width with the highest mean validation log-likelihood.

  Args:
    samples: (M, D) kernel centres.
    valid_x: (N, D) validation points.
    sigmas: (K,) candidate widths.
    **batch_sizes: ``x_batch`` / ``sample_batch`` for :func:`log_likelihoods`.

  Returns:
    The chosen width and the (K,) mean validation log-likelihood of every width.
  """
  sigmas = _as_sigmas(sigmas)
  ll = np.asarray(log_likelihoods(samples, valid_x, sigmas, **batch_sizes), np.float64)
  means = ll.mean(axis=0)
  return float(sigmas[int(np.argmax(means))]), means


def parzen_estimate(samples, valid_x, test_x, sigmas=DEFAULT_SIGMAS,
                    **batch_sizes) -> dict[str, float]:
  """The Parzen-window estimate of Goodfellow et al. (2014): width from valid, LL on test.

  Args:
    samples: (M, D) kernel centres.
    valid_x: (N_valid, D) points that choose the width.
    test_x: (N_test, D) points that are scored.
    sigmas: (K,) candidate widths.
    **batch_sizes: ``x_batch`` / ``sample_batch`` for :func:`log_likelihoods`.

  Returns:
    ``ll``: mean test log-likelihood at the chosen width; ``se``: its standard error,
    std / sqrt(N_test); ``sigma``: the chosen width; ``valid_ll``: the best mean
    validation log-likelihood. All plain floats.
  """
  samples = _as_matrix('samples', samples)
  test_x = _as_matrix('test_x', test_x)
  _check_features(samples, 'test_x', test_x)
  valid_x = _as_matrix('valid_x', valid_x)
  _check_features(samples, 'valid_x', valid_x)
  sigma, valid_means = select_sigma(samples, valid_x, sigmas, **batch_sizes)
  ll = np.asarray(log_likelihoods(samples, test_x, sigma, **batch_sizes), np.float64)[:, 0]
  return {
      'll': float(ll.mean()),
      'se': float(ll.std() / np.sqrt(len(ll))),
      'sigma': sigma,
      'valid_ll': float(valid_means.max()),
  }
