"""``python -m aae_jax.main`` as users run it: one run end to end, and bad input
reported in one line. (Everything else runs in-process, through
``train.train_and_evaluate``; see test_configs.py and test_reliability.py.)"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from aae_jax import data
from aae_jax import train
from tests import helpers

REPO = pathlib.Path(__file__).resolve().parents[1]


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


def test_smoke_run_through_main(env, tmp_path):
  result = run_main(env, 'configs/mnist_gaussian.py:smoke', tmp_path)
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
  assert re.search(r'steps/s \((float32|bfloat16)\) \| ETA', result.stderr)
  assert json.loads((tmp_path / 'config.json').read_text())['num_train_steps'] == 4


@pytest.mark.parametrize('data_dir,flags,message', [
    # An error of the run (a UserError: here the missing dataset) ...
    ('nowhere', (), f'{data.DATA_DIR_ENV}'),
    # ... or of an override (absl / ml_collections).
    (None, ('--config.batch_sise=10',), 'Did you mean "batch_size"'),
    (None, ('--config.batch_size=abc',), '--config.batch_size=abc'),
], ids=['run', 'override', 'override-type'])
def test_bad_input_is_one_line(env, tmp_path, data_dir, flags, message):
  if data_dir:
    env = {**env, data.DATA_DIR_ENV: str(tmp_path / data_dir)}
  result = run_main(env, 'configs/mnist_gaussian.py:smoke', tmp_path / 'w', *flags)
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('aae_jax: ') and message in last, last
  assert 'Traceback' not in result.stderr
  assert not (tmp_path / 'w' / 'metrics.jsonl').exists()
  if data_dir:
    assert 'train-images-idx3-ubyte.gz' in last  # the files it needs


def test_rerun_resumes_and_continues_the_step_count(tiny_dataset, tmp_path):
  config = helpers.config('mnist_gaussian')
  train.train_and_evaluate(config, str(tmp_path), tiny_dataset)
  config.num_train_steps = 6
  train.train_and_evaluate(config, str(tmp_path), tiny_dataset)
  assert [r['step'] for r in records(tmp_path)] == [2, 4, 6]
  assert (tmp_path / 'checkpoints' / '6').is_dir()
