"""Parzen-window log-likelihood: brute force agreement, width selection, batching, errors."""

import numpy as np
import pytest

from aae_jax import errors
from aae_jax import parzen

SIGMAS = np.array([0.1, 0.2, 0.45, 1.0])


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
  top = a.max(axis=axis, keepdims=True)
  return np.squeeze(top, axis) + np.log(np.exp(a - top).sum(axis=axis))


def _brute_force(samples, x, sigmas) -> np.ndarray:
  """log (1/M) sum_m N(x_n; s_m, sigma^2 I) in float64, every (n, m, k) at once."""
  samples, x = samples.astype(np.float64), x.astype(np.float64)
  d2 = ((x[:, None, :] - samples[None, :, :])**2).sum(-1)  # (N, M)
  var = np.asarray(sigmas, np.float64)**2
  log_k = -d2[:, :, None] / (2 * var) - 0.5 * x.shape[1] * np.log(2 * np.pi * var)
  return _logsumexp(log_k, axis=1) - np.log(samples.shape[0])


def _random_data(seed=0, m=300, n=70, d=20):
  rng = np.random.default_rng(seed)
  return (rng.uniform(size=(m, d)).astype(np.float32),
          rng.uniform(size=(n, d)).astype(np.float32))


def test_matches_brute_force_with_padding():
  samples, x = _random_data()
  # 300 samples in chunks of 128 and 70 rows in batches of 32: both get padded.
  ll = np.asarray(parzen.log_likelihoods(samples, x, SIGMAS, x_batch=32, sample_batch=128))
  assert ll.shape == (70, len(SIGMAS))
  # atol for the entries that happen to lie near 0, where float32 rounding is not relative.
  np.testing.assert_allclose(ll, _brute_force(samples, x, SIGMAS), rtol=1e-4, atol=1e-4)


def test_result_does_not_depend_on_batch_sizes():
  samples, x = _random_data(seed=1)
  reference = np.asarray(parzen.log_likelihoods(samples, x, SIGMAS))  # one batch, one chunk
  for x_batch, sample_batch in ((1, 7), (13, 299), (70, 1), (64, 256)):
    ll = parzen.log_likelihoods(samples, x, SIGMAS, x_batch=x_batch,
                                sample_batch=sample_batch)
    np.testing.assert_allclose(ll, reference, rtol=1e-5, atol=1e-4,
                               err_msg=f'x_batch={x_batch} sample_batch={sample_batch}')


def _separated_case(noise_std, seed, m=20, n=60, d=100):
  """Samples far apart; valid and test points are samples plus N(0, noise_std^2 I)."""
  rng = np.random.default_rng(seed)
  samples = rng.uniform(0, 10, size=(m, d)).astype(np.float32)

  def near(k):
    return (samples[rng.integers(0, m, size=k)] +
            noise_std * rng.standard_normal((k, d))).astype(np.float32)

  return samples, near(n), near(n)


@pytest.mark.parametrize('index', [2, 4, 7])
def test_selects_the_noise_width(index):
  true_sigma = parzen.DEFAULT_SIGMAS[index]
  samples, valid_x, _ = _separated_case(true_sigma, seed=index)
  sigma, means = parzen.select_sigma(samples, valid_x)
  assert sigma == true_sigma
  assert means.shape == (len(parzen.DEFAULT_SIGMAS),)
  assert int(np.argmax(means)) == index


def test_estimate_is_the_test_mean_and_standard_error_at_the_chosen_width():
  samples, valid_x, test_x = _separated_case(parzen.DEFAULT_SIGMAS[5], seed=3)
  out = parzen.parzen_estimate(samples, valid_x, test_x)
  assert set(out) == {'ll', 'se', 'sigma', 'valid_ll'}
  assert all(type(v) is float for v in out.values())  # pylint: disable=unidiomatic-typecheck
  index = int(np.argmin(np.abs(parzen.DEFAULT_SIGMAS - out['sigma'])))
  assert out['sigma'] == parzen.DEFAULT_SIGMAS[index] == parzen.DEFAULT_SIGMAS[5]
  test_ll = np.asarray(parzen.log_likelihoods(samples, test_x, parzen.DEFAULT_SIGMAS),
                       np.float64)[:, index]
  valid_ll = np.asarray(parzen.log_likelihoods(samples, valid_x, parzen.DEFAULT_SIGMAS),
                        np.float64).mean(0)
  np.testing.assert_allclose(out['ll'], test_ll.mean(), rtol=1e-6)
  np.testing.assert_allclose(out['se'], test_ll.std() / np.sqrt(len(test_ll)), rtol=1e-4)
  np.testing.assert_allclose(out['valid_ll'], valid_ll.max(), rtol=1e-6)
  assert out['se'] > 0


def test_accepts_jax_arrays():
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  samples, x = _random_data(seed=2, m=40, n=9, d=5)
  np.testing.assert_allclose(parzen.log_likelihoods(jnp.asarray(samples), jnp.asarray(x), 0.3),
                             parzen.log_likelihoods(samples, x, [0.3]), rtol=1e-6)


def test_refuses_bad_inputs():
  samples, x = _random_data(m=10, n=5, d=4)
  with pytest.raises(errors.UserError, match='3 features but samples have 4'):
    parzen.log_likelihoods(samples, x[:, :3], SIGMAS)
  with pytest.raises(errors.UserError, match='test_x has 3 features'):
    parzen.parzen_estimate(samples, x, x[:, :3])
  with pytest.raises(errors.UserError, match='valid_x has 5 features'):
    parzen.parzen_estimate(samples, np.zeros((5, 5)), x)
  with pytest.raises(errors.UserError, match='empty'):
    parzen.log_likelihoods(samples[:0], x, SIGMAS)
  with pytest.raises(errors.UserError, match='empty'):
    parzen.parzen_estimate(samples, x, x[:0])
  with pytest.raises(errors.UserError, match='2-D'):
    parzen.log_likelihoods(samples.reshape(10, 2, 2), x, SIGMAS)
  with pytest.raises(errors.UserError, match='positive'):
    parzen.log_likelihoods(samples, x, [0.1, 0.0])
  with pytest.raises(errors.UserError, match='non-empty'):
    parzen.log_likelihoods(samples, x, [])
  with pytest.raises(errors.UserError, match='x_batch'):
    parzen.log_likelihoods(samples, x, SIGMAS, x_batch=0)
