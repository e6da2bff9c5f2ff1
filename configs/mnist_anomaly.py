"""Anomaly detection: an AAE trained on MNIST without one digit (the argument,
default 9); held-out-digit test images are the anomalies.

    python -m aae_jax.main --config=configs/mnist_anomaly.py:9 --workdir=runs/anomaly_9

``data.exclude_class`` removes the digit from train and valid; the test split
keeps every digit. Each test image is scored by its reconstruction loss and by
the prior's negative log-density of its code; ``eval/anomaly_auroc_recon`` and
``eval/anomaly_auroc_prior`` are the AUROCs of held-out-digit against normal test
images. The model is the Table 1 AAE (8-D code, Gaussian prior of std 5,
Euclidean cost) trained for 10 epochs. ``,smoke`` for tests.
Measured (results/mnist_anomaly_0 and _9, 2-core CPU): digit 0: AUROC 0.952 by
reconstruction loss, 0.552 by -log p(z); digit 9: 0.651 and 0.339.
"""

from configs import common
from configs import mnist_parzen


ARGS = dict(digit=('9',) + tuple(str(d) for d in range(9)))


def get_config(arg: str = '9'):
  a = common.parse_arg(arg, **ARGS)
  c = mnist_parzen.get_config()
  c.data.exclude_class = int(a.digit)
  c.evaluation.parzen = c.evaluation.fid = False
  c.num_train_steps = 4_500  # 10 epochs of the ~45,000 normal training images
  c.eval_every = c.checkpoint_every = 1_500
  return common.smoke(c) if a.smoke else c
