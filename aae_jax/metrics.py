"""A run's metrics: ``metrics.jsonl``, TensorBoard event files and the progress line."""

from __future__ import annotations

import json
import os
import pathlib
import time

from absl import logging
import numpy as np

from aae_jax import files


def _plain(value):
  value = np.asarray(value)
  return value.item() if value.ndim == 0 else value.tolist()


class MetricWriter:
  """Appends one JSON object per line: ``{"step": ..., "<prefix>/<name>": ...}``."""

  def __init__(self, workdir: str | os.PathLike, enabled: bool = True):
    self.path = pathlib.Path(workdir) / 'metrics.jsonl'
    self.enabled = enabled

  def write(self, step: int, metrics: dict, merge: bool = False) -> None:
    """Appends the record of ``step``. With ``merge``, when the last record on disk is
    of ``step`` too, ``metrics`` join it instead (a rerun's eval of a step whose
    training was logged before its eval failed), as one uninterrupted run writes it."""
    if not self.enabled or not metrics:
      return
    metrics = {k: _plain(v) for k, v in metrics.items()}
    lines = self.path.read_text().splitlines(True) if merge and self.path.exists() else []
    last = _parse(lines[-1]) if lines else None
    if last is not None and last['step'] == step:
      lines[-1] = _line(step, {**last, **metrics})
      files.write_atomic(self.path, ''.join(lines))
      return
    with open(self.path, 'a') as f:
      f.write(_line(step, metrics))

  def has_eval(self, step: int) -> bool:
    """Whether a record of ``step`` with ``eval/`` metrics is on disk."""
    if not self.path.exists():
      return False
    for line in self.path.read_text().splitlines():
      record = _parse(line)
      if record and record['step'] == step and any(k.startswith('eval/') for k in record):
        return True
    return False

  def truncate_after(self, step: int) -> None:
    """Drops records past ``step``, where a resumed run starts again.

    They came from steps whose state was not checkpointed (the run was killed)
    and the resumed run writes them again. They are kept, not lost, in
    ``metrics.dropped.jsonl``; so is a torn record. A torn line (a write cut
    short, the next record appended to it) loses only the torn part: a complete
    record after it on the same line is kept.
    """
    if not self.enabled or not self.path.exists():
      return
    kept, dropped = [], []
    for line in self.path.read_text().splitlines():
      torn, record = _split_torn(line)
      if torn:
        dropped.append(torn + '\n')
      if record is not None:
        (kept if _parse(record)['step'] <= step else dropped).append(record + '\n')
    if dropped:
      with open(self.path.with_name('metrics.dropped.jsonl'), 'a') as f:
        f.writelines(dropped)
      files.write_atomic(self.path, ''.join(kept))
      logging.info('Resuming at step %d: moved %d metric records written after it to '
                   'metrics.dropped.jsonl.', step, len(dropped))


class TensorBoard:
  """The run's scalars and figures as TensorBoard event files in ``<workdir>/tensorboard``.

  ``metrics.jsonl`` stays the record the results table is built from; these are
  for ``tensorboard --logdir <workdir>``. A resumed run starts with a purge at
  its first step, so TensorBoard drops what an interrupted segment logged past
  its checkpoint. Written through tensorboardX's event file and summary protos
  (no TensorFlow), in the calling thread: a failed write (a full disk) raises
  where the run can stop on it. tensorboardX's ``SummaryWriter`` writes from a
  thread fed by a ``multiprocessing.Queue``; when that thread dies on a write
  error the queue's feeder blocks, and the process hangs at exit.
  """

  def __init__(self, workdir: str | os.PathLike, enabled: bool = True):
    self.directory = pathlib.Path(workdir) / 'tensorboard'
    self.enabled = enabled
    self.start_step = 0  # where this segment starts: set before the first write
    self._writer = None

  def _write(self, step: int, summaries) -> None:
    # pylint: disable=g-import-not-at-top
    from tensorboardX import event_file_writer
    from tensorboardX.proto import event_pb2
    if self._writer is None:
      self.directory.mkdir(parents=True, exist_ok=True)
      # One file per segment (the pid tells apart two segments started in the same second).
      self._writer = event_file_writer.EventsWriter(str(self.directory / 'events'),
                                                    filename_suffix=f'.{os.getpid()}')
      if self.start_step:  # events past the checkpoint this segment resumed from are dropped
        purge = self.start_step + 1
        self._writer.write_event(event_pb2.Event(step=purge, file_version='brain.Event:2'))
        self._writer.write_event(event_pb2.Event(
            step=purge, session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
    for summary in summaries:
      self._writer.write_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                               summary=summary))
    self._writer.flush()

  def scalars(self, step: int, metrics: dict) -> None:
    """Every scalar of ``metrics`` (arrays such as code moments are left out)."""
    if not self.enabled or not metrics:
      return
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    values = {name: np.asarray(value) for name, value in sorted(metrics.items())}
    self._write(step, [summary.scalar(name, float(v)) for name, v in values.items()
                       if v.ndim == 0 and np.issubdtype(v.dtype, np.number)])

  def images(self, step: int, paths) -> None:
    """PNG files (the run's figures) as images named ``figures/<file stem>``."""
    if not self.enabled or not paths:
      return
    import matplotlib.image  # pylint: disable=g-import-not-at-top
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    self._write(step, [summary.image(f'figures/{pathlib.Path(path).stem}',
                                     matplotlib.image.imread(path)[..., :3], dataformats='HWC')
                       for path in paths])

  def close(self) -> None:
    writer, self._writer = self._writer, None
    if writer is not None:
      writer.close()


def _line(step: int, metrics: dict) -> str:
  return json.dumps({'step': int(step), **{k: v for k, v in sorted(metrics.items())
                                           if k != 'step'}}) + '\n'


def _parse(line: str) -> dict | None:
  """A metrics record, or None for anything else (a torn or foreign line)."""
  try:
    record = json.loads(line)
  except json.JSONDecodeError:
    return None
  if isinstance(record, dict) and isinstance(record.get('step'), int):
    return record
  return None


def _split_torn(line: str) -> tuple[str, str | None]:
  """(the torn part of a line, its complete record or None)."""
  if _parse(line) is not None:
    return '', line
  start = line.rfind('{"step": ')
  while start > 0:
    if _parse(line[start:]) is not None:
      return line[:start], line[start:]
    start = line.rfind('{"step": ', 0, start)
  return line, None


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


class Progress:
  """Steps/s over the last interval and the ETA, for the log line."""

  def __init__(self, start_step: int, total_steps: int, precision: str = ''):
    self.total, self.precision = total_steps, precision
    self._step, self._time = start_step, time.perf_counter()

  def restart(self, step: int) -> None:
    """Starts the next interval now: time spent off the training loop is not counted."""
    self._step, self._time = step, time.perf_counter()

  def update(self, step: int) -> dict:
    now = time.perf_counter()
    rate = (step - self._step) / max(now - self._time, 1e-9)
    self._step, self._time = step, now
    return {'steps_per_sec': rate, 'eta_sec': (self.total - step) / max(rate, 1e-9)}

  def line(self, step: int, rates: dict, metrics: dict) -> str:
    shown = ' '.join(f'{k.split("/")[-1]}={v:.4g}' for k, v in sorted(metrics.items()))
    precision = f' ({self.precision})' if self.precision else ''
    return (f'step {step}/{self.total} | {rates["steps_per_sec"]:.1f} steps/s{precision} | '
            f'ETA {_duration(rates["eta_sec"])} | {shown}')
