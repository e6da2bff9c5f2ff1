"""Multi-process runs: two local processes with jax.distributed against one process.

Each process is a ``python -m aae_jax.main`` subprocess with 2 fake CPU devices,
the coordinator on 127.0.0.1. After ``jax.distributed.initialize`` JAX catches
SIGTERM, so every process runs under ``timeout -s KILL``.
"""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from aae_jax import checkpoint
from aae_jax import data
from aae_jax import distributed
from aae_jax import errors
from aae_jax import train
from tests import helpers

REPO = pathlib.Path(__file__).resolve().parents[1]

TIMEOUT_S = 150
# As in test_parallel: SGD keeps float reduction-order noise small; noisy
# encoder and discriminator inputs exercise the per-example keys; LeCun init
# makes every layer move well above float noise.
OVERRIDES = {'model.encoder': 'gaussian', 'model.input_noise_std': 0.3,
             'model.disc_input_noise_std': 0.3, 'model.init_std': 0.0}
for _phase in ('recon', 'disc', 'gen'):
  OVERRIDES.update({f'optim.{_phase}.name': 'sgd', f'optim.{_phase}.lr': 0.01})


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_processes(env, workdir, *flags, num_processes=2):
  """Runs main in ``num_processes`` processes of 2 CPU devices; returns their results."""
  port = free_port()
  env = {**env, 'XLA_FLAGS': '--xla_force_host_platform_device_count=2',
         'JAX_PLATFORMS': 'cpu'}
  base = ['timeout', '-s', 'KILL', str(TIMEOUT_S), sys.executable, '-m', 'aae_jax.main',
          '--config=configs/mnist_gaussian.py:smoke', f'--workdir={workdir}',
          '--config.data.verify_checksums=False',
          *[f'--config.{k}={v}' for k, v in OVERRIDES.items()],
          f'--config.parallel.coordinator_address=127.0.0.1:{port}',
          f'--config.parallel.num_processes={num_processes}', *flags]
  procs = [subprocess.Popen(base + [f'--config.parallel.process_id={i}'], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(num_processes)]
  return [(p.wait(), p.stdout.read()) for p in procs]


@pytest.fixture(scope='module')
def env(idx_root, tmp_path_factory):
  # One TFDS cache for both processes: process 0 prepares it, then the other reads it.
  return {**os.environ, data.DATA_DIR_ENV: str(idx_root),
          'TFDS_DATA_DIR': str(tmp_path_factory.mktemp('distributed_cache'))}


def test_two_processes_train_like_one_process_with_four_devices(env, tmp_path, tiny_dataset):
  """Steps 0-4 with shard_map, then a resumed run to step 6 with pmap, on 2 x 2 devices."""
  first = run_processes(env, tmp_path, '--config.num_train_steps=4',
                        '--config.eval_every=100')  # evaluates at the end only
  for rc, out in first:
    assert rc == 0, out[-3000:]
  second = run_processes(env, tmp_path, '--config.num_train_steps=6',
                         '--config.eval_every=100', '--config.parallel.backend=pmap')
  for rc, out in second:
    assert rc == 0, out[-3000:]
    assert 'Process ' in out and ' of 2: 2 local / 4 global devices' in out
    assert 'Resumed from' in out and 'at step 4' in out

  exp = train.build(helpers.smoke_config(**OVERRIDES), tiny_dataset)
  ref_state, (ref_metrics,) = helpers.run_chunks(exp, tiny_dataset, 'shard_map', 4, (6,))
  step, state = checkpoint.Checkpointer(tmp_path / 'checkpoints').restore_latest(exp.state)
  assert step == 6 and int(state.step) == 6
  for a, b in zip(jax.tree.leaves(ref_state), jax.tree.leaves(state)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  helpers.assert_same_updates(exp.state.params, ref_state.params, state.params)
  rows = helpers.records(tmp_path)  # written by process 0 only: no duplicates
  assert [r['step'] for r in rows] == [2, 4, 6]
  # Each record holds the mean of the two steps since the last one.
  np.testing.assert_allclose([r['train/recon_loss'] for r in rows],
                             ref_metrics['train/recon_loss'].reshape(3, 2).mean(1), rtol=1e-4)
  assert (tmp_path / 'figures' / 'latent_test.png').is_file()


def test_batch_size_must_divide_among_the_devices_of_all_processes(env, tmp_path):
  results = run_processes(env, tmp_path, '--config.batch_size=6')
  for rc, out in results:
    assert rc != 0
    assert out.strip().splitlines()[-1] == (
        'aae_jax: batch_size=6 is not divisible by the 4 devices of 2 processes; '
        'choose a multiple of the device count.')


def _parallel(**fields):
  c = ml_collections.ConfigDict(dict(backend='shard_map', distributed=False,
                                     coordinator_address='', num_processes=0, process_id=-1))
  c.update(fields)
  return c


def test_distributed_is_asked_by_the_config_or_the_environment(monkeypatch):
  monkeypatch.delenv(distributed.ENV, raising=False)
  assert not distributed.requested(_parallel())
  assert distributed.requested(_parallel(distributed=True))
  assert distributed.requested(_parallel(coordinator_address='10.0.0.1:1234'))
  monkeypatch.setenv(distributed.ENV, '1')
  assert distributed.requested(_parallel())
  assert distributed.initialize_kwargs(_parallel()) == {}  # JAX detects the rest
  assert distributed.initialize_kwargs(_parallel(
      coordinator_address='h:1', num_processes=4, process_id=3)) == {
          'coordinator_address': 'h:1', 'num_processes': 4, 'process_id': 3}
  monkeypatch.setenv(distributed.ENV, 'maybe')
  with pytest.raises(errors.UserError, match='AAE_DISTRIBUTED=.maybe.: set it to 1'):
    distributed.requested(_parallel())


def test_bad_process_fields_are_user_errors():
  with pytest.raises(errors.UserError, match='parallel.num_processes=-1'):
    distributed.initialize_kwargs(_parallel(num_processes=-1))
  with pytest.raises(errors.UserError, match='parallel.process_id=2: give a number from 0'):
    distributed.initialize_kwargs(_parallel(num_processes=2, process_id=2))
