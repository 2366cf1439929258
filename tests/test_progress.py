"""Progress: the rate and ETA leave out the first (compiling) iteration,
which a heartbeat line shows alive while it runs."""

import re
import threading
import time

import pytest

from bass_jax import data
from bass_jax import experiment
from bass_jax import progress
from configs import yinyang

ROWS = [{'val_acc': 0.8, 'num_labels': 10, 'num_train': 500, 'theta': 0.25},
        {'val_acc': 0.9, 'num_labels': 10, 'num_train': 500, 'theta': 0.25}]


def test_first_line_reports_its_time_and_no_eta():
  line = progress.progress_line(ROWS, 0, 73, 12.34, 0.0, 0, 73)
  assert line == ('iter 0/72 val_acc 0.8500±0.0500 labels 10 train 500 '
                  'theta 0.250 | first iteration 12.3s (compilation included)')
  # One seed: its accuracy alone, no '±0.0000'.
  line = progress.progress_line(ROWS[:1], 0, 73, 12.34, 0.0, 0, 73)
  assert line.startswith('iter 0/72 val_acc 0.8000 labels 10 '), line


def test_pool_kappa_shows_as_its_mean_over_seeds_once_defined():
  rows = [dict(r, pool_kappa=k) for r, k in zip(ROWS, (0.9, 0.95))]
  line = progress.progress_line(rows, 10, 73, 60.0, 2.0, 10, 73)
  assert 'theta 0.250 kappa 0.925 | ' in line, line
  # Iteration 0 (null: no predictions before it): nothing shown.
  rows = [dict(r, pool_kappa=None) for r in ROWS]
  line = progress.progress_line(rows, 0, 73, 12.34, 0.0, 0, 73)
  assert 'kappa' not in line, line


def test_eta_is_the_steady_rate_over_the_iterations_left():
  # 10 iterations after the first took 2 s: 5 it/s; 73 - 11 = 62 left.
  # A 60 s compilation must not enter the rate (it would say 0.16 it/s).
  line = progress.progress_line(ROWS, 10, 73, 60.0, 2.0, 10, 73)
  assert line.endswith('| 5.00 it/s ETA 12s'), line


def test_eta_after_a_resume_counts_this_process_only():
  # Resumed at iteration 40: done counts from there, 33 iterations to run.
  line = progress.progress_line(ROWS, 4, 33, 30.0, 2.0, 44, 73)
  assert line.startswith('iter 44/72 '), line
  assert line.endswith('| 2.00 it/s ETA 14s'), line


def test_durations_read_as_a_person_reads_them():
  assert [progress.duration_text(s) for s in (0.4, 59.4, 60, 185, 3599,
                                                7620)] == [
      '0s', '59s', '1m00s', '3m05s', '59m59s', '2h07m']
  line = progress.progress_line(ROWS, 1, 3000, 1.0, 1.0, 1, 3000)
  assert line.endswith('| 1.00 it/s ETA 49m58s'), line
  # Slower than 1 it/s: seconds per iteration (a 60k pool on a CPU).
  line = progress.progress_line(ROWS, 2, 10, 80.0, 62.8, 2, 10)
  assert line.endswith('| 31.4 s/it ETA 3m40s'), line  # 7 left.


def test_heartbeat_lines_at_doubling_intervals_and_none_after_the_block():
  lines = []
  start = time.time() - 100  # The run started before the block.
  with progress.heartbeat(lines.append, 'iteration 0', start,
                            first_s=0.05, max_s=0.1):
    time.sleep(0.5)
  count = len(lines)
  # Beats at ~0.05, 0.15, 0.25, ... s: the interval doubles, then is capped.
  assert 2 <= count <= 6, lines
  assert lines[0].startswith('iteration 0 still running after 1m40s '), lines
  time.sleep(0.2)
  assert len(lines) == count  # The thread stopped with the block.
  assert not any(t.name == 'bass_jax-heartbeat' for t in threading.enumerate())


def test_heartbeat_stops_when_the_block_raises():
  lines = []
  with pytest.raises(KeyboardInterrupt):
    with progress.heartbeat(lines.append, 'iteration 3', time.time(),
                              first_s=0.02):
      raise KeyboardInterrupt
  time.sleep(0.1)
  assert lines == []
  assert not any(t.name == 'bass_jax-heartbeat' for t in threading.enumerate())


def test_a_run_beats_during_its_first_iteration_only(tmp_path, monkeypatch):
  entered = []
  original = progress.heartbeat

  def quick(log, what, start, **_):
    entered.append(what)
    return original(log, what, start, first_s=0.001, max_s=0.05)

  monkeypatch.setattr(progress, 'heartbeat', quick)
  config = yinyang.get_config('active_semi')
  config.num_iterations, config.initial_epochs, config.num_seeds = 2, 5, 1
  lines = []
  experiment.run(config, str(tmp_path), log=lines.append,
                 dataset=data.load_yinyang(num_per_class=30, seed=0))
  assert entered == ['iteration 0']
  beats = [l for l in lines if ' still running after ' in l]
  assert beats and all(l.startswith('iteration 0 ') for l in beats), lines
  # Every beat comes before the first iteration's progress line.
  first_line = next(k for k, l in enumerate(lines) if l.startswith('iter 0/'))
  assert lines.index(beats[-1]) < first_line


def test_first_iteration_beats_count_from_its_own_start(tmp_path, monkeypatch):
  """After a blocked initial phase, 'iteration 0 still running after ...'
  counts from iteration 0's start, not the launch's (a supervised_3000 run
  once said 'after 33m32s' a minute into iteration 0)."""
  began = {}
  original = progress.heartbeat

  def recorded(log, what, start, **kwargs):
    began[what] = (start, time.time())
    return original(log, what, start, **kwargs)

  monkeypatch.setattr(progress, 'heartbeat', recorded)
  config = yinyang.get_config('active_semi')
  config.num_iterations, config.num_seeds = 1, 1
  config.initial_epochs, config.initial_block_epochs = 10, 3
  lines = []
  experiment.run(config, str(tmp_path), log=lines.append,
                 dataset=data.load_yinyang(num_per_class=30, seed=0))
  ended = time.time()
  blocks_start, _ = began['initial epochs from 0']
  start, entered = began['iteration 0']
  # The blocks (compiled first) took seconds; the iteration's clock starts
  # when it does, and so does its 'first iteration 1.2s' in the progress.
  assert entered - blocks_start > 1.0
  assert 0 <= entered - start < 0.1
  first_s, = [float(re.search(r'first iteration ([0-9.]+)s', l).group(1))
              for l in lines if l.startswith('iter 0/')]
  assert first_s <= ended - start
