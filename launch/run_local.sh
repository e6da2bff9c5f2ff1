#!/usr/bin/env bash
# Runs one config on this host's devices (all GPUs, or the CPU), resuming in WORKDIR.
#   CONFIG=configs/mnist_gaussian.py WORKDIR=runs/mnist_gaussian launch/run_local.sh [--config.x=y ...]
# DRY_RUN=1 prints the command instead of running it.
set -euo pipefail
CONFIG="${CONFIG:-configs/mnist_gaussian.py}"
WORKDIR="${WORKDIR:-runs/$(basename "${CONFIG%%:*}" .py)}"
PYTHON="${PYTHON:-python}"
DRY_RUN="${DRY_RUN:-0}"
echo "CONFIG=$CONFIG WORKDIR=$WORKDIR PYTHON=$PYTHON DRY_RUN=$DRY_RUN AAE_DATA_DIR=${AAE_DATA_DIR:-}"
cd "$(dirname "$0")/.."
cmd=("$PYTHON" -m aae_jax.main "--config=$CONFIG" "--workdir=$WORKDIR" "$@")
if [[ "$DRY_RUN" == 1 ]]; then
  printf '%q ' "${cmd[@]}"; echo
else
  mkdir -p "$WORKDIR"
  "${cmd[@]}" 2>&1 | tee -a "$WORKDIR/log.txt"
fi
