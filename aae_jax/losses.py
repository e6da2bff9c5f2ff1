"""Loss terms: keyword-only pure functions on arrays, no parameters inside.

Per-example terms return shape (N,) so callers choose how to reduce; the
adversarial terms return the batch mean.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def squared_error(*, predictions: chex.Array, targets: chex.Array) -> chex.Array:
  """Per-example sum of squared errors (the paper's Euclidean cost): (N,)."""
  chex.assert_equal_shape([predictions, targets])
  return jnp.sum(jnp.square(predictions - targets).reshape(targets.shape[0], -1), axis=-1)


def bernoulli_nll(*, logits: chex.Array, targets: chex.Array) -> chex.Array:
  """Per-example -log p(x|z) for pixels in [0, 1] under Bernoulli(sigmoid(logits)): (N,)."""
  chex.assert_equal_shape([logits, targets])
  nll = jax.nn.softplus(logits) - targets * logits  # stable sigmoid cross-entropy
  return jnp.sum(nll.reshape(targets.shape[0], -1), axis=-1)


def discriminator_loss(*, real_logits: chex.Array, fake_logits: chex.Array) -> chex.Array:
  """-log D(real) - log(1 - D(fake)), batch means; D = sigmoid(logits)."""
  chex.assert_rank([real_logits, fake_logits], 1)
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def generator_loss(*, fake_logits: chex.Array) -> chex.Array:
  """Non-saturating generator loss -log D(fake), batch mean."""
  chex.assert_rank(fake_logits, 1)
  return jnp.mean(jax.nn.softplus(-fake_logits))


def categorical_cross_entropy(*, logits: chex.Array, labels: chex.Array) -> chex.Array:
  """Per-example -log softmax(logits)[label] for integer labels: (N,)."""
  chex.assert_rank(logits, 2)
  chex.assert_shape(labels, (logits.shape[0],))
  log_p = jax.nn.log_softmax(logits)
  return -jnp.take_along_axis(log_p, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


def gaussian_kl(*, mean: chex.Array, log_var: chex.Array, prior_std: float = 1.0) -> chex.Array:
  """Per-example KL(N(mean, exp(log_var)) || N(0, prior_std^2 I)): (N,)."""
  chex.assert_equal_shape([mean, log_var])
  var_ratio = jnp.exp(log_var) / prior_std**2
  return 0.5 * jnp.sum(var_ratio + jnp.square(mean) / prior_std**2 - 1.0
                       - jnp.log(var_ratio), axis=-1)


def head_separation_cost(*, heads: chex.Array, threshold: float) -> chex.Array:
  """Sum over pairs of cluster heads (K, d) of max(0, threshold - distance) (paper section 7)."""
  chex.assert_rank(heads, 2)
  diff = heads[:, None, :] - heads[None, :, :]
  dist = jnp.sqrt(jnp.sum(diff**2, axis=-1) + 1e-12)
  pairs = 1.0 - jnp.eye(heads.shape[0])
  return 0.5 * jnp.sum(pairs * jax.nn.relu(threshold - dist))
