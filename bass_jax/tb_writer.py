"""TensorBoard event files beside metrics.jsonl, without TensorFlow.

Uses the `tensorboard` package's record format and protos directly (it is
an optional dependency: `pip install 'bass_jax[tensorboard]'`). One run writes
one event file in `<workdir>/tensorboard/` with hparams (the config) at step
0 and one scalar per metric and seed, tagged `<metric>/seed_<s>`, plus the
mean over seeds as `<metric>/mean`; a resumed run rewrites it from
metrics.jsonl (`workdirs.rewritten_tensorboard`).
"""

from __future__ import annotations

import os
import socket
import sys
import time
import types
from typing import Any

import numpy as np

from bass_jax import writing


def available() -> bool:
  try:
    import tensorboard  # pylint: disable=g-import-not-at-top,unused-import
    return True
  except ImportError:
    return False


class Writer:
  """Scalars and hparams into a TensorBoard log dir."""

  def __init__(self, logdir: str):
    # tensorboard uses TensorFlow's file API when TensorFlow is importable
    # (seconds of start-up and stderr noise); a `tensorboard.compat.notf`
    # module is its switch for the built-in stub instead.
    sys.modules.setdefault('tensorboard.compat.notf',
                           types.ModuleType('tensorboard.compat.notf'))
    # pylint: disable=g-import-not-at-top
    from tensorboard.summary.writer.record_writer import RecordWriter
    from tensorboard.compat.proto import event_pb2, summary_pb2
    self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
    # Written here, not by tensorboard's EventFileWriter: its thread would
    # print a traceback of a full disk and raise it at some later call; a
    # write in this thread fails as the one-line OSError of any other.
    os.makedirs(logdir, exist_ok=True)
    name = (f'events.out.tfevents.{int(time.time()):010d}.'
            f'{socket.gethostname()}.{os.getpid()}')
    self._path = os.path.join(logdir, name)
    self._writer = RecordWriter(open(self._path, 'wb'))
    self._add(event_pb2.Event(wall_time=time.time(),
                              file_version='brain.Event:2'))

  def _add(self, event) -> None:
    with writing.naming_file(self._path):
      self._writer.write(event.SerializeToString())

  def _write(self, step: int, summary) -> None:
    self._add(self._event_pb2.Event(wall_time=time.time(), step=step,
                                    summary=summary))

  def hparams(self, config: dict[str, Any]) -> None:
    """The config as hparams (scalars, strings and bools only).

    Built from the hparams plugin's protos directly: its summary helpers
    import TensorFlow when it is installed, which is slow and noisy.
    """
    # pylint: disable=g-import-not-at-top
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2
    info = plugin_data_pb2.SessionStartInfo()
    for key, value in config.items():
      if isinstance(value, bool):
        info.hparams[key].bool_value = value
      elif isinstance(value, (int, float)):
        info.hparams[key].number_value = value
      elif isinstance(value, str):
        info.hparams[key].string_value = value
    content = plugin_data_pb2.HParamsPluginData(
        session_start_info=info, version=metadata.PLUGIN_DATA_VERSION)
    pb2 = self._summary_pb2
    plugin = pb2.SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME,
        content=content.SerializeToString())
    self._write(0, pb2.Summary(value=[pb2.Summary.Value(
        tag=metadata.SESSION_START_INFO_TAG,
        metadata=pb2.SummaryMetadata(plugin_data=plugin))]))
    self._flush()

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
    self._flush()  # A paused or killed run keeps what it logged.

  def _flush(self) -> None:
    with writing.naming_file(self._path):
      self._writer.flush()

  def close(self) -> None:
    with writing.naming_file(self._path):
      self._writer.close()
