#!/usr/bin/env bash
# The device check: on whatever accelerator (or CPU) JAX finds, in one go and in well
# under 8 minutes on a GPU:
#   1. the machine: jax.devices(), nvidia-smi where there is one, the CPU's matrix flags;
#   2. the bench of configs/mnist_semisup.py:1000 in float32 against the plain-JAX step
#      (bench/plain_jax.py), then in the precision 'auto' picks there (bfloat16 on GPUs,
#      TPUs and CPUs with AMX or AVX-512 BF16) against float32, timed in alternation;
#   3. one epoch of configs/mnist_semisup.py:1000 through the real training loop
#      (python -m aae_jax.main: batches on device, eval with figures, a checkpoint).
# Everything it prints goes to files under OUT_DIR; a failed part is recorded in
# OUT_DIR/status.txt and the others still run.
# Under results/, git ignores the epoch's checkpoints/ and tensorboard/ (.gitignore):
# the folder is kept for its logs, metrics and figures.
#
#   AAE_DATA_DIR=/path/to/data bench/device_check.sh OUT_DIR        (real MNIST)
#   SMOKE=1 AAE_DATA_DIR=<tiny IDX folder> bench/device_check.sh OUT_DIR   (the tests)
#
# PYTHON picks the interpreter (default python). SMOKE=1 runs the test-sized config,
# two windows and small matmuls, so the suite checks the script end to end.
set -uo pipefail
out="${1:?usage: bench/device_check.sh OUT_DIR}"
PYTHON="${PYTHON:-python}"
cd "$(dirname "$0")/.."
mkdir -p "$out"
out="$(cd "$out" && pwd)"
: > "$out/status.txt"

if [[ "${SMOKE:-0}" == 1 ]]; then
  config=configs/mnist_semisup.py:100,smoke
  bench_flags=(--windows=2 --matmul_size=256 --config.data.verify_checksums=False)
  train_flags=(--config.data.verify_checksums=False)
else
  config=configs/mnist_semisup.py:1000
  bench_flags=(--windows=7)
  # One epoch: 500 steps of 100, one eval (with figures) and one checkpoint at its end.
  train_flags=(--config.num_train_steps=500 --config.eval_every=500
               --config.checkpoint_every=500 --config.log_every=100)
fi

part() {  # part NAME COMMAND...: runs COMMAND, output to OUT_DIR/NAME.txt, status recorded
  local name="$1"; shift
  local start=$SECONDS
  "$@" > "$out/$name.txt" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - start))" >> "$out/status.txt"
}

machine() {
  date -u
  git rev-parse --short HEAD 2>/dev/null || true
  "$PYTHON" -c 'import jax; print("jax", jax.__version__, jax.devices())'
  command -v nvidia-smi > /dev/null && nvidia-smi
  grep -m1 'model name' /proc/cpuinfo
  grep -o -w -E 'amx_bf16|amx_tile|avx512_bf16|avx512f|avx2' /proc/cpuinfo | sort | uniq -c
}

part machine machine
part bench_float32 "$PYTHON" -m bench.bench "--config=$config" --config.model.precision=float32 \
  --plain_jax --epoch=false "${bench_flags[@]}"
part bench_auto "$PYTHON" -m bench.bench "--config=$config" --config.model.precision=auto \
  --vs_float32 --epoch=false "${bench_flags[@]}"
part epoch "$PYTHON" -m aae_jax.main "--config=$config" "--workdir=$out/epoch_workdir" \
  "${train_flags[@]}"
cat "$out/status.txt"
! grep -q -v 'rc=0 ' "$out/status.txt"
