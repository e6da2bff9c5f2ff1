"""The same AAE step written as plain JAX: the benchmark's reference for overhead.

What a careful JAX user would write for the phases of ``bench/torch_reference.py``
(same networks, N(0, init_std) weights, same phases in the same order, one optax
state per phase from ``config.optim.<phase>``), and nothing of this project's
step machinery: no per-example keyed noise (one ``jax.random.normal`` per
phase), batches drawn by ``jax.random.randint`` from the resident training set,
no non-finite guard, no gradient-norm metrics, no ``pmean`` (one device), only
the phases' losses returned. The loss terms are the project's pure functions
(``aae_jax/losses.py``): the reference differs in the step, not in the maths. ``window`` steps run in one ``lax.scan`` in one
compiled call, as the project's chunk does. With ``ema_decay`` > 0 every
parameter's moving average moves after the phases, as in the project's step.

The project's step should be at least as fast as this; the bench reports
``plain_jax_examples_per_sec`` and ``speedup_vs_plain_jax`` (``--plain_jax``).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aae_jax import data as data_lib
from aae_jax import losses
from aae_jax import optim
from aae_jax import precision as precision_lib
from bench import reference_support


def _mlp_init(key, sizes, init_std: float):
  """[(w, b)] of a ReLU MLP with layer ``sizes``; N(0, init_std^2) or LeCun normal."""
  layers = []
  for key, (d_in, d_out) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes, sizes[1:])):
    std = init_std if init_std > 0 else 1.0 / np.sqrt(d_in)
    layers.append((std * jax.random.normal(key, (d_in, d_out)), jnp.zeros(d_out)))
  return layers


def _mlp(layers, x, matmul, relu_last: bool = False):
  for i, (w, b) in enumerate(layers):
    x = matmul(x, w) + b
    if i < len(layers) - 1 or relu_last:
      x = jax.nn.relu(x)
  return x


class PlainJaxStep:
  """Times ``window`` steps of the config's AAE in plain JAX (module docstring).

  Covers the configs ``reference_support.check_supported`` accepts (as the PyTorch reference).
  """

  def __init__(self, config, dataset, window: int):
    reference_support.check_supported(config)
    m = config.model
    self.window, self.batch_size = window, config.batch_size
    self.x = jnp.asarray(dataset.train.images.reshape(len(dataset.train), -1))
    d = self.x.shape[1]
    bf16 = precision_lib.resolve(m.precision) == 'bfloat16'
    matmul = precision_lib.policy_matmul if bf16 else jnp.matmul

    k = iter(jax.random.split(jax.random.PRNGKey(config.seed), 8))
    y_z = m.decoder_input == 'y_z' and m.num_classes > 0
    params = {'trunk': _mlp_init(next(k), (d, *m.hidden), m.init_std),
              'decoder': _mlp_init(next(k), (m.code_dim + (m.num_classes if y_z else 0),
                                             *m.hidden, d), m.init_std),
              'disc': _mlp_init(next(k), (m.code_dim, *m.disc_hidden, 1), m.init_std)}
    width = m.hidden[-1]
    params['z_head'] = _mlp_init(next(k), (width, m.code_dim), m.init_std)
    if m.num_classes:
      params['y_head'] = _mlp_init(next(k), (width, m.num_classes), m.init_std)
      if m.disc_y:
        params['disc_y'] = _mlp_init(next(k), (m.num_classes, *m.disc_hidden, 1), m.init_std)
    labelled = None
    if m.num_classes and config.data.num_labels:
      _, idx = data_lib.training_labels(dataset.train.labels, config.data.num_labels,
                                        dataset.num_classes, config.seed)
      labelled = (self.x[np.asarray(idx)], jnp.asarray(dataset.train.labels[np.asarray(idx)]))

    encoder = ('trunk', 'z_head') + (('y_head',) if m.num_classes else ())
    owns = {'recon': encoder + ('decoder',), 'disc': ('disc',)}
    if 'disc_y' in params:
      owns['disc_y'] = ('disc_y',)
    owns['gen'] = encoder
    if labelled is not None:
      owns['supervised'] = encoder
    self.phases = tuple(owns)
    steps_per_epoch = len(dataset.train) // config.batch_size
    txs = {p: optim.from_config(config.optim[p], steps_per_epoch, f'optim.{p}') for p in owns}
    bernoulli = config.loss.reconstruction == 'bernoulli'
    sigmoid = m.output_activation == 'sigmoid'
    scale = 1.0 if config.loss.recon_reduction == 'sum' else 1.0 / d
    noise_std, prior_std, batch = m.input_noise_std, config.prior.std, config.batch_size
    noise = {'disc': m.disc_input_noise_std, 'disc_y': m.disc_y_input_noise_std}

    def encode(p, x, key):
      if noise_std > 0:
        x = x + noise_std * jax.random.normal(key, x.shape)
      h = _mlp(p['trunk'], x, matmul, relu_last=True)
      z = _mlp(p['z_head'], h, matmul)
      return z, (_mlp(p['y_head'], h, matmul) if 'y_head' in p else None)

    def discriminate(p, name, v, key):
      if noise[name] > 0:
        v = v + noise[name] * jax.random.normal(key, v.shape)
      return _mlp(p[name], v, matmul)[:, 0]

    def recon(p, x, key):
      z, y_logits = encode(p, x, key)
      h = jnp.concatenate([jax.nn.softmax(y_logits), z], -1) if y_z else z
      logits = _mlp(p['decoder'], h, matmul)
      if bernoulli:
        cost = losses.bernoulli_nll(logits=logits, targets=x)
      else:
        cost = losses.squared_error(predictions=jax.nn.sigmoid(logits) if sigmoid else logits,
                                    targets=x)
      return scale * jnp.mean(cost)

    def adversary(name):
      def loss(p, x, key):
        k_enc, k_real, k_noise_r, k_noise_f = jax.random.split(key, 4)
        z, y_logits = jax.lax.stop_gradient(encode(p, x, k_enc))
        if name == 'disc':
          fake, real = z, prior_std * jax.random.normal(k_real, z.shape)
        else:
          fake = jax.nn.softmax(y_logits)
          real = jax.nn.one_hot(jax.random.randint(k_real, (batch,), 0, m.num_classes),
                                m.num_classes)
        return losses.discriminator_loss(real_logits=discriminate(p, name, real, k_noise_r),
                                         fake_logits=discriminate(p, name, fake, k_noise_f))
      return loss

    def generator(p, x, key):
      k_enc, k_z, k_y = jax.random.split(key, 3)
      z, y_logits = encode(p, x, k_enc)
      loss = losses.generator_loss(fake_logits=discriminate(p, 'disc', z, k_z))
      if 'disc_y' in p:
        loss += losses.generator_loss(
            fake_logits=discriminate(p, 'disc_y', jax.nn.softmax(y_logits), k_y))
      return loss

    def supervised(p, x, key):
      rows = jax.random.randint(key, (batch,), 0, labelled[0].shape[0])
      _, y_logits = encode(p, labelled[0][rows], jax.random.fold_in(key, 1))
      return jnp.mean(losses.categorical_cross_entropy(logits=y_logits,
                                                       labels=labelled[1][rows]))

    objectives = {'recon': recon, 'disc': adversary('disc'), 'disc_y': adversary('disc_y'),
                  'gen': generator, 'supervised': supervised}
    ema_decay = config.ema_decay

    def step(carry, key):
      params, opt_state, ema = carry
      k_batch, *keys = jax.random.split(key, len(owns) + 1)
      x = self.x[jax.random.randint(k_batch, (batch,), 0, self.x.shape[0])]
      losses = []
      for (name, owned), k_phase in zip(owns.items(), keys):
        mine = {n: params[n] for n in owned}
        rest = {n: v for n, v in params.items() if n not in owned}
        loss, grads = jax.value_and_grad(
            lambda mine, name=name: objectives[name]({**rest, **mine}, x, k_phase))(mine)
        updates, opt_state[name] = txs[name].update(grads, opt_state[name], mine)
        params = {**params, **optax.apply_updates(mine, updates)}
        losses.append(loss)
      if ema_decay > 0:
        ema = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, ema, params)
      return (params, opt_state, ema), jnp.stack(losses)

    def run(carry, key):
      return jax.lax.scan(step, carry, jax.random.split(key, window))

    opt_state = {n: txs[n].init({k: params[k] for k in owned}) for n, owned in owns.items()}
    ema = jax.tree.map(jnp.copy, params) if ema_decay > 0 else {}
    self._carry = (params, opt_state, ema)
    self._run = jax.jit(run, donate_argnums=0)
    self._key = jax.random.PRNGKey(config.seed + 1)
    self._calls = 0
    self.losses = self.run_window()  # compiles

  def run_window(self) -> np.ndarray:
    """Runs ``window`` steps; returns their losses (steps x phases, ``phases`` order)."""
    self._calls += 1
    self._carry, losses = self._run(self._carry, jax.random.fold_in(self._key, self._calls))
    return np.asarray(losses)

  def time_window(self) -> float:
    """Examples per second over ``window`` steps."""
    t = time.perf_counter()
    self.run_window()
    return self.window * self.batch_size / (time.perf_counter() - t)
