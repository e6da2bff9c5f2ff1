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


def matmul_gflops(n: int, reps: int = 10) -> float:
  """Median fp32 GFLOP/s of an n x n x n matrix product."""
  a, b = (jax.random.normal(jax.random.PRNGKey(i), (n, n), jnp.float32) for i in range(2))
  f = jax.jit(jnp.dot)
  f(a, b).block_until_ready()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    f(a, b).block_until_ready()
    times.append(time.perf_counter() - t)
  return 2 * n**3 / statistics.median(times) / 1e9


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
        sizes: tuple[int, int] | None = None) -> dict:
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
  jax_rates, torch_rates = [], []
  for _ in range(windows):  # alternate, so drifts in machine load hit both alike
    jax_rates.append(jax_step.time_window())
    if torch_step is not None:
      torch_rates.append(torch_step.time_window())
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
  if with_epoch:
    steps_per_epoch = len(dataset.train) // config.batch_size
    result['epoch_seconds'] = loop_epoch
    result['step_epoch_seconds'] = steps_per_epoch * config.batch_size / rate
    result['loop_overhead'] = result['epoch_seconds'] / result['step_epoch_seconds'] - 1
  return result


def table(result: dict) -> str:
  rows = [(k, v) for k, v in result.items() if not k.startswith(('window', 'torch_window'))]
  width = max(len(k) for k, _ in rows)
  return '\n'.join(f'{k:<{width}}  {v:.4g}' if isinstance(v, float) else f'{k:<{width}}  {v}'
                   for k, v in rows)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  result = run(FLAGS.config, windows=FLAGS.windows, with_torch=FLAGS.torch,
               with_epoch=FLAGS.epoch, matmul_size=FLAGS.matmul_size)
  result = {'config': config_flags.get_config_filename(FLAGS['config']), **result}
  print(table(result))
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
