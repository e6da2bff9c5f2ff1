import pathlib
from flax import struct


@struct.dataclass
class OldState:  # TrainState before its ema field
  step: object
  params: dict
  opt_state: dict
  rng: object


import sys, jax, jax.numpy as jnp, numpy as np, pathlib
from aae_jax import data, train, checkpoint
from configs import mnist_cluster
wd, arg = sys.argv[1], sys.argv[2]
c = mnist_cluster.get_config(arg)
for kv in sys.argv[3:]:
  k, v = kv.split('='); exec(f'c.{k} = {v}')
ds = data.from_config(c); exp = train.build(c, ds)
# Runs from before TrainState.ema existed: restore the fields they have.
step, st = checkpoint.Checkpointer(pathlib.Path(wd)/'checkpoints').restore_latest(
    OldState(*(getattr(exp.state, k) for k in ('step', 'params', 'opt_state', 'rng'))))
p = st.params; aae = exp.aae; n = 2000
x = jnp.asarray(ds.test.images[:n].reshape(n, -1))
b = {'x': x, 'label': jnp.zeros(n, jnp.int32), 'position': jnp.arange(n)}
code = aae.encode(p, b, jax.random.PRNGKey(0), train=False)
q = jax.nn.softmax(code.y_logits)
def loss(y, z): return float(jnp.mean(aae.reconstruction(aae.decode_logits(p, aae.decoder_input_from(p, z, y)), x)))
k = q.shape[1]
perm = jax.random.permutation(jax.random.PRNGKey(1), n)
print('step', step, 'recon with q', loss(q, code.z), 'with shuffled y', loss(q[perm], code.z), 'with shuffled z', loss(q, code.z[perm]), 'z=0', loss(q, 0*code.z))
