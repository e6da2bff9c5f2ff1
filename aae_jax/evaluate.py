"""Evaluation: codes of a split, reconstruction loss, code moments against the prior's,
and the generative measures of ``config.evaluation``: Parzen log-likelihood of
samples, their Frechet distance to the test set, anomaly AUROC and denoising PSNR."""

from __future__ import annotations

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from aae_jax import batching
from aae_jax import distributed
from aae_jax import fid as fid_lib
from aae_jax import model as model_lib
from aae_jax import parzen
from aae_jax import priors


def cluster_labels_paper(valid_probs: np.ndarray, valid_labels: np.ndarray) -> np.ndarray:
  """The paper's rule: cluster i takes the label of the validation example with the
  highest q(y_i|x)."""
  return valid_labels[np.argmax(valid_probs, axis=0)]


def cluster_labels_majority(valid_probs: np.ndarray, valid_labels: np.ndarray,
                            num_classes: int) -> np.ndarray:
  """Majority vote: cluster i takes the most common label among the validation
  examples whose argmax is i; a cluster no validation example falls in keeps the
  paper rule's label."""
  assigned = np.argmax(valid_probs, axis=1)
  out = cluster_labels_paper(valid_probs, valid_labels).copy()
  for i in range(valid_probs.shape[1]):
    members = valid_labels[assigned == i]
    if len(members):
      out[i] = np.bincount(members, minlength=num_classes).argmax()
  return out


def cluster_error(probs: np.ndarray, labels: np.ndarray, cluster_labels: np.ndarray) -> float:
  """Error of predicting each example's label as its most likely cluster's label."""
  return float(np.mean(cluster_labels[np.argmax(probs, axis=1)] != labels))


def equal_size_cluster_floor(class_counts, num_clusters: int) -> float:
  """The lowest error any labelling of ``num_clusters`` clusters of equal size can
  reach on data with these class counts: the error when q(y) matches a uniform
  categorical prior exactly. Each class c takes n_c whole clusters (sum n_c =
  num_clusters) and at most min(p_c, n_c / num_clusters) of it is labelled right;
  the best choice of the n_c is found exactly by dynamic programming over classes."""
  p = np.asarray(class_counts, np.float64)
  p = p / p.sum()
  best = np.full(num_clusters + 1, -np.inf)  # best[u]: most mass right using u clusters
  best[0] = 0.0
  share = np.arange(num_clusters + 1) / num_clusters  # of the data in n clusters
  for pc in p:
    gain = np.minimum(pc, share)
    best = np.array([np.max(best[:u + 1][::-1] + gain[:u + 1]) for u in range(num_clusters + 1)])
  return float(1.0 - best[num_clusters])


def auroc(anomalous: np.ndarray, normal: np.ndarray) -> float:
  """Area under the ROC curve of scores where higher means more anomalous: the
  chance that an anomalous example scores above a normal one, ties counting half
  (the Mann-Whitney U statistic over both counts)."""
  anomalous, normal = np.asarray(anomalous, np.float64), np.asarray(normal, np.float64)
  if not (len(anomalous) and len(normal)):
    raise ValueError('AUROC needs at least one anomalous and one normal score.')
  scores = np.concatenate([anomalous, normal])
  order = np.argsort(scores, kind='stable')
  ranks = np.empty(len(scores))
  ranks[order] = np.arange(1, len(scores) + 1)
  _, tie_group, tie_count = np.unique(scores, return_inverse=True, return_counts=True)
  ranks = (np.bincount(tie_group, weights=ranks) / tie_count)[tie_group]  # ties: mean rank
  n = len(anomalous)
  return float((ranks[:n].sum() - n * (n + 1) / 2) / (n * len(normal)))


def psnr_from_mse(mse: np.ndarray) -> np.ndarray:
  """Peak signal-to-noise ratio in dB of per-image mean squared errors, pixels in [0, 1]."""
  return 10.0 * np.log10(1.0 / np.maximum(np.asarray(mse, np.float64), 1e-12))


def psnr(clean: np.ndarray, other: np.ndarray) -> np.ndarray:
  """Per-image peak signal-to-noise ratio in dB for pixel values in [0, 1]."""
  axes = tuple(range(1, clean.ndim))
  return psnr_from_mse(np.mean(np.square(clean.astype(np.float64) - other), axis=axes))


def corrupt(images: np.ndarray, kind: str, amount: float, seed: int = 0) -> np.ndarray:
  """``gaussian``: adds N(0, amount^2) noise and clips to [0, 1];
  ``salt_pepper``: sets a share ``amount`` of pixels to 0 or 1 (half each)."""
  rng = np.random.default_rng(seed)
  if kind == 'gaussian':
    return np.clip(images + amount * rng.standard_normal(images.shape), 0.0, 1.0).astype(
        np.float32)
  if kind == 'salt_pepper':
    u = rng.random(images.shape)
    out = np.where(u < amount / 2, 0.0, images)
    return np.where((u >= amount / 2) & (u < amount), 1.0, out).astype(np.float32)
  raise ValueError(f'unknown corruption {kind!r}')


def component_of(prior, z) -> np.ndarray:
  """Each code's most likely prior component (mixture component / swiss-roll section)."""
  return np.asarray(jnp.argmax(prior.component_log_probs(jnp.asarray(z)), axis=-1))


class Evaluator:
  """Jitted, batched evaluation of one AAE on held-out splits."""

  def __init__(self, aae: model_lib.AAE, batch_size: int = 1000, seed: int = 0,
               supervised: bool = False, options=None, anomaly_class: int = -1,
               fid_features=None):
    """
    Args:
      options: ``config.evaluation`` (see configs/common.py); None for the
        basic metrics only.
      anomaly_class: >= 0: the class training left out; its test images are
        scored as anomalies against the others.
      fid_features: images -> features of the Frechet distance (``fid.Extractor.features``).
    """
    self.aae = aae
    self.batch_size = batch_size
    self.supervised = supervised  # q(y|x) was trained on labels: report its error
    self.options = options
    self.anomaly_class = anomaly_class
    self.fid_features = fid_features
    self.seed = seed
    self.key = jax.random.PRNGKey(seed)
    self.prior_mean, self.prior_cov = priors.moments(aae.prior, jax.random.fold_in(self.key, 1))
    self._encode_and_score = jax.jit(self._encode_and_score_impl)
    self._decode = jax.jit(self._decode_impl)
    self._reconstruct = jax.jit(self._reconstruct_impl)
    self._fid_reference = None  # (statistics of the test features, reference FID)

  def _encode_and_score_impl(self, variables, x, labels, key):
    def rows(chunk):
      xs, ys, positions = chunk
      batch = {'x': xs, 'label': ys, 'position': positions}
      code = self.aae.encode(variables, batch, key, train=False)
      logits = self.aae.decode_logits(
          variables, self.aae.decoder_in(variables['params'], code, ys))
      out = {'z': code.z, 'loss': self.aae.reconstruction(logits, xs),
             # Per-image mean squared error of the reconstruction (denoising's reference).
             'mse': jnp.mean(jnp.square(self.aae.output(logits) - xs), axis=-1)}
      if code.y_logits is not None:
        out['y_probs'] = jax.nn.softmax(code.y_logits)
      return out

    out = batching.batched(rows, (x, labels, jnp.arange(x.shape[0])), self.batch_size)
    out['log_p'] = self.aae.prior.log_prob(out['z'])
    # What figures show as the code: q(y|x) W_c + z with cluster heads, else z.
    out['shown'] = self.aae.decoder_input.shown(variables['params'], out['z'],
                                                out.get('y_probs'))
    return out

  def _decode_impl(self, variables, h):
    return self.aae.output(self.aae.decode_logits(variables, h))

  def _reconstruct_impl(self, variables, x, labels):
    def rows(chunk):
      xs, ys = chunk
      batch = {'x': xs, 'label': ys, 'position': jnp.zeros_like(ys)}
      code = self.aae.encode(variables, batch, self.key, train=False)
      return self.aae.output(self.aae.decode_logits(
          variables, self.aae.decoder_in(variables['params'], code, ys)))

    return batching.batched(rows, (x, labels), self.batch_size)

  def reconstruct(self, variables, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Reconstructions (deterministic encoder pass) of images, in their shape."""
    x = jnp.asarray(images.reshape(len(images), -1))
    return np.asarray(self._reconstruct(variables, x, jnp.asarray(labels))).reshape(
        images.shape)

  def sample_images(self, variables, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """n decoded prior samples; a decoder that also reads a class gets a uniform one."""
    k_z, k_y = jax.random.split(jax.random.fold_in(self.key, 2))
    z = self.aae.prior.sample(k_z, n)
    y = None
    classes = self.aae.decoder_input.num_classes
    if classes:
      y = jax.nn.one_hot(jax.random.randint(k_y, (n,), 0, classes), classes)
    return self.decode(variables, z, y).reshape((n,) + tuple(shape))

  def codes(self, variables, split) -> dict[str, np.ndarray]:
    """Per-example ``z``, ``loss``, ``mse``, ``log_p``, ``shown`` and ``y_probs`` of a split."""
    x = jnp.asarray(split.images.reshape(len(split), -1))
    out = self._encode_and_score(variables, x, jnp.asarray(split.labels), self.key)
    return {k: np.asarray(v) for k, v in out.items()}

  def decode(self, variables, z, y=None) -> np.ndarray:
    """Decodes codes z (N, dim) with class vectors y (N, C) where the decoder reads them."""
    z = jnp.asarray(z)
    h = z if y is None else self.aae.decoder_input.combine(variables['params'], z,
                                                             jnp.asarray(y))
    return np.asarray(self._decode(variables, h))

  def split_metrics(self, variables, name: str, split):
    """``eval/<name>_*`` metrics and the per-example outputs they came from."""
    out = self.codes(variables, split)
    z = out['z']
    mean = z.astype(np.float64).mean(axis=0)
    cov = np.cov(z.astype(np.float64), rowvar=False).reshape(z.shape[1], z.shape[1])
    prior_std = np.sqrt(np.diag(self.prior_cov))
    scale = np.outer(prior_std, prior_std)
    metrics = {
        f'eval/{name}_recon_loss': out['loss'].mean(),
        f'eval/{name}_code_log_prob': out['log_p'].mean(),
        # Deviation of the codes' mean from the prior's, in prior stds (max over dims).
        f'eval/{name}_code_mean_dev': np.max(np.abs(mean - self.prior_mean) / prior_std),
        # Deviation of the codes' covariance, relative to the prior's variances.
        f'eval/{name}_code_cov_dev': np.max(np.abs(cov - self.prior_cov) / scale),
    }
    if z.shape[1] <= 4:
      metrics[f'eval/{name}_code_mean'] = mean
      metrics[f'eval/{name}_code_cov'] = cov
    if 'y_probs' in out:
      probs = out['y_probs']
      metrics[f'eval/{name}_mean_max_q'] = probs.max(axis=1).mean()
      metrics[f'eval/{name}_clusters_used'] = len(np.unique(probs.argmax(axis=1)))
      if self.supervised:
        metrics[f'eval/{name}_error'] = np.mean(probs.argmax(axis=1) != split.labels)
    if self.aae.z_condition.by_component:
      # Share of codes whose most likely prior component is their own class (E2).
      metrics[f'eval/{name}_component_accuracy'] = np.mean(
          component_of(self.aae.prior, z) == split.labels)
    return metrics, out

  def denoise_metrics(self, variables, split, out: dict) -> dict:
    """PSNR (dB) against the clean test images of the reconstructions of noisy ones,
    next to the noisy input's own PSNR, for Gaussian and salt-and-pepper noise; and
    that of the clean images' reconstructions, from their outputs ``out`` (``codes``)."""
    o = self.options
    clean = split.images
    metrics = {'eval/test_recon_psnr': psnr_from_mse(out['mse']).mean()}
    for kind, amount in (('gaussian', o.noise_std), ('salt_pepper', o.salt_pepper)):
      noisy = corrupt(clean, kind, amount, self.seed)
      metrics[f'eval/denoise_psnr_{kind}'] = psnr(
          clean, self.reconstruct(variables, noisy, split.labels)).mean()
      metrics[f'eval/noisy_psnr_{kind}'] = psnr(clean, noisy).mean()
    return metrics

  def anomaly_metrics(self, test_out: dict, labels: np.ndarray) -> dict:
    """AUROC of the left-out class against the others, by two scores: the
    reconstruction loss and the prior's negative log-density of the code."""
    anomalous = labels == self.anomaly_class
    metrics = {}
    for name, score in (('recon', test_out['loss']), ('prior', -test_out['log_p'])):
      metrics[f'eval/anomaly_auroc_{name}'] = auroc(score[anomalous], score[~anomalous])
    return metrics

  def generative_metrics(self, variables, dataset) -> dict:
    """Parzen log-likelihood and FID of ``options.num_samples`` decoded prior samples."""
    o = self.options
    shape = dataset.image_shape
    samples = self.sample_images(variables, o.num_samples, shape)
    metrics = {}
    if o.parzen:
      flat = lambda a: a.reshape(len(a), -1)
      est = parzen.parzen_estimate(flat(samples), flat(dataset.valid.images[:o.parzen_valid]),
                                   flat(dataset.test.images))
      metrics.update({'eval/parzen_ll': est['ll'], 'eval/parzen_ll_se': est['se'],
                      'eval/parzen_sigma': est['sigma'], 'eval/parzen_valid_ll': est['valid_ll']})
    if o.fid and self.fid_features is not None:
      if self._fid_reference is None:
        test_stats = fid_lib.statistics(self.fid_features(dataset.test.images))
        train_stats = fid_lib.statistics(
            self.fid_features(dataset.train.images[:o.num_samples]))
        self._fid_reference = (test_stats,
                               fid_lib.frechet_distance(*train_stats, *test_stats))
      test_stats, reference = self._fid_reference
      metrics['eval/fid'] = fid_lib.frechet_distance(
          *fid_lib.statistics(self.fid_features(samples)), *test_stats)
      # The same distance for as many real training images: the floor to read FID against.
      metrics['eval/fid_train_images'] = reference
    return metrics

  def evaluate(self, variables, dataset) -> tuple[dict, dict]:
    """Metrics of the validation and test splits, and the test split's outputs.

    An unsupervised q(y|x) (clustering) is scored on test with cluster labels
    taken from the validation split: by the paper's rule (``eval/test_error``)
    and by majority vote (``eval/test_error_majority``). ``options`` add the
    generative measures (Parzen, FID), denoising PSNR (data in [0, 1] only) and,
    with ``anomaly_class``, the anomaly AUROCs.
    """
    valid, valid_out = self.split_metrics(variables, 'valid', dataset.valid)
    test, test_out = self.split_metrics(variables, 'test', dataset.test)
    metrics = {**valid, **test}
    if 'y_probs' in test_out and not self.supervised:
      v_probs, v_labels = valid_out['y_probs'], dataset.valid.labels
      paper = cluster_labels_paper(v_probs, v_labels)
      majority = cluster_labels_majority(v_probs, v_labels, dataset.num_classes)
      metrics['eval/test_error'] = cluster_error(test_out['y_probs'], dataset.test.labels, paper)
      metrics['eval/test_error_majority'] = cluster_error(
          test_out['y_probs'], dataset.test.labels, majority)
      test_out['cluster_labels'] = paper
    if self.anomaly_class >= 0:
      metrics.update(self.anomaly_metrics(test_out, dataset.test.labels))
    o = self.options
    if o is not None:
      if o.denoise and dataset.pixel_mean is None:
        metrics.update(self.denoise_metrics(variables, dataset.test, test_out))
      if o.parzen or o.fid:
        metrics.update(self.generative_metrics(variables, dataset))
    return metrics, test_out


def from_config(config, aae: model_lib.AAE, dataset, supervised: bool) -> Evaluator:
  """The run's evaluator; with ``evaluation.fid`` it first loads (or trains once
  and caches) the feature classifier of the Frechet distance."""
  options = config.evaluation
  features = None
  if options.fid:
    extractor = distributed.main_first(lambda: fid_lib.load_or_train(
        dataset, fid_lib.cache_root(options.fid_cache_dir), epochs=options.fid_epochs),
                                       'fid_classifier')
    logging.info('FID features: classifier %s (test accuracy %.4f).', extractor.path,
                 extractor.test_accuracy)
    features = extractor.features
  return Evaluator(aae, batch_size=config.eval_batch_size, seed=config.seed,
                   supervised=supervised, options=options,
                   anomaly_class=config.data.exclude_class, fid_features=features)
