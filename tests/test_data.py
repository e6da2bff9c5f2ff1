"""Offline TFDS preparation from IDX files, splits, caching and clear errors."""

import gzip
import os
import pathlib
import socket

import numpy as np
import pytest
import tensorflow_datasets as tfds

from aae_jax import data
from tests import conftest

SHARED_MNIST = pathlib.Path(os.environ.get(data.DATA_DIR_ENV) or
                            pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data')


def test_splits_keep_the_file_order(idx_root, tiny_dataset):
  train_images, train_labels = [data.read_idx(idx_root / 'mnist' / f, magic)
                                for f, magic in zip(data.IDX_FILES['train'], (2051, 2049))]
  assert (len(tiny_dataset.train), len(tiny_dataset.valid), len(tiny_dataset.test)) == (
      conftest.NUM_TRAIN_FILE - 100, 100, conftest.NUM_TEST_FILE)
  np.testing.assert_array_equal(tiny_dataset.train.labels, train_labels[:-100])
  np.testing.assert_array_equal(tiny_dataset.valid.labels, train_labels[-100:])
  np.testing.assert_allclose(tiny_dataset.valid.images[..., 0], train_images[-100:] / 255.0)
  assert tiny_dataset.train.images.dtype == np.float32
  assert tiny_dataset.image_shape == (28, 28, 1) and tiny_dataset.num_classes == 10


def test_prepared_once_then_reused(idx_root, tmp_path, monkeypatch):
  cache = str(tmp_path / 'cache')
  first = data.load('mnist', manual_dir=str(idx_root), cache=cache, num_valid=100, verify=False)

  def fail(*args, **kwargs):
    raise AssertionError('prepared again')

  monkeypatch.setattr(tfds.core.GeneratorBasedBuilder, 'download_and_prepare', fail)
  monkeypatch.setenv(data.DATA_DIR_ENV, str(idx_root))  # the variable works like the field
  again = data.load('mnist', cache=cache, num_valid=100, verify=False)
  np.testing.assert_array_equal(first.test.labels, again.test.labels)


def test_two_runs_preparing_a_new_cache_at_once_both_load(idx_root, tmp_path, monkeypatch):
  # Two runs start together on a new cache: both find it unprepared and generate
  # it; the one that finishes second finds the other's copy in place
  # (FileExistsError from TFDS) and must read that copy instead of failing.
  cache = str(tmp_path / 'cache')
  generate = tfds.core.GeneratorBasedBuilder._download_and_prepare
  other = {}

  def other_run_finishes_first(self, *args, **kwargs):
    if not other:  # the other run, from start to end, while this one generates
      monkeypatch.setattr(tfds.core.GeneratorBasedBuilder, '_download_and_prepare', generate)
      other['ds'] = data.load('mnist', manual_dir=str(idx_root), cache=cache,
                              num_valid=100, verify=False)
    return generate(self, *args, **kwargs)

  monkeypatch.setattr(tfds.core.GeneratorBasedBuilder, '_download_and_prepare',
                      other_run_finishes_first)
  ds = data.load('mnist', manual_dir=str(idx_root), cache=cache, num_valid=100, verify=False)
  np.testing.assert_array_equal(ds.train.images, other['ds'].train.images)
  np.testing.assert_array_equal(ds.test.labels, other['ds'].test.labels)


def test_fashion_mnist_goes_through_the_same_path(tmp_path):
  arrays = conftest.write_idx_dataset(tmp_path / 'src', name='fashion_mnist', seed=1)
  ds = data.load('fashion_mnist', manual_dir=str(tmp_path / 'src'), cache=str(tmp_path / 'c'),
                 num_valid=50, verify=False)
  np.testing.assert_array_equal(ds.test.labels, arrays['test'][1])


def test_missing_folder_names_the_variable_and_the_files(tmp_path):
  with pytest.raises(data.DataError) as err:
    data.load('mnist', manual_dir=str(tmp_path), cache=str(tmp_path / 'c'))
  message = str(err.value)
  assert data.DATA_DIR_ENV in message and 'train-images-idx3-ubyte.gz' in message
  assert 't10k-labels-idx1-ubyte.gz' in message


def test_checksums_are_checked(idx_root, tmp_path):
  with pytest.raises(data.DataError, match='SHA-256 .* is not the official'):
    data.load('mnist', manual_dir=str(idx_root), cache=str(tmp_path), verify=True)


def test_truncated_files_are_reported(tmp_path):
  path = tmp_path / 'images.gz'
  data.write_idx(path, np.zeros((5, 28, 28), np.uint8))
  with gzip.open(path, 'rb') as f:
    content = f.read()
  with gzip.open(path, 'wb') as f:
    f.write(content[:-10])  # fewer pixels than the header promises
  with pytest.raises(data.DataError, match='truncated or corrupt'):
    data.read_idx(path, 2051)
  compressed = path.read_bytes()
  path.write_bytes(compressed[:len(compressed) // 2])  # a download cut short
  with pytest.raises(data.DataError, match='not a readable gzip IDX file'):
    data.read_idx(path, 2051)


def test_offline_path_only_for_idx_datasets(tmp_path):
  with pytest.raises(data.DataError, match='svhn_cropped.*cannot be prepared offline'):
    data.load('svhn_cropped', manual_dir=str(tmp_path))


@pytest.mark.skipif(not (SHARED_MNIST / 'mnist').is_dir(), reason='no official MNIST files')
def test_official_mnist(tmp_path):
  ds = data.load('mnist', manual_dir=str(SHARED_MNIST), cache=str(tmp_path), verify=True)
  assert (len(ds.train), len(ds.valid), len(ds.test)) == (50_000, 10_000, 10_000)
  counts = np.bincount(np.concatenate([ds.train.labels, ds.valid.labels]), minlength=10)
  # The label histogram of the official training file (shared/data/README.md).
  np.testing.assert_array_equal(
      counts, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
  assert abs(float(ds.test.images.mean()) * 255 - 33.7912) < 1e-3
  assert ds.train.labels[:5].tolist() == [5, 0, 4, 1, 9]  # file order, not TFDS's


def _prepared_files(cache):
  return sorted(p for p in (cache / data._IDX_BUILDER_DIR).rglob('*array_record*') if p.is_file())


@pytest.mark.parametrize('damage', ['truncate', 'delete'])
def test_a_damaged_prepared_copy_is_set_aside_and_prepared_again(damage, idx_root, tmp_path):
  cache = tmp_path / 'cache'
  first = data.load('mnist', manual_dir=str(idx_root), cache=str(cache), num_valid=100,
                    verify=False)
  victim = _prepared_files(cache)[0]
  if damage == 'truncate':
    victim.write_bytes(victim.read_bytes()[:victim.stat().st_size // 3])
  else:
    victim.unlink()
  again = data.load('mnist', manual_dir=str(idx_root), cache=str(cache), num_valid=100,
                    verify=False)
  np.testing.assert_array_equal(first.train.images, again.train.images)
  np.testing.assert_array_equal(first.test.labels, again.test.labels)
  aside = list((cache / data._IDX_BUILDER_DIR / 'mnist').glob('*.damaged.*'))
  assert len(aside) == 1  # kept, not deleted


def test_an_unwritable_cache_is_one_line(idx_root, tmp_path, monkeypatch):
  def read_only(*args, **kwargs):  # what a read-only TFDS_DATA_DIR raises (as root, chmod can't)
    raise PermissionError(13, 'Permission denied')

  monkeypatch.setattr(tfds.core.GeneratorBasedBuilder, 'download_and_prepare', read_only)
  with pytest.raises(data.DataError, match='Cannot write the prepared mnist to .*TFDS_DATA_DIR'):
    data.load('mnist', manual_dir=str(idx_root), cache=str(tmp_path / 'cache'), num_valid=100,
              verify=False)


def test_an_unreachable_download_fails_fast_naming_the_offline_route(tmp_path, monkeypatch):
  def offline(*args, **kwargs):
    raise OSError(101, 'Network is unreachable')

  monkeypatch.setattr(socket, 'create_connection', offline)
  monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
  with pytest.raises(data.DataError, match=f'Cannot reach storage.googleapis.com.*'
                                           f'{data.DATA_DIR_ENV}'):
    data.load('mnist', cache=str(tmp_path))
  with pytest.raises(data.DataError, match='Cannot reach ufldl.stanford.edu'):
    data.load('svhn_cropped', cache=str(tmp_path))
