"""Fréchet distance between image sets in the feature space of a small classifier.

No downloaded weights: the features are the last hidden layer (256-d, post-ReLU)
of an MLP classifier that the project trains once per dataset on its ``train``
split and caches under ``<cache root>/fid_classifier/`` (see ``cache_root``).
The cache file's name carries a hash of everything the weights depend on
(dataset name, image shape, train size, classes, pixel scaling, seed, epochs,
widths), so a different dataset or architecture never reuses a wrong file. A
cache file that cannot be read is retrained with a warning, never fatal.

The numbers are comparable only between runs that use the same classifier (same
cache key): report the key's file (``Extractor.path``) and its
``test_accuracy`` next to any FID. Images go in as the dataset holds them
(pixels in [0, 1], or standardised if the dataset was).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
from typing import Sequence

from absl import logging
import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aae_jax import errors
from aae_jax import batching
from aae_jax import files

CACHE_ENV = 'AAE_CACHE_DIR'
CACHE_SUBDIR = 'fid_classifier'
HIDDEN = (512, 256)
_FORMAT_VERSION = 1  # bump when the training recipe changes: old files stop matching


class Classifier(nn.Module):
  """MLP on flattened images: ReLU hidden layers, then class logits.

  Returns ``(logits, features)``, the features being the last hidden layer
  after its ReLU.
  """
  num_classes: int
  hidden: Sequence[int] = HIDDEN

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f'hidden_{i}')(x))
    return nn.Dense(self.num_classes, name='out')(x), x


# ----------------------------------------------------------------------------
# Statistics and the distance.


def statistics(features) -> tuple[np.ndarray, np.ndarray]:
  """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or f.shape[0] < 2:
    raise errors.UserError(f'FID needs features of shape (N, D) with N >= 2; got {f.shape}.')
  return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric PSD matrix (negative eigenvalues clipped)."""
  w, v = np.linalg.eigh((cov + cov.T) / 2)
  return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
  """||mu1 - mu2||^2 + tr(C1) + tr(C2) - 2 tr(sqrt(C1 C2)), in float64.

  tr(sqrt(C1 C2)) is the sum of the square roots of the eigenvalues of the
  symmetric PSD matrix sqrt(C1) C2 sqrt(C1), which has the same spectrum as
  C1 C2; eigenvalues below zero (rounding) are clipped. No scipy.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
  d = mu1.shape[0]
  if mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
    raise errors.UserError(f'FID statistics disagree in shape: means {mu1.shape}, '
                           f'{mu2.shape}; covariances {cov1.shape}, {cov2.shape}.')
  s1 = _psd_sqrt(cov1)
  middle = s1 @ cov2 @ s1
  eigs = np.linalg.eigvalsh((middle + middle.T) / 2)
  tr_sqrt = np.sum(np.sqrt(np.clip(eigs, 0, None)))
  diff = mu1 - mu2
  value = diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt
  return float(max(value, 0.0))  # >= 0 exactly; only rounding can push it below


# ----------------------------------------------------------------------------
# Training.


def _batched_apply(model: Classifier, params, x, batch_size: int):
  """``model.apply`` over row batches (``batching.batched``): (logits, features)."""
  return batching.batched(lambda rows: model.apply(params, rows[0]), (x,), batch_size)


def _flat(images) -> jnp.ndarray:
  images = np.asarray(images, np.float32)
  return jnp.asarray(images.reshape(images.shape[0], -1))


@functools.lru_cache(maxsize=8)
def _make_epoch(model: Classifier, lr: float, batch_size: int):
  """One jitted Adam epoch: a fresh permutation, then ``lax.scan`` over its batches.

  Cached, so that training again with the same settings compiles nothing.
  """
  tx = optax.adam(lr)

  def loss_fn(params, x, y):
    logits, _ = model.apply(params, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def step(carry, idx):
    params, opt_state, x_all, y_all = carry
    loss, grads = jax.value_and_grad(loss_fn)(params, x_all[idx], y_all[idx])
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state, x_all, y_all), loss

  @jax.jit
  def epoch(params, opt_state, key, x, y):
    steps = x.shape[0] // batch_size
    order = jax.random.permutation(key, x.shape[0])[:steps * batch_size]
    (params, opt_state, _, _), losses = jax.lax.scan(
        step, (params, opt_state, x, y), order.reshape(steps, batch_size))
    return params, opt_state, losses.mean()

  return epoch


def accuracy(model: Classifier, params, split, batch_size: int = 1000) -> float:
  """Share of a split's examples whose argmax logit is their label."""
  logits, _ = jax.jit(_batched_apply, static_argnums=(0, 3))(
      model, params, _flat(split.images), batch_size)
  return float(np.mean(np.argmax(np.asarray(logits), axis=1) == split.labels))


def train_classifier(dataset, *, seed: int = 0, epochs: int = 5, batch_size: int = 100,
                     lr: float = 1e-3, hidden: Sequence[int] = HIDDEN):
  """Trains ``Classifier`` on ``dataset.train`` with Adam and cross-entropy.

  Args:
    dataset: a ``data.Dataset``; only its train split is trained on.
    seed: initialisation and shuffling seed.
    epochs: passes over the train split (the tail short of a batch is dropped,
      a different tail each epoch).
    batch_size: examples per step (capped at the train split's size).
    lr: Adam's learning rate.
    hidden: hidden widths.

  Returns:
    ``(params, test_accuracy)``, the accuracy on ``dataset.test`` being for
    documentation only.
  """
  if epochs < 1 or batch_size < 1:
    raise errors.UserError(f'FID classifier needs epochs >= 1 and batch_size >= 1; got '
                           f'epochs={epochs}, batch_size={batch_size}.')
  model = Classifier(dataset.num_classes, tuple(hidden))
  x, y = _flat(dataset.train.images), jnp.asarray(dataset.train.labels, jnp.int32)
  batch_size = min(batch_size, x.shape[0])
  key = jax.random.PRNGKey(seed)
  params = model.init(jax.random.fold_in(key, 0), x[:1])
  opt_state = optax.adam(lr).init(params)
  epoch = _make_epoch(model, float(lr), batch_size)
  for e in range(epochs):
    params, opt_state, loss = epoch(params, opt_state, jax.random.fold_in(key, e + 1), x, y)
    logging.info('FID classifier %s epoch %d/%d: train loss %.4f', dataset.name, e + 1,
                 epochs, float(loss))
  return params, accuracy(model, params, dataset.test)


# ----------------------------------------------------------------------------
# The cached extractor.


def cache_root(configured: str = '') -> pathlib.Path:
  """``configured``, else ``$AAE_CACHE_DIR``, else ``~/.cache/aae_jax``."""
  return pathlib.Path(configured or os.environ.get(CACHE_ENV, '')
                      or '~/.cache/aae_jax').expanduser()


def cache_key(dataset, *, seed: int, epochs: int, hidden: Sequence[int] = HIDDEN) -> str:
  """A short hash of everything the classifier's weights depend on."""
  fields = {
      'version': _FORMAT_VERSION,
      'dataset': dataset.name,
      'image_shape': list(dataset.image_shape),
      'num_train': len(dataset.train),
      'num_classes': int(dataset.num_classes),
      'standardized': dataset.pixel_mean is not None,
      'seed': int(seed),
      'epochs': int(epochs),
      'hidden': [int(w) for w in hidden],
  }
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def _load(path: pathlib.Path, template) -> tuple[dict, float]:
  """Params and test accuracy from ``path`` and its ``.json``; raises if unusable."""
  params = flax.serialization.from_bytes(template, path.read_bytes())
  want = jax.tree.map(lambda a: (a.shape, a.dtype), template)
  got = jax.tree.map(lambda a: (np.shape(a), np.asarray(a).dtype), params)
  if want != got:
    raise ValueError(f'parameter shapes {got} differ from the classifier\'s {want}')
  meta = json.loads(path.with_suffix('.json').read_text())
  return params, float(meta['test_accuracy'])


@dataclasses.dataclass
class Extractor:
  """A trained classifier whose last hidden layer gives the FID features."""
  model: Classifier
  params: dict
  test_accuracy: float
  path: pathlib.Path
  input_size: int

  def __post_init__(self):
    self._apply = jax.jit(_batched_apply, static_argnums=(0, 3))

  def features(self, images, batch_size: int = 1000) -> np.ndarray:
    """Features (N, 256) of images (N, ...) shaped like the dataset's (any layout
    with the same number of values per image)."""
    x = _flat(images)
    if x.shape[1] != self.input_size:
      raise errors.UserError(f'FID features: images of {x.shape[1]} values each, but the '
                             f'classifier {self.path.name} reads {self.input_size}.')
    _, feats = self._apply(self.model, self.params, x, min(batch_size, max(x.shape[0], 1)))
    return np.asarray(feats)

  def fid(self, images_a, images_b) -> float:
    """The FID between two image sets."""
    return frechet_distance(*statistics(self.features(images_a)),
                            *statistics(self.features(images_b)))


def load_or_train(dataset, cache_dir: str | os.PathLike, *, seed: int = 0,
                  epochs: int = 5) -> Extractor:
  """The dataset's cached classifier, trained (and cached) first if need be.

  Files: ``<cache_dir>/fid_classifier/<dataset.name>-<cache_key>.msgpack`` (the
  params) and a ``.json`` beside it (test accuracy, epochs, seed, dataset, train
  size, image shape). Both are written atomically. A file that cannot be read
  or does not fit the classifier is retrained with a warning.
  """
  folder = pathlib.Path(cache_dir).expanduser() / CACHE_SUBDIR
  path = folder / f'{dataset.name}-{cache_key(dataset, seed=seed, epochs=epochs)}.msgpack'
  model = Classifier(dataset.num_classes, HIDDEN)
  input_size = int(np.prod(dataset.image_shape))
  template = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                            jnp.zeros((1, input_size), jnp.float32))
  if path.exists():
    try:
      params, test_accuracy = _load(path, template)
      logging.info('FID classifier from %s (test accuracy %.4f).', path, test_accuracy)
      return Extractor(model, params, test_accuracy, path, input_size)
    except Exception as e:  # pylint: disable=broad-except  # any damage: retrain
      logging.warning('FID classifier cache %s is unusable (%s: %s); retraining it.', path,
                      type(e).__name__, e)
  logging.info('Training the FID classifier for %s (%d epochs, seed %d) into %s.',
               dataset.name, epochs, seed, path)
  params, test_accuracy = train_classifier(dataset, seed=seed, epochs=epochs)
  params = jax.device_get(params)
  meta = {'test_accuracy': test_accuracy, 'epochs': epochs, 'seed': seed,
          'dataset': dataset.name, 'num_train': len(dataset.train),
          'image_shape': list(dataset.image_shape)}
  folder.mkdir(parents=True, exist_ok=True)
  files.write_atomic(path, flax.serialization.to_bytes(params))
  files.write_atomic(path.with_suffix('.json'), json.dumps(meta, indent=2).encode())
  return Extractor(model, params, test_accuracy, path, input_size)
