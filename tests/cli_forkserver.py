"""Runs launch scripts in forked children of one process that imported JAX.

Most of a bad-input case of tests/test_reliability.py is Python importing
jax, flax, optax and orbax (~1.5 s of CPU) before the script prints its
one-line error. This server imports them once; each request forks a child
that runs the script as `python <script> <args>` would (its own argv,
working folder, environment and file descriptors 1 and 2), so a case costs
the script's own work. The server only imports: no JAX backend starts and
no thread runs in it (checked below), so forking it is safe, and a child's
XLA_FLAGS still count.

Protocol: one JSON object per line on stdin, {"argv": [script, args...],
"cwd": str, "env": {...}}; one per line on stdout, {"returncode": int
(negative: killed by that signal, as subprocess reports it), "stdout": str,
"stderr": str}.
"""

import json
import os
import runpy
import sys
import tempfile
import threading
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bass_jax.experiment  # pylint: disable=g-import-not-at-top,unused-import
import launch.common  # pylint: disable=g-import-not-at-top,unused-import

assert threading.active_count() == 1, 'a thread would not survive the fork'


def exit_status(e: SystemExit) -> int:
  """The process exit status `sys.exit(e.code)` gives."""
  if e.code is None:
    return 0
  if isinstance(e.code, int):
    return e.code
  print(e.code, file=sys.stderr)
  return 1


def run_child(request: dict, out_path: str, err_path: str) -> None:
  """In the forked child: runs the script and exits, never returns."""
  code = 1
  try:
    os.chdir(request['cwd'])
    os.environ.clear()
    os.environ.update(request['env'])
    for fd, path in ((1, out_path), (2, err_path)):
      opened = os.open(path, os.O_WRONLY)
      os.dup2(opened, fd)
      os.close(opened)
    sys.argv = list(request['argv'])
    try:
      runpy.run_path(sys.argv[0], run_name='__main__')
      code = 0
    except SystemExit as e:
      code = exit_status(e)
    except BaseException:  # pylint: disable=broad-except
      traceback.print_exc()  # As the interpreter would, before exit 1.
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access


def serve() -> None:
  for line in sys.stdin:
    request = json.loads(line)
    with tempfile.TemporaryDirectory() as folder:
      out_path = os.path.join(folder, 'stdout')
      err_path = os.path.join(folder, 'stderr')
      for path in (out_path, err_path):
        open(path, 'w').close()
      pid = os.fork()
      if pid == 0:
        run_child(request, out_path, err_path)
      _, status = os.waitpid(pid, 0)
      with open(out_path, errors='replace') as out, \
           open(err_path, errors='replace') as err:
        reply = {'returncode': os.waitstatus_to_exitcode(status),
                 'stdout': out.read(), 'stderr': err.read()}
    print(json.dumps(reply), flush=True)


if __name__ == '__main__':
  serve()
