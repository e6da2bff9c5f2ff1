"""Model shapes, the three encoder kinds, init scale and noise handling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aae_jax import models

KEY = jax.random.PRNGKey(0)


def _init(module, *args):
  return module.init(KEY, *args)['params']


@pytest.mark.parametrize('kind', models.ENCODER_KINDS)
def test_encoder_kinds_shapes(kind):
  enc = models.Encoder(kind=kind, hidden=(16, 16), code_dim=3, noise_dim=5,
                       input_noise_std=0.3)
  x = jnp.ones((4, 12))
  shapes = enc.noise_shapes(12, train=True)
  noise = {k: jax.random.normal(KEY, (4,) + s) for k, s in shapes.items()}
  params = _init(enc, x, noise)
  code = enc.apply({'params': params}, x, noise)
  assert code.z.shape == (4, 3)
  if kind == 'gaussian':
    assert code.mean.shape == code.log_var.shape == (4, 3)
    np.testing.assert_allclose(code.z, code.mean + jnp.exp(0.5 * code.log_var) * noise['latent'],
                               rtol=1e-5)
    # Without latent noise (evaluation) the Gaussian encoder returns its mean.
    no_latent = {'input': noise['input']}
    np.testing.assert_allclose(enc.apply({'params': params}, x, no_latent).z, code.mean,
                               rtol=1e-5)
  assert ('eta' in shapes) == (kind == 'universal')
  assert 'input' in shapes and 'input' not in enc.noise_shapes(12, train=False)


def test_universal_encoder_depends_on_eta():
  enc = models.Encoder(kind='universal', hidden=(16,), code_dim=2, noise_dim=3)
  x = jnp.ones((2, 5))
  eta1, eta2 = jnp.zeros((2, 3)), jnp.ones((2, 3))
  params = _init(enc, x, {'eta': eta1})
  z1 = enc.apply({'params': params}, x, {'eta': eta1}).z
  z2 = enc.apply({'params': params}, x, {'eta': eta2}).z
  assert not np.allclose(z1, z2)


def test_init_std_follows_the_paper():
  mlp = models.MLP(hidden=(1000,), out_dim=10, init_std=0.01)
  params = _init(mlp, jnp.ones((1, 784)))
  assert abs(float(jnp.std(params['hidden_0']['kernel'])) - 0.01) < 5e-4
  assert float(jnp.max(jnp.abs(params['hidden_0']['bias']))) == 0.0


def test_decoder_and_discriminator_shapes_and_discriminator_noise():
  dec = models.Decoder(hidden=(8,), out_dim=784)
  assert dec.apply({'params': _init(dec, jnp.ones((3, 2)))}, jnp.ones((3, 2))).shape == (3, 784)
  disc = models.Discriminator(hidden=(8,), input_noise_std=0.3)
  z = jnp.ones((3, 2))
  params = _init(disc, z)
  clean = disc.apply({'params': params}, z)
  assert clean.shape == (3,)
  noisy = disc.apply({'params': params}, z, jnp.ones((3, 2)))
  expected = disc.apply({'params': params}, z + 0.3)
  np.testing.assert_allclose(noisy, expected, rtol=1e-6)
  assert not np.allclose(noisy, clean)


def test_wrong_noise_shape_is_caught():
  enc = models.Encoder(kind='gaussian', hidden=(4,), code_dim=2)
  x = jnp.ones((3, 5))
  params = _init(enc, x)
  with pytest.raises(AssertionError):
    enc.apply({'params': params}, x, {'latent': jnp.ones((3, 4))})
