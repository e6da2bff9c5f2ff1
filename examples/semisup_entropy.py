"""A new loss term on q(y|x), added to the semi-supervised AAE through its phase list.

    python examples/semisup_entropy.py --steps=1000   # MNIST, 100 labels

The term is the mean entropy of q(y|x) on the unlabelled batch (entropy
minimisation, Grandvalet & Bengio 2005): a pure function of the logits, wrapped
in an objective with the signature every phase has (``model.py``), and run as one
more ``phases.Phase`` after the paper's five. Everything else (the experiment, the
compiled data-parallel chunk, the evaluator) is the library's own, unchanged.
"""

import argparse
import importlib

import jax
import jax.numpy as jnp

from aae_jax import evaluate
from aae_jax import optim
from aae_jax import parallel
from aae_jax import phases
from aae_jax import train


def entropy(*, logits):
  """Per-example entropy of softmax(logits): (N,). The new loss term."""
  log_q = jax.nn.log_softmax(logits)
  return -jnp.sum(jnp.exp(log_q) * log_q, axis=-1)


def entropy_objective(aae, weight: float):
  """The term as a phase objective: (variables, batch, key) -> (loss, (metrics, stats))."""

  def objective(variables, batch, key):
    logits = aae.encode(variables, batch, key).y_logits
    h = jnp.mean(entropy(logits=logits))
    return weight * h, ({'train/q_entropy': h}, {})

  return objective


def with_entropy_phase(config, dataset, weight: float = 0.1):
  """The config's experiment with the entropy phase appended (owning the encoder,
  with the generator's optimizer settings), and a fresh state for the new list."""
  exp = train.build(config, dataset)
  tx = optim.from_config(config.optim.gen, exp.steps_per_epoch, 'optim.gen')
  phase_list = exp.phases + (
      phases.Phase('entropy', ('encoder',), entropy_objective(exp.aae, weight), tx),)
  state = train.create_train_state(phase_list, exp.state.variables, exp.state.rng,
                                   ema=config.ema_decay > 0)
  return exp.replace(phases=phase_list, state=state)


def run(config, dataset, steps: int, weight: float = 0.1):
  """Trains ``steps`` steps on all devices; returns the per-step metrics and the
  evaluation (test error of argmax q(y|x), mean max q)."""
  exp = with_entropy_phase(config, dataset, weight)
  dp = parallel.DataParallel()
  state, metrics = exp.chunk(dp, steps)(dp.replicate(exp.state),
                                        *exp.chunk_inputs(dp, dataset.train.images))
  evaluator = evaluate.Evaluator(exp.aae, batch_size=config.eval_batch_size,
                                 supervised=exp.supervised)
  scores, _ = evaluator.evaluate(jax.device_get(dp.unreplicate(state).eval_variables), dataset)
  return jax.device_get(metrics), scores


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=1000)
  parser.add_argument('--weight', type=float, default=0.1)
  args = parser.parse_args()
  from aae_jax import data  # pylint: disable=g-import-not-at-top
  config = importlib.import_module('configs.mnist_semisup').get_config('100')
  metrics, scores = run(config, data.from_config(config), args.steps, args.weight)
  print(f'after {args.steps} steps: q entropy {float(metrics["train/q_entropy"][-1]):.3f}, '
        f'test error {scores["eval/test_error"]:.4f}, '
        f'mean max q {scores["eval/test_mean_max_q"]:.3f}')


if __name__ == '__main__':
  main()
