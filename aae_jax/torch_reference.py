"""The same AAE step in plain PyTorch eager: the benchmark's reference.

Same networks (sizes, N(0, init_std) weights), same batch, same phases in the
same order (reconstruction on encoder+decoder, discriminator, generator on the
encoder), one optimizer per phase. Written as a careful PyTorch user would:
no gradients for networks a phase does not update.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from aae_jax import errors


def mlp(in_dim: int, hidden, out_dim: int, init_std: float) -> nn.Sequential:
  layers, d = [], in_dim
  for width in hidden:
    layers += [nn.Linear(d, width), nn.ReLU()]
    d = width
  layers.append(nn.Linear(d, out_dim))
  if init_std > 0:
    for layer in layers:
      if isinstance(layer, nn.Linear):
        nn.init.normal_(layer.weight, std=init_std)
        nn.init.zeros_(layer.bias)
  return nn.Sequential(*layers)


def optimizer(cfg, params):
  if cfg.name == 'adam':
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.b1, cfg.b2))
  return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


class TorchStep:
  """Times ``window`` steps of the unsupervised AAE with a Gaussian prior."""

  def __init__(self, config, dataset, window: int):
    m = config.model
    if m.encoder != 'deterministic' or config.prior.name != 'gaussian':
      raise errors.UserError('The PyTorch reference covers the deterministic encoder with a '
                             'Gaussian prior (model.encoder, prior.name).')
    torch.manual_seed(config.seed)
    self.x = torch.from_numpy(dataset.train.images.reshape(len(dataset.train), -1))
    d = self.x.shape[1]
    self.enc = mlp(d, m.hidden, m.code_dim, m.init_std)
    self.dec = mlp(m.code_dim, m.hidden, d, m.init_std)
    self.disc = mlp(m.code_dim, m.disc_hidden, 1, m.init_std)
    self.opt = {
        'recon': optimizer(config.optim.recon,
                           list(self.enc.parameters()) + list(self.dec.parameters())),
        'disc': optimizer(config.optim.disc, self.disc.parameters()),
        'gen': optimizer(config.optim.gen, self.enc.parameters()),
    }
    self.clip = {k: config.optim[k].clip for k in self.opt}
    self.bernoulli = config.loss.reconstruction == 'bernoulli'
    self.sigmoid = m.output_activation == 'sigmoid'
    self.input_noise, self.disc_noise = m.input_noise_std, m.disc_input_noise_std
    self.prior_std, self.code_dim = config.prior.std, m.code_dim
    self.batch_size, self.window = config.batch_size, window

  def _update(self, name, loss, params):
    opt = self.opt[name]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if self.clip[name] > 0:
      nn.utils.clip_grad_norm_(params, self.clip[name])
    opt.step()

  def _encode(self, x):
    if self.input_noise > 0:
      x = x + self.input_noise * torch.randn_like(x)
    return self.enc(x)

  def _discriminate(self, z):
    if self.disc_noise > 0:
      z = z + self.disc_noise * torch.randn_like(z)
    return self.disc(z)[:, 0]

  def step(self):
    x = self.x[torch.randint(len(self.x), (self.batch_size,))]
    logits = self.dec(self._encode(x))
    if self.bernoulli:
      recon = F.binary_cross_entropy_with_logits(logits, x, reduction='none').sum(1).mean()
    else:
      pred = torch.sigmoid(logits) if self.sigmoid else logits
      recon = (pred - x).pow(2).sum(1).mean()
    self._update('recon', recon, list(self.enc.parameters()) + list(self.dec.parameters()))

    with torch.no_grad():
      fake = self._encode(x)
    real = self.prior_std * torch.randn(self.batch_size, self.code_dim)
    disc = (F.softplus(-self._discriminate(real)).mean()
            + F.softplus(self._discriminate(fake)).mean())
    self._update('disc', disc, list(self.disc.parameters()))

    self.disc.requires_grad_(False)
    gen = F.softplus(-self._discriminate(self._encode(x))).mean()
    self._update('gen', gen, list(self.enc.parameters()))
    self.disc.requires_grad_(True)
    return float(recon.detach()), float(disc.detach()), float(gen.detach())

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
