r"""Predicts new inputs with a trained run: labels and MC-dropout uncertainty.

  python launch/predict.py --workdir=workdirs/my_images \
      --inputs=new_images/ --out=predictions.csv \
      [--seed_index=0 | --ensemble] [--mc_passes=0] [--plot=coverage.png]

Reads the newest checkpoint of a finished, paused or interrupted run and
writes one row per input: `id,label,confidence,entropy,bald,confident`,
plus `class_name` (image folder runs), `true_label` (known labels) and
`file` (image inputs). --inputs is a folder of images (flat, or in class
subfolders named as the run's classes: labels known) or an .npz file with
x (and optionally y), read as the run read its data. `confident` marks the
rows whose entropy is below the mean entropy on the run's labelled samples
(the paper's pseudo-label test). With known labels the result line gives
the accuracy on all rows and on the confident ones, and --plot draws the
accuracy on the most certain share of the rows (by entropy, by BALD)
against that share. Run it from the folder the run was started in, so that
a relative dataset path resolves, or give --data_dir.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import flags  # pylint: disable=g-import-not-at-top

from launch import common as launch_common

_WORKDIR = flags.DEFINE_string('workdir', None, 'The trained run.')
_INPUTS = flags.DEFINE_string(
    'inputs', None, 'A folder of images (flat, or in class subfolders) or '
    'an .npz file with x (and optionally y).')
_OUT = flags.DEFINE_string('out', None, 'The CSV file to write.')
_SEED_INDEX = flags.DEFINE_integer(
    'seed_index', 0, 'Which seed of the run (0 = config.seed).')
_ENSEMBLE = flags.DEFINE_boolean(
    'ensemble', False, "Every seed's network as one predictor (their MC "
    'passes together) instead of one seed.')
_MC_PASSES = flags.DEFINE_integer(
    'mc_passes', 0, 'MC-dropout passes per sample and seed (0: '
    'config.mc_passes_gt).')
_PLOT = flags.DEFINE_string(
    'plot', None, 'With known labels: a PNG of the accuracy on the most '
    'certain share of the rows against that share.')
_DATA_DIR = launch_common.define_data_dir_flag('')
flags.declare_key_flag('data_dir')  # Listed by --help.


def main(argv):
  del argv
  from bass_jax import predict  # pylint: disable=g-import-not-at-top
  from bass_jax.errors import BassError
  if not (_WORKDIR.value and _INPUTS.value and _OUT.value):
    raise BassError('give --workdir=DIR (a trained run), --inputs=FOLDER or '
                    'FILE.npz and --out=FILE.csv')
  if _MC_PASSES.value < 0:
    raise BassError(f'--mc_passes={_MC_PASSES.value} must be >= 0')
  if _PLOT.value and os.path.isdir(_PLOT.value):
    raise BassError(f'--plot={_PLOT.value} is a folder; give a file name, '
                    f'e.g. --plot={os.path.join(_PLOT.value, "coverage.png")}')
  warn = lambda line: print(f'warning: {line}', file=sys.stderr)
  table, theta, note = predict.predict(
      _WORKDIR.value, _INPUTS.value, _OUT.value, _SEED_INDEX.value,
      _ENSEMBLE.value, _MC_PASSES.value or None, warn=warn,
      data_dir=_DATA_DIR.value, log=launch_common.log_line)
  print(result_line(_OUT.value, table, theta, note))
  if _PLOT.value:
    print(plot_line(_PLOT.value, table, _INPUTS.value))


def plot_line(path: str, table, inputs: str) -> str:
  """Draws the accuracy-coverage plot; 'wrote <path>', or why not."""
  from bass_jax import predict  # pylint: disable=g-import-not-at-top
  name = os.path.basename(os.path.normpath(inputs))
  if predict.plot_coverage(table, path, f'{name}: {len(table["id"]):,} '
                           'rows') is None:
    return (f'no plot: the labels of {inputs} are unknown (class subfolders '
            'or an npz y give them)')
  return f'wrote {path}'



def result_line(out: str, table, theta: float, note: str) -> str:
  """'wrote predictions.csv: 200 rows, 171 confident (entropy < theta
  0.081)[; accuracy ...][ <note>]' (see `predict.accuracy_text`)."""
  from bass_jax import predict  # pylint: disable=g-import-not-at-top
  line = (f'wrote {out}: {len(table["id"]):,} rows, '
          f'{int(table["confident"].sum()):,} confident (entropy < theta '
          f'{theta:.3f}){predict.accuracy_text(table)}')
  return f'{line} {note}' if note else line


if __name__ == '__main__':
  launch_common.run_main(main, resumes=False)
