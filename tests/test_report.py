"""launch/report.py: tables and non-trivial plots from real (tiny) workdirs."""

import csv
import json
import os
import shutil
import sys

import jax
import matplotlib.image
import numpy as np
import pytest

from bass_jax import data
from bass_jax import experiment
from bass_jax import export
from bass_jax import plots
from bass_jax import provenance
from bass_jax import reporting
from bass_jax import writing
from bass_jax.errors import DataError
from conftest import REPO
from conftest import forked
from configs import mnist
from configs import yinyang
from configs import yinyang_acquisition
from launch import common as launch_common


@pytest.fixture(scope='module')
def workdirs(tmp_path_factory):
  root = tmp_path_factory.mktemp('runs')
  ds = data.load_yinyang(num_per_class=80, seed=0)
  out = []
  for variant in ('active_semi', 'supervised_80'):
    config = yinyang.get_config(variant)
    config.num_iterations, config.num_seeds = 4, 2
    config.initial_epochs, config.mc_passes_gt = 10, 10
    config.initial_per_class = min(config.initial_per_class, 20)
    experiment.run(config, str(root / variant), dataset=ds)
    out.append(root / variant)
  return out, ds


def test_report_writes_tables_and_plots(workdirs, tmp_path):
  # A target the active run's seeds reach at different label counts.
  active = reporting.read_workdir(str(workdirs[0][0]))['rows']
  target = float(np.median([r['val_acc'] for r in active]))
  status, _, err = script(
      'report', f'--out={tmp_path}', '--decision=false',
      f'--target_acc={100 * target!r}', '--paired_with=supervised_80',
      *[f'--workdir={w}' for w in workdirs[0]])
  assert status == 0, err[-20:]
  table = (tmp_path / 'table.md').read_text()
  assert 'yinyang:active_semi' in table and '90.33' in table
  assert f'labels to {100 * target:g} % (median)' in table
  with open(tmp_path / 'table.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['experiment'] for r in rows] == ['yinyang:active_semi',
                                             'yinyang:supervised_80']
  assert rows[0]['seeds'] == '2' and rows[0]['iterations'] == '4'
  # The balanced accuracy (mean per-class recall), NLL and calibration
  # error beside it, from the rows, as summary.json has them.
  final = [r for r in active if r['iteration'] == 4]
  summary = json.loads((workdirs[0][0] / 'summary.json').read_text())
  for metric, key, scale in reporting.SIDE_METRICS:
    values = [scale * r[metric] for r in final]
    np.testing.assert_allclose(float(rows[0][f'{key}_mean']),
                               np.mean(values), rtol=1e-9)
    np.testing.assert_allclose(scale * summary[metric]['mean'],
                               np.mean(values), rtol=1e-9)
  assert 0 < float(rows[0]['nll_mean']) and 0 < float(rows[0]['ece_mean']) < 100
  # Paired against the supervised run: seed by seed, from the metrics.
  runs = [reporting.read_workdir(str(w)) for w in workdirs[0]]
  acc = [reporting.final_accuracy_by_seed(r) for r in runs]
  diff = [100 * (acc[0][s] - acc[1][s]) for s in (0, 1)]
  np.testing.assert_allclose(float(rows[0]['paired_mean']), np.mean(diff),
                             atol=1e-9)
  assert rows[0]['paired_seeds'] == '2' and rows[1]['paired_mean'] == ''
  assert 'vs yinyang:supervised_80, paired' in table
  assert f"{np.mean(diff):+.2f} ± {np.std(diff):.2f}" in table
  per_seed = reporting.labels_to_reach(active, target)
  assert rows[0]['reached'] == str(sum(n is not None
                                       for n in per_seed.values()))
  for name in ('learning_curves.png', 'labels.png', 'accuracy_vs_labels.png',
               'paired_curves.png', 'calibration.png'):
    assert_nontrivial_png(tmp_path / name)
  tex = (tmp_path / 'table.tex').read_text()
  assert tex.count(r'\\') == 3 and 'yinyang:active\\_semi' in tex
  # results.json: the same rows, seed by seed.
  got = json.loads((tmp_path / 'results.json').read_text())
  assert got['paired_with'] == 'yinyang:supervised_80'
  assert got['target_acc'] == pytest.approx(100 * target)
  assert '--paired_with=supervised_80' in got['command'] and got['units']
  first, second = got['runs']
  assert first['workdir'] == str(workdirs[0][0])
  assert first['fields']['variant'] == 'active_semi'
  assert second['fields']['variant'] == 'supervised_80'
  assert first['val_acc_by_seed'] == {
      str(s): pytest.approx(100 * a) for s, a in acc[0].items()}
  assert first['paired_by_seed'] == {
      str(s): pytest.approx(d) for s, d in zip((0, 1), diff)}
  assert first['paired_p'] == pytest.approx(float(rows[0]['paired_p']))
  assert 'paired_by_seed' not in second and second['paired_mean'] is None
  assert first['labels_to_target_by_seed'] == {
      str(s): n for s, n in per_seed.items()}
  # What each run was computed with, as its summary.json says; the two runs
  # of one environment need no note.
  assert first['environments'] == summary['environments']
  assert len(summary['environments']) == 1
  assert summary['environments'][0]['jax'] == jax.__version__
  assert 'computed under' not in table


def _rows(seed, accs, labels):
  return [{'iteration': i, 'seed': seed, 'val_acc': a, 'num_labels': n}
          for i, (a, n) in enumerate(zip(accs, labels))]


def test_labels_to_reach_golden():
  labels = [20, 30, 40, 50]
  rows = (_rows(0, [0.5, 0.9, 0.8, 0.95], labels) +  # First reached at 30.
          _rows(1, [0.5, 0.6, 0.7, 0.9], labels) +   # At its last, 50.
          _rows(2, [0.91, 0.5, 0.5, 0.5], labels) +  # Already at 20.
          _rows(3, [0.1, 0.2, 0.3, 0.4], labels))    # Never.
  rows = rows[::-1]  # Order in the file does not matter.
  per_seed = reporting.labels_to_reach(rows, 0.9)
  assert per_seed == {0: 30, 1: 50, 2: 20, 3: None}
  # Sorted 20, 30, 50, never: the two middle values' mean.
  assert reporting.median_labels_to_reach(per_seed) == 40
  assert reporting.median_labels_to_reach({0: 30, 1: None, 2: 20}) == 30
  # Half or more never reached it: no median.
  assert reporting.median_labels_to_reach({0: 30, 1: None}) is None
  assert reporting.median_labels_to_reach({0: None}) is None
  run = {'rows': rows, 'summary': None, 'workdir': 'w',
         'config': {'name': 'mnist_active', 'variant': 'bald'}}
  row, = reporting.table_rows([run], 0.9)
  assert (row['labels_to_target'], row['reached']) == (40, 3)
  assert '| 40 (3/4 seeds) |' in reporting.markdown_table([row], 0.9)
  row, = reporting.table_rows([run], 0.99)
  assert (row['labels_to_target'], row['reached']) == (None, 0)
  assert '| > 50 (0/4 seeds) |' in reporting.markdown_table([row], 0.99)
  assert 'labels to' not in reporting.markdown_table(
      reporting.table_rows([run]))


def test_decision_panel_from_checkpoint(workdirs, tmp_path):
  from bass_jax import analysis
  from bass_jax import plots
  dirs, ds = workdirs
  run, state, where = analysis.restored_run(str(dirs[0]), ds)
  assert where == 'after iteration 4'
  s = analysis.decision_surface(run, state, grid_size=40)
  assert s['pred'].shape == (40, 40) and 0 < s['pred'].mean() < 1
  # Queries of 2 at iterations 0 and 2; the last, 4, asks none.
  assert s['labelled'].sum() == 8 + 2 * 2
  path = plots.plot_decision_panel(
      s['grid_x'], s['grid_y'], s['pred'], s['entropy'], s['points'],
      s['labels'], s['labelled'], 'test', str(tmp_path / 'd.png'))
  assert_nontrivial_png(path)


def test_report_draws_the_decision_panel_of_2d_data_of_ones_own(tmp_path):
  # Once drawn for Yin-Yang only, though the README promised 2-D data.
  rng = np.random.default_rng(0)
  def points(n):
    y = np.arange(n) % 3
    return (rng.normal(size=(n, 2)) + 3 * np.eye(3)[y][:, :2]).astype(
        np.float32), y
  (x_train, y_train), (x_test, y_test) = points(90), points(30)
  npz = tmp_path / 'blobs.npz'
  np.savez(npz, x_train=x_train, y_train=y_train, x_test=x_test,
           y_test=y_test, num_classes=np.int64(3))
  config = yinyang.get_config('active_semi')
  config.dataset, config.name = str(npz), 'blobs'
  config.num_iterations, config.num_seeds = 2, 1
  config.initial_epochs, config.mc_passes_gt = 5, 10
  experiment.run(config, str(tmp_path / 'run'), dataset=None)
  status, out, err = script('report', f'--workdir={tmp_path / "run"}',
                            f'--out={tmp_path / "out"}')
  assert status == 0, err
  assert_nontrivial_png(tmp_path / 'out' / 'decision_blobs_active_semi.png')


def assert_nontrivial_png(path):
  img = matplotlib.image.imread(str(path))
  assert img.shape[0] > 200 and img.shape[1] > 300
  # Not blank: many distinct colours and real variation.
  flat = img[..., :3].reshape(-1, 3)
  assert len(np.unique(np.round(flat, 2), axis=0)) > 20
  assert flat.std() > 0.05


# Each launch script runs as a fork of one process that imported JAX,
# without ~2 s of imports.
pytestmark = pytest.mark.usefixtures('forked_scripts')


def script(name, *args):
  """Runs launch/<name>.py; returns (status, stdout, stderr lines)."""
  res = forked([str(REPO / 'launch' / f'{name}.py'), *args],
               dict(os.environ))
  assert 'Traceback' not in res.stderr, res.stderr[-2000:]
  return res.returncode, res.stdout, res.stderr.splitlines()


def copied(workdirs, tmp_path, name='run'):
  """A copy of the finished active_semi workdir, to damage."""
  return shutil.copytree(workdirs[0][0], tmp_path / name)


def test_read_workdir_torn_and_corrupt_files(workdirs, tmp_path):
  w = copied(workdirs, tmp_path)
  rows = reporting.read_workdir(str(w))['rows']
  metrics = w / 'metrics.jsonl'
  text = metrics.read_text()
  # A run killed (or still running) mid-write: its torn last line is
  # skipped, as a resume skips it.
  metrics.write_text(text + '{"iteration": 3, "seed": 0, "val_a')
  assert reporting.read_workdir(str(w))['rows'] == rows
  metrics.write_text(text + '{"iteration": 3, "seed": 0, "val_a\n')
  assert reporting.read_workdir(str(w))['rows'] == rows
  # The same line before others is corruption.
  lines = text.splitlines(keepends=True)
  metrics.write_text(''.join(lines[:3] + ['{"iteration": 3, "se\n']
                             + lines[3:]))
  with pytest.raises(DataError, match=r'metrics\.jsonl line 4 is not a '
                     'metrics row'):
    reporting.read_workdir(str(w))
  # So is a row of the wrong types (a hand-edited file).
  nulled = json.loads(lines[0])
  nulled['val_acc'] = None
  metrics.write_text(''.join(lines[:3] + [json.dumps(nulled) + '\n']
                             + lines[3:]))
  with pytest.raises(DataError, match=r'metrics\.jsonl line 4 is not a '
                     'metrics row'):
    reporting.read_workdir(str(w))
  # A finished run's rows cut short would make a table of its first
  # iterations: refused, as a resume refuses them.
  metrics.write_text(''.join(lines[:3]))
  with pytest.raises(DataError, match=r'metrics\.jsonl holds 3 of the '
                     rf'{len(lines)} rows of iterations 0\.\.'):
    reporting.read_workdir(str(w))
  metrics.write_text('')
  with pytest.raises(reporting.NoFinishedIteration,
                     match='has no finished iteration yet'):
    reporting.read_workdir(str(w))
  metrics.write_text(text)
  config = json.loads((w / 'config.json').read_text())
  (w / 'config.json').write_text(json.dumps(dict(config, num_iterations='x')))
  with pytest.raises(DataError, match=r"config\.json is unreadable \(its "
                     r"num_iterations is 'x', not an integer\)"):
    reporting.read_workdir(str(w))
  (w / 'config.json').write_text(json.dumps(config))
  (w / 'summary.json').write_text(json.dumps({'val_acc': {'mean': 'x'}}))
  with pytest.raises(DataError, match=r'summary\.json is unreadable'):
    reporting.read_workdir(str(w))
  (w / 'config.json').write_text('{"name": ')
  with pytest.raises(DataError, match=r'config\.json is unreadable'):
    reporting.read_workdir(str(w))


def test_report_cli_unfinished_and_corrupt_workdirs(workdirs, tmp_path):
  sweep = tmp_path / 'sweep'
  copied(workdirs, sweep, 'a')
  killed = copied(workdirs, sweep, 'b')
  (killed / 'metrics.jsonl').write_text('')  # Killed in iteration 0.
  shutil.rmtree(killed / 'checkpoints')
  unstarted = copied(workdirs, sweep, 'c')  # Killed before its first row.
  (unstarted / 'metrics.jsonl').unlink()
  (unstarted / 'summary.json').unlink()
  shutil.rmtree(unstarted / 'checkpoints')
  status, _, err = script('report', f'--workdir={sweep}',
                          f'--out={tmp_path / "out"}', '--decision=false')
  assert status == 0, err
  assert len(err) == 2 and err[0].startswith('note: leaving out ') and (
      'b has no finished iteration yet' in err[0]), err
  assert err[1] == (f'note: leaving out {unstarted / "metrics.jsonl"} not '
                    'found: the run has not started'), err
  with open(tmp_path / 'out' / 'table.csv') as f:
    assert len(list(csv.DictReader(f))) == 1
  # Given by itself, the same run is an error; so is a corrupt config.
  status, _, err = script('report', f'--workdir={killed}',
                          f'--out={tmp_path / "out2"}', '--decision=false')
  assert status == 2 and len(err) == 1, err
  assert err[0] == f'error: {killed} has no finished iteration yet (no rows '\
      f'in {killed / "metrics.jsonl"})'
  # A finished run whose rows were deleted has not merely not started.
  lost = copied(workdirs, tmp_path, 'a')
  (lost / 'metrics.jsonl').unlink()
  status, _, err = script('report', f'--workdir={lost}',
                          f'--out={tmp_path / "out3"}', '--decision=false')
  assert status == 2 and err == [
      f'error: {lost / "metrics.jsonl"} not found, though the run has '
      'finished: restore the file (its rows are the results), or run again '
      'with --overwrite'], err
  (killed / 'config.json').write_text('{"name": ')
  status, _, err = script('report', f'--workdir={killed}',
                          f'--out={tmp_path / "out2"}', '--decision=false')
  assert status == 2 and len(err) == 1, err
  assert f'{killed / "config.json"} is unreadable' in err[0]
  status, _, err = script('report', f'--workdir={lost}',
                          f'--out={lost / "config.json"}')
  assert status == 2 and err == [
      f'error: --out={lost / "config.json"} is a file; give the folder to '
      'write the report into'], err


def test_export_cli_bad_workdirs_are_one_line(workdirs, tmp_path):
  w = copied(workdirs, tmp_path)
  out = tmp_path / 'labels.csv'
  # Every checkpoint damaged: no per-checkpoint log lines, a neutral message.
  for meta in (w / 'checkpoints').glob('*/meta.json'):
    meta.write_text('garbage')
  status, _, err = script('export', f'--workdir={w}', f'--out={out}')
  assert status == 2 and err == [
      f'error: {w} has no valid checkpoint (1 damaged)'], err
  # A folder as --out: refused before the work.
  status, _, err = script('export', f'--workdir={w}', f'--out={tmp_path}')
  assert status == 2 and len(err) == 1 and 'is a folder' in err[0], err
  # So is a file of the run itself, which the CSV once replaced.
  summary = (w / 'summary.json').read_bytes()
  status, _, err = script('export', f'--workdir={w}',
                          f'--out={w / "summary.json"}')
  assert status == 2 and err == [
      f'error: --out={w / "summary.json"} is a file of the run in {w}; give '
      f'another name, e.g. --out={w / "labels.csv"}'], err
  assert (w / 'summary.json').read_bytes() == summary
  (w / 'config.json').write_text('{"name": ')
  status, _, err = script('export', f'--workdir={w}', f'--out={out}')
  assert status == 2 and len(err) == 1, err
  assert f'{w / "config.json"} is unreadable' in err[0]
  assert not out.exists()
  # A sweep's folder: its rows are named.
  sweep = tmp_path / 'sweep'
  for row in ('b', 'a'):
    copied(workdirs, sweep, row)
  status, _, err = script('export', f'--workdir={sweep}', f'--out={out}')
  assert status == 2 and err == [
      f'error: {sweep} holds a sweep of 2 runs, not one; export a row: '
      f'--workdir={sweep / "a"} (rows: a, b)'], err


def test_write_csv_failure_leaves_no_temp_file(tmp_path):
  folder = tmp_path / 'labels'
  folder.mkdir()
  table = {'id': np.arange(2), 'label': np.array([0, 1]),
           'confidence': np.ones(2), 'source': np.array(['human', 'model'])}
  with pytest.raises(OSError):
    export.write_csv(str(folder), table)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['labels']


def test_file_stems_of_runs_with_one_label_differ():
  # Two workdirs of one config once wrote one decision_<run>.png.
  a = {'workdir': '/w/first/', 'config': {'name': 'yinyang',
                                          'variant': 'active_semi'}}
  b = {'workdir': '/w/second', 'config': dict(a['config'])}
  c = {'workdir': '/w/third', 'config': {'name': 'yinyang', 'variant': 'semi'}}
  runs = [a, b, c]
  assert [reporting.file_stem(r, runs) for r in runs] == [
      'yinyang_active_semi_first', 'yinyang_active_semi_second',
      'yinyang_semi']
  # The same row of two sweeps: the folders are namesakes too.
  rows = [{'workdir': f'/w/{t}/active_semi', 'config': a['config']}
          for t in ('t1', 't2')]
  assert [reporting.file_stem(r, rows) for r in rows] == [
      'yinyang_active_semi_t1_active_semi',
      'yinyang_active_semi_t2_active_semi']


def test_result_table_labels_runs_without_a_name():
  # `--config.name=` once printed ':active_semi' in the result table.
  sys.path.insert(0, str(REPO / 'launch'))
  import common  # pylint: disable=g-import-not-at-top
  summary = {'name': '', 'variant': 'active_semi', 'num_labels': 10,
             'paper_acc': None, 'val_acc': {'mean': 0.5, 'std': 0.0},
             'num_seeds': 1, 'wall_s': 1.0}
  table = common.result_table([summary, dict(summary, name='yinyang',
                                             variant='')])
  assert '| run:active_semi |' in table and '| yinyang:- |' in table


def test_initial_model_rows_are_levels_beside_learning_curves(tmp_path):
  """A one-iteration run (a supervised row) is a dashed level at its mean."""
  def run(name, iterations):
    rows = [{'iteration': i, 'seed': s, 'val_acc': 0.8 + 0.01 * i + 0.02 * s}
            for i in range(iterations) for s in range(2)]
    return {'workdir': f'/w/{name}', 'rows': rows,
            'config': {'name': 'toy', 'variant': name}}
  fig, ax = plots._pyplot().subplots()  # pylint: disable=protected-access
  plots.draw_learning_curves(ax, [run('em', 5), run('supervised', 1)])
  level = [l for l in ax.get_lines()
           if l.get_label() == 'toy:supervised (initial model)']
  assert len(level) == 1 and level[0].get_linestyle() == '--'
  np.testing.assert_allclose(level[0].get_ydata(), [81.0, 81.0])
  plots._pyplot().close(fig)  # pylint: disable=protected-access


def test_twelve_runs_get_twelve_colours_and_the_legend_hides_nothing():
  """An ablation of 12 rows: no two curves share a colour, and the legend
  lies outside the plot, not over an error bar at iteration 0."""
  runs = [{'workdir': f'/w/r{j}', 'config': {'name': 'toy', 'variant': f'r{j}'},
           'rows': [{'iteration': i, 'seed': 0, 'val_acc': 0.5 + 0.01 * j}
                    for i in range(3)]} for j in range(12)]
  fig, ax = plots._pyplot().subplots()  # pylint: disable=protected-access
  plots.draw_learning_curves(ax, runs)
  from matplotlib import colors  # pylint: disable=g-import-not-at-top
  assert len({colors.to_hex(l.get_color()) for l in ax.get_lines()}) == 12
  fig.canvas.draw()
  legend = ax.get_legend().get_window_extent()
  assert legend.x0 >= ax.get_window_extent().x1
  plots._pyplot().close(fig)  # pylint: disable=protected-access


def test_sweep_rows_are_reported_in_sweep_order(tmp_path):
  rows = []
  for folder, variant in (('a', 'zeta'), ('b', 'alpha'), ('c', 'extra')):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / 'config.json').write_text(
        f'{{"variant": "{variant}"}}')
    rows.append(str(tmp_path / folder))
  # An unfinished sweep (no summaries.json): by name, numbers by value.
  assert reporting.sweep_order(str(tmp_path), rows) == rows
  assert reporting.sweep_order('/nowhere', ['/w/r-mu=16', '/w/r-mu=2.5',
                                            '/w/r-mu=2', '/w/r-mu=0.5']) == [
      '/w/r-mu=0.5', '/w/r-mu=2', '/w/r-mu=2.5', '/w/r-mu=16']
  (tmp_path / 'summaries.json').write_text(
      '[{"variant": "alpha"}, {"variant": "zeta"}]')
  # Its rows in the sweep's order; one it does not list, last.
  assert reporting.sweep_order(str(tmp_path), rows) == [rows[1], rows[0],
                                                       rows[2]]
  # A --vary sweep's rows share a variant: its row names order them
  # ('mu=16' after 'mu=2', not alphabetically).
  varied = []
  for mu in ('2', '16'):
    (tmp_path / f'r-mu={mu}').mkdir()
    (tmp_path / f'r-mu={mu}' / 'config.json').write_text('{"variant": "r"}')
    varied.append(str(tmp_path / f'r-mu={mu}'))
  (tmp_path / 'summaries.json').write_text(
      '[{"variant": "r", "row": "r-mu=2"}, {"variant": "r", "row": "r-mu=16"}]')
  assert reporting.sweep_order(str(tmp_path), sorted(varied)) == varied


def fake_run(workdir, seed, accs, wall=10.0, **config):
  """A read workdir of one iteration: val_acc `accs` of seeds seed, ..."""
  rows = [{'iteration': 0, 'seed': seed + j, 'val_acc': a, 'num_labels': 100}
          for j, a in enumerate(accs)]
  config = {'name': 'mnist', 'variant': 'supervised_100', 'seed': seed,
            'num_seeds': len(accs), 'paper_acc': 82.03, **config}
  return {'workdir': workdir, 'config': config, 'summary': {'wall_s': wall},
          'rows': rows}


def test_merged_seeds_join_the_parts_of_one_config():
  a = fake_run('w/a', 0, [0.8, 0.9], 10.0)
  b = fake_run('w/b', 2, [0.7], 5.0, mesh_shape='data:2')  # Elsewhere.
  other = fake_run('w/c', 0, [0.5], variant='supervised_300')
  merged = reporting.merged_seeds([a, other, b],
                                  ('seed', 'num_seeds', 'mesh_shape'))
  assert [m['workdir'] for m in merged] == ['w/a', 'w/c']
  assert merged[0]['parts'] == ['w/a', 'w/b']
  assert merged[0]['config']['num_seeds'] == 3
  assert merged[1] is other
  row = reporting.table_rows(merged)[0]
  assert (row['seeds'], row['wall_s']) == (3, 15.0)
  np.testing.assert_allclose([row['mean'], row['std']],
                             [80.0, 100 * np.std([0.8, 0.9, 0.7])])
  # Without a wall time in one part, the sum is unknown.
  b['summary'] = None
  assert reporting.table_rows(reporting.merged_seeds(
      [a, b], ('seed', 'num_seeds', 'mesh_shape')))[0]['wall_s'] is None
  with pytest.raises(DataError, match=(
      'w/a and w/d both hold seed 1 of mnist:supervised_100: a rerun')):
    reporting.merged_seeds([a, fake_run('w/d', 1, [0.6])])


def test_results_hold_every_seed_of_merged_and_paired_runs():
  base = fake_run('w/base', 0, [0.5, 0.6, 0.7])
  a = fake_run('w/a', 0, [0.8, 0.9], 10.0, variant='semi_100', mu=0.5)
  b = fake_run('w/b', 2, [0.6], 5.0, variant='semi_100', mu=0.5,
               mesh_shape='data:2')
  runs = reporting.merged_seeds([base, a, b],
                                ('seed', 'num_seeds', 'mesh_shape'))
  rows = reporting.table_rows(runs, target=0.55, baseline=0)
  got = reporting.results(runs, rows, target=0.55, baseline=0,
                          ignore=('mesh_shape',))
  assert got['paired_with'] == 'mnist:supervised_100'
  assert got['target_acc'] == pytest.approx(55.0)
  base_entry, semi = got['runs']
  # mu is absent from the baseline's config (None there): it differs too.
  assert semi['fields'] == {'mu': 0.5, 'variant': 'semi_100'}
  assert base_entry['fields'] == {'mu': None, 'variant': 'supervised_100'}
  assert semi['parts'] == ['w/a', 'w/b'] and semi['workdir'] == 'w/a'
  assert semi['val_acc_by_seed'] == {'0': pytest.approx(80.0),
                                     '1': pytest.approx(90.0),
                                     '2': pytest.approx(60.0)}
  assert semi['paired_by_seed'] == {'0': pytest.approx(30.0),
                                    '1': pytest.approx(30.0),
                                    '2': pytest.approx(-10.0)}
  assert semi['paired_mean'] == pytest.approx(50 / 3)
  assert semi['paired_better'] == 2 and semi['paired_seeds'] == 3
  assert base_entry['labels_to_target_by_seed'] == {'0': None, '1': 100,
                                                    '2': 100}
  assert 'paired_by_seed' not in base_entry
  assert json.loads(json.dumps(got)) == got  # JSON as it stands.


def test_results_hold_learning_and_paired_curves_golden():
  """Per iteration: labels, val_acc mean and std over seeds; the paired
  difference's mean and standard error (std / sqrt(n - 1))."""
  def run(workdir, accs):  # accs[seed][iteration]
    rows = [{'iteration': i, 'seed': s, 'val_acc': a, 'num_labels': 10 + 10 * i}
            for s, per_iter in enumerate(accs) for i, a in enumerate(per_iter)]
    return {'workdir': workdir, 'rows': rows, 'summary': {'wall_s': 1.0},
            'config': {'name': 'mnist', 'variant': workdir, 'seed': 0,
                       'num_seeds': 2}}
  runs = [run('base', [[0.5, 0.6], [0.7, 0.8]]),
          run('mine', [[0.6, 0.9], [0.7, 0.7]])]
  got = reporting.results(runs, reporting.table_rows(runs, baseline=0),
                          baseline=0)
  mine = got['runs'][1]
  assert mine['curve'] == {'iteration': [0, 1], 'labels': [10.0, 20.0],
                           'val_acc_mean': [pytest.approx(65.0),
                                            pytest.approx(80.0)],
                           'val_acc_std': [pytest.approx(5.0),
                                           pytest.approx(10.0)]}
  assert mine['paired_curve'] == {'iteration': [0, 1],
                                  'mean': [pytest.approx(5.0),
                                           pytest.approx(10.0)],
                                  'std_error': [pytest.approx(5.0),
                                                pytest.approx(20.0)]}
  assert 'paired_curve' not in got['runs'][0]
  assert json.loads(json.dumps(got)) == got


def test_results_curve_holds_pool_kappa_null_where_undefined():
  rows = [{'iteration': i, 'seed': s, 'val_acc': 0.5, 'num_labels': 10,
           'pool_kappa': None if i == 0 else k}
          for s, k in ((0, 0.8), (1, 0.9)) for i in range(3)]
  runs = [{'workdir': 'w', 'rows': rows, 'summary': {'wall_s': 1.0},
           'config': {'name': 'mnist', 'variant': 'v', 'seed': 0,
                      'num_seeds': 2}}]
  curve = reporting.results(runs, reporting.table_rows(runs))['runs'][0][
      'curve']
  assert curve['pool_kappa_mean'] == [None, pytest.approx(0.85),
                                      pytest.approx(0.85)]
  assert curve['pool_kappa_std'] == [None, pytest.approx(0.05),
                                     pytest.approx(0.05)]


def test_latex_table_golden():
  rows = [{'experiment': 'mnist:semi_100,small', 'labels': 100,
           'paper': 96.08, 'mean': 78.16, 'std': 3.95, 'seeds': 10,
           'wall_s': 749.2, 'labels_to_target': None, 'reached': 3,
           'paired_mean': 3.44, 'paired_std': 2.42, 'paired_std_error': 0.81,
           'paired_p': 0.004, 'paired_better': 9, 'paired_tied': 0,
           'paired_seeds': 10},
          {'experiment': 'mnist:supervised_100,small', 'labels': 100,
           'paper': None, 'mean': 74.71, 'std': 2.11, 'seeds': 10,
           'wall_s': None, 'labels_to_target': 130.0, 'reached': 10,
           'paired_mean': None}]
  assert reporting.latex_table(rows, 0.95, 'supervised_100') == (
      '\\begin{tabular}{lrrrrrrrr}\n\\toprule\n'
      'experiment & labels & paper \\% & ours \\% (mean $\\pm$ std over seeds, '
      'ddof 0) & seeds & '
      'labels to 95 \\% (median) & vs supervised\\_100, paired (points, '
      'mean $\\pm$ std; SE, sign-flip p) & seeds ahead & wall s \\\\\n'
      '\\midrule\n'
      'mnist:semi\\_100,small & 100 & 96.08 & 78.16 $\\pm$ 3.95 & 10 & '
      '$>$ 100 (3/10 seeds) & +3.44 $\\pm$ 2.42 (SE 0.81, p 0.004) & '
      '9/10 & 749 \\\\\n'
      'mnist:supervised\\_100,small & 100 & -- & 74.71 $\\pm$ 2.11 & 10 & '
      '130 (10/10 seeds) & (baseline) &  & -- \\\\\n'
      '\\bottomrule\n\\end{tabular}\n')
  assert reporting.latex_text('a_b & 5% {x} ~^\\ #$') == (
      'a\\_b \\& 5\\% \\{x\\} \\textasciitilde{}\\textasciicircum{}'
      '\\textbackslash{} \\#\\$')
  # The markdown table of the same rows keeps its layout.
  assert reporting.markdown_table(rows).splitlines()[2] == (
      '| mnist:semi_100,small | 100 | 96.08 | 78.16 ± 3.95 | 10 | 749 |')
  # One seed has no spread: its number alone, its paired difference too.
  rows[0].update(seeds=1, std=0.0, paired_seeds=1, paired_std=0.0,
                 paired_std_error=None, paired_better=1)
  assert reporting.markdown_table(rows, baseline='b').splitlines()[2] == (
      '| mnist:semi_100,small | 100 | 96.08 | 78.16 | 1 | +3.44 | 1/1 | 749 |')


def test_namesakes_are_labelled_by_the_fields_they_differ_in():
  # An ablation over --config.acquisition_beta once gave three table rows
  # and legend entries all named 'mnist:supervised_100'.
  runs = [fake_run('w/b1', 0, [0.8], acquisition_beta=1.0, chunk_size=0),
          fake_run('w/b4', 0, [0.9], acquisition_beta=4.0, chunk_size=512),
          fake_run('w/b2', 0, [0.7], acquisition_beta=2.5, chunk_size=0),
          fake_run('w/other', 0, [0.6], variant='supervised_300')]
  got = reporting.with_distinct_labels(runs, ('chunk_size',))
  assert [reporting.label_of(r) for r in got] == [
      'mnist:supervised_100 (acquisition_beta=1)',
      'mnist:supervised_100 (acquisition_beta=4)',
      'mnist:supervised_100 (acquisition_beta=2.5)',
      'mnist:supervised_300']
  assert 'label' not in runs[0]  # The runs given are left as they were.
  table = reporting.markdown_table(reporting.table_rows(got))
  assert '| mnist:supervised_100 (acquisition_beta=4) | 100 |' in table
  # Each answers to its label as a --paired_with baseline; the variant
  # names all three.
  assert reporting.baseline_index(
      got, 'mnist:supervised_100 (acquisition_beta=4)') == 1
  assert reporting.baseline_index(got, 'b2') == 2  # Its folder's name.
  with pytest.raises(DataError, match=(
      r"3 runs of the report answer to 'supervised_100'; give one of: "
      r'mnist:supervised_100 \(acquisition_beta=1\), mnist:supervised_100 '
      r'\(acquisition_beta=4\), mnist:supervised_100 '
      r'\(acquisition_beta=2.5\)$')):  # Only the runs that answer.
    reporting.baseline_index(got, 'supervised_100')
  # Several differing fields, sorted; equal configs by their workdirs.
  two = reporting.with_distinct_labels(
      [fake_run('w/x', 0, [0.8], mu=0.5, semi='all'),
       fake_run('w/y', 0, [0.8], mu=1.0, semi='none')])
  assert [reporting.label_of(r) for r in two] == [
      'mnist:supervised_100 (mu=0.5, semi=all)',
      'mnist:supervised_100 (mu=1, semi=none)']
  rerun = reporting.with_distinct_labels(
      [fake_run('w/first', 0, [0.8], chunk_size=0),
       fake_run('w/again', 0, [0.8], chunk_size=512)], ('chunk_size',))
  assert [reporting.label_of(r) for r in rerun] == [
      'mnist:supervised_100 (first)', 'mnist:supervised_100 (again)']
  mixed = reporting.with_distinct_labels(
      [fake_run('w/a', 0, [0.8], mu=0.5), fake_run('w/b', 0, [0.8], mu=1.0),
       fake_run('w/c', 0, [0.8], mu=0.5)])
  assert [reporting.label_of(r) for r in mixed] == [
      'mnist:supervised_100 (mu=0.5; a)', 'mnist:supervised_100 (mu=1)',
      'mnist:supervised_100 (mu=0.5; c)']
  # File stems keep naming namesakes by their workdirs.
  assert [reporting.file_stem(r, rerun) for r in rerun] == [
      'mnist_supervised_100_first', 'mnist_supervised_100_again']


def test_report_cli_labels_an_ablation_by_its_field(workdirs, tmp_path):
  a = copied(workdirs, tmp_path, 'beta1')
  b = copied(workdirs, tmp_path, 'beta4')
  config = json.loads((b / 'config.json').read_text())
  config['acquisition_beta'], config['chunk_size'] = 4.0, 512
  (b / 'config.json').write_text(json.dumps(config))
  out = a / 'report'  # Without --out: in the first workdir.
  status, stdout, err = script(
      'report', f'--workdir={a}', f'--workdir={b}', '--decision=false',
      '--paired_with=yinyang:active_semi (acquisition_beta=1)')
  assert status == 0, err
  with open(out / 'table.csv') as f:
    assert [r['experiment'] for r in csv.DictReader(f)] == [
        'yinyang:active_semi (acquisition_beta=1)',
        'yinyang:active_semi (acquisition_beta=4)']
  assert 'vs yinyang:active_semi (acquisition_beta=1), paired' in stdout
  # What both share against the config file is said once; the field that
  # tells them apart, in the labels, not again; where they ran, never.
  note = [line for line in stdout.splitlines() if line.startswith('Every')]
  assert note == ['Every run with initial_epochs=10, mc_passes_gt=10, '
                  'num_iterations=4.'], stdout
  assert 'chunk_size' not in stdout


def test_a_model_file_out_of_reach_costs_the_decision_panel_only(workdirs,
                                                                 tmp_path):
  w = copied(workdirs, tmp_path)
  config = json.loads((w / 'config.json').read_text())
  config['model'] = 'elsewhere/nets.py:Net'  # Run from another folder.
  (w / 'config.json').write_text(json.dumps(config))
  status, stdout, err = script('report', f'--workdir={w}',
                               f'--out={tmp_path / "out"}')
  assert status == 0, err
  assert len(err) == 1 and err[0].startswith(
      "note: no decision panel: config.model 'elsewhere/nets.py:Net': no "
      "file 'elsewhere/nets.py' (paths are relative to "), err
  assert 'wrote ' in stdout and (tmp_path / 'out' / 'table.md').exists()


def test_table_notes_says_what_labels_do_not():
  def run(variant, **changes):
    config = yinyang.get_config(variant)
    config.update(changes)
    return {'config': json.loads(json.dumps(config.to_dict())),
            'workdir': variant, 'rows': []}

  assert launch_common.table_notes([run('semi')]) == ''
  one = run('active_semi', mu=0.5, num_iterations=3, chunk_size=64)
  assert launch_common.table_notes([one]) == (
      'Run with mu=0.5, num_iterations=3.')  # chunk_size: only speed.
  two = [one, run('semi', mu=0.5, dataset='blobs.npz')]
  assert launch_common.table_notes(two) == (
      'Every run with mu=0.5.\n'
      'yinyang:active_semi with num_iterations=3.\n'
      'yinyang:semi with dataset=blobs.npz.')
  # A name no config file has: nothing to compare with.
  own = run('semi', mu=0.5, name='blobs')
  assert launch_common.table_notes([own]) == ''


def test_table_notes_name_what_differs_in_the_runs_environments():
  env = {'jax': '0.10.2', 'numpy': '2.4.6', 'devices': 1}
  newer = dict(env, jax='0.12.1')
  notes = provenance.report_notes(
      ['a', 'b', 'c', 'd', 'e'],
      [[env], [env, newer], [newer], None, [None, env]])
  assert notes == [
      'b: computed under more than one environment (jax 0.12.1 (was '
      '0.10.2)).',
      'Runs computed under different jax: 0.10.2 for a, e; '
      '0.12.1 for b, c.']
  assert provenance.report_notes(['a', 'b'], [[env], [dict(env)]]) == []
  # Parts of one experiment: their environments, each once, in order.
  a = fake_run('w/a', 0, [0.8])
  b = fake_run('w/b', 1, [0.7])
  c = fake_run('w/c', 2, [0.6])
  a['summary']['environments'] = b['summary']['environments'] = [env]
  c['summary']['environments'] = [newer]
  merged, = reporting.merged_seeds([a, b, c])
  assert merged['summary']['environments'] == [env, newer]
  assert launch_common.table_notes([merged]).splitlines()[-1] == (
      'mnist:supervised_100: computed under more than one environment '
      '(jax 0.12.1 (was 0.10.2)).')


def test_an_unfinished_run_is_said_so_and_never_merged_with_finished_seeds():
  def run(workdir, seeds, last, planned=40):
    config = json.loads(json.dumps(yinyang.get_config('semi').to_dict()))
    config.update(num_iterations=planned, seed=seeds[0],
                  num_seeds=len(seeds))
    rows = [{'iteration': i, 'seed': s, 'val_acc': 0.8, 'num_labels': 8}
            for i in range(last + 1) for s in seeds]
    return {'workdir': workdir, 'config': config, 'rows': rows,
            'summary': None}

  done, stopped = run('a', [0, 1], 40), run('b', [6, 7], 26)
  assert reporting.unfinished_text(done) == ''
  assert reporting.unfinished_text(stopped) == 'after iteration 26 of 40'
  assert reporting.unfinished_text(dict(stopped, paused=True)) == (
      'after iteration 26 of 40, waiting for labels')
  assert launch_common.table_notes([stopped]).splitlines()[-1] == (
      'yinyang:semi: unfinished, after iteration 26 of 40.')
  with pytest.raises(DataError, match=r'the parts of yinyang:semi end at '
                     r'different iterations \(a at 40, b at 26\)'):
    reporting.merged_seeds([done, stopped])
  merged = reporting.merged_seeds([stopped, run('c', [2], 26)])
  assert len(merged) == 1 and merged[0]['config']['num_seeds'] == 3
  # Stopped in iteration 0 is not an initial model: it is to iterate.
  assert plots.any_run_iterates([run('d', [0], 0)])
  assert not plots.any_run_iterates([run('e', [0], 0, planned=0)])


def test_paired_differences_golden():
  base = fake_run('w/a', 0, [0.70, 0.80, 0.75, 0.90])
  run = fake_run('w/b', 1, [0.85, 0.77, 0.93, 0.95, 0.99],
                 variant='alldata_maxent,small')
  # Seeds 1-3 in common: +5, +2, +3 points.
  got = reporting.paired_difference(run, base)
  np.testing.assert_allclose(
      [got['mean'], got['std'], got['std_error']],
      [10 / 3, np.sqrt(14 / 9), np.sqrt(14 / 9) / np.sqrt(2)])
  assert (got['better'], got['tied'], got['seeds']) == (3, 0, 3)
  # All 8 sign patterns of (5, 2, 3): only all-plus and all-minus reach a
  # mean of 10/3 in size.
  assert got['p'] == 0.25
  one = reporting.paired_difference(fake_run('w/c', 0, [0.6]), base)
  assert (one['better'], one['std_error']) == (0, None)
  same = reporting.paired_difference(fake_run('w/e', 0, [0.7, 0.8]), base)
  assert (same['mean'], same['better'], same['tied']) == (0, 0, 2)
  cells = reporting.markdown_table(reporting.table_rows(
      [base, fake_run('w/e', 0, [0.7, 0.8])], baseline=0), baseline='b')
  assert '| +0.00 ± 0.00 (SE 0.00, p 1) | 0/2 (2 tied) |' in cells
  with pytest.raises(DataError, match=r'share no seed: nothing to pair'):
    reporting.paired_difference(fake_run('w/d', 7, [0.6]), base)
  runs = [base, run]
  for name in ('alldata_maxent', 'alldata_maxent,small',
               'mnist:alldata_maxent,small'):
    assert reporting.baseline_index(runs, name) == 1
  with pytest.raises(DataError, match=(
      r"no run of the report answer to 'semi_100'; give one of: "
      r'mnist:supervised_100, mnist:alldata_maxent,small')):
    reporting.baseline_index(runs, 'semi_100')
  with pytest.raises(DataError, match='2 runs of the report answer'):
    reporting.baseline_index([base, base], 'supervised_100')
  rows = reporting.table_rows(runs, baseline=0)
  table = reporting.markdown_table(rows, baseline='mnist:supervised_100')
  assert '| (baseline) | |' in table.splitlines()[2]
  assert '| +3.33 ± 1.25 (SE 0.88, p 0.25) | 3/3 |' in table.splitlines()[3]


def test_sign_flip_p_value_golden():
  # (1, 2, -3, 4): of the 16 sums +-1 +-2 +-3 +-4, ten are 4 or more in
  # size (10, 8, 6, 4, 4 and their negatives).
  assert reporting.sign_flip_p_value(np.array([1., 2., -3., 4.])) == 10 / 16
  assert reporting.sign_flip_p_value(np.ones(10)) == 2 / 1024
  assert reporting.sign_flip_p_value(np.zeros(5)) == 1.0
  assert reporting.sign_flip_p_value(np.array([0.1, 0.2, 0.3])[::-1]) == 0.25
  # Beyond 16 seeds 100,000 drawn patterns, the observed one counted: as
  # small as 1 / 100,001, never 0, and the same in every call.
  many = np.linspace(0.5, 1.5, 20)
  p = reporting.sign_flip_p_value(many)
  assert 0 < p < 1e-4 and p == reporting.sign_flip_p_value(many)
  assert reporting.sign_flip_p_value(np.zeros(20)) == 1.0
  near = reporting.sign_flip_p_value(np.r_[np.ones(10), -np.ones(10)])
  assert near == 1.0
  assert [reporting._p_text(v) for v in (1.0, 0.25, 0.0439, 0.002, 1e-5)] == [
      '1', '0.25', '0.044', '0.002', '< 0.001']


def test_paired_curve_golden():
  # Seeds 0 and 1, iterations 0-2; the baseline stops at iteration 1.
  run = {'rows': _rows(0, [0.60, 0.70, 0.80], [100, 110, 120])
                 + _rows(1, [0.50, 0.66, 0.90], [100, 110, 120])}
  base = {'rows': _rows(0, [0.60, 0.65], [100, 100])
                  + _rows(1, [0.50, 0.60], [100, 100])
                  + _rows(2, [0.10], [100])}  # A seed the run lacks.
  its, mean, se = reporting.paired_curve(run, base)
  np.testing.assert_array_equal(its, [0, 1, 2])
  # Iteration 2 against the baseline's last: +15 and +30 points.
  np.testing.assert_allclose(mean, [0, 5.5, 22.5], atol=1e-9)
  np.testing.assert_allclose(se, [0, 0.5, 7.5], atol=1e-9)
  # Against an initial model (one iteration): its level throughout.
  level = {'rows': _rows(0, [0.5], [100])}
  its, mean, se = reporting.paired_curve(run, level)
  np.testing.assert_allclose(mean, [10, 20, 30], atol=1e-9)
  assert np.isnan(se).all()
  assert all(len(a) == 0 for a in reporting.paired_curve(
      run, {'rows': _rows(5, [0.5], [100])}))


def test_report_cli_refuses_to_merge_a_run_with_its_copy(workdirs, tmp_path):
  w = str(workdirs[0][0])
  again = copied(workdirs, tmp_path, 'again')
  status, _, err = script('report', f'--workdir={w}', f'--workdir={again}',
                          '--merge_seeds', f'--out={tmp_path / "out"}',
                          '--decision=false')
  assert status == 2 and len(err) == 1, err
  assert err[0].startswith(f'error: {w} and {again} both hold seed 0 of '
                           'yinyang:active_semi: a rerun, not a part')
  # One workdir given twice (another spelling of its path) is one run.
  status, _, err = script('report', f'--workdir={w}',
                          f'--workdir={w}{os.sep}.', f'--out={tmp_path}',
                          '--decision=false')
  assert status == 0, err
  rows = (tmp_path / 'table.md').read_text().splitlines()[2:]
  assert [r.split('|')[1].strip() for r in rows if r.startswith('|')] == [
      'yinyang:active_semi']
  # What differs from configs/yinyang.py:active_semi, under the table.
  assert rows[-1] == ('Run with initial_epochs=10, mc_passes_gt=10, '
                      'num_iterations=4.'), rows
  # A target given as a fraction, as metrics.jsonl keeps it, is refused.
  status, _, err = script('report', f'--workdir={w}', '--target_acc=0.85',
                          f'--out={tmp_path}')
  assert status == 2 and len(err) == 1 and 'is in %, e.g. 85' in err[0], err
  status, _, err = script('report', f'--workdir={w}', f'--out={tmp_path}',
                          '--paired_with=semi_100', '--decision=false')
  assert status == 2 and len(err) == 1, err
  assert err[0] == ("error: no run of the report answer to 'semi_100'; give "
                    'one of: yinyang:active_semi')


def test_accuracy_vs_labels_marks_the_paper_on_a_log_axis():
  """Table 2's supervised rows: each row's paper accuracy an open diamond
  in its colour at its labels; 100 to 3,000 labels on a log axis; a run
  whose config names no paper accuracy gets no diamond."""
  def run(variant, labels, accs, paper):
    rows = [{'iteration': 0, 'seed': s, 'val_acc': a, 'num_labels': labels}
            for s, a in enumerate(accs)]
    return {'workdir': f'/w/{variant}', 'rows': rows,
            'config': {'name': 'mnist', 'variant': variant,
                       'dataset': 'mnist', 'paper_acc': paper}}
  runs = [run('supervised_100', 100, [0.81, 0.83], 82.03),
          run('supervised_3000', 3000, [0.97, 0.98], 97.89),
          run('mine', 1000, [0.9, 0.9], -1.0)]
  plt = plots._pyplot()  # pylint: disable=protected-access
  fig, ax = plt.subplots()
  plots.draw_accuracy_vs_labels(ax, runs)
  assert ax.get_xscale() == 'log'
  diamonds = [l for l in ax.get_lines()
              if l.get_marker() == 'D' and len(l.get_xdata())]
  assert sorted((float(l.get_xdata()[0]), float(l.get_ydata()[0]))
                for l in diamonds) == [(100.0, 82.03), (3000.0, 97.89)]
  # Each diamond open, in the colour of its run's mean ± std point.
  point_at = {float(c.lines[0].get_xdata()[0]): c.lines[0].get_color()
              for c in ax.containers}
  for diamond in diamonds:
    assert diamond.get_markerfacecolor() == 'none'
    assert diamond.get_color() == point_at[float(diamond.get_xdata()[0])]
  assert point_at[100.0] != point_at[3000.0]
  legend = [t.get_text() for t in ax.get_legend().get_texts()]
  assert legend.count('paper') == 1 and 'mnist:mine' in legend
  plt.close(fig)
  # Labels within a 20x span (an active run, 20 -> 100): a linear axis.
  fig, ax = plt.subplots()
  active = run('bald', 20, [0.5], 90.0)
  active['rows'] += [{'iteration': 1, 'seed': 0, 'val_acc': 0.9,
                      'num_labels': 100}]
  plots.draw_accuracy_vs_labels(ax, [active])
  assert ax.get_xscale() == 'linear'
  diamond, = [l for l in ax.get_lines() if l.get_marker() == 'D'
              and len(l.get_xdata())]
  assert (diamond.get_xdata()[0], diamond.get_ydata()[0]) == (100, 90.0)
  plt.close(fig)
  # A run cut short (report.py: an override of a label-count field) gets
  # no diamond at its labels: the paper's number is at the paper's.
  fig, ax = plt.subplots()
  plots.draw_accuracy_vs_labels(ax, runs, paper_points=[True, False,
                                                            True])
  assert [float(l.get_xdata()[0]) for l in ax.get_lines()
          if l.get_marker() == 'D' and len(l.get_xdata())] == [100.0]
  plt.close(fig)


def test_report_of_initial_models_plots_them_against_labels_only(tmp_path):
  """Table 2's supervised rows (one iteration each): no curves over
  iterations (a column of dots at 0), a note saying so, and the table and
  accuracy-against-labels plot as always."""
  workdirs = []
  for labels, accs, paper in ((100, [0.81, 0.83], 82.03),
                              (1000, [0.96, 0.962], 96.24)):
    w = tmp_path / f'supervised_{labels}'
    w.mkdir()
    (w / 'config.json').write_text(json.dumps(
        {'name': 'mnist', 'variant': f'supervised_{labels}', 'seed': 0,
         'num_seeds': 2, 'paper_acc': paper}))
    (w / 'metrics.jsonl').write_text(''.join(
        json.dumps({'iteration': 0, 'seed': s, 'val_acc': a,
                    'num_labels': labels}) + '\n'
        for s, a in enumerate(accs)))
    workdirs.append(f'--workdir={w}')
  out = tmp_path / 'report'
  status, stdout, err = script('report', f'--out={out}', *workdirs)
  assert status == 0, err
  assert '| mnist:supervised_1000 | 1000 | 96.24 | 96.10 ± 0.10 |' in stdout
  assert sorted(p.name for p in out.iterdir()) == [
      'accuracy_vs_labels.png', 'results.json', 'table.csv', 'table.md',
      'table.tex']
  assert any('every run is an initial model' in l for l in err), err
  assert_nontrivial_png(out / 'accuracy_vs_labels.png')


def test_the_paper_is_beside_the_papers_runs_only():
  """Own data or own code: the run is not the paper's row, so no paper %
  beside it (in summary.json as in the report's tables)."""
  config = yinyang.get_config('active_semi')
  assert reporting.paper_reference(config) == config.paper_acc > 0
  assert reporting.paper_reference(config.to_dict()) == config.paper_acc
  for field, value in (('dataset', 'mine.npz'), ('dataset', 'my_images'),
                       ('dataset', 'fashion_mnist'),
                       ('model', 'nets.py:WideCNN'),
                       ('acquisition', 'power_scores.py:gap'),
                       ('confident_score', 'scores.py:gap'),
                       ('paper_acc', -1.0)):
    other = dict(config.to_dict(), **{field: value})
    assert reporting.paper_reference(other) is None, (field, value)
    assert reporting.paper_accuracy({'config': other}) is None


def test_a_run_ending_at_other_labels_than_its_paper_row_says_so():
  """MNIST's `small` queries to 130 labels, the paper's row to 300: its
  paper % is said to be at the paper's labels and gets no point at the
  run's (report.py's paper_points); an initial model's labels are the
  same at any iteration count."""
  def stored(module, arg, **changes):
    config = module.get_config(arg)
    config.update(changes)
    return json.loads(json.dumps(config.to_dict()))

  small = stored(mnist, 'alldata_maxent,small')
  assert launch_common.paper_label_fields(small) == {
      'num_iterations': 200, 'query_every': 10}
  assert launch_common.paper_labels_note('m', small) == (
      "m: paper % at the paper protocol's labels (num_iterations=200, "
      'query_every=10).')
  # ConfigDicts too, as launch/train.py and the sweep hold them.
  assert launch_common.paper_labels_note(
      'm', mnist.get_config('alldata_maxent,small')) == (
          launch_common.paper_labels_note('m', small))
  # An override on top: every field that differs is named.
  assert launch_common.paper_labels_note(
      'm', stored(mnist, 'alldata_maxent,small', query_size=5)) == (
          "m: paper % at the paper protocol's labels (num_iterations=200, "
          'query_every=10, query_size=10).')
  for same in (stored(mnist, 'alldata_maxent'),
               stored(mnist, 'supervised_100,small'),  # Asks no labels.
               stored(mnist, 'semi_300,small', num_iterations=3),
               stored(yinyang, 'initial', query_every=7),
               # No paper %: nothing to place.
               stored(yinyang_acquisition, 'bald', num_iterations=3)):
    assert launch_common.paper_label_fields(same) == {}, same['variant']
    assert launch_common.paper_labels_note('m', same) == ''
  # An override alone: no paper point, and the note its label carries
  # ('Run with num_iterations=5.') is enough.
  short = stored(yinyang, 'active_semi', num_iterations=5)
  assert launch_common.paper_label_fields(short) == {'num_iterations': 72}
  assert launch_common.paper_labels_note('y', short) == ''
  run = {'config': small, 'workdir': 'w', 'rows': []}
  assert launch_common.table_notes([run]) == (
      "mnist:alldata_maxent,small: paper % at the paper protocol's labels "
      '(num_iterations=200, query_every=10).')


def test_calibration_plot_of_runs_with_and_without_the_metrics(tmp_path):
  """calibration.png draws val_nll and val_ece over iterations; a run made
  before they were metrics draws nothing, and runs that all lack them give
  no plot."""
  old = fake_run('w/old', 0, [0.8, 0.9])
  path = str(tmp_path / 'calibration.png')
  assert plots.plot_calibration_curves([old], path) is None
  new = fake_run('w/new', 0, [0.7, 0.75], variant='supervised_300')
  new['rows'] = [dict(r, iteration=i, val_nll=1.0 / (i + 1 + s),
                      val_ece=0.2 / (i + 1) + 0.01 * s)
                 for i in range(5) for s, r in enumerate(new['rows'])]
  assert plots.plot_calibration_curves([old, new], path) == path
  assert_nontrivial_png(path)


def test_is_run_file_guards_the_runs_own_files(tmp_path):
  w = tmp_path / 'run'
  for own in ('config.json', 'metrics.jsonl', 'run.lock',
              'checkpoints/10/meta.json', 'queries/5/manifest.csv'):
    assert export.is_run_file(str(w), str(w / own)), own
  for other in ('labels.csv', 'report/table.csv', '../config.json'):
    assert not export.is_run_file(str(w), str(w / other)), other
  # Through another spelling of the same folder.
  assert export.is_run_file(str(w), str(tmp_path / '.' / 'run' /
                                        'summary.json'))


def test_a_failed_atomic_write_keeps_the_file_and_leaves_no_temp(tmp_path):
  path = tmp_path / 'results.json'
  writing.write_json(str(path), {'a': 1})
  with pytest.raises(TypeError):  # As a full disk fails it part-way.
    writing.write_lines(str(path), ['{"a": 2', None])
  assert json.loads(path.read_text()) == {'a': 1}
  assert sorted(p.name for p in tmp_path.iterdir()) == ['results.json']


def test_a_full_disk_names_the_file_it_failed_to_write(tmp_path,
                                                      monkeypatch):
  """A write or fsync that fails on a full disk raises OSError without a
  file name; the one-line error names the file all the same."""
  path = tmp_path / 'summary.json'

  def full(unused_fd):
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(writing.os, 'fsync', full)
  with pytest.raises(OSError) as e:
    writing.write_json(str(path), {'a': 1})
  assert str(e.value) == (f"[Errno 28] No space left on device: '{path}'")
  assert list(tmp_path.iterdir()) == []
  # Its temp file cannot be made (here a folder of that name is in the
  # way): the error names the file, not the temp file the user never sees.
  (tmp_path / 'table.json.tmp').mkdir()
  with pytest.raises(IsADirectoryError) as e:
    writing.write_json(str(tmp_path / 'table.json'), {})
  assert str(e.value).endswith(f"'{tmp_path / 'table.json'}'"), e.value
  # One that names its file already keeps it; other errors pass unchanged.
  with pytest.raises(OSError, match="'other'"):
    with writing.naming_file(str(path)):
      raise FileNotFoundError(2, 'No such file or directory', 'other')
  with pytest.raises(ValueError):
    with writing.naming_file(str(path)):
      raise ValueError('not an OSError')


def test_label_counts_say_why_a_panel_is_empty(tmp_path, monkeypatch):
  """A pool without known labels (an image folder): no pseudo_acc to draw,
  and the panel says so instead of standing empty."""
  rows = [{'iteration': i, 'seed': 0, 'val_acc': 0.5, 'num_labels': 9 + i,
           'num_train': 100, 'pseudo_acc': None} for i in range(3)]
  figures = []
  monkeypatch.setattr(plots, '_saved',
                      lambda fig, path: figures.append(fig) or path)
  plots.plot_label_counts([{'workdir': '/w/a', 'rows': rows,
                                'config': {'name': 'folder'}}],
                              str(tmp_path / 'labels.png'))
  labels, train, pseudo, kappa = figures[0].axes
  assert [t.get_text() for t in pseudo.texts] == [
      'no pseudo-label with a known\nlabel to score it by']
  # Rows without pool_kappa (written before it existed).
  assert [t.get_text() for t in kappa.texts] == [
      'no pool_kappa: runs made by\nan earlier bass_jax']
  assert not labels.texts and not train.texts and len(labels.get_lines()) == 1
