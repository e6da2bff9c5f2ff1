"""Priors: sample moments and label placement, log-densities against closed forms."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aae_jax import priors

KEY = jax.random.PRNGKey(0)
N = 200_000


def test_gaussian_moments_and_log_prob():
  prior = priors.Gaussian(dim=3, std=2.5)
  z = np.asarray(prior.sample(KEY, N))
  np.testing.assert_allclose(z.mean(0), 0.0, atol=0.03)
  np.testing.assert_allclose(np.cov(z, rowvar=False), 6.25 * np.eye(3), atol=0.08)
  x = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]])
  expected = (-0.5 * (x**2).sum(1) / 6.25 - 3 * math.log(2.5) - 1.5 * math.log(2 * math.pi))
  np.testing.assert_allclose(prior.log_prob(jnp.asarray(x)), expected, rtol=1e-5)


def test_uniform_moments_and_log_prob():
  prior = priors.Uniform(dim=2, low=-1.0, high=3.0)
  z = np.asarray(prior.sample(KEY, N))
  assert z.min() >= -1.0 and z.max() <= 3.0
  np.testing.assert_allclose(z.mean(0), 1.0, atol=0.02)
  np.testing.assert_allclose(z.var(0), 16 / 12, rtol=0.02)
  log_p = prior.log_prob(jnp.array([[0.0, 2.0], [3.5, 0.0]]))
  np.testing.assert_allclose(log_p[0], -2 * math.log(4.0), rtol=1e-6)
  assert log_p[1] == -np.inf


def _mass_on_grid(prior, half_width, points):
  """Riemann sum of exp(log_prob) over a square grid: 1 for a normalised 2-D density."""
  g = np.linspace(-half_width, half_width, points)
  xx, yy = np.meshgrid(g, g)
  grid = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)
  return np.exp(np.asarray(prior.log_prob(grid), np.float64)).sum() * (g[1] - g[0])**2


def _mog_brute_force(prior, z):
  """Mixture density with explicit covariance matrices, in NumPy float64."""
  total = np.zeros(len(z))
  for k in range(prior.num_components):
    a = 2 * np.pi * k / prior.num_components
    r = np.array([np.cos(a), np.sin(a)])
    t = np.array([-np.sin(a), np.cos(a)])
    cov = prior.radial_std**2 * np.outer(r, r) + prior.tangential_std**2 * np.outer(t, t)
    d = z - prior.radius * r
    quad = np.einsum('ni,ij,nj->n', d, np.linalg.inv(cov), d)
    total += np.exp(-0.5 * quad) / (2 * np.pi * np.sqrt(np.linalg.det(cov)))
  return np.log(total / prior.num_components)


def test_mixture_log_prob_matches_brute_force_and_normalises():
  prior = priors.MixtureOfGaussians()
  z = np.random.default_rng(0).normal(size=(50, 2)) * 4
  np.testing.assert_allclose(prior.log_prob(jnp.asarray(z, jnp.float32)),
                             _mog_brute_force(prior, z), rtol=1e-4, atol=1e-4)
  assert abs(_mass_on_grid(prior, half_width=9.0, points=601) - 1.0) < 2e-3


def test_mixture_labels_pick_their_component():
  prior = priors.MixtureOfGaussians()
  labels = jnp.arange(N) % 10
  z = prior.sample(KEY, N, labels=labels)
  nearest = jnp.argmax(prior.component_log_probs(z), axis=-1)
  assert float(jnp.mean(nearest == labels)) > 0.98
  for k in (0, 3, 7):
    a = 2 * np.pi * k / 10
    np.testing.assert_allclose(np.asarray(z[labels == k]).mean(0),
                               4.0 * np.array([np.cos(a), np.sin(a)]), atol=0.03)


def test_swiss_roll_log_prob_is_a_normalised_density_close_to_a_fine_quadrature():
  prior = priors.SwissRoll()
  fine = priors.SwissRoll(quadrature_points=100_000)
  z = prior.sample(KEY, 50)
  np.testing.assert_allclose(prior.log_prob(z), fine.log_prob(z), atol=2e-2)
  assert abs(_mass_on_grid(prior, half_width=3.6, points=181) - 1.0) < 1e-2


def test_swiss_roll_labels_pick_their_section():
  prior = priors.SwissRoll(noise_std=0.0)
  labels = jnp.arange(10_000) % 10
  z = np.asarray(prior.sample(KEY, 10_000, labels=labels))
  radius = np.linalg.norm(z, axis=1)
  # r = 3 sqrt(u) with u in [k/10, (k+1)/10) for label k.
  u = (radius / 3.0)**2
  np.testing.assert_array_equal(np.floor(u * 10 - 1e-6).clip(0, 9), np.asarray(labels))


def test_categorical_samples_and_log_prob():
  prior = priors.Categorical(dim=4)
  z = np.asarray(prior.sample(KEY, N))
  assert set(np.unique(z)) == {0.0, 1.0} and np.all(z.sum(1) == 1)
  np.testing.assert_allclose(z.mean(0), 0.25, atol=0.01)
  np.testing.assert_allclose(prior.log_prob(jnp.eye(4)), -math.log(4), rtol=1e-6)
  assert prior.log_prob(jnp.array([[0.5, 0.5, 0, 0]]))[0] == -np.inf
  np.testing.assert_array_equal(prior.sample(KEY, 3, labels=jnp.array([2, 0, 3])),
                                jnp.eye(4)[jnp.array([2, 0, 3])])


def test_labels_rejected_by_priors_without_components():
  with pytest.raises(ValueError, match='no components'):
    priors.Gaussian(dim=2).sample(KEY, 3, labels=jnp.zeros(3, jnp.int32))


def test_registry_names_the_choices_for_an_unknown_prior():
  with pytest.raises(ValueError, match=r"prior.name='gauss'.*gaussian"):
    priors.from_config(ml_collections.ConfigDict({'name': 'gauss'}))
