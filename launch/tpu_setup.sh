#!/usr/bin/env bash
# Puts the code (git HEAD), a venv with it installed and, optionally, the MNIST IDX files
# and an NFS mount for the shared workdir on every worker. Idempotent: rerun after a commit.
#   TPU_NAME=aae-pod DATA_DIR=../shared/data NFS_SHARE=10.0.0.2:/runs launch/tpu_setup.sh
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
source "$(dirname "$0")/tpu_common.sh"
knob REF HEAD  # the git commit to ship (uncommitted changes are not shipped)
knob JAX_PIP 'jax[tpu]>=0.8,<0.12'  # the accelerator build of JAX
knob DATA_DIR ''  # local folder holding mnist/ with the four IDX files; '' = skip
knob NFS_SHARE ''  # e.g. a Filestore share 10.0.0.2:/runs; '' = no mount
knob SHARED_DIR /mnt/shared  # where NFS_SHARE is mounted on every worker
cd "$(dirname "$0")/.."
archive="${TMPDIR:-/tmp}/aae_jax-$TPU_NAME.tar.gz"
run git archive --format=tar.gz -o "$archive" "$REF"
tpu_ssh "mkdir -p $REMOTE_DIR $REMOTE_DATA_DIR"
run "${GCLOUD_TPU[@]}" scp "$archive" "$TPU_NAME:aae_jax.tar.gz" "${LOCATION[@]}" --worker=all
if [[ -n "$DATA_DIR" ]]; then
  run "${GCLOUD_TPU[@]}" scp --recurse "$DATA_DIR/mnist" "$TPU_NAME:${REMOTE_DATA_DIR#\~/}" \
    "${LOCATION[@]}" --worker=all
fi
tpu_ssh "$(remote <<SCRIPT
set -euo pipefail
tar -xzf ~/aae_jax.tar.gz -C $REMOTE_DIR
cd $REMOTE_DIR
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -U pip
.venv/bin/pip install -q -e . '$JAX_PIP'
.venv/bin/python -c 'import jax; print(jax.process_index(), jax.local_devices())'
SCRIPT
)"
if [[ -n "$NFS_SHARE" ]]; then
  tpu_ssh "$(remote <<SCRIPT
set -euo pipefail
command -v mount.nfs >/dev/null || { sudo apt-get -qq update && sudo apt-get -qq install -y nfs-common; }
sudo mkdir -p $SHARED_DIR
mountpoint -q $SHARED_DIR || sudo mount -t nfs $NFS_SHARE $SHARED_DIR
sudo chmod a+rwx $SHARED_DIR
SCRIPT
)"
fi
