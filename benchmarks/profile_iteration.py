r"""Where an EM iteration's time goes: a profiler trace of a real run, summed.

Builds the run a config describes (as launch/train.py would, no workdir),
compiles its iteration once, runs --warmup iterations (iteration 0 trains
the initial phase), times --iterations more, then runs as many again under
`jax.profiler` and prints JSON lines (like benchmarks/hot_path.py):

* `profile_iteration`: seconds per iteration untraced (value) and traced,
  the device's busy time per iteration (the union of its kernels' intervals)
  and `busy_fraction` = busy / traced wall: how long the device waits
  between kernels (launches, loop tests, the host); and this process's CPU
  seconds per untraced iteration, `cores_busy` = CPU / wall. On a CPU an
  operation's events are on the thread that started it, though its work
  may be split over every core, so there `busy_fraction` is left out
  (null) and `cores_busy`, against the core count, says how busy the
  cores are.
* `profile_op` (the --top largest): one line per operation of the compiled
  iteration (an HLO instruction: a fusion, a convolution, a GEMM, a loop
  ...), with its kind from the optimized HLO (`op_kind`: the opcode, a
  fusion's kind, a library call's target), its calls and milliseconds per
  iteration, its share of the device time and microseconds per call.
* `profile_kind`: the same time summed per kind, every kind.
* `profile_threads`: which trace threads were counted as the device's and
  how many events each held, so a trace of another layout can be checked.

On a GPU the device's time is its streams' kernels and copies; on a CPU,
the XLA runtime's worker threads (self time: a loop's own line excludes
the operations inside it). Tracing adds overhead of its own: compare
`traced_s` with the untraced value. The raw trace stays in --trace_dir for
TensorBoard's profile plugin or https://ui.perfetto.dev.

  python benchmarks/profile_iteration.py \
      --config=configs/mnist.py:alldata_maxent --config.num_seeds=1
  python benchmarks/profile_iteration.py \
      --config=configs/yinyang.py:active_semi --iterations=5 --top=10
"""

import collections
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from launch import common as launch_common  # pylint: disable=g-import-not-at-top,wrong-import-position

_CONFIG = launch_common.define_config_file(
    str(REPO / 'configs' / 'mnist.py') + ':alldata_maxent',
    'Experiment config file[:arg] with --config.<field> overrides, as for '
    'launch/train.py (default: the paper protocol, all data + max entropy).')
flags.declare_key_flag('config')
_WARMUP = flags.DEFINE_integer(
    'warmup', 2, 'Iterations run before any timing (iteration 0 trains the '
    'initial phase).', lower_bound=1)
_ITERATIONS = flags.DEFINE_integer(
    'iterations', 3, 'Iterations timed untraced, then as many traced.',
    lower_bound=1)
_TOP = flags.DEFINE_integer('top', 25, 'profile_op lines: the largest ops.',
                            lower_bound=1)
_TRACE_DIR = flags.DEFINE_string(
    'trace_dir', None, 'Keep the raw trace here (default: a temporary folder, '
    'deleted).')
_OUT = flags.DEFINE_string('out', None, 'Also append the lines here.')


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
  """`row` with its floats to 4 significant digits, for reading."""
  return {k: (float(f'{v:.4g}') if isinstance(v, float) else v)
          for k, v in row.items()}


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  from bass_jax import experiment  # pylint: disable=g-import-not-at-top
  from bass_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, str(REPO / 'benchmarks'))
  import hot_path  # pylint: disable=g-import-not-at-top
  import trace_summary  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  if config.oracle != 'simulated':
    raise ConfigError(f'config.oracle={config.oracle!r}: profiling runs the '
                      "simulated oracle's iteration; leave config.oracle")
  n = _ITERATIONS.value
  if _WARMUP.value + 2 * n > config.num_iterations + 1:
    raise ConfigError(
        f'--warmup={_WARMUP.value} plus 2 x --iterations={n} exceed the '
        f'run\'s {config.num_iterations + 1} iterations; lower them or raise '
        'config.num_iterations')
  r = experiment.build(config)
  dev = jax.devices()[0]
  em = hot_path.Emitter(
      {**hot_path.run_context(),
       # The mesh the run resolved to (config.mesh_shape 'auto' included).
       'mesh': ','.join(f'{a}:{n}' for a, n in r.mesh.shape.items()),
       'config': f'{config.name}:{config.variant}',
       'num_seeds': config.num_seeds,
       'pool_size': int(r.dataset.x_train.shape[0])}, _OUT.value)
  step, compile_s = hot_path.compile_aot(r.step, r.state, r.pool)
  kinds = trace_summary.op_kinds(step.as_text())
  state = r.state

  def run_one():
    nonlocal state
    state, metrics = step(state, r.pool)
    return jax.device_get(metrics)  # What the host loop reads each time.

  t0 = time.perf_counter()
  for _ in range(_WARMUP.value):
    run_one()
  warmup_s = time.perf_counter() - t0
  untraced, cpu = [], []
  for _ in range(n):
    t0, c0 = time.perf_counter(), time.process_time()
    run_one()
    untraced.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
  trace_dir = _TRACE_DIR.value or tempfile.mkdtemp(prefix='bass_profile_')
  traced = []
  try:
    with jax.profiler.trace(trace_dir):
      for _ in range(n):
        t0 = time.perf_counter()
        run_one()
        traced.append(time.perf_counter() - t0)
    events = trace_summary.trace_events(trace_dir)
  finally:
    if not _TRACE_DIR.value:
      shutil.rmtree(trace_dir, ignore_errors=True)
  threads = trace_summary.device_threads(events)
  rows, busy = trace_summary.op_table(events, threads, kinds, n)
  traced_s = statistics.median(traced)
  first = _WARMUP.value
  em.emit('profile_iteration', round(statistics.median(untraced), 6), 's',
          compile_s=round(compile_s, 3), warmup_s=round(warmup_s, 3),
          iterations=f'{first + n}-{first + 2 * n - 1} traced, '
          f'{first}-{first + n - 1} untraced',
          untraced_s=[round(s, 6) for s in untraced],
          traced_s=round(traced_s, 6), device_busy_s=round(busy / 1e6, 6),
          busy_fraction=(None if dev.platform == 'cpu' else
                         round(busy * n / 1e6 / sum(traced), 4)),
          process_cpu_s=round(statistics.median(cpu), 6),
          cores_busy=round(sum(cpu) / sum(untraced), 3),
          trace_dir=_TRACE_DIR.value)
  for row in rows[:_TOP.value]:
    em.emit('profile_op', round(row['ms_per_iteration'], 4),
            'ms/iteration', **_rounded(row))
  for row in trace_summary.kind_table(rows):
    em.emit('profile_kind', round(row['ms_per_iteration'], 4),
            'ms/iteration', **_rounded(row))
  counts = collections.Counter(
      (e.get('pid'), e.get('tid')) for e in events if e.get('ph') == 'X')
  em.emit('profile_threads', len(threads), 'threads',
          threads={name: counts[k] for k, name in sorted(threads.items())})


if __name__ == '__main__':
  launch_common.run_main(main)
