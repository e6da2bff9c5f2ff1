"""Mapping a jitted function over row batches of large arrays."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def batched(fn, arrays: tuple, batch_size: int):
  """Maps ``fn`` over row batches of ``arrays`` with ``lax.map``, padding the tail.

  Keeps memory bounded on large splits; returns ``fn``'s outputs for all rows.
  """
  n = arrays[0].shape[0]
  num_batches = -(-n // batch_size)
  pad = num_batches * batch_size - n

  def split(a):
    a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
    return a.reshape((num_batches, batch_size) + a.shape[1:])

  out = jax.lax.map(fn, tuple(split(a) for a in arrays))
  return jax.tree.map(lambda y: y.reshape((-1,) + y.shape[2:])[:n], out)
