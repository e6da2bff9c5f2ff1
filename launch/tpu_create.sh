#!/usr/bin/env bash
# Creates a TPU VM slice (one VM per host; gcloud calls them workers).
#   TPU_NAME=aae-pod ACCELERATOR_TYPE=v4-32 launch/tpu_create.sh
# Next: launch/tpu_setup.sh. DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
source "$(dirname "$0")/tpu_common.sh"
knob ACCELERATOR_TYPE v4-32  # v4-32: 16 chips on 4 hosts
knob RUNTIME_VERSION tpu-ubuntu2204-base
knob SPOT 0  # 1: a Spot slice (cheaper, can be preempted; rerunning resumes)
extra=()
[[ "$SPOT" != 1 ]] || extra+=(--spot)
run "${GCLOUD_TPU[@]}" create "$TPU_NAME" "${LOCATION[@]}" \
  --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION" "${extra[@]}"
