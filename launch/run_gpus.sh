#!/usr/bin/env bash
# Runs one config on the GPUs of this host: one process drives them all (a 1-D 'batch'
# mesh over GPUS; batch_size must be a multiple of their number). Rerunning resumes.
#   GPUS=0,1,2,3 CONFIG=configs/mnist_gaussian.py launch/run_gpus.sh [--config.x=y ...]
# INSTALL=1 first installs the package and the CUDA build of JAX into PYTHON's environment.
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
source "$(dirname "$0")/common.sh"
knob CONFIG configs/mnist_gaussian.py
knob WORKDIR "runs/$(basename "${CONFIG%%:*}" .py)"
knob GPUS all  # CUDA_VISIBLE_DEVICES, or all
knob PYTHON python
knob INSTALL 0
knob JAX_PIP 'jax[cuda12]>=0.8,<0.12'
knob AAE_DATA_DIR ''
cd "$(dirname "$0")/.."
if [[ "$INSTALL" == 1 ]]; then
  run "$PYTHON" -m pip install -q -e . "$JAX_PIP"
fi
cuda=()
[[ "$GPUS" == all ]] || cuda=(CUDA_VISIBLE_DEVICES="$GPUS")
run env "${cuda[@]}" "$PYTHON" -c 'import jax; print(jax.devices())'
run mkdir -p "$WORKDIR"
if [[ "$DRY_RUN" == 1 ]]; then
  run env "${cuda[@]}" "$PYTHON" -m aae_jax.main "--config=$CONFIG" "--workdir=$WORKDIR" "$@"
else
  env "${cuda[@]}" "$PYTHON" -m aae_jax.main "--config=$CONFIG" "--workdir=$WORKDIR" "$@" 2>&1 \
    | tee -a "$WORKDIR/log.txt"
fi
