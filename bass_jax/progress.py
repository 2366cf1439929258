"""Progress lines of a run: iterations and initial epochs with rate and ETA,
and a heartbeat while one long call (a compilation) gives no line.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable

import numpy as np


def initial_progress_line(loss: np.ndarray, done: int, epochs: int,
                          first_s: float, steady_s: float,
                          steady_epochs: int) -> str:
  """'initial epoch 40/100 loss 0.1234±0.0100 | 12.3 s/epoch ETA 12m18s'.

  Args:
    loss: [S] the last epoch's mean loss of every seed.
    done, epochs: initial epochs trained so far, and in all.
    first_s: seconds of this launch's first block (compilation included).
    steady_s, steady_epochs: seconds and epochs of the blocks after it,
      which alone set the rate (as in `progress_line`).
  """
  head = f'initial epoch {done}/{epochs} loss {mean_spread_text(loss)} | '
  if steady_epochs == 0:
    return head + f'first block {first_s:.1f}s (compilation included)'
  per_epoch = steady_s / steady_epochs
  rate = (f'{per_epoch:.2f} s/epoch' if per_epoch >= 0.1 else
          f'{1e3 * per_epoch:.1f} ms/epoch')  # Toy epochs: not '0.00 s'.
  return head + (f'{rate} ETA '
                 f'{duration_text(per_epoch * (epochs - done))}')


def progress_line(rows: list[dict], done: int, todo: int, first_s: float,
                  steady_s: float, iteration: int, total: int) -> str:
  """'iter 12/72 val_acc 0.871±0.012 labels 32 train 540 theta 0.153 kappa
  0.962 | 3.10 it/s ETA 20s' (or '| 31.4 s/it' below 1 it/s; the ETA as
  `duration_text`, e.g. 'ETA 3m05s'; kappa, the mean over seeds of
  pool_kappa, from iteration 1 on).

  Args:
    rows: this iteration's metrics rows, one per seed.
    done: iterations this process ran before this one (0 for the first,
      also after a resume, so the ETA stays right).
    todo: iterations this process runs in all.
    first_s: seconds this process's first iteration took (its
      compilation and, at iteration 0, the initial training left after
      any blocks).
    steady_s: seconds since the end of that first iteration.
    iteration, total: the run's iteration index and count.

  The rate and ETA use only the iterations after the first: the first one
  also pays for the compilation, which would make an average over it
  overstate the time left many times over on a short run.
  """
  acc = np.array([r['val_acc'] for r in rows])
  kappas = [r['pool_kappa'] for r in rows if r.get('pool_kappa') is not None]
  # The pool's predictions against the last iteration's (mean over seeds).
  kappa = f' kappa {np.mean(kappas):.3f}' if kappas else ''
  head = (f'iter {iteration}/{total - 1} val_acc {mean_spread_text(acc)} '
          f'labels {rows[0]["num_labels"]} train '
          f'{rows[0]["num_train"]} theta {rows[0]["theta"]:.3f}{kappa} | ')
  if done == 0:
    return head + f'first iteration {first_s:.1f}s (compilation included)'
  rate = done / max(steady_s, 1e-9)
  eta = (todo - done - 1) / rate
  # Below 1 it/s, seconds per iteration ('0.03 it/s' says little).
  speed = f'{rate:.2f} it/s' if rate >= 1 else f'{1 / rate:.1f} s/it'
  return head + f'{speed} ETA {duration_text(eta)}'


def mean_spread_text(values: np.ndarray) -> str:
  """'0.8710±0.0120': the mean and std over seeds of [S] `values`; one
  seed's value alone ('0.8710'), as it has no spread."""
  mean = f'{values.mean():.4f}'
  return mean if values.size == 1 else f'{mean}±{values.std():.4f}'


def duration_text(seconds: float) -> str:
  """'45s', '3m05s', '2h07m': a wall time as a person reads it."""
  s = int(round(seconds))
  if s < 60:
    return f'{s}s'
  if s < 3600:
    return f'{s // 60}m{s % 60:02d}s'
  return f'{s // 3600}h{s % 3600 // 60:02d}m'


@contextlib.contextmanager
def heartbeat(log: Callable[[str], None], what: str, start: float,
              first_s: float = 30.0, max_s: float = 600.0):
  """Logs '<what> still running after 1m30s' until the block ends.

  The first iteration of a launch is one compiled call (the compilation,
  at iteration 0 the initial epochs of every seed, the sweeps): it says
  nothing until it returns, which on a CPU can be many minutes. A line at
  growing intervals (`first_s` after the block starts, then doubling up to
  `max_s`) shows the run is alive. Host side only: the compiled program,
  and so every result, is the same as without it, and nothing leaves the
  device inside an iteration to report progress.

  Args:
    log: receives the lines (from a daemon thread).
    what: the line's subject, e.g. 'iteration 0'.
    start: time.time() the reported time counts from.
    first_s, max_s: the first interval and the largest, in seconds.
  """
  done = threading.Event()

  def beat():
    wait = first_s
    while not done.wait(wait):
      log(f'{what} still running after {duration_text(time.time() - start)}'
          ' (one compiled call: it reports when it is done)')
      wait = min(2 * wait, max_s)

  thread = threading.Thread(target=beat, name='bass_jax-heartbeat',
                            daemon=True)
  thread.start()
  try:
    yield
  finally:
    done.set()
    thread.join()
