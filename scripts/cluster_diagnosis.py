"""Why a clustering run's q(y|x) is (not) one-hot, and how much its decoder reads y.

    python scripts/cluster_diagnosis.py --config=configs/mnist_cluster.py:16 --workdir=runs/cl16_s0

``--config`` and its ``--config.<field>=<value>`` overrides are those the run was
started with (its ``command.txt``); ``--workdir`` is its workdir. Loads the newest
checkpoint's training parameters and prints, on the first ``--num_valid`` validation
images:

* the mean max q(y|x), the logits' std and how many images each category takes;
* the categorical discriminator's mean output on q(y|x) ("D fake") and on one-hot
  samples ("D real");
* the gradients with respect to the logits of the generator's loss on q(y|x),
  -log D_y(softmax(logits)), and of the reconstruction loss: their norms, their
  cosine, and how often descending each raises the top logit (makes q sharper);

then on the first ``--num_test`` test images the reconstruction NLL with q(y|x),
with y or z shuffled across images, and with z = 0 (docs/clustering.md).
"""

import pathlib
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from aae_jax import checkpoint
from aae_jax import data
from aae_jax import errors
from aae_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'The run\'s config (configs/mnist_cluster.py:N).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'The run\'s workdir, holding checkpoints/.')
flags.DEFINE_integer('num_valid', 1000, 'Validation images for the discriminator diagnosis.')
flags.DEFINE_integer('num_test', 2000, 'Test images for the shuffle test.')
flags.mark_flags_as_required(['config', 'workdir'])


def restore(config, workdir):
  """(step, training variables, AAE, dataset) of the run's newest checkpoint."""
  directory = pathlib.Path(workdir) / 'checkpoints'
  if not directory.is_dir():
    raise app.UsageError(f'{directory}: no such folder; give --workdir a run\'s workdir.')
  dataset = data.from_config(config)
  exp = train.build(config, dataset)
  step, state = checkpoint.Checkpointer(directory).restore_latest(exp.state)
  if not step:
    raise app.UsageError(f'{directory} holds no checkpoint.')
  return step, state.variables, exp.aae, dataset


def as_batch(split, n: int, step: int):
  x = jnp.asarray(split.images[:n].reshape(n, -1))
  return {'x': x, 'label': jnp.asarray(split.labels[:n]), 'position': jnp.arange(n),
          'step': jnp.asarray(step, jnp.int32)}


def discriminator_diagnosis(aae, variables, batch, key):
  k_enc, k_fake, k_real = jax.random.split(key, 3)
  n, x = len(batch['x']), batch['x']
  params = variables['params']
  code = aae.encode(variables, batch, k_enc, train=False)
  q = jax.nn.softmax(code.y_logits)
  num_classes = q.shape[1]
  print('mean max q', float(q.max(1).mean()), 'logit std', float(code.y_logits.std()))
  print('usage', np.bincount(np.asarray(q.argmax(1)), minlength=num_classes))

  def d_y(y, k):
    return aae.critic_y.logits(params, y, batch, k)

  real = jax.nn.one_hot(jnp.arange(n) % num_classes, num_classes)
  print('D fake mean', float(jax.nn.sigmoid(d_y(q, k_fake)).mean()),
        'D real', float(jax.nn.sigmoid(d_y(real, k_real)).mean()))

  def gen(logits):  # the generator's loss on q(y|x): -log D_y(softmax(logits))
    return jnp.mean(jax.nn.softplus(-d_y(jax.nn.softmax(logits), k_fake)))

  def rec(logits):
    h = aae.decoder_input.combine(params, code.z, jax.nn.softmax(logits))
    return jnp.mean(aae.reconstruction(aae.decode_logits(variables, h), x))

  gg, gr = jax.grad(gen)(code.y_logits), jax.grad(rec)(code.y_logits)
  norm = lambda g: jnp.linalg.norm(g, axis=1)
  print('|grad gen|', float(jnp.linalg.norm(gg)), '|grad rec|', float(jnp.linalg.norm(gr)))
  print('cos(gen, rec) per example mean', float(jnp.mean(jnp.sum(gg * gr, 1)
                                                          / (norm(gg) * norm(gr) + 1e-12))))
  # Gradients with respect to logits sum to zero over the categories, so a positive
  # component of the descent direction raises that logit relative to their mean.
  top = (jnp.arange(n), q.argmax(1))
  print('frac examples where -grad_gen raises top logit relative to mean',
        float(jnp.mean(-gg[top] > 0)))
  print('frac where -grad_rec raises top logit', float(jnp.mean(-gr[top] > 0)))


def shuffle_test(aae, variables, batch):
  code = aae.encode(variables, batch, jax.random.PRNGKey(0), train=False)
  q = jax.nn.softmax(code.y_logits)
  perm = jax.random.permutation(jax.random.PRNGKey(1), len(batch['x']))

  def nll(y, z):
    h = aae.decoder_input.combine(variables['params'], z, y)
    return float(jnp.mean(aae.reconstruction(aae.decode_logits(variables, h), batch['x'])))

  print('recon with q', nll(q, code.z), 'with shuffled y', nll(q[perm], code.z),
        'with shuffled z', nll(q, code.z[perm]), 'z=0', nll(q, jnp.zeros_like(code.z)))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    step, variables, aae, dataset = restore(FLAGS.config, FLAGS.workdir)
  except errors.UserError as e:
    sys.exit(f'cluster_diagnosis: {e}')
  if not aae.num_classes or aae.critic_y is None:
    raise app.UsageError('The config has no q(y|x) head with a categorical discriminator.')
  print(f'# {FLAGS.workdir}, checkpoint step {step}')
  print(f'## categorical discriminator, first {FLAGS.num_valid} validation images')
  discriminator_diagnosis(aae, variables, as_batch(dataset.valid, FLAGS.num_valid, step),
                          jax.random.PRNGKey(0))
  print(f'## shuffle test, first {FLAGS.num_test} test images')
  shuffle_test(aae, variables, as_batch(dataset.test, FLAGS.num_test, step))


if __name__ == '__main__':
  app.run(main)
