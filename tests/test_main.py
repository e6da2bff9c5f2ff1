"""End to end through ``python -m aae_jax.main`` on the tiny generated IDX dataset."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from aae_jax import data

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ('mnist_gaussian', 'mnist_mog', 'mnist_parzen')


@pytest.fixture(scope='module')
def env(idx_root, tmp_path_factory):
  return {**os.environ, data.DATA_DIR_ENV: str(idx_root),
          'TFDS_DATA_DIR': str(tmp_path_factory.mktemp('main_cache'))}


def run_main(env, config, workdir, *flags):
  cmd = [sys.executable, '-m', 'aae_jax.main', f'--config={config}', f'--workdir={workdir}',
         '--config.data.verify_checksums=False', *flags]
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def records(workdir):
  return [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]


@pytest.mark.parametrize('name', CONFIGS)
def test_smoke_run_of_every_config(env, tmp_path, name):
  result = run_main(env, f'configs/{name}.py:smoke', tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = records(tmp_path)
  assert [r['step'] for r in rows] == [2, 4]
  for key in ('train/recon_loss', 'train/disc_loss', 'train/gen_loss', 'train/steps_per_sec',
              'eval/valid_recon_loss', 'eval/test_recon_loss', 'eval/test_code_mean_dev',
              'eval/test_code_cov_dev'):
    assert key in rows[-1], key
  assert 'run/steps_per_sec' in rows[-1]
  for figure in ('latent_test', 'prior_grid', 'samples', 'reconstructions'):
    assert (tmp_path / 'figures' / f'{figure}.png').stat().st_size > 1000
  assert (tmp_path / 'checkpoints' / '4').is_dir()
  assert 'steps/s | ETA' in result.stderr


def test_rerun_resumes_and_continues_the_step_count(env, tmp_path):
  first = run_main(env, 'configs/mnist_gaussian.py:smoke', tmp_path)
  assert first.returncode == 0, first.stderr[-3000:]
  second = run_main(env, 'configs/mnist_gaussian.py:smoke', tmp_path,
                    '--config.num_train_steps=6')
  assert second.returncode == 0, second.stderr[-3000:]
  assert 'at step 4' in second.stderr
  assert [r['step'] for r in records(tmp_path)] == [2, 4, 6]
  assert (tmp_path / 'checkpoints' / '6').is_dir()


def test_mistyped_override_is_an_error(env, tmp_path):
  result = run_main(env, 'configs/mnist_gaussian.py:smoke', tmp_path, '--config.batch_sise=10')
  assert result.returncode != 0
  assert 'batch_sise' in result.stderr
  assert not (tmp_path / 'metrics.jsonl').exists()


def test_missing_data_is_one_clear_error(env, tmp_path):
  result = run_main({**env, data.DATA_DIR_ENV: str(tmp_path / 'nowhere')},
                    'configs/mnist_gaussian.py:smoke', tmp_path / 'w')
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('aae_jax: ') and 'Traceback' not in result.stderr
  assert data.DATA_DIR_ENV in last and 'train-images-idx3-ubyte.gz' in last
