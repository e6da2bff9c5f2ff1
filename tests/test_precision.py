"""The bfloat16 matmul policy: products in bf16 with f32 results, forward and
backward; parameters, optimizer states and metrics stay float32."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aae_jax import errors
from aae_jax import models
from aae_jax import parallel
from aae_jax import precision
from aae_jax import train
from aae_jax import workdir
from tests import helpers


def _loss(matmul):
  return lambda x, w: 0.5 * jnp.sum(jnp.square(matmul(x, w)))


def test_bf16_matmul_matches_float32_to_bf16_rounding():
  x = jax.random.normal(jax.random.PRNGKey(0), (64, 48))
  w = jax.random.normal(jax.random.PRNGKey(1), (48, 32))
  out = precision.bf16_matmul(x, w)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, x @ w, rtol=0, atol=2e-2 * np.abs(x @ w).max())
  got = jax.grad(_loss(precision.bf16_matmul), (0, 1))(x, w)
  ref = jax.grad(_loss(jnp.matmul), (0, 1))(x, w)
  for g, r in zip(got, ref):
    assert g.dtype == jnp.float32 and g.shape == r.shape
    np.testing.assert_allclose(g, r, rtol=0, atol=2e-2 * np.abs(r).max())
  # Not the float32 product by accident: bf16 rounding shows.
  assert not np.allclose(out, x @ w, rtol=1e-6, atol=0)


@pytest.mark.parametrize('shape', [(100, 48, 32), (4, 25, 48, 32)])
def test_the_fast_weight_gradient_equals_the_batch_contracting_form(shape):
  *batch, k, n = shape
  x = jax.random.normal(jax.random.PRNGKey(0), (*batch, k)).astype(jnp.bfloat16)
  g = jax.random.normal(jax.random.PRNGKey(1), (*batch, n)).astype(jnp.bfloat16)
  got = precision.weight_grad(x, g)
  want = precision.weight_grad_contract_batch(x, g)
  assert got.shape == want.shape == (k, n) and got.dtype == want.dtype == jnp.float32
  # Both accumulate the same bf16 products in float32: equal up to summation order.
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
  exact = (np.asarray(x, np.float64).reshape(-1, k).T @ np.asarray(g, np.float64).reshape(-1, n))
  np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5 * np.abs(exact).max())


def test_every_product_of_the_gradient_takes_bf16_inputs():
  x, w = jnp.ones((8, 5)), jnp.ones((5, 3))
  text = jax.jit(jax.grad(_loss(precision.bf16_matmul), (0, 1))).lower(x, w).as_text()
  dots = re.findall(r'stablehlo\.dot_general.*?: \((.*?)\) -> (tensor<[^>]*>)', text)
  assert len(dots) == 3  # forward, input gradient, weight gradient
  for operands, result in dots:
    assert operands.count('bf16') == 2, operands
    assert result.endswith('xf32>'), result


def test_bfloat16_policy_trains_in_float32_state(tiny_dataset):
  batch = {'x': jnp.asarray(tiny_dataset.train.images[:20].reshape(20, -1)),
           'label': jnp.full((20,), -1, jnp.int32), 'position': jnp.arange(20),
           'step': jnp.asarray(0)}
  results = {}
  for policy in ('float32', 'bfloat16'):
    # Layers of 128: the smoke config's narrow ones keep float32 under either policy.
    exp = train.build(helpers.config('mnist_cluster', '16,smoke',
                                     **{'model.precision': policy, 'model.hidden': (128, 128),
                                        'model.disc_hidden': (128, 128)}), tiny_dataset)
    state, metrics = helpers.run_step(exp.state, batch, exp.phases)
    dtypes = {leaf.dtype for leaf in jax.tree.leaves((state.params, state.opt_state))
              if jnp.issubdtype(leaf.dtype, jnp.floating)}
    assert dtypes == {jnp.dtype(jnp.float32)}, policy
    results[policy] = metrics
  for key in ('train/recon_loss', 'train/disc_loss', 'train/gen_loss'):
    np.testing.assert_allclose(results['bfloat16'][key], results['float32'][key], rtol=2e-2)
  assert results['bfloat16']['train/recon_loss'] != results['float32']['train/recon_loss']


def test_unknown_precision_names_the_field(tiny_dataset):
  with pytest.raises(errors.UserError, match='model.precision'):
    train.build(helpers.config('mnist_gaussian', **{'model.precision': 'fp16'}), tiny_dataset)


class _Device:
  def __init__(self, platform, device_kind='', compute_capability=None):
    self.platform, self.device_kind = platform, device_kind
    if compute_capability is not None:
      self.compute_capability = compute_capability


@pytest.mark.parametrize('device,flags,want', [
    (_Device('cpu'), {'avx2', 'avx512f', 'amx_tile', 'amx_bf16'}, 'bfloat16'),  # Xeon with AMX
    (_Device('cpu'), {'avx2', 'avx512f', 'avx512_bf16'}, 'bfloat16'),  # EPYC with AVX-512 BF16
    (_Device('cpu'), {'avx2', 'fma'}, 'float32'),  # AVX2 only
    (_Device('gpu', 'NVIDIA H100', '9.0'), set(), 'bfloat16'),
    (_Device('gpu', 'Tesla V100', '7.0'), set(), 'float32'),
    (_Device('tpu', 'TPU v4'), set(), 'bfloat16'),
])
def test_auto_picks_bfloat16_where_matrix_units_run_it(device, flags, want):
  got, why = precision.auto(device, flags)
  assert got == want and why


def test_auto_reads_this_cpus_flags():
  flags = precision._cpu_flags()  # pylint: disable=protected-access
  want = 'bfloat16' if flags & set(precision.BF16_CPU_FLAGS) else 'float32'
  assert precision.resolve('auto') == want
  assert precision.resolve('float32') == 'float32'


def test_a_run_records_what_auto_picked_and_keeps_it_on_resume(tiny_dataset, tmp_path,
                                                               monkeypatch, caplog):
  short = {'model.precision': 'auto', 'num_train_steps': 4, 'eval_every': 4,
           'checkpoint_every': 4, 'log_every': 2, 'steps_per_dispatch': 2}
  monkeypatch.setattr(precision, 'auto', lambda: ('bfloat16', 'a test machine'))
  with caplog.at_level('INFO'):
    train.train_and_evaluate(helpers.smoke_config(**short), str(tmp_path), tiny_dataset)
  assert "model.precision='auto': bfloat16 (a test machine)" in caplog.text
  assert re.search(r'step 2/4 \| [0-9.]+ steps/s \(bfloat16\)', caplog.text)
  recorded = lambda: json.loads((tmp_path / 'config.json').read_text())['model']['precision']
  assert recorded() == 'bfloat16'
  # Resumed on a machine where 'auto' would pick float32: the run keeps bfloat16.
  monkeypatch.setattr(precision, 'auto', lambda: ('float32', 'another machine'))
  caplog.clear()
  with caplog.at_level('INFO'):
    train.train_and_evaluate(helpers.smoke_config(**{**short, 'num_train_steps': 8}),
                             str(tmp_path), tiny_dataset)
  assert "model.precision='auto': bfloat16 (recorded in" in caplog.text
  assert recorded() == 'bfloat16'
  rows = helpers.records(tmp_path)
  assert [r['run/precision'] for r in rows if 'run/precision' in r] == ['bfloat16'] * 4
  # An explicit other precision is another experiment.
  with pytest.raises(errors.UserError, match='model.precision'):
    train.train_and_evaluate(helpers.smoke_config(**{**short, 'model.precision': 'float32',
                                                     'num_train_steps': 10}),
                             str(tmp_path), tiny_dataset)


def test_auto_in_a_config_accepts_the_precision_a_record_names():
  recorded = json.loads(helpers.config('mnist_gaussian').to_json_best_effort())
  new = json.loads(helpers.config('mnist_gaussian', **{'model.precision': 'auto'})
                   .to_json_best_effort())
  assert recorded['model']['precision'] == 'float32'
  assert workdir.trained_differences(recorded, new) == {}
  recorded['model']['precision'] = 'bfloat16'
  assert workdir.trained_differences(recorded, new) == {}
  new['model']['precision'] = 'float32'
  assert workdir.trained_differences(recorded, new) == {
      'model.precision': ('bfloat16', 'float32')}


def test_narrow_layers_keep_float32_under_the_bfloat16_policy():
  # The code layers (2 to 30 wide) carry the code: float32 products; wide layers bf16.
  x = jax.random.normal(jax.random.PRNGKey(0), (16, 1000))
  outs = {}
  for features in (2, 1000):
    for policy in ('float32', 'bfloat16'):
      layer = models.dense(features, 0.01, 'layer', policy)
      params = layer.init(jax.random.PRNGKey(1), x)
      outs[features, policy] = np.asarray(layer.apply(params, x))
  np.testing.assert_array_equal(outs[2, 'bfloat16'], outs[2, 'float32'])
  assert not np.array_equal(outs[1000, 'bfloat16'], outs[1000, 'float32'])
  np.testing.assert_allclose(outs[1000, 'bfloat16'], outs[1000, 'float32'], rtol=0.05, atol=0.02)


def test_auto_on_an_avx2_only_cpu_is_the_float32_step(tiny_dataset, monkeypatch):
  monkeypatch.setattr(precision, '_cpu_flags', lambda: {'avx', 'avx2', 'fma'})
  dp = parallel.DataParallel('shard_map')
  texts = {}
  for policy in ('auto', 'float32'):
    exp = train.build(helpers.config('mnist_gaussian', **{'model.precision': policy}),
                      tiny_dataset)
    inputs = exp.chunk_inputs(dp, tiny_dataset.train.images)
    program = dp.shard_map_program(exp.chunk_fn(dp.num_devices, 2), 1 + len(inputs),
                                   sharded_argnums=(1, 2))
    texts[policy] = program.lower(dp.replicate(exp.state), *inputs).as_text()
  assert texts['auto'] == texts['float32']
  assert 'bf16' not in texts['auto']
