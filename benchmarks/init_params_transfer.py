r"""Starting from trained parameters: a few labels of one's own digits.

  python benchmarks/init_params_transfer.py [--workdir=DIR] [--out=FILE]

Trains the MNIST CNN on 1,000 labels (`configs/mnist.py:supervised_1000,
small`, one seed), exports its parameters (`launch/export.py
--params_out`), and writes an image folder from MNIST's *test* set (none of
it seen by that model): per class 3 labelled, 30 unlabelled and 20 test
images. `configs/folder.py` then runs on it twice, from the exported
parameters and from a random init, `initial_epochs` 5; each stops at its
first query (exit status 3, waiting for labels), after iteration 0. Prints
one JSON line per run with the validation accuracy of that initial model
(about 4 minutes on a 2-core CPU, most of it the 1,000-label model).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Optional

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'benchmarks'))

# pylint: disable=g-import-not-at-top,wrong-import-position
import hot_path
from bass_jax import data
# pylint: enable=g-import-not-at-top,wrong-import-position

PER_CLASS = {'labelled': 3, 'unlabelled': 30, 'test': 20}


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--workdir', default=None,
                 help='where the runs write (default: a temporary folder)')
  p.add_argument('--out', default=None, help='also append the lines here')
  p.add_argument('--seed', type=int, default=0,
                 help='which test images the folder takes')
  return p.parse_args(argv)


def write_digits(root: pathlib.Path, seed: int) -> None:
  """MNIST test images as PNGs in `configs/folder.py`'s layout."""
  mnist = data.load_dataset('mnist')  # $BASS_DATA_DIR or ../shared/data.
  x, y = mnist.x_test, mnist.y_test
  order = np.random.default_rng(seed).permutation(len(y))
  for c in range(10):
    picks = iter(i for i in order if y[i] == c)
    for part, n in PER_CLASS.items():
      folder = root / part / (str(c) if part != 'unlabelled' else '')
      folder.mkdir(parents=True, exist_ok=True)
      for _ in range(n):
        i = next(picks)
        # Back to the file's bytes: the loader scales by 1/256 again.
        pixels = np.round(x[i, :, :, 0] * 256).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f'{i}.png')


def train(args: list[str], cwd: pathlib.Path, ok=(0,)) -> float:
  """Wall seconds of one launch/train.py or export.py process."""
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, *args], cwd=cwd, text=True,
                        capture_output=True, check=False)
  if proc.returncode not in ok:
    sys.exit(f'{" ".join(args)} failed ({proc.returncode}):\n'
             f'{proc.stderr[-2000:]}')
  return time.perf_counter() - start


def first_val_acc(workdir: pathlib.Path) -> float:
  rows = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text()
          .splitlines()]
  return next(r['val_acc'] for r in rows if r['iteration'] == 0)


def main(argv: Optional[list[str]] = None) -> list[dict]:
  args = parse_args(argv)
  root = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix='init_'))
  root.mkdir(parents=True, exist_ok=True)
  write_digits(root / 'my_digits', args.seed)
  launch = REPO / 'launch'
  source = ['--config=configs/mnist.py:supervised_1000,small',
            '--config.num_seeds=1', f'--workdir={root / "mnist_1000"}']
  source_s = train([str(launch / 'train.py'), *source], REPO)
  params = root / 'mnist_cnn.msgpack'
  train([str(launch / 'export.py'), f'--workdir={root / "mnist_1000"}',
         f'--params_out={params}'], REPO)
  context = {**hot_path.run_context(), 'source_s': round(source_s, 1),
             'source_val_acc': json.loads(
                 (root / 'mnist_1000' / 'summary.json').read_text())
                                 ['val_acc']['mean'],
             'folder': PER_CLASS, 'seed': args.seed}
  em = hot_path.Emitter(context, args.out)
  lines = []
  for name, extra in (('init_params', [f'--config.init_params={params}']),
                      ('random_init', [])):
    workdir = root / name
    # Exit status 3: waiting for the labels of iteration 0's query.
    train([str(launch / 'train.py'), f'--config={REPO / "configs/folder.py"}',
           '--config.dataset=my_digits', '--config.initial_epochs=5',
           f'--workdir={workdir}', *extra], root, ok=(3,))
    lines.append(em.emit('initial_model_val_acc', first_val_acc(workdir),
                         'fraction', start=name))
  return lines


if __name__ == '__main__':
  main()
