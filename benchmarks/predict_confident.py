r"""Predicting unseen images with a trained run: how far `confident` goes.

  python benchmarks/predict_confident.py [--workdir=DIR] [--out=FILE] \
      [--num_seeds=3]

Runs the paper's main MNIST row at CPU size (`configs/mnist.py:
alldata_maxent,small`: 2,000-image pool, 130 labels), then
`launch/predict.py` on MNIST's test images 2,000-9,999 (8,000 the run never
saw: its `small` test split is the first 2,000), for seed index 0 and for
the `--ensemble` of every seed. Prints one JSON line per predictor: the
accuracy on all rows, the share of rows marked `confident` (entropy below
theta, the mean entropy on the run's labelled images) and the accuracy on
those and on the rest, and the accuracy on the most certain half of the
rows by entropy and by BALD (about 20 minutes on a 2-core CPU for 3 seeds);
writes each predictor's CSV and accuracy-coverage plot (`--plot`) to the
workdir.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys
import tempfile
from typing import Optional

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'benchmarks'))

# pylint: disable=g-import-not-at-top,wrong-import-position
import hot_path
from init_params_transfer import train as run_process
from bass_jax import data
from bass_jax import predict
# pylint: enable=g-import-not-at-top,wrong-import-position

CONFIG = 'configs/mnist.py:alldata_maxent,small'
FIRST_UNSEEN = 2000  # The `small` test split is the first 2,000 images.


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--workdir', default=None,
                 help='where the run writes (default: a temporary folder)')
  p.add_argument('--out', default=None, help='also append the lines here')
  p.add_argument('--num_seeds', type=int, default=3)
  return p.parse_args(argv)


def read_predictions(path: pathlib.Path) -> dict[str, np.ndarray]:
  """The CSV's columns as arrays (floats)."""
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def most_certain_accuracy(hit: np.ndarray, score: np.ndarray,
                          share: float) -> float:
  """Accuracy on the `share` of rows with the lowest `score` (hit, score:
  [N]; ties broken by row order)."""
  keep = int(round(share * hit.size))
  return float(predict.coverage_accuracy(hit, score)[keep - 1])


def summary(table: dict[str, np.ndarray]) -> dict[str, float]:
  """Accuracy overall, of the confident rows and of the rest, and of the
  most certain half by entropy and by BALD."""
  hit = table['label'] == table['true_label']
  confident = table['confident'] == 1
  return {
      'accuracy': float(hit.mean()),
      'confident_share': float(confident.mean()),
      'confident_accuracy': float(hit[confident].mean()),
      'other_accuracy': float(hit[~confident].mean()),
      'half_by_entropy_accuracy': most_certain_accuracy(
          hit, table['entropy'], 0.5),
      'half_by_bald_accuracy': most_certain_accuracy(hit, table['bald'], 0.5),
  }


def main(argv: Optional[list[str]] = None) -> list[dict]:
  args = parse_args(argv)
  root = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix='predict_'))
  root.mkdir(parents=True, exist_ok=True)
  launch = REPO / 'launch'
  workdir = root / 'run'
  train_s = run_process([str(launch / 'train.py'), f'--config={CONFIG}',
                         f'--config.num_seeds={args.num_seeds}',
                         f'--workdir={workdir}'], REPO)
  mnist = data.load_dataset('mnist')  # $BASS_DATA_DIR or ../shared/data.
  inputs = root / 'unseen.npz'
  # Floats, used as saved: the pixels exactly as the run read its own.
  np.savez(inputs, x=mnist.x_test[FIRST_UNSEEN:],
           y=mnist.y_test[FIRST_UNSEEN:])
  val_acc = json.loads((workdir / 'summary.json').read_text())['val_acc']
  em = hot_path.Emitter(
      {**hot_path.run_context(), 'config': CONFIG,
       'num_seeds': args.num_seeds, 'train_s': round(train_s, 1),
       'val_acc_mean': val_acc['mean'],
       'inputs': f'MNIST test images {FIRST_UNSEEN}-9,999'}, args.out)
  lines = []
  for name, extra in (('seed_index_0', []), ('ensemble', ['--ensemble'])):
    out = root / f'{name}.csv'
    predict_s = run_process([str(launch / 'predict.py'),
                             f'--workdir={workdir}', f'--inputs={inputs}',
                             f'--out={out}',
                             f'--plot={root / f"{name}_coverage.png"}',
                             *extra], REPO)
    stats = summary(read_predictions(out))
    lines.append(em.emit('predict_confident', stats['confident_accuracy'],
                         'fraction (accuracy of the confident rows)',
                         predictor=name, predict_s=round(predict_s, 1),
                         **stats))
  return lines


if __name__ == '__main__':
  main()
