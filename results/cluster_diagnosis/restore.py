"""What diag.py and shuffle.py share: a cluster run's config, data, model and newest checkpoint.

Usage of both scripts: ``<script> RUN_DIR CLUSTERS [field=value ...]`` with the
overrides the run was started with (its config.json says which).
"""
import pathlib
import sys

from flax import struct

from aae_jax import checkpoint, data, train
from configs import mnist_cluster


@struct.dataclass
class OldState:  # TrainState before its ema field: these runs predate it
  step: object
  params: dict
  opt_state: dict
  rng: object


def from_argv(argv=sys.argv):
  """(step, params, aae, dataset) of the run named on the command line."""
  wd, arg = argv[1], argv[2]
  c = mnist_cluster.get_config(arg)
  for kv in argv[3:]:
    k, v = kv.split('=')
    exec(f'c.{k} = {v}')  # pylint: disable=exec-used
  ds = data.from_config(c)
  exp = train.build(c, ds)
  template = OldState(*(getattr(exp.state, k) for k in ('step', 'params', 'opt_state', 'rng')))
  step, state = checkpoint.Checkpointer(pathlib.Path(wd) / 'checkpoints').restore_latest(template)
  return step, state.params, exp.aae, ds
