"""The progress line's rate and ETA leave out the first (compiling) iteration."""

from bass_jax import experiment

ROWS = [{'val_acc': 0.8, 'num_labels': 10, 'num_train': 500, 'theta': 0.25},
        {'val_acc': 0.9, 'num_labels': 10, 'num_train': 500, 'theta': 0.25}]


def test_first_line_reports_its_time_and_no_eta():
  line = experiment.progress_line(ROWS, 0, 73, 12.34, 0.0, 0, 73)
  assert line == ('iter 0/72 val_acc 0.8500±0.0500 labels 10 train 500 '
                  'theta 0.250 | first iteration 12.3s (compilation included)')


def test_eta_is_the_steady_rate_over_the_iterations_left():
  # 10 iterations after the first took 2 s: 5 it/s; 73 - 11 = 62 left.
  # A 60 s compilation must not enter the rate (it would say 0.16 it/s).
  line = experiment.progress_line(ROWS, 10, 73, 60.0, 2.0, 10, 73)
  assert line.endswith('| 5.00 it/s ETA 12s'), line


def test_eta_after_a_resume_counts_this_process_only():
  # Resumed at iteration 40: done counts from there, 33 iterations to run.
  line = experiment.progress_line(ROWS, 4, 33, 30.0, 2.0, 44, 73)
  assert line.startswith('iter 44/72 '), line
  assert line.endswith('| 2.00 it/s ETA 14s'), line
