"""Ctrl-C that is never lost, and that loses no finished iteration.

A KeyboardInterrupt Python would drop is re-raised (`install`); during a
run the first Ctrl-C asks it to stop at its next checkpoint, and only a
second one stops it at once (`stop_requests`).

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
import contextlib
import signal
import sys
import threading
import types

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


def _owns(handler) -> bool:
  """Whether this thread may replace the SIGINT `handler`: the main thread
  (the only one that can install handlers) and a handler that raises
  KeyboardInterrupt (Python's default or `stop_requests`'), not an ignored
  SIGINT (a background job) or a caller's own handler."""
  return threading.current_thread() is threading.main_thread() and (
      handler is signal.default_int_handler or
      getattr(handler, 'raises_interrupt', False))


@contextlib.contextmanager
def stop_requests(enabled: bool = True):
  """Ctrl-C as a request to stop, for a run's loop.

  Within the block the first Ctrl-C (SIGINT) sets `requested` on the
  yielded object and says so on stderr: the loop checkpoints the iteration
  it is in once it ends and stops (no finished iteration is lost, whatever
  `checkpoint_every`). A second Ctrl-C raises KeyboardInterrupt at once.
  Only Python's default handler is replaced, on the main thread and when
  `enabled`; otherwise `requested` stays False and Ctrl-C does what it did.

  Yields:
    An object whose `requested` says whether a stop was asked for.
  """
  request = types.SimpleNamespace(requested=False)
  handler = signal.getsignal(signal.SIGINT)
  if not (enabled and handler is signal.default_int_handler and
          _owns(handler)):
    yield request
    return

  def asked(signum, frame):
    if request.requested:
      signal.default_int_handler(signum, frame)  # Raises KeyboardInterrupt.
    request.requested = True
    print('Ctrl-C: stopping once this iteration is done and checkpointed '
          '(Ctrl-C again stops at once, losing it)', file=sys.stderr,
          flush=True)

  asked.raises_interrupt = True  # `deferred` may hold it back.
  previous = signal.signal(signal.SIGINT, asked)
  try:
    yield request
  finally:
    signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def deferred():
  """Holds back Ctrl-C (SIGINT) until the block is done, then passes it on.

  A checkpoint write interrupted inside orbax's worker threads once printed
  their traceback over the one-line "interrupted" message; deferred, the
  write completes and the run stops just after it. Only handlers this thread
  owns (`_owns`) are deferred.
  """
  previous = signal.getsignal(signal.SIGINT)
  if not _owns(previous):
    yield
    return
  caught = []
  signal.signal(signal.SIGINT, lambda *_: caught.append(True))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
  for _ in caught:
    previous(signal.SIGINT, None)
