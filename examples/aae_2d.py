"""A 2-D adversarial autoencoder in a hand-written training loop.

    python examples/aae_2d.py --steps=3000   # MNIST from $AAE_DATA_DIR (or TFDS)

Uses the library's pieces directly, without ``aae_jax.main`` or its train step:
``models`` (Flax modules, used functionally), ``losses`` (pure functions) and
``priors`` (a sampler plus a log-density). One jitted step runs the paper's three
phases in order, each with its own Optax state: reconstruction (encoder and
decoder), discriminator (prior samples against codes), generator (the encoder
fools the discriminator).
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aae_jax import losses
from aae_jax import models
from aae_jax import priors


def make(data_dim: int, hidden=(512, 512), lr: float = 5e-4):
  """The modules, the prior, one optimizer per phase and the jitted step."""
  encoder = models.Encoder(kind='deterministic', hidden=hidden, code_dim=2)
  decoder = models.Decoder(hidden=hidden, out_dim=data_dim)
  critic = models.Discriminator(hidden=hidden)
  prior = priors.MixtureOfGaussians(num_components=10)  # any prior: sample + log_prob
  tx = {name: optax.adam(lr, b1=0.5) for name in ('recon', 'disc', 'gen')}

  def init(key):
    k_enc, k_dec, k_disc = jax.random.split(key, 3)
    params = {'encoder': encoder.init(k_enc, jnp.zeros((1, data_dim)))['params'],
              'decoder': decoder.init(k_dec, jnp.zeros((1, 2)))['params'],
              'critic': critic.init(k_disc, jnp.zeros((1, 2)))['params']}
    opt = {'recon': tx['recon'].init((params['encoder'], params['decoder'])),
           'disc': tx['disc'].init(params['critic']),
           'gen': tx['gen'].init(params['encoder'])}
    return params, opt

  def encode(p_enc, x):
    return encoder.apply({'params': p_enc}, x).z

  def recon_loss(enc_dec, x):
    p_enc, p_dec = enc_dec
    logits = decoder.apply({'params': p_dec}, encode(p_enc, x))
    return jnp.mean(losses.bernoulli_nll(logits=logits, targets=x))

  def disc_loss(p_critic, p_enc, x, key):
    real = prior.sample(key, x.shape[0])
    fake = encode(p_enc, x)
    return losses.discriminator_loss(real_logits=critic.apply({'params': p_critic}, real),
                                     fake_logits=critic.apply({'params': p_critic}, fake))

  def gen_loss(p_enc, p_critic, x):
    fake_logits = critic.apply({'params': p_critic}, encode(p_enc, x))
    return losses.generator_loss(fake_logits=fake_logits)

  @jax.jit
  def step(params, opt, x, key):
    # 1. Reconstruction: encoder and decoder.
    enc_dec = (params['encoder'], params['decoder'])
    rec, grads = jax.value_and_grad(recon_loss)(enc_dec, x)
    updates, opt['recon'] = tx['recon'].update(grads, opt['recon'], enc_dec)
    params['encoder'], params['decoder'] = optax.apply_updates(enc_dec, updates)
    # 2. Discriminator: prior samples are "real", codes "fake".
    dis, grads = jax.value_and_grad(disc_loss)(params['critic'], params['encoder'], x, key)
    updates, opt['disc'] = tx['disc'].update(grads, opt['disc'], params['critic'])
    params['critic'] = optax.apply_updates(params['critic'], updates)
    # 3. Generator: the encoder, on the parameters the first two phases updated.
    gen, grads = jax.value_and_grad(gen_loss)(params['encoder'], params['critic'], x)
    updates, opt['gen'] = tx['gen'].update(grads, opt['gen'], params['encoder'])
    params['encoder'] = optax.apply_updates(params['encoder'], updates)
    return params, opt, {'recon': rec, 'disc': dis, 'gen': gen}

  return init, step, encode, prior


def train(images: np.ndarray, steps: int, batch_size: int = 100, seed: int = 0,
          hidden=(512, 512), log_every: int = 500):
  """Trains on ``images`` (N, ...) in [0, 1]; returns the encoder's parameters, the
  encode function, the prior and the last step's losses."""
  x_all = jnp.asarray(images.reshape(len(images), -1), jnp.float32)
  init, step, encode, prior = make(x_all.shape[1], hidden)
  key = jax.random.PRNGKey(seed)
  params, opt = init(key)
  rng = np.random.default_rng(seed)
  for i in range(1, steps + 1):
    x = x_all[rng.integers(0, len(x_all), batch_size)]
    params, opt, logs = step(params, opt, x, jax.random.fold_in(key, i))
    if i % log_every == 0 or i == steps:
      shown = ' '.join(f'{k}={float(logs[k]):.4g}' for k in ('recon', 'disc', 'gen'))
      print(f'step {i}: {shown}')
  return params['encoder'], encode, prior, {k: float(v) for k, v in logs.items()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=3000)
  args = parser.parse_args()
  from aae_jax import data  # pylint: disable=g-import-not-at-top
  mnist = data.load('mnist')
  p_enc, encode, prior, _ = train(mnist.train.images, args.steps)
  codes = encode(p_enc, jnp.asarray(mnist.test.images.reshape(len(mnist.test), -1)))
  print('mean log p(z) of the test codes under the prior:',
        float(jnp.mean(prior.log_prob(codes))))


if __name__ == '__main__':
  main()
