"""Writing a run's text files: atomically, and naming the file that failed.

A run killed or out of disk space mid-write must leave either the old file
or the new one, never half of one: a resume and a report read them back.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from typing import IO, Any, Callable, Iterable, Sequence


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


def _replaced(path: str, mode: str, write: Callable[[IO], Any],
              newline: str | None = None) -> None:
  """Replaces `path` atomically with what `write` writes into the open
  file; a failed write (a full disk) leaves the file as it was and no temp
  file beside it."""
  tmp = path + '.tmp'
  try:
    with naming_file(path, tmp):
      with open(tmp, mode, newline=newline) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())  # The replace must not outlive its content.
      os.replace(tmp, path)
  except BaseException:
    if os.path.isfile(tmp):
      os.remove(tmp)
    raise


def write_lines(path: str, lines: Iterable[str], newline: str | None = None
                ) -> None:
  """Replaces a text file atomically with `lines` (`_replaced`). `newline`
  as for `open` ('' keeps a CSV writer's line ends)."""
  _replaced(path, 'w', lambda f: f.writelines(lines), newline)


def write_bytes(path: str, data: bytes) -> None:
  """Replaces a binary file atomically with `data` (`_replaced`)."""
  _replaced(path, 'wb', lambda f: f.write(data))


def write_json(path: str, obj: Any) -> None:
  """Writes JSON atomically (`write_lines`): never a half-written file."""
  write_lines(path, [json.dumps(obj, indent=2, sort_keys=True)])


def write_csv(path: str, header: Sequence[str],
              rows: Iterable[Sequence[Any]]) -> None:
  """Replaces a CSV file atomically (`write_lines`) with `header`, then
  `rows`, creating its folder if needed."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  text = io.StringIO(newline='')
  writer = csv.writer(text)
  writer.writerow(header)
  writer.writerows(rows)
  write_lines(path, [text.getvalue()], newline='')  # The writer's line ends.
