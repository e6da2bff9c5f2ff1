"""Trains and evaluates one experiment.

    python -m aae_jax.main --config=configs/mnist_gaussian.py --workdir=runs/gaussian

Rerunning the same command resumes from the workdir's latest checkpoint. On
several hosts, run the same command on each with ``AAE_DISTRIBUTED=1`` (or
``--config.parallel.distributed=True``) and a workdir they all share.
"""

# First, before the imports that take seconds: a SIGTERM or Ctrl-C from now on is
# a request to stop cleanly (aae_jax/interrupts.py), not a traceback.
from aae_jax import interrupts  # pylint: disable=g-bad-import-order

interrupts.INTERRUPTS.install()

import logging as std_logging  # pylint: disable=g-import-not-at-top,wrong-import-position
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from aae_jax import config_file
from aae_jax import distributed
from aae_jax import errors
from aae_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py[:arg]).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Where metrics, figures and checkpoints go.')
flags.mark_flags_as_required(['config', 'workdir'])


def _quiet_orbax(record) -> bool:
  """Keeps Orbax's per-save INFO chatter out of the log; its warnings stay."""
  return '/orbax/' not in record.pathname or record.levelno >= std_logging.WARNING


def parse_flags(argv):
  """absl's parser, with config file and override mistakes reported in one line."""
  config = config_file.flag_value(argv)
  if config is not None:
    try:
      config_file.check(config)
    except errors.UserError as e:
      sys.exit(f'aae_jax: {e}')
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.exit(f'aae_jax: {e}')
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    # ml_collections raises these for an override of a field that does not
    # exist (with a "did you mean" hint) or of a value it cannot convert.
    message = str(e).strip('\'"').replace('\\n', ' ').replace('\\\'', "'")
    sys.exit(f'aae_jax: bad --config override: {message}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  std_logging.getLogger('absl').addFilter(_quiet_orbax)
  try:
    distributed.initialize(FLAGS.config.parallel)  # before anything else touches JAX
    logging.info('JAX %s on %s', jax.__version__, jax.devices())
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except errors.UserError as e:
    logging.error('%s', e)
    sys.exit(f'aae_jax: {e}')
  except KeyboardInterrupt:  # before the training loop took over Ctrl-C
    sys.exit('aae_jax: interrupted before training started; nothing was saved.')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
