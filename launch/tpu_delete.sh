#!/usr/bin/env bash
# Deletes the TPU VM slice (its disks too; the NFS workdir stays).
# DRY_RUN=1 prints the command instead of running it.
set -euo pipefail
source "$(dirname "$0")/tpu_common.sh"
run "${GCLOUD_TPU[@]}" delete "$TPU_NAME" "${LOCATION[@]}" --quiet
