r"""What an acquisition costs next to the pool sweep it follows, as JSON lines.

On the paper's MNIST CNN (random parameters and images: speed does not
depend on them), one compiled program per line, timed after a warm-up run
(compilation reported separately as `compile_s`), median of --repeats:

* `pool_sweep`: the E-step's MC sweep over the pool (T' passes, entropy and
  BALD), seconds; what every iteration pays anyway.
* `acquire_top_k`: the top k of BALD over the pool, seconds.
* `acquire_power`: k picks drawn in proportion to BALD (power_bald).
* `acquire_batchbald`: BatchBALD (`loop.batchbald_picks`): the consistent-
  dropout sweep over the candidates plus the greedy selection; also split
  into `batchbald_candidate_sweep` and `batchbald_greedy`.
* `acquire_coreset`, `acquire_badge` (`loop.diverse_picks`): the
  deterministic embedding sweep over the pool plus the greedy k-center /
  k-means++ picks, with the first --labels pool images labelled (core-set's
  centers).

Each line has `ratio_to_pool_sweep`. BatchBALD runs on query iterations
only (every `query_every`-th), the rest every one of them.

  python benchmarks/acquisition_cost.py
  python benchmarks/acquisition_cost.py --pool_size=60000 --out=/tmp/a.jsonl
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
from typing import Any, Optional

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'benchmarks'))

import hot_path  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position

from bass_jax import experiment  # pylint: disable=g-import-not-at-top,wrong-import-position
from bass_jax import loop  # pylint: disable=g-import-not-at-top,wrong-import-position
from bass_jax import mc_dropout  # pylint: disable=g-import-not-at-top,wrong-import-position
from bass_jax import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from bass_jax import selection  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import common  # pylint: disable=g-import-not-at-top,wrong-import-position


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  defaults = common.base_config()
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--pool_size', type=int, default=6000)
  p.add_argument('--query_size', type=int, default=defaults.query_size)
  p.add_argument('--passes', type=int, default=defaults.mc_passes_pool,
                 help="T', the pool sweep's passes")
  p.add_argument('--candidates', type=int,
                 default=defaults.batchbald_candidates)
  p.add_argument('--batchbald_passes', type=int,
                 default=defaults.batchbald_passes)
  p.add_argument('--configs', type=int, default=defaults.batchbald_configs)
  p.add_argument('--labels', type=int, default=200,
                 help="labelled images, core-set's initial centers")
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--out', default=None, help='also append the lines here')
  return p.parse_args(argv)


_round = hot_path._round  # pylint: disable=protected-access


def timed(jitted, *args, repeats: int) -> tuple[list[float], float]:
  """(seconds of each timed run, compile seconds) of jitted(*args)."""
  compiled, compile_s = hot_path.compile_aot(jitted, *args)
  seconds = hot_path.time_runs(
      lambda: jax.block_until_ready(compiled(*args)), repeats)
  return seconds, compile_s


def main(argv: Optional[list[str]] = None) -> list[dict[str, Any]]:
  args = parse_args(argv)
  experiment.use_compilation_cache('')  # Every compile_s compiles.
  platform = jax.devices()[0].platform
  model = models.build_model('cnn', hot_path.NUM_CLASSES)
  key = jax.random.key(args.seed)
  x = hot_path.random_images(key, args.pool_size)
  params = model.init(jax.random.fold_in(key, 1), x[:1])
  available = jnp.ones(args.pool_size, bool)
  chunk = mc_dropout.auto_chunk_size(platform, args.passes)
  bb_chunk = mc_dropout.auto_chunk_size(platform, args.batchbald_passes)
  cfg = loop.LoopConfig(acquisition='batchbald', query_size=args.query_size,
                        batchbald_candidates=args.candidates,
                        batchbald_passes=args.batchbald_passes,
                        batchbald_configs=args.configs,
                        batchbald_chunk_size=bb_chunk)
  k = args.query_size
  em = hot_path.Emitter({
      **hot_path.run_context(), 'model': 'cnn', 'pool_size': args.pool_size,
      'query_size': k, 'passes': args.passes,
      'candidates': min(args.candidates, args.pool_size),
      'batchbald_passes': args.batchbald_passes,
      'batchbald_configs': args.configs, 'labels': args.labels}, args.out)

  sweep = jax.jit(lambda p, x, key: mc_dropout.mc_sweep(
      model.apply, p, x, key, args.passes, chunk, ('bald',)))
  pool_seconds, pool_compile_s = timed(sweep, params, x, key,
                                       repeats=args.repeats)
  pool_s = statistics.median(pool_seconds)
  bald = jax.block_until_ready(sweep(params, x, key)['bald'])

  def candidate_probs(idx, key):
    return mc_dropout.consistent_probs(model.apply, params, x[idx], key,
                                       args.batchbald_passes, bb_chunk)

  candidates, cand_valid = selection.top_k_indices(
      bald, available, min(args.candidates, args.pool_size))
  # The greedy's input, from a program of its own (a lambda, not
  # candidate_probs itself), so the timed sweep below compiles afresh.
  probs = jax.block_until_ready(
      jax.jit(lambda i, k: candidate_probs(i, k))(candidates, key))
  labelled = jnp.arange(args.pool_size) < args.labels
  gt_idx, gt_valid = selection.labelled_slots(labelled, args.labels)

  def diverse(name):
    dcfg = loop.LoopConfig(acquisition=name, query_size=k,
                           eval_chunk_size=mc_dropout.auto_chunk_size(
                               platform))
    return jax.jit(lambda key, p: loop.diverse_picks(
        dcfg, key, model.embed, p, x, gt_idx, gt_valid, ~labelled, None))

  programs = {
      'acquire_top_k': (jax.jit(lambda b: selection.top_k_indices(
          b, available, k)), (bald,)),
      'acquire_power': (jax.jit(lambda key, b: selection.sampled_indices(
          key, b, available, k, 'power', 1.0)), (key, bald)),
      'acquire_batchbald': (jax.jit(lambda key, b: loop.batchbald_picks(
          cfg, key, b, available, candidate_probs)), (key, bald)),
      'batchbald_candidate_sweep': (jax.jit(candidate_probs),
                                    (candidates, key)),
      'batchbald_greedy': (jax.jit(lambda key, p, v: selection.batchbald_indices(
          key, p, v, k, args.configs)), (key, probs, cand_valid)),
      **{f'acquire_{name}': (diverse(name), (key, params))
         for name in loop.DIVERSE_ACQUISITIONS},
  }

  def emit(name: str, seconds: list[float], compile_s: float) -> None:
    value = statistics.median(seconds)
    em.emit(name, _round(value), 's', compile_s=_round(compile_s),
            seconds=[_round(s) for s in seconds],
            stat=f'median of {args.repeats}',
            ratio_to_pool_sweep=_round(value / pool_s))

  emit('pool_sweep', pool_seconds, pool_compile_s)
  for name, (program, program_args) in programs.items():
    emit(name, *timed(program, *program_args, repeats=args.repeats))
  return em.lines


if __name__ == '__main__':
  main()
