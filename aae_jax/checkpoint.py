"""Orbax checkpoints of the train state under ``<workdir>/checkpoints``."""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves asynchronously, keeps the newest ``keep`` steps, restores with a template."""

  def __init__(self, directory: str | os.PathLike, keep: int = 3):
    self.manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(keep), create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state) -> None:
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))

  def restore(self, step: int, template):
    """Restores ``step`` into the structure, shapes and shardings of ``template``.

    Without a template Orbax returns optax states as plain lists.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    restored = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    return restored.state

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
