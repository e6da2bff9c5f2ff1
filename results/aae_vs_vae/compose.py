"""Puts the AAE and VAE runs' figures side by side (paper Fig 2): same networks, same prior.

    python results/aae_vs_vae/compose.py

Reads the ``figures/`` of results/mnist_gaussian, results/vae_gaussian, results/mnist_mog
and results/vae_mog (each a logged run with its command.txt) and writes
latent_aae_vs_vae.png and grid_aae_vs_vae.png next to this script.
"""

import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.image as mpimg  # pylint: disable=g-import-not-at-top,wrong-import-position
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE.parent
PANELS = [('mnist_gaussian', 'AAE, Gaussian prior'), ('vae_gaussian', 'VAE, Gaussian prior'),
          ('mnist_mog', 'AAE, mixture of 10 Gaussians'), ('vae_mog', 'VAE, mixture of 10 Gaussians')]


def compose(figure: str, out: str) -> None:
  fig, axes = plt.subplots(2, 2, figsize=(16, 8))
  for ax, (run, title) in zip(axes.flat, PANELS):
    ax.imshow(mpimg.imread(RESULTS / run / 'figures' / f'{figure}.png'))
    ax.set_title(f'{title} (results/{run})')
    ax.axis('off')
  fig.tight_layout()
  fig.savefig(HERE / out, dpi=80)


if __name__ == '__main__':
  compose('latent_test', 'latent_aae_vs_vae.png')
  compose('prior_grid', 'grid_aae_vs_vae.png')
