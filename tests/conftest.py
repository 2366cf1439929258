"""Shared test fixtures: tiny data, the repo's paths."""

import atexit
import os
import pathlib
import shutil
import signal
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED_DATA = pathlib.Path(
    os.environ.get('BASS_DATA_DIR', REPO.parent / 'shared' / 'data'))


def pytest_addoption(parser):
  """Accepts pytest.ini's `--dist loadfile --no-loadscope-reorder` where
  pytest-xdist is absent or disabled (`pip install -e .` without the test
  extra, `-p no:xdist`): the tests then run in one process instead of
  stopping at the options."""
  try:
    parser.addoption('--dist', default='no',
                     help='ignored: pytest-xdist is not active')
    parser.addoption('--no-loadscope-reorder', action='store_true',
                     help='ignored: pytest-xdist is not active')
  except ValueError:  # pytest-xdist is active and owns them.
    pass


# The test files that take longest, longest first (pytest --durations on a
# 2-core machine, 20-250 s each). They start first, the others after them
# in the usual order: the xdist workers then end on short files, not one on
# a long file while the other idles (xdist's own order, by number of tests,
# left the one-test test_mnist_run.py to run last, alone, for about a
# minute). A file missing here only costs time.
LONGEST_FILES = (
    'test_benchmark_smoke.py', 'test_reliability.py', 'test_sharding.py',
    'test_sweep.py', 'test_loop_settings.py', 'test_multiprocess.py',
    'test_human_oracle.py', 'test_loop.py', 'test_report.py',
    'test_walkthrough.py', 'test_user_code.py', 'test_mnist_run.py',
    'test_diverse_acquisition.py', 'test_batchbald.py', 'test_data.py',
    'test_initial_blocks.py', 'test_predict.py', 'test_resume.py')


def pytest_collection_modifyitems(items):
  """The tests of LONGEST_FILES first, in its order (a stable sort)."""
  rank = {name: i for i, name in enumerate(LONGEST_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# XLA's backend (LLVM) optimizations off for the suite: its programs are
# tiny, so compiling them costs more than running them (the suite takes
# about 30 % less time). The HLO passes (fusion, buffer assignment,
# sharding propagation) run as ever, so the shapes, shardings, memory and
# equalities between programs that tests check are those users get.
# Subprocesses inherit it; the MNIST CNN run and the benchmarks, where
# running costs more than compiling, set OPTIMIZED. To test everything
# fully optimized: JAX_DISABLE_MOST_OPTIMIZATIONS=false python -m pytest ...
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', 'true')
OPTIMIZED = {'JAX_DISABLE_MOST_OPTIMIZATIONS': 'false'}

# One fresh JAX compilation cache for each test process (its subprocesses
# inherit it), no test reading or filling the user's ~/.cache/bass_jax
# (config.compilation_cache 'auto' keeps a folder JAX was given). It keeps
# every program, however fast it compiled (JAX's default keeps those over
# 1 s): the suite's tiny programs recur across tests and the processes they
# start, and reading one back costs less than compiling it again (the suite
# takes 12-16 % less time than with the default). One cache shared by both
# xdist workers saved nothing measurable.
_CACHE = tempfile.mkdtemp(prefix='bass_jax_test_xla_cache_')
os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '-1')
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


@pytest.fixture(scope='session')
def forkserver():
  """run(argv, env) -> CompletedProcess of `python <argv...>` in the repo
  root, run as a fork of one process that imported JAX once
  (tests/cli_forkserver.py): a launch script's one-line errors, or its
  whole run (sweeps, reports), without ~2 s of imports each. (Scripts that
  must start JAX afresh, read stdin, take signals from the test or boot
  patched still need a subprocess of their own.)"""
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  server = subprocess.Popen(
      [sys.executable, str(REPO / 'tests' / 'cli_forkserver.py')], cwd=REPO,
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

  def run(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    server.stdin.write(json.dumps({'argv': [str(a) for a in argv],
                                   'cwd': str(REPO), 'env': env}) + '\n')
    server.stdin.flush()
    line = server.stdout.readline()
    if not line:  # Its traceback is on stderr, above.
      raise RuntimeError('tests/cli_forkserver.py stopped')
    reply = json.loads(line)
    return subprocess.CompletedProcess(argv, reply['returncode'],
                                       reply['stdout'], reply['stderr'])

  yield run
  server.stdin.close()
  server.wait(timeout=60)


# The forkserver's `run` while a module marked
# `pytest.mark.usefixtures('forked_scripts')` runs, for helpers that take no
# fixture: `forked(argv, env)`.
_FORKED = []


@pytest.fixture(scope='module')
def forked_scripts(forkserver):
  _FORKED.append(forkserver)
  yield
  _FORKED.pop()


def forked(argv: list, env: dict):
  """`python <argv...>` in the repo root through the forkserver (inside a
  module using `forked_scripts`)."""
  return _FORKED[-1](argv, env)


@pytest.fixture
def python_sigint():
  """Python's own SIGINT handler (KeyboardInterrupt) for one test, as a
  terminal gives it, also where the tests run with SIGINT ignored (a
  shell's `cmd &` without job control passes SIG_IGN down). Subprocesses
  started meanwhile begin with SIGINT's default action (exec resets a
  caught signal), so their Python raises KeyboardInterrupt too."""
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  yield
  signal.signal(signal.SIGINT, previous)


def run_metrics(config, ds, iterations):
  """(run, final state, [host metrics of every iteration]) of `iterations`
  compiled EM steps of `config` on `ds`."""
  import jax  # pylint: disable=g-import-not-at-top
  from bass_jax import experiment  # pylint: disable=g-import-not-at-top
  r = experiment.build(config, ds)
  state, rows = r.state, []
  for _ in range(iterations):
    state, m = r.step(state, r.pool)
    rows.append(jax.device_get(m))
  return r, state, rows
