"""Writing a run's text files: atomically, and naming the file that failed.

A run killed or out of disk space mid-write must leave either the old file
or the new one, never half of one: a resume and a report read them back.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterable


@contextlib.contextmanager
def naming_file(path: str, temp: str | None = None):
  """Gives an OSError raised inside without a file name (a write or fsync
  on a full disk: '[Errno 28] No space left on device'), or naming `temp`
  (the file written aside, which the user never sees), the name `path`, so
  its one line says which file failed."""
  try:
    yield
  except OSError as e:
    if e.errno is None or e.filename not in (None, temp):
      raise
    raise OSError(e.errno, e.strerror, path) from None


def write_lines(path: str, lines: Iterable[str], newline: str | None = None
                ) -> None:
  """Replaces a text file atomically with `lines`; a failed write (a full
  disk) leaves the file as it was and no temp file beside it. `newline`
  as for `open` ('' keeps a CSV writer's line ends)."""
  tmp = path + '.tmp'
  try:
    with naming_file(path, tmp):
      with open(tmp, 'w', newline=newline) as f:
        f.writelines(lines)
        f.flush()
        os.fsync(f.fileno())  # The replace must not outlive its content.
      os.replace(tmp, path)
  except BaseException:
    if os.path.isfile(tmp):
      os.remove(tmp)
    raise


def write_json(path: str, obj: Any) -> None:
  """Writes JSON atomically (`write_lines`): never a half-written file."""
  write_lines(path, [json.dumps(obj, indent=2, sort_keys=True)])
