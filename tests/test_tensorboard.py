"""TensorBoard event files beside metrics.jsonl, and the profiler switch."""

import errno
import math
import threading

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from aae_jax import metrics as metrics_lib
from aae_jax import train
from tests import helpers


def _events(directory):
  acc = event_accumulator.EventAccumulator(
      str(directory), size_guidance={event_accumulator.SCALARS: 0,
                                     event_accumulator.IMAGES: 0})
  acc.Reload()
  return acc


def test_every_logged_scalar_and_figure_is_in_the_event_files(tiny_dataset, tmp_path):
  config = helpers.config('mnist_semisup', '100,smoke', num_train_steps=8, eval_every=4,
                          log_every=2, checkpoint_every=4)
  train.train_and_evaluate(config, str(tmp_path), tiny_dataset)
  acc = _events(tmp_path / 'tensorboard')
  expected = {}  # tag -> {step: value}, the scalars of metrics.jsonl
  for row in helpers.records(tmp_path):
    for key, value in row.items():
      if key != 'step' and isinstance(value, (int, float)) and not isinstance(value, bool):
        expected.setdefault(key, {})[row['step']] = value
  assert {'train/recon_loss', 'train/ce_loss', 'eval/test_error', 'eval/valid_error',
          'eval/test_mean_max_q', 'run/train_seconds'} <= set(expected)
  assert set(acc.Tags()['scalars']) == set(expected)
  for tag, values in expected.items():
    got = {e.step: e.value for e in acc.Scalars(tag)}
    assert set(got) == set(values), tag
    for step, value in values.items():
      assert math.isclose(got[step], value, rel_tol=1e-6, abs_tol=1e-30), (tag, step)
  images = set(acc.Tags()['images'])
  assert images == {'figures/latent_test', 'figures/style', 'figures/reconstructions'}
  assert [e.step for e in acc.Images('figures/style')] == [4, 8]


def test_a_resumed_run_purges_what_the_interrupted_segment_logged(tiny_dataset, tmp_path):
  short = dict(eval_every=4, log_every=2, checkpoint_every=4)
  train.train_and_evaluate(helpers.config('mnist_gaussian', num_train_steps=8, **short),
                           str(tmp_path), tiny_dataset)
  (tmp_path / 'checkpoints' / '8').rename(tmp_path / 'gone')  # as if killed after step 6
  train.train_and_evaluate(helpers.config('mnist_gaussian', num_train_steps=8, **short),
                           str(tmp_path), tiny_dataset)
  steps = [e.step for e in _events(tmp_path / 'tensorboard').Scalars('train/recon_loss')]
  assert steps == [2, 4, 6, 8]  # the first segment's 6 and 8 purged, written again


def test_profile_steps_writes_a_trace_tensorboard_opens(tiny_dataset, tmp_path):
  config = helpers.config('mnist_gaussian', num_train_steps=8, profile_steps=2,
                          steps_per_dispatch=2, eval_every=8, checkpoint_every=8)
  train.train_and_evaluate(config, str(tmp_path), tiny_dataset)
  traces = list((tmp_path / 'profile').rglob('*.xplane.pb'))
  assert len(traces) == 1 and traces[0].stat().st_size > 1000
  assert traces[0].parent.parent.name == 'profile'  # plugins/profile/<run>/: the plugin's layout


def test_a_failed_event_write_raises_where_the_run_can_stop(tmp_path, monkeypatch):
  """A full disk surfaces in the writing call (the run then stops with its one line),
  not in a background thread whose death left the process hanging at exit."""
  from tensorboardX import record_writer  # pylint: disable=g-import-not-at-top
  board = metrics_lib.TensorBoard(tmp_path)
  board.scalars(1, {'train/loss': 1.0})
  threads = threading.active_count()

  def full(self, data):
    raise OSError(errno.ENOSPC, 'No space left on device', self.path)

  monkeypatch.setattr(record_writer.RecordWriter, 'write', full)
  with pytest.raises(OSError, match='No space left'):
    board.scalars(2, {'train/loss': 2.0})
  assert threading.active_count() == threads  # no writer thread
  monkeypatch.undo()
  board.close()
  assert [e.step for e in _events(tmp_path / 'tensorboard').Scalars('train/loss')] == [1]
