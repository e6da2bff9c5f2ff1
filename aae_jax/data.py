"""Datasets by their TFDS name, kept whole on the device(s).

Two ways in:

* Offline. When ``config.data.manual_dir`` or the environment variable
  ``AAE_DATA_DIR`` names a folder holding ``<tfds name>/`` with the dataset's
  official IDX files (``mnist``, ``fashion_mnist``), a small TFDS builder that
  needs neither network nor TensorFlow reads them with gzip + NumPy and writes
  ``array_record`` under the cache folder (``config.data.cache_dir``, else
  ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``). Later runs reuse it.
* Online. Without a local folder, ``tfds.data_source`` downloads and prepares the
  dataset (``svhn_cropped`` goes this way).

Splits: ``train`` is the training file without its last ``num_valid`` examples,
``valid`` those last examples, ``test`` the test file. The test split is only for
reported numbers, never for model selection.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import pathlib
import socket
import time
import urllib.parse

from absl import logging
import numpy as np

from aae_jax import errors

DATA_DIR_ENV = 'AAE_DATA_DIR'

# TFDS names whose official distribution is the four IDX files below.
IDX_DATASETS = ('mnist', 'fashion_mnist')
IDX_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
_IDX_IMAGE_MAGIC, _IDX_LABEL_MAGIC = 2051, 2049
_IDX_BUILDER_DIR = 'aae_jax_idx'  # keeps our builds apart from TFDS's own


class DataError(errors.UserError):
  """A dataset that cannot be found, read or trusted; the message says the fix."""


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # (N, H, W, C) float32 in [0, 1]
  labels: np.ndarray  # (N,) int32

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  train: Split
  valid: Split
  test: Split
  num_classes: int
  # Set by ``standardize``: images are (raw - pixel_mean) / pixel_std.
  pixel_mean: np.ndarray | None = None
  pixel_std: np.ndarray | None = None

  @property
  def image_shape(self) -> tuple[int, ...]:
    return tuple(self.train.images.shape[1:])

  def to_pixels(self, images: np.ndarray) -> np.ndarray:
    """Images (N, H, W, C) back in [0, 1] pixel space, for figures."""
    images = images.reshape((-1,) + self.image_shape)
    if self.pixel_mean is None:
      return images
    return images * self.pixel_std + self.pixel_mean


# ----------------------------------------------------------------------------
# IDX files.


EXPECTED_FILES = tuple(f for pair in IDX_FILES.values() for f in pair)


def read_idx(path: pathlib.Path, magic: int) -> np.ndarray:
  """Reads one gzip-compressed IDX file, checking its header against its size."""
  try:
    with gzip.open(path, 'rb') as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise DataError(f'{path}: not a readable gzip IDX file ({e}). Replace it with '
                    f'the official file (see {DATA_DIR_ENV}).') from e
  if len(raw) < 8 or int.from_bytes(raw[:4], 'big') != magic:
    raise DataError(f'{path}: wrong IDX header (expected magic number {magic}).')
  ndim = raw[3]
  dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
  offset = 4 + 4 * ndim
  if len(raw) - offset != int(np.prod(dims)):
    raise DataError(f'{path}: header says {dims} but holds {len(raw) - offset} '
                    'bytes of data; the file is truncated or corrupt.')
  return np.frombuffer(raw, np.uint8, offset=offset).reshape(dims)


def write_idx(path: pathlib.Path, array: np.ndarray) -> None:
  """Writes a uint8 array as a gzip-compressed IDX file (used to make test data)."""
  array = np.asarray(array, np.uint8)
  magic = _IDX_IMAGE_MAGIC if array.ndim == 3 else _IDX_LABEL_MAGIC
  header = magic.to_bytes(4, 'big') + b''.join(
      d.to_bytes(4, 'big') for d in array.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + array.tobytes())


def _sha256(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      h.update(chunk)
  return h.hexdigest()


def verify_checksums(name: str, folder: pathlib.Path) -> None:
  """Checks the files against the SHA-256 that TFDS registers for ``name``."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  registered = {info.filename: info.checksum
                for info in tfds.builder_cls(name).url_infos.values()}
  for filename in EXPECTED_FILES:
    want = registered.get(filename)
    if want is None:
      continue
    got = _sha256(folder / filename)
    if got != want:
      raise DataError(
          f'{folder / filename}: SHA-256 {got} is not the official {want} that '
          f'TFDS registers for {name}. Put the official file in {folder} (the '
          f'folder {DATA_DIR_ENV} points to), or set '
          '--config.data.verify_checksums=False for a dataset of your own.')


# ----------------------------------------------------------------------------
# A TF-free TFDS builder for the IDX family.


def _idx_builder(name: str, data_dir: str):
  """Returns a TFDS builder that prepares ``name`` from the IDX files."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  class IdxBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """The official IDX files, as array_record, with each example's file index."""
    VERSION = tfds.core.Version('1.0.0')
    MANUAL_DOWNLOAD_INSTRUCTIONS = f'Put the four IDX files in {DATA_DIR_ENV}/{name}/.'

    def _info(self):
      # Tensor, not Image: encoding PNGs would need TensorFlow.
      return tfds.core.DatasetInfo(
          builder=self,
          features=tfds.features.FeaturesDict({
              'image': tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
              'label': tfds.features.ClassLabel(num_classes=10),
              'index': np.int64,  # position in the file: TFDS shuffles records
          }))

    def _split_generators(self, dl_manager):
      folder = pathlib.Path(dl_manager.manual_dir)
      return {split: self._generate_examples(folder / images, folder / labels)
              for split, (images, labels) in IDX_FILES.items()}

    def _generate_examples(self, images_path, labels_path):
      images = read_idx(images_path, _IDX_IMAGE_MAGIC)
      labels = read_idx(labels_path, _IDX_LABEL_MAGIC)
      if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DataError(f'{images_path}: {images.shape} images for '
                        f'{len(labels)} labels; expected (N, 28, 28) and N labels.')
      for i, (image, label) in enumerate(zip(images, labels)):
        yield i, {'image': image[..., None], 'label': int(label), 'index': i}

  IdxBuilder.name = name
  return IdxBuilder(data_dir=data_dir, file_format='array_record')


def _read_all(source) -> dict[str, np.ndarray]:
  records = source.__getitems__(list(range(len(source))))
  return {k: np.stack([r[k] for r in records]) for k in records[0]}


def local_folder(manual_dir: str = '') -> pathlib.Path | None:
  folder = manual_dir or os.environ.get(DATA_DIR_ENV, '')
  return pathlib.Path(folder).expanduser() if folder else None


def cache_dir(configured: str = '') -> str:
  return os.path.expanduser(configured or os.environ.get('TFDS_DATA_DIR', '')
                            or '~/tensorflow_datasets')


def _load_idx(name: str, folder: pathlib.Path, cache: str, check: bool):
  source_dir = folder / name
  missing = [f for f in EXPECTED_FILES if not (source_dir / f).is_file()]
  if missing:
    raise DataError(
        f'{DATA_DIR_ENV} (or config.data.manual_dir) is {str(folder)!r}, but '
        f'{source_dir} lacks {", ".join(missing)}. It must hold {name}/ with the '
        f'official files {", ".join(EXPECTED_FILES)}; unset {DATA_DIR_ENV} '
        'to let TFDS download instead.')
  for attempt in range(2):
    builder = _idx_builder(name, os.path.join(cache, _IDX_BUILDER_DIR))
    if not builder.is_prepared():
      _prepare_idx(builder, name, source_dir, check)
      # Read what is there now: another process may have finished it first.
      builder = _idx_builder(name, os.path.join(cache, _IDX_BUILDER_DIR))
    try:
      return _read_prepared(builder), builder.info.features['label'].num_classes
    except Exception as e:  # pylint: disable=broad-except
      # The prepared copy is ours, derived from the IDX files: set it aside (never
      # deleted) and prepare it again, once.
      folder = pathlib.Path(builder.data_dir)
      if attempt or not folder.is_dir():
        raise DataError(f'The prepared copy of {name} in {folder} cannot be read '
                        f'({type(e).__name__}: {str(e)[:200]}), even after preparing it '
                        'again; delete that folder and rerun.') from e
      aside = folder.with_name(f'{folder.name}.damaged.{time.strftime("%Y%m%d-%H%M%S")}')
      try:
        os.replace(folder, aside)
      except OSError as move_error:
        raise DataError(f'The prepared copy of {name} in {folder} is damaged '
                        f'({type(e).__name__}) and cannot be moved aside '
                        f'({move_error.strerror}); delete that folder and rerun.') from e
      logging.warning('The prepared copy of %s in %s could not be read (%s: %s); moved it '
                      'to %s and preparing it again from %s.', name, folder,
                      type(e).__name__, str(e)[:200], aside, source_dir)
  raise AssertionError('unreachable')


def _prepare_idx(builder, name: str, source_dir: pathlib.Path, check: bool) -> None:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if check:
    verify_checksums(name, source_dir)
  logging.info('Preparing %s from %s into %s (once).', name, source_dir, builder.data_dir)
  tfds.disable_progress_bar()
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(source_dir), try_download_gcs=False))
  except FileExistsError:
    # Two runs started together on a new cache: both prepared it and the other
    # moved its copy into place first. Its copy is read (and checked) instead.
    logging.info('Another process prepared %s in %s meanwhile; using its copy.',
                 name, builder.data_dir)
  except PermissionError as e:
    raise DataError(f'Cannot write the prepared {name} to {builder.data_dir} '
                    f'({e.strerror}): set TFDS_DATA_DIR (or config.data.cache_dir) to a '
                    'writable folder.') from e


def _read_prepared(builder) -> dict[str, dict[str, np.ndarray]]:
  """Every split of a prepared IDX build in file order; raises if it is incomplete."""
  out = {}
  for split in IDX_FILES:
    arrays = _read_all(builder.as_data_source(split=split))
    index = arrays.pop('index')
    expected = builder.info.splits[split].num_examples
    if len(index) != expected or not np.array_equal(np.sort(index), np.arange(expected)):
      raise ValueError(f'split {split} holds {len(index)} records, not the '
                       f'{expected} examples of the file in order')
    order = np.argsort(index)
    out[split] = {k: v[order] for k, v in arrays.items()}
  return out


def check_reachable(name: str, timeout: float = 15.0) -> None:
  """Fails fast, naming the offline route, when ``name``'s download host is unreachable."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    urls = list(tfds.builder_cls(name).url_infos or {})
  except Exception:  # pylint: disable=broad-except
    return  # a builder without registered URLs: let TFDS try
  for url in urls[:1]:
    parsed = urllib.parse.urlparse(url)
    host, port = parsed.hostname, parsed.port or (80 if parsed.scheme == 'http' else 443)
    try:
      socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
      offline = (f'set {DATA_DIR_ENV} to a folder holding {name}/ with the official files '
                 f'{", ".join(EXPECTED_FILES)}' if name in IDX_DATASETS else 'run where the network reaches it once '
                 '(the prepared copy is cached in TFDS_DATA_DIR), or choose '
                 f'data.name among {", ".join(IDX_DATASETS)} with {DATA_DIR_ENV}')
      raise DataError(f'Cannot reach {host} to download {name} ({e}): {offline}.') from e


def _load_tfds(name: str, cache: str):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  logging.info('No %s set: loading %s through TFDS (downloads if needed).',
               DATA_DIR_ENV, name)
  builder = tfds.builder(name, data_dir=cache)
  if not builder.is_prepared():
    check_reachable(name)
  builder.download_and_prepare(file_format='array_record')
  raw = {split: {k: v for k, v in _read_all(builder.as_data_source(split)).items()
                 if k in ('image', 'label')}
         for split in ('train', 'test')}
  return raw, builder.info.features['label'].num_classes


def load(name: str, *, manual_dir: str = '', cache: str = '', num_valid: int = 10_000,
         verify: bool = True) -> Dataset:
  """Loads a dataset as float32 images in [0, 1] with train/valid/test splits.

  Args:
    name: the TFDS name, for example ``mnist``.
    manual_dir: folder holding ``<name>/`` with the official files; falls back to
      ``$AAE_DATA_DIR``; without either, TFDS downloads.
    cache: where prepared datasets live (see ``cache_dir``).
    num_valid: how many examples at the end of the training file form ``valid``.
    verify: check the official SHA-256 of local files before preparing them.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if name not in IDX_DATASETS and name not in tfds.list_builders(with_community_datasets=False):
    raise DataError(f'data.name={name!r} is not a TFDS dataset; use a TFDS name such as '
                    f'{", ".join(IDX_DATASETS)} or svhn_cropped.')
  folder = local_folder(manual_dir)
  if folder is not None:
    if name not in IDX_DATASETS:
      raise DataError(
          f'data.name={name!r} cannot be prepared offline from '
          f'{DATA_DIR_ENV}={str(folder)!r}: only {", ".join(IDX_DATASETS)} are. '
          f'Unset {DATA_DIR_ENV} to let TFDS download {name}.')
    raw, num_classes = _load_idx(name, folder, cache_dir(cache), verify)
  else:
    raw, num_classes = _load_tfds(name, cache_dir(cache))
  num_train_file = len(raw['train']['label'])
  if not 0 < num_valid < num_train_file:
    raise DataError(f'data.num_valid={num_valid} must be between 1 and '
                    f'{num_train_file - 1} (the training file has '
                    f'{num_train_file} examples).')

  def split(arrays, lo, hi):
    return Split(images=arrays['image'][lo:hi].astype(np.float32) / 255.0,
                 labels=arrays['label'][lo:hi].astype(np.int32))

  cut = num_train_file - num_valid
  return Dataset(name=name,
                 train=split(raw['train'], 0, cut),
                 valid=split(raw['train'], cut, None),
                 test=split(raw['test'], 0, None),
                 num_classes=num_classes)


def labelled_subset(labels: np.ndarray, num_labels: int, num_classes: int,
                    seed: int) -> np.ndarray:
  """Sorted indices of a class-balanced labelled subset of a split, drawn with ``seed``.

  Draw it from the training split only, never from validation or test.
  """
  if num_labels <= 0 or num_labels % num_classes:
    raise DataError(f'data.num_labels={num_labels} must be a positive multiple of the '
                    f'{num_classes} classes (the labelled set is class-balanced), '
                    'such as 100 or 1000.')
  if num_labels > len(labels):
    raise DataError(f'data.num_labels={num_labels} is more than the {len(labels)} '
                    'examples of the training split; ask for fewer labels.')
  per_class = num_labels // num_classes
  rng = np.random.default_rng(seed)
  chosen = []
  for c in range(num_classes):
    members = np.flatnonzero(labels == c)
    if len(members) < per_class:
      raise DataError(f'data.num_labels={num_labels} needs {per_class} examples of '
                      f'class {c}, but the training split has {len(members)}; ask for '
                      'fewer labels.')
    chosen.append(rng.choice(members, per_class, replace=False))
  return np.sort(np.concatenate(chosen))


def training_labels(labels: np.ndarray, num_labels: int, num_classes: int,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
  """The labels training may see, and the rows they belong to.

  Args:
    labels: the training split's labels.
    num_labels: 0 for none, -1 for all, else a class-balanced subset (see
      ``labelled_subset``) drawn with ``seed``.

  Returns:
    ``labels`` with every row outside the labelled set replaced by -1, and the
    sorted indices of the labelled rows.
  """
  if num_labels == -1:
    return labels.astype(np.int32), np.arange(len(labels))
  if num_labels == 0:
    return np.full(len(labels), -1, np.int32), np.zeros((0,), np.int64)
  idx = labelled_subset(labels, num_labels, num_classes, seed)
  masked = np.full(len(labels), -1, np.int32)
  masked[idx] = labels[idx]
  return masked, idx


def standardize(dataset: Dataset) -> Dataset:
  """Per-dimension standardisation with the training split's mean and std.

  The result keeps ``pixel_mean`` / ``pixel_std`` so figures can map back.
  """
  mean = dataset.train.images.mean(axis=0)
  std = dataset.train.images.std(axis=0) + 1e-3  # constant pixels stay finite

  def apply(split):
    return Split(images=((split.images - mean) / std).astype(np.float32), labels=split.labels)

  return dataclasses.replace(dataset, train=apply(dataset.train), valid=apply(dataset.valid),
                             test=apply(dataset.test), pixel_mean=mean, pixel_std=std)


def exclude_class(dataset: Dataset, label: int) -> Dataset:
  """The dataset without class ``label`` in train and valid; test keeps every class
  (anomaly detection: the left-out class is the anomaly)."""
  if not 0 <= label < dataset.num_classes:
    raise DataError(f'data.exclude_class={label}: use a class of {dataset.name} '
                    f'(0 to {dataset.num_classes - 1}), or -1 to keep every class.')

  def keep(split):
    rows = split.labels != label
    return Split(images=split.images[rows], labels=split.labels[rows])

  return dataclasses.replace(dataset, train=keep(dataset.train), valid=keep(dataset.valid))


def from_config(config) -> Dataset:
  d = config.data
  return load(d.name, manual_dir=d.manual_dir, cache=d.cache_dir,
              num_valid=d.num_valid, verify=d.verify_checksums)
