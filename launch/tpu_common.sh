# Sourced by the tpu_*.sh scripts: which TPU VM slice, and how gcloud reaches it.
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
knob TPU_NAME aae-pod
knob ZONE us-central2-b
knob PROJECT ''  # '' = gcloud's configured project
knob REMOTE_DIR '~/aae_jax'  # the code and its venv on every worker
knob REMOTE_DATA_DIR '~/aae_data'  # AAE_DATA_DIR on every worker: holds mnist/
GCLOUD_TPU=(gcloud compute tpus tpu-vm)
LOCATION=("--zone=$ZONE")
[[ -z "$PROJECT" ]] || LOCATION+=("--project=$PROJECT")

# tpu_ssh COMMAND: runs one shell line on every worker of the slice.
tpu_ssh() {
  run "${GCLOUD_TPU[@]}" ssh "$TPU_NAME" "${LOCATION[@]}" --worker=all --command="$1"
}
