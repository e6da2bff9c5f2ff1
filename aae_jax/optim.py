"""One optax transform per phase, from ``config.optim.<phase>``."""

from __future__ import annotations

import optax

from aae_jax import errors

OPTIMIZERS = ('sgd', 'adam')


def learning_rate(opt_config, steps_per_epoch: int) -> optax.Schedule:
  """Step schedule: lr times ``decay_factor`` at each epoch in ``decay_epochs``."""
  boundaries = {int(e) * steps_per_epoch: opt_config.decay_factor
                for e in opt_config.decay_epochs}
  return optax.piecewise_constant_schedule(opt_config.lr, boundaries)


def from_config(opt_config, steps_per_epoch: int, field: str) -> optax.GradientTransformation:
  """The transform for one phase.

  Args:
    opt_config: ``name`` ('sgd' with ``momentum``, or 'adam' with ``b1``/``b2``),
      ``lr``, ``decay_epochs``, ``decay_factor``, ``clip`` (global-norm clipping
      when > 0).
    steps_per_epoch: turns epochs into steps for the schedule.
    field: the config path, for error messages (e.g. 'optim.recon').
  """
  lr = learning_rate(opt_config, steps_per_epoch)
  if opt_config.name == 'sgd':
    tx = optax.sgd(lr, momentum=opt_config.momentum or None)
  elif opt_config.name == 'adam':
    tx = optax.adam(lr, b1=opt_config.b1, b2=opt_config.b2)
  else:
    raise errors.UserError(f'{field}.name={opt_config.name!r} is not an optimizer; choose '
                     f'one of {", ".join(OPTIMIZERS)}.')
  if opt_config.clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(opt_config.clip), tx)
  return tx
