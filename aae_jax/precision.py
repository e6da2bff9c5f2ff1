"""The matmul precision policy: ``model.precision`` = 'float32' or 'bfloat16'.

With 'bfloat16' every dense layer's products (forward, input gradient, weight
gradient) take bfloat16 inputs and accumulate in float32, which matrix units
(TPU MXU, GPU tensor cores, the AMX tiles of recent Xeons) run several times
faster than float32 products. Everything else stays float32: parameters,
optimizer states, activations between layers, losses, the parameter average
and evaluation metrics. The product's result is asked for in float32
(``preferred_element_type``): on XLA:CPU a bfloat16-output product takes a slow
path.

The backward products are written out (``jax.custom_vjp``) so that both run in
bfloat16 too: left to autodiff, the float32 cotangent meets the bfloat16
operand and XLA promotes the product to float32.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from aae_jax import errors

PRECISIONS = ('float32', 'bfloat16')
_BF16, _F32 = jnp.bfloat16, jnp.float32


def forward(xb, wb):
  """x (..., K) @ w (K, N), bf16 inputs, f32 result."""
  return _product(xb, wb, ((xb.ndim - 1,), (0,)))


def _product(a, b, contract):
  """bf16 x bf16 -> f32 product contracting ``contract`` = (a's axes, b's axes)."""
  return lax.dot_general(a, b, (contract, ((), ())), preferred_element_type=_F32)


@jax.custom_vjp
def bf16_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """x (..., K) @ w (K, N) with bfloat16 inputs and a float32 result."""
  return forward(x.astype(_BF16), w.astype(_BF16))


def _fwd(x, w):
  xb, wb = x.astype(_BF16), w.astype(_BF16)
  return forward(xb, wb), (xb, wb)


def input_grad(gb, wb):
  """g (..., N) @ w^T (N, K): the input's gradient, bf16 inputs, f32 result."""
  return _product(gb, wb, ((gb.ndim - 1,), (1,)))


def weight_grad_contract_batch(xb, gb):
  """x^T (K, ...) @ g (..., N) as one product contracting the batch axes."""
  batch_axes = tuple(range(gb.ndim - 1))
  return _product(xb, gb, (batch_axes, batch_axes))


def weight_grad(xb, gb):
  """x^T (K, ...) @ g (..., N): the kernel's gradient, computed as (g^T x)^T.

  Same products and float32 accumulation as ``weight_grad_contract_batch``; on a
  2-core AMD EPYC with AVX-512 BF16 this form ran 1.6x its rate at the step's
  shape (100 x 1000 x 1000: 167 against 103 GFLOP/s; ``python -m bench.bench
  --weight_grad_variants=100,1000,1000``, results/bench/weight_grad_variants_cpu.txt).
  """
  x2, g2 = xb.reshape(-1, xb.shape[-1]), gb.reshape(-1, gb.shape[-1])
  return forward(g2.T, x2).T


def _bwd(residuals, g):
  xb, wb = residuals
  gb = g.astype(_BF16)
  return input_grad(gb, wb), weight_grad(xb, gb)


bf16_matmul.defvjp(_fwd, _bwd)


def _bf16_dot_general(lhs, rhs, dimension_numbers, precision=None,
                      preferred_element_type=None):
  """``lax.dot_general`` as ``flax.linen.Dense`` calls it, through ``bf16_matmul``."""
  del precision, preferred_element_type
  (contract_lhs, contract_rhs), (batch_lhs, batch_rhs) = dimension_numbers
  if (tuple(contract_lhs), tuple(contract_rhs)) != ((lhs.ndim - 1,), (0,)) or batch_lhs \
      or batch_rhs or rhs.ndim != 2:
    raise NotImplementedError(f'bf16_matmul covers x @ kernel only, not {dimension_numbers}')
  return bf16_matmul(lhs, rhs)


def dot_general(policy: str) -> Callable | None:
  """The ``dot_general`` for ``flax.linen.Dense`` under ``policy`` (None: Flax's own)."""
  if policy == 'float32':
    return None
  if policy == 'bfloat16':
    return _bf16_dot_general
  raise errors.UserError(f'model.precision={policy!r}: choose one of '
                         f'{", ".join(PRECISIONS)}.')
