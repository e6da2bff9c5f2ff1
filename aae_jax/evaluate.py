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


class Evaluator:
  """Jitted, batched evaluation of one AAE on held-out splits."""

  def __init__(self, aae: phases_lib.AAE, batch_size: int = 1000, seed: int = 0):
    self.aae = aae
    self.batch_size = batch_size
    self.key = jax.random.PRNGKey(seed)
    self.prior_mean, self.prior_cov = priors.moments(aae.prior, jax.random.fold_in(self.key, 1))
    self._encode_and_score = jax.jit(self._encode_and_score_impl)
    self._decode = jax.jit(self._decode_impl)

  def _encode_and_score_impl(self, params, x, key):
    def rows(chunk):
      xs, positions = chunk
      code = self.aae.encode(params, {'x': xs, 'position': positions}, key, train=False)
      logits = self.aae.decoder.apply({'params': params['decoder']}, code.z)
      return code.z, self.aae.reconstruction(logits, xs)

    z, loss = batched(rows, (x, jnp.arange(x.shape[0])), self.batch_size)
    return z, loss, self.aae.prior.log_prob(z)

  def _decode_impl(self, params, z):
    logits = self.aae.decoder.apply({'params': params['decoder']}, z)
    return self.aae.output(logits)

  def codes(self, params, images: np.ndarray):
    """Codes of ``images`` (N, ...) and their per-example reconstruction losses."""
    x = jnp.asarray(images.reshape(len(images), -1))
    z, loss, log_p = self._encode_and_score(params, x, self.key)
    return np.asarray(z), np.asarray(loss), np.asarray(log_p)

  def decode(self, params, z) -> np.ndarray:
    return np.asarray(self._decode(params, jnp.asarray(z)))

  def split_metrics(self, params, name: str, images: np.ndarray):
    """``eval/<name>_*`` metrics and the codes they came from."""
    z, loss, log_p = self.codes(params, images)
    mean = z.astype(np.float64).mean(axis=0)
    cov = np.cov(z.astype(np.float64), rowvar=False).reshape(z.shape[1], z.shape[1])
    prior_std = np.sqrt(np.diag(self.prior_cov))
    scale = np.outer(prior_std, prior_std)
    metrics = {
        f'eval/{name}_recon_loss': loss.mean(),
        f'eval/{name}_code_log_prob': log_p.mean(),
        # Deviation of the codes' mean from the prior's, in prior stds (max over dims).
        f'eval/{name}_code_mean_dev': np.max(np.abs(mean - self.prior_mean) / prior_std),
        # Deviation of the codes' covariance, relative to the prior's variances.
        f'eval/{name}_code_cov_dev': np.max(np.abs(cov - self.prior_cov) / scale),
    }
    if z.shape[1] <= 4:
      metrics[f'eval/{name}_code_mean'] = mean
      metrics[f'eval/{name}_code_cov'] = cov
    return metrics, z
