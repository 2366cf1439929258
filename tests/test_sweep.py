"""launch/sweep.py: every row into one table, finished rows not rerun, and
an unknown --rows name is a one-line error."""

import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys

import pytest

from bass_jax import reporting
from bass_jax import workdirs
from conftest import forked
from launch import common as launch_common

REPO = pathlib.Path(__file__).resolve().parents[1]
SWEEP = str(REPO / 'launch' / 'sweep.py')
TINY = ['--config=' + str(REPO / 'configs' / 'yinyang.py'),
        '--config.num_seeds=2', '--config.num_iterations=2',
        '--config.initial_epochs=5', '--config.mc_passes_gt=10', '--quiet']


def table_labels(path):
  """The first column of a table.md's rows (header and footer left out)."""
  lines = pathlib.Path(path).read_text().splitlines()
  return [l.split('|')[1].strip() for l in lines[2:] if l.startswith('|')]


# Each sweep is `python launch/sweep.py ...` as a fork of one process that
# imported JAX once, without ~2 s of imports.
pytestmark = pytest.mark.usefixtures('forked_scripts')


def _script(*argv):
  """`python <argv...>` in the repo root, through the forkserver."""
  env = {k: v for k, v in os.environ.items() if k != 'BASS_DEBUG'}
  return forked(list(argv), env)


def _sweep(workdir, *args):
  """launch/sweep.py on TINY."""
  return _script(SWEEP, f'--workdir={workdir}', *TINY, *args)


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  """(workdir, result) of a finished sweep of rows initial and semi."""
  workdir = tmp_path_factory.mktemp('sweep')
  return workdir, _sweep(workdir, '--rows=semi,initial')


def test_sweep_table_resume_and_unknown_row(finished):
  tmp_path, first = finished
  assert first.returncode == 0, first.stderr[-2000:]
  # Rows in the sweep's order (initial before semi), each counted.
  assert '== initial (row 1/2) ->' in first.stdout, first.stdout
  # An override that replaces what tells the rows apart says so (initial
  # runs 2 EM iterations here, not none); initial_epochs, the same in both
  # rows, is not named.
  notes = [l for l in first.stdout.splitlines() if l.startswith('note: ')]
  assert notes == ['note: every row runs with the num_iterations given, in '
                   'place of its own (initial: 0, semi: 72)'], notes
  assert '== semi (row 2/2) ->' in first.stdout, first.stdout
  # From the second row on, the time the sweep has left (none known before).
  heads = [l for l in first.stdout.splitlines() if l.startswith('== ')]
  assert 'left in the sweep' not in heads[0], heads
  assert re.search(r'; about \d+s left in the sweep$', heads[1]), heads
  assert table_labels(tmp_path / 'table.md') == [
      'yinyang:initial', 'yinyang:semi']
  # The overrides every row shares, once below the table (num_seeds is the
  # seeds column; --quiet is no config field).
  table = (tmp_path / 'table.md').read_text().splitlines()
  assert table[-2:] == ['', 'Every row with initial_epochs=5, '
                        'mc_passes_gt=10, num_iterations=2.'], table
  assert table[-1] in first.stdout.splitlines()
  summaries = json.loads((tmp_path / 'summaries.json').read_text())
  assert [s['num_seeds'] for s in summaries] == [2, 2]
  # The data's sizes a seed worked on (the sweep's ETA reads them).
  assert [(s['pool_size'], s['test_size'], s['num_classes'])
          for s in summaries] == [(1000, 1000, 2)] * 2
  for row in ('initial', 'semi'):
    rows = (tmp_path / row / 'metrics.jsonl').read_text().splitlines()
    # --config.num_iterations=2 overrides every row, 'initial' too.
    assert len(rows) == 2 * 3, (row, len(rows))

  metrics = (tmp_path / 'semi' / 'metrics.jsonl').read_bytes()
  again = _sweep(tmp_path, '--rows=semi,initial')
  assert again.returncode == 0, again.stderr[-2000:]
  assert again.stdout.count('already finished') == 2, again.stdout
  assert (tmp_path / 'semi' / 'metrics.jsonl').read_bytes() == metrics
  assert (tmp_path / 'table.md').read_text().splitlines() == table

  # A run's workdir is no sweep's: rows written into it hid from report.py.
  inside = _sweep(tmp_path / 'semi', '--rows=semi')
  assert inside.returncode == 2 and inside.stderr.splitlines() == [
      f'error: {tmp_path / "semi"} holds a run (its config.json), not a '
      'sweep; give the sweep a --workdir of its own'], inside.stderr
  assert (tmp_path / 'semi' / 'metrics.jsonl').read_bytes() == metrics

  bad = _sweep(tmp_path / 'bad', '--rows=semi,nope')
  assert bad.returncode == 2
  lines = bad.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: --rows: no row nope'), (
      bad.stderr)
  assert 'active_semi' in lines[0]  # It lists the sweep's rows.
  assert not (tmp_path / 'bad').exists()


def test_sweep_reads_config_as_absl_parsed_it_and_overwrites(tmp_path):
  # '--config <path>' (a space) and '-config.x v' (one dash) are absl's too;
  # the sweep once read sys.argv itself and silently ran Yin-Yang defaults.
  args = [a for a in TINY if not a.startswith(('--config=',
                                               '--config.num_seeds'))]
  run = _sweep_raw(tmp_path, '--config', str(REPO / 'configs' / 'yinyang.py'),
                   '-config.num_seeds', '1', *args, '--rows=initial')
  assert run.returncode == 0, run.stderr[-2000:]
  config = json.loads((tmp_path / 'initial' / 'config.json').read_text())
  assert config['num_seeds'] == 1 and config['num_iterations'] == 2

  # A changed override is refused in the row folder ...
  changed = _sweep_raw(tmp_path, *TINY, '--config.num_iterations=1',
                       '--rows=initial')
  assert changed.returncode == 2 and 'pass --overwrite' in changed.stderr
  # ... and --overwrite (a sweep flag too) runs the row afresh.
  again = _sweep_raw(tmp_path, *TINY, '--config.num_iterations=1',
                     '--rows=initial', '--overwrite')
  assert again.returncode == 0, again.stderr[-2000:]
  rows = (tmp_path / 'initial' / 'metrics.jsonl').read_text().splitlines()
  assert len(rows) == 2 * 2


def test_interrupted_overwrite_sweep_continues_without_overwrite(
    finished, tmp_path, python_sigint):
  assert finished[1].returncode == 0, finished[1].stderr[-2000:]
  shutil.copytree(finished[0], tmp_path, dirs_exist_ok=True)
  env = {k: v for k, v in os.environ.items() if k != 'BASS_DEBUG'}
  proc = subprocess.Popen(
      [sys.executable, SWEEP, f'--workdir={tmp_path}', *TINY,
       '--config.num_iterations=1', '--rows=initial,semi', '--overwrite'],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)
  try:
    # Ctrl-C once the second row has started: the first holds the new run.
    while (line := proc.stdout.readline()):
      if line.startswith('== semi (row 2/2)'):
        proc.send_signal(signal.SIGINT)
        break
    _, err = proc.communicate(timeout=300)
  finally:
    proc.kill()
  assert proc.returncode == 130, err[-2000:]
  hint = err.strip().splitlines()[-1]
  assert hint.startswith('interrupted; to continue, run: '
                         f'{launch_common.python_command()} '), err
  command = shlex.split(hint.split('run: ', 1)[1])
  assert '--overwrite' not in command
  # The printed command (no --overwrite) finishes the sweep: the earlier
  # run of 'semi' (another num_iterations) was deleted with the first's.
  again = subprocess.run([sys.executable] + command[1:], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-2000:]
  assert '== initial (row 1/2): already finished' in again.stdout
  for row in ('initial', 'semi'):
    config = json.loads((tmp_path / row / 'config.json').read_text())
    assert config['num_iterations'] == 1, row
    rows = (tmp_path / row / 'metrics.jsonl').read_text().splitlines()
    assert len(rows) == 2 * 2, (row, len(rows))


def test_rows_finished_under_other_software_are_noted(finished, tmp_path):
  """A row that ran under another jax (an earlier sweep, another venv) is
  kept, and the table says which rows ran under which."""
  assert finished[1].returncode == 0, finished[1].stderr[-2000:]
  shutil.copytree(finished[0], tmp_path, dirs_exist_ok=True)
  path = tmp_path / 'semi' / 'summary.json'
  summary = json.loads(path.read_text())
  env, = summary['environments']
  summary['environments'] = [dict(env, jax='9.9.9')]
  path.write_text(json.dumps(summary))
  again = _sweep(tmp_path, '--rows=semi,initial')
  assert again.returncode == 0, again.stderr[-2000:]
  assert again.stdout.count('already finished') == 2, again.stdout
  table = (tmp_path / 'table.md').read_text().splitlines()
  assert table[-1] == (
      f'Runs computed under different jax: {env["jax"]} for '
      'yinyang:initial; 9.9.9 for yinyang:semi.'), table


def test_overwrite_with_bad_values_or_a_busy_row_deletes_nothing(
    finished, tmp_path):
  """--overwrite checks every row against its data, and takes every row's
  lock, before deleting any."""
  assert finished[1].returncode == 0, finished[1].stderr[-2000:]
  shutil.copytree(finished[0], tmp_path, dirs_exist_ok=True)
  before = {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()}
  for bad_value in ('--config.initial_per_class=501',
                    f'--config.dataset={tmp_path / "nope.npz"}'):
    bad = _sweep(tmp_path, '--rows=initial,semi', '--overwrite', bad_value)
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert len(bad.stderr.splitlines()) == 1, bad.stderr
    assert bad.stderr.startswith('error: '), bad.stderr
    after = {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()}
    assert after == before, bad_value
  # Nor is a row deleted while another process runs it (holds its lock).
  with workdirs.workdir_lock(str(tmp_path / 'semi')):
    busy = _sweep(tmp_path, '--rows=initial,semi', '--overwrite')
  assert busy.returncode == 2, busy.stderr[-2000:]
  assert busy.stderr.splitlines() == [
      f'error: {tmp_path / "semi"} is in use by another run (its process '
      f'holds {tmp_path / "semi" / "run.lock"}); wait for it to end, or use '
      'another --workdir'], busy.stderr
  after = {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()}
  assert after == before


def test_empty_rows_and_a_config_without_sweep_are_errors(tmp_path):
  empty = _sweep(tmp_path / 'a', '--rows=')
  assert empty.returncode == 2
  assert empty.stderr.splitlines() == [
      'error: --rows is empty; name rows (initial, semi, active, '
      'active_semi, supervised_80, supervised_1000) or leave the flag out to '
      'run them all']
  plain = tmp_path / 'plain.py'
  plain.write_text('from configs import yinyang\n'
                   'get_config = yinyang.get_config\n')
  no_sweep = _sweep_raw(tmp_path / 'b', f'--config={plain}', *TINY[1:])
  assert no_sweep.returncode == 2
  assert no_sweep.stderr.splitlines() == [
      f'error: {plain} defines no sweep(add) listing its rows; run it with '
      'launch/train.py, or add one (see configs/yinyang.py)']
  assert not (tmp_path / 'a').exists() and not (tmp_path / 'b').exists()
  (tmp_path / 'file').write_text('x')
  a_file = _sweep(tmp_path / 'file', '--rows=initial')
  assert a_file.returncode == 2 and a_file.stderr.splitlines() == [
      f'error: workdir {tmp_path / "file"} exists and is not a folder; use '
      'another --workdir'], a_file.stderr


def test_sweep_refuses_a_variant_in_the_config_arg(tmp_path):
  # ':initial' would have replaced every row's own variant.
  bad = _sweep_raw(tmp_path, TINY[0] + ':initial', *TINY[1:], '--rows=semi')
  assert bad.returncode == 2
  assert bad.stderr.splitlines() == [
      "error: --config ':initial' names the variant 'initial'; a sweep runs "
      'each row with its own variant: choose rows with --rows=initial']
  assert not tmp_path.joinpath('semi').exists()


def _sweep_raw(workdir, *args):
  return _script(SWEEP, f'--workdir={workdir}', *args)


def test_vary_runs_each_value_in_a_row_folder_labelled_by_it(tmp_path):
  vary = ['--rows=initial', '--vary=dropout_rate=0.25,0.5',
          '--vary=gt_upsample=5']
  run = _sweep(tmp_path, *vary)
  assert run.returncode == 0, run.stderr[-2000:]
  names = ['initial-dropout_rate=0.25-gt_upsample=5',
           'initial-dropout_rate=0.5-gt_upsample=5']
  for k, name in enumerate(names):
    assert f'== {name} (row {k + 1}/2) ->' in run.stdout, run.stdout
    config = json.loads((tmp_path / name / 'config.json').read_text())
    assert (config['dropout_rate'], config['gt_upsample']) == (
        [0.25, 0.5][k], 5)
    assert config['num_iterations'] == 2  # --config.<field> still applies.
  # gt_upsample takes one value: only dropout_rate tells the rows apart,
  # in the sweep's table as in the report's.
  labels = ['yinyang:initial (dropout_rate=0.25)',
            'yinyang:initial (dropout_rate=0.5)']
  assert table_labels(tmp_path / 'table.md') == labels
  out = tmp_path / 'report'
  report = _script(str(REPO / 'launch' / 'report.py'),
                   f'--workdir={tmp_path}', f'--out={out}', '--decision=false')
  assert report.returncode == 0, report.stderr[-2000:]
  assert table_labels(out / 'table.md') == labels
  # The same values written otherwise name the same folders.
  again = _sweep(tmp_path, '--rows=initial', '--vary=dropout_rate=.250,0.50',
                 vary[2])
  assert again.returncode == 0, again.stderr[-2000:]
  assert again.stdout.count('already finished') == 2, again.stdout
  # Rows finished before the sweep began are not in its ETA: at the second
  # of 0.1, 0.2 (to run) and 0.25 (done), one row's time is left, not two.
  more = _sweep(tmp_path, '--rows=initial', '--vary=dropout_rate=0.1,0.2,0.25',
                vary[2])
  assert more.returncode == 0, more.stderr[-2000:]
  first_wall = float(next(
      l for l in more.stdout.splitlines()
      if l.startswith('| yinyang:initial (dropout_rate=0.1)')).split('|')[-2])
  eta = re.search(r'row 2/3\) -> .*; about (\d+)s left', more.stdout)
  assert eta and int(eta.group(1)) <= 1.5 * first_wall + 1, more.stdout
  # The row of 0.5, run by an earlier sweep only, stays in the folder's
  # record, and the rows of both sweeps read in order of value.
  values = ['0.1', '0.2', '0.25', '0.5']
  folders = [f'initial-dropout_rate={v}-gt_upsample=5' for v in values]
  summaries = json.loads((tmp_path / 'summaries.json').read_text())
  assert [s['row'] for s in summaries] == folders
  assert reporting.sweep_order(
      str(tmp_path), reporting.run_folders(str(tmp_path))) == [
          str(tmp_path / f) for f in folders]
  assert table_labels(tmp_path / 'table.md') == [
      f'yinyang:initial (dropout_rate={v})' for v in values[:3]]
  assert (tmp_path / 'table.md').read_text().splitlines()[-1] == (
      f'Also in {tmp_path}, from an earlier sweep: {folders[3]} '
      f'(launch/report.py --workdir={tmp_path} tabulates every row).')


def test_vary_over_model_files_names_folders_without_separators(tmp_path):
  # Two networks of one's own compared in one sweep: the label keeps the
  # path, the row folder replaces its separator (no nested folders).
  nets = os.path.join('tests', 'user_nets.py')
  run = _sweep(tmp_path, '--rows=initial',
               f'--vary=model={nets}:TinyNet,{nets}:tiny_net')
  assert run.returncode == 0, run.stderr[-2000:]
  assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
      'initial-model=tests_user_nets.py:TinyNet',
      'initial-model=tests_user_nets.py:tiny_net']
  assert table_labels(tmp_path / 'table.md') == [
      f'yinyang:initial (model={nets}:TinyNet)',
      f'yinyang:initial (model={nets}:tiny_net)']


def test_a_broken_model_in_a_later_row_stops_the_sweep_before_the_first(
    tmp_path):
  nets = os.path.join('tests', 'user_nets.py')
  run = _sweep(tmp_path, '--rows=initial',
               f'--vary=model={nets}:TinyNet,{nets}:ThreeLogits')
  assert run.returncode == 2
  lines = run.stderr.splitlines()
  assert len(lines) == 1 and 'ThreeLogits' in lines[0], run.stderr
  assert '== ' not in run.stdout  # No row started.
  assert not any(p.is_dir() for p in tmp_path.iterdir())


def test_rows_that_cannot_run_on_their_data_stop_the_sweep_up_front(
    tmp_path):
  # A query larger than the pool (1,000) fails its row's data checks: the
  # sweep names it and the --rows that would run the others before any row
  # starts, not after the rows before it ran.
  bad = _sweep(tmp_path, '--rows=semi,active', '--vary=query_size=2,5000')
  assert bad.returncode == 2, bad.stdout[-2000:]
  lines = bad.stderr.splitlines()
  assert lines == [
      'error: 1 of the 4 rows cannot run: row active-query_size=5000: '
      'config.query_size=5000 exceeds the pool size 1000; run the others '
      'with --rows=semi'], lines
  assert '== ' not in bad.stdout
  assert not tmp_path.exists() or not any(tmp_path.iterdir())


# launch/sweep.py after a patch: SIGTERM to itself in the first row's last
# iteration (2), once, as a preempted machine sends it.
SIGTERM_IN_LAST_ITERATION = '''
import os, runpy, signal, sys
from bass_jax import experiment
_rows = experiment.metrics_rows
def metrics_rows(metrics, seeds):
  rows = _rows(metrics, seeds)
  if rows[0]['iteration'] == 2 and not getattr(metrics_rows, 'sent', False):
    metrics_rows.sent = True
    os.kill(os.getpid(), signal.SIGTERM)
  return rows
experiment.metrics_rows = metrics_rows
sys.argv = ['launch/sweep.py'] + sys.argv[1:]
runpy.run_path('launch/sweep.py', run_name='__main__')
'''


def test_a_stop_in_a_rows_last_iteration_stops_the_sweep_after_it(tmp_path):
  # The row has no iteration left to stop after, so it finishes; the sweep
  # then stops before the next row (it once ran it and exited 0).
  env = {k: v for k, v in os.environ.items() if k != 'BASS_DEBUG'}
  run = subprocess.run(
      [sys.executable, '-c', SIGTERM_IN_LAST_ITERATION,
       f'--workdir={tmp_path}', *[a for a in TINY if a != '--quiet'],
       '--rows=initial,semi'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert run.returncode == 143, run.stdout[-2000:] + run.stderr[-2000:]
  assert 'SIGTERM: stopping once this iteration is done' in run.stderr
  assert run.stderr.splitlines()[-1].startswith(
      'terminated (SIGTERM); to continue, run: '), run.stderr
  assert 'Traceback' not in run.stderr
  assert (tmp_path / 'initial' / 'summary.json').exists()
  assert '== semi' not in run.stdout and not (tmp_path / 'semi').exists()


@pytest.mark.parametrize('vary, message', [
    (['--vary=dropout'], '--vary=dropout: expected field=v1,v2,...'),
    (['--vary=no_such=1'], "--vary=no_such=1: the config has no field "
                           "'no_such'"),
    (['--vary=num_seeds=2'], '--vary=num_seeds=2: num_seeds is set twice'),
    (['--vary=mu=1', '--vary=mu=2'], '--vary=mu=2: mu is set twice'),
    (['--vary=gt_upsample=5,2.5'], "--vary=gt_upsample=5,2.5: "
                                   "gt_upsample='2.5': expected an int"),
    (['--vary=tensorboard=on'], "--vary=tensorboard=on: tensorboard='on': "
                                'expected true or false'),
    (['--vary=mu=1,1.0'], '--vary=mu=1,1.0: a value is given twice'),
    (['--vary=model=a/n.py:N,a_n.py:N'], "--vary=model=a/n.py:N,a_n.py:N: "
     "'a/n.py:N' and 'a_n.py:N' would share the row folder "
     '...-model=a_n.py:N'),
    # The last combination is checked before the first row runs.
    (['--vary=dropout_rate=0.5,1.5'], 'config.dropout_rate'),
])
def test_bad_vary_is_a_one_line_error_before_any_row(tmp_path, vary, message):
  bad = _sweep(tmp_path, '--rows=initial', *vary)
  assert bad.returncode == 2, bad.stdout[-2000:]
  lines = bad.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ' + message), lines
  assert not tmp_path.exists() or not any(tmp_path.iterdir())
