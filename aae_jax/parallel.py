"""Data parallelism over a 1-D ``'batch'`` mesh of all devices.

The train step is written per device, with explicit ``lax.pmean`` over
``AXIS``. ``DataParallel.compile`` turns it into one program either with
``jax.jit`` over ``jax.shard_map`` (default) or with ``jax.pmap``. State and
data are replicated; each device takes its slice of the global batch.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from aae_jax import errors

AXIS = 'batch'
BACKENDS = ('shard_map', 'pmap')


class DataParallel:
  """Compiles per-device functions and moves trees to and from the devices.

  In both backends the user-facing ("host") form of a tree is the unreplicated
  one; ``replicate`` gives the form the compiled function takes (replicated
  ``NamedSharding`` for shard_map, a leading device axis for pmap).
  """

  def __init__(self, backend: str = 'shard_map', devices: Sequence[Any] | None = None):
    if backend not in BACKENDS:
      raise errors.UserError(f'parallel.backend={backend!r}: choose one of {", ".join(BACKENDS)}.')
    self.backend = backend
    self.devices = list(devices if devices is not None else jax.devices())
    self.mesh = Mesh(np.array(self.devices), (AXIS,))

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  def check_batch_size(self, batch_size: int) -> None:
    if batch_size % self.num_devices:
      raise errors.UserError(
          f'batch_size={batch_size} is not divisible by the {self.num_devices} '
          'devices; choose a multiple of the device count.')

  def replicate(self, tree):
    if self.backend == 'shard_map':
      return jax.device_put(tree, NamedSharding(self.mesh, P()))
    n = self.num_devices
    stacked = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n,) + np.shape(x)),
                           tree)
    return jax.device_put(stacked, NamedSharding(self.mesh, P(AXIS)))

  def unreplicate(self, tree):
    if self.backend == 'shard_map':
      return tree
    return jax.tree.map(lambda x: x[0], tree)

  def compile(self, per_device: Callable, donate_argnums=(0,)) -> Callable:
    """Compiles ``per_device(*replicated_args) -> (state, aux)``.

    The returned function takes replicated arguments, returns the state in
    replicated form and ``aux`` (metrics) unreplicated.
    """
    if self.backend == 'shard_map':
      # check_vma=False gives pmap's semantics: the body's explicit pmean is the
      # only reduction. With it on, differentiating replicated parameters inside
      # the body would already psum their gradients, and the pmean would then
      # average gradients that are num_devices times too large.
      body = jax.shard_map(per_device, mesh=self.mesh, in_specs=P(), out_specs=P(),
                           check_vma=False)
      return jax.jit(body, donate_argnums=donate_argnums)
    mapped = jax.pmap(per_device, axis_name=AXIS, devices=self.devices,
                      donate_argnums=donate_argnums)

    def run(*args):
      state, aux = mapped(*args)
      return state, jax.tree.map(lambda x: x[0], aux)

    return run
