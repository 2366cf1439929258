"""Datasets: the paper's (SPEC §3: Yin-Yang toy, MNIST via idx or tfds),
npz files, and image folders of the user's own data (unknown labels = -1).

Every loader returns a validated `Dataset` of numpy arrays: float32 inputs and
int32 labels. Every user-facing data problem (missing file, bad header, md5
mismatch, bad labels, NaN, empty split) raises `DataError` with a one-line
message naming the file or field and what to do about it.

This module is numpy only; tensorflow and tensorflow-datasets are imported
lazily by `load_tfds`, because importing them takes seconds.
"""

import dataclasses
import gzip
import hashlib
import os
import pathlib
import zipfile
import zlib
from typing import Optional, Union

import numpy as np

from bass_jax.errors import DataError

PathLike = Union[str, os.PathLike]

# The official MNIST file names; tfds' mnist, fashion_mnist and kmnist builders
# expect the same names in their manual dir.
IDX_FILES = {
    'x_train': 'train-images-idx3-ubyte.gz',
    'y_train': 'train-labels-idx1-ubyte.gz',
    'x_test': 't10k-images-idx3-ubyte.gz',
    'y_test': 't10k-labels-idx1-ubyte.gz',
}

# md5 of the official MNIST files (shared/data/README.md).
MNIST_MD5 = {
    'train-images-idx3-ubyte.gz': 'f68b3c2dcbeaaa9fbdd348bbdeb94873',
    'train-labels-idx1-ubyte.gz': 'd53e105ee54ea40749a09fcbcd1e9432',
    't10k-images-idx3-ubyte.gz': '9fb629c4189551a2d022fa330f9573f3',
    't10k-labels-idx1-ubyte.gz': 'ec29112dd5afa0611ce80d1b7f02629c',
}

# Datasets shipped as the four MNIST-layout idx files: 28x28 grey images,
# 10 classes, 60000 train and 10000 test examples.
IDX_DATASETS = ('mnist', 'fashion_mnist', 'kmnist')
_IDX_IMAGE_SHAPE = (28, 28)
_IDX_NUM_CLASSES = 10
_IDX_COUNTS = {'train': 60000, 'test': 10000}

SOURCES = ('auto', 'idx', 'tfds', 'npz', 'folder')
# How a run's initial labelled set is drawn from the pool's known labels
# (`initial_indices`): per class, uniformly whatever the classes, or the
# samples nearest k-means centres of the inputs (no label needed to pick).
INITIAL_DRAWS = ('balanced', 'random', 'representative')
NPZ_KEYS = ('x_train', 'y_train', 'x_test', 'y_test')

# IDX type byte -> big-endian numpy dtype (LeCun's format description).
_IDX_DTYPES = {
    0x08: np.dtype('u1'),
    0x09: np.dtype('i1'),
    0x0B: np.dtype('>i2'),
    0x0C: np.dtype('>i4'),
    0x0D: np.dtype('>f4'),
    0x0E: np.dtype('>f8'),
}
_GZIP_MAGIC = b'\x1f\x8b'


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A classification dataset held as whole numpy arrays.

  `eq=False`: comparing array fields with `==` is ambiguous, so instances
  compare (and hash) by identity.

  Attributes:
    x_train: [N, ...] float32 pool inputs (images: [N, H, W, C_in]).
    y_train: [N] int32 pool labels in [0, num_classes), or -1 where the
      label is unknown (a pool to be labelled by a human oracle).
    x_test: [M, ...] float32 test inputs, same trailing shape as x_train.
    y_test: [M] int32 test labels in [0, num_classes).
    num_classes: number of classes C.
    name: short name for logs ('mnist', 'yinyang', an npz file's stem).
    class_names: [C] class names where known (image folders), else ().
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  name: str
  class_names: tuple[str, ...] = ()


# ----------------------------------------------------------------------------
# Validation.


def _check_split(name: str, split: str, x: np.ndarray, y: np.ndarray,
                 num_classes: int, unknown_ok: bool = False) -> None:
  """Raises DataError unless x/y of one split are well-formed.

  `unknown_ok` also admits the label -1 (unknown), as in a pool that a human
  oracle labels.

  Args:
    x: [N, ...] float32 (ndim >= 2), finite.
    y: [N] int32 in [0, num_classes) (or -1 with `unknown_ok`).
  """
  where = f'dataset {name!r}: x_{split}'
  if not isinstance(x, np.ndarray) or x.dtype != np.float32:
    raise DataError(f'{where} must be a float32 numpy array, got '
                    f'{type(x).__name__} {getattr(x, "dtype", "")}; convert '
                    'it with np.asarray(x, np.float32)')
  if x.ndim < 2:
    raise DataError(f'{where} has shape {x.shape}, expected [N, features...]; '
                    'reshape 1-D features to [N, 1]')
  if x.shape[0] == 0:
    raise DataError(f'{where} is empty; every split needs at least one '
                    'example')
  if not np.all(np.isfinite(x)):
    raise DataError(f'{where} has {int(np.sum(~np.isfinite(x)))} NaN/Inf '
                    'values; clean the data')
  where = f'dataset {name!r}: y_{split}'
  if not isinstance(y, np.ndarray) or y.dtype != np.int32:
    raise DataError(f'{where} must be an int32 numpy array, got '
                    f'{type(y).__name__} {getattr(y, "dtype", "")}; convert '
                    'it with np.asarray(y, np.int32)')
  if y.shape != x.shape[:1]:
    raise DataError(f'{where} has shape {y.shape} but x_{split} has '
                    f'{x.shape[0]} examples; expected ({x.shape[0]},)')
  lowest = -1 if unknown_ok else 0
  if y.min() < lowest or y.max() >= num_classes:
    unknown = ' or -1 (unknown)' if unknown_ok else ''
    raise DataError(f'{where} has labels in [{y.min()}, {y.max()}], expected '
                    f'[0, {num_classes}){unknown}; fix the labels or '
                    'num_classes')


def validate_dataset(ds: Dataset) -> Dataset:
  """Checks a Dataset's invariants and returns it unchanged.

  Args:
    ds: the dataset to check.

  Returns:
    `ds` itself.

  Raises:
    DataError: if a split is empty, inputs are not finite float32 with equal
      trailing shapes in train and test, labels are not int32 [N] in
      [0, num_classes) (y_train may also hold -1, unknown), or
      num_classes / name / class_names are malformed.
  """
  if not isinstance(ds.name, str) or not ds.name:
    raise DataError(f'dataset name {ds.name!r} must be a non-empty string')
  if (isinstance(ds.num_classes, bool) or
      not isinstance(ds.num_classes, (int, np.integer)) or
      ds.num_classes < 1):
    raise DataError(f'dataset {ds.name!r}: num_classes={ds.num_classes!r} '
                    'must be a positive int')
  _check_split(ds.name, 'train', ds.x_train, ds.y_train, ds.num_classes,
               unknown_ok=True)
  _check_split(ds.name, 'test', ds.x_test, ds.y_test, ds.num_classes)
  if ds.x_train.shape[1:] != ds.x_test.shape[1:]:
    raise DataError(f'dataset {ds.name!r}: x_train examples have shape '
                    f'{ds.x_train.shape[1:]} but x_test examples have '
                    f'{ds.x_test.shape[1:]}; they must match')
  if ds.class_names and (
      len(ds.class_names) != ds.num_classes or
      not all(isinstance(c, str) for c in ds.class_names)):
    raise DataError(f'dataset {ds.name!r}: class_names {ds.class_names!r} '
                    f'must be {ds.num_classes} strings, one per class, or ()')
  return ds


def _scaled(x: np.ndarray, scale: float) -> np.ndarray:
  """x as float32 times scale; x: [N, ...] any real dtype."""
  if not (np.isfinite(scale) and scale > 0):
    raise DataError(f'scale={scale!r} must be a finite number > 0')
  return x.astype(np.float32) * np.float32(scale)


# ----------------------------------------------------------------------------
# Yin-Yang toy.


def yinyang_samples(num_per_class: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """One draw of the Yin-Yang toy data (SPEC §3, paper eqs. 10-12).

  Per class: r ~ N(1, 0.25^2), phi = pi * (0.5 + 0.33 * N(0, 1));
  class 0 = (-0.33, 0.1) + r (cos phi, -sin phi),
  class 1 = (0.33, -0.1) + r (cos phi, sin phi).
  Draw order: r and phi of class 0, then r and phi of class 1.

  Args:
    num_per_class: samples per class n.
    rng: the generator to draw from (advanced in place).

  Returns:
    x: [2n, 2] float32 points, class 0 first.
    y: [2n] int32 labels, n zeros then n ones.
  """
  points = []
  for center, sign in (((-0.33, 0.1), -1.0), ((0.33, -0.1), 1.0)):
    r = rng.normal(1.0, 0.25, num_per_class)
    phi = np.pi * (0.5 + 0.33 * rng.normal(0.0, 1.0, num_per_class))
    offset = np.stack([np.cos(phi), sign * np.sin(phi)], axis=1)
    points.append(np.asarray(center) + r[:, None] * offset)
  x = np.concatenate(points).astype(np.float32)
  y = np.repeat(np.arange(2, dtype=np.int32), num_per_class)
  return x, y


def load_yinyang(num_per_class: int = 500, seed: int = 0) -> Dataset:
  """The Yin-Yang toy: train and test are two independent draws.

  Args:
    num_per_class: samples per class in each split.
    seed: seed of np.random.default_rng; train is drawn first, then test.

  Returns:
    Dataset with x [2n, 2] float32, y [2n] int32, num_classes 2.
  """
  if num_per_class < 1:
    raise DataError(f'yinyang num_per_class={num_per_class} must be >= 1')
  rng = np.random.default_rng(seed)
  x_train, y_train = yinyang_samples(num_per_class, rng)
  x_test, y_test = yinyang_samples(num_per_class, rng)
  return validate_dataset(Dataset(x_train, y_train, x_test, y_test,
                                  num_classes=2, name='yinyang'))


# ----------------------------------------------------------------------------
# IDX files (MNIST and friends).


def _read_bytes(path: pathlib.Path, what: str) -> bytes:
  """The raw bytes of a file, or DataError naming it."""
  try:
    return path.read_bytes()
  except FileNotFoundError:
    raise DataError(f'{path}: {what} not found; check the path or '
                    'BASS_DATA_DIR') from None
  except OSError as e:
    raise DataError(f'{path}: cannot read {what} ({e.strerror}); check the '
                    'file permissions') from None


def _decompressed(path: pathlib.Path, raw: bytes) -> bytes:
  """raw itself, or its gunzipped content if it starts with the gzip magic."""
  if not raw.startswith(_GZIP_MAGIC):
    return raw
  try:
    return gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f'{path}: corrupt or truncated gzip data '
                    f'({str(e).splitlines()[0] if str(e) else type(e).__name__}'
                    '); re-fetch the file') from None


def read_idx(path: PathLike, expected_md5: Optional[str] = None) -> np.ndarray:
  """Reads one IDX file (LeCun's MNIST format), gzip-compressed or raw.

  Header: two zero bytes, a type byte (0x08 = ubyte, as in all MNIST files),
  the number of dimensions, then one big-endian uint32 per dimension.

  Args:
    path: the .gz or raw idx file.
    expected_md5: if given, the md5 hex digest the file's bytes (as stored,
      i.e. compressed for .gz) must have.

  Returns:
    The array with the header's shape in native byte order, e.g.
    [N, 28, 28] uint8 images (magic 0x00000803) or [N] uint8 labels
    (magic 0x00000801).

  Raises:
    DataError: missing file, md5 mismatch, corrupt gzip, bad magic, or a
      payload size that disagrees with the header dims.
  """
  path = pathlib.Path(path)
  raw = _read_bytes(path, 'idx file')
  if expected_md5 is not None:
    md5 = hashlib.md5(raw).hexdigest()
    if md5 != expected_md5.lower():
      raise DataError(f'{path}: md5 {md5} does not match the expected '
                      f'{expected_md5}; the file is corrupt or not the '
                      'official one, re-fetch it')
  data = _decompressed(path, raw)
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise DataError(f'{path}: bad idx magic {data[:4].hex() or "(empty)"}, '
                    'expected 0000 then type and ndim bytes (e.g. 00000803 '
                    'for images, 00000801 for labels); not an idx file')
  type_byte, ndim = data[2], data[3]
  if type_byte not in _IDX_DTYPES or ndim < 1:
    raise DataError(f'{path}: bad idx magic {data[:4].hex()}: unknown type '
                    f'byte 0x{type_byte:02x} or ndim {ndim}; not an idx file')
  header_len = 4 + 4 * ndim
  if len(data) < header_len:
    raise DataError(f'{path}: truncated idx header ({len(data)} bytes, need '
                    f'{header_len}); re-fetch the file')
  shape = tuple(int(d) for d in np.frombuffer(data, '>u4', ndim, offset=4))
  dtype = _IDX_DTYPES[type_byte]
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  payload = len(data) - header_len
  if payload != expected:
    state = 'truncated' if payload < expected else 'has trailing bytes'
    raise DataError(f'{path}: idx payload {state}: header dims {shape} need '
                    f'{expected} bytes, file has {payload}; re-fetch the file')
  array = np.frombuffer(data, dtype, offset=header_len).reshape(shape)
  # Native byte order, and a writable copy rather than a view of `bytes`.
  return array.astype(dtype.newbyteorder('='))


def _has_idx_files(directory: pathlib.Path) -> bool:
  """Whether all four MNIST-layout idx files exist in directory."""
  return all((directory / f).is_file() for f in IDX_FILES.values())


def _idx_split(directory: pathlib.Path, split: str,
               md5s: Optional[dict[str, str]],
               scale: float) -> tuple[np.ndarray, np.ndarray]:
  """Images [N, 28, 28, 1] float32 and labels [N] int32 of one idx split."""
  x_path = directory / IDX_FILES[f'x_{split}']
  y_path = directory / IDX_FILES[f'y_{split}']
  for path in (x_path, y_path):
    if not path.is_file():
      raise DataError(f'{path}: idx file not found; put the four official '
                      f'files ({", ".join(IDX_FILES.values())}) in '
                      f'{directory} or set BASS_DATA_DIR')
  images = read_idx(x_path, md5s[x_path.name] if md5s else None)
  labels = read_idx(y_path, md5s[y_path.name] if md5s else None)
  count = _IDX_COUNTS[split]
  if images.shape != (count, *_IDX_IMAGE_SHAPE) or images.dtype != np.uint8:
    raise DataError(f'{x_path}: images have shape {images.shape} '
                    f'{images.dtype}, expected ({count}, 28, 28) uint8; '
                    're-fetch the official file')
  if labels.shape != (count,) or labels.dtype != np.uint8:
    raise DataError(f'{y_path}: labels have shape {labels.shape} '
                    f'{labels.dtype}, expected ({count},) uint8; re-fetch the '
                    'official file')
  if labels.max() >= _IDX_NUM_CLASSES:
    raise DataError(f'{y_path}: label {labels.max()} out of range 0..'
                    f'{_IDX_NUM_CLASSES - 1}; re-fetch the official file')
  return _scaled(images[..., None], scale), labels.astype(np.int32)


def _load_idx_directory(directory: PathLike, md5s: Optional[dict[str, str]],
                        name: str, scale: float) -> Dataset:
  """An MNIST-layout dataset from the four idx files in directory."""
  directory = pathlib.Path(directory)
  x_train, y_train = _idx_split(directory, 'train', md5s, scale)
  x_test, y_test = _idx_split(directory, 'test', md5s, scale)
  return validate_dataset(Dataset(x_train, y_train, x_test, y_test,
                                  num_classes=_IDX_NUM_CLASSES, name=name))


def load_mnist_idx(directory: PathLike, verify_md5: bool = True,
                   scale: float = 1 / 256) -> Dataset:
  """MNIST from the four official idx files in directory.

  Args:
    directory: folder holding train-images-idx3-ubyte.gz,
      train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
      t10k-labels-idx1-ubyte.gz.
    verify_md5: check each file against the official md5 (MNIST_MD5).
    scale: pixel multiplier; 1/256 is the original code's scaling.

  Returns:
    Dataset 'mnist': x [60000 | 10000, 28, 28, 1] float32 = pixel * scale,
    y [60000 | 10000] int32 in 0..9, num_classes 10.
  """
  return _load_idx_directory(directory, MNIST_MD5 if verify_md5 else None,
                             'mnist', scale)


def fingerprint(*datasets: Dataset) -> str:
  """A short hash of datasets' arrays and class names (hex, 16 chars).

  Kept in every checkpoint, so that a run is never resumed on other data of
  the same shapes (e.g. a data_dir or image folder pointing elsewhere).
  About a second for the 60,000 MNIST images. Several datasets (one per
  seed) hash their fingerprints in order.
  """
  if len(datasets) > 1:
    h = hashlib.blake2b(digest_size=8)
    for ds in datasets:
      h.update(fingerprint(ds).encode())
    return h.hexdigest()
  ds, = datasets
  h = hashlib.blake2b(digest_size=8)
  for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
    a = np.ascontiguousarray(a)
    h.update(f'{a.dtype.str}{a.shape}'.encode())
    h.update(a.reshape(-1).view(np.uint8))
  h.update(repr((ds.num_classes, tuple(ds.class_names))).encode())
  return h.hexdigest()


# ----------------------------------------------------------------------------
# tensorflow-datasets.


def _import_tfds():
  """tensorflow_datasets, with TensorFlow kept off the GPUs (JAX owns them)."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  # TF logs "oneDNN custom operations are on" twice at import, past the
  # level above. TF only decodes files here, so its oneDNN kernels (and
  # their rounding note) do not matter.
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError(f'tfds datasets need tensorflow and tensorflow-datasets '
                    f'({_first_line(e)}); pip install tensorflow-cpu '
                    'tensorflow-datasets importlib_resources') from None
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    pass  # TF's devices are already initialised by the caller; leave them.
  return tfds


def _first_line(e: BaseException) -> str:
  """The first line of an exception's message (tfds' are multi-line)."""
  text = str(e).strip()
  return text.splitlines()[0] if text else type(e).__name__


def _check_manual_files(builder, name: str, manual_dir: pathlib.Path) -> None:
  """Raises DataError unless manual_dir holds every file tfds would download.

  tfds' download manager takes a registered URL's file from manual_dir when
  a file of that name is there, and downloads it otherwise. Checking first
  keeps preparation offline instead of failing after minutes of retries.
  """
  if not manual_dir.is_dir():
    raise DataError(f'tfds manual dir {manual_dir} for {name!r} does not '
                    'exist; create it with the dataset\'s source files')
  url_infos = builder.url_infos or {}
  wanted = sorted({info.filename for info in url_infos.values()
                   if info.filename})
  missing = [f for f in wanted if not (manual_dir / f).exists()]
  if missing:
    raise DataError(f'tfds manual dir {manual_dir} lacks {", ".join(missing)}'
                    f' for {name!r}; put those files there (or pass no '
                    'manual dir to let tfds download)')


def _tfds_split(tfds, builder, split: str,
                scale: float) -> tuple[np.ndarray, np.ndarray]:
  """Inputs [N, ...] float32 (images with a channel axis), labels [N] int32."""
  x, y = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1,
                                          as_supervised=True))
  x = np.asarray(x)
  if x.ndim == 3:  # [N, H, W] grey images without a channel axis.
    x = x[..., None]
  return _scaled(x, scale), np.asarray(y).astype(np.int32)


def load_tfds(name: str, data_dir: Optional[PathLike] = None,
              manual_dir: Optional[PathLike] = None,
              scale: float = 1 / 256) -> Dataset:
  """A tensorflow-datasets dataset's train and test splits as whole arrays.

  If the dataset is not yet prepared in data_dir it is prepared with
  `download_and_prepare`. With a manual_dir, the files tfds registers for the
  dataset must all be there (checked first): tfds then reads them from it
  instead of downloading, verifying its registered sha256 sums, so e.g.
  MNIST prepares offline from the official idx files. GCS is never tried.

  Args:
    name: tfds builder name, e.g. 'mnist' or 'mnist:3.0.1'.
    data_dir: tfds cache dir for the prepared data; None = tfds' default
      ($TFDS_DATA_DIR, else ~/tensorflow_datasets).
    manual_dir: folder with the dataset's source files, e.g.
      ../shared/data/mnist; None lets tfds download what is missing.
    scale: input multiplier (1/256 for uint8 pixels).

  Returns:
    Dataset with x [N, ...] float32 (images [N, H, W, C_in]) = raw * scale and
    y [N] int32, from the builder's supervised keys.
  """
  tfds = _import_tfds()
  try:
    builder = tfds.builder(name, data_dir=None if data_dir is None else
                           os.fspath(data_dir))
  except tfds.core.registered.DatasetNotFoundError:
    raise DataError(f'dataset {name!r} is unknown to bass_jax and '
                    f'tensorflow-datasets; use yinyang, '
                    f'{", ".join(IDX_DATASETS)}, a path ending in .npz, or a '
                    'name in tfds.list_builders()') from None
  if not builder.is_prepared():
    if manual_dir is not None:
      manual_dir = pathlib.Path(manual_dir).expanduser()
      _check_manual_files(builder, name, manual_dir)
    config = tfds.download.DownloadConfig(
        manual_dir=None if manual_dir is None else os.fspath(manual_dir),
        try_download_gcs=False)
    try:
      builder.download_and_prepare(download_config=config)
    except Exception as e:  # pylint: disable=broad-except
      # tfds raises many types (checksum, network, OS); the user needs one line.
      raise DataError(f'tfds could not prepare {name!r} in '
                      f'{builder.data_dir} ({type(e).__name__}: '
                      f'{_first_line(e)}); check that the manual dir holds '
                      'the official files, or the network') from e
  info = builder.info
  if info.supervised_keys is None:
    raise DataError(f'tfds dataset {name!r} has no supervised keys; it is not '
                    'a (input, label) classification dataset')
  missing = [s for s in ('train', 'test') if s not in info.splits]
  if missing:
    raise DataError(f'tfds dataset {name!r} lacks split(s) '
                    f'{", ".join(missing)} (has {", ".join(info.splits)}); '
                    'use a dataset with train and test splits')
  x_train, y_train = _tfds_split(tfds, builder, 'train', scale)
  x_test, y_test = _tfds_split(tfds, builder, 'test', scale)
  label_key = info.supervised_keys[1]
  num_classes = int(info.features[label_key].num_classes)
  return validate_dataset(Dataset(x_train, y_train, x_test, y_test,
                                  num_classes=num_classes,
                                  name=name.split(':')[0]))


# ----------------------------------------------------------------------------
# npz files.


def _npz_inputs(path: pathlib.Path, key: str, x: np.ndarray,
                scale: float) -> np.ndarray:
  """x of an npz file as float32: integer pixels (e.g. uint8) times scale,
  floats as they are (already scaled by whoever saved them); x: [N, ...]
  real."""
  if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or (
      np.issubdtype(x.dtype, np.complexfloating)):
    raise DataError(f'{path}: {key} has dtype {x.dtype}, expected a real '
                    'numeric array')
  if x.ndim < 2 or x.shape[0] == 0:
    raise DataError(f'{path}: {key} has shape {x.shape}, expected a '
                    'non-empty [N, features...] array')
  if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
    raise DataError(f'{path}: {key} has {int(np.sum(~np.isfinite(x)))} '
                    'NaN/Inf values; clean the data')
  return _scaled(x, scale if np.issubdtype(x.dtype, np.integer) else 1.0)


def _npz_labels(path: pathlib.Path, key: str, y: np.ndarray,
                unknown_ok: bool = False) -> np.ndarray:
  """y of an npz file as int32 [N] >= 0 (or -1, unknown, if `unknown_ok`)."""
  if not np.issubdtype(y.dtype, np.integer):
    if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and (
        np.array_equal(y, np.round(y))):
      hint = f'; save them as integers: {key}.astype(np.int64)'
    else:
      hint = ('; np.unique(labels, return_inverse=True) numbers class names '
              '0..C-1 (use the same names for y_train and y_test)')
    raise DataError(f'{path}: {key} has dtype {y.dtype}, expected integer '
                    f'class ids{hint}')
  if y.ndim != 1 or y.shape[0] == 0:
    raise DataError(f'{path}: {key} has shape {y.shape}, expected a '
                    'non-empty [N] array')
  if y.min() < -int(unknown_ok) or y.max() > np.iinfo(np.int32).max:
    unknown = ' or -1 (unknown)' if unknown_ok else ''
    raise DataError(f'{path}: {key} has labels in [{y.min()}, {y.max()}], '
                    f'expected 0-based class ids in [0, 2**31){unknown}')
  return y.astype(np.int32)


def _npz_arrays(path: pathlib.Path, keys_hint: str) -> dict[str, np.ndarray]:
  """Every array of an .npz file (no pickles), by key.

  Args:
    path: the file.
    keys_hint: what to save, for the error of a file that is no npz, e.g.
      'x=..., y=...'.

  Raises:
    DataError: one line naming the file: missing, no zip, unreadable, an
      object array or a member that is no .npy.
  """
  if not path.is_file():
    raise DataError(f'{path}: npz file not found; check the path')
  if not zipfile.is_zipfile(path):
    # np.load would read a .npy as one array and anything else as a pickle.
    raise DataError(f'{path}: not an npz file (an npz is a zip of arrays); '
                    f'write it with np.savez(path, {keys_hint})')
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {k: npz[k] for k in npz.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile,
          zlib.error) as e:
    if 'Object arrays' in str(e):  # np.savez wrote it, with a pickle in.
      raise DataError(f'{path}: a member is an object array (Python objects: '
                      'mixed types, lists, None), which is never unpickled; '
                      'save numeric arrays, e.g. y.astype(np.int64)'
                      ) from None
    raise DataError(f'{path}: not a readable npz file ({_first_line(e)}); '
                    'write it with np.savez') from None
  # np.load hands a member that is no .npy back as its bytes.
  raw = sorted(k for k, v in arrays.items() if not isinstance(v, np.ndarray))
  if raw:
    raise DataError(f'{path}: not a readable npz file ({", ".join(raw)} '
                    'not numpy arrays); write it with np.savez')
  return arrays


def load_npz(path: PathLike, scale: float = 1.0) -> Dataset:
  """A dataset from an .npz file with keys x_train, y_train, x_test, y_test.

  Args:
    path: the .npz file (np.savez / np.savez_compressed; no pickles).
    scale: multiplier of integer inputs (e.g. 1/256 for uint8 pixels);
      float inputs are used as they are.

  Returns:
    Dataset named after the file's stem with x [N, ...] float32 (shaped as
    saved, ndim >= 2; integers * scale) and y [N] int32; num_classes is the
    optional scalar key `num_classes`, else the largest label + 1. y_train
    may hold -1 (unknown: a pool for a human oracle).
  """
  path = pathlib.Path(path)
  arrays = _npz_arrays(path, 'x_train=..., y_train=..., x_test=..., '
                       'y_test=...')
  missing = [k for k in NPZ_KEYS if k not in arrays]
  if missing:
    raise DataError(f'{path}: missing key(s) {", ".join(missing)} (has '
                    f'{", ".join(sorted(arrays)) or "none"}); save '
                    f'{", ".join(NPZ_KEYS)}')
  x_train = _npz_inputs(path, 'x_train', arrays['x_train'], scale)
  x_test = _npz_inputs(path, 'x_test', arrays['x_test'], scale)
  y_train = _npz_labels(path, 'y_train', arrays['y_train'], unknown_ok=True)
  y_test = _npz_labels(path, 'y_test', arrays['y_test'])
  if 'num_classes' in arrays:
    num_classes = arrays['num_classes']
    if num_classes.shape != () or not np.issubdtype(num_classes.dtype,
                                                    np.integer):
      raise DataError(f'{path}: num_classes must be a scalar integer, got '
                      f'{num_classes.dtype} shape {num_classes.shape}')
    num_classes = int(num_classes)
  else:
    num_classes = int(max(y_train.max(), y_test.max())) + 1
  try:
    return validate_dataset(Dataset(x_train, y_train, x_test, y_test,
                                    num_classes=num_classes, name=path.stem))
  except DataError as e:
    raise DataError(f'{path}: {e}') from None


# ----------------------------------------------------------------------------
# Image folders ("bring your own data").

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')
# PIL modes read as one grey channel; every other mode is read as RGB.
_GREY_MODES = ('1', 'L', 'LA')
_FOLDER_LAYOUT = ('labelled/<class_name>/*.png|jpg|jpeg|bmp, optionally '
                  'unlabelled/*.png... and test/<class_name>/*.png...')


@dataclasses.dataclass(frozen=True)
class ImageFolderFiles:
  """The files of an image folder dataset, in the order of its arrays.

  Attributes:
    class_names: [C] sorted names of the class folders in labelled/.
    train: [N] pool files: labelled/ (by class, then file name), then
      unlabelled/ (by file name); pool sample i is train[i].
    train_labels: [N] class index of each pool file, -1 for unlabelled/.
    test: [M] validation files: test/ (by class, then file name), else the
      labelled/ files again.
    test_labels: [M] class index of each validation file.
  """
  class_names: tuple[str, ...]
  train: tuple[pathlib.Path, ...]
  train_labels: tuple[int, ...]
  test: tuple[pathlib.Path, ...]
  test_labels: tuple[int, ...]


def _visible_entries(folder: pathlib.Path) -> list[pathlib.Path]:
  """folder's entries sorted by name, without hidden ones (.DS_Store etc.)."""
  try:
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
  except OSError as e:
    raise DataError(f'{folder}: cannot list the folder ({e.strerror}); check '
                    'its permissions') from None
  return [p for p in entries if not p.name.startswith('.')]


def _is_image_file(path: pathlib.Path) -> bool:
  return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def image_files(folder: pathlib.Path) -> list[pathlib.Path]:
  """The images directly in `folder` (IMAGE_SUFFIXES, any case), sorted by
  name, hidden files left out, as the loaders read them; maybe []."""
  return [p for p in _visible_entries(folder) if _is_image_file(p)]


def _flat_images(folder: pathlib.Path) -> list[pathlib.Path]:
  """The image files directly in folder, sorted by name (at least one).

  Other files are ignored; a subfolder is an error rather than silently
  skipped, so no image goes missing unnoticed.
  """
  entries = _visible_entries(folder)
  nested = [p for p in entries if p.is_dir()]
  if nested:
    raise DataError(f'{nested[0]}: subfolders are not read; move its images '
                    f'up into {folder}')
  images = [p for p in entries if _is_image_file(p)]
  if not images:
    raise DataError(f'{folder}: no images ({", ".join(IMAGE_SUFFIXES)}); add '
                    'some or remove the folder')
  return images


def _class_images(folder: pathlib.Path, classes: Optional[tuple[str, ...]],
                  owner: str = 'labelled/'
                  ) -> tuple[list[pathlib.Path], list[int], tuple[str, ...]]:
  """Images of the class subfolders of labelled/ or test/ (or of inputs to
  predict).

  Args:
    folder: labelled/ or test/.
    classes: the known class names (those of labelled/), None for labelled/
      itself.
    owner: whose classes `classes` are, for the error of another subfolder.

  Returns:
    (files sorted by class then name, their class indices, the subfolder
    names).
  """
  entries = _visible_entries(folder)
  loose = [p for p in entries if _is_image_file(p)]
  if loose:
    raise DataError(f'{loose[0]}: images in {folder} must be inside a class '
                    'subfolder <class_name>/')
  names = tuple(p.name for p in entries if p.is_dir())
  if not names:
    raise DataError(f'{folder}: no class subfolders; put each class\'s '
                    f'images in {folder}/<class_name>/')
  classes = classes or names
  files, labels = [], []
  for name in names:
    if name not in classes:
      raise DataError(f'{folder / name}: class {name!r} is not a class of '
                      f'{owner} ({", ".join(classes)}); rename or remove it')
    images = _flat_images(folder / name)
    files.extend(images)
    labels.extend([classes.index(name)] * len(images))
  return files, labels, names


def image_folder_files(root: PathLike) -> ImageFolderFiles:
  """Lists an image folder dataset's files without reading any image.

  Layout: <root>/labelled/<class_name>/* (required, a few images per class),
  <root>/unlabelled/* (optional, flat: the pool without labels) and
  <root>/test/<class_name>/* (optional, its classes a subset of labelled/'s).
  Files with the suffixes IMAGE_SUFFIXES (any case) are read, other files
  and hidden entries are ignored.

  Args:
    root: the dataset folder.

  Returns:
    The files and labels in the order of `load_image_folder`'s arrays.

  Raises:
    DataError: labelled/ missing or without class folders, an empty class
      folder or unlabelled/, loose images, subfolders where files belong, or
      a test/ class that labelled/ lacks.
  """
  root = pathlib.Path(root).expanduser()
  labelled = root / 'labelled'
  if not labelled.is_dir():
    raise DataError(f'{labelled}: folder not found; an image folder dataset '
                    f'needs {_FOLDER_LAYOUT}')
  train, train_labels, classes = _class_images(labelled, None)
  test, test_labels = list(train), list(train_labels)
  if (root / 'unlabelled').is_dir():
    pool = _flat_images(root / 'unlabelled')
    train.extend(pool)
    train_labels.extend([-1] * len(pool))
  if (root / 'test').is_dir():
    test, test_labels, _ = _class_images(root / 'test', classes)
  return ImageFolderFiles(classes, tuple(train), tuple(train_labels),
                          tuple(test), tuple(test_labels))


def _read_image(path: pathlib.Path) -> np.ndarray:
  """[H, W] (grey modes) or [H, W, 3] (all others, alpha dropped) uint8."""
  try:
    from PIL import Image  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError(f'image folders need Pillow ({_first_line(e)}); pip '
                    'install pillow') from None
  try:
    with Image.open(path) as img:
      # convert() decodes the whole file, so truncation surfaces here.
      return np.asarray(img.convert('L' if img.mode in _GREY_MODES else 'RGB'))
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise DataError(f'{path}: not a readable image ({_first_line(e)}); '
                    'replace or remove it') from None


def _image_stack(paths: list[pathlib.Path]) -> np.ndarray:
  """[N, H, W, C_in] uint8 images: C_in = 1 if all are grey, else 3 (grey
  repeated).

  Raises:
    DataError: naming the first image whose size differs from the first's.
  """
  images = [_read_image(p) for p in paths]
  height, width = images[0].shape[:2]
  for path, img in zip(paths, images):
    if img.shape[:2] != (height, width):
      raise DataError(f'{path}: image is {img.shape[1]}x{img.shape[0]} '
                      f'pixels but {paths[0]} is {width}x{height}; resize all '
                      'images to one size')
  if all(img.ndim == 2 for img in images):
    return np.stack(images)[..., None]
  return np.stack([img if img.ndim == 3 else np.repeat(img[..., None], 3, -1)
                   for img in images])


def read_images(paths: list[pathlib.Path],
                scale: float = 1 / 256) -> np.ndarray:
  """[N, H, W, C_in] float32 = pixel * scale of the image files `paths`, as
  `load_image_folder` reads them (C_in = 1 if every image is grey, else 3).

  Raises:
    DataError: an unreadable image, or images of differing size.
  """
  return _scaled(_image_stack(paths), scale)


def load_image_folder(root: PathLike, scale: float = 1 / 256) -> Dataset:
  """A dataset from a folder of images (layout: see `image_folder_files`).

  Classes are the sorted subfolder names of labelled/ (index = position).
  The pool is the labelled images (by class, then file name) followed by
  unlabelled/'s (by file name), whose labels are -1 (unknown). The test split
  is test/ if present, else the labelled images themselves: validation
  accuracy is then measured on training data and is optimistic.

  Args:
    root: the dataset folder.
    scale: pixel multiplier (1/256 for 8-bit images).

  Returns:
    Dataset named after the folder: x [N, H, W, C_in] float32 = pixel *
    scale, C_in = 1 if every image is grey, else 3 (RGB); y [N] int32;
    class_names.

  Raises:
    DataError: one line naming the path, for a bad layout (see
      `image_folder_files`), an unreadable image or images of differing size.
  """
  files = image_folder_files(root)
  # Without test/ the test split re-uses the labelled files: read each once.
  paths = list(dict.fromkeys(files.train + files.test))
  pixels = _image_stack(paths)
  row = {p: i for i, p in enumerate(paths)}
  x_train = _scaled(pixels[[row[p] for p in files.train]], scale)
  x_test = _scaled(pixels[[row[p] for p in files.test]], scale)
  name = pathlib.Path(root).expanduser().resolve().name or 'folder'
  return validate_dataset(Dataset(
      x_train, np.asarray(files.train_labels, np.int32), x_test,
      np.asarray(files.test_labels, np.int32),
      num_classes=len(files.class_names), name=name,
      class_names=files.class_names))


def image_folder_root(name: str, data_dir: Optional[PathLike] = None
                      ) -> Optional[pathlib.Path]:
  """The image folder a dataset name refers to, if any.

  Args:
    name: a dataset name or path.
    data_dir: the data root; relative names are tried as given, then under
      it.

  Returns:
    The first of those folders that holds labelled/, else None.
  """
  path = pathlib.Path(name).expanduser()
  candidates = [path]
  if data_dir and not path.is_absolute():
    candidates.append(pathlib.Path(data_dir) / path)
  return next((c for c in candidates if (c / 'labelled').is_dir()), None)


# ----------------------------------------------------------------------------
# New inputs for a trained run (launch/predict.py).


@dataclasses.dataclass(frozen=True, eq=False)
class Inputs:
  """Samples to predict, outside any run's pool.

  Attributes:
    x: [N, ...] float32 inputs (images: [N, H, W, C_in]).
    y: [N] int32 known labels, or None where none are given.
    files: [N] image paths (row order), or None for an npz file.
  """
  x: np.ndarray
  y: Optional[np.ndarray]
  files: Optional[tuple[str, ...]]


def _inputs_from_npz(path: pathlib.Path, scale: float) -> Inputs:
  """Inputs of an .npz with key x (and optionally y), see `load_inputs`."""
  arrays = _npz_arrays(path, 'x=...[, y=...]')
  if 'x' not in arrays:
    keys = ', '.join(sorted(arrays)) or 'none'
    raise DataError(f'{path}: no key x (has {keys}); save the inputs as x '
                    '(and their labels, if known, as y): np.savez(path, '
                    'x=..., y=...)')
  x = _npz_inputs(path, 'x', arrays['x'], scale)
  y = _npz_labels(path, 'y', arrays['y']) if 'y' in arrays else None
  if y is not None and y.shape[0] != x.shape[0]:
    raise DataError(f'{path}: x has {x.shape[0]} samples but y has '
                    f'{y.shape[0]} labels')
  return Inputs(x, y, None)


def _inputs_from_folder(folder: pathlib.Path, class_names: tuple[str, ...],
                        scale: float) -> Inputs:
  """Inputs of an image folder, see `load_inputs`."""
  entries = _visible_entries(folder)
  if any(p.is_dir() for p in entries):  # Class subfolders: labels known.
    files, labels, _ = _class_images(folder, class_names, 'the run')
    y = np.asarray(labels, np.int32)
  else:
    files, y = _flat_images(folder), None
  return Inputs(read_images(files, scale), y,
                tuple(str(p) for p in files))


def load_inputs(path: PathLike, class_names: tuple[str, ...],
                scale: float) -> Inputs:
  """New samples to predict with a trained run, read as its data were.

  - an .npz file: x [N, ...] (integers times `scale`, floats as they are,
    as `load_npz` reads them) and optionally y [N], their labels;
  - a folder of images (IMAGE_SUFFIXES), sorted by file name: flat (labels
    unknown), or in class subfolders <class_name>/ (labels known) named as
    the run's classes: `class_names`, which for a run without names are
    the class indices '0', '1', ... Pixels times `scale`, C_in = 1 if every
    image is grey, else 3 (as `load_image_folder` reads them).

  Args:
    path: the file or folder.
    class_names: [C] the run's class names.
    scale: the run's input multiplier (config.pixel_scale).

  Returns:
    The inputs, with labels and image paths where there are any.

  Raises:
    DataError: one line naming the path (missing, unreadable, a class
      subfolder the run lacks, images of differing sizes, ...).
  """
  path = pathlib.Path(path).expanduser()
  if path.is_dir():
    return _inputs_from_folder(path, class_names, scale)
  if path.suffix != '.npz':
    what = 'not found' if not path.exists() else 'neither a folder nor .npz'
    raise DataError(f'{path}: {what}; give a folder of images or an .npz '
                    'file with x (and optionally y)')
  return _inputs_from_npz(path, scale)


# ----------------------------------------------------------------------------
# Dispatch by name.


# The data folder beside a source checkout (<repo>/../shared/data).
CHECKOUT_DATA_DIR = (pathlib.Path(__file__).resolve().parents[2] / 'shared' /
                     'data')


def default_data_dir() -> Optional[pathlib.Path]:
  """The data root: $BASS_DATA_DIR, else ../shared/data if that exists.

  ../shared/data is tried relative to the working directory, then beside
  the checkout bass_jax runs from, so the tools find it from any folder.

  Returns:
    The directory, or None if neither is set / present.
  """
  if os.environ.get('BASS_DATA_DIR'):
    return pathlib.Path(os.environ['BASS_DATA_DIR'])
  for shared in (pathlib.Path('..', 'shared', 'data'), CHECKOUT_DATA_DIR):
    if shared.is_dir():
      return shared.resolve()
  return None


def _tfds_cache_dir(root: Optional[pathlib.Path]) -> Optional[pathlib.Path]:
  """$TFDS_DATA_DIR, else <root>/tfds if it exists, else None (tfds default).

  The data root is usually read-only, so tfds only uses a cache there when
  one was put there on purpose.
  """
  if os.environ.get('TFDS_DATA_DIR'):
    return pathlib.Path(os.environ['TFDS_DATA_DIR'])
  if root is not None and (root / 'tfds').is_dir():
    return root / 'tfds'
  return None


def _npz_path(name: str, root: Optional[pathlib.Path]) -> pathlib.Path:
  """The npz file of a dataset name: as given, else relative to root."""
  path = pathlib.Path(name).expanduser()
  if path.suffix != '.npz':
    path = path.with_name(path.name + '.npz')
  if not path.is_absolute() and not path.exists() and root is not None:
    return root / path
  return path


def load_dataset(name: str, data_dir: Optional[str] = None,
                 source: str = 'auto', scale: float = 1 / 256,
                 seed: int = 0) -> Dataset:
  """A dataset by name: the one entry point of configs.

  - 'yinyang': `load_yinyang(seed=seed)` (scale is not applied).
  - a name ending in '.npz', or source 'npz': `load_npz` of that path
    (relative paths are tried as given, then under data_dir; scale applies).
  - source 'folder', or source 'auto' for a folder holding labelled/ (the
    name as a path, else under data_dir): `load_image_folder` (scale
    applies).
  - 'mnist', 'fashion_mnist', 'kmnist' with source 'auto' or 'idx': the idx
    files in <data_dir>/<name>/ (md5-verified for mnist).
  - source 'tfds', or source 'auto' for any other name that tfds knows, or
    for an idx name whose idx files are absent: `load_tfds` with the cache
    dir $TFDS_DATA_DIR, else <data_dir>/tfds if present, else
    ~/tensorflow_datasets, and manual dir <data_dir>/<name> if present (then
    preparation is offline; without it tfds may download). For an idx name
    'auto' takes this path only with that manual dir or data tfds already
    prepared: it never downloads (a DataError names the missing files).

  Args:
    name: dataset name, .npz path or image folder path.
    data_dir: the data root; None = $BASS_DATA_DIR, else ../shared/data.
    source: 'auto', 'idx', 'tfds', 'npz' or 'folder'.
    scale: input multiplier for idx, tfds, npz and image folder data.
    seed: Yin-Yang draw seed.

  Returns:
    The validated Dataset.
  """
  if source not in SOURCES:
    raise DataError(f'data source {source!r} is unknown; use one of '
                    f'{", ".join(SOURCES)}')
  root = default_data_dir() if not data_dir else pathlib.Path(data_dir)
  if name == 'yinyang':
    if source != 'auto':
      raise DataError(f"dataset 'yinyang' is generated, not read; use "
                      f"source 'auto' (got {source!r})")
    return load_yinyang(seed=seed)
  if source == 'npz' or name.endswith('.npz'):
    path = _npz_path(name, root)
    if not path.is_file() and path != _npz_path(name, None):
      # Neither place has it: name both, not only the last one tried.
      raise DataError(f'{_npz_path(name, None)}: npz file not found in the '
                      f'working folder ({os.getcwd()}) nor under data_dir '
                      f'({root}); check the dataset path')
    return load_npz(path, scale=scale)
  folder = image_folder_root(name, root)
  if source == 'folder' or (source == 'auto' and folder is not None):
    given = pathlib.Path(name).expanduser()
    if folder is None and not given.is_absolute() and not given.exists() and (
        root is None or not (root / given).exists()):
      # A relative folder found nowhere: a run resumed, reported or
      # exported from another folder than the one it started in.
      raise DataError(f'{name}: image folder not found in the working folder '
                      f'({os.getcwd()}) nor under data_dir ({root}); run '
                      'from the folder the run started in, or give data_dir '
                      '(--config.data_dir, --data_dir of report.py and '
                      'export.py)')
    # Without a match, the name as given yields the 'labelled/ not found' error.
    return load_image_folder(folder or name, scale=scale)
  idx_dir = None if root is None else root / name
  if source == 'idx' or (source == 'auto' and name in IDX_DATASETS and
                         idx_dir is not None and _has_idx_files(idx_dir)):
    if name not in IDX_DATASETS:
      raise DataError(f"source 'idx' reads {', '.join(IDX_DATASETS)}, not "
                      f'{name!r}; use another source')
    if idx_dir is None:
      raise DataError(f'no data dir for the idx files of {name!r}; set '
                      'BASS_DATA_DIR or pass data_dir')
    md5s = MNIST_MD5 if name == 'mnist' else None
    return _load_idx_directory(idx_dir, md5s, name, scale)
  manual_dir = idx_dir if idx_dir is not None and idx_dir.is_dir() else None
  cache_dir = _tfds_cache_dir(root)
  if source == 'auto' and name in IDX_DATASETS and manual_dir is not None:
    missing = [f for f in IDX_FILES.values() if not (idx_dir / f).is_file()]
    if len(missing) < len(IDX_FILES) and not _tfds_prepared(name, cache_dir):
      # Some idx files: the user meant this folder; name what it lacks.
      raise DataError(f'{idx_dir} lacks {", ".join(missing)} (it holds the '
                      f'other idx files of {name!r}); put the four official '
                      'files there')
  if (source == 'auto' and name in IDX_DATASETS and manual_dir is None and
      not _tfds_prepared(name, cache_dir)):
    # 'auto' never starts a download: a mistyped data dir should say so at
    # once, not after minutes of retries on an offline machine.
    raise DataError(
        f'{idx_dir or "<no data dir>"}: the idx files of {name!r} are not '
        f'there ({", ".join(IDX_FILES.values())}); put them there, set '
        'BASS_DATA_DIR or --config.data_dir (--data_dir of report.py and '
        'export.py), or pass '
        '--config.data_source=tfds to let tensorflow-datasets download them')
  return load_tfds(name, data_dir=cache_dir, manual_dir=manual_dir,
                   scale=scale)


def _tfds_prepared(name: str, cache_dir: Optional[pathlib.Path]) -> bool:
  """Whether tfds already prepared `name` in its cache (tfds' own layout)."""
  if cache_dir is None:
    cache_dir = pathlib.Path('~/tensorflow_datasets').expanduser()
  return any((cache_dir / name).glob('*/dataset_info.json'))


# ----------------------------------------------------------------------------
# Subsets and initial labels.


def subset(ds: Dataset, pool_size: Optional[int],
           test_size: Optional[int]) -> Dataset:
  """The first pool_size train and first test_size test examples.

  Args:
    ds: the full dataset.
    pool_size: train examples to keep; None keeps all.
    test_size: test examples to keep; None keeps all.

  Returns:
    A Dataset of views into ds's arrays, same num_classes and name.

  Raises:
    DataError: if a size is < 1 or larger than its split.
  """
  def first(split: str, n: Optional[int], available: int) -> int:
    if n is None:
      return available
    if not 1 <= n <= available:
      raise DataError(f'dataset {ds.name!r}: {split} size {n} must be in '
                      f'[1, {available}] (the {split} split has {available} '
                      'examples)')
    return n

  n = first('pool', pool_size, ds.x_train.shape[0])
  m = first('test', test_size, ds.x_test.shape[0])
  return validate_dataset(dataclasses.replace(
      ds, x_train=ds.x_train[:n], y_train=ds.y_train[:n],
      x_test=ds.x_test[:m], y_test=ds.y_test[:m]))


def _pool_labels(labels: np.ndarray) -> np.ndarray:
  """`labels` as an array, checked as pool labels an initial draw takes:
  [N] integers >= 0, -1 where unknown, at least one known (else
  DataError)."""
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(
      labels.dtype, np.integer) or labels.min() < -1 or labels.max() < 0:
    raise DataError(f'initial labels need non-empty [N] integer labels >= 0 '
                    f'(-1: unknown) with at least one known, got '
                    f'{labels.dtype} shape {labels.shape}')
  return labels


def balanced_initial_indices(labels: np.ndarray, per_class: int,
                             seed: int) -> np.ndarray:
  """Class-balanced initial labelled set: per_class random examples per class.

  Classes are 0 .. labels.max(); each must have at least per_class examples
  with a known label (unknown ones, -1, are never drawn). Class c's draw uses
  np.random.default_rng(seed) after classes 0 .. c-1's.

  Args:
    labels: [N] integer pool labels >= 0, or -1 where unknown.
    per_class: examples to draw (without replacement) from each class.
    seed: seed of the draw.

  Returns:
    [per_class * C] int32 sorted pool indices.

  Raises:
    DataError: if labels are malformed or a class has fewer than per_class
      examples.
  """
  labels = _pool_labels(labels)
  if per_class < 0:
    raise DataError(f'initial per_class={per_class} must be >= 0')
  rng = np.random.default_rng(seed)
  counts = np.bincount(labels[labels >= 0])
  chosen = []
  for c, count in enumerate(counts):
    if count < per_class:
      raise DataError(f'class {c} has only {count} pool examples, fewer than '
                      f'the {per_class} initial labels per class; lower '
                      'initial_per_class or enlarge the pool')
    chosen.append(rng.choice(np.flatnonzero(labels == c), per_class,
                             replace=False))
  return np.sort(np.concatenate(chosen)).astype(np.int32)


def _known_for(labels: np.ndarray, num: int) -> np.ndarray:
  """[K] the pool indices of `labels` (checked, `_pool_labels`) that are
  known, at least num of them (else DataError): what a draw of num picks
  from."""
  labels = _pool_labels(labels)
  if num < 0:
    raise DataError(f'initial labels: num={num} must be >= 0')
  known = np.flatnonzero(labels >= 0)
  if known.size < num:
    raise DataError(f'the pool has {known.size} known labels, fewer than the '
                    f'{num} initial labels to draw; lower initial_per_class '
                    'or enlarge the pool')
  return known


def random_initial_indices(labels: np.ndarray, num: int,
                           seed: int) -> np.ndarray:
  """Initial labelled set drawn uniformly: num random examples of whatever
  classes, as a user who cannot pick by class would start (the balanced
  draw uses labels an active learner does not have yet).

  Args:
    labels: [N] integer pool labels >= 0, or -1 where unknown (never drawn).
    num: examples to draw, without replacement.
    seed: seed of the draw (np.random.default_rng).

  Returns:
    [num] int32 sorted pool indices.

  Raises:
    DataError: if labels are malformed or fewer than num are known.
  """
  known = _known_for(labels, num)
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(known, num, replace=False)).astype(np.int32)


def principal_features(x: np.ndarray, dims: int = 50) -> np.ndarray:
  """x's samples as vectors of their top principal components.

  A randomized SVD (Halko et al. 2011: a random projection, two power
  iterations), so images of any size cost O(N D dims), never a D x D
  matrix; its projection has a fixed seed: the features are the data's.
  In float64: k-means++ seeding samples by distance, so float32's rounding
  (which differs with the BLAS and its threads) changed every pick of
  MNIST seeds' draws, while float64's leaves them machine-independent in
  practice.

  Args:
    x: [N, ...] inputs.
    dims: components to keep.

  Returns:
    [N, min(dims, D)] float64, D = the size of one input: the centred
    inputs projected on their `dims` directions of largest variance (the
    centred inputs themselves when D <= dims).
  """
  flat = x.reshape(x.shape[0], -1).astype(np.float64)
  flat -= flat.mean(axis=0)
  if flat.shape[1] <= dims:
    return flat
  rng = np.random.default_rng(0)
  basis = flat @ rng.standard_normal((flat.shape[1], dims + 10))
  for _ in range(2):  # Power iterations sharpen the top directions.
    basis, _ = np.linalg.qr(flat @ (flat.T @ np.linalg.qr(basis)[0]))
  _, _, axes = np.linalg.svd(basis.T @ flat, full_matrices=False)
  return flat @ axes[:dims].T


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """[n, k] squared Euclidean distances of a [n, d] to b [k, d]."""
  return np.maximum(np.sum(a * a, 1)[:, None] - 2 * a @ b.T +
                    np.sum(b * b, 1)[None], 0.0)


def kmeans_centres(features: np.ndarray, k: int, rng: np.random.Generator,
                   iterations: int = 20,
                   fixed: Optional[np.ndarray] = None) -> np.ndarray:
  """k-means (k-means++ seeding, then Lloyd's iterations) of features [n, d];
  returns the [k, d] centres (a centre whose cluster empties stays put).

  `fixed`: [m, d] further centres that stay where they are (e.g. samples
  labelled already). The k centres are seeded away from them and take only
  the samples nearer to them than to a fixed one: they settle where the
  fixed centres leave samples uncovered.
  """
  n = features.shape[0]
  if fixed is None or len(fixed) == 0:
    fixed = features[:0]
    centres = [features[rng.integers(n)]]
    d2 = _squared_distances(features, centres[0][None])[:, 0]
  else:
    centres = []
    d2 = _squared_distances(features, fixed).min(1)
  while len(centres) < k:
    total = d2.sum()  # 0 when every sample is a centre already (duplicates).
    pick = rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)
    centres.append(features[pick])
    d2 = np.minimum(d2, _squared_distances(features, features[pick][None])[
        :, 0])
  centres = np.stack(centres)
  for _ in range(iterations):
    # Cluster j of the k free centres; < 0: a fixed centre's.
    cluster = np.argmin(_squared_distances(
        features, np.concatenate([fixed, centres])), axis=1) - len(fixed)
    members = (cluster[:, None] == np.arange(k)).astype(features.dtype)
    sums, sizes = members.T @ features, members.sum(0)[:, None]
    moved = np.where(sizes > 0, sums / np.maximum(sizes, 1), centres)
    if np.allclose(moved, centres):
      break
    centres = moved
  return centres


def representative_indices(features: np.ndarray, candidates: np.ndarray,
                           num: int, seed: int,
                           covered: Optional[np.ndarray] = None
                           ) -> np.ndarray:
  """num candidates, one per k-means cluster: the one nearest its centre.

  Picked without labels (k-means over the candidates' features, e.g. the
  inputs' top principal components, `principal_features`), so what a
  person can label first when none is known: typical samples of the data's
  modes rather than a uniform draw, whose small samples miss rare modes
  (cold-start active learning, e.g. Hacohen et al., ICML 2022, picks
  typical samples of clusters).

  Args:
    features: [N, d] the pool's features.
    candidates: [N] bool, the samples that may be picked.
    num: picks (clusters), at most the candidates' count.
    seed: seed of the k-means++ seeding.
    covered: [N] bool, samples labelled already (None: none): fixed
      k-means centres (`kmeans_centres`), so the picks are typical samples
      of what they leave uncovered, not more of the same.

  Returns:
    [num] int32 sorted pool indices, distinct.
  """
  pool = np.flatnonzero(candidates)
  if not 0 <= num <= pool.size:
    raise DataError(f'representative picks: num={num} must be in 0..'
                    f'{pool.size} (the samples to pick from)')
  if num == 0:
    return np.zeros(0, np.int32)
  fixed = None if covered is None else features[np.asarray(covered, bool)]
  features = features[pool]
  centres = kmeans_centres(features, num, np.random.default_rng(seed),
                           fixed=fixed)
  distances = _squared_distances(features, centres)
  picks = []
  for j in range(num):  # Each centre's nearest sample not picked yet.
    i = int(np.argmin(distances[:, j]))
    picks.append(i)
    distances[i] = np.inf
  return np.sort(pool[picks]).astype(np.int32)


def representative_initial_indices(features: np.ndarray, labels: np.ndarray,
                                   num: int, seed: int) -> np.ndarray:
  """Initial labelled set of `representative_indices` among the known
  labels (-1: unknown, never picked); [num] int32 sorted pool indices.

  `features`: [N, d] the pool's, `principal_features(x_train)`.

  Raises:
    DataError: if labels are malformed or fewer than num are known.
  """
  rows = _known_for(labels, num)
  if features.shape[0] != np.shape(labels)[0]:
    raise DataError(f'{features.shape[0]} feature rows but '
                    f'{np.shape(labels)[0]} labels')
  known = np.zeros(features.shape[0], bool)
  known[rows] = True
  return representative_indices(features, known, num, seed)


def initial_indices(labels: np.ndarray, per_class: int, num_classes: int,
                    draw: str, seed: int,
                    features: Optional[np.ndarray] = None) -> np.ndarray:
  """The initial labelled set of `draw` (one of INITIAL_DRAWS): 'balanced'
  per_class examples of each class, 'random' per_class * num_classes
  examples drawn uniformly, 'representative' per_class * num_classes
  examples nearest k-means centres of `features` [N, d] (needed then:
  `principal_features(x_train)`, the same for every seed);
  [per_class * num_classes] int32 sorted pool indices."""
  if draw == 'balanced':
    return balanced_initial_indices(labels, per_class, seed)
  if draw == 'random':
    return random_initial_indices(labels, per_class * num_classes, seed)
  if draw == 'representative':
    if features is None:
      raise DataError("initial draw 'representative' needs the pool's "
                      'features')
    return representative_initial_indices(features, labels,
                                          per_class * num_classes, seed)
  raise DataError(f'initial draw {draw!r} is not one of {INITIAL_DRAWS}')
