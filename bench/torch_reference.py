"""The same AAE step in plain PyTorch eager: the benchmark's reference.

Same networks (sizes, N(0, init_std) weights), same batch, same phases in the
same order, one optimizer per phase (``config.optim.<phase>``):

* the unsupervised AAE: reconstruction (encoder + decoder), discriminator on z
  against the Gaussian prior, generator (the encoder fools it);
* the label-aware AAE (``model.num_classes`` > 0, e.g. ``mnist_semisup``): an
  encoder trunk with a q(y|x) head and a z head, the decoder reading
  [softmax(y_logits), z] (``model.decoder_input='y_z'``); phases
  reconstruction, discriminator on z, categorical discriminator on q(y|x)
  (``model.disc_y``), generator (the encoder fools both) and, with
  ``data.num_labels`` != 0, cross-entropy of q(y|x) on a labelled mini-batch.

With ``ema_decay`` > 0 an exponential moving average of every parameter moves
after the phases, as in the JAX step. Each phase encodes with its own input
noise, as the JAX objectives do. Written as a careful PyTorch user would: no
gradients for networks a phase does not update, ``torch.no_grad`` where only
values are needed. Learning-rate decay is left out: it does not change the cost
of a step.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from aae_jax import data as data_lib
from bench.reference_support import check_supported


def _init(layers, init_std: float) -> None:
  """N(0, init_std^2) weights and zero biases when init_std > 0, else PyTorch's default."""
  if init_std > 0:
    for layer in layers:
      if isinstance(layer, nn.Linear):
        nn.init.normal_(layer.weight, std=init_std)
        nn.init.zeros_(layer.bias)


def mlp(in_dim: int, hidden, out_dim: int, init_std: float) -> nn.Sequential:
  """ReLU hidden layers, then a linear layer to ``out_dim`` (none when 0: a trunk)."""
  layers, d = [], in_dim
  for width in hidden:
    layers += [nn.Linear(d, width), nn.ReLU()]
    d = width
  if out_dim:
    layers.append(nn.Linear(d, out_dim))
  _init(layers, init_std)
  return nn.Sequential(*layers)


class Encoder(nn.Module):
  """A deterministic encoder: z = f(x), or with ``num_classes`` a shared trunk
  and two linear heads, z and the logits of q(y|x) (as ``models.Encoder``)."""

  def __init__(self, in_dim: int, hidden, code_dim: int, num_classes: int, init_std: float):
    super().__init__()
    self.trunk = mlp(in_dim, hidden, 0 if num_classes else code_dim, init_std)
    self.y_head = self.z_head = None
    if num_classes:
      width = hidden[-1] if hidden else in_dim
      self.y_head = nn.Linear(width, num_classes)
      self.z_head = nn.Linear(width, code_dim)
      _init([self.y_head, self.z_head], init_std)

  def forward(self, x):
    """(z, y_logits), y_logits None without a q(y|x) head."""
    h = self.trunk(x)
    if self.y_head is None:
      return h, None
    return self.z_head(h), self.y_head(h)


def optimizer(cfg, params):
  if cfg.name == 'adam':
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.b1, cfg.b2))
  return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


# How a PyTorch user would run the step: eager in float32, eager under bfloat16
# autocast (matmuls in bf16, parameters and optimizer states in fp32, as the JAX
# bf16 policy), and each of them with every phase's loss under torch.compile.
MODES = ('eager', 'eager_bf16', 'compile', 'compile_bf16')


class TorchStep:
  """Times ``window`` steps of the config's AAE (see the module docstring).

  Attributes:
    phases: the phase names in the order ``step`` runs them; ``opt`` has one
      optimizer per phase.
    mode: one of ``MODES``.
  """

  def __init__(self, config, dataset, window: int, mode: str = 'eager'):
    check_supported(config)
    if mode not in MODES:
      raise ValueError(f'mode={mode!r}: choose one of {", ".join(MODES)}')
    self.mode = mode
    m = config.model
    torch.manual_seed(config.seed)
    self.x = torch.from_numpy(dataset.train.images.reshape(len(dataset.train), -1))
    d = self.x.shape[1]
    self.num_classes = m.num_classes
    self.enc = Encoder(d, m.hidden, m.code_dim, m.num_classes, m.init_std)
    self.y_z = m.decoder_input == 'y_z'
    self.dec = mlp(m.code_dim + (m.num_classes if self.y_z else 0), m.hidden, d, m.init_std)
    # The adversaries by phase name, each with the std of its input noise.
    self.adversaries = {'disc': (mlp(m.code_dim, m.disc_hidden, 1, m.init_std),
                                 m.disc_input_noise_std)}
    if m.num_classes and m.disc_y:
      self.adversaries['disc_y'] = (mlp(m.num_classes, m.disc_hidden, 1, m.init_std),
                                    m.disc_y_input_noise_std)
    self.labelled_x = self.labelled_y = None
    if m.num_classes and config.data.num_labels:
      _, idx = data_lib.training_labels(dataset.train.labels, config.data.num_labels,
                                        dataset.num_classes, config.seed)
      idx = torch.from_numpy(np.asarray(idx, np.int64))
      self.labelled_x = self.x[idx]
      self.labelled_y = torch.from_numpy(dataset.train.labels.astype(np.int64))[idx]

    enc = list(self.enc.parameters())
    self.params = {'recon': enc + list(self.dec.parameters())}
    for name, (net, _) in self.adversaries.items():
      self.params[name] = list(net.parameters())
    self.params['gen'] = enc
    if self.labelled_x is not None:
      self.params['supervised'] = enc
    self.phases = tuple(self.params)
    self.opt = {k: optimizer(config.optim[k], p) for k, p in self.params.items()}
    self.clip = {k: config.optim[k].clip for k in self.opt}

    self.ema_decay = config.ema_decay
    nets = [self.enc, self.dec] + [net for net, _ in self.adversaries.values()]
    self.all_params = [p for net in nets for p in net.parameters()]
    self.ema = [p.detach().clone() for p in self.all_params] if self.ema_decay > 0 else None

    self.bernoulli = config.loss.reconstruction == 'bernoulli'
    self.sigmoid = m.output_activation == 'sigmoid'
    self.input_noise = m.input_noise_std
    self.prior_std, self.code_dim = config.prior.std, m.code_dim
    self.batch_size, self.window = config.batch_size, window
    self._losses = {'recon': self._loss_fn(self._recon_loss),
                    'gen': self._loss_fn(self._generator_loss),
                    'supervised': self._loss_fn(self._supervised_loss)}
    for name in self.adversaries:
      self._losses[name] = self._loss_fn(
          lambda x, name=name: self._adversary_loss(name, x))

  # --- pieces ---------------------------------------------------------------

  def _update(self, name, loss) -> float:
    opt = self.opt[name]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if self.clip[name] > 0:
      nn.utils.clip_grad_norm_(self.params[name], self.clip[name])
    opt.step()
    return float(loss.detach())

  def _encode(self, x):
    """(z, y_logits) of x with the training-time input noise."""
    if self.input_noise > 0:
      x = x + self.input_noise * torch.randn_like(x)
    return self.enc(x)

  def _discriminate(self, name, v):
    net, noise_std = self.adversaries[name]
    if noise_std > 0:
      v = v + noise_std * torch.randn_like(v)
    return net(v)[:, 0]

  def _fake(self, name, x):
    """What adversary ``name`` tells from its prior: z, or softmax(y_logits)."""
    z, y_logits = self._encode(x)
    return z if name == 'disc' else F.softmax(y_logits, -1)

  def _real(self, name):
    """Prior samples for adversary ``name``: Gaussian, or one-hots of a uniform categorical."""
    if name == 'disc':
      return self.prior_std * torch.randn(self.batch_size, self.code_dim)
    classes = torch.randint(self.num_classes, (self.batch_size,))
    return F.one_hot(classes, self.num_classes).to(self.x.dtype)

  # --- phases ---------------------------------------------------------------

  def _autocast(self):
    if self.mode.endswith('_bf16'):
      return torch.autocast('cpu', dtype=torch.bfloat16)
    return contextlib.nullcontext()

  def _loss_fn(self, fn):
    """``fn`` as this mode runs it: compiled once per phase, or as it is."""
    return torch.compile(fn) if self.mode.startswith('compile') else fn

  def _recon_loss(self, x):
    z, y_logits = self._encode(x)
    h = torch.cat([F.softmax(y_logits, -1), z], -1) if self.y_z else z
    logits = self.dec(h)
    if self.bernoulli:
      recon = F.binary_cross_entropy_with_logits(logits, x, reduction='none').sum(1).mean()
    else:
      pred = torch.sigmoid(logits) if self.sigmoid else logits
      recon = (pred - x).pow(2).sum(1).mean()
    return recon

  def _adversary_loss(self, name, x):
    with torch.no_grad():
      fake = self._fake(name, x)
    return (F.softplus(-self._discriminate(name, self._real(name))).mean()
            + F.softplus(self._discriminate(name, fake)).mean())

  def _generator_loss(self, x):
    z, y_logits = self._encode(x)
    loss = F.softplus(-self._discriminate('disc', z)).mean()
    if 'disc_y' in self.adversaries:
      loss = loss + F.softplus(-self._discriminate('disc_y', F.softmax(y_logits, -1))).mean()
    return loss

  def _supervised_loss(self, x, labels):
    _, y_logits = self._encode(x)
    return F.cross_entropy(y_logits, labels)

  def _run(self, name, *args) -> float:
    with self._autocast():
      loss = self._losses[name](*args)
    return self._update(name, loss.float())

  def _generator(self, x) -> float:
    for net, _ in self.adversaries.values():
      net.requires_grad_(False)
    out = self._run('gen', x)
    for net, _ in self.adversaries.values():
      net.requires_grad_(True)
    return out

  def _supervised(self) -> float:
    rows = torch.randint(len(self.labelled_x), (self.batch_size,))
    return self._run('supervised', self.labelled_x[rows], self.labelled_y[rows])

  def step(self) -> tuple[float, ...]:
    """One step: every phase in ``phases`` order; returns their losses (recon first)."""
    x = self.x[torch.randint(len(self.x), (self.batch_size,))]
    out = [self._run('recon', x)]
    out += [self._run(name, x) for name in self.adversaries]
    out.append(self._generator(x))
    if self.labelled_x is not None:
      out.append(self._supervised())
    if self.ema is not None:
      with torch.no_grad():  # ema += (1 - decay) * (params - ema), in one pass
        torch._foreach_lerp_(  # pylint: disable=protected-access
            self.ema, self.all_params, 1.0 - self.ema_decay)
    return tuple(out)

  def labelled_cross_entropy(self) -> float:
    """Mean cross-entropy of q(y|x) on the labelled rows, without input noise."""
    with torch.no_grad():
      _, y_logits = self.enc(self.labelled_x)
      return float(F.cross_entropy(y_logits, self.labelled_y))

  def time_window(self) -> float:
    """Examples per second over ``window`` steps."""
    t = time.perf_counter()
    for _ in range(self.window):
      self.step()
    return self.window * self.batch_size / (time.perf_counter() - t)


def losses_decrease(config, dataset, steps: int = 20) -> bool:
  """A sanity check that the reference trains: reconstruction falls over ``steps``."""
  ref = TorchStep(config, dataset, window=1)
  first = ref.step()[0]
  for _ in range(steps):
    last = ref.step()[0]
  return bool(np.isfinite(last) and last < first)


def matmul_gflops(n: int, precision: str = 'float32', reps: int = 10) -> float:
  """Median GFLOP/s of PyTorch's n x n x n product in ``precision`` (bf16 inputs
  and output, as oneDNN runs them): the other half of the machine's measured peak."""
  dtype = torch.bfloat16 if precision == 'bfloat16' else torch.float32
  a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
  a @ b  # pylint: disable=pointless-statement
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    a @ b  # pylint: disable=pointless-statement
    times.append(time.perf_counter() - t)
  return 2 * n**3 / sorted(times)[len(times) // 2] / 1e9
