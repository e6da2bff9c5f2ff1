"""Label information in the adversarial regularisation: swiss roll (paper Fig 4).

    python -m aae_jax.main --config=configs/mnist_labeled_swissroll.py --workdir=runs/labeled_swissroll

As ``configs/mnist_labeled_mog.py`` with the swiss-roll prior: labelled codes go
to their class's tenth of the roll. ``,smoke`` for tests.
"""

from configs import common
from configs import mnist_labeled_mog


ARGS = {}


def get_config(arg: str = ''):
  a = common.parse_arg(arg, **ARGS)
  return mnist_labeled_mog.labeled(common.base(), 'swiss_roll', a.smoke)
