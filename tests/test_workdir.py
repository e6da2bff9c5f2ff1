"""What a user types may not delete a checkpoint, mix two runs or change what a
workdir trains unseen: the lock, the recorded config, checkpoint pruning and
validation, the save before the eval, a full disk and a torn metrics line.
In-process on the tiny dataset (the signals and the lock across processes are
in test_reliability.py)."""

import errno
import json
import os
import re
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aae_jax import checkpoint
from aae_jax import errors
from aae_jax import evaluate
from aae_jax import metrics as metrics_lib
from aae_jax import parallel
from aae_jax import train
from aae_jax import workdir as workdir_lib
from tests import helpers

# 8 steps, eval and save every 4: checkpoints 4 and 8, evals at 4 and 8.
SHORT = {'num_train_steps': 8, 'eval_every': 4, 'checkpoint_every': 4, 'log_every': 4,
         'steps_per_dispatch': 2}


def _config(name='mnist_gaussian', arg='smoke', **overrides):
  return helpers.config(name, arg, **{**SHORT, **overrides})


def _steps(workdir):
  return checkpoint.existing_steps(workdir / 'checkpoints')


def _final(workdir, dataset):
  """The newest checkpoint's step and digest, and the eval metrics of the last record."""
  rows = helpers.records(workdir)
  evals = {k: v for k, v in rows[-1].items() if k.startswith('eval/')}
  restorer = checkpoint.Checkpointer(workdir / 'checkpoints')
  step, state = restorer.restore_latest(train.build(_config(), dataset).state)
  restorer.close()
  return step, checkpoint.digest(state), evals


@pytest.fixture(scope='module')
def uninterrupted_workdir(tiny_dataset, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('uninterrupted')
  train.train_and_evaluate(_config(), str(workdir), tiny_dataset)
  return workdir


@pytest.fixture(scope='module')
def uninterrupted(uninterrupted_workdir, tiny_dataset):
  return _final(uninterrupted_workdir, tiny_dataset)


# ----------------------------------------------------------------------------
# Checkpoints: kept, never pruned across segments, refused when renamed.


@pytest.mark.parametrize('keep', [0, -1])
def test_checkpoints_to_keep_below_one_is_refused_and_deletes_nothing(keep, tiny_dataset,
                                                                     tmp_path):
  train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)
  before = _steps(tmp_path)
  with pytest.raises(errors.UserError, match=f'checkpoints_to_keep={keep} must be at least 1'):
    train.train_and_evaluate(_config(checkpoints_to_keep=keep, num_train_steps=12),
                             str(tmp_path), tiny_dataset)
  assert _steps(tmp_path) == before == [4, 8]


def test_pruning_keeps_an_earlier_segments_checkpoints(tiny_dataset, tmp_path):
  train.train_and_evaluate(_config(checkpoints_to_keep=3), str(tmp_path), tiny_dataset)
  assert _steps(tmp_path) == [4, 8]
  train.train_and_evaluate(_config(checkpoints_to_keep=1, num_train_steps=20), str(tmp_path),
                           tiny_dataset)
  # This segment keeps its newest (20) only; the first segment's 4 and 8 stay.
  assert _steps(tmp_path) == [4, 8, 20]


def test_a_checkpoint_under_another_step_number_is_refused(tiny_dataset, tmp_path):
  train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)
  shutil.copytree(tmp_path / 'checkpoints' / '8', tmp_path / 'checkpoints' / '12')
  with pytest.raises(errors.UserError, match='holds the checkpoint of step 8, not 12'):
    train.train_and_evaluate(_config(num_train_steps=16), str(tmp_path), tiny_dataset)
  assert _steps(tmp_path) == [4, 8, 12]  # nothing moved


def test_no_restorable_checkpoint_does_not_restart_from_zero_unasked(tiny_dataset, tmp_path):
  train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)
  for step in (4, 8):
    shutil.rmtree(tmp_path / 'checkpoints' / str(step) / 'state')
  with pytest.raises(errors.UserError, match='allow_restart=True'):
    train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)
  assert len(list((tmp_path / 'checkpoints_damaged').iterdir())) == 2  # kept, not deleted
  train.train_and_evaluate(_config(allow_restart=True), str(tmp_path), tiny_dataset)
  assert _steps(tmp_path) == [4, 8]


# ----------------------------------------------------------------------------
# One run per workdir.


def test_a_busy_workdir_is_refused_naming_the_run(tiny_dataset, tmp_path):
  lock = tmp_path / workdir_lib.LOCK_NAME
  lock.write_text(json.dumps({'host': os.uname().nodename, 'pid': os.getppid(),
                              'started': '2026-12-01T10:00:00'}))
  with pytest.raises(errors.UserError, match=f'in use by pid {os.getppid()}'):
    train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)
  assert not (tmp_path / 'metrics.jsonl').exists() and not (tmp_path / 'checkpoints').exists()


def test_a_dead_runs_lock_is_taken_over_and_released(tiny_dataset, tmp_path):
  dead = subprocess.Popen(['true'])
  dead.wait()
  lock = tmp_path / workdir_lib.LOCK_NAME
  lock.write_text(json.dumps({'host': os.uname().nodename, 'pid': dead.pid}))
  train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)
  assert _steps(tmp_path) == [4, 8]
  assert not lock.exists()  # released at the end


# ----------------------------------------------------------------------------
# A workdir is one experiment.


def test_another_seed_on_a_semisup_workdir_is_refused(tiny_dataset, tmp_path):
  semisup = lambda **o: _config('mnist_semisup', '100,smoke', **o)
  train.train_and_evaluate(semisup(), str(tmp_path), tiny_dataset)
  with pytest.raises(errors.UserError, match=r"seed: 0 -> 1.*allow_config_change=True"):
    train.train_and_evaluate(semisup(seed=1, num_train_steps=12), str(tmp_path), tiny_dataset)
  train.train_and_evaluate(semisup(seed=1, num_train_steps=12, allow_config_change=True),
                           str(tmp_path), tiny_dataset)
  history = [json.loads(l) for l in
             (tmp_path / workdir_lib.HISTORY_NAME).read_text().splitlines()]
  assert [(h['start_step'], h['config']['seed']) for h in history] == [(0, 0), (8, 1)]
  assert json.loads((tmp_path / 'config.json').read_text())['seed'] == 0  # the first


def test_another_experiment_of_the_same_shapes_is_refused(tiny_dataset, tmp_path):
  train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)
  with pytest.raises(errors.UserError, match='holds another experiment: prior'):
    train.train_and_evaluate(_config('mnist_mog'), str(tmp_path), tiny_dataset)
  with pytest.raises(errors.UserError, match=r'optim.recon.lr: 0.0005 -> 0.001'):
    train.train_and_evaluate(_config(**{'optim.recon.lr': 1e-3}), str(tmp_path), tiny_dataset)


def test_resume_safe_changes_are_accepted_and_recorded(tiny_dataset, tmp_path):
  train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)
  train.train_and_evaluate(_config(num_train_steps=12, eval_batch_size=25, log_every=2),
                           str(tmp_path), tiny_dataset)
  history = (tmp_path / workdir_lib.HISTORY_NAME).read_text().splitlines()
  assert [json.loads(h)['config']['num_train_steps'] for h in history] == [8, 12]


def test_a_deleted_config_json_is_not_replaced_unseen(tiny_dataset, tmp_path):
  train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)
  (tmp_path / 'config.json').unlink()
  with pytest.raises(errors.UserError, match='holds checkpoints but no config.json'):
    train.train_and_evaluate(_config(num_train_steps=12), str(tmp_path), tiny_dataset)
  assert not (tmp_path / 'config.json').exists()


# ----------------------------------------------------------------------------
# Every value checked before training.


@pytest.mark.parametrize('overrides,message', [
    ({'eval_batch_size': 0}, 'eval_batch_size=0 must be a positive'),
    ({'eval_batch_size': -5}, 'eval_batch_size=-5 must be a positive'),
    ({'seed': -1}, 'seed=-1 must be an integer >= 0'),
    ({'optim.recon.lr': -1e-3}, 'optim.recon.lr=-0.001 must be > 0'),
    ({'optim.gen.b1': 1.5}, 'optim.gen.b1=1.5 must be in [0, 1)'),
    ({'model.code_dim': 0}, 'model.code_dim=0 must be a positive dimension'),
    ({'checkpoint_every': 0}, 'checkpoint_every=0 must be a positive number of steps'),
    ({'ema_decay': 1.0}, 'ema_decay=1.0 must be in [0, 1)'),
])
def test_bad_values_are_refused_before_training(overrides, message, tiny_dataset, tmp_path):
  with pytest.raises(errors.UserError, match=re.escape(message)):
    train.train_and_evaluate(_config(**overrides), str(tmp_path / 'w'), tiny_dataset)
  assert not (tmp_path / 'w').exists()  # refused before the workdir was made


def test_workdir_empty_is_refused_and_tilde_is_expanded(monkeypatch, tmp_path):
  with pytest.raises(errors.UserError, match='--workdir is empty'):
    workdir_lib.resolve('')
  monkeypatch.setenv('HOME', str(tmp_path))
  assert workdir_lib.resolve('~/runs/x') == tmp_path / 'runs' / 'x'
  assert (tmp_path / 'runs' / 'x').is_dir()


# ----------------------------------------------------------------------------
# Checkpoint before anything can fail.


def test_an_eval_failure_keeps_the_steps_checkpoint_and_the_rerun_matches(
    uninterrupted, uninterrupted_workdir, tiny_dataset, tmp_path, monkeypatch):
  real = evaluate.Evaluator.evaluate
  calls = []

  def failing(self, variables, dataset):
    calls.append(1)
    if len(calls) == 2:  # the eval at step 8, the final step
      raise RuntimeError('a broken evaluation')
    return real(self, variables, dataset)

  monkeypatch.setattr(evaluate.Evaluator, 'evaluate', failing)
  with pytest.raises(RuntimeError, match='a broken evaluation'):
    train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)
  assert _steps(tmp_path) == [4, 8]  # saved before the eval that failed
  assert sorted(helpers.records_without_timings(tmp_path)[-1]) == sorted(  # its training record
      k for k in helpers.records_without_timings(uninterrupted_workdir)[-1]
      if not k.startswith('eval/'))
  monkeypatch.setattr(evaluate.Evaluator, 'evaluate', real)
  train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)  # evaluates step 8
  assert _final(tmp_path, tiny_dataset) == uninterrupted
  assert (helpers.records_without_timings(tmp_path) ==  # as one run writes them
          helpers.records_without_timings(uninterrupted_workdir))


def test_a_full_disk_stops_at_the_first_failed_write_and_resumes(uninterrupted, tiny_dataset,
                                                                 tmp_path, monkeypatch):
  real = metrics_lib.MetricWriter.write

  def full(self, step, record, **kwargs):
    if step == 8:
      raise OSError(errno.ENOSPC, 'No space left on device', str(self.path))
    real(self, step, record, **kwargs)

  monkeypatch.setattr(metrics_lib.MetricWriter, 'write', full)
  with pytest.raises(errors.UserError, match=f'No space left on the device of {tmp_path}'):
    train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)
  assert _steps(tmp_path) == [4, 8]
  assert [r['step'] for r in helpers.records(tmp_path)] == [4]  # nothing torn
  monkeypatch.setattr(metrics_lib.MetricWriter, 'write', real)
  train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)
  assert _final(tmp_path, tiny_dataset) == uninterrupted


def test_already_trained_evaluates_and_reports(tiny_dataset, tmp_path):
  first = train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)
  again = train.train_and_evaluate(_config(num_train_steps=4), str(tmp_path), tiny_dataset)
  assert again['eval/test_recon_loss'] == pytest.approx(first['eval/test_recon_loss'])
  assert [r['step'] for r in helpers.records(tmp_path)] == [4, 8]  # nothing written twice


# ----------------------------------------------------------------------------
# A torn metrics line loses itself only.


def test_a_torn_metrics_line_is_dropped_alone(tmp_path):
  rows = [json.dumps({'step': s, 'train/x': float(s)}) for s in (2, 4, 6, 8, 10)]
  torn = rows[1][:15]  # step 4's record cut short, step 6's appended to it
  (tmp_path / 'metrics.jsonl').write_text(
      '\n'.join([rows[0], torn + rows[2], rows[3], rows[4]]) + '\n')
  metrics_lib.MetricWriter(tmp_path).truncate_after(8)
  assert [r['step'] for r in helpers.records(tmp_path)] == [2, 6, 8]
  dropped = (tmp_path / 'metrics.dropped.jsonl').read_text().splitlines()
  assert dropped == [torn, rows[4]]


# ----------------------------------------------------------------------------
# Damaged checkpoints and the NaN guard.


def _damage_truncate(step_dir):
  biggest = max((p for p in step_dir.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
  biggest.write_bytes(biggest.read_bytes()[:biggest.stat().st_size // 2])


def _damage_overwrite(step_dir):
  biggest = max((p for p in step_dir.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
  raw = bytearray(biggest.read_bytes())
  raw[len(raw) // 2:len(raw) // 2 + 8] = b'\x00' * 8
  biggest.write_bytes(bytes(raw))


def _damage_delete(step_dir):
  shutil.rmtree(step_dir / 'state')


@pytest.mark.parametrize('damage', [_damage_truncate, _damage_overwrite, _damage_delete])
def test_damaged_newest_checkpoint_falls_back_and_is_kept(damage, uninterrupted, tiny_dataset,
                                                          tmp_path):
  train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)
  damage(tmp_path / 'checkpoints' / '8')
  train.train_and_evaluate(_config(), str(tmp_path), tiny_dataset)  # from step 4
  kept = list((tmp_path / 'checkpoints_damaged').iterdir())
  assert len(kept) == 1 and kept[0].name.startswith('8.')
  assert _final(tmp_path, tiny_dataset) == uninterrupted


def test_nan_guard_stops_before_saving_a_bad_state(tiny_dataset, tmp_path):
  train.train_and_evaluate(_config(num_train_steps=4), str(tmp_path), tiny_dataset)
  before = _final(tmp_path, tiny_dataset)
  # A rate beyond float32's range makes the reconstruction update infinite.
  with pytest.raises(train.NonFiniteError, match=re.escape(
      "Non-finite loss or parameters in phase 'recon' at step 5; the run stopped without "
      'saving it. The last good checkpoint (step 4) is untouched')):
    train.train_and_evaluate(_config(**{'optim.recon.lr': 1e39}, allow_config_change=True),
                             str(tmp_path), tiny_dataset)
  assert _final(tmp_path, tiny_dataset) == before


def test_nan_guard_names_the_phase_before_the_first_checkpoint(tiny_dataset, tmp_path):
  # The loop's own flags see a finite reconstruction loss at step 1 and a
  # non-finite one in the next phase; the replay names the phase whose update
  # went wrong.
  with pytest.raises(train.NonFiniteError, match=re.escape(
      "Non-finite loss or parameters in phase 'recon' at step 1; the run stopped without "
      'saving it. The last good checkpoint (step 0)')):
    train.train_and_evaluate(_config(**{'optim.recon.lr': 1e39}), str(tmp_path), tiny_dataset)
  assert not _steps(tmp_path)


def test_the_chunk_checks_its_final_state_once(tiny_dataset):
  exp = train.build(_config(), tiny_dataset)
  dp = parallel.DataParallel('shard_map')
  inputs = exp.chunk_inputs(dp, tiny_dataset.train.images)
  good = exp.state
  # NaN in the decoder's optimizer moments: the step's losses are computed before
  # the update and stay finite (and no later phase reads the decoder); its state is not.
  bad = good.replace(opt_state={**good.opt_state, 'recon': jax.tree.map(
      lambda x: jnp.full_like(x, jnp.nan) if x.ndim == 2 and x.shape[-1] == 784 else x,
      good.opt_state['recon'])})
  names = [p.name for p in exp.phases]
  for state, expected in ((good, None), (bad, (1, 'state'))):
    _, metrics = exp.chunk(dp, 1)(dp.replicate(state), *inputs)
    assert train.first_nonfinite([jax.device_get(metrics)], names, 1) == expected
  two = [{**{train.GUARD_PREFIX + n: np.zeros(3) for n in names},
          train.STATE_GUARD: np.array([0.0, 0.0, 1.0])}]
  assert train.first_nonfinite(two, names, 11) == (13, 'state')
  assert 'by step 13 (every loss finite)' in str(train.nonfinite_error(13, 'state', 10))


def test_checkpoint_of_an_incompatible_config_is_refused_and_kept(tiny_dataset, tmp_path):
  train.train_and_evaluate(_config(num_train_steps=4), str(tmp_path), tiny_dataset)
  listing = sorted(tmp_path.rglob('*'))
  before = _final(tmp_path, tiny_dataset)
  # Refused as another experiment (above); allowed, the shapes do not fit.
  with pytest.raises(errors.UserError, match='come from a config with other shapes.*new --workdir'):
    train.train_and_evaluate(_config('mnist_parzen', allow_config_change=True), str(tmp_path),
                             tiny_dataset)
  assert set(listing) <= set(tmp_path.rglob('*'))  # nothing removed
  assert _final(tmp_path, tiny_dataset) == before


def _recorded_before_the_new_fields(config) -> dict:
  """``config`` as JSON the way a run logged before ``ADDED_FIELDS`` existed and
  before ``prior`` held its own fields only recorded it."""
  old = json.loads(config.to_json_best_effort(sort_keys=True))
  for field in workdir_lib.ADDED_FIELDS:
    *parents, leaf = field.split('.')
    nodes = workdir_lib.nodes_at(old, parents)
    assert nodes, field  # the test config has the field, so removing it is a real test
    for node in nodes:
      node.pop(leaf)
  old['prior'].update(radius=4.0, scale=3.0, num_components=10)  # other priors' fields
  return old


def test_a_config_json_from_before_a_field_existed_is_migrated(tmp_path):
  config = _config('mnist_semisup', '100')
  old = _recorded_before_the_new_fields(config)
  new = json.loads(config.to_json_best_effort(sort_keys=True))
  assert workdir_lib.differences(old, new)  # unmigrated, they differ
  assert workdir_lib.trained_differences(old, new) == {}
  (tmp_path / workdir_lib.CONFIG_NAME).write_text(json.dumps(old))
  workdir_lib.check_config(config, tmp_path, resuming=True)  # a rerun is accepted


def test_migration_keeps_real_differences():
  config = _config('mnist_semisup', '100')
  old = _recorded_before_the_new_fields(config)
  # An added field at another value than the old behaviour is a change of experiment.
  config.loss.recon_reduction = 'mean'
  new = json.loads(config.to_json_best_effort(sort_keys=True))
  assert workdir_lib.trained_differences(old, new) == {
      'loss.recon_reduction': ('sum', 'mean')}
  # The same for a field added under every phase of ``optim``.
  config.loss.recon_reduction = 'sum'
  config.optim.gen.dampening = 0.1
  new = json.loads(config.to_json_best_effort(sort_keys=True))
  assert workdir_lib.trained_differences(old, new) == {'optim.gen.dampening': (0.0, 0.1)}
  # A field missing from the record that is not a known addition stays a difference.
  del old['model']['hidden']
  assert 'model.hidden' in workdir_lib.trained_differences(old, new)
  # The recorded prior's own fields are kept and compared.
  old = _recorded_before_the_new_fields(_config('mnist_semisup', '100'))
  old['prior']['std'] = 2.0
  new = json.loads(_config('mnist_semisup', '100').to_json_best_effort(sort_keys=True))
  assert workdir_lib.trained_differences(old, new) == {'prior.std': (2.0, 1.0)}
