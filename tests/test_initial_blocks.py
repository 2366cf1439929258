"""A long initial phase in blocks before iteration 0: the same run, with
progress lines and checkpoints inside the phase."""

import os

import jax
import numpy as np
import pytest

from bass_jax import checkpoint
from bass_jax import data
from bass_jax import experiment
from bass_jax.errors import ConfigError
from configs import mnist
from configs import yinyang


def small_config(block):
  config = yinyang.get_config('active_semi')
  config.num_iterations = 3
  config.initial_epochs = 10
  config.num_seeds = 2
  config.mc_passes_gt = 10
  config.initial_block_epochs = block
  return config


def metrics_text(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return f.read()


def final_state(workdir, config, ds):
  template = experiment.build(config, ds).state
  return checkpoint.restore(
      checkpoint.step_path(workdir, config.num_iterations + 1), template).state


@pytest.mark.parametrize(('epochs', 'block', 'plan'), [
    (10, 3, (3, 9)),     # Blocks 0-2, 3-5, 6-8; iteration 0 trains epoch 9.
    (10, 5, (5, 5)),     # The last block is iteration 0's own.
    (10, 10, (0, 0)),    # One block: iteration 0 trains the whole phase.
    (10, 50, (0, 0)),
    (100, 7, (7, 98)),
])
def test_block_plan_leaves_iteration_0_the_last_block(epochs, block, plan):
  config = small_config(block)
  config.initial_epochs = epochs
  assert experiment.initial_block_plan(config, 8, 'cpu') == plan


def test_auto_blocks_only_a_long_phase_by_platform():
  # MNIST's protocol: 100 epochs x 20 x 100 labels x 10 seeds = 2 M samples.
  config = mnist.get_config('alldata_maxent')
  assert config.initial_block_epochs == 0
  assert experiment.initial_block_plan(config, 100, 'cpu') == (5, 95)
  assert experiment.initial_block_plan(config, 100, 'gpu') == (0, 0)
  config.num_seeds = 1  # 200,000 samples: a minute on a CPU.
  assert experiment.initial_block_plan(config, 100, 'cpu') == (0, 0)
  # supervised_60000-like: 120 M samples a seed.
  assert experiment.initial_block_plan(config, 60_000, 'gpu') == (5, 95)


def test_blocks_give_the_run_of_one_call_to_the_bit(tmp_path):
  ds = data.load_yinyang(num_per_class=60, seed=0)
  whole, blocked = str(tmp_path / 'whole'), str(tmp_path / 'blocked')
  experiment.run(small_config(10), whole, dataset=ds)
  lines = []
  experiment.run(small_config(3), blocked, dataset=ds, log=lines.append)
  assert lines[0] == ('initial phase: epochs 0..8 of 10 in blocks of 3, each '
                      'followed by a checkpoint (the rest in iteration 0)')
  assert lines[1].startswith('initial epoch 3/10 loss ')
  assert 'first block' in lines[1] and 's/epoch ETA' in lines[3]
  assert lines[4].startswith('iteration 0: compiling, training the last 1 '
                             'initial epochs and sweeping')
  assert metrics_text(whole) == metrics_text(blocked)
  # Only a host loop that runs the blocks (`run`) asks for them: built
  # without, Run.step trains the whole phase in iteration 0.
  assert experiment.build(small_config(3), ds).initial_block is None
  assert experiment.build(small_config(3), ds,
                          initial_blocks=True).initial_block is not None
  a = final_state(whole, small_config(10), ds)
  b = final_state(blocked, small_config(3), ds)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)


class Crash(Exception):
  pass


def crash_after(text):
  def log(line):
    if line.startswith(text):
      raise Crash(line)
  return log


def test_a_crash_inside_the_phase_resumes_after_the_last_block(tmp_path):
  ds = data.load_yinyang(num_per_class=60, seed=0)
  whole, cut = str(tmp_path / 'whole'), str(tmp_path / 'cut')
  experiment.run(small_config(10), whole, dataset=ds)
  with pytest.raises(Crash):
    experiment.run(small_config(3), cut, dataset=ds,
                   log=crash_after('initial epoch 6/10'))
  assert checkpoint.steps(cut) == [0]
  restored = checkpoint.latest_valid(cut, experiment.build(
      small_config(3), ds).state)
  assert restored.extra['initial_epochs_done'] == 6
  assert int(restored.state.iteration[0]) == 0
  lines = []
  summary = experiment.run(small_config(3), cut, dataset=ds,
                           log=lines.append)
  assert lines[0].startswith('resuming the initial phase after epoch 6 of 10')
  assert lines[1].startswith('initial phase: epochs 6..8 of 10')
  assert metrics_text(whole) == metrics_text(cut)
  assert summary['wall_s'] > restored.extra['wall_s'] > 0


def test_resuming_the_phase_under_fewer_blocked_epochs_is_refused(tmp_path):
  """Iteration 0 of a run without blocks would train the first epochs again
  (e.g. 'auto' blocks on a CPU resumed on a GPU): refused, with the fix."""
  ds = data.load_yinyang(num_per_class=60, seed=0)
  whole, cut = str(tmp_path / 'whole'), str(tmp_path / 'cut')
  with pytest.raises(Crash):
    experiment.run(small_config(3), cut, dataset=ds,
                   log=crash_after('initial epoch 6/10'))
  with pytest.raises(ConfigError, match=(
      r'the checkpoint holds 6 of the 10 initial epochs, trained in blocks '
      r'before iteration 0, but this run trains only 0 that way .*'
      r'pass --config.initial_block_epochs=3 to go on')):
    experiment.run(small_config(10), cut, dataset=ds)
  # Other blocks that still cover the epochs done go on from there.
  lines = []
  experiment.run(small_config(4), cut, dataset=ds, log=lines.append)
  assert lines[1].startswith('initial phase: epochs 6..7 of 10 in blocks of 4')
  experiment.run(small_config(10), whole, dataset=ds)
  assert metrics_text(whole) == metrics_text(cut)


def test_a_diverging_block_names_its_epoch(tmp_path):
  ds = data.load_yinyang(num_per_class=60, seed=0)
  config = small_config(3)
  config.learning_rate = 1e30
  with pytest.raises(experiment.TrainingDivergedError,
                     match=r'training diverged at initial epoch \d'):
    experiment.run(config, str(tmp_path), dataset=ds)


def test_export_and_report_of_a_run_stopped_inside_the_phase(tmp_path):
  from bass_jax import export
  ds = data.load_yinyang(num_per_class=60, seed=0)
  with pytest.raises(Crash):
    experiment.run(small_config(3), str(tmp_path), dataset=ds,
                   log=crash_after('initial epoch 6/10'))
  table, note = export.export_labels(str(tmp_path), str(tmp_path / 'l.csv'),
                                     dataset=ds)
  assert note == 'after initial epoch 6 of 10 (unfinished run)'
  assert table['id'].shape == (120,)
