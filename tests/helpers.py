"""Shared test helpers."""

import importlib
import json

import jax
import numpy as np

from aae_jax import parallel
from aae_jax import train


def config(name: str, arg: str = 'smoke', **overrides):
  """``configs/<name>.py:<arg>`` without checksum checks, with dotted-key overrides.

  Products in float32 unless overridden: what 'auto' picks depends on the CPU,
  and the tests' numbers must not (tests/test_precision.py covers 'auto').
  """
  c = importlib.import_module(f'configs.{name}').get_config(arg)
  c.data.verify_checksums = False
  if 'model' in c:
    c.model.precision = 'float32'
  for key, value in overrides.items():
    target = c
    *path, leaf = key.split('.')
    for p in path:
      target = target[p]
    target[leaf] = value
  return c


def records(workdir):
  """The rows of a run's metrics.jsonl."""
  path = workdir / 'metrics.jsonl'
  return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


TIMING = ('steps_per_sec', 'seconds')


def records_without_timings(workdir):
  """The rows of a run's metrics.jsonl without the keys that hold timings."""
  return [{k: v for k, v in r.items() if not any(t in k for t in TIMING)}
          for r in records(workdir)]


def smoke_config(**overrides):
  return config('mnist_gaussian', **overrides)


def run_step(state, batch, phase_list):
  """train_step on one device: vmap over a size-1 'batch' axis provides the pmean."""
  stacked = jax.tree.map(lambda x: x[None], (state, batch))
  fn = jax.vmap(lambda s, b: train.train_step(s, b, phase_list), axis_name=parallel.AXIS)
  return jax.tree.map(lambda x: x[0], fn(*stacked))


def changed(before, after):
  """For each top-level key of two parameter dicts: whether any leaf differs."""
  return {k: not all(np.array_equal(a, b) for a, b in
                     zip(jax.tree.leaves(before[k]), jax.tree.leaves(after[k])))
          for k in before}


def run_chunks(exp, dataset, backend, num_devices, chunk_lengths):
  """Runs chunks of steps from exp.state on ``dataset``'s training images and
  labels (not ``exp.train_labels``); returns the host state and all metrics."""
  dp = parallel.DataParallel(backend, jax.devices()[:num_devices])
  exp = exp.replace(train_labels=dataset.train.labels)
  inputs = exp.chunk_inputs(dp, dataset.train.images)
  state = dp.replicate(jax.device_get(exp.state))  # a copy: the chunk donates it
  metrics = []
  for n in chunk_lengths:
    state, m = exp.chunk(dp, n)(state, *inputs)
    metrics.append(jax.device_get(m))  # waiting each chunk keeps CPU collectives healthy
  return jax.device_get(dp.unreplicate(state)), metrics


def assert_same_updates(init, ref, got, rtol=1e-4):
  """Each leaf moved from ``init`` the same way in ``ref`` and ``got``, to ``rtol``.

  An absolute tolerance alone would pass leaves that barely move (with the
  paper's init the smoke encoder changes by ~1e-8 in a few SGD steps); this compares every
  leaf's update with the size of that update, plus a few float32 ulps of the
  parameters themselves (an update below their resolution is rounding).
  """
  for a, b, c in zip(jax.tree.leaves(ref), jax.tree.leaves(got), jax.tree.leaves(init)):
    a, b, c = (np.asarray(v, np.float64) for v in (a, b, c))
    ulps = 4 * np.finfo(np.float32).eps * np.abs(a).max()
    np.testing.assert_allclose(b - c, a - c, rtol=0, atol=rtol * np.abs(a - c).max() + ulps)
