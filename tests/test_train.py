"""The train step: phases in order, each updating only what it owns; batches on device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aae_jax import phases
from aae_jax import train
from tests import helpers


@pytest.fixture(scope='module')
def exp(tiny_dataset):
  return train.build(helpers.smoke_config(), tiny_dataset)


def _batch(dataset, n=20):
  x = jnp.asarray(dataset.train.images[:n].reshape(n, -1))
  return {'x': x, 'label': jnp.asarray(dataset.train.labels[:n]), 'position': jnp.arange(n)}


def test_one_step_lowers_the_reconstruction_loss(exp, tiny_dataset):
  batch = _batch(tiny_dataset)
  key = jax.random.PRNGKey(1)
  before, _ = exp.aae.reconstruction_objective(exp.state.variables, batch, key)
  state, metrics = helpers.run_step(exp.state, batch, exp.phases)
  after, _ = exp.aae.reconstruction_objective(state.variables, batch, key)
  assert float(after) < float(before)
  assert int(state.step) == 1
  assert set(metrics) >= {'train/recon_loss', 'train/disc_loss', 'train/gen_loss'}


@pytest.mark.parametrize('index', [0, 1, 2])
def test_each_phase_changes_only_the_parameters_it_owns(exp, tiny_dataset, index):
  phase = exp.phases[index]
  state, _ = helpers.run_step(exp.state, _batch(tiny_dataset), (phase,))
  changed = helpers.changed(exp.state.params, state.params)
  assert changed == {k: k in phase.owns for k in changed}, phase.name
  for other in exp.phases:
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(exp.state.opt_state[other.name]),
                                                    jax.tree.leaves(state.opt_state[other.name])))
    assert same == (other.name != phase.name)


def test_phases_run_in_order_on_updated_parameters(exp, tiny_dataset):
  """The step equals applying recon, then disc, then gen by hand, each seeing the last."""
  batch = _batch(tiny_dataset)
  state, _ = helpers.run_step(exp.state, batch, exp.phases)
  params = dict(exp.state.params)
  step_key = jax.random.fold_in(jax.random.fold_in(exp.state.rng, 0), 0)
  for i, phase in enumerate(exp.phases):
    owned = {k: params[k] for k in phase.owns}
    key = jax.random.fold_in(step_key, i)
    grads = jax.grad(lambda o: phase.objective(
        {'params': {**params, **o}, 'batch_stats': {}}, batch, key)[0])(owned)
    updates, _ = phase.tx.update(grads, exp.state.opt_state[phase.name], owned)
    params.update(jax.tree.map(lambda p, u: p + u, owned, updates))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_epoch_order_is_a_seeded_permutation():
  rng = jax.random.PRNGKey(3)
  a, b = train.epoch_order(rng, 0, 50), train.epoch_order(rng, 1, 50)
  np.testing.assert_array_equal(np.sort(a), np.arange(50))
  assert not np.array_equal(a, b)
  np.testing.assert_array_equal(a, train.epoch_order(rng, 0, 50))


def test_a_chunk_visits_every_training_example_once_per_epoch(exp, tiny_dataset):
  """Batches drawn on device follow epoch_order, across epoch and chunk boundaries."""
  def record(variables, batch, key):
    return jnp.zeros(()), ({'index': batch['label']}, {})  # labels hold example indices here

  spy = phases.Phase('spy', ('decoder',), record, exp.phases[0].tx)
  state = train.create_train_state((spy,), exp.state.variables, exp.state.rng)
  spy_exp = exp.replace(phases=(spy,), state=state)
  n = len(tiny_dataset.train)
  indexed = tiny_dataset.train.__class__(images=tiny_dataset.train.images,
                                         labels=np.arange(n, dtype=np.int32))
  data = tiny_dataset.__class__(name='x', train=indexed, valid=tiny_dataset.valid,
                                test=tiny_dataset.test, num_classes=10)
  steps_per_epoch = n // 20
  _, metrics = helpers.run_chunks(spy_exp, data, 'shard_map', 1,
                                  [7, steps_per_epoch * 2 - 7])
  seen = np.concatenate([m['index'] for m in metrics]).reshape(2, -1)
  for epoch in range(2):
    np.testing.assert_array_equal(seen[epoch], train.epoch_order(state.rng, epoch, n))


@pytest.mark.parametrize('overrides,lengths', [
    # Every stop (dispatch, log, eval, save) at a multiple of 2: one chunk length.
    ({'num_train_steps': 12, 'steps_per_dispatch': 2, 'log_every': 4, 'eval_every': 12,
      'checkpoint_every': 6}, {2}),
    # Stops at 3, 5, 6, 9, 10: chunks of 3, 2, 1, 3, 1 steps.
    ({'num_train_steps': 10, 'steps_per_dispatch': 3, 'log_every': 5, 'eval_every': 10,
      'checkpoint_every': 10}, {1, 2, 3}),
])
def test_the_loop_compiles_one_chunk_per_length(overrides, lengths, tiny_dataset, tmp_path,
                                                monkeypatch):
  traced = []
  make = train.make_train_chunk

  def counting(*args, num_steps, **kwargs):
    chunk = make(*args, num_steps=num_steps, **kwargs)

    def counted(*chunk_args):
      traced.append(num_steps)  # Python runs here only while JAX traces the chunk
      return chunk(*chunk_args)

    return counted

  monkeypatch.setattr(train, 'make_train_chunk', counting)
  train.train_and_evaluate(helpers.smoke_config(**overrides), str(tmp_path), tiny_dataset)
  assert sorted(traced) == sorted(lengths)
