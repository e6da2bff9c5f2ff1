#!/usr/bin/env bash
# Runs one config on every worker, one process per host, with AAE_DISTRIBUTED=1 (JAX finds
# the coordinator on TPU VMs). WORKDIR must be shared by all workers (NFS; see
# tpu_setup.sh): rerunning the same command resumes from its latest checkpoint.
#   CONFIG=configs/mnist_gaussian.py launch/tpu_run.sh [--config.x=y ...]
# Detached: logs go to $WORKDIR/logs/<host>.log. DRY_RUN=1 prints the commands.
set -euo pipefail
source "$(dirname "$0")/tpu_common.sh"
knob CONFIG configs/mnist_gaussian.py
knob WORKDIR "/mnt/shared/runs/$(basename "${CONFIG%%:*}" .py)"
knob PID_FILE '~/aae_jax.pid'  # on every worker; tpu_stop.sh reads it
flags=""
for arg in "--config=$CONFIG" "--workdir=$WORKDIR" "$@"; do
  flags+=" $(printf '%q' "$arg")"
done
tpu_ssh "$(remote <<SCRIPT
set -euo pipefail
if [ -f $PID_FILE ] && kill -0 \$(cat $PID_FILE) 2>/dev/null; then echo "\$(hostname): already running (pid \$(cat $PID_FILE)); stop it first" >&2; exit 1; fi
cd $REMOTE_DIR
mkdir -p $WORKDIR/logs
AAE_DISTRIBUTED=1 AAE_DATA_DIR=$REMOTE_DATA_DIR nohup .venv/bin/python -m aae_jax.main$flags >> $WORKDIR/logs/\$(hostname).log 2>&1 < /dev/null & echo \$! > $PID_FILE
echo "\$(hostname): started pid \$!, log $WORKDIR/logs/\$(hostname).log"
SCRIPT
)"
echo "Follow: ${GCLOUD_TPU[*]} ssh $TPU_NAME ${LOCATION[*]} --worker=0 --command='tail -f $WORKDIR/logs/*.log'"
