r"""A second round of representative picks, with and without the first
round's images held as covered (what `launch/first_labels.py` does when
labelled/ holds images).

On MNIST's training images (no labels used to pick): round 1 picks --num
images by k-means (`data.representative_indices`); round 2 picks --num more
among the rest, once plainly (a k-means of the rest) and once with round
1's images as fixed k-means centres (`covered=`). For each seed and way:
how many classes the 2 x --num picks hold, and the test accuracy of a
1-nearest-neighbour classifier of the picks in the principal-component
features (a label-free stand-in for what a first model can learn). Prints
one JSON line per way: means over seeds, per-seed values, and paired
differences.

  python benchmarks/second_round_picks.py [--num=10] [--seeds=10]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
from typing import Optional

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'benchmarks'))

# pylint: disable=g-import-not-at-top
import numpy as np

import hot_path
from bass_jax import data
# pylint: enable=g-import-not-at-top

WAYS = ('plain', 'covered')


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--data_dir', default=os.environ.get(
      'BASS_DATA_DIR', str(REPO.parent / 'shared' / 'data')))
  p.add_argument('--num', type=int, default=10, help='picks per round')
  p.add_argument('--seeds', type=int, default=10)
  p.add_argument('--pool_size', type=int, default=0,
                 help='the first N training images (0: all 60,000)')
  p.add_argument('--test_size', type=int, default=0,
                 help='the first N test images (0: all 10,000)')
  return p.parse_args(argv)


def nearest_neighbour_accuracy(features: np.ndarray, labels: np.ndarray,
                               test_features: np.ndarray,
                               test_labels: np.ndarray) -> float:
  """Test accuracy of 1-NN over `features` [k, d] with `labels` [k]."""
  distances = data._squared_distances(test_features, features)  # pylint: disable=protected-access
  return float(np.mean(labels[distances.argmin(1)] == test_labels))


def two_rounds(features: np.ndarray, num: int, seed: int
               ) -> dict[str, np.ndarray]:
  """{way: [2 num] pool indices}: round 1's picks, then round 2's."""
  first = data.representative_indices(
      features, np.ones(len(features), bool), num, seed)
  taken = np.zeros(len(features), bool)
  taken[first] = True
  return {way: np.concatenate([first, data.representative_indices(
      features, ~taken, num, seed,
      covered=taken if way == 'covered' else None)]) for way in WAYS}


def main(argv: Optional[list[str]] = None) -> list[dict]:
  args = parse_args(argv)
  ds = data.load_dataset('mnist', data_dir=args.data_dir)
  n, m = args.pool_size or len(ds.x_train), args.test_size or len(ds.x_test)
  x, y = ds.x_train[:n], ds.y_train[:n]
  # One projection of pool and test images, as a 1-NN needs.
  features = data.principal_features(np.concatenate([x, ds.x_test[:m]]))
  pool, test = features[:n], features[n:]
  results = {way: {'classes': [], 'nn_acc': []} for way in WAYS}
  for seed in range(args.seeds):
    for way, idx in two_rounds(pool, args.num, seed).items():
      results[way]['classes'].append(len(set(y[idx].tolist())))
      results[way]['nn_acc'].append(nearest_neighbour_accuracy(
          pool[idx], y[idx], test, ds.y_test[:m]))
  em = hot_path.Emitter({**hot_path.run_context(), 'num': args.num,
                         'seeds': args.seeds, 'pool_size': n,
                         'test_size': m}, None)
  for way in WAYS:
    r = results[way]
    diff = [a - b for a, b in zip(r['nn_acc'], results['plain']['nn_acc'])]
    em.emit('second_round_picks', round(statistics.mean(r['nn_acc']), 4),
            '1-NN test accuracy', way=way,
            classes=statistics.mean(r['classes']),
            per_seed_classes=r['classes'],
            per_seed_nn_acc=[round(a, 4) for a in r['nn_acc']],
            nn_acc_diff_to_plain=[round(d, 4) for d in diff])
  return em.lines


if __name__ == '__main__':
  main()
