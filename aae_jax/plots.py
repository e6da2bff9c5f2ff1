"""Figures written as PNG: latent scatters, image grids and an experiment's figures."""

from __future__ import annotations

import os
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import numpy as np


def latent_scatter(codes: np.ndarray, labels: np.ndarray, path: str | os.PathLike,
                   title: str = '', prior_samples: np.ndarray | None = None,
                   marks: np.ndarray | None = None) -> None:
  """Codes coloured by label (first two dimensions), next to prior samples if given.

  ``marks`` (K, 2), e.g. cluster heads, are drawn as numbered crosses.
  """
  panels = 2 if prior_samples is not None else 1
  fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 5), squeeze=False)
  ax = axes[0, 0]
  points = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap='tab10', s=2,
                      vmin=-0.5, vmax=9.5, rasterized=True)
  fig.colorbar(points, ax=ax, ticks=range(10))
  ax.set_title(title + ('' if codes.shape[1] == 2 else f' (dims 0, 1 of {codes.shape[1]})'))
  if marks is not None:
    ax.scatter(marks[:, 0], marks[:, 1], marker='x', c='black', s=40)
    for i, (mx, my) in enumerate(marks[:, :2]):
      ax.annotate(str(i), (mx, my), fontsize=7)
  if prior_samples is not None:
    ax2 = axes[0, 1]
    ax2.scatter(prior_samples[:, 0], prior_samples[:, 1], s=2, c='gray', rasterized=True)
    ax2.set_title('samples of the prior')
    # Wide enough for the prior's bulk and for codes that stray outside it.
    code_lims = np.percentile(codes[:, :2], [0.5, 99.5], axis=0)
    prior_lims = np.percentile(prior_samples[:, :2], [0.1, 99.9], axis=0)
    lims = np.stack([np.minimum(code_lims[0], prior_lims[0]),
                     np.maximum(code_lims[1], prior_lims[1])])
    for a in (ax, ax2):
      a.set_xlim(lims[0, 0], lims[1, 0])
      a.set_ylim(lims[0, 1], lims[1, 1])
      a.set_aspect('equal')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def image_grid(images: np.ndarray, rows: int, path: str | os.PathLike, title: str = '') -> None:
  """Tiles images (N, H, W, C) into ``rows`` rows; values are clipped to [0, 1]."""
  n, h, w, c = images.shape
  cols = -(-n // rows)
  canvas = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.float32)
  for i, image in enumerate(np.clip(images, 0, 1)):
    r, k = divmod(i, cols)
    canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + k * (w + 1):1 + k * (w + 1) + w] = image
  fig = plt.figure(figsize=(max(3.0, cols * 0.45), max(3.0, rows * 0.45) + 0.4))
  plt.imshow(canvas[..., 0] if c == 1 else canvas, cmap='gray' if c == 1 else None,
             interpolation='nearest')
  plt.axis('off')
  if title:
    plt.title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def percentile_grid(prior_samples: np.ndarray, n: int) -> np.ndarray:
  """An n x n grid of codes at the prior's marginal percentiles of dims 0 and 1.

  Percentiles (k + 0.5) / n of each marginal, estimated from ``prior_samples``;
  further dimensions sit at their median. Rows run down dim 1, columns along dim 0.
  """
  q = (np.arange(n) + 0.5) / n * 100
  grid_x = np.percentile(prior_samples[:, 0], q)
  grid_y = np.percentile(prior_samples[:, 1], q)[::-1]
  rest = np.median(prior_samples[:, 2:], axis=0)
  return np.array([[x, y, *rest] for y in grid_y for x in grid_x], np.float32)


# ----------------------------------------------------------------------------
# An experiment's figures.


def write_figures(evaluator, variables, dataset, test_out: dict, directory: pathlib.Path,
                  step: int) -> list[pathlib.Path]:
  """The figures of an experiment, from the test outputs the evaluation computed.

  ``evaluator`` is the run's ``evaluate.Evaluator`` (it decodes). Always: test
  codes by label (next to prior samples; with cluster heads, the 2-D
  representation q(y|x) W_c + z and the heads) and reconstructions. A decoder
  reading z alone adds the decoded prior-percentile grid and prior samples; one
  that also reads a class adds ``style.png`` (rows: one style z each, columns:
  classes); an unsupervised q(y|x) adds ``clusters.png`` (each row: the
  cluster's head, decoded with style zero, then its most confident test members).
  Returns the paths written.
  """
  directory.mkdir(parents=True, exist_ok=True)
  aae = evaluator.aae
  decoder_input = aae.decoder_input
  samples = np.asarray(aae.prior.sample(jax.random.PRNGKey(step), 20_000))
  images = dataset.to_pixels
  labels = dataset.test.labels
  marks = decoder_input.marks(variables['params'])
  if marks is not None:
    latent_scatter(test_out['shown'], labels, directory / 'latent_test.png',
                   f'test codes q(y|x) W_c + z at step {step}', marks=np.asarray(marks))
  else:
    latent_scatter(test_out['z'], labels, directory / 'latent_test.png',
                   f'test codes at step {step}', prior_samples=samples[:len(labels)])
  num_classes = decoder_input.num_classes
  if not num_classes:
    n = 20
    grid = evaluator.decode(variables, percentile_grid(samples, n))
    image_grid(images(grid), n, directory / 'prior_grid.png',
               'decoded grid of prior percentiles')
    image_grid(images(evaluator.decode(variables, samples[:100])), 10,
               directory / 'samples.png', 'decoded prior samples')
  else:
    styles = np.repeat(samples[:10], num_classes, axis=0)
    y = np.tile(np.eye(num_classes, dtype=np.float32), (10, 1))
    image_grid(images(evaluator.decode(variables, styles, y)), 10, directory / 'style.png',
               'rows: one style z from the prior; columns: classes')
  if 'cluster_labels' in test_out:
    _cluster_figure(evaluator, variables, test_out, dataset, directory / 'clusters.png')
  originals = dataset.test.images[:50]
  y = decoder_input.class_vector(test_out.get('y_probs'), labels)
  recon = evaluator.decode(variables, test_out['z'][:50], None if y is None else y[:50])
  pairs = np.stack([images(originals), images(recon)], axis=1)
  image_grid(pairs.reshape((-1,) + pairs.shape[2:]), 10, directory / 'reconstructions.png',
             'test images (odd columns) and reconstructions')
  names = ('latent_test', 'prior_grid', 'samples', 'style', 'clusters', 'reconstructions')
  return [directory / f'{n}.png' for n in names if (directory / f'{n}.png').exists()]


def _cluster_figure(evaluator, variables, test_out, dataset, path, members: int = 15):
  images = dataset.to_pixels
  probs = test_out['y_probs']
  k = probs.shape[1]
  zeros = np.zeros((k, evaluator.aae.encoder.code_dim), np.float32)
  heads = images(evaluator.decode(variables, zeros, np.eye(k, dtype=np.float32)))
  assigned = probs.argmax(axis=1)
  rows = []
  for i in range(k):
    mine = np.flatnonzero(assigned == i)
    mine = mine[np.argsort(-probs[mine, i])][:members]
    row = np.ones((members + 1,) + heads.shape[1:], np.float32)
    row[0] = heads[i]
    row[1:1 + len(mine)] = images(dataset.test.images[mine])
    rows.append(row)
  image_grid(np.concatenate(rows), k, path,
             'cluster heads (style 0, first column) and their most confident '
             'test members; cluster labels: ' +
             ' '.join(str(int(c)) for c in test_out['cluster_labels']))
