"""One device, four devices with shard_map and four with pmap train the same state."""

import jax
import numpy as np
import pytest

from aae_jax import parallel
from aae_jax import train
from tests import helpers

CHUNKS = (3, 2)  # two dispatches: the state round-trips between them


@pytest.fixture(scope='module')
def runs(tiny_dataset):
  assert jax.device_count() == 4, 'conftest.py should give 4 CPU devices'
  # SGD, not Adam: Adam's first steps divide tiny gradients by their own size,
  # which turns float reduction-order noise into full-size updates.
  # LeCun init (init_std=0), not the paper's N(0, 0.01^2): with it every layer
  # moves well above float noise in a few steps, so the comparison sees them all.
  overrides = {'model.encoder': 'gaussian', 'model.input_noise_std': 0.3,
               'model.disc_input_noise_std': 0.3, 'model.init_std': 0.0}
  for phase in ('recon', 'disc', 'gen'):
    overrides.update({f'optim.{phase}.name': 'sgd', f'optim.{phase}.lr': 0.01})
  exp = train.build(helpers.smoke_config(**overrides), tiny_dataset)
  runs = {(backend, n): helpers.run_chunks(exp, tiny_dataset, backend, n, CHUNKS)
          for backend, n in (('shard_map', 1), ('shard_map', 4), ('pmap', 4))}
  return exp, runs


@pytest.mark.parametrize('other', [('shard_map', 4), ('pmap', 4)])
def test_same_state_and_metrics_as_one_device(runs, other):
  exp, runs = runs
  (ref_state, ref_metrics), (state, metrics) = runs[('shard_map', 1)], runs[other]
  assert int(state.step) == sum(CHUNKS)
  for a, b in zip(jax.tree.leaves(ref_state), jax.tree.leaves(state)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  helpers.assert_same_updates(exp.state.params, ref_state.params, state.params)
  for m_ref, m in zip(ref_metrics, metrics):
    for k in m_ref:
      np.testing.assert_allclose(m_ref[k], m[k], rtol=1e-4, atol=1e-6)


def test_training_moved_the_parameters(runs):
  exp, runs = runs
  state, _ = runs[('shard_map', 1)]
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(exp.state.params),
                                                 jax.tree.leaves(state.params))]
  assert all(moved)


def test_batch_size_must_divide_among_devices():
  with pytest.raises(ValueError, match='batch_size=10 is not divisible by the 4 devices'):
    parallel.DataParallel('shard_map').check_batch_size(10)


def test_unknown_backend():
  with pytest.raises(ValueError, match='parallel.backend'):
    parallel.DataParallel('threads')


def test_shard_rows_splits_and_pads_the_rows():
  array = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
  dp = parallel.DataParallel('shard_map')
  rows = dp.shard_rows(array)
  assert rows.shape == (12, 3)  # ceil(10 / 4) = 3 rows per device, two of them padding
  for shard in rows.addressable_shards:
    i = dp.devices.index(shard.device)
    expected = np.zeros((3, 3), np.float32)
    expected[:len(array[3 * i:3 * i + 3])] = array[3 * i:3 * i + 3]
    np.testing.assert_array_equal(shard.data, expected)
  stacked = parallel.DataParallel('pmap').shard_rows(array)
  np.testing.assert_array_equal(np.asarray(stacked).reshape(12, 3), np.asarray(rows))


@pytest.mark.parametrize('num_devices', [4, 1])
@pytest.mark.parametrize('backend', parallel.BACKENDS)
def test_gather_rows_takes_any_rows_from_the_devices_that_hold_them(backend, num_devices):
  """The gathered global batch is plain indexing, whatever device holds each row
  (one device takes a shorter path to the same rows)."""
  images = np.random.default_rng(0).normal(size=(10, 5)).astype(np.float32)
  labels = np.arange(10, dtype=np.int32) * 7
  indices = np.array([9, 0, 4, 4, 8, 1, 3, 2])  # rows of every device, one repeated
  dp = parallel.DataParallel(backend, jax.devices()[:num_devices])

  def per_device(idx, x, y):
    x, y = parallel.gather_rows((x, y), idx)
    return jax.lax.all_gather(x, parallel.AXIS, tiled=True), jax.lax.all_gather(
        y, parallel.AXIS, tiled=True)

  fn = dp.compile(per_device, donate_argnums=(), sharded_argnums=(1, 2))
  x, y = fn(dp.replicate(indices), dp.shard_rows(images), dp.shard_rows(labels))
  x, y = jax.device_get((dp.unreplicate(x), y))  # compiled functions return (state, aux)
  np.testing.assert_array_equal(x, images[indices])
  np.testing.assert_array_equal(y, labels[indices])


@pytest.mark.parametrize('num_devices', [4, 1])
@pytest.mark.parametrize('backend', parallel.BACKENDS)
def test_pmean_averages_over_the_devices_and_is_free_on_one(backend, num_devices):
  """``parallel.pmean`` is ``lax.pmean``; on one device the program has no all-reduce
  (XLA's CPU runtime copies the tree for a one-device all-reduce)."""
  rows = np.arange(8, dtype=np.float32).reshape(8, 1) ** 2
  dp = parallel.DataParallel(backend, jax.devices()[:num_devices])

  def per_device(x):
    return jax.lax.all_gather(parallel.pmean(x), parallel.AXIS, tiled=True), x

  fn = dp.compile(per_device, donate_argnums=(), sharded_argnums=(0,))
  means, _ = fn(dp.shard_rows(rows))
  shares = rows.reshape(num_devices, -1, 1)
  np.testing.assert_allclose(np.asarray(dp.unreplicate(means)),
                             np.tile(shares.mean(0), (num_devices, 1)))
  if backend == 'shard_map':
    program = dp.shard_map_program(per_device, 1, sharded_argnums=(0,))
    hlo = program.lower(dp.shard_rows(rows)).compile().as_text()
    assert ('all-reduce' in hlo) == (num_devices > 1)
