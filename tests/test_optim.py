"""The phases' optimizers: SGD's momentum with dampening against its definition."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aae_jax import errors
from aae_jax import optim
from aae_jax import validation
from configs import common

HAS_TORCH = importlib.util.find_spec('torch') is not None


def _gradients(steps=6, shape=(3, 4), seed=0):
  return np.random.default_rng(seed).normal(size=(steps, *shape)).astype(np.float32)


def _run(tx, grads, x0):
  params, path = {'w': jnp.asarray(x0)}, []
  state = tx.init(params)
  for g in grads:
    updates, state = tx.update({'w': jnp.asarray(g)}, state, params)
    params = optax.apply_updates(params, updates)
    path.append(np.asarray(params['w']))
  return np.stack(path)


def _reference(grads, x0, lr, momentum, dampening):
  """Torch7's optim.sgd, written out: v = g first, then m v + (1 - d) g; x -= lr v."""
  x, v, path = x0.astype(np.float64), None, []
  for g in grads:
    v = g.astype(np.float64) if v is None else momentum * v + (1 - dampening) * g
    x = x - lr * v
    path.append(x)
  return np.stack(path)


@pytest.mark.parametrize('momentum,dampening', [(0.9, 0.9), (0.1, 0.1), (0.9, 0.5)])
def test_dampened_sgd_follows_its_definition(momentum, dampening):
  grads, x0 = _gradients(), np.ones((3, 4), np.float32)
  config = common.optimizer('sgd', 0.05, momentum=momentum, dampening=dampening)
  got = _run(optim.from_config(config, 100, 'optim.recon'), grads, x0)
  np.testing.assert_allclose(got, _reference(grads, x0, 0.05, momentum, dampening),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not HAS_TORCH, reason='PyTorch is the bench extra')
def test_dampened_sgd_equals_pytorch_sgd():
  import torch  # pylint: disable=g-import-not-at-top
  grads, x0 = _gradients(seed=1), np.zeros((3, 4), np.float32)
  w = torch.nn.Parameter(torch.tensor(x0))
  opt = torch.optim.SGD([w], lr=0.01, momentum=0.9, dampening=0.9)
  expected = []
  for g in grads:
    w.grad = torch.tensor(g)
    opt.step()
    expected.append(w.detach().numpy().copy())
  config = common.optimizer('sgd', 0.01, momentum=0.9, dampening=0.9)
  np.testing.assert_allclose(_run(optim.from_config(config, 100, 'optim.recon'), grads, x0),
                             np.stack(expected), rtol=1e-5, atol=1e-7)


def test_no_dampening_is_optax_sgd():
  """The default keeps optax's transform, its state and its steps unchanged."""
  grads, x0 = _gradients(seed=2), np.ones((3, 4), np.float32)
  config = common.optimizer('sgd', 0.05, momentum=0.9, decay_epochs=(1,))
  tx = optim.from_config(config, 3, 'optim.recon')
  reference = optax.sgd(optax.piecewise_constant_schedule(0.05, {3: 0.1}), momentum=0.9)
  np.testing.assert_array_equal(_run(tx, grads, x0), _run(reference, grads, x0))
  params = {'w': jnp.zeros(3)}
  assert (jax.tree.structure(tx.init(params)) ==
          jax.tree.structure(reference.init(params)))


def test_dampening_equal_to_momentum_makes_the_steady_step_lr_times_g():
  """Under a constant gradient the heavy ball's step tends to lr g / (1 - m), the
  dampened one's to lr g: at momentum 0.9 the two readings of a rate differ 10x."""
  grads = np.ones((200, 1), np.float32)
  x0 = np.zeros(1, np.float32)
  heavy = _run(optim.from_config(common.optimizer('sgd', 0.01, momentum=0.9), 1, 'f'),
               grads, x0)
  damped = _run(optim.from_config(
      common.optimizer('sgd', 0.01, momentum=0.9, dampening=0.9), 1, 'f'), grads, x0)
  np.testing.assert_allclose(heavy[-1] - heavy[-2], -0.1, rtol=1e-4)
  np.testing.assert_allclose(damped[-1] - damped[-2], -0.01, rtol=1e-4)


def test_dampening_is_checked():
  with pytest.raises(errors.UserError, match=r'optim.gen.dampening=0.5 applies to sgd.*adam'):
    validation.check_optimizer('optim.gen', common.optimizer('adam', dampening=0.5))
  with pytest.raises(errors.UserError, match=r'optim.gen.dampening=1.5 must be in \[0, 1\]'):
    validation.check_optimizer('optim.gen', common.optimizer('sgd', dampening=1.5))
  validation.check_optimizer('optim.gen', common.optimizer('sgd', dampening=0.9))
