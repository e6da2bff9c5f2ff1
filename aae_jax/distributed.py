"""Multi-process set-up: ``jax.distributed``, the main process, barriers.

One process runs per host (per TPU VM worker, or per GPU node); together they
drive one global mesh of all their devices (``parallel.DataParallel``). A run
is multi-process when ``config.parallel.distributed`` is True, when the
environment variable ``AAE_DISTRIBUTED`` is ``1`` (so TPU VMs run the plain
command with no extra flags), or when any of ``coordinator_address``,
``num_processes``, ``process_id`` is set. Unset fields are left to JAX, which
detects them on Cloud TPU, SLURM and Open MPI and reads
``JAX_COORDINATOR_ADDRESS``; elsewhere all three must be given.

``initialize`` must run before anything touches a JAX backend (``jax.devices()``
included); ``main.py`` calls it first thing.
"""

from __future__ import annotations

import os
from typing import Callable, TypeVar

from absl import logging
import jax
from jax.experimental import multihost_utils

from aae_jax import errors

ENV = 'AAE_DISTRIBUTED'
T = TypeVar('T')
_TRUE, _FALSE = ('1', 'true', 'yes'), ('', '0', 'false', 'no')


def requested(parallel_config) -> bool:
  """Whether this run should start ``jax.distributed`` (config or environment)."""
  flag = os.environ.get(ENV, '').strip().lower()
  if flag not in _TRUE + _FALSE:
    raise errors.UserError(f'{ENV}={os.environ[ENV]!r}: set it to 1 (multi-process) or 0.')
  c = parallel_config
  return bool(c.distributed or flag in _TRUE or c.coordinator_address
              or c.num_processes > 0 or c.process_id >= 0)


def initialize_kwargs(parallel_config) -> dict:
  """``jax.distributed.initialize`` arguments from the config; unset ones are omitted."""
  c = parallel_config
  if c.num_processes < 0:
    raise errors.UserError(f'parallel.num_processes={c.num_processes}: give the number of '
                           'processes, or 0 to let JAX detect it.')
  if c.process_id < -1 or (c.num_processes and c.process_id >= c.num_processes):
    raise errors.UserError(f'parallel.process_id={c.process_id}: give a number from 0 to '
                           f'parallel.num_processes - 1, or -1 to let JAX detect it.')
  kwargs = {}
  if c.coordinator_address:
    kwargs['coordinator_address'] = c.coordinator_address
  if c.num_processes:
    kwargs['num_processes'] = c.num_processes
  if c.process_id >= 0:
    kwargs['process_id'] = c.process_id
  return kwargs


def initialize(parallel_config) -> bool:
  """Starts ``jax.distributed`` if this run asks for it; returns whether it did."""
  if not requested(parallel_config):
    return False
  kwargs = initialize_kwargs(parallel_config)
  try:
    jax.distributed.initialize(**kwargs)
  except (ValueError, TypeError) as e:  # what JAX raises when it cannot detect the cluster
    raise errors.UserError(
        f'parallel.distributed: jax.distributed.initialize({kwargs}) failed ({e}). On a '
        'TPU VM, SLURM or Open MPI leave the fields unset; elsewhere give '
        'parallel.coordinator_address, parallel.num_processes and parallel.process_id.'
    ) from e
  logging.info('Process %d of %d: %d local / %d global devices.', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def is_main() -> bool:
  """Whether this process writes metrics, figures and the config (process 0)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process got here (a no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def main_first(fn: Callable[[], T], name: str) -> T:
  """Runs ``fn`` on process 0, then on the others (which may then reuse its work).

  For steps that write to a cache several processes may share, such as
  preparing a TFDS dataset: concurrent preparations of one folder race.
  Process 0 reaches the barrier even when ``fn`` fails, so the others do not
  wait forever; they then run ``fn`` themselves and most likely fail alike.
  """
  if jax.process_count() == 1:
    return fn()
  if is_main():
    try:
      return fn()
    finally:
      barrier(f'{name}:main_done')
  barrier(f'{name}:main_done')
  return fn()
