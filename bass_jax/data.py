"""Datasets of the paper (SPEC §3): Yin-Yang toy, MNIST (idx or tfds), npz.

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

SOURCES = ('auto', 'idx', 'tfds', 'npz')
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
    x_train: [N, ...] float32 pool inputs (images: [N, H, W, C]).
    y_train: [N] int32 pool labels in [0, num_classes).
    x_test: [M, ...] float32 test inputs, same trailing shape as x_train.
    y_test: [M] int32 test labels in [0, num_classes).
    num_classes: number of classes C.
    name: short name for logs ('mnist', 'yinyang', an npz file's stem).
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  name: str


# ----------------------------------------------------------------------------
# Validation.


def _check_split(name: str, split: str, x: np.ndarray, y: np.ndarray,
                 num_classes: int) -> None:
  """Raises DataError unless x/y of one split are well-formed."""
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
  if y.min() < 0 or y.max() >= num_classes:
    raise DataError(f'{where} has labels in [{y.min()}, {y.max()}], expected '
                    f'[0, {num_classes}); fix the labels or num_classes')


def validate_dataset(ds: Dataset) -> Dataset:
  """Checks a Dataset's invariants and returns it unchanged.

  Args:
    ds: the dataset to check.

  Returns:
    `ds` itself.

  Raises:
    DataError: if a split is empty, inputs are not finite float32 with equal
      trailing shapes in train and test, labels are not int32 [N] in
      [0, num_classes), or num_classes / name are malformed.
  """
  if not isinstance(ds.name, str) or not ds.name:
    raise DataError(f'dataset name {ds.name!r} must be a non-empty string')
  if (isinstance(ds.num_classes, bool) or
      not isinstance(ds.num_classes, (int, np.integer)) or
      ds.num_classes < 1):
    raise DataError(f'dataset {ds.name!r}: num_classes={ds.num_classes!r} '
                    'must be a positive int')
  _check_split(ds.name, 'train', ds.x_train, ds.y_train, ds.num_classes)
  _check_split(ds.name, 'test', ds.x_test, ds.y_test, ds.num_classes)
  if ds.x_train.shape[1:] != ds.x_test.shape[1:]:
    raise DataError(f'dataset {ds.name!r}: x_train examples have shape '
                    f'{ds.x_train.shape[1:]} but x_test examples have '
                    f'{ds.x_test.shape[1:]}; they must match')
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
    y int32 in 0..9, num_classes 10.
  """
  return _load_idx_directory(directory, MNIST_MD5 if verify_md5 else None,
                             'mnist', scale)


# ----------------------------------------------------------------------------
# tensorflow-datasets.


def _import_tfds():
  """tensorflow_datasets, with TensorFlow kept off the GPUs (JAX owns them)."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
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
    Dataset with x [N, ...] float32 (images [N, H, W, C]) = raw * scale and
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
  """x of an npz file as float32 * scale; x: [N, ...] real."""
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
  return _scaled(x, scale)


def _npz_labels(path: pathlib.Path, key: str, y: np.ndarray) -> np.ndarray:
  """y of an npz file as int32 [N] >= 0."""
  if not np.issubdtype(y.dtype, np.integer):
    raise DataError(f'{path}: {key} has dtype {y.dtype}, expected integer '
                    'class labels')
  if y.ndim != 1 or y.shape[0] == 0:
    raise DataError(f'{path}: {key} has shape {y.shape}, expected a '
                    'non-empty [N] array')
  if y.min() < 0 or y.max() > np.iinfo(np.int32).max:
    raise DataError(f'{path}: {key} has labels in [{y.min()}, {y.max()}], '
                    'expected 0-based class ids in [0, 2**31)')
  return y.astype(np.int32)


def load_npz(path: PathLike, scale: float = 1.0) -> Dataset:
  """A dataset from an .npz file with keys x_train, y_train, x_test, y_test.

  Args:
    path: the .npz file (np.savez / np.savez_compressed; no pickles).
    scale: input multiplier applied after conversion to float32.

  Returns:
    Dataset named after the file's stem; num_classes is the optional scalar
    key `num_classes`, else the largest label + 1.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(f'{path}: npz file not found; check the dataset path')
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {k: npz[k] for k in npz.files}
  except (OSError, ValueError, EOFError) as e:
    raise DataError(f'{path}: not a readable npz file ({_first_line(e)}); '
                    'write it with np.savez') from None
  missing = [k for k in NPZ_KEYS if k not in arrays]
  if missing:
    raise DataError(f'{path}: missing key(s) {", ".join(missing)} (has '
                    f'{", ".join(sorted(arrays)) or "none"}); save '
                    f'{", ".join(NPZ_KEYS)}')
  x_train = _npz_inputs(path, 'x_train', arrays['x_train'], scale)
  x_test = _npz_inputs(path, 'x_test', arrays['x_test'], scale)
  y_train = _npz_labels(path, 'y_train', arrays['y_train'])
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
# Dispatch by name.


def default_data_dir() -> Optional[pathlib.Path]:
  """The data root: $BASS_DATA_DIR, else ../shared/data if that exists.

  Returns:
    The directory, or None if neither is set / present (relative to the cwd).
  """
  if os.environ.get('BASS_DATA_DIR'):
    return pathlib.Path(os.environ['BASS_DATA_DIR'])
  shared = pathlib.Path('..', 'shared', 'data')
  return shared.resolve() if shared.is_dir() else None


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
  - 'mnist', 'fashion_mnist', 'kmnist' with source 'auto' or 'idx': the idx
    files in <data_dir>/<name>/ (md5-verified for mnist).
  - source 'tfds', or source 'auto' for any other name that tfds knows, or
    for an idx name whose idx files are absent: `load_tfds` with the cache
    dir $TFDS_DATA_DIR, else <data_dir>/tfds if present, else
    ~/tensorflow_datasets, and manual dir <data_dir>/<name> if present (then
    preparation is offline; without it tfds may download).

  Args:
    name: dataset name or .npz path.
    data_dir: the data root; None = $BASS_DATA_DIR, else ../shared/data.
    source: 'auto', 'idx', 'tfds' or 'npz'.
    scale: input multiplier for idx, tfds and npz data.
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
    return load_npz(_npz_path(name, root), scale=scale)
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
  return load_tfds(name, data_dir=_tfds_cache_dir(root),
                   manual_dir=manual_dir, scale=scale)


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


def balanced_initial_indices(labels: np.ndarray, per_class: int,
                             seed: int) -> np.ndarray:
  """Class-balanced initial labelled set: per_class random examples per class.

  Classes are 0 .. labels.max(); each must have at least per_class examples.
  Class c's draw uses np.random.default_rng(seed) after classes 0 .. c-1's.

  Args:
    labels: [N] integer pool labels >= 0.
    per_class: examples to draw (without replacement) from each class.
    seed: seed of the draw.

  Returns:
    [per_class * C] int32 sorted pool indices.

  Raises:
    DataError: if labels are malformed or a class has fewer than per_class
      examples.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(
      labels.dtype, np.integer) or labels.min() < 0:
    raise DataError(f'initial labels need non-empty [N] integer labels >= 0, '
                    f'got {labels.dtype} shape {labels.shape}')
  if per_class < 0:
    raise DataError(f'initial per_class={per_class} must be >= 0')
  rng = np.random.default_rng(seed)
  counts = np.bincount(labels)
  chosen = []
  for c, count in enumerate(counts):
    if count < per_class:
      raise DataError(f'class {c} has only {count} pool examples, fewer than '
                      f'the {per_class} initial labels per class; lower '
                      'initial_per_class or enlarge the pool')
    chosen.append(rng.choice(np.flatnonzero(labels == c), per_class,
                             replace=False))
  return np.sort(np.concatenate(chosen)).astype(np.int32)
