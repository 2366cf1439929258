"""Two processes (a 2-host cluster on one machine) = one process, one writer.

Each process is a `launch/train.py` with one CPU device, joined by
`config.distributed` through JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
JAX_PROCESS_ID and gloo collectives; the pool is split over the two
processes ('data:2'), or the two seeds are, one per process ('auto', which
gives 2 seeds on 2 devices the mesh seed:2). The reference is one process
with two devices on the same mesh. Only process 0 may write the shared
workdir.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest


REPO = pathlib.Path(__file__).resolve().parents[1]
FLAGS = ['--config=' + str(REPO / 'configs' / 'yinyang.py') + ':active_semi',
         '--config.num_seeds=2', '--config.num_iterations=4',
         '--config.initial_epochs=5', '--config.mc_passes_gt=10',
         '--config.checkpoint_every=2']


def _env(**extra):
  env = dict(os.environ)
  env.pop('XLA_FLAGS', None)
  env.update(JAX_PLATFORMS='cpu', **extra)
  return env


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _rows(workdir: pathlib.Path) -> list[dict]:
  lines = (workdir / 'metrics.jsonl').read_text().splitlines()
  return [json.loads(l) for l in lines]


@pytest.mark.parametrize('mesh_shape', ['data:2', 'auto'])
def test_two_processes_equal_one_and_only_process_0_writes(tmp_path,
                                                           mesh_shape):
  flags = FLAGS + [f'--config.mesh_shape={mesh_shape}']
  single = tmp_path / 'single'
  ref = subprocess.run(
      [sys.executable, str(REPO / 'launch' / 'train.py'), *flags,
       f'--workdir={single}'],
      env=_env(XLA_FLAGS='--xla_force_host_platform_device_count=2'),
      capture_output=True, text=True, timeout=300, check=False)
  assert ref.returncode == 0, ref.stderr[-2000:]

  shared = tmp_path / 'cluster'
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, str(REPO / 'launch' / 'train.py'), *flags,
       '--config.distributed=True', f'--workdir={shared}'],
      env=_env(JAX_COORDINATOR_ADDRESS=f'localhost:{port}',
               JAX_NUM_PROCESSES='2', JAX_PROCESS_ID=str(i),
               JAX_CPU_COLLECTIVES_IMPLEMENTATION='gloo'),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = []
  for p in procs:
    try:
      outs.append(p.communicate(timeout=300))
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]

  # Every (iteration, seed) row exactly once: one writer.
  rows = _rows(shared)
  keys = [(r['iteration'], r['seed']) for r in rows]
  assert sorted(keys) == sorted({(i, s) for i in range(5) for s in (0, 1)})
  # Process 1 logs nothing (progress lines come from process 0 only).
  assert 'iter ' in outs[0][0] + outs[0][1]
  assert 'iter ' not in outs[1][0] + outs[1][1]
  want_mesh = {'data:2': 'seed:1,data:2', 'auto': 'seed:2,data:1'}[mesh_shape]
  assert f'on 2 devices, mesh {want_mesh}' in outs[0][0] + outs[0][1]
  # Same metrics as one process on the same 2-device mesh.
  by_key = {(r['iteration'], r['seed']): r for r in _rows(single)}
  for r in rows:
    want = by_key[(r['iteration'], r['seed'])]
    for name in ('num_labels', 'num_pseudo', 'num_queried'):
      assert r[name] == want[name], (name, r, want)
    for name in ('val_acc', 'theta', 'loss', 'pool_entropy'):
      assert abs(r[name] - want[name]) <= 1e-5, (name, r, want)
  summary = json.loads((shared / 'summary.json').read_text())
  assert summary['num_seeds'] == 2
  assert (shared / 'checkpoints').is_dir()


@pytest.mark.parametrize('other, message', [
    (['--config.learning_rate=0.01'],
     'process(es) [1] have another config than process 0'),
    (['--workdir={tmp}/elsewhere'], 'process(es) [1] have another view of '
     'the workdir'),
    # Once a reshape's traceback in the first collective.
    (['--config.cpu_devices=2'], 'the processes have different numbers of '
     'devices (process 0: 1, process 1: 2)'),
])
def test_processes_that_disagree_stop_with_one_line_each(tmp_path, other,
                                                         message):
  """Process 1 started with another config, or seeing another workdir: each
  process says so in one line (once a gloo abort, a 30 s traceback, or a
  whole run computed before a missing-file error)."""
  port = _free_port()
  common = FLAGS + ['--config.distributed=True',
                    f'--workdir={tmp_path / "cluster"}']
  procs = [subprocess.Popen(
      [sys.executable, str(REPO / 'launch' / 'train.py'), *common,
       *([a.replace('{tmp}', str(tmp_path)) for a in other] if i else [])],
      env=_env(JAX_COORDINATOR_ADDRESS=f'localhost:{port}',
               JAX_NUM_PROCESSES='2', JAX_PROCESS_ID=str(i),
               JAX_CPU_COLLECTIVES_IMPLEMENTATION='gloo'),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  try:
    outs = [p.communicate(timeout=120) for p in procs]
  finally:
    for p in procs:
      p.kill()
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err[-2000:]
  assert not (tmp_path / 'cluster' / 'metrics.jsonl').exists()
