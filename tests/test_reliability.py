"""Reliability end to end, through launch/train.py in subprocesses.

- SIGKILL at random points (and in the middle of a checkpoint write), then a
  truncated newest checkpoint: the relaunched run still ends bit-identical to
  an uninterrupted one (metrics.jsonl rows and final parameters); so does
  a SIGKILL inside the initial phase's blocks.
- A NaN loss stops the run with one line and keeps the last good checkpoint.
- A table of bad inputs (flags, configs, data files, checkpoints, workdirs):
  exit status 2, one line `error: ...` naming the culprit, no traceback, and
  the workdir untouched.

Every run is the tiny Yin-Yang config of TOY. The runs share the test
session's JAX compilation cache: the first launch compiles (~20 s on 2 CPU
cores), the later ones take ~5 s.
"""

import dataclasses
import gc
import gzip
import hashlib
import json
import os
import pathlib
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
import weakref
from typing import Callable, Optional

import jax
import ml_collections
import numpy as np
import pytest

from bass_jax import analysis
from bass_jax import checkpoint
from bass_jax import config_checks
from bass_jax import experiment
from bass_jax import export
from bass_jax import interrupts
from bass_jax import workdirs
from configs import yinyang
from launch import common as launch_common

REPO = pathlib.Path(__file__).resolve().parents[1]
TRAIN = str(REPO / 'launch' / 'train.py')
# Long enough that three kills (each up to ~0.3 s after an iteration line;
# a toy iteration takes ~50 ms) never reach the end of the run.
OVERRIDES = {'num_iterations': 40, 'num_seeds': 2, 'initial_epochs': 10,
             'mc_passes_gt': 10, 'checkpoint_every': 2}
TOY = [f'--config.{k}={v}' for k, v in OVERRIDES.items()]
ITERATIONS = OVERRIDES['num_iterations'] + 1
ROWS = ITERATIONS * OVERRIDES['num_seeds']
FINAL_STEP = ITERATIONS

# Run in the subprocess before launch/train.py: argv[1] is Python code
# patching the library (e.g. to die at a chosen point), the rest its flags.
BOOT = '''
import runpy, sys
exec(sys.argv[1])
sys.argv = ['launch/train.py'] + sys.argv[2:]
runpy.run_path('launch/train.py', run_name='__main__')
'''
# SIGKILL inside checkpoint.save: orbax has written the arrays, meta.json
# (which marks a checkpoint complete) is not there yet.
KILL_IN_CHECKPOINT_WRITE = '''
import os, signal
from bass_jax import checkpoint
def _write_meta(folder, text):
  os.kill(os.getpid(), signal.SIGKILL)
checkpoint._write_meta = _write_meta
'''
# SIGKILL inside the initial phase's blocks, just after the checkpoint of
# the block ending at epoch 6.
KILL_AFTER_INITIAL_EPOCH_6 = '''
import os, signal
from bass_jax import progress
_line = progress.initial_progress_line
def initial_progress_line(loss, done, *args):
  if done == 6:
    os.kill(os.getpid(), signal.SIGKILL)
  return _line(loss, done, *args)
progress.initial_progress_line = initial_progress_line
'''
# A NaN loss at iteration 5 (host side: the compiled program is unchanged).
NAN_AT_5 = '''
from bass_jax import experiment
_rows = experiment.metrics_rows
def metrics_rows(metrics, seeds):
  rows = _rows(metrics, seeds)
  if rows[0]['iteration'] == 5:
    rows[-1]['loss'] = float('nan')
  return rows
experiment.metrics_rows = metrics_rows
'''


# ------------------------------------------------------------------ helpers


@pytest.fixture(scope='module')
def env():
  """The subprocesses' environment: no debug; the session's compilation
  cache (tests/conftest.py) as everywhere."""
  return {k: v for k, v in os.environ.items() if k != 'BASS_DEBUG'}


def command(workdir, args, patch: Optional[str] = None) -> list[str]:
  """The train.py command line (through BOOT when there is a patch)."""
  flags = [f'--workdir={workdir}', *args]
  if patch is None:
    return [sys.executable, TRAIN, *flags]
  return [sys.executable, '-c', BOOT, patch, *flags]


def train(workdir, args=(), env=None, patch=None, extra_env=None):
  """Runs train.py to its end; the CompletedProcess (text stdout, stderr)."""
  full_env = dict(env or os.environ, **(extra_env or {}))
  return subprocess.run(command(workdir, [*TOY, *args], patch), cwd=REPO,
                        env=full_env, capture_output=True, text=True,
                        timeout=300)


@pytest.fixture(scope='module')
def reference(tmp_path_factory, env):
  """A workdir of the uninterrupted toy run."""
  workdir = tmp_path_factory.mktemp('reference') / 'run'
  result = train(workdir, env=env)
  assert result.returncode == 0, result.stderr
  return workdir


def metric_lines(workdir) -> list[str]:
  return pathlib.Path(workdir, 'metrics.jsonl').read_text().splitlines(True)


def newest_step(workdir) -> int:
  return checkpoint.steps(workdir)[-1]


def toy_config():
  config = yinyang.get_config()
  for key, value in OVERRIDES.items():
    config[key] = value
  return config


def final_leaves(workdir, template) -> list[np.ndarray]:
  restored = checkpoint.restore(checkpoint.step_path(workdir, FINAL_STEP),
                                template)
  return jax.tree_util.tree_leaves(restored.state)


def assert_same_run(workdir, reference_dir):
  """Same metrics rows (order aside), each (iteration, seed) once, same
  summary (wall time aside) and bit-identical final parameters."""
  lines = metric_lines(workdir)
  assert all(line.endswith('\n') for line in lines)  # No torn line.
  keys = [(r['iteration'], r['seed']) for r in map(json.loads, lines)]
  assert len(keys) == ROWS and len(set(keys)) == ROWS
  assert sorted(lines) == sorted(metric_lines(reference_dir))
  summaries = [json.loads(pathlib.Path(d, 'summary.json').read_text())
               for d in (workdir, reference_dir)]
  for s in summaries:
    s.pop('wall_s')
  assert summaries[0] == summaries[1]
  template = experiment.build(toy_config()).state
  for a, b in zip(final_leaves(workdir, template),
                  final_leaves(reference_dir, template)):
    np.testing.assert_array_equal(a, b)


class Launch:
  """A train.py subprocess whose stdout lines are read as they come."""

  def __init__(self, workdir, env, args=()):
    self.proc = subprocess.Popen(command(workdir, [*TOY, *args]), cwd=REPO,
                                 env=env,
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    self.lines = queue.Queue()
    threading.Thread(target=self._read, daemon=True).start()

  def _read(self):
    for line in self.proc.stdout:
      self.lines.put(line)
    self.lines.put(None)

  def wait_for(self, pattern: str) -> re.Match:
    """The first stdout line matching pattern (fails if the run ends)."""
    while True:
      line = self.lines.get(timeout=120)
      assert line is not None, f'the run ended before {pattern!r}'
      match = re.search(pattern, line)
      if match:
        return match

  def kill(self):
    self.proc.send_signal(signal.SIGKILL)
    assert self.proc.wait(timeout=60) == -signal.SIGKILL


# ----------------------------------------------------- kill, damage, resume


def test_sigkill_and_damage_then_resume_is_identical(tmp_path, env,
                                                     reference):
  rng = random.Random(20240617)
  workdir = tmp_path / 'run'
  # Three SIGKILLs at random points: after iteration k (1 or 2 past the
  # resume point, so every launch saves a checkpoint and the run is not over
  # yet) and a random fraction of an iteration later, landing in a step, a
  # metrics write or a checkpoint write.
  first, kills = 0, []
  for _ in range(3):
    launch = Launch(workdir, env)
    if first:
      assert int(launch.wait_for(r'resuming from iteration (\d+)')[1]) == first
    k = first + rng.randint(1, 2)
    launch.wait_for(rf'^iter {k}/')
    time.sleep(rng.uniform(0.0, 0.3))
    launch.kill()
    first = newest_step(workdir)
    kills.append((k, first))
  # A SIGKILL in the middle of a checkpoint write leaves only a temp folder.
  killed = subprocess.run(command(workdir, TOY, KILL_IN_CHECKPOINT_WRITE),
                          cwd=REPO, env=env, capture_output=True, timeout=300)
  assert killed.returncode == -signal.SIGKILL
  ckpt_dir = pathlib.Path(checkpoint.checkpoints_dir(workdir))
  assert any(p.name.startswith('.tmp-') for p in ckpt_dir.iterdir())
  assert newest_step(workdir) == first, kills
  # Truncate the newest checkpoint's largest file: the one before is used.
  steps = checkpoint.steps(workdir)
  assert len(steps) >= 2
  files = [p for p in pathlib.Path(checkpoint.step_path(
      workdir, steps[-1])).rglob('*') if p.is_file()]
  biggest = max(files, key=lambda p: p.stat().st_size)
  os.truncate(biggest, biggest.stat().st_size // 2)

  result = train(workdir, env=env)
  assert result.returncode == 0, result.stderr
  assert 'skipping damaged' in result.stdout
  assert f'resuming from iteration {steps[-2]}' in result.stdout
  assert_same_run(workdir, reference)


def test_sigkill_inside_the_initial_blocks_resumes_after_the_last(
    tmp_path, env, reference):
  workdir = tmp_path / 'run'
  blocks = ['--config.initial_block_epochs=3']
  killed = train(workdir, blocks, env=env, patch=KILL_AFTER_INITIAL_EPOCH_6)
  assert killed.returncode == -signal.SIGKILL
  assert checkpoint.steps(workdir) == [0]
  result = train(workdir, blocks, env=env)
  assert result.returncode == 0, result.stderr
  assert 'resuming the initial phase after epoch 6 of 10' in result.stdout
  assert_same_run(workdir, reference)


@pytest.mark.parametrize('sig, status, asked, ended', [
    (signal.SIGINT, 130, 'Ctrl-C', 'interrupted'),
    # What a preempted machine, `docker stop` or a scheduler sends.
    (signal.SIGTERM, 143, 'SIGTERM', 'terminated (SIGTERM)'),
])
def test_ctrl_c_stops_at_a_checkpoint_and_the_run_resumes(
    tmp_path, env, reference, python_sigint, sig, status, asked, ended):
  """The first Ctrl-C (or SIGTERM) stops the run once its iteration is
  done and checkpointed, though no checkpoint is due for 1000 iterations:
  it says so in one line and the resume loses no iteration."""
  workdir = tmp_path / 'run'
  rare = ['--config.checkpoint_every=1000']
  launch = Launch(workdir, env, rare)
  launch.wait_for(r'^iter 2/')
  launch.proc.send_signal(sig)
  assert launch.proc.wait(timeout=120) == status
  rest = []
  while (line := launch.lines.get(timeout=60)) is not None:
    rest.append(line)
  output = ''.join(rest)
  assert 'Traceback' not in output, output
  assert f'{asked}: stopping once this iteration is done and checkpointed' in (
      output), output
  assert (f'{ended}; to continue, run: {launch_common.python_command()} '
          in output), output
  step = newest_step(workdir)
  assert 2 < step < FINAL_STEP
  assert len(metric_lines(workdir)) == step * OVERRIDES['num_seeds']
  result = train(workdir, rare, env=env)
  assert result.returncode == 0, result.stderr
  assert f'resuming from iteration {step} ' in result.stdout
  assert_same_run(workdir, reference)


def signal_delivered(condition) -> bool:
  """Whether `condition()` holds within a second: a signal's handler runs
  between bytecodes, soon after os.kill."""
  for _ in range(100):
    if condition():
      return True
    time.sleep(0.01)
  return False


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason='signal handlers live on the main thread')
def test_a_second_ctrl_c_stops_at_once_unless_a_save_defers_it(
    python_sigint, capsys):
  with interrupts.stop_requests() as stop:
    os.kill(os.getpid(), signal.SIGINT)
    assert signal_delivered(lambda: stop.requested)  # Asked, not raised.
    saved = []
    with pytest.raises(KeyboardInterrupt):
      with interrupts.deferred():  # A checkpoint write.
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        saved.append(True)  # The second Ctrl-C waits for the write...
    assert saved  # ...and stops the run right after it.
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  assert capsys.readouterr().err.startswith('Ctrl-C: stopping once')
  with pytest.raises(KeyboardInterrupt):  # Off: Ctrl-C as it was.
    with interrupts.stop_requests(enabled=False) as stop:
      os.kill(os.getpid(), signal.SIGINT)
      signal_delivered(lambda: False)
  assert not stop.requested


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason='signal handlers live on the main thread')
def test_sigterm_asks_to_stop_and_a_second_one_terminates(capsys):
  before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
  try:
    with interrupts.stop_requests() as stop:
      os.kill(os.getpid(), signal.SIGTERM)
      assert signal_delivered(lambda: stop.requested) and stop.by_sigterm
      assert isinstance(stop.interrupt(), interrupts.Terminated)
      saved = []
      with pytest.raises(interrupts.Terminated):
        with interrupts.deferred():
          os.kill(os.getpid(), signal.SIGTERM)
          time.sleep(0.1)
          saved.append(True)
      assert saved
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert capsys.readouterr().err.startswith('SIGTERM: stopping once')
    # Where a run cannot wait (the terminal oracle, several processes):
    # at once, but still as Terminated, which the CLI says in one line.
    with pytest.raises(interrupts.Terminated):
      with interrupts.stop_requests(enabled=False) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        signal_delivered(lambda: False)
    assert not stop.requested
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    # A handler of the caller's own is left alone.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with interrupts.stop_requests() as stop:
      os.kill(os.getpid(), signal.SIGTERM)
      signal_delivered(lambda: False)
    assert not stop.requested
  finally:
    signal.signal(signal.SIGTERM, before)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason='signal handlers live on the main thread')
def test_sigterm_outside_a_run_and_in_its_last_iteration(capsys):
  before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
  try:
    # The CLI's install(): SIGTERM outside a run (starting up, between a
    # sweep's rows) raises Terminated, which it says in one line (exit
    # 143), where the default action ended the process without a word.
    interrupts.install()
    with pytest.raises(interrupts.Terminated):
      os.kill(os.getpid(), signal.SIGTERM)
      signal_delivered(lambda: False)
    # A run still asks to stop at the first one, and gives the handler back.
    handler = signal.getsignal(signal.SIGTERM)
    with interrupts.stop_requests() as stop:
      os.kill(os.getpid(), signal.SIGTERM)
      assert signal_delivered(lambda: stop.requested)
    assert signal.getsignal(signal.SIGTERM) is handler
    # The block ended without acting on it (the run's last iteration): the
    # caller gets it once, to stop before doing more.
    unserved = interrupts.unserved_stop()
    assert unserved is stop and isinstance(unserved.interrupt(),
                                           interrupts.Terminated)
    assert interrupts.unserved_stop() is None
    # A run that stopped as asked raised it: nothing left over.
    with pytest.raises(interrupts.Terminated):
      with interrupts.stop_requests() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert signal_delivered(lambda: stop.requested)
        raise stop.interrupt()
    assert interrupts.unserved_stop() is None
    assert capsys.readouterr().err.count('SIGTERM: stopping once') == 2
  finally:
    signal.signal(signal.SIGTERM, before)


# One compiled call that runs for minutes unless stopped: the main thread
# stays in it (as in XLA compiling, or waiting for a long iteration).
BUSY_IN_A_COMPILED_CALL = '''
import sys
from bass_jax import interrupts
interrupts.install(exit_line=lambda term: f'stopped at once (term={term})')
import jax
import jax.numpy as jnp
x = jnp.ones(64)
busy = jax.jit(lambda x: jax.lax.fori_loop(
    0, 10**9, lambda i, x: jnp.sin(x) + 1e-3, x)).lower(x).compile()
try:
  with interrupts.stop_requests() as stop:
    print('busy', flush=True)
    busy(x).block_until_ready()
except KeyboardInterrupt as e:  # Where the main thread took it after all.
  term = isinstance(e, interrupts.Terminated)
  print(f'stopped at once (term={term})', file=sys.stderr, flush=True)
  sys.exit(143 if term else 130)
print('returned', flush=True)
'''


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_stops_a_compiled_call_at_once(tmp_path, env,
                                                       python_sigint, signum):
  """Inside one long compiled call (here XLA:CPU runs the loop in the
  calling thread) Python runs no handler until it returns: the first
  Ctrl-C or SIGTERM is still announced within about a second, and a second
  one ends the process then, with the CLI's line and status."""
  err = tmp_path / 'stderr'
  with open(err, 'w') as f:
    proc = subprocess.Popen([sys.executable, '-c', BUSY_IN_A_COMPILED_CALL],
                            cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=f, text=True)
  try:
    assert proc.stdout.readline() == 'busy\n'
    time.sleep(0.3)
    proc.send_signal(signum)
    what = 'SIGTERM' if signum == signal.SIGTERM else 'Ctrl-C'
    deadline = time.monotonic() + 10
    while (f'{what}: stopping once' not in err.read_text() and
           time.monotonic() < deadline):
      time.sleep(0.05)
    assert f'{what}: stopping once' in err.read_text(), err.read_text()
    assert proc.poll() is None  # Asked to stop, still in the call.
    proc.send_signal(signum)
    status = proc.wait(timeout=10)
  finally:
    proc.kill()
    proc.wait()
  term = signum == signal.SIGTERM
  assert status == (143 if term else 130), err.read_text()
  lines = err.read_text().splitlines()
  assert lines[-1] == f'stopped at once (term={term})', lines
  assert sum(line.startswith(f'{what}: stopping once') for line in lines) == 1


# Two Ctrl-Cs held back by a checkpoint write that then fails (a full
# disk): the error is the run's end, and the watcher must not take the
# held signals for ones the main thread could not take.
SIGNALS_HELD_BY_A_FAILED_WRITE = '''
import os, signal, sys, time
from bass_jax import interrupts
interrupts.install(exit_line=lambda term: 'stopped at once')
try:
  with interrupts.stop_requests() as stop:
    with interrupts.deferred():
      for _ in range(2):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
      raise OSError('no space left')
except OSError as e:
  time.sleep(1.5)  # Longer than the watcher waits for the main thread.
  print(f'error: {e}', file=sys.stderr)
  sys.exit(2)
'''


def test_signals_a_failed_write_held_back_end_nothing_at_once(env,
                                                            python_sigint):
  done = subprocess.run([sys.executable, '-c', SIGNALS_HELD_BY_A_FAILED_WRITE],
                        cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=60)
  assert (done.returncode, done.stderr) == (2, 'error: no space left\n')


def test_seeds_over_cpu_cores_equal_one_device(tmp_path, env, reference):
  """--config.cpu_devices=2 with 'seed:2': the 2 seeds run on their own
  CPU devices (launch/train.py sets the count before JAX starts) and give
  the one-device run's rows (floats to 1e-5: per-seed programs differ)."""
  workdir = tmp_path / 'run'
  result = train(workdir, ['--config.cpu_devices=2',
                           '--config.mesh_shape=seed:2'], env=env)
  assert result.returncode == 0, result.stderr
  got = sorted(map(json.loads, metric_lines(workdir)),
               key=lambda r: (r['iteration'], r['seed']))
  want = sorted(map(json.loads, metric_lines(reference)),
                key=lambda r: (r['iteration'], r['seed']))
  assert len(got) == len(want) == ROWS
  for g, w in zip(got, want):
    assert g.keys() == w.keys()
    for name, value in w.items():
      if isinstance(value, float):
        assert g[name] == pytest.approx(value, abs=1e-5), (name, w)
      else:
        assert g[name] == value, (name, w)
  # Read back in this process, which has one CPU device: where a run ran
  # is placement only (export.py and report.py once refused it).
  assert len(jax.devices()) == 1
  run, found = analysis.restored(str(workdir))
  assert run.mesh.size == 1 and found.step == FINAL_STEP
  table, _ = export.export_labels(str(workdir), str(tmp_path / 'l.csv'),
                                  num_passes=2)
  assert (table['source'] == 'human').sum() == got[-1]['num_labels']


def test_nan_loss_stops_with_one_line_and_keeps_last_checkpoint(
    tmp_path, env, reference):
  workdir = tmp_path / 'run'
  result = train(workdir, env=env, patch=NAN_AT_5)
  assert result.returncode == 2
  assert result.stderr.splitlines() == [
      'error: training diverged at iteration 5 (seed 1, loss nan); the last '
      'good checkpoint is kept (report and export read it); retrain with a '
      'lower config.learning_rate and --overwrite']
  assert checkpoint.steps(workdir) == [2, 4]  # Step 6 would follow it 5.
  result = train(workdir, env=env)
  assert result.returncode == 0, result.stderr
  assert 'resuming from iteration 4' in result.stdout
  assert_same_run(workdir, reference)


def test_nan_loss_before_any_checkpoint_says_there_is_none(tmp_path, env):
  workdir = tmp_path / 'run'
  result = train(workdir, env=env, patch=NAN_AT_5.replace('== 5', '== 0'))
  assert result.returncode == 2
  assert result.stderr.splitlines() == [
      'error: training diverged at iteration 0 (seed 1, loss nan); no '
      'checkpoint was written before it, so there is nothing to report; '
      'retrain with a lower config.learning_rate and --overwrite, or, if it '
      'fails from the start, check that the model gives finite logits on the '
      'data']
  assert checkpoint.steps(workdir) == []


def test_multi_process_run_without_workdir_is_refused(tmp_path, env):
  """Each process would name its own workdir after its clock."""
  result = subprocess.run([sys.executable, TRAIN, *TOY,
                           '--config.distributed=True'], cwd=tmp_path,
                          env=env, capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 2
  assert result.stderr.splitlines() == [
      'error: config.distributed=True needs --workdir: every process must '
      'write and read the same folder (a default name carries each host\'s '
      'clock)']
  assert not (tmp_path / 'workdirs').exists()


# ----------------------------------------------------------- bad inputs


def write_npz(path, **changes):
  """A valid 2-D two-class npz dataset with `changes` applied."""
  rng = np.random.default_rng(0)
  arrays = dict(x_train=rng.normal(size=(40, 2)).astype(np.float32),
                y_train=np.arange(40) % 2,
                x_test=rng.normal(size=(20, 2)).astype(np.float32),
                y_test=np.arange(20) % 2, num_classes=np.int64(2))
  arrays.update(changes)
  np.savez(path, **arrays)


def nan_npz(tmp, workdir):
  x = np.zeros((40, 2), np.float32)
  x[3, 1] = np.nan
  write_npz(tmp / 'nan.npz', x_train=x)


def fake_mnist(tmp, workdir):
  """The four MNIST idx file names, with contents that fail the md5."""
  folder = tmp / 'data' / 'mnist'
  folder.mkdir(parents=True)
  header = b'\x00\x00\x08\x03' + np.array([60000, 28, 28], '>u4').tobytes()
  for name in ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
               't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'):
    (folder / name).write_bytes(gzip.compress(header))


def damage_all_meta(tmp, workdir):
  for step in checkpoint.steps(workdir):
    pathlib.Path(checkpoint.step_path(workdir, step), 'meta.json').write_text(
        '{"format": ')


def edit_config_json(workdir, **changes):
  path = workdir / 'config.json'
  path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def reshape_newest_leaf(tmp, workdir, name=None):
  """An intact-looking newest checkpoint whose first leaf (or the leaf
  `name`) has another shape (as from a different model or pool): not
  damage, so no silent fallback."""
  del tmp
  path = pathlib.Path(checkpoint.step_path(workdir, newest_step(workdir)),
                      'meta.json')
  meta = json.loads(path.read_text())
  leaf = next(l for l in meta['leaves'] if name in (None, l['path']))
  leaf['shape'][-1] += 1
  path.write_text(json.dumps(meta))


@dataclasses.dataclass
class Case:
  """One bad input.

  Attributes:
    name: test id.
    args: flags after TOY ('{tmp}' is the case's scratch folder).
    culprit: substrings the error line must contain.
    config: a --config value (it must precede the --config.x overrides).
    setup: prepares files or damages the workdir: setup(tmp, workdir).
    workdir: 'existing' (a copy of the reference run, which must stay
      byte-identical), 'fresh' (must not be created) or 'file' (a file).
    extra_env: added to the environment.
  """
  name: str
  args: tuple[str, ...]
  culprit: tuple[str, ...]
  config: Optional[str] = None
  setup: Optional[Callable[..., None]] = None
  workdir: str = 'existing'
  extra_env: Optional[dict] = None


CASES = [
    # Flags and config files.
    Case('unknown_field', ('--config.no_such_field=1',),
         ("unknown config field 'no_such_field'",)),
    Case('misspelt_field', ('--config.num_seed=2',),
         ("'num_seed'", "did you mean 'num_seeds'"),
         config='configs/yinyang.py'),
    Case('not_a_number', ('--config.num_seeds=abc',),
         ('--config.num_seeds=abc',)),
    Case('float_for_int', ('--config.num_seeds=1.5',),
         ('--config.num_seeds=1.5',)),
    Case('float_for_int_in_config_arg', (), ('num_seeds', 'expected an int'),
         config='configs/yinyang.py:num_seeds=1.5'),
    Case('missing_config_file', (), ('configs/nope.py', 'No such file'),
         config='configs/nope.py'),
    Case('config_file_syntax_error', (), ('bad.py', 'SyntaxError'),
         config='{tmp}/bad.py',
         setup=lambda tmp, _: (tmp / 'bad.py').write_text('def get_config(:\n')),
    Case('unknown_variant', (), ("unknown config arg 'bogus'",),
         config='configs/yinyang.py:bogus'),
    Case('unknown_flag', ('--nosuchflag',), ('nosuchflag',)),
    Case('config_file_twice', ('--config', 'configs/yinyang.py'),
         ('--config is given 2 times', '--config.<field>=<value>'),
         config='configs/yinyang.py:active'),
    Case('bad_bool_flag', ('--overwrite=maybe',), ('--overwrite=maybe',)),
    Case('missing_flagfile', ('--flagfile={tmp}/nope.flags',),
         ('nope.flags',)),
    Case('unknown_dataset', ('--config.dataset=fashion_mnistt',),
         ("'fashion_mnistt'", 'tfds.list_builders()'), workdir='fresh'),
    # Impossible values.
    Case('zero_T', ('--config.mc_passes_gt=0',), ('config.mc_passes_gt=0',)),
    Case('negative_T_pool', ('--config.mc_passes_pool=-3',),
         ('config.mc_passes_pool=-3',)),
    Case('query_larger_than_pool', ('--config.query_size=2000',),
         ('config.query_size=2000', 'pool size 1000')),
    Case('gt_upsample_zero', ('--config.gt_upsample=0',),
         ('config.gt_upsample=0',), workdir='fresh'),
    Case('more_initial_labels_than_exist', ('--config.initial_per_class=600',),
         ('config.initial_per_class=600', 'only 500')),
    Case('negative_cpu_devices', ('--config.cpu_devices=-2',),
         ('config.cpu_devices=-2',)),
    Case('huge_cpu_devices', ('--config.cpu_devices=100000',),
         ('config.cpu_devices=100000 must be at most 512',)),
    Case('rbg_masks_over_a_data_axis',
         ('--config.cpu_devices=2', '--config.mesh_shape=data:2',
          '--config.prng_impl=rbg'),
         ("config.prng_impl='rbg'", "a 'data' axis of 1 only")),
    Case('dropout_rate_one', ('--config.dropout_rate=1.0',),
         ('config.dropout_rate=1.0',)),
    Case('unknown_acquisition', ('--config.acquisition=entropyy',),
         ("config.acquisition='entropyy'",)),
    Case('infinite_mu', ('--config.mu=inf',), ('config.mu=inf', 'finite')),
    # A model of one's own (tests/user_nets.py) that is missing or broken.
    Case('user_model_missing', ('--config.model={tmp}/nets.py:Net',),
         ("config.model '", "no file '"), workdir='fresh'),
    Case('user_model_wrong_logits',
         ('--config.model=tests/user_nets.py:ThreeLogits',),
         ('returned (2, 3) float32, expected logits (2, 2)',),
         workdir='fresh'),
    Case('user_model_import_fails', ('--config.model={tmp}/nets.py:Net',),
         ('loading {tmp}/nets.py failed: ModuleNotFoundError',
          'no_such_module_xyz'),
         setup=lambda tmp, _: (tmp / 'nets.py').write_text(
             'import no_such_module_xyz\n'),
         workdir='fresh'),
    Case('batch_not_divisible_by_devices',
         ('--config.batch_size=255', '--config.mesh_shape=data:-1'),
         ('config.batch_size=255', '2 devices'), workdir='fresh',
         extra_env={'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}),
    # Data files.
    Case('npz_nan', ('--config.dataset={tmp}/nan.npz',),
         ('nan.npz', 'NaN'), setup=nan_npz, workdir='fresh'),
    Case('npz_label_out_of_range', ('--config.dataset={tmp}/lab.npz',),
         ('lab.npz', 'y_train', '[0, 2)'),
         setup=lambda tmp, _: write_npz(tmp / 'lab.npz',
                                     y_train=np.arange(40) % 3)),
    Case('npz_empty_test_split', ('--config.dataset={tmp}/empty.npz',),
         ('empty.npz', 'x_test'),
         setup=lambda tmp, _: write_npz(tmp / 'empty.npz',
                                     x_test=np.zeros((0, 2), np.float32),
                                     y_test=np.zeros(0, np.int64))),
    Case('npz_float_labels', ('--config.dataset={tmp}/flt.npz',),
         ('flt.npz', 'y_train has dtype float32', 'y_train.astype(np.int64)'),
         setup=lambda tmp, _: write_npz(tmp / 'flt.npz',
                                     y_train=np.zeros(40, np.float32))),
    Case('npz_string_labels', ('--config.dataset={tmp}/str.npz',),
         ('str.npz', 'y_test has dtype <U3', 'np.unique(labels, '
          'return_inverse=True)'),
         setup=lambda tmp, _: write_npz(tmp / 'str.npz',
                                     y_test=np.array(['cat', 'dog'] * 10))),
    Case('npz_1d_inputs', ('--config.dataset={tmp}/flat.npz',),
         ('flat.npz', 'x_train', 'shape'),
         setup=lambda tmp, _: write_npz(tmp / 'flat.npz',
                                     x_train=np.zeros(40, np.float32))),
    Case('npz_pickled_objects', ('--config.dataset={tmp}/obj.npz',),
         ('obj.npz', 'a member is an object array', 'never unpickled'),
         setup=lambda tmp, _: write_npz(
             tmp / 'obj.npz', x_train=np.array([{}] * 40, dtype=object))),
    Case('npz_not_a_zip', ('--config.dataset={tmp}/junk.npz',),
         ('junk.npz', 'not an npz file'),
         setup=lambda tmp, _: (tmp / 'junk.npz').write_bytes(b'PK\x03\x04junk')),
    Case('npz_missing', ('--config.dataset={tmp}/gone.npz',),
         ('gone.npz', 'not found')),
    Case('idx_md5_mismatch', ('--config.dataset=mnist',
                              '--config.data_source=idx',
                              '--config.data_dir={tmp}/data'),
         ('train-images-idx3-ubyte.gz', 'md5'), setup=fake_mnist),
    # Workdirs and checkpoints.
    Case('workdir_of_other_config', ('--config.mu=0.5',),
         ("(mu: 1.0 there, 0.5 now)", '--overwrite')),
    Case('every_checkpoint_damaged', (), ('no valid checkpoint', '--overwrite'),
         setup=damage_all_meta),
    Case('checkpoint_of_other_shape', (), (f'checkpoints/{FINAL_STEP}',
                                           'the template wants'),
         setup=reshape_newest_leaf),
    Case('unreadable_config_json', (), ('config.json', 'unreadable'),
         setup=lambda tmp, workdir: (workdir / 'config.json').write_text('{')),
    Case('workdir_is_a_file', (), ('is not a folder',), workdir='file'),
    # Without config.json a resume once continued under any config.
    Case('config_json_deleted', ('--config.mu=0.5',),
         ('has checkpoints but no config.json', '--overwrite'),
         setup=lambda tmp, workdir: (workdir / 'config.json').unlink()),
    # What changed, by the leaf that does not fit: the network's weights,
    # or the pool's labels.
    Case('checkpoint_of_other_weights_says_the_network_changed', (),
         ('leaf .train.params', 'the network differs', 'model file edited',
          'new --workdir'), setup=reshape_newest_leaf),
    Case('checkpoint_of_other_pool_says_the_data_changed', (),
         ('leaf .labelled', 'the data differ', 'new --workdir'),
         setup=lambda tmp, workdir: reshape_newest_leaf(tmp, workdir,
                                                        '.labelled')),
        # Another run's checkpoints (copied in, or config.json edited): the
    # config check passes, the seed axis does not.
    Case('checkpoint_of_other_seed_count',
         (f'--config.num_seeds={OVERRIDES["num_seeds"] + 1}',),
         (f'holds {OVERRIDES["num_seeds"]} seed(s), this run has '
          f'{OVERRIDES["num_seeds"] + 1}', '--overwrite'),
         setup=lambda tmp, workdir: edit_config_json(
             workdir, num_seeds=OVERRIDES['num_seeds'] + 1)),
    # A finished run resumed without its metrics once summarised nothing.
    Case('metrics_deleted', (), ('metrics.jsonl', 'holds 0 of the',
                                 '--overwrite'),
         setup=lambda tmp, workdir: (workdir / 'metrics.jsonl').unlink()),
    # Hand-edited files: a row of the wrong types, config fields too.
    Case('metrics_row_of_wrong_types', (), (
        'metrics.jsonl line 3 is not a metrics row', 'corrupt'),
         setup=lambda tmp, workdir: edit_json_line(
             workdir / 'metrics.jsonl', 2, val_acc=None)),
    Case('config_json_field_of_wrong_type', (), (
        "config.json is unreadable (its num_iterations is '40', not an "
        'integer)', '--overwrite'),
         setup=lambda tmp, workdir: edit_config_json(
             workdir, num_iterations='40')),
    Case('config_json_a_list', (), (
        'config.json is unreadable (a JSON list, not an object)',),
         setup=lambda tmp, workdir: (workdir / 'config.json').write_text(
             '[1, 2]')),
    # A sweep's folder is no run's: a run written there hid its rows from
    # report.py; --overwrite does not clear other runs either.
    Case('workdir_of_a_sweep', ('--overwrite',), (
        'holds 2 runs in its folders (a, b: a sweep?), not one',),
         workdir='fresh',
         setup=lambda tmp, workdir: make_sweep_folder(workdir)),
    Case('beta_beyond_float32', ('--config.acquisition=softmax_entropy',
                                 '--config.acquisition_beta=1e300'),
         ('config.acquisition_beta=1e+300 is beyond float32',),
         workdir='fresh'),
    Case('steps_per_trip_past_compiling', ('--config.steps_per_trip=100000',),
         ('config.steps_per_trip=100000 must be at most 64',),
         workdir='fresh'),
    Case('checkpoints_is_a_file', (), ('checkpoints is not a folder',),
         setup=lambda tmp, workdir: replace_checkpoints_with_a_file(workdir)),
    Case('positional_argument', ('configs/mnist_blog.py',),
         ("unexpected argument 'configs/mnist_blog.py'",
          'did you mean --config=configs/mnist_blog.py')),
    Case('bald_on_one_pass', ('--config.acquisition=power_bald',
                              '--config.mc_passes_pool=1'),
         ("config.acquisition='power_bald' compares MC passes",
          'every score is 0')),
    Case('budget_below_initial_labels', ('--config.label_budget=9',),
         ('config.label_budget=9 leaves no room for a query',
          'starts with 8 labels')),
    Case('random_draw_of_every_label', ('--config.initial_per_class=-1',
                                        '--config.initial_draw=random'),
         ("config.initial_draw='random' draws initial_per_class x classes",
          'initial_per_class=-1 labels every known one')),
    Case('random_draw_beyond_the_pool', ('--config.dataset={tmp}/r.npz',
                                         '--config.initial_per_class=25',
                                         '--config.initial_draw=random'),
         ('config.initial_per_class=25 draws 50 initial labels but dataset',
          'has only 40 labelled pool samples'), workdir='fresh',
         setup=lambda tmp, _: write_npz(tmp / 'r.npz')),
    Case('override_before_config', ('--config=configs/yinyang.py',),
         (f'{TOY[0]} comes before --config', 'give --config=<file> first')),
    Case('two_variants', (), ("names two variants, 'active' and 'semi'",),
         config='configs/yinyang.py:active,semi'),
    Case('cnn_on_vectors', ('--config.dataset={tmp}/v.npz',
                            '--config.model=cnn'),
         ("config.model='cnn' takes images [N, H, W, C]", '[40, 2]'),
         workdir='fresh', setup=lambda tmp, _: write_npz(tmp / 'v.npz')),
    Case('cnn_on_images_without_channels',
         ('--config.dataset={tmp}/i.npz', '--config.model=cnn'),
         ('[40, 4, 4]', 'add a channel axis'), workdir='fresh',
         setup=lambda tmp, _: write_npz(
             tmp / 'i.npz', x_train=np.zeros((40, 4, 4), np.uint8),
             x_test=np.zeros((20, 4, 4), np.uint8))),
    Case('labels_from_one', ('--config.dataset={tmp}/one_based.npz',),
         ('class 0 has only 0', 'labels numbered from 1?'), workdir='fresh',
         setup=lambda tmp, _: write_npz(
             tmp / 'one_based.npz', y_train=np.arange(40) % 2 + 1,
             y_test=np.arange(20) % 2 + 1, num_classes=np.int64(3))),
    Case('ids_with_gaps', ('--config.dataset={tmp}/gaps.npz',),
         ('class 1 has only 0', 'ids with gaps?'), workdir='fresh',
         setup=lambda tmp, _: write_npz(
             tmp / 'gaps.npz', y_train=np.arange(40) % 2 * 2,
             y_test=np.arange(20) % 2 * 2, num_classes=np.int64(3))),
    Case('pool_size_cuts_out_a_class', ('--config.dataset={tmp}/sorted.npz',
                                        '--config.pool_size=20'),
         ('config.pool_size=20 keeps the first 20 of 40 pool samples, which '
          'hold no sample of class 1 (is the file sorted by class?)',),
         workdir='fresh', setup=lambda tmp, _: write_npz(
             tmp / 'sorted.npz', y_train=np.repeat([0, 1], 20))),
    Case('test_size_beyond_the_split', ('--config.dataset={tmp}/t.npz',
                                        '--config.test_size=30'),
         ('config.test_size=30 exceeds the 20 test samples', 'set 0'),
         workdir='fresh', setup=lambda tmp, _: write_npz(tmp / 't.npz')),
    Case('one_class_npz', ('--config.dataset={tmp}/one.npz',),
         ('1 class', 'at least 2'), workdir='fresh',
         setup=lambda tmp, _: write_npz(
             tmp / 'one.npz', y_train=np.zeros(40, np.int64),
             y_test=np.zeros(20, np.int64), num_classes=np.int64(1))),
]


def make_sweep_folder(workdir):
  """A folder with rows a and b, each a config.json of a run."""
  for row in ('a', 'b'):
    (workdir / row).mkdir(parents=True)
    (workdir / row / 'config.json').write_text(
        json.dumps(yinyang.get_config().to_dict()))


def edit_json_line(path, index, **changes):
  """Sets fields of the JSON object on line `index` of a file."""
  lines = path.read_text().splitlines()
  lines[index] = json.dumps(dict(json.loads(lines[index]), **changes))
  path.write_text('\n'.join(lines) + '\n')


def replace_checkpoints_with_a_file(workdir):
  shutil.rmtree(workdir / 'checkpoints')
  (workdir / 'checkpoints').write_text('not a folder')


def snapshot(path: pathlib.Path) -> Optional[dict[str, str]]:
  """Every file and folder under path with its content's sha256."""
  if not path.exists():
    return None
  if path.is_file():
    return {'': hashlib.sha256(path.read_bytes()).hexdigest()}
  return {str(p.relative_to(path)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                     if p.is_file() else 'dir')
          for p in sorted(path.rglob('*'))}


def prepare(case: Case, tmp: pathlib.Path, reference) -> pathlib.Path:
  """The case's workdir, with its files set up."""
  workdir = tmp / 'workdir'
  if case.workdir == 'existing':
    shutil.copytree(reference, workdir)
  elif case.workdir == 'file':
    workdir.write_text('not a workdir\n')
  if case.setup is not None:
    case.setup(tmp, workdir)
  return workdir


@pytest.mark.parametrize('case', CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_harmless(case, tmp_path, env, reference,
                                            forkserver):
  workdir = prepare(case, tmp_path, reference)
  before = snapshot(workdir)
  args = [a.replace('{tmp}', str(tmp_path)) for a in case.args]
  config = ([f'--config={case.config.replace("{tmp}", str(tmp_path))}']
            if case.config else [])
  result = forkserver(command(workdir, [*config, *TOY, *args])[1:],
                      dict(env, **(case.extra_env or {})))
  assert result.returncode == 2, result.stdout + result.stderr
  lines = result.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  for culprit in case.culprit:
    assert culprit.replace('{tmp}', str(tmp_path)) in lines[0]
  assert 'ValueError' not in lines[0]  # The message says it; no type name.
  assert 'Traceback' not in result.stdout + result.stderr
  assert snapshot(workdir) == before


def test_out_of_memory_is_one_line_naming_what_to_lower(tmp_path, env,
                                                        forkserver):
  # A batch of 10^8 toy samples needs ~300 GB: XLA cannot allocate it,
  # which once ended in a 40-line traceback and exit status 1 (a bug's).
  result = forkserver(command(tmp_path / 'run', [
      *TOY, '--config.batch_size=100000000'])[1:], env)
  assert result.returncode == 2, result.stdout + result.stderr
  lines = result.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith(
      'error: out of memory (Out of memory allocating '), result.stderr
  assert 'lower config.chunk_size' in lines[0] and 'num_seeds' in lines[0]


@pytest.mark.parametrize('script', ['train', 'sweep', 'report', 'export',
                                    'predict'])
def test_help_exits_zero(script, env):
  # Status 1 means a bug (README's exit statuses); absl's --help exits 1.
  result = subprocess.run(
      [sys.executable, str(REPO / 'launch' / f'{script}.py'), '--help'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert '--workdir' in result.stdout  # The script's usage text.


def test_debug_flag_shows_the_traceback(tmp_path, env):
  result = train(tmp_path / 'run', ['--config.mc_passes_gt=0'], env=env,
                 extra_env={'BASS_DEBUG': '1'})
  assert result.returncode == 2
  assert 'Traceback' in result.stderr
  assert result.stderr.splitlines()[-1].startswith('error: config.mc_passes')


# ------------------------------------------------------- in-process checks


@pytest.mark.parametrize('field, value, message', [
    ('num_seeds', 2.0, 'has type float, expected an int'),
    ('batch_size', True, 'has type bool, expected an int'),
    ('mu', float('nan'), 'must be a finite number'),
    ('learning_rate', '1e-3', 'has type str, expected a number'),
    ('model', 3, 'has type int, expected a string'),
])
def test_validate_config_names_wrong_types(field, value, message):
  # An unlocked config: what a hand-built config or a library user passes.
  config = toy_config().to_dict()
  config[field] = value
  with pytest.raises(experiment.ConfigError, match=f'config.{field}=.*'
                     f'{re.escape(message)}'):
    config_checks.validate_config(ml_collections.ConfigDict(config))


@pytest.mark.parametrize('field, value', [
    ('mc_precision', 'fp8'),
    ('conv_impl', 'winograd'),
    ('semi', 'sometimes'),
])
def test_validate_config_names_the_allowed_choices(field, value):
  config = toy_config()
  config[field] = value
  with pytest.raises(experiment.ConfigError,
                     match=f"config.{field}='{value}' is not one of .*"):
    config_checks.validate_config(config)


def test_validate_config_names_a_missing_field():
  config = toy_config().to_dict()
  del config['gt_upsample']
  with pytest.raises(experiment.ConfigError, match='config.gt_upsample is '
                     'missing'):
    config_checks.validate_config(ml_collections.ConfigDict(config))


@pytest.mark.parametrize('arg, message', [
    ('num_seeds=1.5', 'expected an int'),
    ('num_seeds=ten', 'expected a number'),
    ('mu=x', 'expected a number'),
])
def test_config_arg_values_are_not_coerced(arg, message):
  with pytest.raises(ValueError, match=f'config arg {arg.split("=")[0]}=.*'
                     f'{message}'):
    yinyang.get_config(f'active_semi,{arg}')
  assert yinyang.get_config('active_semi,num_seeds=3.0').num_seeds == 3


def test_supervised_rows_are_initial_models_as_in_the_original_code():
  """Its supervised runs set Niter = 0; the all-labels case makes 100
  passes (init_epochs = 100 over the 20x up-sampled set) with T = 10.
  A row's own fields win over the 'small' modifier's."""
  from configs import mnist  # pylint: disable=g-import-not-at-top
  def schedule(c):
    passes = c.initial_epochs * c.gt_upsample
    return c.num_iterations, passes, c.mc_passes_gt
  assert schedule(yinyang.get_config('supervised_80')) == (0, 2000, 100)
  assert schedule(yinyang.get_config('supervised_1000')) == (0, 100, 10)
  assert schedule(mnist.get_config('supervised_300')) == (0, 2000, 100)
  assert schedule(mnist.get_config('supervised_60000')) == (0, 100, 10)
  assert schedule(mnist.get_config('supervised_100,small')) == (0, 600, 100)
  assert schedule(mnist.get_config('alldata_maxent,small')) == (15, 600, 100)
  assert schedule(yinyang.get_config('active_semi')) == (72, 2000, 100)


def test_overwrite_clears_the_previous_run(tmp_path, reference):
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  (pathlib.Path(checkpoint.checkpoints_dir(workdir)) / '.tmp-9-x').mkdir()
  for stale in ('queries/0/34.png', 'tensorboard/events.out',
                'corrections.csv', 'corrections/at_iteration_3.csv'):
    (workdir / stale).parent.mkdir(parents=True, exist_ok=True)
    (workdir / stale).write_bytes(b'old run')
  workdirs.clear_run(str(workdir))
  assert checkpoint.steps(workdir) == []
  assert os.listdir(checkpoint.checkpoints_dir(workdir)) == []
  for name in ('summary.json', 'config.json', 'metrics.jsonl',
               'corrections.csv'):
    assert not (workdir / name).exists(), name
  # Nothing of the old run is left for the next launch to check against.
  workdirs.check_workdir_config(str(workdir), yinyang.get_config('semi'))
  for folder in ('queries', 'tensorboard', 'corrections'):
    assert not (workdir / folder).exists(), folder


def test_nothing_is_read_with_pickle():
  forbidden = re.compile(r'import pickle|from pickle|cloudpickle|import dill|'
                         r'joblib|allow_pickle=True|torch\.load')
  for path in [*REPO.glob('bass_jax/*.py'), *REPO.glob('launch/*.py')]:
    text = path.read_text()
    assert not forbidden.search(text), path
    for call in re.findall(r'np\.load\([^)]*\)', text):
      assert 'allow_pickle=False' in call, (path, call)


class _Referent:  # A weakref-able object.
  pass


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason='interrupt_main interrupts the main thread')
@pytest.mark.parametrize('where', ['gc_callback', 'weakref_callback'])
def test_ctrl_c_inside_a_callback_is_raised_after_it(monkeypatch, where,
                                                     python_sigint):
  """Python's default handler raises in whatever code runs: inside a gc
  callback (JAX has one) or a weakref callback the KeyboardInterrupt is
  printed and dropped, and the run went on."""
  seen = []
  monkeypatch.setattr(sys, 'unraisablehook', seen.append)
  monkeypatch.setattr(signal, 'signal', lambda *_: None)  # SIGTERM's kept.
  interrupts.install()
  interrupts.install()  # Once per process: not wrapped twice.
  calls = []

  def interrupted(*_):
    if not calls:
      calls.append(where)
      raise KeyboardInterrupt  # What Ctrl-C does at this point.

  referent = _Referent()
  ref = weakref.ref(referent, interrupted if where == 'weakref_callback'
                    else None)
  if where == 'gc_callback':
    gc.callbacks.append(interrupted)  # The list gc itself holds.
  try:
    with pytest.raises(KeyboardInterrupt):
      del referent
      gc.collect()
      time.sleep(5)  # The Ctrl-C asked for again lands here.
  finally:
    if interrupted in gc.callbacks:
      gc.callbacks.remove(interrupted)
  assert calls == [where] and ref() is None
  # Other unraisable exceptions reach the hook that was there before.
  sys.unraisablehook(types.SimpleNamespace(exc_value=ValueError('x')))
  assert [type(u.exc_value) for u in seen] == [ValueError]

