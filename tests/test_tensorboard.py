"""TensorBoard event files beside metrics.jsonl, with hparams."""

import json

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


def test_resume_rewrites_the_events_from_metrics(tmp_path):
  """Points a killed run logged after its last checkpoint do not stay: a
  resume rewrites one events file, one point per step, equal to
  metrics.jsonl; relaunching a finished run leaves the folder as it was."""
  import shutil  # pylint: disable=g-import-not-at-top
  from bass_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator
  config = yinyang.get_config('active_semi')
  config.num_iterations, config.num_seeds, config.checkpoint_every = 3, 1, 2
  config.initial_epochs, config.mc_passes_gt = 5, 5
  ds = data.load_yinyang(60, 0)
  experiment.run(config, str(tmp_path), dataset=ds)
  # As if killed after logging iterations 2 and 3 but before checkpoint 4.
  shutil.rmtree(checkpoint.step_path(tmp_path, 4))
  experiment.run(config, str(tmp_path), dataset=ds)
  folder = tmp_path / 'tensorboard'
  files = sorted(p.name for p in folder.iterdir())
  assert len(files) == 1, files
  acc = event_accumulator.EventAccumulator(str(folder))
  acc.Reload()
  logged = [(e.step, e.value) for e in acc.Scalars('val_acc/seed_0')]
  rows = [json.loads(l) for l in
          (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert logged == [(r['iteration'], pytest.approx(r['val_acc']))
                    for r in rows]
  assert acc.PluginTagToContent('hparams')
  experiment.run(config, str(tmp_path), dataset=ds)  # Already finished.
  assert sorted(p.name for p in folder.iterdir()) == files


def test_a_full_disk_is_an_oserror_here_and_no_thread_traceback(tmp_path,
                                                                monkeypatch):
  """Events are written in the caller's thread: a failed write raises
  there (a launch script prints it as one line) and no writer thread
  prints a traceback of its own."""
  import threading  # pylint: disable=g-import-not-at-top
  from bass_jax import tb_writer  # pylint: disable=g-import-not-at-top
  threads = threading.active_count()
  writer = tb_writer.Writer(str(tmp_path / 'tb'))
  assert threading.active_count() == threads
  writer.hparams({'mu': 0.5, 'semi': 'all'})
  rows = [{'iteration': 0, 'seed': 0, 'val_acc': 0.5}]
  writer.scalars(0, rows)

  def full(data):
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(writer._writer._writer, 'write', full)  # pylint: disable=protected-access
  with pytest.raises(OSError, match='No space left on device: .*events'):
    writer.scalars(1, rows)
  monkeypatch.undo()
  writer.close()
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(str(tmp_path / 'tb'))
  acc.Reload()
  assert [e.step for e in acc.Scalars('val_acc/mean')] == [0]
