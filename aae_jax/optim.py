"""One optax transform per phase, from ``config.optim.<phase>``."""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from aae_jax import errors

OPTIMIZERS = ('sgd', 'adam')


def learning_rate(opt_config, steps_per_epoch: int) -> optax.Schedule:
  """Step schedule: lr times ``decay_factor`` at each epoch in ``decay_epochs``."""
  boundaries = {int(e) * steps_per_epoch: opt_config.decay_factor
                for e in opt_config.decay_epochs}
  return optax.piecewise_constant_schedule(opt_config.lr, boundaries)


class DampedTraceState(NamedTuple):
  count: chex.Array  # steps taken: the first one starts the trace undampened
  trace: optax.Params


def dampened_trace(momentum: float, dampening: float) -> optax.GradientTransformation:
  """Momentum with dampening, as Torch7's ``optim.sgd`` and PyTorch's ``SGD`` define it:
  ``v = g`` on the first step, then ``v = momentum * v + (1 - dampening) * g``.

  Torch7 set ``dampening`` to ``momentum`` unless told otherwise, which makes ``v`` a
  moving average of the gradients: the steady step is ``lr * g``, where
  ``optax.trace`` (``dampening=0``) takes ``lr * g / (1 - momentum)``, 10x that at
  momentum 0.9. So "rate 0.01, momentum 0.9" names steps 10x apart in the two.
  """
  def init(params):
    return DampedTraceState(count=jnp.zeros([], jnp.int32),
                            trace=jax.tree.map(jnp.zeros_like, params))

  def update(updates, state, params=None):
    del params
    first = state.count == 0
    trace = jax.tree.map(
        lambda g, v: jnp.where(first, g, momentum * v + (1.0 - dampening) * g),
        updates, state.trace)
    return trace, DampedTraceState(count=optax.safe_increment(state.count), trace=trace)

  return optax.GradientTransformation(init, update)


def from_config(opt_config, steps_per_epoch: int, field: str) -> optax.GradientTransformation:
  """The transform for one phase.

  Args:
    opt_config: ``name`` ('sgd' with ``momentum`` and ``dampening``, see
      ``dampened_trace``, or 'adam' with ``b1``/``b2``),
      ``lr``, ``decay_epochs``, ``decay_factor``, ``clip`` (global-norm clipping
      when > 0).
    steps_per_epoch: turns epochs into steps for the schedule.
    field: the config path, for error messages (e.g. 'optim.recon').
  """
  lr = learning_rate(opt_config, steps_per_epoch)
  if opt_config.name == 'sgd':
    if opt_config.dampening > 0:
      tx = optax.chain(dampened_trace(opt_config.momentum, opt_config.dampening),
                       optax.scale_by_learning_rate(lr))
    else:  # optax's own, so configs without dampening keep their optimizer state
      tx = optax.sgd(lr, momentum=opt_config.momentum or None)
  elif opt_config.name == 'adam':
    tx = optax.adam(lr, b1=opt_config.b1, b2=opt_config.b2)
  else:
    raise errors.UserError(f'{field}.name={opt_config.name!r} is not an optimizer; choose '
                     f'one of {", ".join(OPTIMIZERS)}.')
  if opt_config.clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(opt_config.clip), tx)
  return tx
