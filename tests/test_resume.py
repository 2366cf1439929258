"""Resuming from a checkpoint gives exactly the uninterrupted run."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from bass_jax import checkpoint
from bass_jax import config_checks
from bass_jax import data
from bass_jax import experiment
from bass_jax import mc_dropout
from bass_jax import provenance
from bass_jax import workdirs
from bass_jax.errors import ConfigError
from configs import yinyang


def small_config():
  config = yinyang.get_config('active_semi')
  config.num_iterations = 6
  config.initial_epochs = 10
  config.num_seeds = 2
  config.mc_passes_gt = 10
  config.checkpoint_every = 2
  config.keep_checkpoints = 5
  return config


def metric_set(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(l) for l in f]
  return sorted(json.dumps(r, sort_keys=True) for r in rows), rows


def leaf_digests(workdir, step):
  """The sha256 of every state leaf of a checkpoint, from its meta.json."""
  with open(os.path.join(checkpoint.step_path(workdir, step),
                         'meta.json')) as f:
    return [leaf['sha256'] for leaf in json.load(f)['leaves']]


def test_resume_after_crash_is_identical(tmp_path):
  ds = data.load_yinyang(num_per_class=60, seed=0)
  full, cut = str(tmp_path / 'full'), str(tmp_path / 'cut')
  experiment.run(small_config(), full, dataset=ds)
  experiment.run(small_config(), cut, dataset=ds)
  # On a CPU a config gives the same bits in every run (README, Compilation
  # cache and reproducibility): the two runs before one is cut.
  assert metric_set(full)[0] == metric_set(cut)[0]
  assert leaf_digests(full, 7) == leaf_digests(cut, 7)
  # Simulate a crash after the checkpoint of iteration 4: drop the newer
  # checkpoints, leave a torn metrics line and a half-written checkpoint.
  for step in (6, 7):
    shutil.rmtree(checkpoint.step_path(cut, step))
  os.remove(os.path.join(cut, 'summary.json'))
  with open(os.path.join(cut, 'metrics.jsonl'), 'a') as f:
    f.write('{"iteration": 6, "seed": 0, "val_')
  os.makedirs(os.path.join(checkpoint.checkpoints_dir(cut), '.tmp-6-dead'))
  lines = []
  earlier = checkpoint.restore(checkpoint.step_path(cut, 4),
                               experiment.build(small_config(), ds).state)
  summary = experiment.run(small_config(), cut, log=lines.append, dataset=ds)
  assert any('resuming from iteration 4' in l for l in lines)
  assert not any(l.startswith('note: ') for l in lines)
  assert earlier.extra['metrics_version'] == workdirs.METRICS_VERSION
  # wall_s counts the launch that made checkpoint 4, not only the last one.
  assert summary['wall_s'] > earlier.extra['wall_s'] > 0
  full_set, rows = metric_set(full)
  cut_set, _ = metric_set(cut)
  assert full_set == cut_set and len(rows) == 7 * 2
  template = experiment.build(small_config(), ds).state
  a = checkpoint.restore(checkpoint.step_path(full, 7), template).state
  b = checkpoint.restore(checkpoint.step_path(cut, 7), template).state
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_workdir_from_before_a_field_was_added_is_accepted(tmp_path):
  """A config.json without a later field ran with that field's default."""
  config = small_config()
  stored = json.loads(json.dumps(config.to_dict()))
  del stored['mc_precision']
  (tmp_path / 'config.json').write_text(json.dumps(stored))
  workdirs.check_workdir_config(str(tmp_path), config)
  config.mc_precision = 'bfloat16'
  with pytest.raises(ConfigError, match="mc_precision: 'default' there"):
    workdirs.check_workdir_config(str(tmp_path), config)


def test_workdir_resumes_with_moved_data_not_with_other_data(tmp_path):
  config = small_config()
  (tmp_path / 'config.json').write_text(json.dumps(config.to_dict()))
  config.data_dir = str(tmp_path / 'moved')  # Where, not which: accepted.
  workdirs.check_workdir_config(str(tmp_path), config)
  config.dataset = 'fashion_mnist'
  with pytest.raises(ConfigError, match='dataset:'):
    workdirs.check_workdir_config(str(tmp_path), config)


def test_chunk_sizes_auto_per_platform_and_resumable_under_others(tmp_path):
  """0 is 'auto' (per platform and number of passes); an explicit size is
  kept; a workdir run with explicit sizes resumes under 'auto'."""
  config = small_config()
  config.chunk_size, config.eval_chunk_size = 0, 0
  cpu = experiment.loop_config(config, 1000, 2, 'cpu', 200)
  assert cpu.chunk_size == mc_dropout.auto_chunk_size(
      'cpu', config.mc_passes_pool, 200)
  assert cpu.gt_chunk_size == mc_dropout.auto_chunk_size(
      'cpu', config.mc_passes_gt, 200)
  assert cpu.eval_chunk_size == mc_dropout.auto_chunk_size('cpu', 1, 200)
  gpu = experiment.loop_config(config, 1000, 2, 'gpu', 200)
  assert gpu.chunk_size > cpu.chunk_size
  stored = json.loads(json.dumps(config.to_dict()))
  config.chunk_size, config.eval_chunk_size = 1000, 2000
  fixed = experiment.loop_config(config, 1000, 2, 'gpu', 200)
  assert (fixed.chunk_size, fixed.gt_chunk_size,
          fixed.eval_chunk_size) == (1000, 1000, 2000)
  (tmp_path / 'config.json').write_text(json.dumps(stored))
  workdirs.check_workdir_config(str(tmp_path), config)
  config.chunk_size = -1
  with pytest.raises(ConfigError, match='chunk_size=-1'):
    config_checks.validate_config(config)


def test_a_workdir_in_use_by_another_run_is_refused(tmp_path):
  """Two runs on one workdir deleted each other's checkpoints in progress."""
  ds = data.load_yinyang(num_per_class=60, seed=0)
  config = small_config()
  config.num_iterations = 1
  workdir = str(tmp_path / 'run')
  with workdirs.workdir_lock(workdir):  # Another run, still going.
    with pytest.raises(ConfigError, match=(
        r'run is in use by another run \(its process holds .*run.lock\); '
        'wait for it to end, or use another --workdir')):
      experiment.run(config, workdir, dataset=ds)
    assert os.listdir(workdir) == [workdirs.LOCK_FILE]
  # Released when that run ends; one run after another is fine.
  experiment.run(config, workdir, dataset=ds)
  summary = experiment.run(config, workdir, dataset=ds)
  assert summary['iterations'] == 1


def test_workdir_of_other_config_is_refused(tmp_path):
  ds = data.load_yinyang(num_per_class=60, seed=0)
  config = small_config()
  config.num_iterations = 1
  experiment.run(config, str(tmp_path), dataset=ds)
  before = sorted(os.listdir(tmp_path))
  config.mu = 0.5
  with pytest.raises(ConfigError, match='mu'):
    experiment.run(config, str(tmp_path), dataset=ds)
  assert sorted(os.listdir(tmp_path)) == before
  # A run made before a field existed computed with its default: the
  # refusal says which value continues it.
  stored = json.loads((tmp_path / 'config.json').read_text())
  del stored['data_per_seed']
  (tmp_path / 'config.json').write_text(json.dumps(stored))
  config.mu = small_config().mu
  with pytest.raises(ConfigError, match=r'\(data_per_seed: False there, True '
                     r'now\); the run predates config.data_per_seed: '
                     r'--config.data_per_seed=False continues it'):
    experiment.run(config, str(tmp_path), dataset=ds)
  config.data_per_seed = False
  experiment.run(config, str(tmp_path), dataset=ds)  # As it was made.
  config.data_per_seed = True
  stored['data_per_seed'] = True
  (tmp_path / 'config.json').write_text(json.dumps(stored))
  # When the host logs and saves is not what the run computes.
  config.log_every, config.checkpoint_every = 3, 7
  config.keep_checkpoints = 9
  experiment.run(config, str(tmp_path), dataset=ds)


def resumed_from_an_older_checkpoint(workdir, *fields):
  """(log lines, summary) of a 1-seed, 3-iteration run resumed from its
  checkpoint 2 with the `extra` fields of an older bass_jax taken out."""
  ds = data.load_yinyang(num_per_class=60, seed=0)
  config = small_config()
  config.num_iterations, config.num_seeds = 3, 1
  experiment.run(config, str(workdir), dataset=ds)
  shutil.rmtree(checkpoint.step_path(workdir, 4))
  meta_path = os.path.join(checkpoint.step_path(workdir, 2), 'meta.json')
  with open(meta_path) as f:
    meta = json.load(f)
  for field in fields:
    del meta['extra'][field]
  with open(meta_path, 'w') as f:
    json.dump(meta, f)
  lines = []
  summary = experiment.run(config, str(workdir), dataset=ds,
                           log=lines.append)
  return lines, summary


def test_resume_of_older_metrics_definitions_says_so(tmp_path):
  """Checkpoints without metrics_version predate pseudo_acc and
  pool_entropy as the original code defines them: the resume notes it."""
  lines, _ = resumed_from_an_older_checkpoint(tmp_path, 'metrics_version')
  assert lines[0].startswith('resuming from iteration 2')
  assert lines[1].startswith('note: metrics.jsonl rows of iterations 0..1 '
                             'were written by an earlier bass_jax')


def test_environment_names_the_code_packages_and_devices():
  env = provenance.environment()
  assert env['jax'] == jax.__version__ and env['numpy'] == np.__version__
  assert (env['platform'], env['devices']) == ('cpu', len(jax.devices()))
  assert env['processes'] == 1
  # The host CPU: its model and widest vector extension, as /proc/cpuinfo
  # names them (XLA:CPU compiles for them).
  if os.path.exists('/proc/cpuinfo'):
    info = open('/proc/cpuinfo', encoding='utf-8', errors='replace').read()
    model = env['cpu'].split(', ')[0]
    assert model in info, env['cpu']
    assert all(e in info.split() for e in env['cpu'].split(', ')[1:])
  # The settings that change how XLA compiles, as this suite set them.
  assert env['jax_disable_most_optimizations'] == (
      os.environ.get('JAX_DISABLE_MOST_OPTIMIZATIONS') == 'true')
  assert env['xla_flags'] == (os.environ.get('XLA_FLAGS') or None)
  assert env['bass_jax'].startswith('0.1.0')
  assert env == provenance.environment()  # Nothing in it varies by the call.
  assert json.loads(json.dumps(env)) == env
  assert provenance.changes(env, env) == ''
  other = dict(env, jax='9.9.9', devices=3)
  assert provenance.changes(env, other) == (
      f'jax 9.9.9 (was {env["jax"]}), devices 3 (was {env["devices"]})')
  # A launch under a new environment adds it; one under the newest does not.
  assert provenance.with_environment([], env) == [env]
  assert provenance.with_environment([env], env) == [env]
  assert provenance.with_environment([None, env], other) == [None, env, other]


def test_resume_under_other_software_says_so_and_the_summary_keeps_both(
    tmp_path, monkeypatch):
  """Each checkpoint keeps the environments its launches computed under:
  a resume under another notes what changed, the summary lists both, and a
  finished run relaunched under a third is left as it was."""
  ds = data.load_yinyang(num_per_class=60, seed=0)
  config = small_config()
  config.num_iterations, config.num_seeds = 3, 1
  experiment.run(config, str(tmp_path), dataset=ds)
  env = provenance.environment()
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['environments'] == [env]
  shutil.rmtree(checkpoint.step_path(tmp_path, 4))
  newer = dict(env, jax='9.9.9')
  monkeypatch.setattr(provenance, 'environment', lambda: newer)
  lines = []
  summary = experiment.run(config, str(tmp_path), dataset=ds,
                           log=lines.append)
  assert lines[0].startswith('resuming from iteration 2')
  assert lines[1] == (
      f'note: resuming with other software or devices than the checkpoint '
      f'was made with: jax 9.9.9 (was {env["jax"]}); from here the run may '
      'round differently from one made in one go (README: Reproducibility)')
  assert summary['environments'] == [env, newer]
  saved = (tmp_path / 'summary.json').read_bytes()
  monkeypatch.setattr(provenance, 'environment', lambda: dict(env, jax='0'))
  lines.clear()
  experiment.run(config, str(tmp_path), dataset=ds, log=lines.append)
  assert lines[0].startswith('already finished') and len(lines) == 1
  assert (tmp_path / 'summary.json').read_bytes() == saved


def test_a_checkpoint_from_before_environments_counts_them_unknown(tmp_path):
  lines, summary = resumed_from_an_older_checkpoint(tmp_path, 'environments')
  assert not any(l.startswith('note: ') for l in lines)
  assert summary['environments'] == [None, provenance.environment()]


def test_resume_refuses_other_data_of_the_same_shapes(tmp_path):
  """Every checkpoint keeps the data's fingerprint: a finished run is found
  finished with its own data and refused with other data."""
  config = small_config()
  config.num_iterations, config.num_seeds = 2, 1
  config.keep_checkpoints = 2
  ds = data.load_yinyang(num_per_class=30, seed=0)
  experiment.run(config, str(tmp_path), dataset=ds)
  metrics = (tmp_path / 'metrics.jsonl').read_bytes()
  summary = (tmp_path / 'summary.json').read_bytes()
  # What a kill during the last save's keep_last leaves: an old checkpoint
  # past keep_checkpoints, and one half-deleted under a temp name.
  root = checkpoint.checkpoints_dir(tmp_path)
  newest = checkpoint.step_path(tmp_path, 3)
  shutil.copytree(newest, checkpoint.step_path(tmp_path, 1))
  shutil.copytree(newest, os.path.join(root, checkpoint.TMP_PREFIX + '0-x'))
  steps = checkpoint.steps(tmp_path)
  assert len(steps) > config.keep_checkpoints
  lines = []
  experiment.run(config, str(tmp_path), dataset=ds, log=lines.append)
  # Nothing to do: nothing recomputed, no wall time added; the leftovers
  # are gone.
  assert (tmp_path / 'metrics.jsonl').read_bytes() == metrics
  assert (tmp_path / 'summary.json').read_bytes() == summary
  assert lines[0].startswith('already finished (iterations 0..2, ')
  assert sorted(os.listdir(root), key=int) == [
      str(k) for k in steps[-config.keep_checkpoints:]]
  other = data.load_yinyang(num_per_class=30, seed=1)
  with pytest.raises(ConfigError, match='the data differ'):
    experiment.run(config, str(tmp_path), dataset=other)
  assert (tmp_path / 'metrics.jsonl').read_bytes() == metrics


def test_a_workdir_of_another_experiment_names_it_first():
  """Another experiment in the workdir: its name and dataset lead the
  differences, not the first of the fields that follow from them."""
  stored = json.loads(json.dumps(small_config().to_dict()))
  config = small_config()
  config.dataset, config.mu, config.data_per_seed = 'mine.npz', 0.5, False
  assert workdirs.config_differences(stored, config) == [
      'dataset', 'data_per_seed', 'mu']
