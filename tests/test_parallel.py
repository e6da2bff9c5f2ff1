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
  overrides = {'model.encoder': 'gaussian', 'model.input_noise_std': 0.3,
               'model.disc_input_noise_std': 0.3}
  for phase in ('recon', 'disc', 'gen'):
    overrides.update({f'optim.{phase}.name': 'sgd', f'optim.{phase}.lr': 0.01})
  exp = train.build(helpers.smoke_config(**overrides), tiny_dataset)
  runs = {(backend, n): helpers.run_chunks(exp, tiny_dataset, backend, n, CHUNKS, 20)
          for backend, n in (('shard_map', 1), ('shard_map', 4), ('pmap', 4))}
  return exp, runs


@pytest.mark.parametrize('other', [('shard_map', 4), ('pmap', 4)])
def test_same_state_and_metrics_as_one_device(runs, other):
  _, runs = runs
  (ref_state, ref_metrics), (state, metrics) = runs[('shard_map', 1)], runs[other]
  assert int(state.step) == sum(CHUNKS)
  for a, b in zip(jax.tree.leaves(ref_state), jax.tree.leaves(state)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
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
