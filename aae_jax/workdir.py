"""A run's workdir: one experiment, one process at a time.

* ``resolve``: ``--workdir`` checked (not empty), ``~`` expanded, created, writable.
* ``Lock``: ``<workdir>/run.lock`` (host, pid, start time), taken before anything
  else is written; a second run on a busy workdir stops with one line naming the
  first. A lock left by a process of this host that is gone is taken over.
* ``check_config``: a rerun whose config differs from the workdir's
  ``config.json`` (the first segment's) in a field that changes what is trained
  is refused, listing the differences, unless ``allow_config_change``; a
  ``config.json`` written before a field existed is read through ``migrate``
  (``trained_differences`` is the rule, which ``tools/report.py`` applies too);
  ``record_config`` appends every segment's config to ``config_history.jsonl``,
  never overwriting anything.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import socket

from absl import logging

from aae_jax import errors
from aae_jax import files
from aae_jax import priors

LOCK_NAME = 'run.lock'
CONFIG_NAME = 'config.json'
HISTORY_NAME = 'config_history.jsonl'
# Fields a resumed run may change: when and how it logs, evaluates, saves and
# runs, not what it trains. Prefixes end with '.'.
RESUME_SAFE = ('num_train_steps', 'steps_per_dispatch', 'log_every', 'eval_every',
               'checkpoint_every', 'checkpoints_to_keep', 'eval_batch_size',
               'allow_config_change', 'allow_restart', 'profile_steps', 'log_grad_norms',
               'evaluation.',
               'parallel.',
               'data.manual_dir', 'data.cache_dir', 'data.verify_checksums')


def resolve(workdir: str | os.PathLike) -> pathlib.Path:
  """The workdir as a path: ``~`` expanded, created, checked writable."""
  workdir = os.fspath(workdir)
  if not workdir or not workdir.strip():
    raise errors.UserError('--workdir is empty: give the folder the run writes to '
                           '(e.g. --workdir=runs/my_run).')
  path = pathlib.Path(os.path.expanduser(workdir.strip()))
  if '~' in path.parts:
    raise errors.UserError(f'--workdir={workdir} has a "~" the shell did not expand; write '
                           'the full path (e.g. $HOME/runs/x).')
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f'.write_test.{os.getpid()}'
    probe.write_text('')
    probe.unlink()
  except OSError as e:
    raise errors.UserError(f'--workdir={workdir} is not writable ({e.strerror}); choose a '
                           'folder you can create files in.') from e
  return path


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # someone else's process
    return True
  return True


class Lock:
  """``<workdir>/run.lock`` held for the ``with`` block (a no-op when not ``enabled``)."""

  def __init__(self, workdir: pathlib.Path, enabled: bool = True):
    self.path = workdir / LOCK_NAME
    self.enabled = enabled
    self.held = False

  def _mine(self) -> dict:
    return {'host': socket.gethostname(), 'pid': os.getpid(),
            'started': datetime.datetime.now().isoformat(timespec='seconds')}

  def _holder(self) -> dict:
    try:
      return json.loads(self.path.read_text())
    except (OSError, ValueError):
      return {}

  def acquire(self) -> None:
    if not self.enabled:
      return
    mine = json.dumps(self._mine())
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      holder = self._holder()
      same_host = holder.get('host') == socket.gethostname()
      pid = holder.get('pid')
      if not (same_host and isinstance(pid, int) and not _alive(pid)):
        raise errors.UserError(
            f'{self.path.parent} is in use by pid {holder.get("pid", "?")} on '
            f'{holder.get("host", "?")} since {holder.get("started", "?")} ({self.path}): '
            'wait for that run, or use another --workdir; delete the lock file only if '
            'that process is gone.') from None
      logging.warning('Taking over %s, left by pid %d (no longer running).', self.path, pid)
      files.write_atomic(self.path, mine)
    else:
      with os.fdopen(fd, 'w') as f:
        f.write(mine)
    self.held = True

  def release(self) -> None:
    if self.held:
      if self._holder().get('pid') == os.getpid():
        self.path.unlink(missing_ok=True)
      self.held = False

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()


# Fields added to the configs after runs were logged, each with the value that
# reproduces what a run whose config.json lacks it trained (the behaviour before the
# field existed; a new field's default always keeps it). '*' stands for every key
# at that level (every phase of ``optim``).
ADDED_FIELDS = {
    'data.exclude_class': -1,
    'loss.recon_reduction': 'sum',
    'model.disc_y_noise_anneal_start': 0,
    'model.disc_y_noise_anneal_steps': 0,
    'model.disc_z_sees_y': False,
    'model.precision': 'float32',
    'model.regularizer': 'adversarial',
    'optim.*.dampening': 0.0,
}


def nodes_at(tree: dict, keys: list[str]) -> list[dict]:
  """The dicts that ``keys`` (a path, '*' for any key) leads to from ``tree``."""
  nodes = [tree]
  for key in keys:
    nodes = [child for node in nodes
             for child in (node.values() if key == '*' else [node.get(key)])
             if isinstance(child, dict)]
  return nodes


def migrate(recorded: dict) -> dict:
  """A recorded config (JSON) in the current layout: each of ``ADDED_FIELDS`` it
  lacks at its old behaviour's value, and ``prior`` holding only the fields of its
  own prior (older configs listed every prior's fields; the others were unused)."""
  out = json.loads(json.dumps(recorded))
  for field, value in ADDED_FIELDS.items():
    *parents, leaf = field.split('.')
    for node in nodes_at(out, parents):
      node.setdefault(leaf, value)
  prior = out.get('prior')
  if isinstance(prior, dict) and prior.get('name') in priors.NAMES:
    own = priors.default_config(prior['name'])
    out['prior'] = {k: v for k, v in prior.items() if k in own}
  return out


def _flat(tree, prefix=''):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def _safe(field: str) -> bool:
  return any(field == s or (s.endswith('.') and field.startswith(s)) for s in RESUME_SAFE)


def differences(old: dict, new: dict) -> dict[str, tuple]:
  """Fields whose values differ between two configs (as JSON dicts): field -> (old, new)."""
  a, b = _flat(old), _flat(new)
  return {k: (a.get(k, '<absent>'), b.get(k, '<absent>'))
          for k in sorted(a.keys() | b.keys()) if a.get(k, '<absent>') != b.get(k, '<absent>')}


# Fields whose value in a new config leaves the recorded one to stand: a run
# records the precision 'auto' picked, and 'auto' accepts any pick.
FOLLOWS_RECORD = {'model.precision': 'auto'}


def _follows(field: str, recorded, new) -> bool:
  return FOLLOWS_RECORD.get(field) == new and recorded != '<absent>'


def trained_differences(recorded: dict, new: dict) -> dict[str, tuple]:
  """The fields that change what is trained between a recorded config (migrated)
  and ``new`` (both JSON dicts): field -> (recorded, new); empty when the same."""
  return {k: (a, b) for k, (a, b) in differences(migrate(recorded), new).items()
          if not _safe(k) and not _follows(k, a, b)}


def recorded_value(workdir: pathlib.Path, field: str):
  """``field`` (dotted) of the workdir's ``config.json`` (migrated), or None."""
  path = workdir / CONFIG_NAME
  if not path.exists():
    return None
  node = migrate(json.loads(path.read_text()))
  for key in field.split('.'):
    node = node.get(key) if isinstance(node, dict) else None
  return node


def _as_json(config) -> dict:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def check_config(config, workdir: pathlib.Path, resuming: bool) -> None:
  """Refuses a rerun that would train something else than the workdir's experiment.

  Args:
    resuming: the workdir holds checkpoints (of an earlier segment).
  """
  first_path = workdir / CONFIG_NAME
  if config.get('allow_config_change', False):
    return
  if first_path.exists():
    changed = trained_differences(json.loads(first_path.read_text()), _as_json(config))
    if changed:
      shown = '; '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in list(changed.items())[:4])
      more = f' (and {len(changed) - 4} more)' if len(changed) > 4 else ''
      raise errors.UserError(
          f'{workdir} holds another experiment: {shown}{more} differ from its '
          f'{CONFIG_NAME}. Use a new --workdir, or rerun with the recorded values; '
          '--config.allow_config_change=True continues with the change (recorded in '
          f'{HISTORY_NAME}).')
  elif resuming:
    raise errors.UserError(
        f'{workdir} holds checkpoints but no {CONFIG_NAME}: what they were trained with is '
        'unknown. Restore the file, or rerun with --config.allow_config_change=True to '
        'record this run\'s config as the workdir\'s.')


def record_config(config, workdir: pathlib.Path, step: int) -> None:
  """Writes ``config.json`` if the workdir has none, and appends this segment
  (its start step and full config) to ``config_history.jsonl``."""
  first_path, history = workdir / CONFIG_NAME, workdir / HISTORY_NAME
  new = _as_json(config)
  if not first_path.exists():
    files.write_atomic(first_path, json.dumps(new, indent=2, sort_keys=True))
  with open(history, 'a') as f:
    f.write(json.dumps({'start_step': int(step), 'host': socket.gethostname(),
                        'time': datetime.datetime.now().isoformat(timespec='seconds'),
                        'config': new}, sort_keys=True) + '\n')
