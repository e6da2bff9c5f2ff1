"""Loss terms against direct formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aae_jax import losses

RNG = np.random.default_rng(0)


def test_bernoulli_nll_matches_the_naive_formula_and_is_stable():
  logits = RNG.normal(size=(4, 6)) * 3
  x = RNG.uniform(size=(4, 6))
  p = 1 / (1 + np.exp(-logits))
  expected = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(1)
  got = losses.bernoulli_nll(logits=jnp.asarray(logits), targets=jnp.asarray(x))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  extreme = losses.bernoulli_nll(logits=jnp.array([[500.0, -500.0]]),
                                 targets=jnp.array([[1.0, 0.0]]))
  np.testing.assert_allclose(extreme, [0.0], atol=1e-6)


def test_squared_error_is_per_example_sum():
  a, b = RNG.normal(size=(3, 2, 5)), RNG.normal(size=(3, 2, 5))
  got = losses.squared_error(predictions=jnp.asarray(a), targets=jnp.asarray(b))
  np.testing.assert_allclose(got, ((a - b)**2).reshape(3, -1).sum(1), rtol=1e-5)


def test_discriminator_and_generator_losses():
  real, fake = RNG.normal(size=7), RNG.normal(size=5)
  sig = lambda v: 1 / (1 + np.exp(-v))
  expected = -np.log(sig(real)).mean() - np.log(1 - sig(fake)).mean()
  got = losses.discriminator_loss(real_logits=jnp.asarray(real), fake_logits=jnp.asarray(fake))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # An undecided discriminator pays log 4; the non-saturating generator log 2.
  np.testing.assert_allclose(losses.discriminator_loss(real_logits=jnp.zeros(3),
                                                       fake_logits=jnp.zeros(3)), math.log(4))
  np.testing.assert_allclose(losses.generator_loss(fake_logits=jnp.asarray(fake)),
                             -np.log(sig(fake)).mean(), rtol=1e-5)


def test_categorical_cross_entropy():
  logits = RNG.normal(size=(5, 4))
  labels = np.array([0, 3, 1, 1, 2])
  p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  got = losses.categorical_cross_entropy(logits=jnp.asarray(logits), labels=jnp.asarray(labels))
  np.testing.assert_allclose(got, -np.log(p[np.arange(5), labels]), rtol=1e-5)


def test_gaussian_kl_closed_form_and_monte_carlo():
  mean, log_var = np.array([[0.3, -1.0]]), np.array([[0.2, -0.5]])
  got = float(losses.gaussian_kl(mean=jnp.asarray(mean), log_var=jnp.asarray(log_var),
                                 prior_std=2.0)[0])
  # Monte Carlo E_q[log q - log p] with 10^6 samples.
  std = np.exp(0.5 * log_var)
  z = mean + std * RNG.normal(size=(1_000_000, 2))
  log_q = (-0.5 * ((z - mean) / std)**2 - np.log(std)).sum(1)
  log_p = (-0.5 * (z / 2.0)**2 - np.log(2.0)).sum(1)
  assert abs(got - (log_q - log_p).mean()) < 5e-3
  zero = losses.gaussian_kl(mean=jnp.zeros((1, 3)), log_var=jnp.full((1, 3), 2 * math.log(2.0)),
                            prior_std=2.0)
  np.testing.assert_allclose(zero, [0.0], atol=1e-6)


def test_shapes_are_checked():
  with pytest.raises(AssertionError):
    losses.bernoulli_nll(logits=jnp.zeros((2, 3)), targets=jnp.zeros((2, 4)))


def test_head_separation_cost():
  cost = lambda heads: losses.head_separation_cost(heads=heads, threshold=3.0)
  near = jnp.array([[0.0, 0.0], [1.0, 0.0]])
  assert float(cost(near)) == pytest.approx(2.0, abs=1e-5)
  far = jnp.array([[0.0, 0.0], [10.0, 0.0], [0.0, -10.0]])
  assert float(cost(far)) == 0.0
  three = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
  want = (3 - 1) + (3 - 2) + (3 - math.sqrt(5))  # each pair once
  assert float(cost(three)) == pytest.approx(want, abs=1e-5)
  # Its gradient pushes close heads apart.
  grad = jax.grad(cost)(near)
  np.testing.assert_allclose(grad, [[1.0, 0.0], [-1.0, 0.0]], atol=1e-5)
