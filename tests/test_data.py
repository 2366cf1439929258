"""Tests of bass_jax.data: Yin-Yang, idx and tfds MNIST, npz, subsets."""

import gzip
import hashlib
import os
import pathlib
import socket

import zipfile

import numpy as np
import pytest

from bass_jax import data
from bass_jax.errors import DataError

DATA_DIR = pathlib.Path(os.environ.get('BASS_DATA_DIR') or
                        pathlib.Path(__file__).resolve().parents[2] /
                        'shared' / 'data')
MNIST_DIR = DATA_DIR / 'mnist'
needs_mnist = pytest.mark.skipif(
    not all((MNIST_DIR / f).is_file() for f in data.IDX_FILES.values()),
    reason=f'MNIST idx files not found in {MNIST_DIR} (set BASS_DATA_DIR)')

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def raises_one_line(match: str, func, *args, **kwargs) -> str:
  """Calls func, asserts a one-line DataError containing match, returns it."""
  with pytest.raises(DataError) as info:
    func(*args, **kwargs)
  message = str(info.value)
  assert '\n' not in message, message
  assert match in message, message
  return message


# A few IDX type bytes and their big-endian dtypes.
IDX_DTYPES = {0x08: np.dtype('u1'), 0x0B: np.dtype('>i2'),
              0x0D: np.dtype('>f4')}


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
  """An uncompressed idx file holding array (big-endian)."""
  dtype = IDX_DTYPES[type_byte]
  header = bytes([0, 0, type_byte, array.ndim])
  header += np.asarray(array.shape, '>u4').tobytes()
  return header + np.asarray(array, dtype).tobytes()


def sorted_examples(x: np.ndarray, y: np.ndarray) -> list[tuple[int, str]]:
  """Order-free fingerprint of a split: sorted (label, image md5) pairs."""
  return sorted((int(label), hashlib.md5(image.tobytes()).hexdigest())
                for image, label in zip(x, y))


@pytest.fixture(scope='module')
def mnist() -> data.Dataset:
  return data.load_mnist_idx(MNIST_DIR)


@pytest.fixture(scope='module')
def tfds_mnist(tmp_path_factory) -> data.Dataset:
  """MNIST prepared by tfds from the idx files, with the network blocked."""

  def no_network(*args, **kwargs):
    raise RuntimeError(f'network access during offline tfds test: {args}')

  cache = tmp_path_factory.mktemp('tfds')
  with pytest.MonkeyPatch.context() as patch:
    # A download attempt fails at once instead of silently succeeding online.
    patch.setattr(socket.socket, 'connect', no_network)
    patch.setattr(socket, 'create_connection', no_network)
    patch.setattr(socket, 'getaddrinfo', no_network)
    return data.load_tfds('mnist', data_dir=cache, manual_dir=MNIST_DIR)


# ----------------------------------------------------------------------------
# Yin-Yang.


def test_yinyang_shapes_and_balance():
  ds = data.load_yinyang(num_per_class=500, seed=3)
  assert ds.x_train.shape == ds.x_test.shape == (1000, 2)
  assert ds.x_train.dtype == ds.x_test.dtype == np.float32
  assert ds.y_train.dtype == ds.y_test.dtype == np.int32
  np.testing.assert_array_equal(ds.y_train, np.repeat([0, 1], 500))
  np.testing.assert_array_equal(ds.y_test, ds.y_train)
  assert ds.num_classes == 2 and ds.name == 'yinyang'
  assert not np.allclose(ds.x_train, ds.x_test)  # An independent draw.
  again = data.load_yinyang(num_per_class=500, seed=3)
  np.testing.assert_array_equal(again.x_train, ds.x_train)
  np.testing.assert_array_equal(again.x_test, ds.x_test)
  other = data.load_yinyang(num_per_class=500, seed=4)
  assert not np.allclose(other.x_train, ds.x_train)


def test_yinyang_samples_follow_the_spec_distribution():
  n = 20000
  x, y = data.yinyang_samples(n, np.random.default_rng(0))
  assert x.shape == (2 * n, 2) and y.shape == (2 * n,)
  sigma_phi = 0.33 * np.pi
  # E[sin phi] for phi ~ N(pi/2, sigma_phi^2).
  mean_sin = np.exp(-sigma_phi**2 / 2)
  for c, center, sign in ((0, (-0.33, 0.1), -1), (1, (0.33, -0.1), 1)):
    offset = x[y == c] - np.asarray(center, np.float32)
    radius = np.linalg.norm(offset, axis=1)
    assert abs(radius.mean() - 1.0) < 0.01
    assert abs(radius.std() - 0.25) < 0.01
    np.testing.assert_allclose(offset.mean(0), [0.0, sign * mean_sin],
                               atol=0.02)
    # phi is recovered up to sign flips of the y offset; its spread is pi*0.33.
    phi = np.arctan2(sign * offset[:, 1], offset[:, 0])
    phi = np.where(phi < -np.pi / 2, phi + 2 * np.pi, phi)
    assert abs(np.median(phi) - np.pi / 2) < 0.03


def test_yinyang_rejects_empty():
  raises_one_line('num_per_class', data.load_yinyang, num_per_class=0)


# ----------------------------------------------------------------------------
# read_idx.


@needs_mnist
def test_read_idx_real_files():
  x_train = data.read_idx(MNIST_DIR / 'train-images-idx3-ubyte.gz',
                          data.MNIST_MD5['train-images-idx3-ubyte.gz'])
  assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
  x_test = data.read_idx(MNIST_DIR / 't10k-images-idx3-ubyte.gz')
  assert x_test.shape == (10000, 28, 28) and x_test.dtype == np.uint8
  assert x_train.max() == 255 and x_test.min() == 0
  y_train = data.read_idx(MNIST_DIR / 'train-labels-idx1-ubyte.gz',
                          data.MNIST_MD5['train-labels-idx1-ubyte.gz'])
  y_test = data.read_idx(MNIST_DIR / 't10k-labels-idx1-ubyte.gz',
                         data.MNIST_MD5['t10k-labels-idx1-ubyte.gz'])
  assert y_train.shape == (60000,) and y_test.shape == (10000,)
  assert np.bincount(y_train).tolist() == TRAIN_COUNTS
  assert np.bincount(y_test).tolist() == TEST_COUNTS


@pytest.mark.parametrize('compress', [False, True])
@pytest.mark.parametrize('type_byte', [0x08, 0x0B, 0x0D])
def test_read_idx_round_trip(tmp_path, compress, type_byte):
  array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
  raw = idx_bytes(array, type_byte)
  path = tmp_path / 'a.idx'
  path.write_bytes(gzip.compress(raw) if compress else raw)
  read = data.read_idx(path, hashlib.md5(path.read_bytes()).hexdigest())
  assert read.shape == (2, 3, 4)
  assert read.dtype == IDX_DTYPES[type_byte].newbyteorder('=')
  np.testing.assert_array_equal(read, array)
  read[0, 0, 0] = 7  # Writable, not a view of the file's bytes.


def test_read_idx_md5_mismatch(tmp_path):
  path = tmp_path / 'labels-idx1-ubyte.gz'
  path.write_bytes(gzip.compress(idx_bytes(np.arange(5))))
  raises_one_line('labels-idx1-ubyte.gz: md5', data.read_idx, path,
                  '0' * 32)


@pytest.mark.parametrize('head', [b'\x01\x00\x08\x01', b'\x00\x00\x07\x01',
                                  b'\x00\x00\x08\x00', b'\x1a'])
def test_read_idx_bad_magic(tmp_path, head):
  path = tmp_path / 'bad-magic-idx1-ubyte'
  path.write_bytes(head + np.asarray([3], '>u4').tobytes() + b'abc')
  raises_one_line('bad-magic-idx1-ubyte: bad idx magic', data.read_idx, path)


def test_read_idx_bad_magic_inside_gzip(tmp_path):
  path = tmp_path / 'notidx.gz'
  path.write_bytes(gzip.compress(b'hello, world'))
  raises_one_line('notidx.gz: bad idx magic', data.read_idx, path)


def test_read_idx_truncated_payload(tmp_path):
  path = tmp_path / 'short-idx3-ubyte'
  path.write_bytes(idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-10])
  raises_one_line('short-idx3-ubyte: idx payload truncated', data.read_idx,
                  path)
  path.write_bytes(idx_bytes(np.zeros((4, 28, 28), np.uint8)) + b'x')
  raises_one_line('trailing bytes', data.read_idx, path)
  path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
  raises_one_line('truncated idx header', data.read_idx, path)


def test_read_idx_truncated_gzip(tmp_path):
  path = tmp_path / 'cut-idx3-ubyte.gz'
  compressed = gzip.compress(idx_bytes(np.arange(10000) % 256))
  path.write_bytes(compressed[:len(compressed) // 2])
  raises_one_line('cut-idx3-ubyte.gz: corrupt or truncated gzip',
                  data.read_idx, path)


def test_read_idx_missing_file(tmp_path):
  raises_one_line('nothing-here.gz: idx file not found', data.read_idx,
                  tmp_path / 'nothing-here.gz')


# ----------------------------------------------------------------------------
# MNIST from idx files.


@needs_mnist
def test_load_mnist_idx(mnist):
  assert mnist.x_train.shape == (60000, 28, 28, 1)
  assert mnist.x_test.shape == (10000, 28, 28, 1)
  assert mnist.x_train.dtype == mnist.x_test.dtype == np.float32
  assert mnist.y_train.dtype == mnist.y_test.dtype == np.int32
  assert mnist.num_classes == 10 and mnist.name == 'mnist'
  assert mnist.x_train.min() == 0 and mnist.x_train.max() == 255 / 256
  assert np.bincount(mnist.y_train).tolist() == TRAIN_COUNTS
  assert np.bincount(mnist.y_test).tolist() == TEST_COUNTS
  raw = data.read_idx(MNIST_DIR / 't10k-images-idx3-ubyte.gz')
  np.testing.assert_array_equal(mnist.x_test[..., 0], raw / np.float32(256))


def link_mnist(directory: pathlib.Path, skip: str = '') -> None:
  """Symlinks the real MNIST files into directory, except `skip`."""
  directory.mkdir(exist_ok=True)
  for name in data.IDX_FILES.values():
    if name != skip:
      (directory / name).symlink_to(MNIST_DIR / name)


@needs_mnist
def test_load_mnist_idx_missing_file(tmp_path):
  link_mnist(tmp_path, skip='t10k-labels-idx1-ubyte.gz')
  raises_one_line('t10k-labels-idx1-ubyte.gz: idx file not found',
                  data.load_mnist_idx, tmp_path)


@needs_mnist
def test_load_mnist_idx_bad_labels(tmp_path):
  # The train split is read first, so broken train labels fail fast.
  link_mnist(tmp_path, skip='train-labels-idx1-ubyte.gz')
  labels = np.full(60000, 10, np.uint8)
  (tmp_path / 'train-labels-idx1-ubyte.gz').write_bytes(
      gzip.compress(idx_bytes(labels)))
  raises_one_line('train-labels-idx1-ubyte.gz: md5', data.load_mnist_idx,
                  tmp_path)
  raises_one_line('train-labels-idx1-ubyte.gz: label 10 out of range',
                  data.load_mnist_idx, tmp_path, verify_md5=False)
  (tmp_path / 'train-labels-idx1-ubyte.gz').write_bytes(
      gzip.compress(idx_bytes(np.zeros(59999, np.uint8))))
  raises_one_line('expected (60000,) uint8', data.load_mnist_idx, tmp_path,
                  verify_md5=False)


def test_default_data_dir(monkeypatch, tmp_path):
  monkeypatch.setenv('BASS_DATA_DIR', str(tmp_path))
  assert data.default_data_dir() == tmp_path
  monkeypatch.delenv('BASS_DATA_DIR')
  (tmp_path / 'shared' / 'data').mkdir(parents=True)
  (tmp_path / 'repo').mkdir()
  monkeypatch.chdir(tmp_path / 'repo')
  assert data.default_data_dir() == (tmp_path / 'shared' / 'data').resolve()
  # From any other folder: the data beside the checkout, else none.
  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(data, 'CHECKOUT_DATA_DIR', tmp_path / 'repo' / 'x')
  assert data.default_data_dir() is None
  monkeypatch.setattr(data, 'CHECKOUT_DATA_DIR', tmp_path / 'shared' / 'data')
  assert data.default_data_dir() == (tmp_path / 'shared' / 'data').resolve()


@needs_mnist
def test_load_dataset_reads_idx(mnist, monkeypatch):
  monkeypatch.setenv('BASS_DATA_DIR', str(DATA_DIR))
  monkeypatch.chdir('/')
  ds = data.load_dataset('mnist', scale=1.0)
  assert ds.name == 'mnist'
  np.testing.assert_array_equal(ds.x_test, mnist.x_test * 256)
  np.testing.assert_array_equal(ds.y_train, mnist.y_train)
  np.testing.assert_array_equal(ds.y_test, mnist.y_test)


# ----------------------------------------------------------------------------
# tensorflow-datasets.


@needs_mnist
def test_tfds_offline_matches_idx(tfds_mnist, mnist):
  ds = tfds_mnist
  assert ds.x_train.shape == (60000, 28, 28, 1)
  assert ds.x_test.shape == (10000, 28, 28, 1)
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert ds.num_classes == 10 and ds.name == 'mnist'
  # tfds shuffles the examples, so compare the splits as multisets.
  assert (sorted_examples(ds.x_train, ds.y_train) ==
          sorted_examples(mnist.x_train, mnist.y_train))
  assert (sorted_examples(ds.x_test, ds.y_test) ==
          sorted_examples(mnist.x_test, mnist.y_test))


@needs_mnist
def test_tfds_manual_dir_must_hold_every_file(tfds_mnist, tmp_path):
  del tfds_mnist  # Only imports tensorflow once for the whole module.
  manual = tmp_path / 'manual'
  link_mnist(manual, skip='train-images-idx3-ubyte.gz')
  raises_one_line('lacks train-images-idx3-ubyte.gz', data.load_tfds,
                  'mnist', data_dir=tmp_path / 'cache', manual_dir=manual)
  raises_one_line('does not exist', data.load_tfds, 'mnist',
                  data_dir=tmp_path / 'cache', manual_dir=tmp_path / 'none')


@needs_mnist
def test_tfds_manual_file_with_wrong_checksum(tfds_mnist, tmp_path):
  del tfds_mnist
  manual = tmp_path / 'manual'
  link_mnist(manual, skip='t10k-labels-idx1-ubyte.gz')
  (manual / 't10k-labels-idx1-ubyte.gz').write_bytes(b'not the labels')
  raises_one_line('wrong checksum', data.load_tfds, 'mnist',
                  data_dir=tmp_path / 'cache', manual_dir=manual)


@needs_mnist
def test_tfds_unknown_name(tfds_mnist, tmp_path):
  del tfds_mnist
  raises_one_line("'no_such_dataset_xyz' is unknown", data.load_dataset,
                  'no_such_dataset_xyz', data_dir=str(tmp_path))


def test_load_dataset_routes_tfds(monkeypatch, tmp_path):
  calls = []
  monkeypatch.setattr(data, 'load_tfds', lambda *a, **k: calls.append((a, k)))
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path / 'cache'))
  (tmp_path / 'mnist').mkdir()
  data.load_dataset('mnist', data_dir=str(tmp_path), source='tfds', scale=0.5)
  assert calls[-1] == (('mnist',), dict(data_dir=tmp_path / 'cache',
                                        manual_dir=tmp_path / 'mnist',
                                        scale=0.5))
  # 'auto' without idx files and any other name go to tfds too.
  monkeypatch.delenv('TFDS_DATA_DIR')
  data.load_dataset('cifar10', data_dir=str(tmp_path))
  assert calls[-1] == (('cifar10',), dict(data_dir=None, manual_dir=None,
                                          scale=1 / 256))


def test_auto_source_never_downloads_idx_datasets(monkeypatch, tmp_path):
  calls = []
  monkeypatch.setattr(data, 'load_tfds', lambda *a, **k: calls.append((a, k)))
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path / 'cache'))
  # A data dir without mnist/ and nothing prepared: one line, no tfds call.
  message = raises_one_line('not there', data.load_dataset, 'mnist',
                            data_dir=str(tmp_path / 'typo'))
  assert 'train-images-idx3-ubyte.gz' in message and 'data_source=tfds' in (
      message)
  assert not calls
  # A folder with some of the idx files: it names the missing ones (once it
  # went to tfds with the folder as a manual dir).
  partial = tmp_path / 'partial' / 'mnist'
  partial.mkdir(parents=True)
  for name in list(data.IDX_FILES.values())[:3]:
    (partial / name).write_bytes(b'')
  message = raises_one_line('lacks', data.load_dataset, 'mnist',
                            data_dir=str(tmp_path / 'partial'))
  assert list(data.IDX_FILES.values())[3] in message
  assert not calls
  # What tfds prepared before (its cache layout) is used offline.
  prepared = tmp_path / 'cache' / 'mnist' / '3.0.1'
  prepared.mkdir(parents=True)
  (prepared / 'dataset_info.json').write_text('{}')
  data.load_dataset('mnist', data_dir=str(tmp_path / 'typo'))
  assert calls[-1][1]['data_dir'] == tmp_path / 'cache'


def test_load_dataset_rejects_bad_source_and_names(tmp_path):
  raises_one_line("'nowhere' is unknown", data.load_dataset, 'mnist',
                  source='nowhere')
  raises_one_line('yinyang', data.load_dataset, 'yinyang', source='idx')
  raises_one_line("not 'cifar10'", data.load_dataset, 'cifar10',
                  data_dir=str(tmp_path), source='idx')
  raises_one_line('idx file not found', data.load_dataset, 'mnist',
                  data_dir=str(tmp_path), source='idx')


def test_load_dataset_yinyang_seed():
  ds = data.load_dataset('yinyang', seed=5)
  np.testing.assert_array_equal(ds.x_train,
                                data.load_yinyang(seed=5).x_train)


# ----------------------------------------------------------------------------
# npz.


def toy_arrays(**overrides) -> dict[str, np.ndarray]:
  """Valid npz content: uint8 images and int64 labels; overrides replace."""
  rng = np.random.default_rng(0)
  arrays = dict(x_train=rng.integers(0, 256, (12, 4, 4, 1), np.uint8),
                y_train=np.arange(12) % 3,
                x_test=rng.integers(0, 256, (5, 4, 4, 1), np.uint8),
                y_test=np.arange(5) % 3)
  arrays.update(overrides)
  return {k: v for k, v in arrays.items() if v is not None}


def test_npz_round_trip(tmp_path):
  arrays = toy_arrays()
  path = tmp_path / 'toy.npz'
  np.savez(path, **arrays)
  ds = data.load_npz(path, scale=0.5)
  assert ds.name == 'toy' and ds.num_classes == 3
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  np.testing.assert_array_equal(ds.x_train, arrays['x_train'] * 0.5)
  np.testing.assert_array_equal(ds.y_test, arrays['y_test'])
  np.savez_compressed(path, num_classes=7, **arrays)
  assert data.load_npz(path).num_classes == 7
  via_name = data.load_dataset(str(path), scale=1.0)
  np.testing.assert_array_equal(via_name.x_test, arrays['x_test'])
  # Relative names resolve under data_dir; source 'npz' adds the suffix.
  via_dir = data.load_dataset('toy', data_dir=str(tmp_path), source='npz')
  np.testing.assert_array_equal(via_dir.x_test, arrays['x_test'] / 256)
  # Float inputs are taken as saved (scaled already); -1 marks a pool
  # sample's label unknown.
  floats = {k: v / 255 if k.startswith('x') else v for k, v in arrays.items()}
  floats['y_train'] = np.where(np.arange(12) < 6, floats['y_train'], -1)
  np.savez(path, **floats)
  ds = data.load_dataset(str(path), scale=1 / 256)
  np.testing.assert_array_equal(ds.x_train,
                                floats['x_train'].astype(np.float32))
  assert ds.y_train.tolist() == [0, 1, 2, 0, 1, 2] + [-1] * 6
  assert ds.num_classes == 3


@pytest.mark.parametrize('overrides, match', [
    (dict(y_test=None), 'missing key(s) y_test'),
    (dict(x_train=np.full((3, 2), np.nan), y_train=np.zeros(3, int)),
     'x_train has 6 NaN/Inf'),
    (dict(x_test=np.array([[np.inf, 0.0]] * 5), y_test=np.zeros(5, int),
          x_train=np.zeros((12, 2))), 'x_test has 5 NaN/Inf'),
    (dict(y_train=np.arange(12) - 2),
     'y_train has labels in [-2, 9], expected 0-based class ids in [0, '
     '2**31) or -1 (unknown)'),
    (dict(y_test=np.arange(5) - 1), 'y_test has labels in [-1, 3], expected '
     '0-based class ids in [0, 2**31)'),
    (dict(num_classes=np.int64(2)), 'labels in [0, 2], expected [0, 2)'),
    (dict(x_test=np.zeros((0, 4, 4, 1)), y_test=np.zeros(0, int)),
     'x_test has shape (0, 4, 4, 1)'),
    (dict(y_train=np.zeros(0, int)), 'y_train has shape (0,)'),
    (dict(y_train=np.zeros(12)), 'y_train has dtype float64'),
    (dict(y_train=np.zeros(11, int)), 'y_train has shape (11,)'),
    (dict(x_test=np.zeros((5, 3, 3, 1))), 'must match'),
    (dict(num_classes=np.zeros(2, int)), 'num_classes must be a scalar'),
])
def test_npz_validation_errors(tmp_path, overrides, match):
  path = tmp_path / 'broken.npz'
  np.savez(path, **toy_arrays(**overrides))
  message = raises_one_line(match, data.load_npz, path)
  assert 'broken.npz' in message


def test_npz_missing_and_unreadable(tmp_path):
  raises_one_line('absent.npz: npz file not found', data.load_npz,
                  tmp_path / 'absent.npz')
  # A relative name is looked for in the working folder, then under
  # data_dir: the error names both.
  message = raises_one_line(
      'absent.npz: npz file not found in the working folder',
      data.load_dataset, 'absent.npz', data_dir=str(tmp_path))
  assert f'nor under data_dir ({tmp_path})' in message
  (tmp_path / 'junk.npz').write_bytes(b'not a zip')
  raises_one_line('junk.npz: not an npz file', data.load_npz,
                  tmp_path / 'junk.npz')
  # A .npy under an npz's name once reached a TypeError traceback.
  with open(tmp_path / 'one_array.npz', 'wb') as f:
    np.save(f, np.zeros(3))
  raises_one_line('one_array.npz: not an npz file', data.load_npz,
                  tmp_path / 'one_array.npz')
  # A zip whose member is no .npy.
  with zipfile.ZipFile(tmp_path / 'bad_member.npz', 'w') as z:
    for key in data.NPZ_KEYS:
      z.writestr(f'{key}.npy', b'not an array')
  raises_one_line('bad_member.npz: not a readable npz file (x_test, x_train,'
                  ' y_test, y_train not numpy arrays)', data.load_npz,
                  tmp_path / 'bad_member.npz')


def test_validate_dataset_checks_dtypes():
  good = data.load_yinyang(num_per_class=4)
  assert data.validate_dataset(good) is good
  bad_x = data.Dataset(good.x_train.astype(np.float64), good.y_train,
                       good.x_test, good.y_test, 2, 'toy')
  raises_one_line("'toy': x_train must be a float32", data.validate_dataset,
                  bad_x)
  bad_y = data.Dataset(good.x_train, good.y_train, good.x_test,
                       good.y_test.astype(np.int64), 2, 'toy')
  raises_one_line('y_test must be an int32', data.validate_dataset, bad_y)
  raises_one_line('num_classes=0', data.validate_dataset,
                  data.Dataset(good.x_train, good.y_train, good.x_test,
                               good.y_test, 0, 'toy'))


# ----------------------------------------------------------------------------
# subset and initial labels.


def test_subset():
  ds = data.load_yinyang(num_per_class=50)
  small = data.subset(ds, 30, 7)
  assert small.x_train.shape == (30, 2) and small.y_test.shape == (7,)
  np.testing.assert_array_equal(small.x_train, ds.x_train[:30])
  np.testing.assert_array_equal(small.y_test, ds.y_test[:7])
  assert small.num_classes == 2 and small.name == 'yinyang'
  whole = data.subset(ds, None, None)
  assert whole.x_train.shape == ds.x_train.shape
  raises_one_line('pool size 101', data.subset, ds, 101, None)
  raises_one_line('test size 0', data.subset, ds, None, 0)


@needs_mnist
def test_balanced_initial_indices_mnist(mnist):
  idx = data.balanced_initial_indices(mnist.y_train, 10, seed=0)
  assert idx.dtype == np.int32 and idx.shape == (100,)
  assert np.all(np.diff(idx) > 0)  # Sorted and unique.
  assert np.bincount(mnist.y_train[idx], minlength=10).tolist() == [10] * 10
  again = data.balanced_initial_indices(mnist.y_train, 10, seed=0)
  np.testing.assert_array_equal(idx, again)
  other = data.balanced_initial_indices(mnist.y_train, 10, seed=1)
  assert not np.array_equal(idx, other)


def test_balanced_initial_indices_small():
  labels = np.array([2, 0, 1, 0, 2, 1, 0, 1, 2, 2], np.int32)
  idx = data.balanced_initial_indices(labels, 2, seed=3)
  assert idx.shape == (6,)
  assert np.bincount(labels[idx]).tolist() == [2, 2, 2]
  seen = {tuple(data.balanced_initial_indices(labels, 2, s)) for s in range(20)}
  assert len(seen) > 1
  raises_one_line('class 0 has only 3', data.balanced_initial_indices,
                  labels, 4, 0)
  raises_one_line('class 1 has only 0', data.balanced_initial_indices,
                  np.array([0, 0, 2, 2]), 1, 0)


def test_random_initial_indices_draw_known_labels_of_any_class():
  # 3 classes, 3 unknown (-1) labels never drawn.
  labels = np.array([2, 0, 1, 0, 2, 1, 0, 1, 2, 2, -1, -1, -1, 0, 0, 0],
                    np.int32)
  idx = data.random_initial_indices(labels, 6, seed=3)
  assert idx.dtype == np.int32 and idx.shape == (6,)
  assert np.all(np.diff(idx) > 0)  # Sorted and unique.
  assert np.all(labels[idx] >= 0)
  np.testing.assert_array_equal(idx, data.random_initial_indices(labels, 6, 3))
  draws = [data.random_initial_indices(labels, 6, s) for s in range(50)]
  assert len({tuple(d) for d in draws}) > 10
  # Uniform over the 13 known: class 0 (6 of them) is drawn more often than
  # 2 per draw on average, which a per-class draw never does.
  counts = np.array([np.bincount(labels[d], minlength=3) for d in draws])
  assert counts[:, 0].mean() == pytest.approx(6 * 6 / 13, abs=0.4)
  assert (counts != 2).any(axis=1).mean() > 0.5
  # The dispatcher: 'balanced' is the per-class draw of the same seed.
  np.testing.assert_array_equal(
      data.initial_indices(labels, 2, 3, 'balanced', 5),
      data.balanced_initial_indices(labels, 2, 5))
  np.testing.assert_array_equal(
      data.initial_indices(labels, 2, 3, 'random', 5),
      data.random_initial_indices(labels, 6, 5))
  raises_one_line('has 13 known labels, fewer than the 14',
                  data.random_initial_indices, labels, 14, 0)
  raises_one_line("initial draw 'stratified' is not one of",
                  data.initial_indices, labels, 2, 3, 'stratified', 0)


def _blobs(sizes, dim=20, seed=0):
  """([N, dim] points of well-separated Gaussian blobs of the given sizes,
  [N] blob index)."""
  rng = np.random.default_rng(seed)
  means = rng.normal(0.0, 10.0, (len(sizes), dim))
  blob = np.repeat(np.arange(len(sizes)), sizes)
  return (means[blob] + rng.normal(0.0, 1.0, (blob.size, dim))).astype(
      np.float32), blob


def test_representative_indices_pick_each_clusters_most_central_sample():
  # Blobs of 200 .. 5 points: a uniform draw of 5 misses the small ones
  # most of the time; k-means finds every blob, and its pick is the point
  # nearest the blob's mean (the points are the features).
  x, blob = _blobs((200, 100, 40, 15, 5))
  central = [int(np.flatnonzero(blob == b)[np.argmin(np.sum(
      (x[blob == b] - x[blob == b].mean(0)) ** 2, 1))]) for b in range(5)]
  for seed in range(5):
    idx = data.representative_indices(x, np.ones(len(x), bool), 5, seed)
    assert idx.dtype == np.int32
    np.testing.assert_array_equal(idx, sorted(central))
  misses = [len(set(blob[data.random_initial_indices(blob, 5, s)])) < 5
            for s in range(20)]
  assert np.mean(misses) > 0.5
  # Only candidates are picked: without a blob's centre, its next nearest.
  candidates = np.ones(len(x), bool)
  candidates[central[4]] = False
  idx = data.representative_indices(x, candidates, 5, 0)
  assert central[4] not in idx and np.sum(blob[idx] == 4) == 1
  # More picks than blobs: distinct samples, at least one of each blob.
  idx = data.representative_indices(x, np.ones(len(x), bool), 12, 1)
  assert len(set(idx)) == 12 and set(blob[idx]) == set(range(5))
  assert data.representative_indices(x, candidates, 0, 0).shape == (0,)
  raises_one_line('num=6 must be in 0..5', data.representative_indices,
                  x, blob == 4, 6, 0)


def test_representative_picks_go_where_the_covered_samples_are_not():
  """Samples labelled already (`covered`) hold k-means centres in place:
  3 picks take the blobs they leave uncovered, where the plain k-means
  spends one on the largest blob every time."""
  x, blob = _blobs((200, 100, 40, 15, 5))
  central = [int(np.flatnonzero(blob == b)[np.argmin(np.sum(
      (x[blob == b] - x[blob == b].mean(0)) ** 2, 1))]) for b in range(5)]
  covered = np.zeros(len(x), bool)
  covered[central[:2]] = True  # One of each of the two largest blobs.
  for seed in range(10):
    plain = data.representative_indices(x, ~covered, 3, seed)
    assert 0 in blob[plain], seed
    idx = data.representative_indices(x, ~covered, 3, seed, covered=covered)
    assert not set(blob[idx]) & {0, 1}, seed
  np.testing.assert_array_equal(
      data.representative_indices(x, ~covered, 3, 0, covered=covered),
      sorted(central[2:]))
  # Nothing covered: the plain picks.
  np.testing.assert_array_equal(
      data.representative_indices(x, ~covered, 3, 0,
                                  covered=np.zeros(len(x), bool)),
      data.representative_indices(x, ~covered, 3, 0))


def test_principal_features_keep_the_distances_of_low_rank_inputs():
  # Inputs [N, 8, 8, 3] spanning 3 directions: 3 components keep every
  # pairwise distance; inputs of <= dims values are only centred.
  rng = np.random.default_rng(1)
  x = (rng.normal(size=(300, 3)) @ rng.normal(size=(3, 192))).reshape(
      300, 8, 8, 3).astype(np.float32)
  features = data.principal_features(x, dims=3)
  assert features.shape == (300, 3) and features.dtype == np.float64
  flat = x.reshape(300, -1)
  for i, j in ((0, 1), (5, 200), (17, 299)):
    assert np.linalg.norm(features[i] - features[j]) == pytest.approx(
        np.linalg.norm(flat[i] - flat[j]), rel=1e-5)
  small = rng.normal(size=(10, 2)).astype(np.float32)
  np.testing.assert_allclose(data.principal_features(small),
                             small - small.astype(np.float64).mean(0),
                             atol=1e-12)


def test_representative_initial_draw_covers_more_mnist_classes(mnist):
  # 20 labels of a 2,000-image pool: k-means over pixels sees digits a
  # uniform draw of 20 misses (measured: 10 vs 8.7 of 10 over 20 seeds).
  x, y = mnist.x_train[:2000], mnist.y_train[:2000]
  x = data.principal_features(x)
  def classes(draw, seed):
    idx = data.initial_indices(y, 2, 10, draw, seed, x)
    assert idx.shape == (20,) and len(set(idx)) == 20
    return len(set(y[idx]))
  rep = [classes('representative', s) for s in range(5)]
  rnd = [classes('random', s) for s in range(5)]
  assert np.mean(rep) > np.mean(rnd) and min(rep) == 10, (rep, rnd)
  np.testing.assert_array_equal(
      data.initial_indices(y, 2, 10, 'representative', 3, x),
      data.representative_initial_indices(x, y, 20, 3))
  labels = np.where(np.arange(2000) < 1990, -1, y).astype(np.int32)
  raises_one_line('has 10 known labels, fewer than the 20',
                  data.representative_initial_indices, x, labels, 20, 0)
  picks = data.representative_initial_indices(x, labels, 10, 0)
  np.testing.assert_array_equal(picks, np.arange(1990, 2000))
  raises_one_line("'representative' needs the pool's features",
                  data.initial_indices, y, 2, 10, 'representative', 0)
