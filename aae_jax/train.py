"""Train state, the compiled step and the training loop."""

from __future__ import annotations

import errno
import functools
import pathlib
import time
from typing import Sequence

from absl import logging
import chex
from flax import struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aae_jax import checkpoint
from aae_jax import data as data_lib
from aae_jax import distributed
from aae_jax import errors
from aae_jax import evaluate
from aae_jax import interrupts as interrupts_lib
from aae_jax import metrics as metrics_lib
from aae_jax import model as model_lib
from aae_jax import parallel
from aae_jax import phases as phases_lib
from aae_jax import plots
from aae_jax import precision as precision_lib
from aae_jax import priors
from aae_jax import validation
from aae_jax import workdir as workdir_lib

_NOISE_STREAM, _ORDER_STREAM, _LABELLED_STREAM = 0, 1, 2
# Per-step metric, per phase: 1 where its loss or the parameters it just updated
# are not finite. The loop stops on it before anything is saved.
GUARD_PREFIX = 'guard/nonfinite_'
# Set at a chunk's last step when its final parameters or optimizer states are
# not all finite (the chunk ran without the per-phase parameter check).
STATE_GUARD = GUARD_PREFIX + 'state'


@struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar
  params: dict  # module name -> parameters
  batch_stats: dict  # module name -> batch-norm statistics (modules that have them)
  opt_state: dict  # phase name -> optax state of the sub-trees it owns
  rng: jax.Array  # raw uint32 key; noise and data order are functions of (rng, step)
  # Exponential moving average of ``variables`` (``config.ema_decay`` > 0), which
  # evaluation then uses; empty when off.
  ema: dict = struct.field(default_factory=dict)

  @property
  def variables(self) -> model_lib.Variables:
    return {'params': self.params, 'batch_stats': self.batch_stats}

  @property
  def eval_variables(self) -> model_lib.Variables:
    """What evaluation uses: the moving average where there is one."""
    return self.ema or self.variables


def create_train_state(phase_list: Sequence[phases_lib.Phase],
                       variables: model_lib.Variables, rng: chex.PRNGKey,
                       ema: bool = False) -> TrainState:
  params = variables['params']
  opt_state = {p.name: p.tx.init({k: params[k] for k in p.owns}) for p in phase_list}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables['batch_stats'], opt_state=opt_state, rng=rng,
                    ema=jax.tree.map(jnp.array, variables) if ema else {})


def train_step(state: TrainState, batch: dict, phase_list: Sequence[phases_lib.Phase],
               ema_decay: float = 0.0, grad_norms: bool = False,
               check_params: bool = True) -> tuple[TrainState, dict]:
  """One step on this device's share of the batch: every phase, in order.

  Each phase differentiates only the sub-trees it owns, averages its gradients
  over the ``'batch'`` axis and applies its own optax transform; later phases
  see the parameters earlier phases updated. Besides each phase's metrics it
  returns ``guard/nonfinite_<phase>`` flags (see ``GUARD_PREFIX``): set when the
  phase's loss is not finite, or (``check_params``) the parameters it updated
  are not. ``grad_norms`` adds ``train/grad_norm_<phase>`` (before clipping; a
  non-finite norm sets the flag too). Each costs a pass over the parameters per
  phase: the training loop runs without the parameter check and replays it only
  where a chunk went wrong (``locate_nonfinite``). When the state keeps a
  parameter average, it moves by ``ema_decay`` after the phases.
  """
  step_key = jax.random.fold_in(jax.random.fold_in(state.rng, _NOISE_STREAM), state.step)
  params, stats = dict(state.params), dict(state.batch_stats)
  opt_state, metrics = dict(state.opt_state), {}
  for i, phase in enumerate(phase_list):
    owned = {k: params[k] for k in phase.owns}
    frozen = {k: v for k, v in params.items() if k not in phase.owns}
    key = jax.random.fold_in(step_key, i)

    def objective(owned, frozen=frozen, stats=stats, key=key, phase=phase):
      return phase.objective({'params': {**frozen, **owned}, 'batch_stats': stats},
                             batch, key)

    (loss, (aux, new_stats)), grads = jax.value_and_grad(objective, has_aux=True)(owned)
    grads = parallel.pmean(grads)
    finite = jnp.isfinite(loss)
    if grad_norms:
      norm = metrics[f'train/grad_norm_{phase.name}'] = optax.global_norm(grads)
      finite &= jnp.isfinite(norm)
    updates, opt_state[phase.name] = phase.tx.update(grads, opt_state[phase.name], owned)
    owned = optax.apply_updates(owned, updates)
    params.update(owned)
    stats.update(new_stats)
    metrics.update(aux)
    if check_params:
      finite &= all_finite(owned)
    metrics[f'{GUARD_PREFIX}{phase.name}'] = 1.0 - finite.astype(jnp.float32)
  metrics = parallel.pmean(metrics)
  ema = state.ema
  if ema:
    ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, ema,
                       {'params': params, 'batch_stats': stats})
  return state.replace(step=state.step + 1, params=params, batch_stats=stats,
                       opt_state=opt_state, ema=ema), metrics


def all_finite(tree) -> jax.Array:
  """Whether every element of ``tree``'s arrays is finite (a bool scalar)."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def epoch_order(rng: chex.PRNGKey, epoch, num_examples: int,
                stream: int = _ORDER_STREAM) -> jax.Array:
  """The order in which an epoch visits the training set: a function of (rng, epoch).

  ``stream`` separates the labelled set's own epochs (``_LABELLED_STREAM``).
  """
  key = jax.random.fold_in(jax.random.fold_in(rng, stream), epoch)
  return jax.random.permutation(key, num_examples)


def _cycled_order(rng, step, steps_per_epoch: int, num_examples: int, stream: int,
                  previous=None):
  """The epoch order of ``step``'s epoch: drawn at an epoch's first step, else kept."""
  draw = lambda: epoch_order(rng, step // steps_per_epoch, num_examples, stream)
  if previous is None:
    return draw()
  return jax.lax.cond(step % steps_per_epoch == 0, draw, lambda: previous)


def make_train_chunk(phase_list, *, batch_size: int, num_devices: int, num_steps: int,
                     num_examples: int, num_labelled: int = 0, ema_decay: float = 0.0,
                     grad_norms: bool = False, check_params: bool = False):
  """A per-device function running ``num_steps`` steps with ``lax.scan``.

  It takes the state and this device's rows of the training set (images and
  labels, from ``DataParallel.shard_rows``; unlabelled rows have label -1).
  Epoch e visits the ``num_examples`` examples in ``epoch_order(rng, e)``; step
  s takes the (s mod steps/epoch)-th slice of ``batch_size`` of that order,
  gathered from the devices that hold those rows (``parallel.gather_rows``);
  this device gets its contiguous share. Batches, and the per-example noise
  keyed by global positions, do not depend on the number of devices or processes.

  With ``num_labelled`` > 0 the chunk also takes ``labelled_idx`` (the training
  rows whose labels may be used, replicated) and adds ``batch['labelled']``: a
  mini-batch of ``batch_size`` of them, visited epoch by epoch in their own
  order, with noise positions after the unlabelled batch's. ``ema_decay``,
  ``grad_norms`` and ``check_params``: see ``train_step``. Without
  ``check_params`` the chunk checks its final state (parameters and optimizer
  states) once instead: ``STATE_GUARD`` is set at its last step where they are
  not all finite.
  """
  local = batch_size // num_devices
  steps_per_epoch = num_examples // batch_size
  labelled_steps = num_labelled // batch_size

  def chunk(state: TrainState, images: jax.Array, labels: jax.Array,
            labelled_idx: jax.Array | None = None):
    positions = jax.lax.axis_index(parallel.AXIS) * local + jnp.arange(local)

    def orders(step, previous=(None, None)):
      main = _cycled_order(state.rng, step, steps_per_epoch, num_examples,
                           _ORDER_STREAM, previous[0])
      if not num_labelled:
        return main, None
      return main, _cycled_order(state.rng, step, labelled_steps, num_labelled,
                                 _LABELLED_STREAM, previous[1])

    def rows(order, step, epoch_steps, index=None):
      idx = jax.lax.dynamic_slice(order, ((step % epoch_steps) * batch_size,), (batch_size,))
      return parallel.gather_rows((images, labels), idx if index is None else index[idx])

    def body(carry, _):
      state, previous = carry
      order = orders(state.step, previous)
      x, y = rows(order[0], state.step, steps_per_epoch)
      batch = {'x': x, 'label': y, 'position': positions, 'step': state.step}
      if num_labelled:
        lx, ly = rows(order[1], state.step, labelled_steps, labelled_idx)
        batch['labelled'] = {'x': lx, 'label': ly, 'position': positions + batch_size}
      state, metrics = train_step(state, batch, phase_list, ema_decay, grad_norms,
                                  check_params)
      return (state, order), metrics

    (state, _), metrics = jax.lax.scan(body, (state, orders(state.step)), None,
                                       length=num_steps)
    if not check_params:
      bad = 1.0 - all_finite((state.params, state.opt_state)).astype(jnp.float32)
      metrics[STATE_GUARD] = jnp.zeros(num_steps).at[-1].set(bad)
    return state, metrics

  return chunk


# ----------------------------------------------------------------------------
# Building an experiment from its config.


@struct.dataclass
class Experiment:
  aae: model_lib.AAE = struct.field(pytree_node=False)
  phases: tuple = struct.field(pytree_node=False)
  state: TrainState
  steps_per_epoch: int = struct.field(pytree_node=False)
  # The training labels the phases may see (-1 where unlabelled) and the rows
  # of the labelled set (empty without data.num_labels).
  train_labels: np.ndarray = struct.field(pytree_node=False)
  labelled_idx: np.ndarray = struct.field(pytree_node=False)
  batch_size: int = struct.field(pytree_node=False, default=100)
  ema_decay: float = struct.field(pytree_node=False, default=0.0)
  grad_norms: bool = struct.field(pytree_node=False, default=False)

  @property
  def supervised(self) -> bool:
    return any(p.name == 'supervised' for p in self.phases)

  @property
  def num_labelled(self) -> int:
    """Rows of the labelled set the supervised phase draws from (0 without one)."""
    return len(self.labelled_idx) if self.supervised else 0

  def chunk_inputs(self, dp: parallel.DataParallel, images: np.ndarray) -> tuple:
    """What a chunk takes besides the state, on ``dp``'s devices: the training
    images (N, ...) and the labels training may see, split by rows, and the
    labelled set's rows (replicated) where there is one."""
    inputs = (dp.shard_rows(images.reshape(len(images), -1)),
              dp.shard_rows(self.train_labels))  # -1 where training may not see the label
    if self.num_labelled:
      inputs += (dp.replicate(jnp.asarray(self.labelled_idx, jnp.int32)),)
    return inputs

  def chunk_fn(self, num_devices: int, num_steps: int, check_params: bool = False):
    """The per-device ``make_train_chunk`` of this experiment (not compiled)."""
    return make_train_chunk(self.phases, batch_size=self.batch_size,
                            num_devices=num_devices, num_steps=num_steps,
                            num_examples=len(self.train_labels),
                            num_labelled=self.num_labelled, ema_decay=self.ema_decay,
                            grad_norms=self.grad_norms, check_params=check_params)

  def chunk(self, dp: parallel.DataParallel, num_steps: int, check_params: bool = False):
    """``chunk_fn`` of ``num_steps`` steps compiled for ``dp``'s devices:
    ``fn(state, *chunk_inputs(dp, images)) -> (state, per-step metrics)``."""
    return dp.compile(self.chunk_fn(dp.num_devices, num_steps, check_params),
                      sharded_argnums=(1, 2))


def _check_labels(config, aae: model_lib.AAE, num_labels: int) -> None:
  m = config.model
  if num_labels < -1:
    raise errors.UserError(f'data.num_labels={num_labels}: use 0 (no labels), -1 (all) '
                           'or a positive, class-balanced count such as 1000.')
  if aae.decoder_input.reads_labels and num_labels != -1:
    raise errors.UserError(f'model.decoder_input={m.decoder_input!r} decodes every example '
                           'with its label: set data.num_labels=-1 (all labels).')
  if num_labels and not (aae.num_classes or aae.reads_labels):
    raise errors.UserError(f'data.num_labels={num_labels} but nothing in config.model reads '
                           'labels: set model.num_classes, model.label_condition or '
                           'model.decoder_input="label_z", or data.num_labels=0.')
  if aae.num_classes and num_labels and num_labels != -1 and num_labels < config.batch_size:
    raise errors.UserError(f'data.num_labels={num_labels} is smaller than batch_size='
                           f'{config.batch_size}; the labelled phase draws full batches.')


def build(config, dataset: data_lib.Dataset) -> Experiment:
  """The modules, phases and initial state that ``config`` describes (its values
  checked first, ``validation.check``)."""
  validation.check(config)
  num_train = len(dataset.train)
  if not 0 < config.batch_size <= num_train:
    raise errors.UserError(f'batch_size={config.batch_size} must be between 1 and the '
                     f'{num_train} training examples.')
  steps_per_epoch = num_train // config.batch_size
  prior = priors.from_config(config.prior)
  data_dim = int(np.prod(dataset.image_shape))
  aae = model_lib.from_config(config, prior, data_dim, dataset.num_classes,
                             axis_name=parallel.AXIS)
  if prior.dim != aae.encoder.code_dim:
    raise errors.UserError(f'model.code_dim={aae.encoder.code_dim} differs from the prior '
                     f'{prior.name!r} of dimension {prior.dim}; make them equal.')
  num_labels = config.data.num_labels
  _check_labels(config, aae, num_labels)
  train_labels, labelled_idx = data_lib.training_labels(
      dataset.train.labels, num_labels, dataset.num_classes, config.seed)
  supervised = bool(aae.num_classes and num_labels)
  phase_list = phases_lib.from_config(aae, config, steps_per_epoch, supervised)
  init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
  state = create_train_state(phase_list, aae.init(init_key, data_dim), train_key,
                             ema=config.ema_decay > 0)
  return Experiment(aae=aae, phases=phase_list, state=state,
                    steps_per_epoch=steps_per_epoch, train_labels=train_labels,
                    labelled_idx=labelled_idx, batch_size=config.batch_size,
                    ema_decay=config.ema_decay,
                    grad_norms=bool(config.get('log_grad_norms', False)))


# ----------------------------------------------------------------------------
# The loop.


def _next_stop(step: int, config) -> int:
  """The next step at which the loop must be on the host (log, eval, save, end).

  Dispatches end at multiples of ``steps_per_dispatch`` too, so how steps are
  grouped into compiled chunks depends on the step alone, not on where a run
  was resumed.
  """
  stops = [config.num_train_steps]
  for every in (config.steps_per_dispatch, config.log_every, config.eval_every,
                config.checkpoint_every):
    stops.append((step // every + 1) * every)
  return min(stops)


def _per_step(chunks: list[dict], key: str) -> np.ndarray:
  """One metric's per-step values over consecutive chunks' host metrics."""
  return np.concatenate([np.atleast_1d(c[key]) for c in chunks])


class NonFiniteError(errors.UserError):
  """Training produced NaN or Inf; raised before the bad state can be saved."""


def first_nonfinite(chunks: list[dict], phase_names: Sequence[str],
                    first_step: int) -> tuple[int, str] | None:
  """The first step and phase whose guard flag is set (``'state'`` for
  ``STATE_GUARD``), or None.

  Args:
    chunks: per-chunk host metrics, each a dict of per-step arrays, in order.
    phase_names: the phases in the order they run (a NaN spreads to later ones).
    first_step: the step number of the first entry (steps count from 1).
  """
  names = list(phase_names) + (['state'] if STATE_GUARD in chunks[0] else [])
  flags = np.stack([_per_step(chunks, GUARD_PREFIX + p) for p in names])
  bad = np.flatnonzero(flags.max(axis=0) > 0)
  if not bad.size:
    return None
  return first_step + int(bad[0]), names[int(np.flatnonzero(flags[:, bad[0]] > 0)[0])]


def nonfinite_error(step: int, phase: str, last_good: int) -> NonFiniteError:
  """The error for a first non-finite ``phase`` at ``step``; ``last_good``: the
  step of the newest checkpoint, for the message."""
  if phase == 'state':
    where, fix = (f'Non-finite parameters or optimizer states by step {step} (every loss '
                  'finite)', 'lower the phases\' optim.<phase>.lr or set optim.<phase>.clip')
  else:
    where, fix = (f'Non-finite loss or parameters in phase {phase!r} at step {step}',
                  f'lower optim.{phase}.lr or set optim.{phase}.clip')
  return NonFiniteError(
      f'{where}; the run stopped without saving it. The last good checkpoint (step '
      f'{last_good}) is untouched: {fix}, then rerun to resume from it.')


def locate_nonfinite(exp: Experiment, dp, state, start: int, until: int, inputs,
                     config) -> tuple[int, str] | None:
  """Replays steps ``start``+1 .. ``until`` from ``state`` (the state after step
  ``start``) with every phase's parameter check (``train_step``'s
  ``check_params``), chunked as the loop chunks them: the first step and phase
  that went non-finite, or None where the replay stays finite."""
  step, dev_state = start, dp.replicate(state)
  while step < until:
    num_steps = min(_next_stop(step, config), until) - step
    dev_state, metrics = exp.chunk(dp, num_steps, check_params=True)(dev_state, *inputs)
    found = first_nonfinite([jax.device_get(metrics)], [p.name for p in exp.phases],
                            step + 1)
    if found is not None:
      return found
    step += num_steps
  return None


class _Profile:
  """A ``jax.profiler`` trace of ``num_steps`` steps (0: none), from the second chunk
  of this segment (the first one compiles), into ``directory``."""

  def __init__(self, directory: pathlib.Path, num_steps: int, start: int):
    self.directory, self.num_steps, self.start = directory, num_steps, start
    self.from_step = None  # where the trace began; -1 once it is written

  def before(self, step: int) -> None:
    if self.num_steps and self.from_step is None and step > self.start:
      jax.profiler.start_trace(str(self.directory))
      self.from_step = step

  def after(self, step: int, state, force: bool = False) -> None:
    if self.from_step is None or self.from_step < 0:
      return
    if force or step - self.from_step >= self.num_steps:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      logging.info('Profiled steps %d-%d into %s: tensorboard --logdir %s (Profile tab).',
                   self.from_step + 1, step, self.directory, self.directory)
      self.from_step = -1


def _disk_full(e: BaseException) -> bool:
  """Whether ``e`` (or an exception it was raised from) is a full disk or quota."""
  while e is not None:
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if 'No space left on device' in str(e):
      return True
    e = e.__cause__ or e.__context__
  return False


def _mean_train_metrics(chunks: list[dict]) -> dict:
  return {k: float(np.mean(_per_step(chunks, k)))
          for k in chunks[0] if not k.startswith(GUARD_PREFIX)}


def _summary(metrics: dict) -> str:
  shown = {k: v for k, v in metrics.items() if k.startswith('eval/test_') and
           np.ndim(v) == 0}
  return ' '.join(f'{k.split("/")[-1]}={float(v):.4g}' for k, v in sorted(shown.items()))


def train_and_evaluate(config, workdir: str, dataset: data_lib.Dataset | None = None) -> dict:
  """Trains ``config`` in ``workdir``, resuming from its newest restorable checkpoint.

  Everything is checked before anything is written (``validation.check``), the
  workdir is locked for the run (``workdir.Lock``) and must hold this
  experiment (``workdir.check_config``). SIGTERM or Ctrl-C saves a checkpoint of
  the current step and returns ``{'preempted_at': step}``. Otherwise returns the
  final evaluation metrics. A full disk stops the run at its first failed write.
  """
  validation.check(config)
  path = workdir_lib.resolve(workdir)
  main_process = distributed.is_main()  # the only one writing metrics, figures, config
  with interrupts_lib.INTERRUPTS.handling() as interrupts, \
       workdir_lib.Lock(path, enabled=main_process):
    try:
      return _train(config, path, dataset, interrupts, main_process)
    except Exception as e:  # pylint: disable=broad-except
      if not _disk_full(e):
        raise
      raise errors.UserError(
          f'No space left on the device of {path} (the run stopped at its first failed '
          'write; the last complete checkpoint and metrics.jsonl are kept): free space, '
          'then rerun the same command to resume.') from e


def _eval_due(step: int, config) -> bool:
  return step % config.eval_every == 0 or step == config.num_train_steps


def resolve_precision(config, workdir: pathlib.Path):
  """``config`` with ``model.precision`` 'auto' made concrete: the precision the
  workdir's ``config.json`` records where it records one (a resumed run keeps
  what it started with, on any machine), else ``precision.auto``'s pick. The
  run's ``config.json``, its log records (``run/precision``) and its progress
  line then name the precision it computes in."""
  policy = config.model.precision
  if policy != 'auto':
    precision_lib.resolve(policy)  # an unknown policy is refused here
    return config
  recorded = workdir_lib.recorded_value(workdir, 'model.precision')
  if recorded in precision_lib.PRECISIONS:
    choice, why = recorded, f'recorded in {workdir / workdir_lib.CONFIG_NAME}, kept on resume'
  else:
    choice, why = precision_lib.auto()
  logging.info("model.precision='auto': %s (%s).", choice, why)
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.model.precision = choice
  return config


def _train(config, workdir: pathlib.Path, dataset, interrupts: interrupts_lib.Interrupts,
           main_process: bool) -> dict:
  dp = parallel.DataParallel(config.parallel.backend)
  dp.check_batch_size(config.batch_size)
  checkpoints = workdir / 'checkpoints'
  resuming = bool(checkpoint.existing_steps(checkpoints))
  config = resolve_precision(config, workdir)
  workdir_lib.check_config(config, workdir, resuming)
  dataset = dataset or distributed.main_first(lambda: data_lib.from_config(config), 'data')
  if config.data.exclude_class >= 0:  # before standardising: its statistics leave it out too
    dataset = data_lib.exclude_class(dataset, config.data.exclude_class)
  if config.data.standardize and dataset.pixel_mean is None:
    dataset = data_lib.standardize(dataset)
  exp = build(config, dataset)
  logging.info('%s: %d train / %d valid / %d test examples, %d steps per epoch, '
               '%d device(s) via %s.', dataset.name, len(dataset.train),
               len(dataset.valid), len(dataset.test), exp.steps_per_epoch,
               dp.num_devices, dp.backend)
  ckpt = checkpoint.Checkpointer(checkpoints, keep=config.checkpoints_to_keep)
  tensorboard = metrics_lib.TensorBoard(workdir, enabled=main_process)
  try:
    return _run(config, workdir, dataset, exp, dp, ckpt, tensorboard, interrupts,
                main_process)
  except BaseException:
    # Whatever stopped the run, a checkpoint being written completes first.
    try:
      ckpt.wait()
    except Exception as e:  # pylint: disable=broad-except
      logging.warning('The checkpoint being written did not complete (%s: %s); the '
                      'previous one is kept.', type(e).__name__, str(e)[:200])
    raise
  finally:
    ckpt.close()
    tensorboard.close()


def _run(config, workdir: pathlib.Path, dataset, exp: Experiment, dp, ckpt, tensorboard,
         interrupts, main_process: bool) -> dict:
  start, state = ckpt.restore_latest(exp.state)
  if not start and ckpt.set_aside and not config.allow_restart:
    raise errors.UserError(
        f'No checkpoint in {ckpt.directory} could be restored (steps '
        f'{", ".join(map(str, ckpt.set_aside))} moved to {ckpt.damaged_directory}); not '
        'restarting from step 0 unseen: rerun with --config.allow_restart=True to train '
        'from scratch in this workdir, or use a new --workdir.')
  if main_process:
    workdir_lib.record_config(config, workdir, start)
  writer = metrics_lib.MetricWriter(workdir, enabled=main_process)
  writer.truncate_after(start)
  tensorboard.start_step = start

  def log(step, record, merge=False):
    writer.write(step, record, merge=merge)
    tensorboard.scalars(step, record)

  def figures(step, variables, test_out):
    if main_process:
      tensorboard.images(step, plots.write_figures(evaluator, variables, dataset, test_out,
                                                   workdir / 'figures', step))

  if start:
    logging.info('Resumed from %s at step %d.', ckpt.directory, start)
  interrupts.last_saved = start
  total = config.num_train_steps
  evaluator = evaluate.from_config(config, exp.aae, dataset, exp.supervised)
  final = {}
  if start and _eval_due(start, config) and not writer.has_eval(start):
    # The run stopped after saving this step but before its eval was written.
    variables = jax.device_get(state.eval_variables)
    final, test_out = evaluator.evaluate(variables, dataset)
    log(start, final, merge=True)  # into the step's training record, where it was written
    figures(start, variables, test_out)
    logging.info('Evaluated step %d, saved before its eval: %s', start, _summary(final))
  if start >= total:
    if not final:
      final = evaluator.evaluate(jax.device_get(state.eval_variables), dataset)[0]
    logging.info('Already trained for %d steps (num_train_steps=%d): nothing to train. '
                 'Evaluation of step %d: %s', start, total, start, _summary(final))
    return final
  if interrupts.requested:
    logging.info('Interrupted before training started; nothing new to save. Rerun the '
                 'same command to start.')
    return {'preempted_at': start}

  inputs = exp.chunk_inputs(dp, dataset.train.images)
  dev_state = dp.replicate(state)
  del state
  compiled = functools.cache(functools.partial(exp.chunk, dp))

  progress = metrics_lib.Progress(start, total, config.model.precision)
  profile = _Profile(workdir / 'profile', config.get('profile_steps', 0), start)
  pending, since_log = [], []
  step, checked, last_saved = start, start, start
  train_seconds, t0, loop_start = 0.0, time.perf_counter(), None
  while step < total:
    num_steps = _next_stop(step, config) - step
    profile.before(step)
    dev_state, chunk_metrics = compiled(num_steps)(dev_state, *inputs)
    step += num_steps
    profile.after(step, dev_state)
    pending.append(chunk_metrics)
    if len(pending) > 1:  # at most two dispatches in flight
      jax.block_until_ready(pending[-2])
    at_log = step % config.log_every == 0 or step == total
    at_eval = _eval_due(step, config)
    at_save = step % config.checkpoint_every == 0 or step == total
    if not (at_log or at_eval or at_save or interrupts.requested):
      continue
    host = jax.device_get(pending)
    pending = []
    train_seconds += time.perf_counter() - t0
    bad = first_nonfinite(host, [p.name for p in exp.phases], checked + 1)
    if bad is not None:
      # The loop's chunks flag losses and check the state once per chunk; the
      # replay from the last checkpoint finds the phase whose update went wrong.
      del dev_state, pending
      ckpt.wait()
      restored, state = ckpt.restore_latest(exp.state)
      logging.info('Non-finite values by step %d: replaying steps %d-%d with every '
                   'phase\'s parameter check to find where.', bad[0], restored + 1, bad[0])
      located = locate_nonfinite(exp, dp, state, restored, bad[0], inputs, config)
      raise nonfinite_error(*(located or bad), last_saved)
    checked = step
    since_log += host
    record = {}
    if at_log:
      means = _mean_train_metrics(since_log)
      since_log = []
      rates = progress.update(step)
      logging.info(progress.line(step, rates, means))
      record.update(means, **{'train/steps_per_sec': rates['steps_per_sec'],
                              'train/epoch': step / exp.steps_per_epoch,
                              'run/precision': config.model.precision})
    if step == total:
      record.update({'run/train_seconds': train_seconds,
                     'run/steps_per_sec': (total - start) / max(train_seconds, 1e-9)})
    # Saved before the eval: whatever the eval, figures or logging raise, the
    # step's training is on disk (and a rerun evaluates it first).
    if at_save or interrupts.requested:
      ckpt.save(step, dp.unreplicate(dev_state))
      last_saved = interrupts.last_saved = step
    test_out = None
    if at_eval:
      variables = jax.device_get(dp.unreplicate(dev_state).eval_variables)
      try:
        final, test_out = evaluator.evaluate(variables, dataset)
      except Exception:
        log(step, record)  # the step's training metrics; the rerun adds its eval
        raise
      record.update(final)
    log(step, record)
    if test_out is not None:
      figures(step, variables, test_out)
    if interrupts.requested:
      if last_saved != step:  # the signal came during the eval
        ckpt.save(step, dp.unreplicate(dev_state))
        last_saved = interrupts.last_saved = step
      break
    progress.restart(step)  # eval, figures and saving do not count as training time
    t0 = time.perf_counter()
    if at_eval and loop_start is None:
      # The steady-state clock starts after the first eval, when the step and
      # the eval functions have compiled: see run/loop_seconds below.
      loop_start = (step, t0)
  # Wall time of everything the loop did after its first eval (steps, data
  # drawing, logging, evals, figures, saves), for the benchmark's epoch time;
  # nan when the run had no eval before its last one.
  loop_steps = step - loop_start[0] if loop_start else 0
  loop_seconds = time.perf_counter() - loop_start[1] if loop_start else float('nan')
  profile.after(step, dev_state, force=True)
  ckpt.wait()
  distributed.barrier('train_and_evaluate:end')
  if step < total:
    logging.info('Preempted: saved step %d in %s; rerun the same command to resume.',
                 step, ckpt.directory)
    return {'preempted_at': step}
  logging.info('Done: %d steps in %.1f s of training (%.2f steps/s).', total - start,
               train_seconds, (total - start) / max(train_seconds, 1e-9))
  return {**final, 'run/loop_seconds': loop_seconds, 'run/loop_steps': loop_steps}
