"""What the clustering recipe adds: the annealed noise on the categorical
discriminator's input, the z discriminator conditioned on q(y|x), and the k-means
baseline scored by the AAE's own rules."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aae_jax import data as data_lib
from aae_jax import errors
from aae_jax import kmeans
from aae_jax import noise
from aae_jax import train
from tests import helpers

N = 20


def _batch(dataset, step=0):
  x = jnp.asarray(dataset.train.images[:N].reshape(N, -1))
  return {'x': x, 'label': jnp.full((N,), -1, jnp.int32), 'position': jnp.arange(N),
          'step': jnp.asarray(step, jnp.int32)}


def test_noise_anneal_falls_linearly_to_zero():
  steps = jnp.array([0, 25, 50, 100, 400])
  np.testing.assert_allclose(noise.linear_anneal(steps, 0, 100), [1.0, 0.75, 0.5, 0.0, 0.0])
  np.testing.assert_allclose(noise.linear_anneal(steps + 10, 35, 100),
                             [1.0, 1.0, 0.75, 0.25, 0.0])


def test_annealed_disc_y_noise_is_the_configured_noise_then_none(tiny_dataset):
  def loss(step, **overrides):
    exp = train.build(helpers.config('mnist_cluster', '16,smoke', **overrides), tiny_dataset)
    return float(exp.aae.disc_y_objective(exp.state.variables, _batch(tiny_dataset, step),
                                          jax.random.PRNGKey(1))[0])

  annealed = {'model.disc_y_noise_anneal_steps': 80, 'model.disc_y_noise_anneal_start': 20}
  # At step 0 the full std (0.3), past the anneal none at all.
  assert loss(0, **annealed) == pytest.approx(loss(0), rel=1e-6)
  assert loss(100, **annealed) == pytest.approx(
      loss(100, **{'model.disc_y_input_noise_std': 0.0}), rel=1e-6)
  assert loss(100, **annealed) != pytest.approx(loss(100), rel=1e-4)
  assert loss(20, **annealed) == pytest.approx(loss(20), rel=1e-6)
  # Half-way the noise is half as strong.
  assert loss(60, **annealed) == pytest.approx(
      loss(60, **{'model.disc_y_input_noise_std': 0.15}), rel=1e-6)


def test_z_discriminator_sees_q_but_does_not_train_it(tiny_dataset):
  # disc_y off: the generator's only path to the y head is the z discriminator's condition.
  c = helpers.config('mnist_cluster', '16,smoke', **{'model.disc_z_sees_y': True,
                                                     'model.disc_y': False})
  exp = train.build(c, tiny_dataset)
  variables, batch, key = exp.state.variables, _batch(tiny_dataset), jax.random.PRNGKey(2)
  params = variables['params']
  assert params['discriminator']['mlp']['hidden_0']['kernel'].shape[0] == 2 + 16
  code = exp.aae.encode(variables, batch, key)
  z = jax.random.normal(key, code.z.shape)
  q = jax.nn.softmax(code.y_logits)
  # The condition matters to D ...
  with_q = exp.aae.critic_z.logits(params, z, batch, key, q)
  with_other = exp.aae.critic_z.logits(params, z, batch, key, jnp.roll(q, 1, axis=1))
  assert not np.allclose(with_q, with_other)
  # ... but the encoder's y head gets no gradient through it; z's head does.
  grads = jax.grad(lambda p: exp.aae.generator_objective(
      {'params': p, 'batch_stats': {}}, batch, key)[0])(params)
  enc = grads['encoder']
  assert np.all(np.asarray(enc['y_head']['kernel']) == 0)
  assert np.any(np.asarray(enc['z_head']['kernel']) != 0)


def test_z_condition_needs_a_q_head(tiny_dataset):
  c = helpers.config('mnist_gaussian', **{'model.disc_z_sees_y': True})
  with pytest.raises(errors.UserError, match='disc_z_sees_y'):
    train.build(c, tiny_dataset)


def test_kmeans_membership_is_the_nearest_centre():
  rng = np.random.default_rng(0)
  x, centres = rng.normal(size=(50, 7)), rng.normal(size=(4, 7))
  expected = -((x[:, None, :] - centres[None]) ** 2).sum(-1)
  np.testing.assert_allclose(kmeans.membership(centres, x), expected, rtol=1e-10, atol=1e-10)


def _blobs(n, rng):
  """Images of four classes, each a bright square in its own corner, plus noise."""
  labels = rng.integers(0, 4, size=n).astype(np.int32)
  images = 0.05 * rng.random((n, 28, 28, 1)).astype(np.float32)
  for image, label in zip(images, labels):
    r, c = divmod(int(label), 2)
    image[14 * r:14 * r + 10, 14 * c:14 * c + 10] = 1.0
  return data_lib.Split(images, labels)


def test_kmeans_baseline_scores_by_both_rules(tiny_dataset):
  rng = np.random.default_rng(1)
  dataset = dataclasses.replace(tiny_dataset, train=_blobs(400, rng), valid=_blobs(100, rng),
                                test=_blobs(200, rng))
  c = helpers.config('mnist_kmeans', '16,smoke')
  c.kmeans.num_clusters = 4
  metrics = kmeans.run(c, dataset)
  assert metrics['eval/test_error'] == 0.0
  assert metrics['eval/test_error_majority'] == 0.0
  assert metrics['eval/test_clusters_used'] == 4
  # Two clusters for four classes: half the test set is wrong whichever rule labels them.
  c.kmeans.num_clusters = 2
  metrics = kmeans.run(c, dataset)
  assert 0.4 < metrics['eval/test_error'] < 0.6
  assert 0.4 < metrics['eval/test_error_majority'] < 0.6
