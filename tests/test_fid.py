"""FID: the Fréchet distance against closed forms and brute force, the classifier's
training, and its cache (reuse, corruption, keys)."""

from __future__ import annotations

import json
import logging
import pathlib

import flax.serialization
import numpy as np
import pytest

from aae_jax import data
from aae_jax import errors
from aae_jax import fid

EPOCHS = 2  # the tiny dataset is learnt in one or two epochs


def random_cov(rng: np.random.Generator, d: int) -> np.ndarray:
  a = rng.normal(size=(d, d))
  return a @ a.T / d + 0.1 * np.eye(d)


def trace_sqrt_by_eig(c1: np.ndarray, c2: np.ndarray) -> float:
  """tr(sqrtm(C1 C2)) by diagonalising the non-symmetric product itself."""
  w, v = np.linalg.eig(c1 @ c2)
  root = (v * np.sqrt(w.astype(complex))) @ np.linalg.inv(v)
  np.testing.assert_allclose(root @ root, c1 @ c2, atol=1e-8)  # it is a square root
  return float(np.trace(root).real)


# ----------------------------------------------------------------------------
# The distance.


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_mean_shift():
  rng = np.random.default_rng(0)
  feats = rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16))
  scale = np.trace(np.cov(feats, rowvar=False))
  distance = lambda a, b: fid.frechet_distance(*fid.statistics(a), *fid.statistics(b))
  assert distance(feats, feats) < 1e-6 * scale
  values = [distance(feats, feats + s) for s in (0.0, 0.5, 1.0, 2.0)]
  assert all(a < b for a, b in zip(values, values[1:])), values
  # A pure shift leaves the covariances equal: FID is the squared shift.
  np.testing.assert_allclose(values[1:], [16 * s**2 for s in (0.5, 1.0, 2.0)], rtol=1e-6)


def test_frechet_distance_with_diagonal_covariances_matches_closed_form():
  rng = np.random.default_rng(1)
  mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
  s1, s2 = rng.uniform(0.1, 3.0, size=8), rng.uniform(0.1, 3.0, size=8)
  want = np.sum((mu1 - mu2)**2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
  got = fid.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
  assert abs(got - want) < 1e-6 * max(1.0, want)


def test_frechet_distance_with_non_commuting_covariances_matches_brute_force():
  rng = np.random.default_rng(2)
  d = 12
  c1, c2 = random_cov(rng, d), random_cov(rng, d)
  assert np.abs(c1 @ c2 - c2 @ c1).max() > 0.1  # the easy case is not what is tested
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  want = (np.sum((mu1 - mu2)**2) + np.trace(c1) + np.trace(c2)
          - 2 * trace_sqrt_by_eig(c1, c2))
  got = fid.frechet_distance(mu1, c1, mu2, c2)
  assert abs(got - want) < 1e-6 * max(1.0, want)
  assert abs(fid.frechet_distance(mu2, c2, mu1, c1) - got) < 1e-6 * max(1.0, want)


def test_statistics_and_shape_errors():
  feats = np.arange(12, dtype=np.float32).reshape(4, 3)
  mu, cov = fid.statistics(feats)
  assert mu.dtype == np.float64 and cov.shape == (3, 3)
  np.testing.assert_allclose(cov, np.cov(feats.astype(np.float64), rowvar=False))
  with pytest.raises(errors.UserError):
    fid.statistics(feats[:1])
  with pytest.raises(errors.UserError):
    fid.frechet_distance(mu, cov, mu[:2], cov[:2, :2])


# ----------------------------------------------------------------------------
# The classifier.


def test_train_classifier_learns_tiny_dataset(tiny_dataset):
  params, test_accuracy = fid.train_classifier(tiny_dataset, epochs=EPOCHS)
  assert test_accuracy > 0.9
  model = fid.Classifier(tiny_dataset.num_classes)
  logits, feats = model.apply(params, tiny_dataset.test.images[:7].reshape(7, -1))
  assert logits.shape == (7, 10) and feats.shape == (7, fid.HIDDEN[-1])
  assert float(np.min(feats)) >= 0.0  # post-ReLU


def test_cache_root(monkeypatch, tmp_path):
  monkeypatch.setenv(fid.CACHE_ENV, str(tmp_path / 'env'))
  assert fid.cache_root(str(tmp_path / 'cfg')) == tmp_path / 'cfg'
  assert fid.cache_root() == tmp_path / 'env'
  monkeypatch.delenv(fid.CACHE_ENV)
  assert fid.cache_root() == pathlib.Path('~/.cache/aae_jax').expanduser()


def test_cache_key_separates_datasets_and_settings(tiny_dataset):
  key = fid.cache_key(tiny_dataset, seed=0, epochs=EPOCHS)
  assert key == fid.cache_key(tiny_dataset, seed=0, epochs=EPOCHS)
  assert key != fid.cache_key(tiny_dataset, seed=1, epochs=EPOCHS)
  assert key != fid.cache_key(tiny_dataset, seed=0, epochs=EPOCHS + 1)
  assert key != fid.cache_key(tiny_dataset, seed=0, epochs=EPOCHS, hidden=(256, 128))
  smaller = data.Dataset(tiny_dataset.name, tiny_dataset.valid, tiny_dataset.valid,
                         tiny_dataset.test, tiny_dataset.num_classes)
  assert key != fid.cache_key(smaller, seed=0, epochs=EPOCHS)
  rgb = data.Split(np.zeros((4, 28, 28, 3), np.float32), np.zeros(4, np.int32))
  assert key != fid.cache_key(data.Dataset(tiny_dataset.name, rgb, rgb, rgb, 10),
                              seed=0, epochs=EPOCHS)


def forbid_training(monkeypatch):
  def fail(*args, **kwargs):
    raise AssertionError('trained although a usable cache file exists')
  monkeypatch.setattr(fid, 'train_classifier', fail)


def test_load_or_train_caches_and_reuses(tiny_dataset, tmp_path, monkeypatch):
  first = fid.load_or_train(tiny_dataset, tmp_path, epochs=EPOCHS)
  assert first.path.parent == tmp_path / 'fid_classifier'
  assert first.path.name.startswith('mnist-') and first.path.suffix == '.msgpack'
  assert first.path.is_file()
  meta = json.loads(first.path.with_suffix('.json').read_text())
  assert meta == {'test_accuracy': first.test_accuracy, 'epochs': EPOCHS, 'seed': 0,
                  'dataset': 'mnist', 'num_train': 500, 'image_shape': [28, 28, 1]}
  assert first.test_accuracy > 0.9
  assert not [p for p in first.path.parent.iterdir() if p.suffix == '.tmp']

  forbid_training(monkeypatch)
  second = fid.load_or_train(tiny_dataset, tmp_path, epochs=EPOCHS)
  assert second.path == first.path and second.test_accuracy == first.test_accuracy
  images = tiny_dataset.test.images
  feats = first.features(images)
  assert feats.shape == (len(images), fid.HIDDEN[-1])
  np.testing.assert_array_equal(second.features(images), feats)
  # Any layout with 784 values per image; batching does not change the features.
  np.testing.assert_allclose(second.features(images.reshape(-1, 28, 28), batch_size=64),
                             feats, rtol=1e-5, atol=1e-5)
  assert second.fid(images, images) < 1e-6 * np.trace(np.cov(feats, rowvar=False))
  with pytest.raises(errors.UserError):
    second.features(np.zeros((3, 32, 32, 3), np.float32))


@pytest.mark.parametrize('damage', ['garbage', 'truncated', 'no_json', 'wrong_shapes'])
def test_load_or_train_retrains_a_damaged_cache(tiny_dataset, tmp_path, caplog, monkeypatch,
                                                damage):
  first = fid.load_or_train(tiny_dataset, tmp_path, epochs=EPOCHS)
  if damage == 'garbage':
    first.path.write_bytes(b'not msgpack at all')
  elif damage == 'truncated':
    first.path.write_bytes(first.path.read_bytes()[:1000])
  elif damage == 'no_json':
    first.path.with_suffix('.json').unlink()
  else:  # readable, but another architecture's weights
    other, _ = fid.train_classifier(tiny_dataset, epochs=1, hidden=(32, 16))
    first.path.write_bytes(flax.serialization.to_bytes(other))
  with caplog.at_level(logging.WARNING):
    again = fid.load_or_train(tiny_dataset, tmp_path, epochs=EPOCHS)
  assert any('unusable' in r.getMessage() and r.levelno == logging.WARNING
             for r in caplog.records)
  np.testing.assert_array_equal(again.features(tiny_dataset.test.images[:50]),
                                first.features(tiny_dataset.test.images[:50]))
  forbid_training(monkeypatch)  # the retrained files are usable again
  fid.load_or_train(tiny_dataset, tmp_path, epochs=EPOCHS)


def test_load_or_train_separates_seeds_and_epochs(tiny_dataset, tmp_path):
  base = fid.load_or_train(tiny_dataset, tmp_path, epochs=EPOCHS)
  other_seed = fid.load_or_train(tiny_dataset, tmp_path, seed=1, epochs=EPOCHS)
  other_epochs = fid.load_or_train(tiny_dataset, tmp_path, epochs=EPOCHS + 1)
  assert len({base.path, other_seed.path, other_epochs.path}) == 3
  assert all(e.path.is_file() for e in (base, other_seed, other_epochs))
  assert json.loads(other_seed.path.with_suffix('.json').read_text())['seed'] == 1
  images = tiny_dataset.test.images[:50]
  assert not np.array_equal(base.features(images), other_seed.features(images))
