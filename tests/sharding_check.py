r"""Runs the toy loop on given meshes and prints one JSON object per mesh.

The sharded half of tests/test_sharding.py: fake CPU devices must be set
before JAX starts, so the test runs this file in a subprocess:

  XLA_FLAGS=--xla_force_host_platform_device_count=4 \
      python tests/sharding_check.py data:4 data:2,seed:2 seed:4@per_seed

Each line: {"mesh_shape", "mesh", "metrics": [per iteration {name: [S]}],
"final": {name: [S, ...]}, "placement": {...}}. The test imports `run_toy`
too, for the single-device reference in its own process. The argument
`labelled_sweep` prints `labelled_sweep_check()`'s line instead, `augment`
`augment_check()`'s.
"""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bass_jax import augment
from bass_jax import data
from bass_jax import experiment
from bass_jax import mc_dropout
from bass_jax import models
from bass_jax import sharding
from bass_jax import training
from configs import yinyang

NUM_STEPS = 4  # Iterations 0..3: the initial phase, two queries, D grows.


def toy_config(mesh_shape: str):
  """Yin-Yang active_semi shrunk: 4 seeds, short training, small chunks.

  `mesh_shape` may end in '/map' or '/vmap' to set config.seed_strategy,
  then in '@per_seed' for a dataset per seed (see `toy_datasets`), then in
  '+<acquisition>' for another acquisition than max entropy, then in
  '%blocks' for the initial phase's first 9 epochs in blocks of 3
  (`run_toy` runs them before the iterations).
  """
  mesh_shape, _, blocks = mesh_shape.partition('%')
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
  config.chunk_size = 16       # Several MC chunks per device shard,
  config.eval_chunk_size = 16  # and evaluation / embedding chunks.
  config.mesh_shape = mesh_shape
  config.initial_block_epochs = 3 if blocks else 0
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
  r = experiment.build(toy_config(mesh_shape), toy_datasets(mesh_shape),
                       initial_blocks=True)
  hlo = r.step.lower(r.state, r.pool).compile().as_text()
  state, metrics = r.state, []
  cfg = r.loop_config
  for start in range(0, cfg.initial_blocked_epochs,
                     max(cfg.initial_block_epochs, 1)):
    starts = sharding.put(np.full(4, start, np.int32),
                          sharding.seed_sharding(r.mesh))
    state, _ = r.initial_block(state, r.pool, starts)
  for _ in range(NUM_STEPS):
    state, m = r.step(state, r.pool)
    metrics.append({k: np.asarray(v).tolist()
                    for k, v in jax.device_get(m).items()})
  final = {'labelled': state.labelled, 'member': state.member,
           'labels': state.labels,
           'kernel': state.train.params['Dense_1']['kernel']}
  return {'mesh_shape': mesh_shape, 'mesh': dict(r.mesh.shape),
          'num_compiles': r.step._cache_size(),  # pylint: disable=W0212
          'block_compiles': (r.initial_block._cache_size()  # pylint: disable=W0212
                             if r.initial_block else 0),
          'all_reduces': hlo.count(' all-reduce('),
          'metrics': metrics,
          'final': {k: np.asarray(jax.device_get(v)).tolist()
                    for k, v in final.items()},
          'placement': placement(r, state)}


def labelled_sweep_check() -> dict:
  """The ground-truth sweep (`mc_dropout.labelled_sweep`) of 14 labelled
  slots on 'data:4' and on one device, and on 'data:4' of the first 9
  only: the statistics, and the rows of the first layer's matmul (T passes
  x the rows one device sweeps)."""
  mesh = sharding.make_mesh('data:4')
  model = models.build_model('mlp', 2)
  ds = toy_dataset()
  params = model.init(jax.random.key(0), ds.x_train[:1])
  idx = jnp.asarray([5, 17, 90, 3, 42, 61, 7, 88, 20, 33, 70, 1, 64, 9],
                    jnp.int32)
  key = jax.random.key(1)
  out = {}
  sharded_x = jax.device_put(ds.x_train, NamedSharding(mesh, P('data')))
  # 'first_9': only 9 slots hold labels; the 14 padded to 16 give each
  # device 4 rows, so device 2 sweeps its chunk for 1 label and device 3
  # sweeps nothing.
  for name, m, x, num_valid in (('sharded', mesh, sharded_x, None),
                                ('single', None, ds.x_train, None),
                                ('sharded_first_9', mesh, sharded_x, 9)):
    # One chunk holds all 14 slots: rows per matmul = 8 passes x rows here.
    sweep = jax.jit(lambda x, m=m, n=num_valid: mc_dropout.labelled_sweep(
        m, model.apply, params, x, idx, key, 8, 100, n))
    hlo = sweep.lower(x).compile().as_text()
    out[name] = {
        'stats': {k: np.asarray(v).tolist() for k, v in sweep(x).items()},
        'matmul_rows': max(int(r) for r in re.findall(
            r'= f32\[(\d+),50\]\S* dot\(', hlo))}
  return {'mesh_shape': 'labelled_sweep', **out}


def augment_check() -> dict:
  """Two epochs of `training.train_epochs` over 8x8 images whose batches
  are shifted and flipped (`augment`), on 'data:4' and on one device: the
  trained parameters' leaves."""
  mesh = sharding.make_mesh('data:4')
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(64, 8, 8, 1)).astype(np.float32)
  y = jnp.asarray(rng.integers(0, 3, 64), jnp.int32)
  model = models.build_model('mlp', 3)
  optimizer = training.make_optimizer()
  params = model.init(jax.random.key(0), x[:1])
  state = training.TrainState(params, optimizer.init(params))
  labelled = jnp.arange(64) < 16
  spec = augment.Augment(shift=1, flip=True)
  out = {}
  for name, m in (('sharded', mesh), ('single', None)):
    xs = jax.device_put(x, NamedSharding(mesh, P('data'))) if m else x
    train = jax.jit(lambda s, xs, m=m: training.train_epochs(
        s, optimizer, model.apply, jax.random.key(1), xs, y, labelled,
        ~labelled, jnp.int32(2), gt_upsample=2, mu=1.0, batch_size=16,
        capacity=96, l2=1e-3, mesh=m, augment=spec)[0].params)
    out[name] = [np.asarray(a).tolist()
                 for a in jax.tree_util.tree_leaves(train(state, xs))]
  return {'mesh_shape': 'augment', **out}


if __name__ == '__main__':
  checks = {'labelled_sweep': labelled_sweep_check, 'augment': augment_check}
  for arg in sys.argv[1:]:
    result = checks[arg]() if arg in checks else run_toy(arg)
    print(json.dumps(result), flush=True)
