"""Per-example randomness: the same draws whatever the number of devices.

Every stochastic input of a step is drawn per example from a key folded with
that example's position in the global batch, so a run gives the same numbers on
one device or many, in one process or several.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


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


def linear_anneal(step, start: int, num_steps: int):
  """1 until ``start``, then a linear fall to 0 at ``start + num_steps``, then 0.

  A function of the step alone, so a resumed run draws the same scale.
  """
  return jnp.clip(1.0 - (step - start).astype(jnp.float32) / num_steps, 0.0, 1.0)
