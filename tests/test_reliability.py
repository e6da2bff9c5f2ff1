"""Across processes: exact resume after SIGKILL, SIGTERM and Ctrl-C, the workdir lock,
determinism; and bad inputs in-process (the one-line format through main is in
test_main.py; damaged checkpoints, the NaN guard and the workdir's rules are in
test_workdir.py)."""

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aae_jax import checkpoint
from aae_jax import config_file
from aae_jax import data
from aae_jax import errors
from aae_jax import train
from tests import helpers

REPO = pathlib.Path(__file__).resolve().parents[1]
RUN = ('--config.num_train_steps=60', '--config.steps_per_dispatch=5', '--config.log_every=10',
       '--config.eval_every=30', '--config.checkpoint_every=20')


@pytest.fixture(scope='module')
def env(idx_root, tmp_path_factory):
  return {**os.environ, data.DATA_DIR_ENV: str(idx_root),
          'TFDS_DATA_DIR': str(tmp_path_factory.mktemp('rel_cache'))}


def command(workdir, *flags, config='configs/mnist_gaussian.py:smoke'):
  return [sys.executable, '-m', 'aae_jax.main', f'--config={config}', f'--workdir={workdir}',
          '--config.data.verify_checksums=False', *flags]


def run(env, workdir, *flags, **kwargs):
  return subprocess.run(command(workdir, *flags, **kwargs), cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def start(env, workdir, *flags):
  return subprocess.Popen(command(workdir, *flags), cwd=REPO, env=env, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(path, process, seconds=120):
  deadline = time.time() + seconds
  while not path.exists():
    assert process.poll() is None, 'the run ended before the point to interrupt it'
    assert time.time() < deadline
    time.sleep(0.05)


def final_state(workdir):
  """The newest checkpoint's leaves, read back raw (no template), and its step."""
  manager = ocp.CheckpointManager(workdir / 'checkpoints',
                                  item_handlers={'state': ocp.StandardCheckpointHandler()})
  step = manager.latest_step()
  state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return step, jax.tree.leaves(state.state)




def assert_same_run(a, b):
  step_a, leaves_a = final_state(a)
  step_b, leaves_b = final_state(b)
  assert step_a == step_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y)  # bit-identical
  assert helpers.records_without_timings(a) == helpers.records_without_timings(b)


@pytest.fixture(scope='module')
def reference(env, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('reference')
  result = run(env, workdir, *RUN)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_sigkill_then_rerun_ends_bit_identical(env, reference, tmp_path):
  """Also the determinism test: ``reference`` is another process's uninterrupted run
  of the same config and seed, so two runs that differed at all would fail here."""
  process = start(env, tmp_path, *RUN)
  wait_for(tmp_path / 'checkpoints' / '20', process)
  process.kill()
  process.wait()
  assert not (tmp_path / 'checkpoints' / '60').exists()
  result = run(env, tmp_path, *RUN)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Resumed from' in result.stderr
  assert_same_run(reference, tmp_path)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'Ctrl-C'])
def test_a_signal_saves_the_current_step_and_exits_zero(env, reference, tmp_path, signum):
  process = start(env, tmp_path, *RUN)
  wait_for(tmp_path / 'checkpoints' / '20', process)
  process.send_signal(signum)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 0, stderr[-3000:]
  assert 'Traceback' not in stderr
  saved = int(stderr.split('Preempted: saved step ')[1].split()[0])
  assert 20 < saved < 60 and (tmp_path / 'checkpoints' / str(saved)).is_dir()
  if signum == signal.SIGINT:
    # One handler serves both signals (interrupts.py): the SIGTERM case resumes the
    # save to the end; here the saved step only needs to restore.
    step, _ = final_state(tmp_path)
    assert step == saved
    return
  result = run(env, tmp_path, *RUN)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'at step {saved}' in result.stderr
  assert_same_run(reference, tmp_path)


def test_a_second_ctrl_c_exits_at_once_without_a_traceback(env, tmp_path):
  process = start(env, tmp_path, *RUN)
  wait_for(tmp_path / 'checkpoints' / '20', process)
  process.send_signal(signal.SIGINT)
  process.send_signal(signal.SIGINT)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode in (0, 130), stderr[-3000:]  # 0 if the first was quicker
  assert 'Traceback' not in stderr
  if process.returncode == 130:
    assert stderr.strip().splitlines()[-1].startswith('aae_jax: second Ctrl-C')
  assert (tmp_path / 'checkpoints' / '20').is_dir()


def test_sigterm_before_the_loop_exits_zero(env, tmp_path):
  process = start(env, tmp_path, *RUN)
  time.sleep(1.0)  # while Python imports JAX or the data loads
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 0, stderr[-3000:]
  assert 'Traceback' not in stderr


def test_a_second_run_on_a_busy_workdir_stops_at_once(env, tmp_path):
  first = start(env, tmp_path, *RUN)
  wait_for(tmp_path / 'run.lock', first)
  second = run(env, tmp_path, *RUN)
  first.communicate(timeout=300)
  assert first.returncode == 0
  assert second.returncode != 0
  last = second.stderr.strip().splitlines()[-1]
  assert f'is in use by pid {first.pid}' in last, last
  rows = [r['step'] for r in helpers.records_without_timings(tmp_path)]
  assert rows == sorted(set(rows))  # one run's records only, in order


BAD_INPUTS = [
    ({'prior.name': 'gauss'}, "prior.name='gauss' is not a prior"),
    ({'prior.name': 'mog'}, "config.prior does not fit prior.name='mog'"),
    ({'model.encoder': 'vae'}, "model.encoder='vae' is not an encoder kind"),
    ({'data.name': 'mnsit'}, "data.name='mnsit' is not a TFDS dataset"),
    ({'optim.gen.name': 'rmsprop'}, "optim.gen.name='rmsprop' is not an optimizer"),
    ({'model.hidden': ('a', 'b')}, 'must be a tuple of layer widths'),
    ({'batch_size': 10}, 'batch_size=10 is not divisible by the 4 devices'),
    ({'data.verify_checksums': True, 'data.cache_dir': 'fresh'},
     'is not the official'),  # checked when a dataset is prepared, so a fresh cache
]


@pytest.mark.parametrize('overrides,message', BAD_INPUTS, ids=[b[1][:24] for b in BAD_INPUTS])
def test_bad_input_is_a_user_error_before_anything_is_saved(idx_root, tmp_path, overrides,
                                                            message):
  overrides = {k: str(tmp_path / 'cache') if v == 'fresh' else v for k, v in overrides.items()}
  config = helpers.config('mnist_gaussian', **{'data.manual_dir': str(idx_root), **overrides})
  with pytest.raises(errors.UserError, match=re.escape(message)):
    train.train_and_evaluate(config, str(tmp_path / 'w'))
  saved = tmp_path / 'w' / 'checkpoints'
  assert not saved.exists() or not any(saved.iterdir())


@pytest.mark.parametrize('value,message', [
    ('configs/nope.py', 'no such file configs/nope.py; the experiments in configs/:'),
    ('configs/common.py', 'is not an experiment config'),
    ('configs/mnist_mog.py:smok', "unknown word 'smok'"),
    ('configs/mnist_semisup.py:1001', "labels='1001' is not one of its choices"),
    ('BROKEN', 'does not load (line 1): SyntaxError'),
])
def test_a_bad_config_file_or_argument_is_one_line(value, message, tmp_path, monkeypatch):
  monkeypatch.chdir(REPO)
  if value == 'BROKEN':
    value = str(tmp_path / 'broken.py')
    pathlib.Path(value).write_text('def get_config(:\n')
  with pytest.raises(errors.UserError, match=re.escape(message)):
    config_file.check(value)


def test_checkpoint_of_another_state_structure_is_refused_and_kept(tmp_path):
  """A state written before a field existed (same leaves, an extra empty subtree now):
  not damage, so nothing may be moved aside."""
  old = {'params': {'w': np.arange(6.0).reshape(2, 3)}}
  saver = checkpoint.Checkpointer(tmp_path / 'checkpoints')
  saver.save(7, old)
  saver.wait()
  saver.close()
  listing = sorted(str(p) for p in tmp_path.rglob('*'))
  template = {'params': {'w': np.zeros((2, 3))}, 'ema': {}}
  restorer = checkpoint.Checkpointer(tmp_path / 'checkpoints')
  with pytest.raises(errors.UserError, match='another structure.*left untouched'):
    restorer.restore_latest(template)
  restorer.close()
  assert sorted(str(p) for p in tmp_path.rglob('*')) == listing
  assert not (tmp_path / 'checkpoints_damaged').exists()


def test_unwritable_workdir(env, tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  result = run(env, blocker / 'workdir')
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('aae_jax: --workdir=') and 'is not writable' in last, last


@pytest.mark.parametrize('num_labels,message', [
    (95, 'positive multiple of the 10 classes'),
    (1000, 'more than the 500 examples'),
    (490, 'needs 49 examples of class'),
])
def test_labelled_subset_errors(tiny_dataset, num_labels, message):
  with pytest.raises(data.DataError, match=message):
    data.labelled_subset(tiny_dataset.train.labels, num_labels, 10, seed=0)


def test_labelled_subset_is_balanced_and_seeded(tiny_dataset):
  labels = tiny_dataset.train.labels
  a = data.labelled_subset(labels, 100, 10, seed=3)
  np.testing.assert_array_equal(np.bincount(labels[a], minlength=10), [10] * 10)
  np.testing.assert_array_equal(a, data.labelled_subset(labels, 100, 10, seed=3))
  assert not np.array_equal(a, data.labelled_subset(labels, 100, 10, seed=4))
  assert a.max() < len(labels)  # indices into the training split only
