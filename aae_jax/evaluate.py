"""Evaluation: codes of a split, reconstruction loss, code moments against the prior's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from aae_jax import phases as phases_lib
from aae_jax import priors


def batched(fn, arrays: tuple, batch_size: int):
  """Maps ``fn`` over row batches of ``arrays`` with ``lax.map``, padding the tail.

  Keeps memory bounded on large splits; returns ``fn``'s outputs for all rows.
  """
  n = arrays[0].shape[0]
  num_batches = -(-n // batch_size)
  pad = num_batches * batch_size - n

  def split(a):
    a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
    return a.reshape((num_batches, batch_size) + a.shape[1:])

  out = jax.lax.map(fn, tuple(split(a) for a in arrays))
  return jax.tree.map(lambda y: y.reshape((-1,) + y.shape[2:])[:n], out)


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


def component_of(prior, z) -> np.ndarray:
  """Each code's most likely prior component (mixture component / swiss-roll section)."""
  return np.asarray(jnp.argmax(prior.component_log_probs(jnp.asarray(z)), axis=-1))


class Evaluator:
  """Jitted, batched evaluation of one AAE on held-out splits."""

  def __init__(self, aae: phases_lib.AAE, batch_size: int = 1000, seed: int = 0,
               supervised: bool = False):
    self.aae = aae
    self.batch_size = batch_size
    self.supervised = supervised  # q(y|x) was trained on labels: report its error
    self.key = jax.random.PRNGKey(seed)
    self.prior_mean, self.prior_cov = priors.moments(aae.prior, jax.random.fold_in(self.key, 1))
    self._encode_and_score = jax.jit(self._encode_and_score_impl)
    self._decode = jax.jit(self._decode_impl)

  def _encode_and_score_impl(self, params, x, labels, key):
    def rows(chunk):
      xs, ys, positions = chunk
      batch = {'x': xs, 'label': ys, 'position': positions}
      code = self.aae.encode(params, batch, key, train=False)
      logits = self.aae.decode_logits(params, self.aae.decoder_in(params, code, batch))
      out = {'z': code.z, 'loss': self.aae.reconstruction(logits, xs)}
      if code.y_logits is not None:
        out['y_probs'] = jax.nn.softmax(code.y_logits)
      return out

    out = batched(rows, (x, labels, jnp.arange(x.shape[0])), self.batch_size)
    out['log_p'] = self.aae.prior.log_prob(out['z'])
    # What figures show as the code: q(y|x) W_c + z with cluster heads, else z.
    out['shown'] = (self.aae.decoder_input_from(params, out['z'], out['y_probs'])
                    if self.aae.decoder_input == 'heads' else out['z'])
    return out

  def _decode_impl(self, params, h):
    return self.aae.output(self.aae.decode_logits(params, h))

  def codes(self, params, split) -> dict[str, np.ndarray]:
    """Per-example ``z``, ``loss``, ``log_p``, ``shown`` and ``y_probs`` of a split."""
    x = jnp.asarray(split.images.reshape(len(split), -1))
    out = self._encode_and_score(params, x, jnp.asarray(split.labels), self.key)
    return {k: np.asarray(v) for k, v in out.items()}

  def decode(self, params, z, y=None) -> np.ndarray:
    """Decodes codes z (N, dim) with class vectors y (N, C) where the decoder reads them."""
    z = jnp.asarray(z)
    h = z if y is None else self.aae.decoder_input_from(params, z, jnp.asarray(y))
    return np.asarray(self._decode(params, h))

  def split_metrics(self, params, name: str, split):
    """``eval/<name>_*`` metrics and the per-example outputs they came from."""
    out = self.codes(params, split)
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
    if self.aae.condition_classes and self.aae.prior.num_components:
      # Share of codes whose most likely prior component is their own class (E2).
      metrics[f'eval/{name}_component_accuracy'] = np.mean(
          component_of(self.aae.prior, z) == split.labels)
    return metrics, out

  def evaluate(self, params, dataset) -> tuple[dict, dict]:
    """Metrics of the validation and test splits, and the test split's outputs.

    An unsupervised q(y|x) (clustering) is scored on test with cluster labels
    taken from the validation split: by the paper's rule (``eval/test_error``)
    and by majority vote (``eval/test_error_majority``).
    """
    valid, valid_out = self.split_metrics(params, 'valid', dataset.valid)
    test, test_out = self.split_metrics(params, 'test', dataset.test)
    metrics = {**valid, **test}
    if 'y_probs' in test_out and not self.supervised:
      v_probs, v_labels = valid_out['y_probs'], dataset.valid.labels
      paper = cluster_labels_paper(v_probs, v_labels)
      majority = cluster_labels_majority(v_probs, v_labels, dataset.num_classes)
      metrics['eval/test_error'] = cluster_error(test_out['y_probs'], dataset.test.labels, paper)
      metrics['eval/test_error_majority'] = cluster_error(
          test_out['y_probs'], dataset.test.labels, majority)
      test_out['cluster_labels'] = paper
    return metrics, test_out
