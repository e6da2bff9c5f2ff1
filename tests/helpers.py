"""Shared test helpers."""

import jax

from aae_jax import parallel
from aae_jax import train
from configs import mnist_gaussian


def smoke_config(**overrides):
  config = mnist_gaussian.get_config('smoke')
  config.data.verify_checksums = False
  for key, value in overrides.items():
    target = config
    *path, leaf = key.split('.')
    for p in path:
      target = target[p]
    target[leaf] = value
  return config


def run_chunks(exp, dataset, backend, num_devices, chunk_lengths, batch_size):
  """Runs chunks of steps from exp.state; returns the host state and all metrics."""
  dp = parallel.DataParallel(backend, jax.devices()[:num_devices])
  images = dp.replicate(dataset.train.images.reshape(len(dataset.train), -1))
  labels = dp.replicate(dataset.train.labels)
  state = dp.replicate(jax.device_get(exp.state))  # a copy: the chunk donates it
  metrics = []
  for n in chunk_lengths:
    fn = dp.compile(train.make_train_chunk(exp.phases, batch_size=batch_size,
                                           num_devices=num_devices, num_steps=n))
    state, m = fn(state, images, labels)
    metrics.append(jax.device_get(m))  # waiting each chunk keeps CPU collectives healthy
  return jax.device_get(dp.unreplicate(state)), metrics
