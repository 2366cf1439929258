"""The file oracle: pause, answer, resume; equal to the simulated oracle."""

import csv
import json
import os
import re
import shlex
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bass_jax import checkpoint
from bass_jax import data
from bass_jax import experiment
from bass_jax import export
from bass_jax import oracle
from bass_jax import reporting
from bass_jax import workdirs
from conftest import REPO
from configs import yinyang
from launch import common as launch_common


def toy_config(oracle_kind, retrain_every=0):
  config = yinyang.get_config('active_semi')
  config.retrain_every = retrain_every
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


class TruthfulStdin:
  """A terminal user who answers the prompt on the last of `lines` (the
  run's log) with the true label in `y`, `left` times, then ends input."""

  def __init__(self, lines, y, left):
    self.lines, self.y, self.left = lines, y, left

  def readline(self):
    if not self.left:
      return ''
    self.left -= 1
    asked = re.search(r'label of id (\d+)', self.lines[-1])
    return f'{self.y[int(asked[1])]}\n'


# retrain_every=2: the fresh networks after the queries of 0 and 2 come
# from the host oracle's program (`em_step`) as from the simulated one's.
@pytest.mark.parametrize('retrain_every', [0, 2])
def test_file_oracle_equals_simulated(tmp_path, retrain_every):
  ds = data.load_yinyang(num_per_class=60, seed=0)
  sim, human = str(tmp_path / 'sim'), str(tmp_path / 'human')
  experiment.run(toy_config('simulated', retrain_every), sim, dataset=ds)
  rounds = []
  while True:
    try:
      experiment.run(toy_config('files', retrain_every), human, dataset=ds)
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
  template = experiment.build(toy_config('simulated', retrain_every),
                              ds).state
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

  stdin = TruthfulStdin(lines, ds.y_train, 1)
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

  monkeypatch.setattr(sys, 'stdin', TruthfulStdin(lines, ds.y_train,
                                                  len(ids) - 1))
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


def first_query_answered(workdir, ds, first):
  """Runs the files-oracle toy to its first query and answers it: the first
  id with `first(id)`, the rest truthfully; returns the queried ids."""
  with pytest.raises(oracle.WaitingForLabels) as e:
    experiment.run(toy_config('files'), workdir, dataset=ds)
  ids = answer_from_truth(e.value.manifest, ds.y_train)
  with open(e.value.manifest, 'w', newline='') as f:
    csv.writer(f).writerows([['id', 'label'], [ids[0], first(ids[0])]] +
                            [[i, ds.y_train[i]] for i in ids[1:]])
  return ids


def test_a_skipped_sample_stays_unlabelled_and_is_never_asked_again(
    tmp_path):
  ds = data.load_yinyang(num_per_class=60, seed=0)
  workdir = str(tmp_path / 'run')
  ids = first_query_answered(workdir, ds, lambda i: 'skip')
  hard = ids[0]
  asked = [hard in q for q in pending_queries(workdir)]  # By which seeds.
  lines = []
  with pytest.raises(oracle.WaitingForLabels) as e:
    experiment.run(toy_config('files'), workdir, dataset=ds,
                   log=lines.append)
  assert (f'iteration 0: {len(ids) - 1} labels from the oracle (1 skipped: '
          'never asked again)') in lines, lines
  later = answer_from_truth(e.value.manifest, ds.y_train)
  assert hard not in later  # Still the most uncertain, perhaps: not asked.
  experiment.run(toy_config('files'), workdir, dataset=ds)
  template = experiment.build(toy_config('files'), ds).state
  state = checkpoint.restore(checkpoint.step_path(workdir, 5), template).state
  assert not np.asarray(state.labelled)[:, hard].any()
  np.testing.assert_array_equal(np.asarray(state.skipped)[:, hard], asked)
  assert np.asarray(state.skipped).sum() == sum(asked)
  table, _ = export.export_labels(workdir, str(tmp_path / 'labels.csv'),
                                  dataset=ds, num_passes=2,
                                  seed_index=asked.index(True))
  assert table['source'][hard] == 'skipped'
  assert list(table['source']).count('skipped') == 1


def test_a_query_never_picks_a_skipped_sample():
  """The same iteration from the same state, with its picks marked skipped,
  picks others: the acquisition's candidates leave skipped samples out."""
  ds = data.load_yinyang(num_per_class=30, seed=0)
  r = experiment.build(toy_config('files'), ds)
  fresh = lambda: jax.tree_util.tree_map(jnp.copy, r.state)
  _, query, valid, _ = r.em_step(fresh(), r.pool)
  query, valid = np.asarray(query), np.asarray(valid)
  assert valid.all()
  skipped = np.zeros(r.state.skipped.shape, bool)
  for s, q in enumerate(query):
    skipped[s, q] = True
  _, again, valid_again, _ = r.em_step(
      fresh().replace(skipped=jnp.asarray(skipped)), r.pool)
  assert np.asarray(valid_again).all()
  for s, q in enumerate(np.asarray(again)):
    assert not set(q.tolist()) & set(query[s].tolist()), (q, query[s])


def test_corrections_change_labels_the_run_has_from_the_next_iteration(
    tmp_path):
  ds = data.load_yinyang(num_per_class=60, seed=0)
  workdir = str(tmp_path / 'run')
  wrong = first_query_answered(workdir, ds, lambda i: 1 - ds.y_train[i])[0]
  with pytest.raises(oracle.WaitingForLabels) as e:
    experiment.run(toy_config('files'), workdir, dataset=ds)
  # report.py says a paused run waits, as export.py does.
  assert reporting.unfinished_text(reporting.read_workdir(workdir)).endswith(
      ', waiting for labels')
  answer_from_truth(e.value.manifest, ds.y_train)
  fix = os.path.join(workdir, 'corrections.csv')
  # A file without its header is refused before the query's answers are
  # taken (they once were, and looked saved).
  with open(fix, 'w') as f:
    f.write(f'{wrong},{ds.y_train[wrong]}\n')
  lines = []
  with pytest.raises(oracle.OracleError, match='header id,label'):
    experiment.run(toy_config('files'), workdir, dataset=ds,
                   log=lines.append)
  assert not any('labels from the oracle' in l for l in lines), lines
  unlabelled = int(np.flatnonzero(ds.y_train >= 0)[-1])  # Never asked.
  with open(fix, 'w') as f:
    f.write(f'id,label\n{unlabelled},0\n')
  with pytest.raises(oracle.OracleError,
                     match=rf'id\(s\) \[{unlabelled}\] have no label in the'):
    experiment.run(toy_config('files'), workdir, dataset=ds)
  with open(fix, 'w') as f:
    f.write(f'id,label\n{wrong},{ds.y_train[wrong]}\n')
  lines = []
  experiment.run(toy_config('files'), workdir, dataset=ds, log=lines.append)
  assert (f'corrected 1 label(s) from {fix}: ids {wrong}') in lines, lines
  assert not os.path.exists(fix)  # Applied once, and kept as a record:
  assert os.listdir(os.path.join(workdir, 'corrections')) == [
      'at_iteration_3.csv']
  template = experiment.build(toy_config('files'), ds).state
  state = checkpoint.restore(checkpoint.step_path(workdir, 5), template).state
  held = np.asarray(state.labelled)[:, wrong]
  assert held.any()
  np.testing.assert_array_equal(np.asarray(state.labels)[held, wrong],
                                ds.y_train[wrong])
  # A correction after the run finished trains nothing, and says so; the
  # labels export.py writes take it.
  with open(fix, 'w') as f:
    f.write(f'id,label\n{wrong},{1 - ds.y_train[wrong]}\n')
  lines = []
  experiment.run(toy_config('files'), workdir, dataset=ds, log=lines.append)
  assert (f'note: {fix} is not trained on: the run has finished; '
          'launch/export.py applies it to the labels it writes') in lines
  seed = int(np.flatnonzero(held)[0])
  exported = []
  table, _ = export.export_labels(workdir, str(tmp_path / 'labels.csv'),
                                  dataset=ds, num_passes=2, seed_index=seed,
                                  log=exported.append)
  assert table['label'][wrong] == 1 - ds.y_train[wrong]
  assert table['source'][wrong] == 'human'
  assert (f'applied 1 label correction(s) from {fix} (not trained on yet)'
          in exported), exported
  os.remove(fix)
  # A simulated oracle's labels are no person's to correct.
  sim = str(tmp_path / 'sim')
  experiment.run(toy_config('simulated'), sim, dataset=ds)
  shutil.copy(os.path.join(workdir, 'corrections', 'at_iteration_3.csv'),
              os.path.join(sim, 'corrections.csv'))
  shutil.rmtree(checkpoint.step_path(sim, 5))  # Killed before the end.
  with pytest.raises(experiment.ConfigError, match='corrections are of '
                     'labels a person gave'):
    experiment.run(toy_config('simulated'), sim, dataset=ds)


def pending_queries(workdir):
  """The pool indices each seed asked at iteration 0 (from checkpoint 1's
  pending query)."""
  with open(os.path.join(checkpoint.step_path(workdir, 1), 'meta.json')) as f:
    pending = json.load(f)['extra']['pending']
  return [set(np.asarray(q)[np.asarray(v)].tolist())
          for q, v in zip(pending['query'], pending['valid'])]


def test_a_checkpoint_made_before_skipping_existed_resumes(tmp_path):
  """The state's last field, `skipped`, is new: a checkpoint without it is
  read as one in which nothing was skipped."""
  ds = data.load_yinyang(num_per_class=30, seed=0)
  template = experiment.build(toy_config('simulated'), ds).state
  older = template.replace(skipped=None)
  checkpoint.save(str(tmp_path), 3, jax.device_get(older), {'at': 3})
  found = workdirs.latest_checkpoint(str(tmp_path), template, print)
  assert found.step == 3 and found.extra == {'at': 3}
  np.testing.assert_array_equal(found.state.skipped,
                                np.zeros_like(template.labelled))
  for a, b in zip(jax.tree_util.tree_leaves(found.state),
                  jax.tree_util.tree_leaves(template)):
    np.testing.assert_array_equal(a, b)
  # Another model's checkpoint fits neither state: refused as before.
  with pytest.raises(checkpoint.CheckpointMismatchError):
    workdirs.latest_checkpoint(
        str(tmp_path), template.replace(labels=template.labels[:, :5]), print)


def export_note(workdir, ds, tmp_path):
  """export_labels' note on which iteration of the run it exported."""
  out = str(tmp_path / 'labels.csv')
  table, note = export.export_labels(workdir, out, dataset=ds, num_passes=2)
  assert len(table['id']) == len(ds.y_train) and os.path.isfile(out)
  return note


def test_cli_exit_status_and_bad_answers(tmp_path, forkserver):
  workdir = tmp_path / 'w'

  def run(argv):  # `python <argv...>`, as a fork of a process with JAX.
    return forkserver(argv[1:], dict(os.environ))

  cmd = [sys.executable, str(REPO / 'launch' / 'train.py'),
         f'--workdir={workdir}', '--config.num_iterations=2',
         '--config.num_seeds=1', '--config.initial_epochs=5',
         '--config.mc_passes_gt=5', '--config.oracle=files']
  res = run(cmd + ['--overwrite'])
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
  res = run(cmd)
  assert res.returncode == 2
  lines = res.stderr.strip().splitlines()
  assert len(lines) == 1 and 'outside 0..1' in lines[0], res.stderr
  assert 'Traceback' not in res.stderr
  assert snapshot(workdir) == before
  # Exporting the paused run says it is paused (its labels are usable).
  out = tmp_path / 'labels.csv'
  res = run([sys.executable, str(REPO / 'launch' / 'export.py'),
             f'--workdir={workdir}', f'--out={out}'])
  assert res.returncode == 0, res.stderr[-1500:]
  assert res.stdout.rstrip().endswith(
      'after iteration 0 of 2 (paused, waiting for labels)'), res.stdout
  assert res.stdout.startswith('sweeping the pool: '), res.stdout
  assert snapshot(workdir) == before
  # Relaunched with the manifest filled part-way: still waiting (status 3),
  # saying how many are left, not an error (status 2).
  manifest.write_text('id,label\n' + ''.join(
      f'{i},{1 if k == 0 else ""}\n' for k, i in enumerate(ids)))
  res = run(cmd)
  assert res.returncode == oracle.WAITING_FOR_LABELS, res.stderr[-1500:]
  assert (f'({len(ids) - 1} of {len(ids)} samples still without a label'
          in res.stdout), res.stdout
  # A deleted manifest is written again, the query asked again.
  manifest.unlink()
  res = run(cmd)
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
