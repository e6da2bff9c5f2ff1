import jax, jax.numpy as jnp, numpy as np
from restore import from_argv

step, p, aae, ds = from_argv()
n = 2000
x = jnp.asarray(ds.test.images[:n].reshape(n, -1))
b = {'x': x, 'label': jnp.zeros(n, jnp.int32), 'position': jnp.arange(n)}
code = aae.encode(p, b, jax.random.PRNGKey(0), train=False)
q = jax.nn.softmax(code.y_logits)
def loss(y, z): return float(jnp.mean(aae.reconstruction(aae.decode_logits(p, aae.decoder_input_from(p, z, y)), x)))
k = q.shape[1]
perm = jax.random.permutation(jax.random.PRNGKey(1), n)
print('step', step, 'recon with q', loss(q, code.z), 'with shuffled y', loss(q[perm], code.z), 'with shuffled z', loss(q, code.z[perm]), 'z=0', loss(q, 0*code.z))
