"""Speed of the full train step, against the machine's matmul rate and PyTorch.

    python -m bench.bench --config=configs/mnist_parzen.py [--torch]

(from the repository root; ``--torch`` needs ``pip install -e .[bench]``).

Prints a table, then one JSON line with:

* ``examples_per_sec``: the compiled step (every phase), after compilation, as
  the median of ``--windows`` timed windows of ``steps_per_dispatch`` steps.
* ``flops_per_example``: XLA's cost analysis of the compiled one-step program,
  divided by the batch size (``flops_source`` says so).
* ``precision``: what the step computes in, ``precision_policy`` the config's
  ``model.precision`` ('auto' picks per machine: ``aae_jax/precision.py``).
* ``jax_matmul_gflops_<p>``: the (n x n) @ (n x n) rate in each precision, as
  the step computes products (bf16: bf16 inputs, fp32 result), measured in the
  same run; with ``--torch`` also ``torch_matmul_gflops_<p>`` (PyTorch's own
  product); ``peak_gflops_<p>`` the best of them: the machine's measured limit.
* ``matmul_gflops``: that peak for the step's precision; ``mfu``: step FLOP
  rate over it; ``mfu_vs_best_peak``: over the best peak of any precision.
* ``epoch_seconds``: one epoch through the real loop (``train.train_and_evaluate``
  on data of the config's shape: batches drawn on device, logging, one eval with
  figures and one checkpoint per ``eval_every`` steps, amortised), in steady
  state: timed after the first eval, so compilation is left out.
* ``loop_overhead``: epoch time over pure step time, minus 1.
* with ``--torch``: ``torch_<mode>_examples_per_sec`` for each of
  ``--torch_modes`` (the same phases in PyTorch: eager, eager under bf16
  autocast, and each with ``torch.compile``; timed in alternation with JAX),
  ``torch_fastest_mode`` and ``speedup_vs_torch`` against the fastest.
* with ``--plain_jax``: ``plain_jax_examples_per_sec``, the same phases and nets
  written as plain JAX (``bench/plain_jax.py``: no keyed per-example noise, no
  guard flags or metrics, batches drawn with ``randint``; timed in alternation),
  and ``speedup_vs_plain_jax``: what the project's machinery costs (below 1) or saves.
* with ``--vs_float32`` where the step computes in bfloat16: ``float32_examples_per_sec`` (the
  same step in float32, in alternation), ``speedup_vs_float32``, ``float32_mfu``.
* with ``--breakdown``, where the step's time goes:
  ``sgd_examples_per_sec`` (the same step with plain SGD in every phase, timed
  in alternation) and ``optimizer_share`` (the share of the step's time the
  optimizers' state updates take beyond that); ``checked_examples_per_sec``
  (the same step with every phase's parameter check and gradient norm in every
  step, in alternation) and ``checks_share`` (what they would cost: the share
  of the step's time they add); ``step_shapes_matmul_gflops``,
  the matmul rate at the step's own shapes in its precision (every dense
  layer's forward, input gradient and weight gradient at the batch size; each
  kind also alone, ``step_<kind>_gflops``) and ``step_shapes_mfu_ceiling``,
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
from aae_jax import precision as precision_lib
from aae_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
flags.DEFINE_integer('windows', 7, 'Timed windows per implementation.')
flags.DEFINE_bool('torch', False, 'Also time the PyTorch reference (pip install -e .[bench]).')
flags.DEFINE_list('torch_modes', ['eager', 'eager_bf16', 'compile', 'compile_bf16'],
                  'PyTorch modes timed with --torch (bench/torch_reference.py, MODES).')
flags.DEFINE_string('weight_grad_variants', '', 'BATCH,K,N: only time the ways to compute '
                    'a bf16 weight gradient (WEIGHT_GRAD_VARIANTS) at that shape and exit.')
flags.DEFINE_bool('plain_jax', False, 'Also time the same phases written as plain JAX '
                  '(bench/plain_jax.py): speedup_vs_plain_jax.')
flags.DEFINE_bool('vs_float32', False, 'Where the config computes in bfloat16 (bfloat16, or '
                  'auto on bfloat16 hardware), also time the same step in float32, in '
                  'alternation (speedup_vs_float32).')
flags.DEFINE_bool('epoch', True, 'Also time an epoch through the real training loop.')
flags.DEFINE_integer('matmul_size', 2048, 'Side of the square matrices for the matmul rate.')
flags.DEFINE_bool('breakdown', False, 'Also time the step with plain SGD and the matmuls '
                  'at the step\'s shapes (optimizer_share, step_shapes_mfu_ceiling).')


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


_FLOAT32_PRODUCTS = {
    'forward': lambda x, w: x @ w,
    'input_grad': lambda g, w: g @ w.T,
    'weight_grad': lambda x, g: x.T @ g,
}
_BF16_PRODUCTS = {
    'forward': precision_lib.forward,
    'input_grad': precision_lib.input_grad,
    'weight_grad': precision_lib.weight_grad,
}


def _timed(f, *args, reps: int = 20) -> float:
  """Median seconds of the compiled ``f(*args)`` over ``reps`` calls, after one warm-up."""
  f = jax.jit(f)
  f(*args).block_until_ready()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    f(*args).block_until_ready()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def _operands(kind: str, m: int, k: int, n: int, dtype):
  """Random operands of a product of ``kind`` with an (m, n) result, laid out as
  the step has them: forward x (m, k) w (k, n); input_grad g (m, k) w (n, k);
  weight_grad x (k, m) g (k, n) (the batch k is contracted)."""
  shapes = {'forward': ((m, k), (k, n)), 'input_grad': ((m, k), (n, k)),
            'weight_grad': ((k, m), (k, n))}[kind]
  return tuple(jax.random.normal(jax.random.PRNGKey(i), s, jnp.float32).astype(dtype)
               for i, s in enumerate(shapes))


def matmul_seconds(m: int, k: int, n: int, reps: int = 10, precision: str = 'float32',
                   kind: str = 'forward') -> float:
  """Median time of an (m x k) @ (k x n) product, as the step's ``precision``
  computes it: fp32, or bf16 inputs with an fp32 result (``precision.py``);
  ``kind`` says which of a dense layer's three products it is."""
  products = _BF16_PRODUCTS if precision == 'bfloat16' else _FLOAT32_PRODUCTS
  dtype = jnp.bfloat16 if precision == 'bfloat16' else jnp.float32
  return _timed(products[kind], *_operands(kind, m, k, n, dtype), reps=reps)


def matmul_gflops(n: int, reps: int = 10, precision: str = 'float32') -> float:
  """Median GFLOP/s of an n x n x n matrix product in ``precision``."""
  return 2 * n**3 / matmul_seconds(n, n, n, reps, precision) / 1e9


def dense_shapes(params) -> list[tuple[int, int]]:
  """(inputs, outputs) of every dense kernel in a parameter tree."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  return [tuple(leaf.shape) for path, leaf in leaves
          if getattr(path[-1], 'key', None) == 'kernel' and leaf.ndim == 2]


PRODUCT_KINDS = ('forward', 'input_grad', 'weight_grad')


def step_products_gflops(shapes, batch_size: int, reps: int = 20,
                         precision: str = 'float32') -> dict[str, float]:
  """Matmul rate at a step's shapes, per kind of product and in all: for each
  (k, n) kernel its forward (B x k @ k x n), input gradient (B x n @ n x k) and
  weight gradient (k x B @ B x n, contracting the batch), each over every
  kernel: total flops over total time. Each product is its own compiled call,
  so its ~30 us dispatch is counted: a floor for the narrow layers, whose
  products take about as long."""
  problems = {'forward': [(batch_size, k, n) for k, n in shapes],
              'input_grad': [(batch_size, n, k) for k, n in shapes],
              'weight_grad': [(k, batch_size, n) for k, n in shapes]}
  flops, seconds, out = 0, 0.0, {}
  for kind, dims in problems.items():
    f = sum(2 * m * k * n for m, k, n in dims)
    t = sum(matmul_seconds(*d, reps=reps, precision=precision, kind=kind) for d in dims)
    out[kind] = f / t / 1e9
    flops, seconds = flops + f, seconds + t
  out['all'] = flops / seconds / 1e9
  return out


def _pad_rows(a, multiple: int):
  return jnp.pad(a, ((0, -a.shape[0] % multiple), (0, 0)))


# Ways to compute a dense layer's bf16 weight gradient x^T g (x: B x K, g: B x N),
# all with bf16 inputs and an fp32 result; precision.weight_grad is 'transposed_result'.
WEIGHT_GRAD_VARIANTS = {
    'contract_batch': precision_lib.weight_grad_contract_batch,
    'transpose_first': lambda x, g: precision_lib.forward(x.T, g),
    'transposed_result': precision_lib.weight_grad,  # the form the step uses
    'pad_batch_32': lambda x, g: precision_lib.weight_grad_contract_batch(_pad_rows(x, 32),
                                                                          _pad_rows(g, 32)),
    'pad_batch_64': lambda x, g: precision_lib.weight_grad_contract_batch(_pad_rows(x, 64),
                                                                          _pad_rows(g, 64)),
    'float32': lambda x, g: x.astype(jnp.float32).T @ g.astype(jnp.float32),
}


def weight_grad_variants(batch: int, k: int, n: int, reps: int = 20) -> dict[str, float]:
  """GFLOP/s of each of ``WEIGHT_GRAD_VARIANTS`` for a (k x n) kernel at ``batch``,
  timed in turn (round-robin, median of ``reps`` per variant)."""
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, k)).astype(jnp.bfloat16)
  g = jax.random.normal(jax.random.PRNGKey(1), (batch, n)).astype(jnp.bfloat16)
  flops = 2 * batch * k * n
  return {name: flops / _timed(f, x, g, reps=reps) / 1e9
          for name, f in WEIGHT_GRAD_VARIANTS.items()}


def with_sgd(config):
  """The config with plain SGD (no momentum: no moments to update) in every phase."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for opt in config.optim.values():
      opt.name, opt.momentum = 'sgd', 0.0
  return config


class JaxStep:
  """The compiled chunk of the config's train step on resident data."""

  def __init__(self, config, dataset, check_params: bool = False):
    self.dp = parallel.DataParallel(config.parallel.backend)
    self.exp = train.build(config, dataset)
    self.batch_size, self.window = config.batch_size, config.steps_per_dispatch
    train_split = dataset.train
    self.num_examples = len(train_split)
    rows = -(-self.num_examples // self.dp.num_devices) * self.dp.num_devices
    abstract = lambda x, shape=None: jax.ShapeDtypeStruct(shape or x.shape, x.dtype)
    # As the training loop: labels only where the labelled set has them, and
    # the labelled set's rows for the supervised phase.
    labelled = jnp.asarray(self.exp.labelled_idx, jnp.int32)
    extra = (labelled,) if self.exp.num_labelled else ()
    self.abstract_args = (jax.tree.map(abstract, self.exp.state),
                          abstract(train_split.images, (rows, int(np.prod(dataset.image_shape)))),
                          abstract(self.exp.train_labels, (rows,)),
                          *(abstract(e) for e in extra))
    self.args = self.exp.chunk_inputs(self.dp, train_split.images)
    self.state = self.dp.replicate(self.exp.state)
    self.fn = self.exp.chunk(self.dp, self.window, check_params)
    self.state, m = self.fn(self.state, *self.args)
    jax.block_until_ready(m)

  def flops_per_example(self) -> float:
    """XLA's count for one step (a one-step program, so no loop trip counts)."""
    one = self.dp.shard_map_program(self.exp.chunk_fn(self.dp.num_devices, 1),
                                    len(self.abstract_args), sharded_argnums=(1, 2))
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


def _with(config, field: str, value):
  """A copy of ``config`` with the dotted ``field`` set to ``value``."""
  config = config.copy_and_resolve_references()
  *parents, leaf = field.split('.')
  with config.unlocked():
    node = config
    for key in parents:
      node = node[key]
    node[leaf] = value
  return config


def with_grad_norms(config):
  """The config logging every phase's gradient norm (``log_grad_norms``)."""
  return _with(config, 'log_grad_norms', True)


def with_precision(config, policy: str):
  """The config with ``model.precision`` set to ``policy``."""
  return _with(config, 'model.precision', policy)


def run(config, *, windows: int, with_torch: bool, with_epoch: bool, matmul_size: int,
        sizes: tuple[int, int] | None = None, breakdown: bool = False,
        torch_modes: tuple[str, ...] = ('eager',), vs_float32: bool = False,
        plain_jax: bool = False) -> dict:
  dataset = synthetic_dataset(config, sizes=sizes)
  # The loop first, in a process that has not run PyTorch yet: its idle
  # OpenMP threads were seen to slow XLA's CPU threads afterwards.
  loop_epoch = epoch_seconds(config.copy_and_resolve_references(), dataset) if with_epoch else None
  jax_step = JaxStep(config, dataset)
  # Every implementation timed, by name; the windows alternate between them, so
  # drifts in machine load hit all alike.
  others = {}
  if with_torch:
    from bench import torch_reference  # pylint: disable=g-import-not-at-top
    for mode in torch_modes:
      others[f'torch_{mode}'] = torch_reference.TorchStep(config, dataset,
                                                          window=jax_step.window, mode=mode)
      others[f'torch_{mode}'].time_window()  # warm-up (and compilation)
  if plain_jax:
    from bench import plain_jax as plain_jax_lib  # pylint: disable=g-import-not-at-top
    others['plain_jax'] = plain_jax_lib.PlainJaxStep(config, dataset, window=jax_step.window)
  if breakdown:
    others['sgd'] = JaxStep(with_sgd(config), dataset)
    # The step with every phase's parameter check and gradient norms in every
    # step (what the loop ran before they became a replay and an option).
    others['checked'] = JaxStep(with_grad_norms(config), dataset, check_params=True)
  policy = precision_lib.resolve(config.model.precision)  # 'auto' picks for this machine
  compare_fp32 = vs_float32 and policy != 'float32'
  if compare_fp32:
    others['float32'] = JaxStep(with_precision(config, 'float32'), dataset)
  jax_rates, rates = [], {name: [] for name in others}
  for _ in range(windows):
    jax_rates.append(jax_step.time_window())
    for name, step in others.items():
      rates[name].append(step.time_window())
  # The machine's peak per precision: the best square product measured, by XLA
  # and (with --torch) by PyTorch's oneDNN.
  jax_peaks = {p: matmul_gflops(matmul_size, precision=p) for p in precision_lib.PRECISIONS}
  torch_peaks = {}
  if with_torch:
    torch_peaks = {p: torch_reference.matmul_gflops(matmul_size, p)
                   for p in precision_lib.PRECISIONS}
  peaks = {p: max(jax_peaks[p], torch_peaks.get(p, 0.0)) for p in jax_peaks}
  gflops = peaks[policy]
  flops = jax_step.flops_per_example()
  rate = statistics.median(jax_rates)
  result = {
      'device': str(jax.devices()[0].device_kind), 'num_devices': jax.device_count(),
      'backend': config.parallel.backend, 'batch_size': config.batch_size,
      'steps_per_dispatch': config.steps_per_dispatch,
      'examples_per_sec': rate, 'steps_per_sec': rate / config.batch_size,
      'window_examples_per_sec': jax_rates,
      'flops_per_example': flops, 'flops_source': 'xla_cost_analysis',
      'precision': policy, 'precision_policy': config.model.precision,
      **{f'jax_matmul_gflops_{p}': v for p, v in jax_peaks.items()},
      **{f'torch_matmul_gflops_{p}': v for p, v in torch_peaks.items()},
      **{f'peak_gflops_{p}': v for p, v in peaks.items()},
      'matmul_gflops': gflops, 'mfu': rate * flops / (gflops * 1e9),
      'mfu_vs_best_peak': rate * flops / (max(peaks.values()) * 1e9),
  }
  for name, values in rates.items():
    result[f'{name}_examples_per_sec'] = statistics.median(values)
    result[f'{name}_window_examples_per_sec'] = values
  if with_torch:
    fastest = max(torch_modes, key=lambda m: result[f'torch_{m}_examples_per_sec'])
    result['torch_fastest_mode'] = fastest
    result['torch_examples_per_sec'] = result[f'torch_{fastest}_examples_per_sec']
    result['speedup_vs_torch'] = rate / result['torch_examples_per_sec']
  if plain_jax:
    result['speedup_vs_plain_jax'] = rate / result['plain_jax_examples_per_sec']
  if compare_fp32:
    result['speedup_vs_float32'] = rate / result['float32_examples_per_sec']
    result['float32_mfu'] = (result['float32_examples_per_sec'] * flops
                             / (peaks['float32'] * 1e9))
  if breakdown:
    result['optimizer_share'] = 1 - rate / result['sgd_examples_per_sec']
    result['checks_share'] = 1 - result['checked_examples_per_sec'] / rate
    products = step_products_gflops(dense_shapes(jax_step.exp.state.params),
                                    jax_step.batch_size // jax_step.dp.num_devices,
                                    precision=policy)
    result['step_shapes_matmul_gflops'] = products.pop('all')
    result.update({f'step_{kind}_gflops': v for kind, v in products.items()})
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
  if not FLAGS.weight_grad_variants and FLAGS.config is None:
    raise app.UsageError('--config is required.')
  logging.set_verbosity(logging.WARNING)
  if FLAGS.weight_grad_variants:
    batch, k, n = (int(v) for v in FLAGS.weight_grad_variants.split(','))
    rates = weight_grad_variants(batch, k, n)
    print(table(rates))
    print(json.dumps({'weight_grad_shape': [batch, k, n], 'gflops': rates}))
    return
  result = run(FLAGS.config, windows=FLAGS.windows, with_torch=FLAGS.torch,
               with_epoch=FLAGS.epoch, matmul_size=FLAGS.matmul_size,
               breakdown=FLAGS.breakdown, torch_modes=tuple(FLAGS.torch_modes),
               vs_float32=FLAGS.vs_float32, plain_jax=FLAGS.plain_jax)
  result = {'config': config_flags.get_config_filename(FLAGS['config']), **result}
  print(table(result))
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
