"""Bring your own data: image folders, unknown labels (-1) and the export."""

import csv
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bass_jax import data
from bass_jax import experiment
from bass_jax.errors import ConfigError
from bass_jax.errors import DataError
from conftest import REPO
from configs import yinyang

CLASSES = ('bottom', 'left', 'top')  # Sorted, so class index = position.
LABELLED_PER_CLASS, NUM_UNLABELLED, TEST_PER_CLASS = 3, 40, 4


def pattern(cls: int, rng: np.random.Generator, size: int = 8) -> np.ndarray:
  """[size, size] uint8: one bright half (by class) plus noise."""
  img = rng.integers(0, 60, (size, size))
  half = size // 2
  bright = {0: np.s_[half:, :], 1: np.s_[:, :half], 2: np.s_[:half, :]}[cls]
  img[bright] += 180
  return img.astype(np.uint8)


def save(path, pixels: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path)


def make_folder(root, seed: int = 0, test: bool = True):
  """An image folder; returns the true classes of unlabelled/ (sorted)."""
  rng = np.random.default_rng(seed)
  for c, name in enumerate(CLASSES):
    for j in range(LABELLED_PER_CLASS):
      save(root / 'labelled' / name / f'img{j}.png', pattern(c, rng))
    if test:
      for j in range(TEST_PER_CLASS):
        save(root / 'test' / name / f't{j}.png', pattern(c, rng))
  truth = rng.integers(0, len(CLASSES), NUM_UNLABELLED)
  for j, c in enumerate(truth):
    save(root / 'unlabelled' / f'u{j:03d}.png', pattern(c, rng))
  return truth


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp('byod') / 'shapes'
  return root, make_folder(root)


def raises_one_line(match: str, fn, *args, **kwargs) -> str:
  with pytest.raises(DataError) as info:
    fn(*args, **kwargs)
  message = str(info.value)
  assert '\n' not in message and match in message, message
  return message


# ----------------------------------------------------------------------------
# Loading.


def test_load_image_folder(folder):
  root, _ = folder
  ds = data.load_image_folder(root)
  n = LABELLED_PER_CLASS * len(CLASSES)
  assert ds.name == 'shapes' and ds.class_names == CLASSES
  assert ds.num_classes == 3
  assert ds.x_train.shape == (n + NUM_UNLABELLED, 8, 8, 1)
  assert ds.x_test.shape == (TEST_PER_CLASS * 3, 8, 8, 1)
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  np.testing.assert_array_equal(ds.y_train[:n], np.repeat([0, 1, 2], 3))
  assert np.all(ds.y_train[n:] == -1)
  np.testing.assert_array_equal(ds.y_test, np.repeat([0, 1, 2], 4))
  files = data.image_folder_files(root)
  assert files.train[0] == root / 'labelled' / 'bottom' / 'img0.png'
  assert files.train[n] == root / 'unlabelled' / 'u000.png'
  assert [f.name for f in files.train[n:]] == sorted(
      f.name for f in files.train[n:])
  # Pixels in pool order, times the default scale 1/256.
  pixels = np.asarray(Image.open(files.train[n + 5]), np.float32)
  np.testing.assert_array_equal(ds.x_train[n + 5, ..., 0], pixels / 256)


def test_without_test_folder_validates_on_labelled(tmp_path):
  make_folder(tmp_path, test=False)
  ds = data.load_image_folder(tmp_path, scale=1.0)
  n = LABELLED_PER_CLASS * len(CLASSES)
  np.testing.assert_array_equal(ds.x_test, ds.x_train[:n])
  np.testing.assert_array_equal(ds.y_test, ds.y_train[:n])


def test_colour_images_make_every_image_rgb(tmp_path):
  make_folder(tmp_path, test=False)
  rgb = np.zeros((8, 8, 3), np.uint8)
  rgb[..., 0] = 200
  save(tmp_path / 'unlabelled' / 'zz_red.PNG', rgb)
  ds = data.load_image_folder(tmp_path, scale=1.0)
  assert ds.x_train.shape[1:] == (8, 8, 3)
  np.testing.assert_array_equal(ds.x_train[-1], rgb)
  grey = ds.x_train[0]
  np.testing.assert_array_equal(grey[..., 0], grey[..., 2])


def test_load_dataset_routes_folders(folder, tmp_path, monkeypatch):
  root, _ = folder
  assert data.load_dataset(str(root)).class_names == CLASSES
  assert data.load_dataset(str(root), source='folder').x_train.shape[0] == 49
  # A relative name: as given, else under data_dir.
  monkeypatch.chdir(tmp_path)
  ds = data.load_dataset('shapes', data_dir=str(root.parent), scale=1.0)
  assert ds.x_train.max() > 1 and ds.name == 'shapes'
  # Found nowhere: where it was looked for, and how to point at it (a run
  # resumed from another folder than the one it started in).
  message = raises_one_line(
      f'absent: image folder not found in the working folder ({tmp_path}) '
      f'nor under data_dir ({tmp_path})', data.load_dataset, 'absent',
      data_dir=str(tmp_path), source='folder')
  assert '--config.data_dir' in message
  # A folder that is there but lacks labelled/: named as such.
  (tmp_path / 'bare').mkdir()
  raises_one_line('labelled: folder not found', data.load_dataset, 'bare',
                  data_dir=str(tmp_path), source='folder')


@pytest.mark.parametrize('damage, match', [
    (lambda r: save(r / 'unlabelled' / 'big.png', np.zeros((9, 8), np.uint8)),
     'big.png: image is 8x9 pixels but'),
    (lambda r: (r / 'unlabelled' / 'bad.jpg').write_bytes(b'not an image'),
     'bad.jpg: not a readable image'),
    (lambda r: (r / 'labelled' / 'top' / 'img1.png').write_bytes(
        (r / 'labelled' / 'top' / 'img1.png').read_bytes()[:60]),
     'img1.png: not a readable image'),
    (lambda r: save(r / 'test' / 'circle' / 'c.png',
                    np.zeros((8, 8), np.uint8)),
     "circle: class 'circle' is not a class of labelled/"),
    (lambda r: (r / 'labelled' / 'empty').mkdir(), 'empty: no images'),
    (lambda r: save(r / 'labelled' / 'loose.png', np.zeros((8, 8), np.uint8)),
     'loose.png: images in'),
    (lambda r: save(r / 'unlabelled' / 'sub' / 'x.png',
                    np.zeros((8, 8), np.uint8)), 'sub: subfolders are not'),
])
def test_folder_errors_are_one_line(tmp_path, damage, match):
  make_folder(tmp_path)
  damage(tmp_path)
  raises_one_line(match, data.load_image_folder, tmp_path)


def test_mixed_sizes_name_both_sizes(tmp_path):
  make_folder(tmp_path, test=False)
  save(tmp_path / 'unlabelled' / 'u005.png', np.zeros((6, 10), np.uint8))
  message = raises_one_line('u005.png: image is 10x6 pixels',
                            data.load_image_folder, tmp_path)
  assert 'img0.png is 8x8' in message


def test_empty_or_missing_labelled(tmp_path):
  raises_one_line('labelled: folder not found', data.load_image_folder,
                  tmp_path)
  (tmp_path / 'labelled').mkdir()
  raises_one_line('labelled: no class subfolders', data.load_image_folder,
                  tmp_path)


# ----------------------------------------------------------------------------
# Unknown labels through the library.


def test_validate_dataset_accepts_unknown_pool_labels_only():
  good = data.load_yinyang(num_per_class=4)
  y = good.y_train.copy()
  y[:3] = -1
  data.validate_dataset(data.Dataset(good.x_train, y, good.x_test,
                                     good.y_test, 2, 'toy'))
  y[0] = -2
  raises_one_line('y_train has labels in [-2, 1], expected [0, 2) or -1',
                  data.validate_dataset, data.Dataset(
                      good.x_train, y, good.x_test, good.y_test, 2, 'toy'))
  y_test = good.y_test.copy()
  y_test[0] = -1
  raises_one_line('y_test has labels in [-1, 1]', data.validate_dataset,
                  data.Dataset(good.x_train, good.y_train, good.x_test,
                               y_test, 2, 'toy'))
  raises_one_line('class_names', data.validate_dataset, data.Dataset(
      good.x_train, good.y_train, good.x_test, good.y_test, 2, 'toy',
      class_names=('a',)))


def test_balanced_initial_indices_skip_unknown():
  labels = np.array([-1, 0, 1, -1, 0, 1, 1, -1], np.int32)
  for seed in range(5):
    idx = data.balanced_initial_indices(labels, 2, seed)
    assert np.all(labels[idx] >= 0) and idx.shape == (4,)
  raises_one_line('class 0 has only 2', data.balanced_initial_indices,
                  labels, 3, 0)
  raises_one_line('at least one known', data.balanced_initial_indices,
                  np.full(4, -1), 1, 0)


def folder_config(root, **overrides):
  """A run that never queries: every known label, pseudo-labels for the rest."""
  config = yinyang.get_config('initial')
  config.dataset, config.data_source = str(root), 'folder'
  config.pixel_scale = 1 / 256
  config.initial_per_class, config.semi, config.acquisition = -1, 'all', 'none'
  config.num_iterations, config.num_seeds = 2, 2
  config.initial_epochs, config.batch_size = 30, 32
  config.mc_passes_gt, config.mc_passes_pool = 10, 5
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def test_simulated_oracle_refuses_unknown_labels(folder):
  root, _ = folder
  ds = data.load_image_folder(root)
  config = folder_config(root, acquisition='entropy')
  with pytest.raises(ConfigError, match='the pool has 40 unlabelled samples: '
                     'use --config.oracle=files or terminal'):
    experiment.check_against_data(config, ds)
  config.oracle = 'files'
  experiment.check_against_data(config, ds)
  with pytest.raises(ConfigError, match="class 0 has only 3 labelled"):
    experiment.check_against_data(folder_config(root, initial_per_class=4), ds)


# ----------------------------------------------------------------------------
# Export.


def test_export_after_a_run(folder, tmp_path):
  root, truth = folder
  workdir = tmp_path / 'run'
  summary = experiment.run(folder_config(root), str(workdir))
  assert summary['num_labels'] == 9  # Only the known labels.
  out = tmp_path / 'out' / 'labels.csv'
  res = subprocess.run(
      [sys.executable, str(REPO / 'launch' / 'export.py'),
       f'--workdir={workdir}', f'--out={out}', '--seed_index=1'],
      capture_output=True, text=True, timeout=300, cwd=REPO)
  assert res.returncode == 0, res.stderr[-2000:]
  assert '49 rows (9 human, 40 pseudo, 0 model)' in res.stdout
  with open(out, newline='') as f:
    rows = list(csv.reader(f))
  assert rows[0] == ['id', 'label', 'confidence', 'source', 'class_name',
                     'file']
  rows = rows[1:]
  files = data.image_folder_files(root).train
  assert [int(r[0]) for r in rows] == list(range(49))
  assert [r[5] for r in rows] == [str(f) for f in files]
  for r in rows[:9]:  # Human rows keep their folder's label.
    assert r[3] == 'human' and float(r[2]) == 1.0
    assert CLASSES[int(r[1])] == r[4] == files[int(r[0])].parent.name
  assert {r[3] for r in rows[9:]} == {'pseudo'}  # semi 'all': all in D.
  confidence = np.array([float(r[2]) for r in rows])
  assert np.all((confidence >= 1 / 3 - 1e-6) & (confidence <= 1))
  predicted = np.array([int(r[1]) for r in rows[9:]])
  assert np.mean(predicted == truth) > 0.5  # Chance is 1/3.
  bad = subprocess.run(
      [sys.executable, str(REPO / 'launch' / 'export.py'),
       f'--workdir={tmp_path / "nowhere"}', f'--out={out}'],
      capture_output=True, text=True, timeout=120, cwd=REPO)
  assert bad.returncode == 2 and bad.stderr.count('\n') == 1, bad.stderr
  assert 'nowhere holds no run' in bad.stderr
  # Edited images: the run's labels would land on other pixels.
  unlabelled = sorted((root / 'unlabelled').iterdir())
  kept = unlabelled[1].read_bytes()  # The folder is the module's: put back.
  try:
    shutil.copyfile(unlabelled[0], unlabelled[1])
    edited = subprocess.run(
        [sys.executable, str(REPO / 'launch' / 'export.py'),
         f'--workdir={workdir}', f'--out={out}'],
        capture_output=True, text=True, timeout=300, cwd=REPO)
  finally:
    unlabelled[1].write_bytes(kept)
  assert edited.returncode == 2, edited.stderr
  assert edited.stderr.startswith(
      f'error: the data differ from those the run in {workdir} was made '
      'with (fingerprint '), edited.stderr
  assert edited.stderr.rstrip().endswith(
      "restore them, or give the run's own (--data_dir where they moved)")
