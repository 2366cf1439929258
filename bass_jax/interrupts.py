"""Ctrl-C that is never lost, and that loses no finished iteration.

A KeyboardInterrupt Python would drop is re-raised (`install`); during a
run the first Ctrl-C asks it to stop at its next checkpoint, and only a
second one stops it at once (`stop_requests`), also while the main thread
is inside a compiled call that returns only when done (`_SignalWatch`).

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
import os
import signal
import sys
import threading
import time
from typing import Callable, Optional

# Seconds before a dropped Ctrl-C is asked for again.
RETRY_S = 0.01
# Seconds the main thread may take to act on a signal before the watcher
# acts for it: far above the milliseconds Python takes between bytecodes
# (or jaxlib between its signal checks while compiling or waiting), so
# only a call that checks no signals lasts that long.
BUSY_S = 1.0
# The line printed for a stop the watcher makes (True: SIGTERM), where the
# process ends without unwinding; set by `install` in a command-line tool.
_exit_line: Optional[Callable[[bool], str]] = None
# Whether `deferred` holds signals back (a checkpoint write): the watcher
# then leaves them to it.
_deferring = threading.Event()
# When (time.monotonic) a handler of this module last ran in the main
# thread: a signal that came before it was taken (Python runs a handler
# once for several signals that came together).
_last_taken = float('-inf')
# Seconds between a signal and the watcher reading its byte, at most, for
# telling a handler that ran before the read from one that never ran.
_READ_SLACK_S = 0.1
# Makes the first signal's line print once, whichever thread prints it.
_line_lock = threading.RLock()


def _taken() -> None:
  """Notes that the main thread ran a handler of this module just now."""
  global _last_taken
  _last_taken = time.monotonic()


def _retrying_hook(previous):
  """`sys.unraisablehook` that re-raises dropped KeyboardInterrupts later
  (a dropped `Terminated` as SIGTERM, so it stays one)."""
  def hook(unraisable) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
      signum = (signal.SIGTERM if isinstance(unraisable.exc_value, Terminated)
                else signal.SIGINT)
      threading.Timer(RETRY_S, _thread.interrupt_main, (signum,)).start()
      return
    previous(unraisable)

  hook.retries_interrupts = True
  return hook


def install(exit_line: Optional[Callable[[bool], str]] = None) -> None:
  """Makes a Ctrl-C raised where Python drops it come again, and SIGTERM
  raise `Terminated` where no run's `stop_requests` handles it (starting
  up, between a sweep's rows, printing results) instead of ending the
  process silently; once per process: a second call changes nothing.

  `exit_line(by_sigterm)`: for a command-line tool, the line to print when
  a second Ctrl-C or SIGTERM must stop a run whose main thread is inside a
  compiled call: the process then ends at once (as a kill would, which
  checkpoints survive) instead of when the call returns. None (a notebook,
  a library caller): such a stop waits for the call.
  """
  global _exit_line
  if exit_line is not None:
    _exit_line = exit_line
  if not getattr(sys.unraisablehook, 'retries_interrupts', False):
    sys.unraisablehook = _retrying_hook(sys.unraisablehook)
  if (threading.current_thread() is threading.main_thread() and
      signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
    signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum, frame):
  del signum, frame
  raise Terminated()


_terminate.raises_interrupt = True


def _owns(handler) -> bool:
  """Whether this thread may replace the SIGINT `handler`: the main thread
  (the only one that can install handlers) and a handler that raises
  KeyboardInterrupt (Python's default or `stop_requests`'), not an ignored
  SIGINT (a background job) or a caller's own handler."""
  return threading.current_thread() is threading.main_thread() and (
      handler is signal.default_int_handler or
      getattr(handler, 'raises_interrupt', False))


class Terminated(KeyboardInterrupt):
  """A run stopped by SIGTERM (a preempted machine, `docker stop`, a
  scheduler): a KeyboardInterrupt, so whatever cleans up after Ctrl-C
  cleans up after it too; the CLI exits with 143 (128 + SIGTERM)."""


# Stop requests a run did not act on: they came in its last iteration, so it
# finished (`stop_requests`); `unserved_stop` hands them to the caller.
_unserved: list[StopRequest] = []


def unserved_stop() -> Optional[StopRequest]:
  """The stop asked for in a run's last iteration, once (then None): the
  run finished, but a caller with more to do (a sweep's next row) stops
  instead, raising its `interrupt()`."""
  return _unserved.pop() if _unserved else None


class StopRequest:
  """What `stop_requests` yields: whether a stop was asked for, and how."""

  def __init__(self):
    self.requested = False
    self.by_sigterm = False
    # Whether the watcher printed the first signal's line already, while
    # the main thread could not take it.
    self.announced = False

  def interrupt(self) -> KeyboardInterrupt:
    """The exception a loop raises to stop as asked."""
    return Terminated() if self.by_sigterm else KeyboardInterrupt()


def _request_line(term: bool) -> str:
  what, again = ('SIGTERM', 'a second SIGTERM') if term else (
      'Ctrl-C', 'Ctrl-C again')
  return (f'{what}: stopping once this iteration is done and checkpointed '
          f'({again} stops at once, losing it)')


class _SignalWatch:
  """Acts on Ctrl-C and SIGTERM that the main thread cannot take.

  Python runs a signal's handler in the main thread between bytecodes, so
  inside one call that checks no signals (XLA:CPU running a program in the
  calling thread; jaxlib checks them while compiling and while waiting for
  the device) neither the first signal's line nor a second signal's stop
  comes until the call returns.
  The C handler also writes each signal's number to a pipe
  (`signal.set_wakeup_fd`); a thread reads it, and where no handler of
  this module has run within BUSY_S after it, it prints the first signal's
  line itself and ends the process on a later one (`os._exit`: what the
  kill a user would send next does, which checkpoints and metrics
  survive), except while `deferred` holds signals back for a checkpoint
  write or the block is ending.
  """

  def __init__(self, request: StopRequest, signals: tuple[int, ...]):
    self.request, self.signals = request, signals
    self.closing = threading.Event()
    self.read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # As set_wakeup_fd requires.
    self.write_fd = write_fd
    self.previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    self.thread = threading.Thread(target=self._watch, daemon=True,
                                   name='bass_jax-signal-watch')
    self.thread.start()

  @staticmethod
  def available() -> bool:
    """Whether the wakeup fd is free (an asyncio loop on the main thread
    may hold it, and would miss its signals if taken)."""
    held = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(held)
    return held == -1

  def close(self) -> None:
    """Stops the thread (at once: the main thread, running this, is not
    stuck) and gives the wakeup fd back."""
    self.closing.set()
    try:
      mine = signal.set_wakeup_fd(self.previous)
      if mine != self.write_fd:  # Replaced meanwhile: keep the replacement.
        signal.set_wakeup_fd(mine)
    finally:
      os.close(self.write_fd)  # The thread reads the pipe's end, and ends.
      self.thread.join()
      os.close(self.read_fd)

  def _watch(self) -> None:
    while True:
      data = os.read(self.read_fd, 64)
      if not data:
        return
      arrived = time.monotonic()
      for signum in data:
        if signum in self.signals:
          self._act_if_busy(arrived, signum == signal.SIGTERM)

  def _was_taken(self, arrived: float) -> bool:
    return (self.closing.is_set() or _deferring.is_set() or
            _last_taken >= arrived - _READ_SLACK_S)

  def _act_if_busy(self, arrived: float, term: bool) -> None:
    """A signal's byte was read at `arrived`: print its line, or end the
    process, if no handler has taken it within BUSY_S."""
    while time.monotonic() < arrived + BUSY_S:
      if self._was_taken(arrived):
        return
      time.sleep(0.02)
    with _line_lock:  # Decided under the lock, printed outside it.
      if self._was_taken(arrived):
        return
      first = not (self.request.requested or self.request.announced)
      self.request.announced = True
    if first:
      print(_request_line(term), file=sys.stderr, flush=True)
      return
    print(_exit_line(term), file=sys.stderr, flush=True)
    os._exit(143 if term else 130)  # pylint: disable=protected-access


@contextlib.contextmanager
def stop_requests(enabled: bool = True):
  """Ctrl-C, or SIGTERM, as a request to stop, for a run's loop.

  Within the block the first Ctrl-C (SIGINT) or SIGTERM sets `requested` on
  the yielded object and says so on stderr: the loop checkpoints the
  iteration it is in once it ends and stops (no finished iteration is lost,
  whatever `checkpoint_every`), raising `interrupt()`. A second one raises
  KeyboardInterrupt (`Terminated` for SIGTERM) at once.

  Only Python's default handlers are replaced (SIGINT's, and SIGTERM's
  SIG_DFL, which ends the process silently), on the main thread. Not
  `enabled` (a run that cannot wait for an iteration's end: it asks the
  terminal, or runs in several processes), `requested` stays False, Ctrl-C
  does what it did and SIGTERM raises `Terminated` at once, so the run
  still ends with its one line.

  Yields:
    A `StopRequest`.
  """
  request = StopRequest()
  if threading.current_thread() is not threading.main_thread():
    yield request
    return

  def at_once(signum, frame):
    del signum, frame
    raise Terminated()

  at_once.raises_interrupt = True

  def asked(signum, frame):
    _taken()
    term = signum == signal.SIGTERM
    with _line_lock:
      if request.requested:
        raise Terminated() if term else KeyboardInterrupt()
      request.requested, request.by_sigterm = True, term
      announce, request.announced = not request.announced, True
    if announce:
      print(_request_line(term), file=sys.stderr, flush=True)

  asked.raises_interrupt = True  # `deferred` may hold it back.
  previous = {}
  for sig, default in ((signal.SIGINT, signal.default_int_handler),
                       (signal.SIGTERM, signal.SIG_DFL)):
    current = signal.getsignal(sig)
    if current is not default and not getattr(current, 'raises_interrupt',
                                              False):
      continue  # A caller's own handler, or an ignored signal.
    if enabled:
      previous[sig] = signal.signal(sig, asked)
    elif sig == signal.SIGTERM:
      previous[sig] = signal.signal(sig, at_once)
  _unserved.clear()
  watch = None
  try:
    if (enabled and previous and _exit_line is not None and
        _SignalWatch.available()):
      watch = _SignalWatch(request, tuple(previous))
    yield request
    if request.requested:
      _unserved.append(request)
  finally:
    try:
      if watch:
        watch.close()
    finally:
      for sig, handler in previous.items():
        signal.signal(sig, handler)


@contextlib.contextmanager
def deferred():
  """Holds back Ctrl-C (SIGINT) and SIGTERM until the block is done, then
  passes them on.

  A checkpoint write interrupted inside orbax's worker threads once printed
  their traceback over the one-line "interrupted" message; deferred, the
  write completes and the run stops just after it. Only handlers this thread
  owns (`_owns`) are deferred.
  """
  held = {sig: signal.getsignal(sig) for sig in (signal.SIGINT,
                                                 signal.SIGTERM)}
  held = {sig: h for sig, h in held.items() if _owns(h)}
  caught = []

  def catch(signum, frame):
    del frame
    _taken()
    caught.append(signum)

  for sig in held:
    signal.signal(sig, catch)
  _deferring.set()
  try:
    yield
  finally:
    for sig, handler in held.items():
      signal.signal(sig, handler)
    _deferring.clear()
  for signum in caught:
    held[signum](signum, None)
