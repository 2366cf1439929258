r"""Runs one experiment (all its seeds, vmapped) and writes its workdir.

  python launch/train.py --config=configs/yinyang.py:active_semi \
      --workdir=workdirs/yinyang_active_semi [--config.num_seeds=3 ...]

With no flags it runs the Yin-Yang `active_semi` experiment (Table 1's
DeepBASS row, 10 seeds, about 20 seconds on a 2-core CPU) into
workdirs/<name>_<variant>_<time> and prints the result table, whose row
names the `--config.<field>` overrides that change what ran, e.g.
`yinyang:active_semi (mu=0.5)`.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import flags  # pylint: disable=g-import-not-at-top

from launch import common as launch_common

_CONFIG = launch_common.define_config_file(
    os.path.join(REPO, 'configs', 'yinyang.py'),
    'Experiment config file[:arg]; any field of it can be overridden with '
    '--config.<field>=<value> (see configs/common.py).')
flags.declare_key_flag('config')  # Listed by --help, not only --helpfull.
_WORKDIR = flags.DEFINE_string(
    'workdir', None,
    'Output folder (default: workdirs/<name>_<variant>_<time>).'
    ' Relaunching on the same workdir resumes from its newest checkpoint.')
_OVERWRITE = flags.DEFINE_bool(
    'overwrite', False, 'Start afresh in a workdir that holds another run.')


def main(argv):
  del argv
  from bass_jax import experiment  # pylint: disable=g-import-not-at-top
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  workdir = _WORKDIR.value or launch_common.default_workdir(config)
  print(f'workdir: {workdir}', flush=True)
  summary = experiment.run(config, workdir, log=launch_common.log_line,
                           overwrite=_OVERWRITE.value)
  # The row says what differs from the config file's experiment, as a
  # sweep's rows do: its paper % is the unmodified experiment's.
  label = reporting.experiment_label(config.name, config.variant)
  changed = launch_common.overrides_text(config)
  print(launch_common.result_table(
      [summary], [f'{label} ({changed})' if changed else label]))
  note = launch_common.paper_labels_note(label, config)
  if note:
    print(note)


if __name__ == '__main__':
  launch_common.run_main(main)
