"""TensorBoard event files beside metrics.jsonl, without TensorFlow.

Uses the `tensorboard` package's event writer and protos directly (it is an
optional dependency: `pip install 'bass_jax[tensorboard]'`). One run writes
one event file in `<workdir>/tensorboard/` with hparams (the config) at step
0 and one scalar per metric and seed, tagged `<metric>/seed_<s>`, plus the
mean over seeds as `<metric>/mean`.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np


def available() -> bool:
  try:
    import tensorboard  # pylint: disable=g-import-not-at-top,unused-import
    return True
  except ImportError:
    return False


class Writer:
  """Scalars and hparams into a TensorBoard log dir."""

  def __init__(self, logdir: str):
    # pylint: disable=g-import-not-at-top
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.compat.proto import event_pb2, summary_pb2
    self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
    self._writer = EventFileWriter(logdir)

  def _write(self, step: int, summary) -> None:
    self._writer.add_event(self._event_pb2.Event(
        wall_time=time.time(), step=step, summary=summary))

  def hparams(self, config: dict[str, Any]) -> None:
    """The config as hparams (scalars, strings and bools only)."""
    from tensorboard.plugins.hparams import summary as hp  # pylint: disable=g-import-not-at-top
    flat = {k: v for k, v in config.items()
            if isinstance(v, (bool, int, float, str))}
    pb = hp.session_start_pb(hparams=flat)
    # Older tensorboards hand back TensorFlow's copy of the proto.
    self._write(0, self._summary_pb2.Summary.FromString(
        pb.SerializeToString()))

  def scalars(self, step: int, rows: list[dict[str, Any]]) -> None:
    """One iteration's per-seed metric rows (see `experiment.metrics_rows`)."""
    values = []
    names = [k for k, v in rows[0].items()
             if k not in ('iteration', 'seed') and isinstance(v, (int, float))
             and not isinstance(v, bool)]
    for name in names:
      per_seed = [r[name] for r in rows if r.get(name) is not None]
      for r in rows:
        if r.get(name) is not None:
          values.append((f'{name}/seed_{r["seed"]}', float(r[name])))
      if per_seed:
        values.append((f'{name}/mean', float(np.mean(per_seed))))
    self._write(step, self._summary_pb2.Summary(value=[
        self._summary_pb2.Summary.Value(tag=t, simple_value=v)
        for t, v in values]))
    self._writer.flush()  # A paused or killed run keeps what it logged.

  def close(self) -> None:
    self._writer.close()


def maybe_writer(logdir: str, enabled: bool) -> Optional[Writer]:
  """A Writer, or None when disabled or tensorboard is not installed."""
  return Writer(logdir) if enabled and available() else None
