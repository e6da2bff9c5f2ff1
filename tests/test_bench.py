"""The benchmark's measurements are well-formed, and the PyTorch reference trains."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aae_jax import errors
from aae_jax import optim
from aae_jax import precision
from aae_jax import train
from bench import bench
from tests import helpers

HAS_TORCH = importlib.util.find_spec('torch') is not None


def _config():
  return helpers.smoke_config(**{'eval_every': 25, 'checkpoint_every': 25, 'log_every': 25,
                                 'steps_per_dispatch': 5})


def test_bench_reports_every_field():
  result = bench.run(_config(), windows=2, with_torch=HAS_TORCH, with_epoch=True,
                     matmul_size=256, sizes=(600, 100))
  for key in ('examples_per_sec', 'flops_per_example', 'matmul_gflops', 'mfu',
              'epoch_seconds', 'loop_overhead', 'jax_matmul_gflops_float32',
              'jax_matmul_gflops_bfloat16', 'mfu_vs_best_peak'):
    assert result[key] > 0 or key == 'loop_overhead', key
  assert result['precision'] == result['precision_policy'] == 'float32'
  assert result['matmul_gflops'] == result['peak_gflops_float32'] >= result[
      'jax_matmul_gflops_float32']
  assert result['flops_source'] == 'xla_cost_analysis'
  # An MLP step costs at least its matmuls: 2 flops per multiply-add, forward only.
  assert result['flops_per_example'] > 2 * (784 * 32 + 32 * 32 + 32 * 2) * 2
  assert abs(result['mfu'] - result['examples_per_sec'] * result['flops_per_example']
             / (result['matmul_gflops'] * 1e9)) < 1e-9
  if HAS_TORCH:
    assert result['speedup_vs_torch'] == pytest.approx(
        result['examples_per_sec'] / result['torch_examples_per_sec'])


def test_breakdown_times_sgd_and_the_step_shapes():
  config = _config()
  result = bench.run(config, windows=2, with_torch=False, with_epoch=False,
                     matmul_size=256, sizes=(600, 100), breakdown=True)
  assert result['sgd_examples_per_sec'] > 0 and len(result['sgd_window_examples_per_sec']) == 2
  assert result['optimizer_share'] == pytest.approx(
      1 - result['examples_per_sec'] / result['sgd_examples_per_sec'])
  assert result['checks_share'] == pytest.approx(
      1 - result['checked_examples_per_sec'] / result['examples_per_sec'])
  assert bench.with_grad_norms(config).log_grad_norms and not config.log_grad_norms
  assert result['step_shapes_mfu_ceiling'] == pytest.approx(
      result['step_shapes_matmul_gflops'] / result['matmul_gflops'])
  kinds = [result[f'step_{kind}_gflops'] for kind in bench.PRODUCT_KINDS]
  assert all(k > 0 for k in kinds)
  # The total rate lies between the slowest and the fastest kind of product.
  assert min(kinds) <= result['step_shapes_matmul_gflops'] <= max(kinds)
  assert 'sgd_window_examples_per_sec' not in bench.table(result)
  # The SGD variant keeps no moments (only its schedule's step count); the config
  # itself is untouched.
  sgd = bench.with_sgd(config)
  assert {o.name for o in sgd.optim.values()} == {'sgd'}
  assert {o.momentum for o in sgd.optim.values()} == {0.0}
  for name, opt in sgd.optim.items():
    state = jax.tree.leaves(optim.from_config(opt, 10, name).init({'w': np.zeros(3)}))
    assert all(leaf.shape == () and leaf.dtype == np.int32 for leaf in state), name
  assert config.optim.recon.name == 'adam'


def test_bench_times_bfloat16_against_float32_in_alternation():
  config = _config()
  config.model.precision = 'bfloat16'
  result = bench.run(config, windows=2, with_torch=False, with_epoch=False,
                     matmul_size=256, sizes=(600, 100), vs_float32=True)
  assert result['precision'] == 'bfloat16'
  assert result['matmul_gflops'] == result['peak_gflops_bfloat16']
  assert len(result['float32_window_examples_per_sec']) == 2
  assert result['speedup_vs_float32'] == pytest.approx(
      result['examples_per_sec'] / result['float32_examples_per_sec'])
  assert result['float32_mfu'] > 0


@pytest.mark.parametrize('kind', bench.PRODUCT_KINDS)
def test_timed_products_compute_what_the_step_does(kind):
  # The benchmark times each kind of product on operands of the step's layout.
  m, k, n = 6, 4, 5
  for policy, tol in (('float32', 1e-5), ('bfloat16', 5e-2)):
    dtype = jnp.bfloat16 if policy == 'bfloat16' else jnp.float32
    a, b = bench._operands(kind, m, k, n, dtype)  # pylint: disable=protected-access
    products = bench._BF16_PRODUCTS if policy == 'bfloat16' else bench._FLOAT32_PRODUCTS  # pylint: disable=protected-access
    out = products[kind](a, b)
    assert out.shape == (m, n) and out.dtype == jnp.float32
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    want = {'forward': lambda: a @ b, 'input_grad': lambda: a @ b.T,
            'weight_grad': lambda: a.T @ b}[kind]()
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)


def test_dense_shapes_lists_every_kernel():
  config = _config()
  exp = train.build(config, bench.synthetic_dataset(config, sizes=(600, 100)))
  code = 2  # the smoke config's code: (784 -> 32 -> 32 -> code), mirrored, and D
  want = [(784, 32), (32, 32), (32, code), (code, 32), (32, 32), (32, 784),
          (code, 32), (32, 32), (32, 1)]
  assert sorted(bench.dense_shapes(exp.state.params)) == sorted(want)


@pytest.mark.skipif(not HAS_TORCH, reason='the bench extra (torch) is not installed')
def test_torch_reference_trains():
  from bench import torch_reference
  config = _config()
  assert torch_reference.losses_decrease(config, bench.synthetic_dataset(config,
                                                                          sizes=(600, 100)))



def _semisup_config(**overrides):
  return helpers.config('mnist_semisup', '100,smoke', **overrides)


@pytest.mark.skipif(not HAS_TORCH, reason='the bench extra (torch) is not installed')
def test_torch_reference_semisup_trains(tiny_dataset):
  from bench import torch_reference
  ref = torch_reference.TorchStep(_semisup_config(), tiny_dataset, window=1)
  phases = ('recon', 'disc', 'disc_y', 'gen', 'supervised')
  assert ref.phases == phases and tuple(ref.opt) == phases
  assert ref.ema is not None  # mnist_semisup averages the parameters, as the JAX step does
  ema_before = [e.clone() for e in ref.ema]
  first = ref.step()
  assert len(first) == len(phases)
  for _ in range(20):
    last = ref.step()
  assert all(np.isfinite(last))
  assert last[0] < first[0]  # reconstruction
  assert any(not np.array_equal(a, b) for a, b in zip(ema_before, ref.ema))
  assert torch_reference.losses_decrease(_semisup_config(), tiny_dataset)


@pytest.mark.skipif(not HAS_TORCH, reason='the bench extra (torch) is not installed')
def test_torch_reference_supervised_phase_fits_labels(tiny_dataset):
  # In the full step q(y|x) first drifts (the JAX step too: cross-entropy rises for
  # ~30 steps); with the other phases at rate 0 only the supervised phase moves it.
  from bench import torch_reference
  frozen = {f'optim.{phase}.lr': 0.0 for phase in ('recon', 'disc', 'disc_y', 'gen')}
  ref = torch_reference.TorchStep(_semisup_config(**frozen), tiny_dataset, window=1)
  first = ref.labelled_cross_entropy()
  for _ in range(20):
    ref.step()
  last = ref.labelled_cross_entropy()
  assert np.isfinite(last) and last < first - 0.05  # 2.30 to about 2.16


@pytest.mark.skipif(not HAS_TORCH, reason='the bench extra (torch) is not installed')
@pytest.mark.parametrize('field, value', [('model.batch_norm', True),
                                          ('model.input_dropout', 0.2),
                                          ('model.decoder_input', 'heads')])
def test_torch_reference_refuses_unsupported(tiny_dataset, field, value):
  from bench import torch_reference
  with pytest.raises(errors.UserError, match=field):
    torch_reference.TorchStep(_semisup_config(**{field: value}), tiny_dataset, window=1)


def _encoder_leaves(tree):
  """The leaves under an 'encoder' key, at whatever depth the tree keeps them."""
  return [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
          if any(getattr(entry, 'key', None) == 'encoder' for entry in path)]


def test_bench_times_the_semisup_step_with_its_labelled_phase(tiny_dataset):
  """The benchmark's JAX step is the training loop's: labelled batch and parameter average."""
  config = _semisup_config(steps_per_dispatch=2)
  step = bench.JaxStep(config, tiny_dataset)
  before = _encoder_leaves(step.exp.state.ema)
  state, metrics = step.fn(step.state, *step.args)
  assert 'train/ce_loss' in metrics and np.all(np.isfinite(metrics['train/ce_loss']))
  after = _encoder_leaves(jax.device_get(step.dp.unreplicate(state)).ema)
  assert before and len(after) == len(before)
  assert any(not np.array_equal(a, b) for a, b in zip(before, after))  # the average moved
  assert step.flops_per_example() > 0


def test_weight_grad_variants_all_compute_x_transpose_g():
  x = jax.random.normal(jax.random.PRNGKey(0), (10, 6)).astype(jnp.bfloat16)
  g = jax.random.normal(jax.random.PRNGKey(1), (10, 4)).astype(jnp.bfloat16)
  want = np.asarray(x, np.float32).T @ np.asarray(g, np.float32)
  for name, f in bench.WEIGHT_GRAD_VARIANTS.items():
    out = f(x, g)
    assert out.shape == (6, 4) and out.dtype == jnp.float32, name
    np.testing.assert_allclose(out, want, rtol=1e-2, atol=1e-2, err_msg=name)
  rates = bench.weight_grad_variants(10, 6, 4, reps=2)
  assert set(rates) == set(bench.WEIGHT_GRAD_VARIANTS) and min(rates.values()) > 0


@pytest.mark.skipif(not HAS_TORCH, reason='the bench extra (torch) is not installed')
def test_torch_reference_modes(tiny_dataset):
  from bench import torch_reference
  config = _semisup_config()
  with pytest.raises(ValueError, match='mode'):
    torch_reference.TorchStep(config, tiny_dataset, window=1, mode='jit')
  # bf16 autocast changes the products (the losses differ from fp32's) but trains.
  eager = torch_reference.TorchStep(config, tiny_dataset, window=1).step()
  ref = torch_reference.TorchStep(config, tiny_dataset, window=1, mode='eager_bf16')
  first = ref.step()
  assert first != eager and np.allclose(first, eager, rtol=0.05)
  for _ in range(20):
    last = ref.step()
  assert all(np.isfinite(last)) and last[0] < first[0]


@pytest.mark.parametrize('name,arg', [('mnist_semisup', '100,smoke'), ('mnist_gaussian', 'smoke')])
def test_plain_jax_reference_runs_the_projects_phases_on_the_same_nets(tiny_dataset, name, arg):
  from bench import plain_jax
  config = helpers.config(name, arg)
  exp = train.build(config, tiny_dataset)
  ref = plain_jax.PlainJaxStep(config, tiny_dataset, window=10)
  assert ref.phases == tuple(p.name for p in exp.phases)
  size = lambda tree: sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))
  assert size(ref._carry[0]) == size(exp.state.params)  # pylint: disable=protected-access
  first = ref.losses
  for _ in range(5):
    last = ref.run_window()
  assert first.shape == (10, len(ref.phases)) and np.isfinite(last).all()
  assert last[:, 0].mean() < first[:, 0].mean()  # reconstruction falls


def test_bench_times_the_plain_jax_step_in_alternation():
  result = bench.run(_config(), windows=2, with_torch=False, with_epoch=False,
                     matmul_size=256, sizes=(600, 100), plain_jax=True)
  assert len(result['plain_jax_window_examples_per_sec']) == 2
  assert result['speedup_vs_plain_jax'] == pytest.approx(
      result['examples_per_sec'] / result['plain_jax_examples_per_sec'])


def test_the_device_check_runs_every_part_and_keeps_their_output(idx_root, tmp_path):
  root = pathlib.Path(__file__).resolve().parents[1]
  out = tmp_path / 'device_check'
  env = dict(os.environ, SMOKE='1', PYTHON=sys.executable, AAE_DATA_DIR=str(idx_root),
             TFDS_DATA_DIR=str(tmp_path / 'tfds'))
  done = subprocess.run(['bash', str(root / 'bench' / 'device_check.sh'), str(out)], env=env,
                        cwd=tmp_path, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stdout + done.stderr
  status = (out / 'status.txt').read_text().split('\n')
  assert [line.split()[0] for line in status if line] == [
      'machine', 'bench_float32', 'bench_auto', 'epoch']
  last_json = lambda name: json.loads((out / f'{name}.txt').read_text().strip().split('\n')[-1])
  assert last_json('bench_float32')['speedup_vs_plain_jax'] > 0
  auto = last_json('bench_auto')
  assert auto['precision_policy'] == 'auto'
  assert auto['precision'] == precision.resolve('auto')
  assert auto['precision'] == 'float32' or auto['speedup_vs_float32'] > 0
  records = [json.loads(line) for line in
             (out / 'epoch_workdir' / 'metrics.jsonl').read_text().splitlines()]
  assert any('eval/test_error' in r for r in records)
