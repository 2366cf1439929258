"""Ctrl-C that is never lost: Python's default, re-raised where it can land.

Python's default SIGINT handler raises KeyboardInterrupt in whatever Python
code the main thread runs. When that is a garbage-collector callback (JAX
registers one while it starts) or a finaliser, the exception is printed as
"Exception ignored in ..." and dropped, and the run goes on as if no Ctrl-C
had come. `handler` raises it as the default does, except inside such a
callback, where it asks again a moment later (`_thread.interrupt_main`), once
the callback has returned.
"""

from __future__ import annotations

import _thread
import gc
import signal
import threading
import types

# Seconds before a Ctrl-C that arrived inside a callback is raised again.
RETRY_S = 0.01


def _in_unraisable_context(frame: types.FrameType | None) -> bool:
  """True inside a gc callback or a __del__, where a raise is swallowed."""
  callbacks = {getattr(cb, '__code__', None) for cb in gc.callbacks}
  while frame is not None:
    if frame.f_code in callbacks or frame.f_code.co_name == '__del__':
      return True
    frame = frame.f_back
  return False


def handler(signum: int, frame: types.FrameType | None) -> None:
  """SIGINT: KeyboardInterrupt, like Python's default, but not swallowed."""
  if _in_unraisable_context(frame):
    threading.Timer(RETRY_S, _thread.interrupt_main, (signum,)).start()
    return
  raise KeyboardInterrupt


def install() -> None:
  """Makes `handler` the SIGINT handler where Python's default is in place
  (not where SIGINT is ignored, e.g. a background job, or a caller's own)."""
  if (threading.current_thread() is threading.main_thread() and
      signal.getsignal(signal.SIGINT) is signal.default_int_handler):
    signal.signal(signal.SIGINT, handler)


def is_default(current) -> bool:
  """Whether `current` raises KeyboardInterrupt: the default or `handler`."""
  return current is signal.default_int_handler or current is handler
