r"""A run called again in one process: programs kept vs traced afresh.

`experiment.build` keeps the jitted programs of recent builds by what they
are traced from, so calling `experiment.run` again with the same settings
(a run relaunched from Python after a pause for labels, a resume, a
notebook's next call) neither traces nor compiles them again; JAX's
persistent compilation cache alone saves only the compilation. This calls
`experiment.run` `--calls` times on a config, each into a fresh workdir,
with programs kept and then with none kept (MAX_KEPT_PROGRAMS = 0), both in
this process, and prints one JSON line each (like benchmarks/hot_path.py):

  {"benchmark": "repeat_run", "value": median seconds of the calls after
   the first, "programs_kept": true|false, "calls_s": [...], ...}

  python benchmarks/repeat_run.py --config.num_iterations=4 \
      --config.num_seeds=2 --config.initial_epochs=10 \
      --config.mc_passes_gt=10 --config.checkpoint_every=2
"""

import pathlib
import statistics
import sys
import tempfile
import time
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'benchmarks'))

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

import hot_path
from bass_jax import experiment
from launch import common as launch_common
# pylint: enable=g-import-not-at-top,wrong-import-position

_CONFIG = launch_common.define_config_file(
    str(REPO / 'configs' / 'yinyang.py') + ':active_semi',
    'Experiment config file[:arg] with --config.<field> overrides, as for '
    'launch/train.py (default: Yin-Yang DeepBASS).')
flags.declare_key_flag('config')
_CALLS = flags.DEFINE_integer('calls', 3, 'Calls of experiment.run per way.',
                              lower_bound=2)
_OUT = flags.DEFINE_string('out', None, 'Also append the lines here.')


def call_seconds(config, calls: int) -> list[float]:
  """Wall seconds of each of `calls` experiment.run calls of `config`."""
  out = []
  for _ in range(calls):
    with tempfile.TemporaryDirectory() as workdir:
      t0 = time.perf_counter()
      experiment.run(config.copy_and_resolve_references(), workdir)
      out.append(time.perf_counter() - t0)
  return out


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  em = hot_path.Emitter({**hot_path.run_context(),
                         'config': f'{config.name}:{config.variant}',
                         'num_seeds': config.num_seeds,
                         'num_iterations': config.num_iterations,
                         'compilation_cache': config.compilation_cache},
                        _OUT.value)
  kept = experiment.MAX_KEPT_PROGRAMS
  # Kept first: its first call also fills the persistent cache, so that the
  # afresh calls compare against calls that read their compilations back.
  for max_kept in (kept, 0):
    experiment.forget_programs()
    experiment.MAX_KEPT_PROGRAMS = max_kept
    seconds = call_seconds(config, _CALLS.value)
    em.emit('repeat_run', round(statistics.median(seconds[1:]), 3), 's',
            programs_kept=bool(max_kept),
            calls_s=[round(s, 3) for s in seconds],
            stat='median of the calls after the first',
            what='experiment.run of one config called again in one process'
            ', each call into a fresh workdir')
  experiment.MAX_KEPT_PROGRAMS = kept


if __name__ == '__main__':
  launch_common.run_main(main, resumes=False)
