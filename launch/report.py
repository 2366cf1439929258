r"""Tables and plots from one or more workdirs.

  python launch/report.py --workdir=workdirs/table1/initial \
      --workdir=workdirs/table1/active_semi --out=workdirs/report

Writes into --out (default <first --workdir>/report): table.md, table.tex (a
booktabs tabular for a paper) and table.csv (mean ± std over seeds, the
paper's number beside ours), results.json (the same rows with every seed's
numbers, the fields the runs differ in, units stated), learning_curves.png
(validation accuracy vs iteration, Fig. 3 style), labels.png (labels, |D|
and pseudo-label accuracy over iterations) and calibration.png (the test NLL
and expected calibration error over iterations) unless every run is an
initial model of one iteration (Table 2's supervised rows),
accuracy_vs_labels.png (validation accuracy against the labels used, active
learning's curve, the paper's accuracies as open diamonds; --target_acc=95
also draws that level and adds the median labels each run needed to reach it
to the table) and, for 2-D data, decision_<run>.png (Figs. 1-2 style: class
and uncertainty over the plane, labelled points starred). A folder given as
--workdir that holds a sweep (sub-workdirs with config.json) is expanded.
--merge_seeds joins the workdirs of one config that hold different seeds (a
row's seeds run in parts: `--config.seed=5 --config.num_seeds=5`) into one
row. --paired_with=supervised_100 adds each run's final accuracy minus that
run's, seed by seed (a seed's rows share its data draw and initial labels,
so the paired spread is the one that decides), and in how many seeds it is
ahead; paired_curves.png draws that difference over iterations (mean ±
standard error over seeds). Runs of one variant are labelled by the config
fields they differ in: 'mnist_active:power_bald,small (acquisition_beta=4)'.
"""

import os
import shlex
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import flags  # pylint: disable=g-import-not-at-top

from launch import common as launch_common

_WORKDIRS = flags.DEFINE_multi_string('workdir', [], 'Workdir(s) to report.')
_OUT = flags.DEFINE_string('out', None, 'Output folder (default: '
                            '<first --workdir>/report).')
_DECISION = flags.DEFINE_bool('decision', True,
                              'Decision-surface panels for 2-D data.')
_DATA_DIR = launch_common.define_data_dir_flag(' for the decision panels')
flags.declare_key_flag('data_dir')  # Listed by --help.
_MERGE = flags.DEFINE_bool(
    'merge_seeds', False, 'Join the runs of one config that hold different '
    'seeds (e.g. seeds 0-4 and 5-9 run apart) into one row.')
_TARGET = flags.DEFINE_float(
    'target_acc', None, 'A validation accuracy in %: the table adds the '
    'median labels each run needed to reach it (Gal et al. 2017).',
    lower_bound=0, upper_bound=100)
# metrics.jsonl keeps fractions: 0.85 here would be a target of 0.85 %.
flags.register_validator(
    'target_acc', lambda v: v is None or not 0 < v <= 1,
    message='--target_acc is in %, e.g. 85 for 85 % (metrics.jsonl keeps '
    'fractions; a target of at most 1 % is no target)')
_PAIRED = flags.DEFINE_string(
    'paired_with', None, 'A run of the report (its variant, e.g. '
    'supervised_100, its label, or its folder, e.g. a sweep row\'s): the '
    'table adds every other run\'s '
    'final accuracy minus its own, seed by seed, and the seeds ahead.')


def expanded(workdirs: list[str]) -> list[tuple[str, bool]]:
  """(workdir, in_sweep) pairs, a sweep folder replaced by its row workdirs."""
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  out = []
  for w in workdirs:
    if os.path.exists(os.path.join(w, 'config.json')):
      out.append((w, False))
    else:
      rows = reporting.sweep_order(w, reporting.run_folders(w))
      out.extend([(r, True) for r in rows] or [(w, False)])
  # A workdir given twice (or as itself and in its sweep) is one run.
  unique = {}
  for w, in_sweep in out:
    unique.setdefault(os.path.realpath(w), (w, in_sweep))
  return list(unique.values())


def read_runs(workdirs: list[str]) -> list[dict]:
  """The runs to report, read from their workdirs.

  A sweep's row without a finished iteration yet is left out with a note on
  stderr (the other rows are still worth a report); a run given by itself
  is an error then.

  Raises:
    BassError: a workdir that cannot be read, or nothing to report.
  """
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  from bass_jax.errors import BassError  # pylint: disable=g-import-not-at-top
  runs = []
  for workdir, in_sweep in expanded(workdirs):
    try:
      runs.append(reporting.read_workdir(workdir))
    except reporting.NoFinishedIteration as e:
      if not in_sweep:
        raise
      print(f'note: leaving out {e}', file=sys.stderr, flush=True)
  if not runs:
    raise BassError(f'no run in {", ".join(workdirs)} has finished an '
                    'iteration yet; report again later')
  return runs


def may_be_2d(dataset: str) -> bool:
  """Whether a run's data may be 2-D points (Yin-Yang or a .npz of one's
  own), worth loading to see; MNIST and image folders never are."""
  return dataset == 'yinyang' or dataset.endswith('.npz')


def decision_panel(run: dict, runs: list[dict], out: str) -> str | None:
  """decision_<run>.png of a 2-D run's newest checkpoint, or None.

  None, with a note on stderr, where the run has no valid checkpoint yet,
  or its data or model file cannot be had from here: the table and curves
  are still worth writing.
  """
  from bass_jax import analysis  # pylint: disable=g-import-not-at-top
  from bass_jax import plots  # pylint: disable=g-import-not-at-top
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  from bass_jax.errors import BassError  # pylint: disable=g-import-not-at-top
  warn = lambda line: print(f'warning: {line}', file=sys.stderr, flush=True)
  try:
    r, state, where = analysis.restored_run(run['workdir'], warn=warn,
                                           data_dir=_DATA_DIR.value)
  except BassError as e:  # No checkpoint, data or model file at hand.
    print(f'note: no decision panel: {e}', file=sys.stderr, flush=True)
    return None
  if r.seed_dataset(0).x_train.shape[1:] != (2,):
    return None  # Images or vectors: no plane to draw.
  s = analysis.decision_surface(r, state)
  name = reporting.file_stem(run, runs)
  return plots.plot_decision_panel(
      s['grid_x'], s['grid_y'], s['pred'], s['entropy'], s['points'],
      s['labels'], s['labelled'],
      f'{reporting.label_of(run)}, seed {run["config"]["seed"]}, {where}',
      os.path.join(out, f'decision_{name}.png'))


def write_tables(runs: list[dict], target: float | None,
                 baseline: int | None, out: str) -> tuple[str, list[str]]:
  """table.md, table.tex, table.csv and results.json of the runs in `out`.

  Returns:
    (the markdown table, the paths written).
  """
  from bass_jax import config_checks  # pylint: disable=g-import-not-at-top
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  from bass_jax import writing  # pylint: disable=g-import-not-at-top
  rows = reporting.table_rows(runs, target, baseline)
  label = None if baseline is None else reporting.label_of(runs[baseline])
  table = reporting.markdown_table(rows, target, label)
  tex = reporting.latex_table(rows, target, label)
  # What the labels do not say (overrides, unfinished runs): under the
  # table in every form of it a paper may take.
  notes = launch_common.table_notes(runs).splitlines()
  if notes:
    table += '\n' + '\n'.join(notes) + '\n'
    tex += ''.join(f'\\par {reporting.latex_text(n)}\n' for n in notes)
  paths = [os.path.join(out, name) for name in
           ('table.md', 'table.tex', 'table.csv', 'results.json')]
  writing.write_lines(paths[0], [table])
  writing.write_lines(paths[1], [tex])
  reporting.write_csv(paths[2], rows)
  writing.write_json(paths[3], dict(
      reporting.results(runs, rows, target, baseline,
                        config_checks.PLACEMENT_FIELDS),
      notes=notes,
      command=shlex.join(['python', 'launch/report.py'] + sys.argv[1:])))
  return table, paths


def main(argv):
  del argv
  from bass_jax import plots  # pylint: disable=g-import-not-at-top
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  from bass_jax.errors import BassError
  if not _WORKDIRS.value:
    raise BassError('give at least one --workdir')
  out = _OUT.value or os.path.join(_WORKDIRS.value[0], 'report')
  if os.path.exists(out) and not os.path.isdir(out):
    raise BassError(f'--out={out} is a file; give the folder to write the '
                    'report into')
  from bass_jax import config_checks  # pylint: disable=g-import-not-at-top
  runs = read_runs(_WORKDIRS.value)
  if _MERGE.value:
    runs = reporting.merged_seeds(
        runs, ('seed', 'num_seeds') + config_checks.PLACEMENT_FIELDS)
  runs = reporting.with_distinct_labels(
      runs, config_checks.PLACEMENT_FIELDS + launch_common.UNLABELLED_FIELDS)
  os.makedirs(out, exist_ok=True)
  target = None if _TARGET.value is None else _TARGET.value / 100
  baseline = (None if _PAIRED.value is None
              else reporting.baseline_index(runs, _PAIRED.value))
  table, written = write_tables(runs, target, baseline, out)
  if plots.any_run_iterates(runs):
    written += [plots.plot_learning_curves(
        runs, os.path.join(out, 'learning_curves.png')),
                plots.plot_label_counts(
                    runs, os.path.join(out, 'labels.png')),
                plots.plot_calibration_curves(
                    runs, os.path.join(out, 'calibration.png'))]
    if baseline is not None:
      written.append(plots.plot_paired_curves(
          runs, baseline, os.path.join(out, 'paired_curves.png')))
  else:
    # Curves over iterations of runs that each have one would be a column
    # of dots at iteration 0.
    print('note: every run is an initial model (one iteration): no '
          'learning_curves.png, labels.png or calibration.png; '
          'accuracy_vs_labels.png plots them', file=sys.stderr, flush=True)
  # A run cut short (or querying otherwise) ends elsewhere than its paper
  # row: no paper point at its labels.
  paper_points = [not launch_common.paper_label_fields(run['config'])
                  for run in runs]
  written.append(plots.plot_accuracy_vs_labels(
      runs, os.path.join(out, 'accuracy_vs_labels.png'), target,
      paper_points))
  for run in runs:
    if _DECISION.value and may_be_2d(run['config'].get('dataset', '')):
      written.append(decision_panel(run, runs, out))
  print(table)
  for path in written:
    if path:
      print(f'wrote {path}')


if __name__ == '__main__':
  launch_common.run_main(main, resumes=False)
