"""The paper's label-aware experiments: semi-supervised, clustering, label-conditioned
priors, supervised style/content, dimensionality reduction, and their SVHN recipes.

The pieces those experiments add (their smoke runs are in test_configs.py): the
labelled split and its mini-batch, the clustering rules, the label-conditioned
prior sampler, phase ownership (with batch norm and cluster heads) and batch norm
under data parallelism.
"""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aae_jax import data
from aae_jax import errors
from aae_jax import evaluate
from aae_jax import losses
from aae_jax import model
from aae_jax import parallel
from aae_jax import phases
from aae_jax import train
from tests import helpers

BATCH = 20  # the smoke configs' batch size


def test_label_counts_of_the_semisup_configs():
  """``1000,smoke`` is the ``100,smoke`` run (smoke shrinks the labelled set to
  100, all the tiny dataset allows)."""
  assert helpers.config('mnist_semisup', '100').data.num_labels == 100
  assert helpers.config('mnist_semisup', '1000').data.num_labels == 1000
  assert helpers.config('mnist_semisup', 'all').data.num_labels == -1
  assert helpers.config('mnist_semisup', '1000,smoke').to_dict() == helpers.config(
      'mnist_semisup', '100,smoke').to_dict()
  assert helpers.config('mnist_semisup', 'all,smoke').data.num_labels == -1


# ----------------------------------------------------------------------------
# 2. The labelled split.


def test_training_labels_are_a_seeded_class_balanced_subset():
  labels = np.random.default_rng(0).integers(0, 10, size=3000).astype(np.int32)
  masked, idx = data.training_labels(labels, 100, 10, seed=3)
  assert len(idx) == 100 and len(np.unique(idx)) == 100
  np.testing.assert_array_equal(np.bincount(labels[idx], minlength=10), np.full(10, 10))
  known = np.flatnonzero(masked >= 0)
  np.testing.assert_array_equal(known, np.sort(idx))
  np.testing.assert_array_equal(masked[idx], labels[idx])
  assert np.all(masked[np.setdiff1d(np.arange(3000), idx)] == -1)
  again, idx_again = data.training_labels(labels, 100, 10, seed=3)
  np.testing.assert_array_equal(idx, idx_again)
  np.testing.assert_array_equal(masked, again)
  _, other = data.training_labels(labels, 100, 10, seed=4)
  assert not np.array_equal(idx, other)
  np.testing.assert_array_equal(np.bincount(labels[other], minlength=10), np.full(10, 10))


def test_training_labels_all_none_and_bad_counts():
  labels = (np.arange(200) % 10).astype(np.int32)
  masked, idx = data.training_labels(labels, -1, 10, seed=0)
  np.testing.assert_array_equal(masked, labels)
  np.testing.assert_array_equal(idx, np.arange(200))
  masked, idx = data.training_labels(labels, 0, 10, seed=0)
  assert np.all(masked == -1) and len(idx) == 0
  with pytest.raises(errors.UserError, match='multiple'):
    data.training_labels(labels, 15, 10, seed=0)
  with pytest.raises(errors.UserError, match='more than'):
    data.training_labels(labels, 300, 10, seed=0)
  rare = labels.copy()
  rare[np.flatnonzero(rare == 0)[5:]] = 1  # five examples of class 0 left
  with pytest.raises(errors.UserError, match='class 0'):
    data.training_labels(rare, 100, 10, seed=0)


@pytest.fixture(scope='module')
def semisup(tiny_dataset):
  return train.build(helpers.config('mnist_semisup', '100,smoke'), tiny_dataset)


def test_labelled_rows_come_from_the_training_split(semisup, tiny_dataset):
  train_split = tiny_dataset.train
  idx = semisup.labelled_idx
  assert len(idx) == 100 and len(np.unique(idx)) == 100
  assert np.all((idx >= 0) & (idx < len(train_split)))  # never a valid or test row
  np.testing.assert_array_equal(np.bincount(train_split.labels[idx], minlength=10),
                                np.full(10, 10))
  np.testing.assert_array_equal(semisup.train_labels[idx], train_split.labels[idx])
  assert np.sum(semisup.train_labels >= 0) == 100
  assert len(semisup.train_labels) == len(train_split)
  assert semisup.supervised
  assert [p.name for p in semisup.phases] == ['recon', 'disc', 'disc_y', 'gen', 'supervised']


def test_num_labels_all_none_and_errors(tiny_dataset):
  every = train.build(helpers.config('mnist_semisup', 'all,smoke'), tiny_dataset)
  np.testing.assert_array_equal(every.train_labels, tiny_dataset.train.labels)
  np.testing.assert_array_equal(every.labelled_idx, np.arange(len(tiny_dataset.train)))
  assert every.supervised
  none = train.build(helpers.config('mnist_semisup', '100,smoke', **{'data.num_labels': 0}),
                     tiny_dataset)
  assert np.all(none.train_labels == -1) and len(none.labelled_idx) == 0
  assert not none.supervised
  assert [p.name for p in none.phases] == ['recon', 'disc', 'disc_y', 'gen']
  with pytest.raises(errors.UserError, match='multiple'):
    train.build(helpers.config('mnist_semisup', '100,smoke', **{'data.num_labels': 25}),
                tiny_dataset)
  with pytest.raises(errors.UserError, match='batch_size'):
    train.build(helpers.config('mnist_semisup', '100,smoke', **{'data.num_labels': 10}),
                tiny_dataset)
  with pytest.raises(errors.UserError, match='num_labels'):
    # A plain AAE reads no labels.
    train.build(helpers.smoke_config(**{'data.num_labels': 100}), tiny_dataset)


# ----------------------------------------------------------------------------
# 3. The labelled mini-batch drawn on device.


def _gathered(values, slots, size):
  """This device's per-example values at their global slots, zeros elsewhere.

  Metrics are averaged over devices, so the host recovers the global vector
  as the mean times the number of devices.
  """
  return jnp.zeros((size,), jnp.float32).at[slots].set(values.astype(jnp.float32),
                                                        mode='drop')


def _probe(variables, batch, key):  # pylint: disable=unused-argument
  leaf = jax.tree.leaves(variables['params']['discriminator'])[0]
  labelled = batch['labelled']
  slots = labelled['position'] - BATCH
  return 0.0 * jnp.sum(leaf), ({
      # Column 0 of every image holds its row number in the training split.
      'probe/row': _gathered(batch['x'][:, 0], batch['position'], BATCH),
      'probe/label': _gathered(batch['label'], batch['position'], BATCH),
      'probe/labelled_row': _gathered(labelled['x'][:, 0], slots, BATCH),
      'probe/labelled_label': _gathered(labelled['label'], slots, BATCH),
      'probe/min_labelled_label': jnp.min(labelled['label']).astype(jnp.float32),
      'probe/position_offset': jnp.min(labelled['position'] - batch['position']
                                       ).astype(jnp.float32),
  }, {})


def test_the_labelled_mini_batch_cycles_through_the_labelled_set(semisup, tiny_dataset):
  num_devices, chunks = 2, (7, 5)  # 12 steps: 2.4 epochs of the 100 labels at batch 20
  n = len(tiny_dataset.train)
  images = tiny_dataset.train.images.reshape(n, -1).copy()
  images[:, 0] = np.arange(n)
  probe = phases.Phase('probe', ('discriminator',), _probe, optax.sgd(0.0))
  state = train.create_train_state((probe,), semisup.state.variables, semisup.state.rng)
  dp = parallel.DataParallel('shard_map', jax.devices()[:num_devices])
  args = semisup.chunk_inputs(dp, images)
  state = dp.replicate(state)
  metrics = []
  for length in chunks:
    # The probe replaces the phases; the labelled set stays the semi-supervised run's.
    fn = dp.compile(train.make_train_chunk((probe,), batch_size=BATCH,
                                           num_devices=num_devices, num_steps=length,
                                           num_examples=n, num_labelled=semisup.num_labelled),
                    sharded_argnums=(1, 2))
    state, m = fn(state, *args)
    metrics.append(jax.device_get(m))
  got = {k: np.concatenate([m[k] for m in metrics]) for k in metrics[0]}
  rows = np.rint(got['probe/labelled_row'] * num_devices).astype(int)  # (12, BATCH)
  labels = np.rint(got['probe/labelled_label'] * num_devices).astype(int)
  idx = semisup.labelled_idx
  assert np.all(got['probe/min_labelled_label'] >= 0)
  assert np.all(got['probe/position_offset'] == BATCH)
  assert np.all(np.isin(rows, idx))
  np.testing.assert_array_equal(labels, tiny_dataset.train.labels[rows])
  rng = semisup.state.rng
  per_epoch = len(idx) // BATCH
  expected = np.concatenate([
      idx[np.asarray(train.epoch_order(rng, e, len(idx), train._LABELLED_STREAM))]
      for e in range(3)]).reshape(-1, BATCH)[:sum(chunks)]
  np.testing.assert_array_equal(rows, expected)
  for e in range(2):  # every labelled example once per labelled epoch
    np.testing.assert_array_equal(np.sort(rows[e * per_epoch:(e + 1) * per_epoch].ravel()),
                                  idx)
  # The unlabelled batch: the training order, labels visible only for labelled rows.
  main_rows = np.rint(got['probe/row'] * num_devices).astype(int)
  main_labels = np.rint(got['probe/label'] * num_devices).astype(int)
  order = np.asarray(train.epoch_order(rng, 0, n))
  np.testing.assert_array_equal(main_rows.ravel(), order[:sum(chunks) * BATCH])
  np.testing.assert_array_equal(main_labels, semisup.train_labels[main_rows])
  assert np.any(main_labels == -1) and np.any(main_labels >= 0)


# ----------------------------------------------------------------------------
# 4. Cluster labels from the validation split.

# Six validation examples, three clusters. Argmax: 0, 0, 0, 1, 1, 1 (cluster 2 empty).
VALID_PROBS = np.array([[0.90, 0.05, 0.05],   # label 1: the most confident member of 0
                        [0.60, 0.30, 0.10],   # label 0
                        [0.70, 0.20, 0.10],   # label 0
                        [0.10, 0.80, 0.10],   # label 2: the most confident member of 1
                        [0.20, 0.50, 0.30],   # label 1: highest q(y_2|x) of all
                        [0.30, 0.45, 0.25]])  # label 1
VALID_LABELS = np.array([1, 0, 0, 2, 1, 1])


def test_equal_size_cluster_floor():
  # Ten equal classes: 16 equal clusters give six classes two clusters (all of the class
  # right) and four one (0.0625 of 0.1 right), so 15 % is wrong whatever the partition.
  assert evaluate.equal_size_cluster_floor([1] * 10, 16) == pytest.approx(0.15)
  assert evaluate.equal_size_cluster_floor([1] * 10, 30) == pytest.approx(0.0)
  assert evaluate.equal_size_cluster_floor([1] * 10, 5) == pytest.approx(0.5)
  # Unequal classes: the larger class gets the second cluster (3 clusters, p = .6/.4).
  assert evaluate.equal_size_cluster_floor([6, 4], 3) == pytest.approx(1 - (0.6 + 1 / 3))


def test_cluster_labels_by_the_paper_rule_and_by_majority():
  paper = evaluate.cluster_labels_paper(VALID_PROBS, VALID_LABELS)
  np.testing.assert_array_equal(paper, [1, 2, 1])
  majority = evaluate.cluster_labels_majority(VALID_PROBS, VALID_LABELS, num_classes=3)
  # Cluster 0: labels 1, 0, 0 -> 0; cluster 1: 2, 1, 1 -> 1; cluster 2 is empty and
  # keeps the paper rule's 1.
  np.testing.assert_array_equal(majority, [0, 1, 1])
  test_probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.1, 0.7, 0.2]])
  test_labels = np.array([0, 1, 1, 2])
  assert evaluate.cluster_error(test_probs, test_labels, paper) == pytest.approx(0.5)
  assert evaluate.cluster_error(test_probs, test_labels, majority) == pytest.approx(0.25)


def test_evaluator_scores_clusters_with_both_rules(tiny_dataset):
  """Through Evaluator.evaluate: the reported errors follow the two rules."""
  exp = train.build(helpers.config('mnist_cluster', '16,smoke'), tiny_dataset)
  evaluator = evaluate.Evaluator(exp.aae, batch_size=50, supervised=exp.supervised)
  metrics, test_out = evaluator.evaluate(exp.state.variables, tiny_dataset)
  valid = evaluator.codes(exp.state.variables, tiny_dataset.valid)['y_probs']
  paper = evaluate.cluster_labels_paper(valid, tiny_dataset.valid.labels)
  majority = evaluate.cluster_labels_majority(valid, tiny_dataset.valid.labels, 10)
  np.testing.assert_array_equal(test_out['cluster_labels'], paper)
  probs, labels = test_out['y_probs'], tiny_dataset.test.labels
  assert metrics['eval/test_error'] == pytest.approx(
      np.mean(paper[probs.argmax(1)] != labels))
  assert metrics['eval/test_error_majority'] == pytest.approx(
      np.mean(majority[probs.argmax(1)] != labels))
  assert 'eval/test_component_accuracy' not in metrics


# ----------------------------------------------------------------------------
# 5. The label-conditioned prior sampler.


@pytest.mark.parametrize('name,accuracy', [
    # Measured over 5 seeds: 0.997-0.999 (the mixture's components barely overlap).
    ('mnist_labeled_mog', 0.99),
    # Measured: 0.96-0.97; the noise (std 0.1) blurs samples across section ends.
    ('mnist_labeled_swissroll', 0.93),
])
def test_labelled_prior_samples_come_from_their_component(name, accuracy, tiny_dataset):
  aae = train.build(helpers.config(name), tiny_dataset).aae
  assert isinstance(aae.z_condition, model.OnLabel) and aae.z_condition.width == 11
  assert aae.z_condition.by_component
  n = 2000
  labels = np.array(jax.random.randint(jax.random.PRNGKey(7), (n,), -1, 10))
  labels[:1000] = -1  # half unlabelled
  samples = aae.prior_samples({'label': jnp.asarray(labels), 'position': jnp.arange(n)},
                              jax.random.PRNGKey(3))
  assert samples.shape == (n, 2)
  component = evaluate.component_of(aae.prior, samples)
  known = labels >= 0
  assert np.mean(component[known] == labels[known]) >= accuracy
  for k in range(10):
    assert np.mean(component[labels == k] == k) >= accuracy - 0.05, k
  counts = np.bincount(component[~known], minlength=10)
  assert counts.min() >= 60 and counts.max() <= 140, counts  # ~100 each of 1000
  # Noise keyed by position: the same batch gives the same samples.
  again = aae.prior_samples({'label': jnp.asarray(labels), 'position': jnp.arange(n)},
                            jax.random.PRNGKey(3))
  np.testing.assert_array_equal(samples, again)


def test_one_hot_condition_has_an_unlabelled_class():
  out = np.asarray(model.one_hot_condition(jnp.array([-1, 0, 9, 3]), 10))
  assert out.shape == (4, 11)
  np.testing.assert_array_equal(out.argmax(1), [10, 0, 9, 3])
  np.testing.assert_array_equal(out.sum(1), np.ones(4))


# ----------------------------------------------------------------------------
# 6. Each phase changes only what it owns.


def _labelled_batch(dataset, exp, n=BATCH):
  split = dataset.train
  x = jnp.asarray(split.images[:n].reshape(n, -1))
  idx = exp.labelled_idx[:n]
  return {'x': x, 'label': jnp.asarray(exp.train_labels[:n]), 'position': jnp.arange(n),
          'labelled': {'x': jnp.asarray(split.images[idx].reshape(n, -1)),
                       'label': jnp.asarray(split.labels[idx]),
                       'position': n + jnp.arange(n)}}


OWNERSHIP = [
    ('mnist_semisup', '100,smoke', 'mnist',
     {'recon': {'encoder', 'decoder'}, 'disc': {'discriminator'}, 'disc_y': {'disc_y'},
      'gen': {'encoder'}, 'supervised': {'encoder'}}),
    ('mnist_dimred', '1000,smoke', 'mnist',
     {'recon': {'encoder', 'decoder', 'heads'}, 'disc': {'discriminator'},
      'disc_y': {'disc_y'}, 'gen': {'encoder'}, 'supervised': {'encoder'}}),
    ('svhn_semisup', 'smoke', 'svhn',
     {'recon': {'encoder', 'decoder'}, 'disc': {'discriminator'}, 'disc_y': {'disc_y'},
      'gen': {'encoder'}, 'supervised': {'encoder'}}),
]


@pytest.mark.parametrize('name,arg,which,changes', OWNERSHIP,
                         ids=[f'{n}:{a}' for n, a, *_ in OWNERSHIP])
def test_each_phase_changes_only_what_it_owns(name, arg, which, changes, tiny_dataset,
                                              svhn_dataset):
  dataset = tiny_dataset if which == 'mnist' else svhn_dataset
  exp = train.build(helpers.config(name, arg), dataset)
  assert [p.name for p in exp.phases] == list(changes)
  batch = _labelled_batch(dataset, exp)
  keys = set(exp.state.params)
  assert keys == set().union(*changes.values())
  has_stats = bool(exp.state.batch_stats)
  assert has_stats == (which == 'svhn')  # batch norm in the SVHN recipe's autoencoder
  for phase in exp.phases:
    state, metrics = helpers.run_step(exp.state, batch, (phase,))
    changed = helpers.changed(exp.state.params, state.params)
    assert {k for k, v in changed.items() if v} == changes[phase.name], phase.name
    # Only the reconstruction phase runs the autoencoder in training mode for
    # keeps: its batch-norm statistics move, no other phase's.
    moved = helpers.changed(exp.state.batch_stats, state.batch_stats)
    assert {k for k, v in moved.items() if v} == (
        {'encoder', 'decoder'} if has_stats and phase.name == 'recon' else set()), phase.name
    assert not any(v for k, v in metrics.items() if k.startswith(train.GUARD_PREFIX))
    for other in exp.phases:
      same = all(np.array_equal(a, b) for a, b in
                 zip(jax.tree.leaves(exp.state.opt_state[other.name]),
                     jax.tree.leaves(state.opt_state[other.name])))
      assert same == (other.name != phase.name), (phase.name, other.name)


def test_the_reconstruction_phase_pays_the_head_cost(tiny_dataset):
  exp = train.build(helpers.config('mnist_dimred', '1000,smoke'), tiny_dataset)
  params = exp.state.params
  assert params['heads'].shape == (10, 2)
  batch = _labelled_batch(tiny_dataset, exp)
  loss, (aux, _) = exp.aae.reconstruction_objective(exp.state.variables, batch,
                                                    jax.random.PRNGKey(0))
  cost = losses.head_separation_cost(heads=params['heads'], threshold=6.0)
  assert float(cost) > 0  # heads drawn with std 5 include pairs closer than 6
  np.testing.assert_allclose(aux['train/head_cost'], cost, rtol=1e-6)
  np.testing.assert_allclose(loss, aux['train/recon_loss'] + cost, rtol=1e-5)


# ----------------------------------------------------------------------------
# 7. Batch norm under data parallelism.


def _run_with_labels(exp, dataset, num_devices, num_steps):
  dp = parallel.DataParallel('shard_map', jax.devices()[:num_devices])
  n = len(dataset.train)
  images = dp.shard_rows(dataset.train.images.reshape(n, -1))
  labels = dp.shard_rows(exp.train_labels)
  labelled_idx = dp.replicate(jnp.asarray(exp.labelled_idx, jnp.int32))
  state = dp.replicate(jax.device_get(exp.state))  # a copy: the chunk donates it
  state, metrics = exp.chunk(dp, num_steps)(state, *exp.chunk_inputs(dp, dataset.train.images))
  return jax.device_get(dp.unreplicate(state)), jax.device_get(metrics)


def _assert_same_updates_per_module(init, ref, got, rtol=1e-4):
  """Like helpers.assert_same_updates, with each leaf's tolerance scaled by the
  largest update in its module (top-level key) rather than by its own.

  A few leaves get gradients that nearly cancel over the batch (the
  discriminators' output biases; z_head's bias, whose shift the decoder's batch
  norm removes), so their tiny updates (~1e-7) differ by 1e-3 to 1e-2 of
  themselves with float32 summation order alone. Without synchronised batch norm
  the other leaves' updates differ by 1e-2 to 1 of their module's largest update.
  """
  for name in ref:
    triples = list(zip(jax.tree.leaves(init[name]), jax.tree.leaves(ref[name]),
                       jax.tree.leaves(got[name])))
    scale = max(np.abs(np.asarray(r, np.float64) - np.asarray(c, np.float64)).max()
                for c, r, _ in triples)
    assert scale > 0, name  # every module moved in 2 steps
    for c, r, g in triples:
      c, r, g = (np.asarray(v, np.float64) for v in (c, r, g))
      ulps = 4 * np.finfo(np.float32).eps * np.abs(r).max()
      np.testing.assert_allclose(g - c, r - c, rtol=0, atol=rtol * scale + ulps,
                                 err_msg=name)


def test_batch_norm_gives_the_same_updates_on_one_device_or_four(svhn_dataset):
  """Batch norm averages its statistics over the devices ('batch' axis): 4 devices
  of 5 examples train as 1 device of 20, batch statistics included."""
  dataset = data.standardize(svhn_dataset)
  exp = train.build(helpers.config('svhn_semisup'), dataset)
  assert exp.supervised and exp.aae.encoder.batch_norm
  init = jax.device_get(exp.state)
  ref, ref_metrics = _run_with_labels(exp, dataset, 1, 2)
  got, got_metrics = _run_with_labels(exp, dataset, 4, 2)
  for key in ('train/recon_loss', 'train/ce_loss', 'train/labelled_accuracy'):
    np.testing.assert_allclose(got_metrics[key], ref_metrics[key], rtol=1e-5)
  _assert_same_updates_per_module(init.params, ref.params, got.params)
  assert set(init.batch_stats) == {'encoder', 'decoder'}
  for name in init.batch_stats:
    for a, b in zip(jax.tree.leaves(init.batch_stats[name]),
                    jax.tree.leaves(ref.batch_stats[name])):
      assert not np.allclose(a, b), name  # the statistics did move
    helpers.assert_same_updates(init.batch_stats[name], ref.batch_stats[name],
                                got.batch_stats[name])


def test_gradient_norms_are_logged_when_asked(tiny_dataset):
  exp = train.build(helpers.config('mnist_semisup', '100,smoke'), tiny_dataset)
  batch = jax.tree.map(lambda x: x[None], (exp.state, _labelled_batch(tiny_dataset, exp)))
  norms = {}
  for grad_norms in (False, True):
    fn = jax.vmap(lambda s, b, g=grad_norms: train.train_step(s, b, exp.phases, grad_norms=g),
                  axis_name=parallel.AXIS)
    _, metrics = fn(*batch)
    norms[grad_norms] = {k: float(v[0]) for k, v in metrics.items() if 'grad_norm' in k}
  assert norms[False] == {}
  assert set(norms[True]) == {f'train/grad_norm_{p.name}' for p in exp.phases}
  assert all(np.isfinite(v) and v > 0 for v in norms[True].values())


def test_the_nn_baseline_trains_the_encoder_on_labels_alone(tiny_dataset):
  exp = train.build(helpers.config('mnist_nn_baseline', '100,smoke'), tiny_dataset)
  semisup = train.build(helpers.config('mnist_semisup', '100,smoke'), tiny_dataset)
  assert [p.name for p in exp.phases] == ['supervised']
  np.testing.assert_array_equal(exp.labelled_idx, semisup.labelled_idx)  # same labels
  batch = _labelled_batch(tiny_dataset, exp)
  state, metrics = helpers.run_step(exp.state, batch, exp.phases)
  changed = helpers.changed(exp.state.params, state.params)
  assert {k for k, v in changed.items() if v} == {'encoder'}
  assert set(metrics) == {'train/ce_loss', 'train/labelled_accuracy',
                          'guard/nonfinite_supervised'}
  with pytest.raises(errors.UserError, match='regularizer="none"'):
    train.build(helpers.config('mnist_nn_baseline', '100,smoke', **{'data.num_labels': 0}),
                tiny_dataset)
