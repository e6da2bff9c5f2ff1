"""The scripts in examples/ run, on tiny data, through the public API they document."""

import importlib.util
import pathlib

import jax.numpy as jnp
import numpy as np

from tests import helpers

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / 'examples'


def _example(name):
  spec = importlib.util.spec_from_file_location(f'example_{name}', EXAMPLES / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_the_2d_aae_in_a_hand_written_loop_learns(tiny_dataset, capsys):
  example = _example('aae_2d')
  images = tiny_dataset.train.images
  first = example.train(images, steps=1, hidden=(32,), batch_size=50)[3]
  p_enc, encode, prior, last = example.train(images, steps=60, hidden=(32,), batch_size=50,
                                             log_every=30)
  assert last['recon'] < first['recon']  # the reconstruction phase trains
  assert all(np.isfinite(v) for v in last.values())
  codes = encode(p_enc, jnp.asarray(tiny_dataset.test.images.reshape(200, -1)))
  assert codes.shape == (200, 2) and np.all(np.isfinite(prior.log_prob(codes)))
  assert 'step 60: recon=' in capsys.readouterr().out


def test_a_new_loss_term_runs_as_one_more_phase(tiny_dataset):
  example = _example('semisup_entropy')
  config = helpers.config('mnist_semisup', '100,smoke')
  exp = example.with_entropy_phase(config, tiny_dataset)
  assert [p.name for p in exp.phases] == ['recon', 'disc', 'disc_y', 'gen', 'supervised',
                                          'entropy']
  metrics, scores = example.run(config, tiny_dataset, steps=6)
  assert metrics['train/q_entropy'].shape == (6,)
  assert np.all(metrics['train/q_entropy'] <= np.log(10) + 1e-5)
  assert 0.0 <= scores['eval/test_error'] <= 1.0
  # The term is what its docstring says: the entropy of softmax(logits).
  logits = jnp.array([[0.0, 0.0], [10.0, -10.0]])
  np.testing.assert_allclose(example.entropy(logits=logits), [np.log(2), 0.0], atol=1e-6)
