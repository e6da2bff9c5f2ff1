"""Orbax checkpoints of the train state under ``<workdir>/checkpoints``.

Every save also writes a digest of the state's bytes. Restoring checks it: Orbax
keeps no checksum of its own, so a few overwritten bytes would otherwise restore
silently wrong. A step that cannot be restored (files missing, truncated or
altered) is moved to ``<workdir>/checkpoints_damaged/`` with a warning, never
deleted, and the next older step is tried. A checkpoint whose shapes differ from
the current config's, or whose stored step differs from its folder's name, is a
user error: nothing is moved.

Pruning keeps the newest ``keep`` steps this run saved and never deletes a step
that was on disk when it started (an earlier run segment's), whatever ``keep``.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import time

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from aae_jax import errors


def _host(x) -> np.ndarray:
  """A host copy of a (replicated) array, also when it spans several processes."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = x.addressable_shards[0].data
  return np.asarray(x)


def digest(tree) -> str:
  """BLAKE2b of every leaf's dtype, shape and bytes, in tree order."""
  h = hashlib.blake2b(digest_size=16)
  for leaf in jax.tree.leaves(tree):
    a = np.ascontiguousarray(_host(leaf))
    h.update(f'{a.dtype}{a.shape}'.encode())
    h.update(a.tobytes())
  return h.hexdigest()


def _key_name(entry) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def shapes(tree) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Leaf shapes by path, with dict keys, attributes and indices all as strings."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {tuple(_key_name(e) for e in path): tuple(leaf.shape) for path, leaf in flat}


def existing_steps(directory: pathlib.Path) -> list[int]:
  """The step folders (all-digit names) in ``directory``, oldest first."""
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


class Checkpointer:
  """Saves asynchronously, keeps the newest ``keep`` steps, restores with a template."""

  def __init__(self, directory: str | os.PathLike, keep: int = 3):
    if not isinstance(keep, int) or keep < 1:
      raise errors.UserError(f'checkpoints_to_keep={keep!r} must be at least 1: it is how '
                             'many of this run\'s newest checkpoints stay on disk.')
    self.directory = pathlib.Path(directory).absolute()
    self.damaged_directory = self.directory.with_name(self.directory.name + '_damaged')
    self.set_aside: list[int] = []  # steps restore_latest moved to damaged_directory
    policies = ocp.checkpoint_managers
    earlier = existing_steps(self.directory)  # an earlier segment's: never pruned
    self.manager = ocp.CheckpointManager(
        self.directory,
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'meta': ocp.JsonCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(
                [policies.LatestN(keep), policies.CustomSteps(earlier)]),
            create=True))

  def save(self, step: int, state) -> None:
    """Saves ``state`` (copied first: the train step donates its buffers)."""
    state = jax.tree.map(lambda x: x.copy(), state)
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        meta=ocp.args.JsonSave({'step': int(step), 'digest': digest(state)})))

  def _check_compatible(self, step: int, template) -> None:
    try:
      saved = shapes(self.manager.item_metadata(step)['state'])
    except Exception:  # pylint: disable=broad-except
      return  # unreadable metadata: restore will fail and treat the step as damaged
    wanted = shapes(template)
    if saved != wanted:
      paths = sorted(p for p in saved.keys() | wanted.keys() if saved.get(p) != wanted.get(p))
      shown = '; '.join(f'{"/".join(p)}: {saved.get(p, "absent")} saved, '
                        f'{wanted.get(p, "absent")} now' for p in paths[:2])
      raise errors.UserError(
          f'The checkpoints in {self.directory} come from a config with other shapes '
          f'({shown}; {len(paths)} arrays differ). Use a new --workdir for this config, or rerun with the config '
          'that wrote them (its config.json is in the workdir).')

  def _restore(self, step: int, template):
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    if restored.meta.get('digest') != digest(restored.state):
      raise ValueError('the restored state does not match the digest saved with it')
    if restored.meta.get('step') != step:
      raise errors.UserError(
          f'{self.directory / str(step)} holds the checkpoint of step '
          f'{restored.meta.get("step")}, not {step}: was it copied or renamed? Give it its '
          'own step number back, or move it out of the folder; nothing was changed.')
    return restored.state

  def _set_aside(self, step: int, reason: Exception) -> None:
    target = self.damaged_directory / f'{step}.{time.strftime("%Y%m%d-%H%M%S")}'
    self.set_aside.append(step)
    if jax.process_index() == 0:
      self.damaged_directory.mkdir(parents=True, exist_ok=True)
      os.replace(self.directory / str(step), target)
    logging.warning('Checkpoint step %d in %s could not be restored (%s: %s); moved it to %s '
                    'and trying the next older step.', step, self.directory,
                    type(reason).__name__, str(reason)[:300], target)
    self.manager.reload()

  def _incompatible_structure(self, reason: Exception) -> errors.UserError:
    return errors.UserError(
        f'The checkpoints in {self.directory} hold a state of another structure than this '
        f'version of aae_jax builds ({str(reason).splitlines()[0][:200]}...). They are '
        'left untouched: use a new --workdir, or resume them with the version that wrote '
        'them.')

  def restore_latest(self, template):
    """Restores the newest step that restores: ``(step, state)``, or ``(0, template)``.

    A step whose arrays or tree structure differ from ``template`` is a user
    error (another config or code version), raised with nothing moved; a step
    that fails otherwise is set aside as damaged and the next older one tried.
    """
    for step in sorted(self.manager.all_steps(), reverse=True):
      self._check_compatible(step, template)
      try:
        return step, self._restore(step, template)
      except errors.UserError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        if 'tree structures do not match' in str(e):
          raise self._incompatible_structure(e) from e
        self._set_aside(step, e)
    return 0, template

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
