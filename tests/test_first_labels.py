"""launch/first_labels.py: the first images of a folder to label, answered
and moved into labelled/<class>/, from where a run starts."""

import csv
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from bass_jax import data
from bass_jax import first_labels
from bass_jax.errors import DataError
from conftest import REPO
from test_folder_data import CLASSES, pattern, save

SCRIPT = str(REPO / 'launch' / 'first_labels.py')


def unlabelled_folder(root, num: int = 30, seed: int = 0) -> np.ndarray:
  """root/unlabelled/u000.png ... of CLASSES' patterns; returns the truth."""
  rng = np.random.default_rng(seed)
  truth = rng.integers(0, len(CLASSES), num)
  for j, c in enumerate(truth):
    save(root / 'unlabelled' / f'u{j:03d}.png', pattern(c, rng))
  return truth


def first_labels_cli(*args, stdin: str = ''):
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True,
                        text=True, input=stdin, timeout=120, check=False)


def fill(root, truth, skip=(), leave=()):
  """Answers the pending manifest with the true class names ('?' for the
  ids in skip; ids in leave stay empty)."""
  picks = first_labels.pending_picks(root)
  rows = []
  for i, name in enumerate(picks['files']):
    label = CLASSES[truth[int(name[1:4])]]
    rows.append([i, '?' if i in skip else '' if i in leave else label])
  with open(root / 'first_labels' / 'manifest.csv', 'w', newline='') as f:
    csv.writer(f).writerows([['id', 'label']] + rows)
  return picks


def test_pick_answer_move_then_a_run_reads_them(tmp_path):
  root = tmp_path / 'shapes'
  truth = unlabelled_folder(root)
  # No class known yet: named in one line.
  proc = first_labels_cli(f'--images={root}')
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      f'error: {root}: 0 class(es) known (none); name them all with '
      '--classes=cat,dog,... (or make labelled/<class_name>/ folders)']

  proc = first_labels_cli(f'--images={root}', '--classes=top,left,bottom')
  assert proc.returncode == 3, proc.stderr
  assert 'waiting for labels: fill the label column of' in proc.stdout
  assert 'then run the same command again' in proc.stdout
  folder = root / 'first_labels'
  picks = first_labels.pending_picks(root)
  assert picks['class_names'] == sorted(CLASSES)  # 2 per class by default.
  assert len(picks['files']) == 6 and picks['pick'] == 'representative'
  assert {p.name for p in folder.iterdir()} == {
      'manifest.csv', 'picks.json', 'contact_sheet.png',
      *(f'{i}.png' for i in range(6))}
  # The picks are data.representative_indices' of the unlabelled images.
  x = data.load_inputs(root / 'unlabelled', (), 1 / 256).x
  want = data.representative_indices(data.principal_features(x),
                                     np.ones(len(x), bool), 6, 0)
  assert picks['files'] == [f'u{i:03d}.png' for i in want]

  # A deleted manifest is written again.
  (folder / 'manifest.csv').unlink()
  assert first_labels_cli(f'--images={root}').returncode == 3
  assert (folder / 'manifest.csv').exists()

  # Part-way: still waiting, nothing moved; flags for the next picks noted.
  fill(root, truth, leave=(5,))
  proc = first_labels_cli(f'--images={root}', '--num=9')
  assert proc.returncode == 3
  assert '1 of 6 samples still without a label' in proc.stdout
  assert 'apply to the next picks' in proc.stdout
  assert not (root / 'labelled').exists()

  # Pick 5 is the only 'left' image: skipped, it leaves its class empty.
  fill(root, truth, skip=(5,))
  proc = first_labels_cli(f'--images={root}')
  assert proc.returncode == 0, proc.stderr
  assert 'moved 5 image(s)' in proc.stdout and '1 skipped' in proc.stdout
  assert 'labelled/ now holds bottom: 3, left: 0, top: 2' in proc.stdout
  assert 'class(es) left have no labelled image yet' in proc.stdout
  with pytest.raises(DataError, match='left: no images'):
    data.load_image_folder(root)  # The run's one line.
  for i, name in enumerate(picks['files']):
    moved = root / 'labelled' / CLASSES[truth[int(name[1:4])]] / name
    assert moved.exists() == (i != 5)
    assert (root / 'unlabelled' / name).exists() == (i == 5)
  assert {p.name for p in folder.iterdir()} == {'moved.csv'}
  with open(folder / 'moved.csv', newline='') as f:
    assert len(list(csv.reader(f))) == 1 + 5

  # More picks, answered on the terminal ('xx' asked again), among the
  # images still unlabelled (the skipped one included); the empty folder
  # keeps 'left' a class.
  proc = first_labels_cli(f'--images={root}', '--num=4', '--terminal',
                          '--pick=random', stdin='xx\n0\n1\n2\n2\n')
  assert proc.returncode == 0, proc.stderr
  assert "'xx' is not a class number or name" in proc.stdout
  assert 'moved 4 image(s)' in proc.stdout
  ds = data.load_image_folder(root)  # What a run of configs/folder.py reads.
  assert ds.class_names == tuple(sorted(CLASSES))
  np.testing.assert_array_equal(np.bincount(ds.y_train[ds.y_train >= 0]),
                                [4, 1, 4])
  assert ds.x_train.shape[0] == 30 and np.sum(ds.y_train < 0) == 21


def test_later_picks_cover_what_labelled_images_do_not(tmp_path):
  """With images in labelled/, representative picks are those of k-means
  over all images with the labelled ones as fixed centres; hidden and
  non-image files in the class folders are not images."""
  root = tmp_path / 'shapes'
  unlabelled_folder(root, num=20)
  rng = np.random.default_rng(1)
  for j in range(3):
    save(root / 'labelled' / 'top' / f'l{j}.png', pattern(2, rng))
  save(root / 'labelled' / 'top' / '._l0.png', pattern(0, rng))
  (root / 'labelled' / 'top' / 'notes.txt').write_text('not an image')
  (root / 'labelled' / 'left').mkdir()
  files, images = first_labels.picked(root, 4, 'representative', 0)
  x = data.load_inputs(root / 'unlabelled', (), 1 / 256).x
  labelled = data.read_images(
      [root / 'labelled' / 'top' / f'l{j}.png' for j in range(3)])
  features = data.principal_features(np.concatenate([x, labelled]))
  is_labelled = np.arange(23) >= 20
  want = data.representative_indices(features, ~is_labelled, 4, 0,
                                     covered=is_labelled)
  assert [f.name for f in files] == [f'u{i:03d}.png' for i in want]
  np.testing.assert_array_equal(images, x[want])
  assert want.tolist() != data.representative_indices(
      features, ~is_labelled, 4, 0).tolist()
  assert first_labels.class_counts(root, ('left', 'top', 'bottom')) == {
      'left': 0, 'top': 3, 'bottom': 0}


def test_bad_picks_are_one_line_before_anything_moves(tmp_path):
  root = tmp_path / 'shapes'
  unlabelled_folder(root, num=8)
  with pytest.raises(DataError, match=r'num=9 images to label must be in '
                     r'1\.\.8'):
    first_labels.picked(root, 9, 'representative', 0)
  with pytest.raises(DataError, match="pick 'typical' is not one of"):
    first_labels.picked(root, 2, 'typical', 0)
  with pytest.raises(DataError, match='cannot be a folder name'):
    first_labels.class_names(root, ['cat', 'a/b'])
  files, images = first_labels.picked(root, 3, 'random', 1)
  first_labels.write_picks(root, files, images, ('cat', 'dog'), 'random', 1)
  picks = first_labels.pending_picks(root)
  answers = {0: 0, 1: 1, 2: 0}
  (root / 'labelled' / 'dog').mkdir(parents=True)
  (root / 'labelled' / 'dog' / picks['files'][1]).write_bytes(b'')
  with pytest.raises(DataError, match='exists already'):
    first_labels.apply_answers(root, picks, answers)
  (root / 'labelled' / 'dog' / picks['files'][1]).unlink()
  (root / 'unlabelled' / picks['files'][2]).unlink()
  with pytest.raises(DataError, match='picked but no longer there'):
    first_labels.apply_answers(root, picks, answers)
  # Nothing moved, the picks still pending.
  assert (root / 'unlabelled' / picks['files'][0]).exists()
  assert first_labels.pending_picks(root) == picks
  (first_labels.folder_of(root) / 'picks.json').write_text('{"files": 3}')
  with pytest.raises(DataError, match='not the picks this tool wrote'):
    first_labels.pending_picks(root)
  # A stop part-way through the moves: the rerun moves the rest.
  (first_labels.folder_of(root) / 'picks.json').unlink()
  files, images = first_labels.picked(root, 2, 'random', 1)
  first_labels.write_picks(root, files, images, ('cat', 'dog'), 'random', 1)
  picks = first_labels.pending_picks(root)
  (root / 'labelled' / 'cat').mkdir(exist_ok=True)
  (root / 'unlabelled' / picks['files'][0]).rename(
      root / 'labelled' / 'cat' / picks['files'][0])
  assert first_labels.apply_answers(root, picks, {0: 0, 1: 1}) == [
      (picks['files'][1], 'dog')]
  assert first_labels.pending_picks(root) is None
  # The classes of labelled/'s folders (an empty one too) join --classes.
  assert first_labels.class_names(root, ['ant']) == ('ant', 'cat', 'dog')


def test_readme_command_as_written(tmp_path):
  text = (REPO / 'README.md').read_text()
  (line,) = re.findall(r'<!-- first_labels -->\n```bash\n(.*?)\n```', text,
                       re.S)
  args = shlex.split(line)
  assert args[:2] == ['python', 'launch/first_labels.py'], args
  truth = unlabelled_folder(tmp_path / 'my_images', num=20)
  names = sorted(['cat', 'dog', 'bird'])  # The README's, as class indices.
  run = lambda: subprocess.run([sys.executable, SCRIPT, *args[2:]],
                               capture_output=True, text=True,
                               cwd=tmp_path, timeout=120, check=False)
  proc = run()
  assert proc.returncode == 3, proc.stderr
  root = tmp_path / 'my_images'
  picks = first_labels.pending_picks(root)
  assert picks['class_names'] == names and len(picks['files']) == 6
  with open(root / 'first_labels' / 'manifest.csv', 'w') as f:
    f.write('id,label\n' + ''.join(
        f'{i},{names[truth[int(n[1:4])]]}\n'
        for i, n in enumerate(picks['files'])))
  proc = run()
  assert proc.returncode == 0, proc.stderr
  assert 'moved 6 image(s)' in proc.stdout
  assert 'now train on them: python launch/train.py' in proc.stdout
  assert len(list((root / 'unlabelled').iterdir())) == 14
