"""The bfloat16 matmul policy: products in bf16 with f32 results, forward and
backward; parameters, optimizer states and metrics stay float32."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aae_jax import errors
from aae_jax import precision
from aae_jax import train
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
    exp = train.build(helpers.config('mnist_cluster', '16,smoke',
                                     **{'model.precision': policy}), tiny_dataset)
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
