"""The matmul precision policy: ``model.precision`` = 'auto', 'float32' or 'bfloat16'.

'auto' (the configs' default) picks 'bfloat16' where matrix units run bfloat16
products faster than float32 ones (GPUs from compute capability 8.0, TPUs, CPUs
with AMX or AVX-512 BF16) and 'float32' elsewhere (``auto``). A run records the
precision it picked in its ``config.json`` and keeps it when it resumes, on
any machine (``train.py``).

With 'bfloat16' every wide dense layer's products (forward, input gradient,
weight gradient) take bfloat16 inputs and accumulate in float32 (layers with a
side under ``NARROW``, the code layers, stay float32), which matrix units
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

PRECISIONS = ('float32', 'bfloat16')  # what a run computes in
POLICIES = ('auto',) + PRECISIONS  # what model.precision may say
_BF16, _F32 = jnp.bfloat16, jnp.float32
# /proc/cpuinfo flags of CPUs whose bfloat16 products beat float32 ones: AMX
# tiles (Xeon, about 4x) and AVX-512 BF16 dot products (EPYC, Xeon; about 2x).
BF16_CPU_FLAGS = ('amx_bf16', 'avx512_bf16')


def _cpu_flags(path: str = '/proc/cpuinfo') -> set[str]:
  try:
    with open(path) as f:
      for line in f:
        if line.startswith('flags'):
          return set(line.split(':', 1)[1].split())
  except OSError:
    pass
  return set()


def auto(device: jax.Device | None = None, cpu_flags: set[str] | None = None
         ) -> tuple[str, str]:
  """What 'auto' picks on ``device`` (default: the first device): (precision, why)."""
  device = device or jax.devices()[0]
  if device.platform == 'tpu':
    return 'bfloat16', 'TPU (bfloat16 matrix units)'
  if device.platform == 'gpu':
    capability = getattr(device, 'compute_capability', None)
    try:
      major = int(str(capability).split('.')[0])
    except ValueError:
      major = 0
    if major >= 8:
      return 'bfloat16', f'GPU {device.device_kind} (compute capability {capability})'
    return 'float32', f'GPU {device.device_kind} without bfloat16 tensor cores'
  flags = _cpu_flags() if cpu_flags is None else cpu_flags
  found = [f for f in BF16_CPU_FLAGS if f in flags]
  if device.platform == 'cpu' and found:
    return 'bfloat16', f'CPU with {found[0]}'
  return 'float32', f'{device.platform.upper()} without bfloat16 matrix units'


def resolve(policy: str) -> str:
  """The precision ``policy`` computes in on this machine ('auto' resolved)."""
  if policy == 'auto':
    return auto()[0]
  if policy not in PRECISIONS:
    raise errors.UserError(f'model.precision={policy!r}: choose one of '
                           f'{", ".join(POLICIES)}.')
  return policy


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


# A layer whose kernel has a side narrower than this keeps float32 products
# under the bfloat16 policy: the code layers (the encoder's z and q(y|x) heads,
# the decoder's and the discriminators' first layers reading a code of 2-30
# numbers) and the discriminators' one-logit outputs. Their products are a
# fraction of a percent of a step's, and a 2-D code rounded to bfloat16's 8 bits
# cost mnist_gaussian 14 nats of reconstruction (docs/performance.md).
NARROW = 64


def _bf16_dot_general(lhs, rhs, dimension_numbers, precision=None,
                      preferred_element_type=None):
  """``lax.dot_general`` as ``flax.linen.Dense`` calls it, through ``bf16_matmul``
  (float32 for a kernel with a side under ``NARROW``)."""
  del precision, preferred_element_type
  (contract_lhs, contract_rhs), (batch_lhs, batch_rhs) = dimension_numbers
  if (tuple(contract_lhs), tuple(contract_rhs)) != ((lhs.ndim - 1,), (0,)) or batch_lhs \
      or batch_rhs or rhs.ndim != 2:
    raise NotImplementedError(f'bf16_matmul covers x @ kernel only, not {dimension_numbers}')
  return policy_matmul(lhs, rhs)


def policy_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """x (..., K) @ w (K, N) under the bfloat16 policy: ``bf16_matmul`` for a wide
  kernel, a float32 product for one with a side under ``NARROW``."""
  return jnp.matmul(x, w) if min(w.shape) < NARROW else bf16_matmul(x, w)


def dot_general(policy: str) -> Callable | None:
  """The ``dot_general`` for ``flax.linen.Dense`` under ``policy`` (None: Flax's own)."""
  return _bf16_dot_general if resolve(policy) == 'bfloat16' else None
