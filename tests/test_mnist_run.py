"""A tiny real-MNIST DeepBASS run end to end through the launch script."""

import json
import os
import subprocess
import sys

import pytest

from conftest import OPTIMIZED, REPO, SHARED_DATA

pytestmark = pytest.mark.skipif(
    not (SHARED_DATA / 'mnist').is_dir(),
    reason=f'MNIST idx files not found in {SHARED_DATA}/mnist')


def tiny_run(workdir, *flags):
  cmd = [sys.executable, str(REPO / 'launch' / 'train.py'),
         '--config=' + str(REPO / 'configs' / 'mnist.py') +
         ':alldata_maxent,small,query_every=2',
         f'--workdir={workdir}', f'--config.data_dir={SHARED_DATA}',
         '--config.pool_size=400', '--config.test_size=500',
         '--config.num_seeds=1', '--config.initial_epochs=10',
         '--config.num_iterations=3',
         '--config.mc_passes_gt=10', '--config.chunk_size=200', *flags]
  # Optimized: the CNN's convolutions run longer than they compile.
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, **OPTIMIZED))
  assert out.returncode == 0, out.stderr[-2000:]
  return out


def test_tiny_mnist_run_learns(tmp_path):
  workdir = tmp_path / 'run'
  out = tiny_run(workdir)
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['num_params'] == 14970
  rows = [json.loads(l) for l in
          (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert len(rows) == 4
  assert rows[-1]['num_labels'] == 120  # 100 + queries at iterations 0, 2.
  assert rows[-1]['num_train'] == 400   # All data: the whole pool is in D.
  # Learns: far above chance (10 %) and better than its initial model.
  first = rows[0]['val_acc']
  assert summary['val_acc']['mean'] > 0.5
  assert summary['val_acc']['mean'] >= first
  assert 'yinyang' not in out.stdout
  # The row names the overrides that change what ran, of the config
  # argument (query_every) as of flags (not where or how fast: data_dir,
  # chunk_size; nor num_seeds, the seeds column).
  assert ('| mnist:alldata_maxent,small (initial_epochs=10, mc_passes_gt=10,'
          ' num_iterations=3, pool_size=400, query_every=2, test_size=500) |'
          in out.stdout), out.stdout
  # The initial phase in blocks = in one call, mapped seeds included, is
  # the toy's to show (tests/test_initial_blocks.py, 'seed:4/map%blocks'
  # in tests/test_sharding.py): the same code, at a fraction of the CNN's
  # compilation.
