import jax, jax.numpy as jnp, numpy as np
from restore import from_argv

step, p, aae, ds = from_argv()
n=1000
x = jnp.asarray(ds.valid.images[:n].reshape(n,-1))
b = {'x': x, 'label': jnp.asarray(ds.valid.labels[:n]), 'position': jnp.arange(n)}
code = aae.encode(p, b, jax.random.PRNGKey(0), train=False)
q = jax.nn.softmax(code.y_logits)
print('step', step, 'mean max q', float(q.max(1).mean()), 'logit std', float(code.y_logits.std()))
print('usage', np.bincount(np.asarray(q.argmax(1)), minlength=q.shape[1]))
d_fake = aae.discriminate(p, q, b['position'], None, name='disc_y')
real = jax.nn.one_hot(jnp.arange(n) % q.shape[1], q.shape[1])
d_real = aae.discriminate(p, real, b['position'], None, name='disc_y')
print('D fake mean', float(jax.nn.sigmoid(d_fake).mean()), 'D real', float(jax.nn.sigmoid(d_real).mean()))
# gradient of -log D(softmax(l)) wrt logits, vs recon grad wrt logits
def gen(l): return jnp.mean(jax.nn.softplus(-aae.discriminate(p, jax.nn.softmax(l), b['position'], None, name='disc_y')))
def rec(l):
  h = jnp.concatenate([jax.nn.softmax(l), code.z], -1)
  return jnp.mean(aae.reconstruction(aae.decode_logits(p, h), x))
gg = jax.grad(gen)(code.y_logits); gr = jax.grad(rec)(code.y_logits)
print('|grad gen|', float(jnp.linalg.norm(gg)), '|grad rec|', float(jnp.linalg.norm(gr)))
cos = jnp.sum(gg*gr,1)/(jnp.linalg.norm(gg,axis=1)*jnp.linalg.norm(gr,axis=1)+1e-12)
print('cos(gen, rec) per example mean', float(cos.mean()))
# does the gen gradient sharpen? descent direction -gg: change in max q
top = q.argmax(1)
print('frac examples where -grad_gen raises top logit relative to mean', float(jnp.mean((-gg)[jnp.arange(n), top] > 0)))
print('frac where -grad_rec raises top logit', float(jnp.mean((-gr)[jnp.arange(n), top] > 0)))
