cd /work/main
export AAE_DATA_DIR=/work/shared/data TFDS_DATA_DIR=/tmp/tfds_cache
F="--config.num_train_steps=1000 --config.checkpoint_every=200 --config.eval_every=500 --config.log_every=100"
M="/work/venv/bin/python -m aae_jax.main --config=configs/mnist_gaussian.py"
rm -rf /tmp/rd_a /tmp/rd_b
$M --workdir=/tmp/rd_a $F > /tmp/rd_a.log 2>&1
$M --workdir=/tmp/rd_b $F > /tmp/rd_b1.log 2>&1 &
pid=$!
while [ ! -d /tmp/rd_b/checkpoints/400 ]; do sleep 0.1; done
kill -9 $pid; wait $pid 2>/dev/null
echo "killed after checkpoint 400; checkpoints: $(ls /tmp/rd_b/checkpoints)"
$M --workdir=/tmp/rd_b $F > /tmp/rd_b2.log 2>&1
grep "Resumed" /tmp/rd_b2.log | cut -c40-
/work/venv/bin/python - <<'PY'
import json, jax, numpy as np, orbax.checkpoint as ocp
from aae_jax import checkpoint
def load(w):
  m = ocp.CheckpointManager(f'{w}/checkpoints', item_handlers={'state': ocp.StandardCheckpointHandler()})
  s = m.latest_step()
  return s, jax.tree.leaves(m.restore(s, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state)
(sa, a), (sb, b) = load('/tmp/rd_a'), load('/tmp/rd_b')
print('final steps', sa, sb, '| leaves', len(a), '| all bit-identical:', all(np.array_equal(x, y) for x, y in zip(a, b)))
print('digests', checkpoint.digest(a), checkpoint.digest(b))
T = ('steps_per_sec', 'seconds')
def rows(w): return [{k: v for k, v in json.loads(l).items() if not any(t in k for t in T)} for l in open(f'{w}/metrics.jsonl')]
ra, rb = rows('/tmp/rd_a'), rows('/tmp/rd_b')
print('metric records', len(ra), len(rb), '| identical:', ra == rb)
print('final eval/test_recon_loss', ra[-1]['eval/test_recon_loss'], rb[-1]['eval/test_recon_loss'])
PY
