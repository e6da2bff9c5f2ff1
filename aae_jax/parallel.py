"""Data parallelism over a 1-D ``'batch'`` mesh of all devices of all processes.

The train step is written per device, with explicit ``lax.pmean`` over
``AXIS`` (``pmean``: left out on one device). ``DataParallel.compile`` turns it into one program either with
``jax.jit`` over ``jax.shard_map`` (default) or with ``jax.pmap``. The state is
replicated; the training set's rows are split over the devices
(``shard_rows``), and each step gathers its global batch from them
(``gather_rows``), each device keeping its contiguous share.

Multi-process runs (``distributed.py``) use the same code: the mesh spans every
process's devices, each process puts on its own devices only their rows of the
training set (``jax.make_array_from_process_local_data``), and replicated trees
are built from each process's identical host copy.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from aae_jax import errors

AXIS = 'batch'
BACKENDS = ('shard_map', 'pmap')


class DataParallel:
  """Compiles per-device functions and moves trees to and from the devices.

  In both backends the user-facing ("host") form of a tree is the unreplicated
  one; ``replicate`` gives the form the compiled function takes and
  ``unreplicate`` gives back a replicated global array, readable with
  ``jax.device_get`` in every process and saved by Orbax with every process
  taking part.

  shard_map takes global arrays (replicated, or split by rows over the whole
  mesh). pmap keeps its own multi-process model: each process passes and gets
  back process-local arrays whose leading axis runs over its local devices.
  """

  def __init__(self, backend: str = 'shard_map', devices: Sequence[Any] | None = None):
    if backend not in BACKENDS:
      raise errors.UserError(f'parallel.backend={backend!r}: choose one of {", ".join(BACKENDS)}.')
    self.backend = backend
    if devices is None:
      # Each process's devices adjacent in the mesh: its rows of the training
      # set are then one contiguous block (see shard_rows).
      devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    self.devices = list(devices)
    self.mesh = Mesh(np.array(self.devices), (AXIS,))
    self.replicated = NamedSharding(self.mesh, P())
    me = jax.process_index()
    self._local = [i for i, d in enumerate(self.devices) if d.process_index == me]
    local_mesh = Mesh(np.array([self.devices[i] for i in self._local]), (AXIS,))
    self._split = NamedSharding(self.mesh, P(AXIS))  # shard_map: rows over all devices
    self._stacked = NamedSharding(local_mesh, P(AXIS))  # pmap: leading local-device axis

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  @property
  def num_processes(self) -> int:
    return len({d.process_index for d in self.devices})

  def check_batch_size(self, batch_size: int) -> None:
    if batch_size % self.num_devices:
      processes = f' of {self.num_processes} processes' if self.num_processes > 1 else ''
      raise errors.UserError(
          f'batch_size={batch_size} is not divisible by the {self.num_devices} '
          f'devices{processes}; choose a multiple of the device count.')

  def _global_replicated(self, x: np.ndarray) -> jax.Array:
    return jax.make_array_from_callback(x.shape, self.replicated,
                                        lambda index: np.asarray(x[index]))

  def replicate(self, tree):
    """Every device gets the whole tree, each process supplying it from its own copy.

    All processes must pass equal values (they do: the state is built from the
    seed, or restored from the same checkpoint).
    """
    def put(x):
      x = np.asarray(x)
      if self.backend == 'shard_map':
        return self._global_replicated(x)
      return jax.device_put(np.broadcast_to(x, (len(self._local),) + x.shape), self._stacked)

    return jax.tree.map(put, jax.device_get(tree))

  def unreplicate(self, tree):
    if self.backend == 'shard_map':
      return tree
    return jax.tree.map(lambda x: self._global_replicated(np.asarray(x.addressable_data(0))[0]),
                        tree)

  def shard_rows(self, array: np.ndarray) -> jax.Array:
    """Splits ``array``'s rows over the devices: device i holds rows [i*r, (i+1)*r).

    ``r`` is ``ceil(len(array) / num_devices)``; the last device's rows are
    padded with zeros (never read: batches index only real rows). This process
    puts only its own devices' rows on them (shard_map:
    ``jax.make_array_from_process_local_data``; pmap: a process-local
    ``(local devices, r, ...)`` array).
    """
    per = -(-len(array) // self.num_devices)
    rows = []
    for i in self._local:
      block = np.asarray(array[i * per:(i + 1) * per])
      rows.append(np.pad(block, [(0, per - len(block))] + [(0, 0)] * (block.ndim - 1)))
    if self.backend == 'pmap':
      return jax.device_put(np.stack(rows), self._stacked)
    return jax.make_array_from_process_local_data(
        self._split, np.concatenate(rows), (self.num_devices * per,) + array.shape[1:])

  def compile(self, per_device: Callable, donate_argnums=(0,), sharded_argnums=()) -> Callable:
    """Compiles ``per_device(*args) -> (state, aux)``.

    Arguments in ``sharded_argnums`` come from ``shard_rows`` (each device
    sees its rows); the others from ``replicate``. The returned function
    returns the state in replicated form and ``aux`` (metrics) unreplicated.
    """
    if self.backend == 'shard_map':
      program = functools.cache(lambda num_args: self.shard_map_program(
          per_device, num_args, sharded_argnums, donate_argnums))
      return lambda *args: program(len(args))(*args)
    mapped = jax.pmap(per_device, axis_name=AXIS, devices=self.devices,
                      donate_argnums=donate_argnums)

    def run(*args):
      state, aux = mapped(*args)
      return state, jax.tree.map(lambda x: x[0], aux)

    return run


  def shard_map_program(self, per_device: Callable, num_args: int, sharded_argnums=(),
                        donate_argnums=()):
    """``jax.jit`` of ``jax.shard_map`` of ``per_device``, still lowerable.

    Arguments in ``sharded_argnums`` are split by rows over ``AXIS``, the others
    replicated; outputs are replicated.
    """
    specs = tuple(P(AXIS) if i in sharded_argnums else P() for i in range(num_args))
    # check_vma=False gives pmap's semantics: the body's explicit pmean is the
    # only reduction. With it on, differentiating replicated parameters inside
    # the body would already psum their gradients, and the pmean would then
    # average gradients that are num_devices times too large.
    body = jax.shard_map(per_device, mesh=self.mesh, in_specs=specs, out_specs=P(),
                         check_vma=False)
    return jax.jit(body, donate_argnums=donate_argnums)


def pmean(tree):
  """``lax.pmean`` over ``AXIS``; the tree itself on one device.

  A one-device all-reduce is not free in XLA's CPU runtime: it copied the
  gradients, about 4 % of an ``mnist_parzen`` step (docs/performance.md).
  """
  if jax.lax.axis_size(AXIS) == 1:
    return tree
  return jax.lax.pmean(tree, AXIS)


def gather_rows(tree, indices: jax.Array):
  """Rows ``indices`` of arrays whose rows are split over ``AXIS``; this device's share.

  Call inside a per-device function. ``tree`` holds this device's rows (as
  from ``DataParallel.shard_rows``); ``indices`` (the same on every device) are
  global row numbers. Returns the selected rows' contiguous ``1/num_devices``
  share for this device, so the global batch does not depend on the device
  count. Each device fills the rows it owns and zeros elsewhere, and a
  ``psum_scatter`` adds them: exact, since every sum has one non-zero term.
  Traffic per step is the size of the global batch.
  """
  if jax.lax.axis_size(AXIS) == 1:  # one device holds every row: a plain gather, same rows
    return jax.tree.map(lambda rows: rows[indices], tree)
  per = jax.tree.leaves(tree)[0].shape[0]
  local = indices - jax.lax.axis_index(AXIS) * per
  mine = (local >= 0) & (local < per)
  safe = jnp.where(mine, local, 0)

  def one(rows):
    picked = rows[safe]
    mask = mine.reshape(mine.shape + (1,) * (picked.ndim - 1))
    picked = jnp.where(mask, picked, jnp.zeros((), picked.dtype))
    return jax.lax.psum_scatter(picked, AXIS, scatter_dimension=0, tiled=True)

  return jax.tree.map(one, tree)
