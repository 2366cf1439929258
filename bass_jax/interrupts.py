"""Ctrl-C that is never lost: a KeyboardInterrupt Python would drop is re-raised.

Python's default SIGINT handler raises KeyboardInterrupt in whatever Python
code the main thread runs. When that is a garbage-collector callback (JAX
registers one while it starts), a weakref callback or a finaliser, the
exception cannot propagate: Python passes it to `sys.unraisablehook`, which
prints "Exception ignored in ..." and the run goes on as if no Ctrl-C had
come. `install` adds a hook that asks for the interrupt again a moment
later (`_thread.interrupt_main`, as if Ctrl-C came again), once the
callback has returned; any other unraisable exception goes to the hook that
was there before.
"""

from __future__ import annotations

import _thread
import sys
import threading

# Seconds before a dropped Ctrl-C is asked for again.
RETRY_S = 0.01


def _retrying_hook(previous):
  """`sys.unraisablehook` that re-raises dropped KeyboardInterrupts later."""
  def hook(unraisable) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
      threading.Timer(RETRY_S, _thread.interrupt_main).start()
      return
    previous(unraisable)

  hook.retries_interrupts = True
  return hook


def install() -> None:
  """Makes a Ctrl-C raised where Python drops it come again (once per
  process: a second call changes nothing)."""
  if not getattr(sys.unraisablehook, 'retries_interrupts', False):
    sys.unraisablehook = _retrying_hook(sys.unraisablehook)
