#!/usr/bin/env bash
# Stops the run on every worker: SIGTERM, then SIGKILL after STOP_GRACE_S seconds (after
# jax.distributed.initialize JAX catches SIGTERM, so a process may not end on it alone).
# The slice keeps running; rerun launch/tpu_run.sh to resume, or launch/tpu_delete.sh.
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
source "$(dirname "$0")/tpu_common.sh"
knob PID_FILE '~/aae_jax.pid'
knob STOP_GRACE_S 60
tpu_ssh "$(remote <<SCRIPT
[ -f $PID_FILE ] || { echo "\$(hostname): no run"; exit 0; }
pid=\$(cat $PID_FILE)
kill -TERM \$pid 2>/dev/null || true
for i in \$(seq $STOP_GRACE_S); do kill -0 \$pid 2>/dev/null || break; sleep 1; done
if kill -0 \$pid 2>/dev/null; then kill -KILL \$pid; echo "\$(hostname): killed \$pid"; else echo "\$(hostname): stopped \$pid"; fi
rm -f $PID_FILE
SCRIPT
)"
