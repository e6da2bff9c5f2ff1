"""The analysis scripts in scripts/ run at HEAD, on what they read."""

import os
import pathlib
import subprocess
import sys

from aae_jax import data
from aae_jax import train
from tests import helpers

REPO = pathlib.Path(__file__).resolve().parents[1]


def _script(name, *args, env=None):
  return subprocess.run([sys.executable, str(REPO / 'scripts' / name), *args], cwd=REPO,
                        env=env or os.environ, capture_output=True, text=True, timeout=300)


def test_compose_aae_vs_vae_draws_both_figures_from_the_logged_runs(tmp_path):
  result = _script('compose_aae_vs_vae.py', '--out', str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  for name in ('latent_aae_vs_vae.png', 'grid_aae_vs_vae.png'):
    assert (tmp_path / name).stat().st_size > 10_000, name


def test_cluster_diagnosis_reads_a_clustering_run(idx_root, tiny_dataset, tmp_path):
  workdir = tmp_path / 'run'
  train.train_and_evaluate(helpers.config('mnist_cluster', '16,smoke'), str(workdir),
                           tiny_dataset)
  env = {**os.environ, data.DATA_DIR_ENV: str(idx_root),
         'TFDS_DATA_DIR': str(tmp_path / 'cache')}
  result = _script('cluster_diagnosis.py', '--config=configs/mnist_cluster.py:16,smoke',
                   '--config.data.verify_checksums=False', f'--workdir={workdir}',
                   '--num_valid=50', '--num_test=50', env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  out = result.stdout
  assert 'checkpoint step 4' in out and 'mean max q' in out and 'with shuffled y' in out
