r"""Exports a run's labels as CSV: human labels, else the model's prediction;
and its network's parameters, for another run to start from.

  python launch/export.py --workdir=workdirs/my_images --out=labels.csv \
      [--seed_index=0] [--mc_passes=0] [--params_out=params.msgpack]

Reads the newest checkpoint of a finished, paused or interrupted run (the
result line then says which iteration it is from) and writes one row per
pool sample: `id,label,confidence,source` (source 'human', 'pseudo',
'model' or 'skipped'), plus `class_name,file` for image folder datasets.
Run it from the folder the run was started in, so that a relative dataset
path resolves, or give --data_dir. --params_out writes the seed's
parameters in flax's msgpack format, which `--config.init_params=FILE`
starts a run of the same network from (--out may then be left out).
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import flags  # pylint: disable=g-import-not-at-top

from launch import common as launch_common

_WORKDIR = flags.DEFINE_string('workdir', None, 'The run to export.')
_OUT = flags.DEFINE_string('out', None, 'The CSV file to write.')
_PARAMS_OUT = flags.DEFINE_string(
    'params_out', None, "The seed's network parameters, for "
    '--config.init_params (flax msgpack).')
_SEED_INDEX = flags.DEFINE_integer(
    'seed_index', 0, 'Which seed of the run (0 = config.seed).')
_MC_PASSES = flags.DEFINE_integer(
    'mc_passes', 0, 'MC-dropout passes per sample (0: config.mc_passes_gt).')
_DATA_DIR = launch_common.define_data_dir_flag('')
flags.declare_key_flag('data_dir')  # Listed by --help.


def main(argv):
  del argv
  from bass_jax import export  # pylint: disable=g-import-not-at-top
  from bass_jax.errors import BassError
  if not _WORKDIR.value or not (_OUT.value or _PARAMS_OUT.value):
    raise BassError('give --workdir=DIR and --out=FILE.csv (labels), '
                    '--params_out=FILE.msgpack (parameters) or both')
  if _MC_PASSES.value < 0:
    raise BassError(f'--mc_passes={_MC_PASSES.value} must be >= 0')
  warn = lambda line: print(f'warning: {line}', file=sys.stderr)
  if _PARAMS_OUT.value:
    count, note = export.export_params(
        _WORKDIR.value, _PARAMS_OUT.value, _SEED_INDEX.value, warn=warn,
        data_dir=_DATA_DIR.value)
    print(f'wrote {_PARAMS_OUT.value}: the {count:,} parameters of seed index '
          f'{_SEED_INDEX.value}' + (f' {note}' if note else ''))
  if not _OUT.value:
    return
  table, note = export.export_labels(
      _WORKDIR.value, _OUT.value, _SEED_INDEX.value, _MC_PASSES.value or None,
      warn=warn, data_dir=_DATA_DIR.value, log=launch_common.log_line)
  print(result_line(_OUT.value, table, note))


def result_line(out: str, table, note: str) -> str:
  """'wrote labels.csv: 49 rows (9 human, 40 pseudo, 0 model)[ <note>]'.

  `note` says which iteration an unfinished or paused run was exported
  from, so that its labels are not taken for a finished run's.
  """
  counts = {s: int(sum(table['source'] == s))
            for s in ('human', 'pseudo', 'model', 'skipped')}
  if not counts['skipped']:  # Only human oracles skip; say it where they did.
    del counts['skipped']
  line = (f'wrote {out}: {table["id"].shape[0]} rows ('
          + ', '.join(f'{n} {s}' for s, n in counts.items()) + ')')
  return f'{line} {note}' if note else line


if __name__ == '__main__':
  launch_common.run_main(main, resumes=False)
