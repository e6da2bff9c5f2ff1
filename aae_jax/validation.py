"""Every number of a training config checked before anything runs.

Each problem is one ``UserError`` line naming the field and what it must be, so a
bad value never trains (diverging, or failing at the first eval and losing the
steps since the last checkpoint). Choices that name things (a prior, an encoder
kind, an optimizer) are checked where they are resolved (``priors``, ``models``,
``optim``, ``model``), also before the first step.
"""

from __future__ import annotations

import math
import numbers

from aae_jax import errors


def _fail(field: str, value, must: str):
  raise errors.UserError(f'{field}={value!r} must be {must}.')


def _number(field, value):
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
    _fail(field, value, 'a finite number')
  return value


def _int(field, value, low: int, must: str):
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
    _fail(field, value, must)


def _positive(field, value):
  if _number(field, value) <= 0:
    _fail(field, value, '> 0')


def _non_negative(field, value):
  if _number(field, value) < 0:
    _fail(field, value, '>= 0')


def _fraction(field, value, closed: bool = False):
  v = _number(field, value)
  if not (0 <= v <= 1 if closed else 0 <= v < 1):
    _fail(field, value, f'in [0, 1{"]" if closed else ")"}')


def check_optimizer(field: str, o) -> None:
  _positive(f'{field}.lr', o.lr)
  _fraction(f'{field}.momentum', o.momentum)
  _fraction(f'{field}.dampening', o.dampening, closed=True)
  if o.dampening and o.name != 'sgd':
    raise errors.UserError(
        f'{field}.dampening={o.dampening!r} applies to sgd\'s momentum only, and '
        f'{field}.name is {o.name!r}: set {field}.dampening=0 or {field}.name=sgd.')
  _fraction(f'{field}.b1', o.b1)
  _fraction(f'{field}.b2', o.b2)
  _positive(f'{field}.decay_factor', o.decay_factor)
  _non_negative(f'{field}.clip', o.clip)
  for epoch in o.decay_epochs:
    _int(f'{field}.decay_epochs', epoch, 0, 'a tuple of epochs >= 0, such as (15, 25)')


def check(config) -> None:
  """Raises UserError for the first value of ``config`` that cannot train."""
  _int('seed', config.seed, 0, 'an integer >= 0')
  _int('batch_size', config.batch_size, 1, 'a positive number of examples')
  for field in ('num_train_steps', 'eval_every', 'checkpoint_every', 'log_every',
                'steps_per_dispatch'):
    _int(field, config[field], 1, 'a positive number of steps')
  _int('checkpoints_to_keep', config.checkpoints_to_keep, 1,
       'at least 1: how many of the newest checkpoints stay on disk')
  _int('eval_batch_size', config.eval_batch_size, 1, 'a positive number of examples')
  _fraction('ema_decay', config.ema_decay)
  _int('profile_steps', config.get('profile_steps', 0), 0, '0 (off) or a number of steps')
  _int('data.num_valid', config.data.num_valid, 1, 'a positive number of examples')
  _int('data.exclude_class', config.data.exclude_class, -1, '-1 (none) or a class index')
  m = config.model
  _int('model.code_dim', m.code_dim, 1, 'a positive dimension')
  _int('model.noise_dim', m.noise_dim, 0, '>= 0')
  _int('model.num_classes', m.num_classes, 0, '0 (no q(y|x) head) or the number of categories')
  for field in ('input_noise_std', 'disc_input_noise_std', 'disc_y_input_noise_std',
                'init_std', 'heads_init_std'):
    _non_negative(f'model.{field}', m[field])
  _fraction('model.input_dropout', m.input_dropout)
  for name, o in config.optim.items():
    check_optimizer(f'optim.{name}', o)
  _non_negative('loss.head_threshold', config.loss.head_threshold)
  _non_negative('loss.head_weight', config.loss.head_weight)
  e = config.evaluation
  _int('evaluation.num_samples', e.num_samples, 1, 'a positive number of samples')
  _int('evaluation.parzen_valid', e.parzen_valid, 1, 'a positive number of images')
  _int('evaluation.fid_epochs', e.fid_epochs, 1, 'a positive number of epochs')
  _non_negative('evaluation.noise_std', e.noise_std)
  _fraction('evaluation.salt_pepper', e.salt_pepper, closed=True)
