"""Generative evaluation and the applications (paper E1, E3): the VAE baseline, anomaly
detection and denoising (their configs' smoke runs are in test_configs.py).

The Parzen estimator and the Frechet distance have their own tests
(test_parzen.py, test_fid.py); here they run end to end through the evaluator.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aae_jax import data
from aae_jax import errors
from aae_jax import evaluate
from aae_jax import models
from aae_jax import model
from aae_jax import priors
from aae_jax import train
from tests import helpers

# ----------------------------------------------------------------------------
# The VAE baseline.


def _code(n=4000, dim=3, seed=0):
  rng = np.random.default_rng(seed)
  mean = rng.normal(0, 2.0, (1, dim)).repeat(n, 0).astype(np.float32)
  log_var = rng.normal(0, 0.5, (1, dim)).repeat(n, 0).astype(np.float32)
  eps = rng.standard_normal((n, dim)).astype(np.float32)
  z = mean + np.exp(0.5 * log_var) * eps
  return models.Code(z=jnp.asarray(z), mean=jnp.asarray(mean), log_var=jnp.asarray(log_var))


class _NotClosedForm:
  """The Gaussian prior behind an interface without the closed form (as a mixture)."""

  def __init__(self, prior):
    self.log_prob = prior.log_prob


def _vae(prior):
  aae = model.from_config(helpers.config('mnist_vae', 'parzen,smoke'),
                          priors.Gaussian(dim=3, std=5.0), 784)
  return dataclasses.replace(aae, prior=prior)


def test_kl_matches_its_closed_form_and_the_sampled_estimate():
  code = _code()
  std = 5.0
  var = np.exp(np.asarray(code.log_var[0], np.float64))
  mu = np.asarray(code.mean[0], np.float64)
  expected = 0.5 * np.sum(var / std**2 + mu**2 / std**2 - 1 - np.log(var / std**2))
  closed = np.asarray(_vae(priors.Gaussian(dim=3, std=std)).kl(code))
  np.testing.assert_allclose(closed, expected, rtol=1e-5)
  # Without the closed form: log q(z|x) - log p(z) at the samples, unbiased.
  sampled = np.asarray(_vae(_NotClosedForm(priors.Gaussian(dim=3, std=std))).kl(code))
  assert np.std(sampled) > 0.1  # one sample per example, not the closed form
  se = np.std(sampled) / np.sqrt(len(sampled))
  assert abs(sampled.mean() - expected) < 4 * se, (sampled.mean(), expected, se)


def test_vae_is_one_phase_that_trains_the_autoencoder_only(tiny_dataset):
  exp = train.build(helpers.config('mnist_vae', 'mog,smoke'), tiny_dataset)
  assert [p.name for p in exp.phases] == ['vae']
  batch = {'x': jnp.asarray(tiny_dataset.train.images[:20].reshape(20, -1)),
           'label': jnp.full((20,), -1, jnp.int32), 'position': jnp.arange(20)}
  state, metrics = helpers.run_step(exp.state, batch, exp.phases)
  assert helpers.changed(exp.state.params, state.params) == {
      'encoder': True, 'decoder': True, 'discriminator': False}
  np.testing.assert_allclose(metrics['train/neg_elbo'],
                             metrics['train/recon_loss'] + metrics['train/kl'], rtol=1e-6)
  # The mixture's KL is the sampled estimate: it changes with the noise key.
  aae = exp.aae
  keys = jax.random.split(jax.random.PRNGKey(1), 2)
  kls = [aae.vae_objective(exp.state.variables, batch, k)[1][0]['train/kl'] for k in keys]
  assert kls[0] != kls[1]


@pytest.mark.parametrize('override,field', [
    ({'model.encoder': 'deterministic'}, 'model.encoder="gaussian"'),
    ({'model.regularizer': 'wasserstein'}, 'model.regularizer'),
])
def test_vae_config_errors(override, field, tiny_dataset):
  with pytest.raises(errors.UserError, match=field):
    train.build(helpers.config('mnist_vae', 'gaussian,smoke', **override), tiny_dataset)


# ----------------------------------------------------------------------------
# Anomaly detection and denoising.


def test_auroc_on_hand_made_scores():
  assert evaluate.auroc([5, 6, 7], [1, 2, 3]) == 1.0
  assert evaluate.auroc([1, 2], [5, 6, 7]) == 0.0
  assert evaluate.auroc([2, 2], [2, 2, 2]) == 0.5
  # Pairs (anomalous > normal): 3 beats 1, 2, 0; 2 beats 1 and 0 and ties 2 -> 5.5 of 6.
  assert evaluate.auroc([3, 2], [1, 2, 0]) == pytest.approx(5.5 / 6)
  rng = np.random.default_rng(0)
  a, b = rng.normal(1, 1, 300), rng.normal(0, 1, 400)
  brute = np.mean((a[:, None] > b[None]) + 0.5 * (a[:, None] == b[None]))
  assert evaluate.auroc(a, b) == pytest.approx(brute, abs=1e-12)
  with pytest.raises(ValueError):
    evaluate.auroc([], [1.0])


def test_psnr_and_corruptions():
  clean = np.zeros((2, 4, 4), np.float32)
  np.testing.assert_allclose(evaluate.psnr(clean, clean + 0.1), [20.0, 20.0], rtol=1e-6)
  images = np.full((50, 28, 28), 0.5, np.float32)
  sp = evaluate.corrupt(images, 'salt_pepper', 0.2, seed=0)
  changed = sp != 0.5
  assert abs(changed.mean() - 0.2) < 0.01
  assert abs((sp == 1.0).mean() - 0.1) < 0.01
  gauss = evaluate.corrupt(images, 'gaussian', 0.5, seed=0)
  assert gauss.min() >= 0.0 and gauss.max() <= 1.0
  assert abs(np.std(gauss) - 0.5) < 0.15  # clipping shrinks it a little
  np.testing.assert_array_equal(gauss, evaluate.corrupt(images, 'gaussian', 0.5, seed=0))


def test_exclude_class_leaves_test_alone(tiny_dataset):
  out = data.exclude_class(tiny_dataset, 3)
  assert 3 not in out.train.labels and 3 not in out.valid.labels
  assert len(out.train) == int(np.sum(tiny_dataset.train.labels != 3))
  np.testing.assert_array_equal(out.test.labels, tiny_dataset.test.labels)
  with pytest.raises(errors.UserError, match='data.exclude_class=10'):
    data.exclude_class(tiny_dataset, 10)


def test_anomaly_scores_come_from_the_left_out_class(tiny_dataset):
  exp = train.build(helpers.config('mnist_anomaly', '3,smoke'), tiny_dataset)
  evaluator = evaluate.Evaluator(exp.aae, batch_size=50, anomaly_class=3)
  labels = tiny_dataset.test.labels
  rng = np.random.default_rng(0)
  # Loss high exactly on class 3; log-density uninformative.
  test_out = {'loss': np.where(labels == 3, 10.0, 1.0) + rng.uniform(0, 0.1, len(labels)),
              'log_p': rng.normal(size=len(labels))}
  metrics = evaluator.anomaly_metrics(test_out, labels)
  assert metrics['eval/anomaly_auroc_recon'] == 1.0
  assert 0.3 < metrics['eval/anomaly_auroc_prior'] < 0.7
  evaluator.anomaly_class = 4  # another class: the loss no longer separates it
  assert evaluator.anomaly_metrics(test_out, labels)['eval/anomaly_auroc_recon'] < 0.6


def test_denoising_metrics_reconstruct_the_noisy_images(tiny_dataset):
  """The reconstruction of noisy images goes through the model, not the clean images."""
  config = helpers.config('mnist_parzen', 'smoke')
  exp = train.build(config, tiny_dataset)
  evaluator = evaluate.Evaluator(exp.aae, batch_size=50, options=config.evaluation)
  params = exp.state.variables
  test = tiny_dataset.test
  clean = evaluator.reconstruct(params, test.images, test.labels)
  assert clean.shape == test.images.shape
  noisy = evaluate.corrupt(test.images, 'gaussian', config.evaluation.noise_std, seed=0)
  metrics = evaluator.denoise_metrics(params, test, evaluator.codes(params, test))
  np.testing.assert_allclose(metrics['eval/noisy_psnr_gaussian'],
                             evaluate.psnr(test.images, noisy).mean(), rtol=1e-6)
  expected = evaluate.psnr(test.images, evaluator.reconstruct(params, noisy, test.labels))
  np.testing.assert_allclose(metrics['eval/denoise_psnr_gaussian'], expected.mean(), rtol=1e-6)
  np.testing.assert_allclose(metrics['eval/test_recon_psnr'],
                             evaluate.psnr(test.images, clean).mean(), rtol=1e-6)
