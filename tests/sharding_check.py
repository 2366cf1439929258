r"""Runs the toy loop on given meshes and prints one JSON object per mesh.

The sharded half of tests/test_sharding.py: fake CPU devices must be set
before JAX starts, so the test runs this file in a subprocess:

  XLA_FLAGS=--xla_force_host_platform_device_count=4 \
      python tests/sharding_check.py data:4 data:2,seed:2 seed:4@per_seed

Each line: {"mesh_shape", "mesh", "metrics": [per iteration {name: [S]}],
"final": {name: [S, ...]}, "placement": {...}}. The test imports `run_toy`
too, for the single-device reference in its own process.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from bass_jax import data
from bass_jax import experiment
from configs import yinyang

NUM_STEPS = 4  # Iterations 0..3: the initial phase, two queries, D grows.


def toy_config(mesh_shape: str):
  """Yin-Yang active_semi shrunk: 4 seeds, short training, small chunks.

  `mesh_shape` may end in '/map' or '/vmap' to set config.seed_strategy,
  then in '@per_seed' for a dataset per seed (see `toy_datasets`), then in
  '+<acquisition>' for another acquisition than max entropy.
  """
  mesh_shape, _, acquisition = mesh_shape.partition('+')
  mesh_shape = mesh_shape.partition('@')[0]
  mesh_shape, _, strategy = mesh_shape.partition('/')
  config = yinyang.get_config('active_semi')
  config.acquisition = acquisition or 'entropy'
  config.batchbald_passes = 20   # BatchBALD's sweep kept small.
  config.batchbald_configs = 200
  config.seed_strategy = strategy or 'auto'
  config.num_iterations = NUM_STEPS
  config.initial_epochs = 10
  config.num_seeds = 4
  config.mc_passes_gt = 10
  config.batch_size = 32       # Several batches per epoch, 8 rows a device.
  config.chunk_size = 16       # Several MC chunks per device shard.
  config.mesh_shape = mesh_shape
  return config


def toy_dataset():
  """96 pool and 96 test samples: divisible by 1, 2 and 4 devices."""
  return data.load_yinyang(num_per_class=48, seed=0)


def toy_datasets(mesh_shape: str):
  """toy_dataset, or with '@per_seed' four such draws, one per seed."""
  if not mesh_shape.partition('+')[0].endswith('@per_seed'):
    return toy_dataset()
  return [data.load_yinyang(num_per_class=48, seed=1000 * s)
          for s in range(4)]


def shard_shapes(array) -> list:
  return sorted(list(s.data.shape) for s in array.addressable_shards)


def placement(run, state) -> dict:
  """Where the pool and the (stepped) state live: specs and shard shapes."""
  return {
      'pool_x_spec': list(run.pool.x.sharding.spec),
      'pool_x_shards': shard_shapes(run.pool.x),
      'test_x_shards': shard_shapes(run.pool.test_x),
      'state_specs': sorted({tuple(leaf.sharding.spec)
                             for leaf in jax.tree_util.tree_leaves(state)}),
      'labelled_shards': shard_shapes(state.labelled),
      'kernel_shards': shard_shapes(
          state.train.params['Dense_1']['kernel']),
  }


def run_toy(mesh_shape: str) -> dict:
  """NUM_STEPS iterations of the toy on `mesh_shape`; JSON-ready results."""
  r = experiment.build(toy_config(mesh_shape), toy_datasets(mesh_shape))
  hlo = r.step.lower(r.state, r.pool).compile().as_text()
  state, metrics = r.state, []
  for _ in range(NUM_STEPS):
    state, m = r.step(state, r.pool)
    metrics.append({k: np.asarray(v).tolist()
                    for k, v in jax.device_get(m).items()})
  final = {'labelled': state.labelled, 'member': state.member,
           'labels': state.labels,
           'kernel': state.train.params['Dense_1']['kernel']}
  return {'mesh_shape': mesh_shape, 'mesh': dict(r.mesh.shape),
          'num_compiles': r.step._cache_size(),  # pylint: disable=W0212
          'all_reduces': hlo.count(' all-reduce('),
          'metrics': metrics,
          'final': {k: np.asarray(jax.device_get(v)).tolist()
                    for k, v in final.items()},
          'placement': placement(r, state)}


if __name__ == '__main__':
  for arg in sys.argv[1:]:
    print(json.dumps(run_toy(arg)), flush=True)
