"""The README's image-folder walkthrough, run as written on generated images."""

import csv
import os
import re
import shlex
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import REPO


def readme_commands():
  text = (REPO / 'README.md').read_text()
  blocks = re.findall(r'<!-- walkthrough -->\n```bash\n(.*?)```', text, re.S)
  return [l for b in blocks for l in b.strip().splitlines()]


def bar_image(c: int, rng) -> Image.Image:
  """A 16x16 grey image of class c: a bright bar in one of three places."""
  img = rng.uniform(0, 60, (16, 16))
  img[:, 5 * c:5 * c + 5] += 180
  return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def make_images(root, rng):
  """3 classes of bar images (`bar_image`); returns the true classes of
  unlabelled/, by file name."""
  image = lambda c: bar_image(c, rng)
  truth = {}
  for c, name in enumerate(['bars_left', 'bars_middle', 'bars_right']):
    for sub, n in (('labelled', 3), ('test', 10)):
      os.makedirs(root / sub / name, exist_ok=True)
      for k in range(n):
        image(c).save(root / sub / name / f'{k}.png')
  os.makedirs(root / 'unlabelled')
  for k in range(60):
    c = int(rng.integers(3))
    image(c).save(root / 'unlabelled' / f'u{k:03d}.png')
    truth[f'u{k:03d}.png'] = c
  return truth


def test_walkthrough_as_written(tmp_path):
  truth = make_images(tmp_path / 'my_images', np.random.default_rng(0))
  train, export, report, predict = readme_commands()
  # Shorter than the default so the test is quick; the rest is as written.
  train += (' --config.num_iterations=6 --config.initial_epochs=20'
            ' --config.query_every=3 --config.query_size=5'
            ' --config.mc_passes_gt=10')
  env = dict(os.environ, PYTHONPATH=str(REPO))

  # The README's commands run from the repo root with my_images beside
  # launch/ and configs/: mirror that in tmp_path.
  for name in ('launch', 'configs'):
    os.symlink(REPO / name, tmp_path / name)

  def run(cmd):
    args = shlex.split(cmd)
    args[0] = sys.executable
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)

  unlabelled = sorted(truth)
  rounds = 0
  while True:
    res = run(train)
    if res.returncode == 0:
      break
    assert res.returncode == 3, res.stderr[-1500:]
    manifest = re.search(r'fill the label column of (\S+)', res.stdout)[1]
    path = tmp_path / manifest
    ids = [int(r['id']) for r in csv.DictReader(open(path))]
    with open(path, 'w', newline='') as f:  # What the user does by hand.
      w = csv.writer(f)
      w.writerow(['id', 'label'])
      w.writerows([[i, truth[unlabelled[i - 9]]] for i in ids])
    rounds += 1
  # Queries at iterations 0 and 3; the last, 6, asks none.
  assert rounds == 2
  for cmd in (export, report):
    res = run(cmd)
    assert res.returncode == 0, res.stderr[-1500:]
  with open(tmp_path / 'workdirs/my_images/labels.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 69
  human = [r for r in rows if r['source'] == 'human']
  assert len(human) == 9 + 10
  predicted = [r for r in rows if r['source'] != 'human']
  correct = sum(int(r['label']) == truth[os.path.basename(r['file'])]
                for r in predicted)
  assert correct / len(predicted) > 0.8
  assert (tmp_path / 'workdirs/my_images/report/learning_curves.png').exists()
  # New images after the run: flat, so their labels are unknown to it.
  rng = np.random.default_rng(1)
  os.makedirs(tmp_path / 'new_images')
  new_truth = rng.integers(3, size=30)
  for k, c in enumerate(new_truth):
    bar_image(c, rng).save(tmp_path / 'new_images' / f'n{k:02d}.png')
  res = run(predict)
  assert res.returncode == 0, res.stderr[-1500:]
  assert 'wrote workdirs/my_images/predictions.csv: 30 rows, ' in res.stdout
  with open(tmp_path / 'workdirs/my_images/predictions.csv') as f:
    rows = list(csv.DictReader(f))
  assert [os.path.basename(r['file']) for r in rows] == [
      f'n{k:02d}.png' for k in range(30)]
  predicted = np.array([int(r['label']) for r in rows])
  assert np.mean(predicted == new_truth) > 0.8


def test_from_python_as_written(tmp_path, monkeypatch, capsys):
  """The README's 'From Python' snippets on a small .npz, with fewer
  iterations and seeds (the one line changed)."""
  text = (REPO / 'README.md').read_text()
  run_snippet, step_snippet = re.findall(
      r'<!-- from-python -->\n```python\n(.*?)```', text, re.S)
  assert 'config.num_seeds = 3' in run_snippet
  run_snippet = run_snippet.replace(
      'config.num_seeds = 3',
      'config.num_seeds, config.num_iterations = 2, 2\n'
      'config.initial_epochs, config.mc_passes_pool = 3, 2')
  rng = np.random.default_rng(0)
  monkeypatch.chdir(tmp_path)
  np.savez('my_data.npz',
           x_train=rng.uniform(size=(120, 8, 8, 1)).astype(np.float32),
           y_train=np.arange(120) % 10,
           x_test=rng.uniform(size=(40, 8, 8, 1)).astype(np.float32),
           y_test=np.arange(40) % 10)
  np.savez('new.npz', x=rng.uniform(size=(7, 8, 8, 1)).astype(np.float32))
  scope = {}
  exec(run_snippet, scope)  # pylint: disable=exec-used
  assert scope['summary']['num_seeds'] == 2
  assert len(scope['rows']) == 3 * 2  # Iterations 0-2, 2 seeds.
  assert (tmp_path / 'workdirs' / 'mine' / 'summary.json').exists()
  assert '| mnist_active:entropy |' in capsys.readouterr().out  # The table.
  labels = (tmp_path / 'labels.csv').read_text().splitlines()
  assert labels[0] == 'id,label,confidence,source' and len(labels) == 121
  predictions = (tmp_path / 'predictions.csv').read_text().splitlines()
  assert predictions[0] == 'id,label,confidence,entropy,bald,confident'
  assert len(predictions) == 8 and len(scope['table']['label']) == 7
  assert 0 <= scope['theta'] <= 1
  exec(step_snippet, scope)  # pylint: disable=exec-used
  assert np.asarray(scope['metrics']['val_acc']).shape == (2,)
  assert np.asarray(scope['metrics']['iteration']).tolist() == [1, 1]
