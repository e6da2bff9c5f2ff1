"""The clustering baseline of Table 3's rows: k-means on raw MNIST pixels.

    python -m aae_jax.kmeans --config=configs/mnist_kmeans.py:16 --workdir=runs/kmeans_16

The argument is the number of clusters (``16`` or ``30``; ``,smoke`` for tests).
scikit-learn's ``KMeans`` is fitted on the training split's pixels; each cluster
is then labelled from the validation split by the same two rules as the AAE's
(``aae_jax/evaluate.py``), with membership -||x - c_i||^2 in place of q(y_i|x):
the paper's rule (the validation example nearest the centre) gives
``eval/test_error``, majority vote ``eval/test_error_majority``.
"""

import ml_collections

from configs import common


ARGS = dict(clusters=('16', '30'))


def get_config(arg: str = '16'):
  a = common.parse_arg(arg, **ARGS)
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = common.base().data
  c.kmeans = ml_collections.ConfigDict(dict(
      num_clusters=int(a.clusters),
      n_init=10,  # restarts from k-means++ seeds; the best inertia is kept
      max_iter=300))
  if a.smoke:
    c.data.num_valid = 100
    c.kmeans.n_init = 1
    c.kmeans.max_iter = 20
  return c
