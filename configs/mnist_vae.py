"""The VAE baseline of Fig 2 and Table 1: an AAE config with the adversarial
phases replaced by the VAE's KL term, on the same networks and the same prior.

    python -m aae_jax.main --config=configs/mnist_vae.py:gaussian --workdir=runs/vae_gaussian

The argument names the AAE config it switches: ``gaussian`` (configs/mnist_gaussian.py,
2-D N(0, I), paper Fig 2a), ``mog`` (configs/mnist_mog.py, mixture of 10 2-D
Gaussians, Fig 2b; its KL has no closed form and is estimated from the sampled
code) or ``parzen`` (configs/mnist_parzen.py, 8-D N(0, 25 I), Table 1);
``,smoke`` for tests. The switch is ``model.regularizer='vae'`` with a Gaussian
encoder; the reconstruction term is the Bernoulli likelihood, so the loss is
the negative ELBO (``train/neg_elbo``). Every eval reports the FID of decoded
prior samples; ``parzen`` adds their Parzen log-likelihood.
Measured (results/vae_*, 2-core CPU, 30 epochs): ``parzen`` 317.5 +- 1.7 nats, FID 25.8
(the AAE: 315.1, 11.7); FID 78.4 for ``gaussian``, 87.9 for ``mog``.
"""

import importlib

from configs import common

ARGS = dict(base=('gaussian', 'mog', 'parzen'))


def get_config(arg: str = 'gaussian'):
  a = common.parse_arg(arg, **ARGS)
  c = importlib.import_module(f'configs.mnist_{a.base}').get_config()
  c.model.regularizer = 'vae'
  c.model.encoder = 'gaussian'
  c.loss.reconstruction = 'bernoulli'
  c.evaluation.fid = True
  return common.smoke(c) if a.smoke else c
