"""Test set-up: 4 fake CPU devices (set before JAX starts) and a tiny IDX dataset."""

import os
import tempfile

# Four, not more: many fake devices on 2 cores can stall XLA's CPU collectives.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=4').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# The FID classifier cache (aae_jax/fid.py) goes to a fresh folder, never ~/.cache.
os.environ['AAE_CACHE_DIR'] = tempfile.mkdtemp(prefix='aae_cache_')
# One persistent XLA compilation cache for the session (fresh each run), shared with
# the subprocesses tests start: most tests compile the same smoke programs, and the
# cache halves the suite's time (measured on tests/test_workdir.py: 71 s -> 37 s).
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='aae_xla_'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position

from aae_jax import data  # pylint: disable=wrong-import-position

NUM_TRAIN_FILE, NUM_TEST_FILE = 600, 200


def fake_digits(rng: np.random.Generator, n: int):
  """n 28x28 images whose label is the row band a bright bar sits in."""
  labels = rng.integers(0, 10, size=n).astype(np.uint8)
  images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
  for image, label in zip(images, labels):
    top = 2 + 2 * int(label)
    image[top:top + 3, 4:24] = 255
  return images, labels


def write_idx_dataset(folder, name='mnist', seed=0):
  """Writes the four official IDX file names under ``folder/name``; returns the arrays."""
  rng = np.random.default_rng(seed)
  target = folder / name
  target.mkdir(parents=True, exist_ok=True)
  arrays = {}
  for split, n in (('train', NUM_TRAIN_FILE), ('test', NUM_TEST_FILE)):
    images, labels = fake_digits(rng, n)
    image_file, label_file = data.IDX_FILES[split]
    data.write_idx(target / image_file, images)
    data.write_idx(target / label_file, labels)
    arrays[split] = (images, labels)
  return arrays


@pytest.fixture(scope='session')
def idx_root(tmp_path_factory):
  """A folder laid out like AAE_DATA_DIR, holding a tiny generated ``mnist``."""
  root = tmp_path_factory.mktemp('idx_data')
  write_idx_dataset(root)
  return root


@pytest.fixture(scope='session')
def tiny_dataset(idx_root, tmp_path_factory):
  cache = tmp_path_factory.mktemp('tfds_cache')
  return data.load('mnist', manual_dir=str(idx_root), cache=str(cache), num_valid=100,
                   verify=False)


@pytest.fixture(scope='session')
def svhn_dataset():
  """Random data of SVHN's shape; labels cycle so each class has 40 training examples."""
  rng = np.random.default_rng(0)

  def split(n):
    images = rng.uniform(0, 1, size=(n, 32, 32, 3)).astype(np.float32)
    return data.Split(images=images, labels=(np.arange(n) % 10).astype(np.int32))

  return data.Dataset(name='svhn_cropped', train=split(400), valid=split(100),
                      test=split(100), num_classes=10)
