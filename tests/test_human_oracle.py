"""The file oracle: pause, answer, resume; equal to the simulated oracle."""

import csv
import os
import re
import shlex
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from bass_jax import checkpoint
from bass_jax import data
from bass_jax import experiment
from bass_jax import export
from bass_jax import oracle
from conftest import REPO
from configs import yinyang
from launch import common as launch_common


def toy_config(oracle_kind):
  config = yinyang.get_config('active_semi')
  # Queries at iterations 0 and 2; the last, 4, asks none (nothing would
  # train on its answers).
  config.num_iterations = 4
  config.num_seeds = 2
  config.initial_epochs = 10
  config.mc_passes_gt = 10
  config.checkpoint_every = 2
  config.oracle = oracle_kind
  return config


def answer_from_truth(manifest, y):
  with open(manifest) as f:
    ids = [int(r['id']) for r in csv.DictReader(f)]
  with open(manifest, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['id', 'label'])
    w.writerows([[i, int(y[i])] for i in ids])
  return ids


def sorted_rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return sorted(f.read().splitlines())


def test_file_oracle_equals_simulated(tmp_path):
  ds = data.load_yinyang(num_per_class=60, seed=0)
  sim, human = str(tmp_path / 'sim'), str(tmp_path / 'human')
  experiment.run(toy_config('simulated'), sim, dataset=ds)
  rounds = []
  while True:
    try:
      experiment.run(toy_config('files'), human, dataset=ds)
      break
    except oracle.WaitingForLabels as e:
      if not rounds:  # Exporting a paused run says so.
        assert export_note(human, ds, tmp_path) == (
            'after iteration 0 of 4 (paused, waiting for labels)')
      rounds.append(answer_from_truth(e.manifest, ds.y_train))
  assert len(rounds) == 2 and all(2 <= len(r) <= 4 for r in rounds)
  assert export_note(human, ds, tmp_path) == ''  # Finished.
  # Killed before the last iteration: the newest checkpoint is after
  # iteration 3 of 0..4; exported, and said to be unfinished.
  killed = str(tmp_path / 'killed')
  shutil.copytree(sim, killed)
  shutil.rmtree(checkpoint.step_path(killed, 5))
  assert export_note(killed, ds, tmp_path) == (
      'after iteration 3 of 4 (unfinished run)')
  assert sorted(os.listdir(os.path.join(human, 'queries'))) == ['0', '2']
  assert sorted_rows(sim) == sorted_rows(human)
  template = experiment.build(toy_config('simulated'), ds).state
  a = checkpoint.restore(checkpoint.step_path(sim, 5), template).state
  b = checkpoint.restore(checkpoint.step_path(human, 5), template).state
  np.testing.assert_array_equal(a.labelled, b.labelled)
  np.testing.assert_array_equal(a.labels, b.labels)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_terminal_answers_survive_a_stop_part_way(tmp_path, monkeypatch):
  """Each answer typed is kept in the query's manifest, and the query is
  checkpointed before it is asked: input that ends (or a Ctrl-C) after one
  answer loses nothing, and the relaunch asks for the rest only."""
  ds = data.load_yinyang(num_per_class=60, seed=0)
  sim, term = str(tmp_path / 'sim'), str(tmp_path / 'term')
  experiment.run(toy_config('simulated'), sim, dataset=ds)
  lines = []

  class Truth:
    """Answers the prompt on the last log line truthfully, `left` times."""
    left = 1

    def readline(self):
      if not self.left:
        return ''
      self.left -= 1
      asked = re.search(r'label of id (\d+)', lines[-1])
      return f'{ds.y_train[int(asked[1])]}\n'

  stdin = Truth()
  monkeypatch.setattr(sys, 'stdin', stdin)
  with pytest.raises(oracle.OracleError, match='input ended'):
    experiment.run(toy_config('terminal'), term, dataset=ds, log=lines.append)
  manifest = oracle.manifest_path(term, 0)
  with open(manifest) as f:
    rows = list(csv.DictReader(f))
  assert sum(bool(r['label']) for r in rows) == 1 and len(rows) >= 2
  stdin.left = 100
  experiment.run(toy_config('terminal'), term, dataset=ds, log=lines.append)
  assert f'1 of {len(rows)} labels were given before; asking for the rest' in (
      lines)
  assert sorted_rows(sim) == sorted_rows(term)


def test_a_run_may_switch_between_files_and_terminal(tmp_path, monkeypatch):
  """The files and terminal oracles are two ways to give the same answers:
  a run paused for a file may go on at the terminal (asking only what the
  file lacks) and back; simulated answers are another run."""
  ds = data.load_yinyang(num_per_class=60, seed=0)
  sim, mixed = str(tmp_path / 'sim'), str(tmp_path / 'mixed')
  experiment.run(toy_config('simulated'), sim, dataset=ds)
  with pytest.raises(oracle.WaitingForLabels) as e:
    experiment.run(toy_config('files'), mixed, dataset=ds)
  ids = answer_from_truth(e.value.manifest, ds.y_train)
  with open(e.value.manifest, 'w', newline='') as f:  # The first one only.
    csv.writer(f).writerows([['id', 'label'], [ids[0], ds.y_train[ids[0]]]] +
                            [[i, ''] for i in ids[1:]])
  lines = []

  class Truth:
    """Answers the prompt on the last log line truthfully, `left` times."""
    left = len(ids) - 1

    def readline(self):
      if not self.left:
        return ''
      self.left -= 1
      asked = re.search(r'label of id (\d+)', lines[-1])
      return f'{ds.y_train[int(asked[1])]}\n'

  monkeypatch.setattr(sys, 'stdin', Truth())
  # Query 0's rest at the terminal; its input ends at query 2.
  with pytest.raises(oracle.OracleError, match='input ended'):
    experiment.run(toy_config('terminal'), mixed, dataset=ds,
                   log=lines.append)
  assert f'1 of {len(ids)} labels were given before; asking for the rest' in (
      lines)
  with pytest.raises(oracle.WaitingForLabels) as e:
    experiment.run(toy_config('files'), mixed, dataset=ds)
  answer_from_truth(e.value.manifest, ds.y_train)
  experiment.run(toy_config('files'), mixed, dataset=ds)
  assert sorted_rows(sim) == sorted_rows(mixed)
  with pytest.raises(experiment.ConfigError,
                     match=r"\(oracle: 'files' there, 'simulated' now\)"):
    experiment.run(toy_config('simulated'), mixed, dataset=ds)


def export_note(workdir, ds, tmp_path):
  """export_labels' note on which iteration of the run it exported."""
  out = str(tmp_path / 'labels.csv')
  table, note = export.export_labels(workdir, out, dataset=ds, num_passes=2)
  assert len(table['id']) == len(ds.y_train) and os.path.isfile(out)
  return note


def test_cli_exit_status_and_bad_answers(tmp_path):
  workdir = tmp_path / 'w'
  cmd = [sys.executable, str(REPO / 'launch' / 'train.py'),
         f'--workdir={workdir}', '--config.num_iterations=2',
         '--config.num_seeds=1', '--config.initial_epochs=5',
         '--config.mc_passes_gt=5', '--config.oracle=files']
  res = subprocess.run(cmd + ['--overwrite'], capture_output=True, text=True,
                       timeout=300)
  assert res.returncode == oracle.WAITING_FOR_LABELS, res.stderr[-1500:]
  manifest = workdir / 'queries' / '0' / 'manifest.csv'
  assert 'waiting for labels' in res.stdout and str(manifest) in res.stdout
  # The iteration that pauses shows its progress line first.
  assert '\niter 0/2 val_acc ' in res.stdout, res.stdout
  # The command to continue with drops --overwrite, which would start over
  # and throw the typed labels away.
  # Its python is the one that ran (by path unless 'python' runs it).
  python = launch_common.python_command()
  assert python in ('python', sys.executable)
  assert res.stdout.rstrip().endswith(
      'then relaunch without --overwrite to continue:\n  ' +
      shlex.join([python, *cmd[1:]])), res.stdout
  assert manifest.read_text().splitlines()[0] == 'id,label'
  assert (workdir / 'queries' / '0' / 'contact_sheet.png').exists() is False
  ids = [int(l.split(',')[0]) for l in manifest.read_text().splitlines()[1:]]
  # An out-of-range label: one-line error, nothing in the workdir changes.
  manifest.write_text('id,label\n' + ''.join(f'{i},7\n' for i in ids))
  before = snapshot(workdir)
  res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert res.returncode == 2
  lines = res.stderr.strip().splitlines()
  assert len(lines) == 1 and 'outside 0..1' in lines[0], res.stderr
  assert 'Traceback' not in res.stderr
  assert snapshot(workdir) == before
  # Exporting the paused run says it is paused (its labels are usable).
  out = tmp_path / 'labels.csv'
  res = subprocess.run([sys.executable, str(REPO / 'launch' / 'export.py'),
                        f'--workdir={workdir}', f'--out={out}'],
                       capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stderr[-1500:]
  assert res.stdout.rstrip().endswith(
      'after iteration 0 of 2 (paused, waiting for labels)'), res.stdout
  assert res.stdout.startswith('sweeping the pool: '), res.stdout
  assert snapshot(workdir) == before
  # Relaunched with the manifest filled part-way: still waiting (status 3),
  # saying how many are left, not an error (status 2).
  manifest.write_text('id,label\n' + ''.join(
      f'{i},{1 if k == 0 else ""}\n' for k, i in enumerate(ids)))
  res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert res.returncode == oracle.WAITING_FOR_LABELS, res.stderr[-1500:]
  assert (f'({len(ids) - 1} of {len(ids)} samples still without a label'
          in res.stdout), res.stdout
  # A deleted manifest is written again, the query asked again.
  manifest.unlink()
  res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert res.returncode == oracle.WAITING_FOR_LABELS, res.stderr[-1500:]
  assert [int(l.split(',')[0]) for l in
          manifest.read_text().splitlines()[1:]] == ids


def snapshot(root):
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      path = os.path.join(dirpath, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, root)] = f.read()
  return out
