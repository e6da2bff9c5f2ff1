"""The launch scripts: strict bash, knobs echoed, and the commands their DRY_RUN=1 prints."""

import os
import pathlib
import shlex
import subprocess

import pytest

LAUNCH = pathlib.Path(__file__).resolve().parents[1] / 'launch'
SOURCED = ('common.sh', 'tpu_common.sh')
SCRIPTS = sorted(p.name for p in LAUNCH.glob('*.sh') if p.name not in SOURCED)
TPU_KNOBS = {'TPU_NAME': 'pod1', 'ZONE': 'zone-a', 'PROJECT': 'proj'}


def dry_run(script, *args, tmp_path, **knobs):
  # No gcloud here: a dry run must not call it (nor git, pip or python).
  env = {'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path), 'TMPDIR': str(tmp_path),
         'DRY_RUN': '1', **knobs}
  result = subprocess.run(['bash', str(LAUNCH / script), *args], env=env, capture_output=True,
                          text=True, timeout=30)
  assert result.returncode == 0, result.stderr
  assert result.stderr == ''
  return result.stdout.splitlines()


def commands(lines, program='gcloud'):
  return [shlex.split(l) for l in lines if l.startswith(program + ' ')]


def remote_command(argv):
  [command] = [a[len('--command='):] for a in argv if a.startswith('--command=')]
  assert subprocess.run(['bash', '-n', '-c', command]).returncode == 0, command
  return command


@pytest.mark.parametrize('script', SCRIPTS)
def test_every_script_is_strict_echoes_its_knobs_and_dry_runs(script, tmp_path):
  path = LAUNCH / script
  assert os.access(path, os.X_OK)
  assert 'set -euo pipefail' in path.read_text()
  lines = dry_run(script, tmp_path=tmp_path)
  assert 'DRY_RUN=1' in lines[0]
  assert list(tmp_path.iterdir()) == []  # nothing was run


def test_tpu_create_and_delete(tmp_path):
  [create] = commands(dry_run('tpu_create.sh', tmp_path=tmp_path, ACCELERATOR_TYPE='v5p-16',
                              RUNTIME_VERSION='v2-alpha-tpuv5', SPOT='1', **TPU_KNOBS))
  assert create == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'pod1', '--zone=zone-a',
                    '--project=proj', '--accelerator-type=v5p-16', '--version=v2-alpha-tpuv5',
                    '--spot']
  [delete] = commands(dry_run('tpu_delete.sh', tmp_path=tmp_path, **TPU_KNOBS))
  assert delete == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', 'pod1', '--zone=zone-a',
                    '--project=proj', '--quiet']


def test_tpu_setup_ships_the_code_and_installs_on_every_worker(tmp_path):
  lines = dry_run('tpu_setup.sh', tmp_path=tmp_path, DATA_DIR='/data', NFS_SHARE='10.1.2.3:/runs',
                  **TPU_KNOBS)
  assert f'git archive --format=tar.gz -o {tmp_path}/aae_jax-pod1.tar.gz HEAD' in lines
  gcloud = commands(lines)
  assert [c[4] for c in gcloud] == ['ssh', 'scp', 'scp', 'ssh', 'ssh']
  assert all('--worker=all' in c and 'pod1' in ' '.join(c) for c in gcloud)
  assert gcloud[2][5:7] == ['--recurse', '/data/mnist']
  install = remote_command(gcloud[3])
  assert '[ -x .venv/bin/python ] || python3 -m venv .venv' in install  # idempotent
  assert ".venv/bin/pip install -q -e . 'jax[tpu]>=0.8,<0.12'" in install
  mount = remote_command(gcloud[4])
  assert 'mountpoint -q /mnt/shared || sudo mount -t nfs 10.1.2.3:/runs /mnt/shared' in mount


def test_tpu_run_and_stop_on_every_worker(tmp_path):
  lines = dry_run('tpu_run.sh', '--config.batch_size=256', tmp_path=tmp_path,
                  CONFIG='configs/mnist_mog.py', **TPU_KNOBS)
  assert 'WORKDIR=/mnt/shared/runs/mnist_mog' in lines
  [run] = commands(lines)
  assert run[4:6] == ['ssh', 'pod1'] and '--worker=all' in run
  command = remote_command(run)
  assert ('AAE_DISTRIBUTED=1 AAE_DATA_DIR=~/aae_data nohup .venv/bin/python -m aae_jax.main '
          '--config=configs/mnist_mog.py --workdir=/mnt/shared/runs/mnist_mog '
          '--config.batch_size=256 >>') in command
  assert 'already running' in command  # a rerun does not start a second copy
  [stop] = commands(dry_run('tpu_stop.sh', tmp_path=tmp_path, STOP_GRACE_S='5', **TPU_KNOBS))
  assert '--worker=all' in stop
  command = remote_command(stop)
  assert 'kill -TERM $pid' in command and 'seq 5' in command and 'kill -KILL $pid' in command


def test_gpu_run_picks_the_gpus(tmp_path):
  lines = dry_run('run_gpus.sh', '--config.batch_size=128', tmp_path=tmp_path, GPUS='0,1',
                  INSTALL='1', CONFIG='configs/mnist_gaussian.py:smoke')
  assert "python -m pip install -q -e . 'jax[cuda12]>=0.8,<0.12'" in lines
  assert ('env CUDA_VISIBLE_DEVICES=0,1 python -m aae_jax.main '
          '--config=configs/mnist_gaussian.py:smoke --workdir=runs/mnist_gaussian '
          '--config.batch_size=128') in lines
