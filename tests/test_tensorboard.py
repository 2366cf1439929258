"""TensorBoard event files beside metrics.jsonl, with hparams."""

import pytest

from bass_jax import data
from bass_jax import experiment
from configs import yinyang

pytest.importorskip('tensorboard')


def test_run_writes_scalars_and_hparams(tmp_path):
  from tensorboard.backend.event_processing import event_accumulator
  config = yinyang.get_config('active_semi')
  config.num_iterations, config.num_seeds = 2, 2
  config.initial_epochs, config.mc_passes_gt = 5, 5
  experiment.run(config, str(tmp_path), dataset=data.load_yinyang(60, 0))
  acc = event_accumulator.EventAccumulator(str(tmp_path / 'tensorboard'))
  acc.Reload()
  tags = acc.Tags()['scalars']
  assert {'val_acc/mean', 'val_acc/seed_0', 'val_acc/seed_1',
          'num_labels/mean', 'theta/mean'} <= set(tags)
  steps = [e.step for e in acc.Scalars('val_acc/mean')]
  assert steps == [0, 1, 2]
  assert all(0 <= e.value <= 1 for e in acc.Scalars('val_acc/seed_1'))
  plugins = acc.PluginTagToContent('hparams')
  assert plugins  # The config went in as hparams.
