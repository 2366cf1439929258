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

  python benchmarks/pool_kappa_noise.py \
      --config=configs/yinyang.py:active_semi --every=8
  python benchmarks/pool_kappa_noise.py \
      --config=configs/mnist_active.py:random,small --config.num_seeds=3
"""

import pathlib
import sys
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'benchmarks'))

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import jax
import numpy as np

import hot_path
from bass_jax import experiment
from bass_jax import loop
from bass_jax import mc_dropout
from launch import common as launch_common
# pylint: enable=g-import-not-at-top,wrong-import-position

_CONFIG = launch_common.define_config_file(
    str(REPO / 'configs' / 'yinyang.py') + ':active_semi',
    'Experiment config file[:arg] with --config.<field> overrides, as for '
    'launch/train.py (default: Yin-Yang DeepBASS).')
flags.declare_key_flag('config')
_EVERY = flags.DEFINE_integer(
    'every', 4, 'Measure every N-th iteration (and the last).', lower_bound=1)
_OUT = flags.DEFINE_string('out', None, 'Also append the lines here.')


def floor_kappas(r: experiment.Run, predicted, state: loop.LoopState,
                 unlabelled: np.ndarray, key: jax.Array) -> list[float]:
  """Per seed, the kappa of two fresh MC sweeps of its model over its
  unlabelled pool samples (unlabelled: [S, N] bool; `predicted(params, x,
  key)`: a sweep's [N] classes)."""
  out = []
  for j in range(unlabelled.shape[0]):
    params = jax.tree_util.tree_map(lambda a, j=j: a[j], state.train.params)
    x = r.pool.x[j] if r.per_seed_data else r.pool.x
    first, second = (predicted(params, x, k)
                     for k in jax.random.split(jax.random.fold_in(key, j)))
    out.append(float(loop.prediction_kappa(first, second, unlabelled[j],
                                           r.dataset.num_classes)))
  return out


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  r = experiment.build(config)
  em = hot_path.Emitter({**hot_path.run_context(),
                         'config': f'{config.name}:{config.variant}',
                         'num_seeds': config.num_seeds, 'seed': config.seed},
                        _OUT.value)
  # One compilation for every seed and measured iteration.
  predicted = jax.jit(lambda params, x, key: mc_dropout.mc_sweep(
      r.model.apply, params, x, key, r.loop_config.mc_passes_pool,
      r.loop_config.chunk_size)['pseudo_label'])
  state, last = r.state, config.num_iterations
  for i in range(last + 1):
    unlabelled = ~np.asarray(state.labelled)
    state, metrics = r.step(state, r.pool)
    if i == 0 or (i % _EVERY.value and i != last):
      continue  # Iteration 0 has no pool_kappa to compare with.
    metrics = jax.device_get(metrics)
    floor = floor_kappas(r, predicted, state, unlabelled,
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


if __name__ == '__main__':
  launch_common.run_main(main, resumes=False)
