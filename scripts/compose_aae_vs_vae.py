"""Puts the AAE and VAE runs' figures side by side (paper Fig 2): same networks, same prior.

    python scripts/compose_aae_vs_vae.py [--results results] [--out results/aae_vs_vae]

Reads the ``figures/`` of the logged runs mnist_gaussian, vae_gaussian, mnist_mog and
vae_mog under ``--results`` (each with its command.txt) and writes
latent_aae_vs_vae.png and grid_aae_vs_vae.png to ``--out``.
"""

import argparse
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.image as mpimg  # pylint: disable=g-import-not-at-top,wrong-import-position
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

RESULTS = pathlib.Path(__file__).resolve().parents[1] / 'results'
PANELS = [('mnist_gaussian', 'AAE, Gaussian prior'), ('vae_gaussian', 'VAE, Gaussian prior'),
          ('mnist_mog', 'AAE, mixture of 10 Gaussians'), ('vae_mog', 'VAE, mixture of 10 Gaussians')]
FIGURES = {'latent_test': 'latent_aae_vs_vae.png', 'prior_grid': 'grid_aae_vs_vae.png'}


def compose(results: pathlib.Path, figure: str, out: pathlib.Path) -> None:
  """A 2 x 2 grid of the four runs' ``figures/<figure>.png``, saved as ``out``."""
  fig, axes = plt.subplots(2, 2, figsize=(16, 8))
  for ax, (run, title) in zip(axes.flat, PANELS):
    ax.imshow(mpimg.imread(results / run / 'figures' / f'{figure}.png'))
    ax.set_title(f'{title} (results/{run})')
    ax.axis('off')
  fig.tight_layout()
  fig.savefig(out, dpi=80)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--results', type=pathlib.Path, default=RESULTS,
                      help='folder holding the four runs (default: the repository\'s results/)')
  parser.add_argument('--out', type=pathlib.Path, default=None,
                      help='where the two figures go (default: <results>/aae_vs_vae)')
  args = parser.parse_args()
  out = args.out or args.results / 'aae_vs_vae'
  out.mkdir(parents=True, exist_ok=True)
  for figure, name in FIGURES.items():
    compose(args.results, figure, out / name)
    print(out / name)


if __name__ == '__main__':
  main()
