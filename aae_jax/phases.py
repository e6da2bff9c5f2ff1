"""The training phases of an adversarial autoencoder, as data.

A ``Phase`` names the parameter sub-trees it owns, an objective (see
``model.py`` for the signature) and its own optax transform. The train step
(``train.train_step``) runs an experiment's phases in order, each
differentiating only what it owns against the parameters that earlier phases of
the same step have already updated. An experiment is a tuple of phases; adding a
phase happens here, in one place: a function returning the list, registered in
``PHASE_LISTS`` under the ``model.regularizer`` that selects it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import chex
import optax

from aae_jax import errors
from aae_jax import model as model_lib
from aae_jax import optim

Objective = Callable[[dict, dict, chex.PRNGKey], tuple[chex.Array, model_lib.Aux]]


@dataclasses.dataclass(frozen=True)
class Phase:
  name: str
  owns: tuple[str, ...]
  objective: Objective
  tx: optax.GradientTransformation


def adversarial(aae: model_lib.AAE, tx: Callable[[str], Any],
                supervised: bool) -> tuple[Phase, ...]:
  """The paper's order: reconstruction; discriminator(s); generator; then, with
  ``supervised``, cross-entropy of q(y|x) on a labelled mini-batch.

  ``tx(name)`` is the optax transform of ``config.optim.<name>``.
  """
  phase_list = [
      Phase('recon', aae.autoencoder, aae.reconstruction_objective, tx('recon')),
      Phase('disc', ('discriminator',), aae.discriminator_objective, tx('disc')),
  ]
  if aae.critic_y is not None:
    phase_list.append(Phase('disc_y', (aae.critic_y.name,), aae.disc_y_objective,
                            tx('disc_y')))
  phase_list.append(Phase('gen', ('encoder',), aae.generator_objective, tx('gen')))
  if supervised:
    phase_list.append(
        Phase('supervised', ('encoder',), aae.supervised_objective, tx('supervised')))
  return tuple(phase_list)


def vae(aae: model_lib.AAE, tx: Callable[[str], Any], supervised: bool) -> tuple[Phase, ...]:
  """The VAE baseline (paper Fig 2): one phase, the negative ELBO, with
  ``config.optim.recon``; the discriminator stays unused."""
  del supervised
  return (Phase('vae', aae.autoencoder, aae.vae_objective, tx('recon')),)


def labels_only(aae: model_lib.AAE, tx: Callable[[str], Any],
                supervised: bool) -> tuple[Phase, ...]:
  """The NN baseline of the semi-supervised table: cross-entropy of q(y|x) on the
  labelled mini-batch alone, with ``config.optim.supervised``; the decoder and
  the discriminators stay unused."""
  del supervised
  return (Phase('supervised', ('encoder',), aae.supervised_objective, tx('supervised')),)


# model.regularizer -> the phase list; the check says what the list needs.
PHASE_LISTS = {'adversarial': adversarial, 'vae': vae, 'none': labels_only}


def _check(config) -> None:
  m = config.model
  if m.regularizer not in PHASE_LISTS:
    raise errors.UserError(f'model.regularizer={m.regularizer!r}: choose one of '
                           f'{", ".join(PHASE_LISTS)}.')
  if m.regularizer == 'vae' and (m.encoder != 'gaussian' or m.num_classes
                                 or m.label_condition or m.decoder_input != 'z'):
    raise errors.UserError('model.regularizer="vae" is the unsupervised VAE baseline: it '
                           'needs model.encoder="gaussian", model.num_classes=0, '
                           'model.label_condition=False and model.decoder_input="z".')
  if m.regularizer == 'none' and not (m.num_classes and config.data.num_labels):
    raise errors.UserError('model.regularizer="none" trains q(y|x) on labels alone: it '
                           'needs model.num_classes > 0 and data.num_labels != 0.')


def from_config(aae: model_lib.AAE, config, steps_per_epoch: int,
                supervised: bool = False) -> tuple[Phase, ...]:
  """The phases ``config.model.regularizer`` names, each with ``config.optim.<name>``."""
  _check(config)

  def tx(name):
    return optim.from_config(config.optim[name], steps_per_epoch, f'optim.{name}')

  return PHASE_LISTS[config.model.regularizer](aae, tx, supervised)
