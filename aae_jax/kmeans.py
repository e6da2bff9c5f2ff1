"""k-means on raw pixels, scored like the clustering AAE: the baseline of Table 3.

    python -m aae_jax.kmeans --config=configs/mnist_kmeans.py:16 --workdir=runs/kmeans_16

Fits scikit-learn's ``KMeans`` on the training split, labels each cluster from
the validation split by the paper's rule and by majority vote
(``evaluate.cluster_labels_paper`` / ``cluster_labels_majority``, with
membership -||x - c_i||^2 where the AAE has q(y_i|x)) and writes the test errors
to ``metrics.jsonl`` and the config to ``config.json`` in the workdir, as a
training run does, so that ``tools.report`` reads both alike.
"""

from __future__ import annotations

import pathlib
import sys
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np
from sklearn import cluster

from aae_jax import data as data_lib
from aae_jax import errors
from aae_jax import evaluate
from aae_jax import metrics as metrics_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags; defined only when run as a program, so that
  importing this module beside another absl program (bench.bench) is safe."""
  config_flags.DEFINE_config_file('config', None, 'configs/mnist_kmeans.py[:arg]',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Where metrics.jsonl and config.json go.')
  flags.mark_flags_as_required(['config', 'workdir'])


def membership(centres: np.ndarray, x: np.ndarray) -> np.ndarray:
  """-||x - c_i||^2 for every example (rows) and centre (columns): higher is closer."""
  x = x.astype(np.float64)
  centres = centres.astype(np.float64)
  sq = (np.sum(x**2, axis=1)[:, None] - 2.0 * x @ centres.T
        + np.sum(centres**2, axis=1)[None, :])
  return -sq


def run(config, dataset: data_lib.Dataset) -> dict:
  """Fits k-means on ``dataset.train`` and returns the ``eval/*`` metrics."""
  k = config.kmeans
  if not 1 < k.num_clusters <= len(dataset.train):
    raise errors.UserError(f'kmeans.num_clusters={k.num_clusters} must be between 2 and '
                           f'the {len(dataset.train)} training examples.')
  if k.n_init < 1 or k.max_iter < 1:
    raise errors.UserError('kmeans.n_init and kmeans.max_iter must be positive.')
  flat = lambda split: split.images.reshape(len(split), -1)
  start = time.perf_counter()
  fit = cluster.KMeans(n_clusters=k.num_clusters, n_init=k.n_init, max_iter=k.max_iter,
                       random_state=config.seed).fit(flat(dataset.train))
  seconds = time.perf_counter() - start
  valid = membership(fit.cluster_centers_, flat(dataset.valid))
  test = membership(fit.cluster_centers_, flat(dataset.test))
  paper = evaluate.cluster_labels_paper(valid, dataset.valid.labels)
  majority = evaluate.cluster_labels_majority(valid, dataset.valid.labels,
                                              dataset.num_classes)
  return {
      'eval/test_error': evaluate.cluster_error(test, dataset.test.labels, paper),
      'eval/test_error_majority': evaluate.cluster_error(test, dataset.test.labels, majority),
      'eval/test_clusters_used': len(np.unique(test.argmax(axis=1))),
      'eval/train_inertia': float(fit.inertia_),
      'run/train_seconds': seconds,
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  config, workdir = FLAGS.config, pathlib.Path(FLAGS.workdir)
  try:
    if (workdir / 'metrics.jsonl').exists():
      raise errors.UserError(f'--workdir={workdir} already holds a metrics.jsonl; a fit '
                             'is not resumed: choose a new workdir.')
    workdir.mkdir(parents=True, exist_ok=True)
    metrics = run(config, data_lib.from_config(config))
  except errors.UserError as e:
    sys.exit(f'aae_jax.kmeans: {e}')
  (workdir / 'config.json').write_text(config.to_json_best_effort(indent=2, sort_keys=True))
  metrics_lib.MetricWriter(workdir).write(0, metrics)
  logging.info('k-means, %d clusters: test error %.4f (paper rule), %.4f (majority vote).',
               config.kmeans.num_clusters, metrics['eval/test_error'],
               metrics['eval/test_error_majority'])


if __name__ == '__main__':
  define_flags()
  app.run(main)
