r"""Sampled BatchBALD against exact greedy BatchBALD on a trained toy model.

Trains a one-seed Yin-Yang run (configs/yinyang_acquisition.py,
`batchbald,batch18` by default) up to just before a query iteration, draws
consistent-dropout samples of the whole pool from its model, and picks the
first --picks points three ways: greedy BatchBALD with every label
configuration enumerated (exact; 2^(picks-1) of them at the last step),
`selection.batchbald_indices` (the sampled estimate the library uses), and
BALD's top k. Prints one JSON line: the three pick lists, their overlaps
and the median pairwise distance of each (a spread of the batch in the
plane).

  python benchmarks/batchbald_check.py
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Optional

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'benchmarks'))

# pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import numpy as np

import hot_path
from bass_jax import data
from bass_jax import experiment
from bass_jax import mc_dropout
from bass_jax import selection
from bass_jax import uncertainty
from configs import yinyang_acquisition
# pylint: enable=g-import-not-at-top


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--config_arg', default='batchbald,batch18')
  p.add_argument('--iterations', type=int, default=18,
                 help='iterations run before the query (18: the second '
                 'batch18 query)')
  p.add_argument('--initial_epochs', type=int, default=None,
                 help="iteration 0's epochs (default: the config's)")
  p.add_argument('--data_seed', type=int, default=1000)
  p.add_argument('--passes', type=int, default=100)
  p.add_argument('--picks', type=int, default=9)
  p.add_argument('--configs', type=int, default=20000,
                 help='sampled configurations of the library estimate')
  return p.parse_args(argv)


def exact_greedy(probs: np.ndarray, available: np.ndarray,
                 k: int) -> list[int]:
  """Greedy BatchBALD with every label configuration enumerated.

  probs: [M, T, C] float64 consistent samples. q[s, t] holds prod_i
  p_t(y_i^s) for every configuration s of the picks so far.
  """
  m, t, _ = probs.shape
  expected = -np.sum(np.where(probs > 0, probs * np.log(
      np.where(probs > 0, probs, 1.0)), 0.0), axis=-1).mean(axis=-1)
  q, picks = np.ones((1, t)), []
  for _ in range(k):
    joint = np.einsum('st,mtc->msc', q, probs) / t
    h = -np.sum(np.where(joint > 0, joint * np.log(
        np.where(joint > 0, joint, 1.0)), 0.0), axis=(1, 2))
    score = np.where(available, h - expected, -np.inf)
    score[picks] = -np.inf
    pick = int(np.argmax(score))
    picks.append(pick)
    q = (q[:, None, :] * probs[pick].T[None, :, :]).reshape(-1, t)
  return picks


def spread(x: np.ndarray, idx: list[int]) -> float:
  """Median pairwise distance of the points x[idx]."""
  p = x[np.asarray(idx)]
  d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
  return float(np.median(d[np.triu_indices(len(idx), 1)]))


def main(argv: Optional[list[str]] = None) -> dict:
  args = parse_args(argv)
  config = yinyang_acquisition.get_config(args.config_arg)
  config.num_seeds, config.data_per_seed = 1, False
  config.compilation_cache = ''
  if args.initial_epochs is not None:
    config.initial_epochs = args.initial_epochs
  ds = data.load_yinyang(seed=args.data_seed)
  run = experiment.build(config, ds)
  state = run.state
  for _ in range(args.iterations):
    state, _ = run.step(state, run.pool)
  params = jax.tree_util.tree_map(lambda a: a[0], state.train.params)
  available = ~np.asarray(state.labelled[0])
  probs = mc_dropout.consistent_probs(run.model.apply, params, run.pool.x,
                                      jax.random.key(7), args.passes, 1000)
  exact = exact_greedy(np.asarray(probs, np.float64), available, args.picks)
  sampled, _ = selection.batchbald_indices(
      jax.random.key(1), probs, jnp.asarray(available), args.picks,
      args.configs)
  sampled = [int(i) for i in sampled]
  bald = np.asarray(uncertainty.mutual_information(probs.transpose(1, 0, 2)))
  top = [int(i) for i in np.argsort(-np.where(available, bald, -np.inf))[
      :args.picks]]
  x = np.asarray(ds.x_train)
  line = {
      'benchmark': 'batchbald_check', 'config_arg': args.config_arg,
      'iterations': args.iterations, 'data_seed': args.data_seed,
      'passes': args.passes, 'configs': args.configs, 'picks': args.picks,
      'exact': exact, 'sampled': sampled, 'bald_top_k': top,
      'sampled_in_exact': len(set(sampled) & set(exact)),
      'exact_in_bald_top_k': len(set(exact) & set(top)),
      'spread_exact': round(spread(x, exact), 3),
      'spread_sampled': round(spread(x, sampled), 3),
      'spread_bald_top_k': round(spread(x, top), 3),
      **hot_path.run_context(),
  }
  print(json.dumps(line), flush=True)
  return line


if __name__ == '__main__':
  main()
