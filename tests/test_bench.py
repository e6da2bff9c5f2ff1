"""The benchmark's measurements are well-formed, and the PyTorch reference trains."""

import importlib.util

import pytest

from aae_jax import bench
from tests import helpers

HAS_TORCH = importlib.util.find_spec('torch') is not None


def _config():
  return helpers.smoke_config(**{'eval_every': 25, 'checkpoint_every': 25, 'log_every': 25,
                                 'steps_per_dispatch': 5})


def test_bench_reports_every_field():
  result = bench.run(_config(), windows=2, with_torch=HAS_TORCH, with_epoch=True,
                     matmul_size=256, sizes=(600, 100))
  for key in ('examples_per_sec', 'flops_per_example', 'matmul_gflops', 'mfu',
              'epoch_seconds', 'loop_overhead'):
    assert result[key] > 0 or key == 'loop_overhead', key
  assert result['flops_source'] == 'xla_cost_analysis'
  # An MLP step costs at least its matmuls: 2 flops per multiply-add, forward only.
  assert result['flops_per_example'] > 2 * (784 * 32 + 32 * 32 + 32 * 2) * 2
  assert abs(result['mfu'] - result['examples_per_sec'] * result['flops_per_example']
             / (result['matmul_gflops'] * 1e9)) < 1e-9
  if HAS_TORCH:
    assert result['speedup_vs_torch'] == pytest.approx(
        result['examples_per_sec'] / result['torch_examples_per_sec'])


@pytest.mark.skipif(not HAS_TORCH, reason='the bench extra (torch) is not installed')
def test_torch_reference_trains():
  from aae_jax import torch_reference
  config = _config()
  assert torch_reference.losses_decrease(config, bench.synthetic_dataset(config,
                                                                          sizes=(600, 100)))
