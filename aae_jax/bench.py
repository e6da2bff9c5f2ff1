"""Speed of the full train step, against the machine's matmul rate and PyTorch.

    python -m aae_jax.bench --config=configs/mnist_parzen.py [--torch]

Prints a table, then one JSON line with:

* ``examples_per_sec``: the compiled step (every phase), after compilation, as
  the median of ``--windows`` timed windows of ``steps_per_dispatch`` steps.
* ``flops_per_example``: XLA's cost analysis of the compiled one-step program,
  divided by the batch size (``flops_source`` says so).
* ``matmul_gflops``: fp32 (n x n) @ (n x n) rate measured in the same run.
* ``mfu``: step FLOP rate over the matmul rate.
* ``epoch_seconds``: one epoch through the real loop (``train.train_and_evaluate``
  on data of the config's shape: batches drawn on device, logging, one eval with
  figures and one checkpoint per ``eval_every`` steps, amortised), in steady
  state: timed after the first eval, so compilation is left out.
* ``loop_overhead``: epoch time over pure step time, minus 1.
* with ``--torch``: ``torch_examples_per_sec`` (the same phases in PyTorch eager,
  timed in alternation with JAX) and ``speedup_vs_torch``.
* with ``--breakdown``, where the step's time goes:
  ``sgd_examples_per_sec`` (the same step with plain SGD in every phase, timed
  in alternation) and ``optimizer_share`` (the share of the step's time the
  optimizers' state updates take beyond that); ``step_shapes_matmul_gflops``,
  the matmul rate at the step's own shapes (every dense layer's forward, input
  gradient and weight gradient at the batch size) and ``step_shapes_mfu_ceiling``,
  that rate over ``matmul_gflops``: the MFU of a step that did nothing but its
  matmuls.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

from aae_jax import data as data_lib
from aae_jax import parallel
from aae_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
flags.DEFINE_integer('windows', 7, 'Timed windows per implementation.')
flags.DEFINE_bool('torch', False, 'Also time the PyTorch eager reference (pip install -e .[bench]).')
flags.DEFINE_bool('epoch', True, 'Also time an epoch through the real training loop.')
flags.DEFINE_integer('matmul_size', 2048, 'Side of the square matrices for the matmul rate.')
flags.DEFINE_bool('breakdown', False, 'Also time the step with plain SGD and the matmuls '
                  'at the step\'s shapes (optimizer_share, step_shapes_mfu_ceiling).')
flags.mark_flag_as_required('config')

_SHAPES = {'mnist': (28, 28, 1), 'fashion_mnist': (28, 28, 1), 'svhn_cropped': (32, 32, 3)}
_SIZES = {'mnist': (60_000, 10_000), 'fashion_mnist': (60_000, 10_000),
          'svhn_cropped': (73_257, 26_032)}


def synthetic_dataset(config, seed: int = 0, sizes: tuple[int, int] | None = None
                      ) -> data_lib.Dataset:
  """Random data of the config's dataset shape and split sizes (training file,
  test file): speed does not depend on pixel values, and no download is needed."""
  name = config.data.name
  shape, (num_train_file, num_test) = _SHAPES[name], sizes or _SIZES[name]
  rng = np.random.default_rng(seed)

  def split(n):
    return data_lib.Split(images=rng.random((n,) + shape, dtype=np.float32),
                          labels=rng.integers(0, 10, n).astype(np.int32))

  num_valid = config.data.num_valid
  return data_lib.Dataset(name=name, train=split(num_train_file - num_valid),
                          valid=split(num_valid), test=split(num_test), num_classes=10)


def matmul_seconds(m: int, k: int, n: int, reps: int = 10) -> float:
  """Median time of an fp32 (m x k) @ (k x n) product."""
  a = jax.random.normal(jax.random.PRNGKey(0), (m, k), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (k, n), jnp.float32)
  f = jax.jit(jnp.dot)
  f(a, b).block_until_ready()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    f(a, b).block_until_ready()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def matmul_gflops(n: int, reps: int = 10) -> float:
  """Median fp32 GFLOP/s of an n x n x n matrix product."""
  return 2 * n**3 / matmul_seconds(n, n, n, reps) / 1e9


def dense_shapes(params) -> list[tuple[int, int]]:
  """(inputs, outputs) of every dense kernel in a parameter tree."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  return [tuple(leaf.shape) for path, leaf in leaves
          if getattr(path[-1], 'key', None) == 'kernel' and leaf.ndim == 2]


def step_shapes_gflops(shapes, batch_size: int, reps: int = 20) -> float:
  """Matmul rate at a step's shapes: for each (k, n) kernel its forward
  (B x k @ k x n), input gradient (B x n @ n x k) and weight gradient
  (k x B @ B x n), total flops over total time. Each product is its own
  compiled call, so its ~30 us dispatch is counted: a floor for the narrow
  layers, whose products take about as long."""
  problems = [p for k, n in shapes
              for p in ((batch_size, k, n), (batch_size, n, k), (k, batch_size, n))]
  flops = sum(2 * m * k * n for m, k, n in problems)
  return flops / sum(matmul_seconds(*p, reps=reps) for p in problems) / 1e9


def with_sgd(config):
  """The config with plain SGD (no momentum: no moments to update) in every phase."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for opt in config.optim.values():
      opt.name, opt.momentum = 'sgd', 0.0
  return config


class JaxStep:
  """The compiled chunk of the config's train step on resident data."""

  def __init__(self, config, dataset):
    self.dp = parallel.DataParallel(config.parallel.backend)
    self.exp = train.build(config, dataset)
    self.batch_size, self.window = config.batch_size, config.steps_per_dispatch
    train_split = dataset.train
    self.num_examples = len(train_split)
    rows = -(-self.num_examples // self.dp.num_devices) * self.dp.num_devices
    abstract = lambda x, shape=None: jax.ShapeDtypeStruct(shape or x.shape, x.dtype)
    # As the training loop: labels only where the labelled set has them, and
    # the labelled set's rows for the supervised phase.
    self.num_labelled = len(self.exp.labelled_idx) if self.exp.supervised else 0
    self.ema_decay = config.ema_decay
    labelled = jnp.asarray(self.exp.labelled_idx, jnp.int32)
    extra = (labelled,) if self.num_labelled else ()
    self.abstract_args = (jax.tree.map(abstract, self.exp.state),
                          abstract(train_split.images, (rows, int(np.prod(dataset.image_shape)))),
                          abstract(self.exp.train_labels, (rows,)),
                          *(abstract(e) for e in extra))
    self.args = (self.dp.shard_rows(train_split.images.reshape(self.num_examples, -1)),
                 self.dp.shard_rows(self.exp.train_labels),
                 *(self.dp.replicate(e) for e in extra))
    self.state = self.dp.replicate(self.exp.state)
    self.fn = self.dp.compile(self._chunk(self.window), sharded_argnums=(1, 2))
    self.state, m = self.fn(self.state, *self.args)
    jax.block_until_ready(m)

  def _chunk(self, num_steps):
    return train.make_train_chunk(
        self.exp.phases, batch_size=self.batch_size, num_devices=self.dp.num_devices,
        num_steps=num_steps, num_examples=self.num_examples, num_labelled=self.num_labelled,
        ema_decay=self.ema_decay)

  def flops_per_example(self) -> float:
    """XLA's count for one step (a one-step program, so no loop trip counts)."""
    one = self.dp.shard_map_program(self._chunk(1), len(self.abstract_args),
                                    sharded_argnums=(1, 2))
    cost = one.lower(*self.abstract_args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost['flops']) * self.dp.num_devices / self.batch_size

  def time_window(self) -> float:
    t = time.perf_counter()
    self.state, m = self.fn(self.state, *self.args)
    jax.block_until_ready(m)
    return self.window * self.batch_size / (time.perf_counter() - t)


def epoch_seconds(config, dataset) -> float:
  """One epoch's steady-state wall time in the real loop.

  Runs the loop for two eval periods and times the second (``run/loop_seconds``:
  after the first eval, so one-time compilation is left out), which holds one
  eval with figures and one checkpoint per ``eval_every`` steps, as a long run does.
  """
  steps_per_epoch = len(dataset.train) // config.batch_size
  with config.unlocked():
    config.num_train_steps = 2 * max(config.eval_every, steps_per_epoch)
    config.eval_every = config.num_train_steps // 2
  with tempfile.TemporaryDirectory() as workdir:
    out = train.train_and_evaluate(config, workdir, dataset=dataset)
  return out['run/loop_seconds'] / out['run/loop_steps'] * steps_per_epoch


def run(config, *, windows: int, with_torch: bool, with_epoch: bool, matmul_size: int,
        sizes: tuple[int, int] | None = None, breakdown: bool = False) -> dict:
  dataset = synthetic_dataset(config, sizes=sizes)
  # The loop first, in a process that has not run PyTorch yet: its idle
  # OpenMP threads were seen to slow XLA's CPU threads afterwards.
  loop_epoch = epoch_seconds(config.copy_and_resolve_references(), dataset) if with_epoch else None
  jax_step = JaxStep(config, dataset)
  torch_step = None
  if with_torch:
    from aae_jax import torch_reference  # pylint: disable=g-import-not-at-top
    torch_step = torch_reference.TorchStep(config, dataset, window=jax_step.window)
    torch_step.time_window()  # warm-up
  sgd_step = JaxStep(with_sgd(config), dataset) if breakdown else None
  jax_rates, torch_rates, sgd_rates = [], [], []
  for _ in range(windows):  # alternate, so drifts in machine load hit all alike
    jax_rates.append(jax_step.time_window())
    if torch_step is not None:
      torch_rates.append(torch_step.time_window())
    if sgd_step is not None:
      sgd_rates.append(sgd_step.time_window())
  gflops = matmul_gflops(matmul_size)
  flops = jax_step.flops_per_example()
  rate = statistics.median(jax_rates)
  result = {
      'device': str(jax.devices()[0].device_kind), 'num_devices': jax.device_count(),
      'backend': config.parallel.backend, 'batch_size': config.batch_size,
      'steps_per_dispatch': config.steps_per_dispatch,
      'examples_per_sec': rate, 'steps_per_sec': rate / config.batch_size,
      'window_examples_per_sec': jax_rates,
      'flops_per_example': flops, 'flops_source': 'xla_cost_analysis',
      'matmul_gflops': gflops, 'mfu': rate * flops / (gflops * 1e9),
  }
  if torch_step is not None:
    result['torch_examples_per_sec'] = statistics.median(torch_rates)
    result['torch_window_examples_per_sec'] = torch_rates
    result['speedup_vs_torch'] = rate / result['torch_examples_per_sec']
  if breakdown:
    result['sgd_examples_per_sec'] = statistics.median(sgd_rates)
    result['sgd_window_examples_per_sec'] = sgd_rates
    result['optimizer_share'] = 1 - rate / result['sgd_examples_per_sec']
    result['step_shapes_matmul_gflops'] = step_shapes_gflops(
        dense_shapes(jax_step.exp.state.params),
        jax_step.batch_size // jax_step.dp.num_devices)
    result['step_shapes_mfu_ceiling'] = result['step_shapes_matmul_gflops'] / gflops
  if with_epoch:
    steps_per_epoch = len(dataset.train) // config.batch_size
    result['epoch_seconds'] = loop_epoch
    result['step_epoch_seconds'] = steps_per_epoch * config.batch_size / rate
    result['loop_overhead'] = result['epoch_seconds'] / result['step_epoch_seconds'] - 1
  return result


def table(result: dict) -> str:
  rows = [(k, v) for k, v in result.items() if 'window_' not in k]
  width = max(len(k) for k, _ in rows)
  return '\n'.join(f'{k:<{width}}  {v:.4g}' if isinstance(v, float) else f'{k:<{width}}  {v}'
                   for k, v in rows)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  result = run(FLAGS.config, windows=FLAGS.windows, with_torch=FLAGS.torch,
               with_epoch=FLAGS.epoch, matmul_size=FLAGS.matmul_size,
               breakdown=FLAGS.breakdown)
  result = {'config': config_flags.get_config_filename(FLAGS['config']), **result}
  print(table(result))
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
