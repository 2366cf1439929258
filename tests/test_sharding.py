"""Meshes: config parsing and checks, and sharded runs = the unsharded run.

The sharded runs need 4 (fake) CPU devices, which XLA_FLAGS must create
before JAX starts, while this process has one device: they run in a
subprocess (tests/sharding_check.py) started first, concurrently with the
single-device reference computed here.

Tolerance of sharded vs single-device: counts, masks and labels exact;
floats 1e-5 absolute (only reduction order differs: the gradient and the
batch all-reduces; the MC sweep itself is per-sample exact).
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

import sharding_check
from bass_jax import config_checks
from bass_jax import data
from bass_jax import experiment
from bass_jax import sharding
from bass_jax.errors import ConfigError

MESHES = ('data:4', 'seed:4', 'auto')
# Every seed its own data: the pool splits over 'seed' with the state.
PER_SEED_MESHES = ('seed:4@per_seed', 'seed:4/map@per_seed',
                   'data:2,seed:2@per_seed', 'data:4@per_seed')
# BatchBALD: its candidates gathered from the pool split over 'data', inside
# a conditional, and its random label configurations; core-set and BADGE:
# the pool's embeddings split over 'data', their greedy picks over it.
SAMPLED_MESHES = ('data:2,seed:2+batchbald', 'data:2,seed:2+coreset',
                  'data:2,seed:2+badge')
# The initial phase in blocks before iteration 0 (`loop.initial_block`),
# seeds vmapped over a split pool, and mapped on their own devices. Past
# the blocks their steps are those of 'data:2,seed:2' and 'seed:4/map',
# which they stand for (each mesh costs seconds of compilation).
BLOCKED_MESHES = ('data:2,seed:2%blocks', 'seed:4/map%blocks')
DATA_AND_SEED, MAPPED = BLOCKED_MESHES
COUNTS = ('iteration', 'num_labels', 'num_train', 'num_pseudo',
          'num_queried')


@pytest.mark.parametrize('text, sizes', [
    ('data:-1', {'seed': 1, 'data': 8}),
    ('seed:8', {'seed': 8, 'data': 1}),
    ('data:2, seed:-1', {'seed': 4, 'data': 2}),
    ('seed:2,data:4', {'seed': 2, 'data': 4}),
])
def test_axis_sizes(text, sizes):
  assert sharding.axis_sizes(text, 8) == sizes


@pytest.mark.parametrize('text, message', [
    ('model:2', "'model:2' is not axis:size"),
    ('data', "'data' is not axis:size"),
    ('data:two', "size 'two' of axis 'data'"),
    ('data:0', 'size 0'),
    ('data:2,data:2', "'data' is named twice"),
    ('data:-1,seed:-1', 'only one axis may have size -1'),
])
def test_bad_mesh_shape_names_the_field(text, message):
  with pytest.raises(ConfigError, match='config.mesh_shape') as e:
    sharding.parse_mesh_shape(text)
  assert message in str(e.value)


@pytest.mark.parametrize('text, hint', [
    ('data:3', "use -1 for one axis"), ('data:2,seed:2', "use -1 for one"),
    ('data:-1,seed:3', '3 does not divide 8')])
def test_mesh_must_use_every_device(text, hint):
  with pytest.raises(ConfigError, match='does not fit the 8 device') as e:
    sharding.axis_sizes(text, 8)
  assert hint in str(e.value)


def test_divisibility_errors_name_the_field():
  sizes = {'seed': 2, 'data': 4}
  sharding.check_divisible(sizes, num_seeds=4, pool_size=96, test_size=40)
  with pytest.raises(ConfigError, match=r'config.num_seeds=3 .* 2'):
    sharding.check_divisible(sizes, 3, 96, 40)
  with pytest.raises(ConfigError, match=r'pool has 98 .* config.pool_size=96'):
    sharding.check_divisible(sizes, 4, 98, 40)
  with pytest.raises(ConfigError,
                     match=r'test set has 42 .* config.test_size=40'):
    sharding.check_divisible(sizes, 4, 96, 42)
  with pytest.raises(ConfigError, match=r'config.batch_size=30 .* 4'):
    sharding.check_divisible(sizes, 4, 96, 40, batch_size=30)
  # Every problem in one message, the way out named once.
  with pytest.raises(ConfigError) as e:
    sharding.check_divisible(sizes, 3, 98, 42, batch_size=30)
  assert str(e.value) == (
      "config.num_seeds=3 is not divisible by the mesh's 'seed' axis size "
      '2; use a multiple of 2 seeds; and the pool has 98 samples, not '
      "divisible by the mesh's 'data' axis size 4; set "
      'config.pool_size=96 (a multiple of 4); and the test set has 42 '
      "samples, not divisible by the mesh's 'data' axis size 4; set "
      'config.test_size=40 (a multiple of 4); and config.batch_size=30 is '
      "not divisible by the 4 devices of the mesh's 'data' axis; use a "
      'multiple of 4 (or change config.mesh_shape: a workdir resumes under '
      'another mesh, not under other sizes)')
  # 4 seeds on 3 CPU devices: the way out is a device count that divides
  # the seeds (each device runs its own), not a pool cut to thirds.
  with pytest.raises(ConfigError, match=r'pool_size=999 .* or config\.'
                     r'cpu_devices to a divisor of the 4 seeds, such as 2:'):
    sharding.check_divisible({'seed': 1, 'data': 3}, 4, 1000, 999,
                             cpu_devices=3)


def test_build_refuses_a_mesh_that_does_not_fit():
  """Checked before anything compiles."""
  n = jax.device_count()
  config = sharding_check.toy_config(f'data:{n + 1}')
  with pytest.raises(ConfigError, match=f'does not fit the {n} device'):
    experiment.build(config, sharding_check.toy_dataset())
  config.mesh_shape = 'data:1,gpu:1'
  with pytest.raises(ConfigError, match="'gpu:1' is not axis:size"):
    config_checks.validate_config(config)


PAPER_SPLITS = (60_000, 10_000, 256)  # Pool, test set, batch.


@pytest.mark.parametrize('devices, seeds, splits, one_axis, sizes', [
    (1, 10, PAPER_SPLITS, False, (1, 1)),
    (8, 1, PAPER_SPLITS, False, (1, 8)),
    (8, 10, PAPER_SPLITS, False, (2, 4)),
    (8, 16, PAPER_SPLITS, False, (8, 1)),
    (8, 4, PAPER_SPLITS, False, (4, 2)),
    (4, 3, PAPER_SPLITS, False, (1, 4)),
    # Mapped seeds: one axis only.
    (4, 10, PAPER_SPLITS, True, (1, 4)),
    (4, 8, PAPER_SPLITS, True, (4, 1)),
    # The data must split too: 6 seeds on 4 devices would leave data:2,
    # which 999 pool samples refuse, so seed:1,data:4 is tried, fails too,
    # and the fallback lets check_divisible name the pool.
    (4, 6, (999, 100, 32), False, (1, 4)),
    (4, 2, (998, 100, 32), False, (2, 2)),
])
def test_auto_mesh_puts_seeds_on_devices_first(devices, seeds, splits,
                                               one_axis, sizes):
  assert sharding.auto_axis_sizes(devices, seeds, splits, one_axis) == {
      'seed': sizes[0], 'data': sizes[1]}


def test_auto_mesh_of_a_config():
  config = sharding_check.toy_config('auto')
  ds = sharding_check.toy_dataset()
  devices = [jax.devices()[0]] * 4  # Only counted.
  assert experiment.mesh_axis_sizes(config, ds, devices) == {
      'seed': 4, 'data': 1}
  config.num_seeds = 2
  assert experiment.mesh_axis_sizes(config, ds, devices) == {
      'seed': 2, 'data': 2}
  # The CNN's seeds are mapped on a CPU: one axis only.
  config.model = 'cnn'
  assert experiment.mesh_axis_sizes(config, ds, devices) == {
      'seed': 1, 'data': 4}
  config.num_seeds = 4
  assert experiment.mesh_axis_sizes(config, ds, devices) == {
      'seed': 4, 'data': 1}
  config.num_seeds, config.mesh_shape = 2, 'data:-1'
  assert experiment.mesh_axis_sizes(config, ds, devices) == {
      'seed': 1, 'data': 4}


def test_cpu_devices_are_fixed_once_jax_has_started():
  n = len(jax.devices('cpu'))
  sharding.set_cpu_devices(0)  # JAX's default: nothing to do.
  sharding.set_cpu_devices(n)  # Agrees with the running backend.
  with pytest.raises(ConfigError, match=rf'config.cpu_devices={n + 1}, but '
                     rf'JAX already started with {n} CPU device'):
    sharding.set_cpu_devices(n + 1)


def test_deterministic_ops_is_set_before_jax_starts(monkeypatch):
  jax.devices()  # This process's backends are up.
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_use_thunk_runtime=true')
  sharding.set_deterministic_ops(False)  # Off: nothing to do.
  sharding.set_deterministic_ops(True)  # A CPU backend: nothing to change.
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  with pytest.raises(ConfigError, match=r'config.deterministic_ops=True, '
                     'but JAX already started'):
    sharding.set_deterministic_ops(True)
  assert os.environ['XLA_FLAGS'] == '--xla_cpu_use_thunk_runtime=true'
  # Already in the flags JAX started with: nothing to do.
  monkeypatch.setenv('XLA_FLAGS', sharding.DETERMINISTIC_OPS_FLAG)
  sharding.set_deterministic_ops(True)
  # A fresh process: the flag joins the others and XLA accepts it.
  code = ('import os, jax.numpy as jnp; from bass_jax import sharding; '
          'sharding.set_deterministic_ops(True); '
          'print(float(jnp.arange(4.0).sum()), os.environ["XLA_FLAGS"])')
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, env=env, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split() == [
      '6.0', '--xla_force_host_platform_device_count=1',
      sharding.DETERMINISTIC_OPS_FLAG]


@pytest.fixture(scope='module')
def runs():
  """{mesh_shape: result} of the sharded runs, and the reference."""
  script = pathlib.Path(__file__).with_name('sharding_check.py')
  env = dict(os.environ,
             XLA_FLAGS='--xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu')
  proc = subprocess.Popen([sys.executable, str(script), *MESHES,
                           *PER_SEED_MESHES, *SAMPLED_MESHES,
                           *BLOCKED_MESHES, 'labelled_sweep', 'augment'],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env)
  reference = sharding_check.run_toy('data:-1')
  results = {name: sharding_check.run_toy(name)
             for name in ('data:-1@per_seed', 'data:-1+batchbald',
                          'data:-1+coreset', 'data:-1+badge')}
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  results.update((r['mesh_shape'], r) for r in map(json.loads,
                                                   out.splitlines()))
  return reference, results


def test_reference_is_one_device(runs):
  reference, _ = runs
  if reference['mesh'] != {'seed': 1, 'data': 1}:
    pytest.skip('this process has several devices')
  assert reference['placement']['pool_x_shards'] == [[96, 2]]


@pytest.mark.parametrize(
    'mesh_shape', MESHES + PER_SEED_MESHES + SAMPLED_MESHES + BLOCKED_MESHES)
def test_sharded_run_equals_single_device(runs, mesh_shape):
  reference, results = runs
  if mesh_shape.endswith('@per_seed'):
    reference = results['data:-1@per_seed']
    assert reference['metrics'] != runs[0]['metrics']  # Other data.
  if '+' in mesh_shape:
    reference = results['data:-1+' + mesh_shape.partition('+')[2]]
    # Other picks than the top k of entropy.
    assert reference['final']['labelled'] != runs[0]['final']['labelled']
  run = results[mesh_shape]
  assert run['num_compiles'] == 1
  assert run['block_compiles'] == (1 if '%' in mesh_shape else 0)
  for i, (got, want) in enumerate(zip(run['metrics'],
                                      reference['metrics'])):
    assert set(got) == set(want)
    for name in want:
      if name in COUNTS:
        assert got[name] == want[name], f'{name} at iteration {i}'
      else:
        np.testing.assert_allclose(got[name], want[name], atol=1e-5,
                                   err_msg=f'{name} at iteration {i}')
  for name in ('labelled', 'member', 'labels'):
    assert run['final'][name] == reference['final'][name], name
  np.testing.assert_allclose(run['final']['kernel'],
                             reference['final']['kernel'], atol=1e-5)


def test_pool_is_split_over_data(runs):
  _, results = runs
  data4 = results['data:4']['placement']
  assert data4['pool_x_spec'] == ['data']
  assert data4['pool_x_shards'] == [[24, 2]] * 4
  assert data4['test_x_shards'] == [[24, 2]] * 4
  assert results[DATA_AND_SEED]['placement']['pool_x_shards'] == (
      [[48, 2]] * 4)


def test_ground_truth_sweep_is_split_over_data(runs):
  """Each of 4 'data' devices sweeps 4 of the 14 labelled slots (padded to
  16), not all 14, and the statistics are the one-device sweep's."""
  check = runs[1]['labelled_sweep']
  assert check['single']['matmul_rows'] == 8 * 14
  assert check['sharded']['matmul_rows'] == 8 * 4
  for name, want in check['single']['stats'].items():
    np.testing.assert_allclose(check['sharded']['stats'][name], want,
                               atol=1e-6, err_msg=name)
    # Of 9 filled slots, the same statistics; device 3's slots 12-13 (no
    # label among them) are not swept, device 2's chunk (slot 8) is.
    first_9 = np.asarray(check['sharded_first_9']['stats'][name])
    np.testing.assert_allclose(first_9[:9], np.asarray(want)[:9], atol=1e-6,
                               err_msg=name)
    assert not np.any(first_9[12:]), name
  assert np.all(np.asarray(
      check['sharded_first_9']['stats']['mean_probs'])[:12].sum(-1) > 0.99)


def test_augmented_training_on_a_split_batch_equals_one_device(runs):
  """Shifts and flips drawn for a batch split over 4 'data' devices are the
  one-device draws: the trained parameters agree to 1e-5 (gradients
  all-reduced in another order)."""
  check = runs[1]['augment']
  assert len(check['sharded']) == len(check['single']) > 0
  for sharded, single in zip(check['sharded'], check['single']):
    np.testing.assert_allclose(sharded, single, atol=1e-5)


def test_state_is_split_over_seeds(runs):
  _, results = runs
  assert results['auto']['mesh'] == {'seed': 4, 'data': 1}
  assert results['auto']['placement']['labelled_shards'] == [[1, 96]] * 4
  both = results[DATA_AND_SEED]['placement']
  assert both['state_specs'] == [['seed']]
  # 4 seeds over 'seed':2, each half replicated over 'data':2.
  assert both['labelled_shards'] == [[2, 96]] * 4
  assert both['kernel_shards'] == [[2, 50, 50]] * 4
  data4 = results['data:4']['placement']
  assert data4['labelled_shards'] == [[4, 96]] * 4
  for mesh_shape in ('seed:4', MAPPED) + PER_SEED_MESHES[:2]:
    seeds4 = results[mesh_shape]['placement']
    assert seeds4['state_specs'] == [['seed']]
    assert seeds4['labelled_shards'] == [[1, 96]] * 4


def test_per_seed_pool_is_split_over_seeds_and_data(runs):
  _, results = runs
  shards = {'seed:4@per_seed': [1, 96, 2], 'seed:4/map@per_seed': [1, 96, 2],
            'data:2,seed:2@per_seed': [2, 48, 2], 'data:4@per_seed': [4, 24, 2]}
  for mesh_shape, shard in shards.items():
    placement = results[mesh_shape]['placement']
    assert placement['pool_x_spec'] == ['seed', 'data']
    assert placement['pool_x_shards'] == [shard] * 4, mesh_shape
    assert placement['test_x_shards'] == [shard] * 4, mesh_shape
  assert results['data:-1@per_seed']['placement']['pool_x_shards'] == [
      [4, 96, 2]]


def test_per_seed_data_refusals(tmp_path):
  config = sharding_check.toy_config('data:1')
  datasets = sharding_check.toy_datasets('data:1@per_seed')
  with pytest.raises(ConfigError, match=r'3 datasets for config.num_seeds=4'):
    experiment.build(config, datasets[:3])
  # Data read from files is one dataset, whatever data_per_seed says.
  ds = datasets[0]
  np.savez(tmp_path / 'toy.npz', x_train=ds.x_train, y_train=ds.y_train,
           x_test=ds.x_test, y_test=ds.y_test, num_classes=np.int64(2))
  config.dataset, config.data_per_seed = str(tmp_path / 'toy.npz'), True
  read = experiment.seed_datasets(config)
  assert len(read) == 4 and not experiment.is_per_seed(read)
  config.dataset, config.oracle = 'yinyang', 'files'
  with pytest.raises(ConfigError, match="config.oracle='files' labels one "
                     'pool, but the 4 seeds each have their own'):
    experiment.build(config, datasets)
  experiment.build(config, datasets[0])  # A shared pool: a human can label.
  config.oracle = 'simulated'
  bigger = [datasets[0]] + [data.load_yinyang(num_per_class=50)] * 3
  with pytest.raises(ConfigError, match=r"seeds' datasets differ in shape"):
    experiment.build(config, bigger)
  named = data.Dataset(ds.x_train, ds.y_train, ds.x_test, ds.y_test,
                       num_classes=2, name='named', class_names=('a', 'b'))
  with pytest.raises(ConfigError, match=r"seeds' datasets differ in classes"):
    experiment.build(config, [named] + datasets[1:])


def test_seed_devices_run_without_collectives(runs):
  """With 'data' = 1 each device runs its seeds alone (a shard_map): no
  all-reduce anywhere, where seeds vmapped over a sharded axis all-reduce
  every training-loop condition."""
  _, results = runs
  for mesh_shape in ('seed:4', MAPPED) + PER_SEED_MESHES[:2]:
    assert results[mesh_shape]['all_reduces'] == 0, mesh_shape
  assert results[DATA_AND_SEED]['all_reduces'] > 0
