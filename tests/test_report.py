"""launch/report.py: tables and non-trivial plots from real (tiny) workdirs."""

import csv
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from bass_jax import data
from bass_jax import experiment
from conftest import REPO
from configs import yinyang


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
  cmd = [sys.executable, str(REPO / 'launch' / 'report.py'),
         f'--out={tmp_path}', '--decision=false'] + [
             f'--workdir={w}' for w in workdirs[0]]
  res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stderr[-2000:]
  table = (tmp_path / 'table.md').read_text()
  assert 'yinyang:active_semi' in table and '90.33' in table
  with open(tmp_path / 'table.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['experiment'] for r in rows] == ['yinyang:active_semi',
                                             'yinyang:supervised_80']
  assert rows[0]['seeds'] == '2' and rows[0]['iterations'] == '4'
  for name in ('learning_curves.png', 'labels.png'):
    assert_nontrivial_png(tmp_path / name)


def test_decision_panel_from_checkpoint(workdirs, tmp_path):
  from bass_jax import analysis
  from bass_jax import reporting
  dirs, ds = workdirs
  run, state, step = analysis.restored_run(str(dirs[0]), ds)
  assert step == 5
  s = analysis.decision_surface(run, state, grid_size=40)
  assert s['pred'].shape == (40, 40) and 0 < s['pred'].mean() < 1
  # Queries of 2 at iterations 0 and 2; the last, 4, asks none.
  assert s['labelled'].sum() == 8 + 2 * 2
  path = reporting.plot_decision_panel(
      s['grid_x'], s['grid_y'], s['pred'], s['entropy'], s['points'],
      s['labels'], s['labelled'], 'test', str(tmp_path / 'd.png'))
  assert_nontrivial_png(path)


def assert_nontrivial_png(path):
  img = matplotlib.image.imread(str(path))
  assert img.shape[0] > 200 and img.shape[1] > 300
  # Not blank: many distinct colours and real variation.
  flat = img[..., :3].reshape(-1, 3)
  assert len(np.unique(np.round(flat, 2), axis=0)) > 20
  assert flat.std() > 0.05
