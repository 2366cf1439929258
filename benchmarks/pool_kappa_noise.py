r"""How much of pool_kappa is MC noise: one model swept twice, as JSON lines.

metrics.jsonl's pool_kappa compares the classes an iteration's MC sweep
predicts for the unlabelled pool with the previous iteration's, each sweep
with fresh dropout masks, so part of their disagreement is MC sampling
alone. This runs a config's loop and, at every `--every`-th iteration,
sweeps that iteration's model twice more with two new keys: the kappa of
those two sweeps is the floor pool_kappa would show were the model not
changing. Both are taken over the pool samples unlabelled when the
iteration began, as pool_kappa is.

Prints (stdout, one JSON object per line, like benchmarks/hot_path.py):

  {"benchmark": "pool_kappa_noise", "value": the two sweeps' kappa (mean
   over seeds), "iteration": i, "pool_kappa": ..., "val_acc": ...,
   "num_labels": ..., "per_seed": {"pool_kappa": [...], "floor": [...]}}

  python benchmarks/pool_kappa_noise.py --config=configs/yinyang.py:active_semi
  python benchmarks/pool_kappa_noise.py \
      --config=configs/mnist_active.py:random,small \
      --num_seeds=3 --every=5
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys
from typing import Any, Optional

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'benchmarks'))

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import numpy as np

import hot_path
from bass_jax import experiment
from bass_jax import loop
from bass_jax import mc_dropout
# pylint: enable=g-import-not-at-top,wrong-import-position


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--config', default='configs/yinyang.py:active_semi',
                 help='config file[:arg] as for launch/train.py (or '
                 'name[:arg] of a configs/ file)')
  p.add_argument('--num_seeds', type=int, default=10)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--every', type=int, default=4,
                 help='measure every N-th iteration (and the last)')
  p.add_argument('--set', action='append', default=[],
                 help='field=value config overrides (ints, floats, strings)')
  p.add_argument('--out', default=None, help='also append the lines here')
  p.add_argument('--note', default=None)
  return p.parse_args(argv)


def parsed_value(text: str) -> Any:
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def made_config(args: argparse.Namespace):
  """configs/<name>.py's config at its argument, with the overrides."""
  path, _, variant = args.config.partition(':')
  name = pathlib.Path(path).stem  # 'configs/mnist.py' or 'mnist'.
  config = importlib.import_module(f'configs.{name}').get_config(
      variant or None)
  config.num_seeds, config.seed = args.num_seeds, args.seed
  for item in args.set:
    field, _, value = item.partition('=')
    setattr(config, field, parsed_value(value))
  return config


def floor_kappas(r: experiment.Run, state: loop.LoopState,
                 unlabelled: np.ndarray, key: jax.Array) -> list[float]:
  """Per seed, the kappa of two fresh MC sweeps of its model over its
  unlabelled pool samples (unlabelled: [S, N] bool)."""
  cfg = r.loop_config

  @jax.jit
  def predicted(params, x, key):
    return mc_dropout.mc_sweep(r.model.apply, params, x, key,
                               cfg.mc_passes_pool,
                               cfg.chunk_size)['pseudo_label']

  out = []
  for j in range(unlabelled.shape[0]):
    params = jax.tree_util.tree_map(lambda a, j=j: a[j], state.train.params)
    x = r.pool.x[j] if r.per_seed_data else r.pool.x
    num_classes = jax.eval_shape(r.model.apply, params, x[:1],
                                 None).shape[-1]
    first, second = (predicted(params, x, k)
                     for k in jax.random.split(jax.random.fold_in(key, j)))
    out.append(float(loop.prediction_kappa(first, second, unlabelled[j],
                                           num_classes)))
  return out


def main(argv: Optional[list[str]] = None) -> list[dict[str, Any]]:
  args = parse_args(argv)
  config = made_config(args)
  r = experiment.build(config, None)
  em = hot_path.Emitter({**hot_path.run_context(), 'config': args.config,
                         'num_seeds': args.num_seeds, 'seed': args.seed,
                         'overrides': args.set,
                         **({'note': args.note} if args.note else {})},
                        args.out)
  state, last = r.state, config.num_iterations
  for i in range(last + 1):
    unlabelled = ~np.asarray(state.labelled)
    state, metrics = r.step(state, r.pool)
    if i == 0 or (i % args.every and i != last):
      continue  # Iteration 0 has no pool_kappa to compare with.
    metrics = jax.device_get(metrics)
    floor = floor_kappas(r, state, unlabelled,
                         jax.random.fold_in(jax.random.key(10_000), i))
    em.emit('pool_kappa_noise', round(float(np.mean(floor)), 4),
            'kappa of two MC sweeps of one model (mean over seeds)',
            iteration=i, num_labels=int(metrics['num_labels'][0]),
            pool_kappa=round(float(np.mean(metrics['pool_kappa'])), 4),
            val_acc=round(100 * float(np.mean(metrics['val_acc'])), 2),
            mc_passes_pool=r.loop_config.mc_passes_pool,
            per_seed={'pool_kappa': [round(float(k), 4)
                                     for k in metrics['pool_kappa']],
                      'floor': [round(k, 4) for k in floor]})
  return em.lines


if __name__ == '__main__':
  main()
