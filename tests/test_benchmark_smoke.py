"""Smoke test of benchmarks/hot_path.py: --quick runs and prints JSON lines."""

import json
import os
import pathlib
import statistics
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _benchmark_rows(script: str, *args: str) -> list[dict]:
  """The JSON lines a benchmarks/ script prints (it must exit 0).

  A generous timeout: each run takes well under a minute on an idle 2-core
  CPU, but shared CI machines can be several times slower.
  """
  proc = subprocess.run(
      [sys.executable, str(REPO / 'benchmarks' / script), *args],
      capture_output=True, text=True, cwd=str(REPO), timeout=600,
      check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [l for l in proc.stdout.splitlines() if l.strip()]
  assert lines, proc.stderr[-3000:]
  rows = [json.loads(l) for l in lines]  # Every line one JSON object.
  for row in rows:  # Each says where it ran and which code gave it.
    for key in ('device', 'platform', 'jax_version', 'cpu_count'):
      assert key in row, (key, row)
    assert row['bass_jax'].startswith('0.1.0'), row
  return rows


def _import_benchmark(name: str):
  """A benchmarks/ script as a module."""
  sys.path.insert(0, str(REPO / 'benchmarks'))
  try:
    return __import__(name)
  finally:
    sys.path.remove(str(REPO / 'benchmarks'))

EXPECTED = ('mc_sweep', 'deterministic_forward', 'mc_to_deterministic_ratio',
            'train_step', 'iteration', 'seeds_vmap', 'torch_mc_sweep',
            'torch_train_step', 'mc_sweep_memory', 'train_step_dispatched',
            'mc_sweep_precision', 'mc_sweep_chunk',
            'mc_sweep_replicated_input', 'mask_cost_ratio',
            'train_epoch_augment')


def test_quick_run_prints_valid_json_lines(tmp_path):
  out = tmp_path / 'lines.jsonl'
  rows = _benchmark_rows('hot_path.py', '--quick', '--skip_torch',
                         '--seed_processes', f'--out={out}')
  for row in rows:
    assert isinstance(row, dict)
    for key in ('benchmark', 'value', 'unit', 'device', 'jax_version',
                'cpu_count', 'compile_s'):
      assert key in row, (key, row)

  # The lines say when XLA's optimizations were off (as in this suite).
  off = os.environ.get('JAX_DISABLE_MOST_OPTIMIZATIONS') == 'true'
  assert {r.get('jax_disable_most_optimizations', False) for r in rows} == {
      off}

  names = {r['benchmark'] for r in rows}
  missing = set(EXPECTED) - names
  assert not missing, f'missing benchmarks {missing}; got {sorted(names)}'

  # Every mask source and bit width, exactly one of them the default.
  sweeps = [r for r in rows if r['benchmark'] == 'mc_sweep']
  assert {(r['mask_impl'], r['prng_impl'], r['dropout_bits'])
          for r in sweeps} == {
              (m, i, b) for m, i in (('hash', 'threefry2x32'),
                                     ('prng', 'threefry2x32'), ('prng', 'rbg'))
              for b in (32, 16, 8)}
  assert [r['default'] for r in sweeps].count(True) == 1
  for r in sweeps:
    assert r['value'] > 0 and r['unit'] == 'forwards/s'
    assert r['compile_s'] > 0

  # Measured lines carry positive numbers; --skip_torch lines say skipped.
  for r in rows:
    if r['benchmark'].startswith('torch_'):
      assert r['value'] is None and r['skipped']
    elif not r.get('skipped'):
      assert isinstance(r['value'], (int, float)) and r['value'] > 0, r

  # With 2+ cores the toy's seeds also run one core each ('seed' axis over
  # CPU devices), next to the same program on one device.
  if (os.cpu_count() or 1) >= 2:
    toy = {r['benchmark']: r for r in rows if r.get('dataset') == 'yinyang'}
    assert toy['seeds_vmap']['mesh_shape'] == 'seed:2'
    assert toy['seeds_vmap']['devices'] == 2
    assert toy['seeds_vmap_one_device']['devices'] == 1
    # Each seed its own draw, as the Yin-Yang default.
    assert toy['seeds_vmap']['per_seed_data'] is True
    # The same seeds as 2 pinned processes of 1 seed each, timed together.
    procs = toy['seeds_processes']
    assert (procs['processes'], procs['seeds_per_process']) == (2, 1)
    assert len(set(procs['cores'])) == 2
    assert procs['wall_sequential_s'] == toy['seeds_vmap']['wall_sequential_s']
    # The same seeds on one pinned core: batched vs one after another, and
    # the single-seed runs there against those on every core.
    one = toy['seeds_one_core']
    assert one['num_seeds'] == 2 and len(one['ratio_per_round']) == 2
    assert one['wall_sequential_all_cores_s'] == procs['wall_sequential_s']
    assert one['one_seed_speedup'] == pytest.approx(
        one['wall_sequential_s'] / one['wall_sequential_all_cores_s'],
        rel=1e-2)
    # Interleaved rounds: one ratio per round, the value their median.
    for r in (toy['seeds_vmap'], toy['seeds_vmap_one_device']):
      ratios = r['ratio_per_round']
      assert len(ratios) == len(r['samples_sequential_s']) == 2
      assert r['value'] == pytest.approx(statistics.median(ratios), rel=1e-3)
      assert ratios[0] == pytest.approx(
          r['samples_sequential_s'][0] / r['samples_vmapped_s'][0], rel=1e-2)

  # --out appends exactly the printed lines.
  assert [json.loads(l) for l in out.read_text().splitlines()] == rows


def test_mc_precision_compares_paired_runs(tmp_path):
  """benchmarks/mc_precision.py on a tiny toy run: two precisions, paired."""
  tiny = ('--config.num_iterations=2 --config.initial_epochs=5 '
          '--config.mc_passes_gt=10')
  rows = _benchmark_rows('mc_precision.py', '--num_seeds=2',
                         f'--workdir={tmp_path}', f'--extra={tiny}')
  assert [(r['benchmark'], r['precision']) for r in rows] == [
      ('mc_precision_run', 'default'), ('mc_precision_run', 'bfloat16'),
      ('mc_precision_effect', 'bfloat16')]
  effect = rows[-1]
  assert set(effect['per_seed_diff']) == {'0', '1'}
  # The bf16 sweeps really ran: the E-step statistics moved.
  assert 0 < effect['theta_max_abs_diff'] < 0.5
  assert json.loads((tmp_path / 'bfloat16' / 'config.json').read_text())[
      'mc_precision'] == 'bfloat16'


def test_replicated_input_control_is_the_same_sweep():
  """The mask-cost control computes exactly what mc_sweep computes, with
  the first convolution run per pass instead of once per image."""
  hot_path = _import_benchmark('hot_path')
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from bass_jax import mc_dropout, models  # pylint: disable=g-import-not-at-top
  model = models.build_model('cnn', 10)
  x = hot_path.random_images(jax.random.key(0), 12)
  params = model.init(jax.random.key(1), x[:1])
  key = jax.random.key(2)
  ours = mc_dropout.mc_sweep(model.apply, params, x, key, 5, 4, ('bald',))
  control = hot_path.replicated_input_sweep(model.apply, params, x, key, 5,
                                            4, ('bald',))
  for name in ('mean_probs', 'entropy', 'bald'):
    np.testing.assert_allclose(control[name], ours[name], atol=1e-5)
  conv1 = 2 * 28 * 28 * 16 * 9
  assert hot_path.mc_flop_per_forward(1) == hot_path.FLOP_PER_FORWARD
  assert hot_path.mc_flop_per_forward(10) == (
      hot_path.FLOP_PER_FORWARD - 0.9 * conv1)


def test_roofline_peaks_follow_the_device():
  """The GPU a session gets (an H100 PCIe has 3/4 of an H200's peaks)
  sets the roofline's denominators; a flag wins; an unknown device gets
  no fraction rather than another device's."""
  hot_path = _import_benchmark('hot_path')
  assert hot_path.device_peaks('NVIDIA H200') == (67.0, 495.0, 989.0)
  assert hot_path.device_peaks('NVIDIA H100 80GB HBM3') == (67.0, 495.0,
                                                            989.0)
  assert hot_path.device_peaks('NVIDIA H100 PCIe') == (51.0, 378.0, 756.0)
  assert hot_path.device_peaks('NVIDIA A100-SXM4-80GB')[1] == 156.0
  assert hot_path.device_peaks('cpu') is None
  args = hot_path.parse_args(['--peak_tf32_tflops=400'])
  hot_path.fill_peaks(args, 'NVIDIA H100 PCIe')
  assert (args.peak_fp32_tflops, args.peak_tf32_tflops,
          args.peak_bf16_tflops) == (51.0, 400.0, 756.0)
  lines = []
  emitter = hot_path.Emitter({}, None)
  emitter.emit = lambda name, value, unit, **kw: lines.append(
      (name, value, kw.get('peak_tflops'), 'skipped' in kw))
  hot_path.emit_rooflines(args, emitter, 'mc_sweep', 51e12)
  assert lines == [('roofline_fp32', 1.0, 51.0, False),
                   ('roofline_tf32', 0.1275, 400.0, False)]
  unknown = hot_path.parse_args([])
  hot_path.fill_peaks(unknown, 'Some Accelerator')
  lines.clear()
  hot_path.emit_rooflines(unknown, emitter, 'mc_sweep', 1e12, 'bfloat16')
  assert lines == [('roofline_bf16', None, None, True)]


def test_iteration_counts_the_label_slots_the_sweep_runs():
  """The ground-truth sweep runs the chunks holding labels, whole."""
  hot_path = _import_benchmark('hot_path')
  assert hot_path.swept_label_slots(100, 310, 2) == 100
  assert hot_path.swept_label_slots(5, 82, 642) == 82
  assert hot_path.swept_label_slots(4, 10, 3) == 6
  assert hot_path.swept_label_slots(0, 10, 3) == 0


def test_cpu_batching_epoch_shuffle_lines():
  """benchmarks/cpu_batching.py: the shuffle timed both ways per capacity."""
  rows = _benchmark_rows('cpu_batching.py', '--only=epoch_shuffle',
                         '--rounds=1')
  assert {(r['capacity'], r['sort']) for r in rows} == {
      (c, s) for c in (2816, 20224, 66560)
      for s in ('uint32_digits', 'key_index_pairs')}
  pairs = {r['capacity']: r['value'] for r in rows
           if r['sort'] == 'key_index_pairs'}
  for r in rows:
    assert r['benchmark'] == 'epoch_shuffle' and r['value'] > 0
    assert abs(r['vs_pairs'] - r['value'] / pairs[r['capacity']]) < 1e-2


def test_acquisition_cost_lines():
  """benchmarks/acquisition_cost.py: every program timed, ratios to the
  pool sweep consistent with the values."""
  rows = {r['benchmark']: r for r in _benchmark_rows(
      'acquisition_cost.py', '--pool_size=300', '--candidates=40',
      '--labels=20',
      '--batchbald_passes=8', '--configs=50', '--repeats=1')}
  assert set(rows) == {'pool_sweep', 'acquire_top_k', 'acquire_power',
                       'acquire_batchbald', 'batchbald_candidate_sweep',
                       'batchbald_greedy', 'acquire_coreset',
                       'acquire_badge'}
  pool_s = rows['pool_sweep']['value']
  for r in rows.values():
    assert r['unit'] == 's' and r['value'] > 0 and r['compile_s'] > 0
    assert abs(r['ratio_to_pool_sweep'] - r['value'] / pool_s) < 1e-2 * max(
        1.0, r['ratio_to_pool_sweep'])
    assert r['candidates'] == 40 and r['pool_size'] == 300


def test_second_round_picks_lines():
  """benchmarks/second_round_picks.py on 2,000 MNIST images: both ways
  share round 1; round 2 differs once round 1 is held as covered."""
  from conftest import SHARED_DATA  # pylint: disable=g-import-not-at-top
  if not (SHARED_DATA / 'mnist').is_dir():
    pytest.skip(f'MNIST idx files not found in {SHARED_DATA}/mnist')
  bench = _import_benchmark('second_round_picks')
  rows = bench.main([f'--data_dir={SHARED_DATA}', '--pool_size=2000',
                     '--test_size=300', '--seeds=2', '--num=5'])
  assert [r['way'] for r in rows] == ['plain', 'covered']
  for r in rows:
    assert 0 < r['value'] <= 1 and r['unit'] == '1-NN test accuracy'
    assert all(1 <= c <= 10 for c in r['per_seed_classes'])
    assert r['value'] == pytest.approx(np.mean(r['per_seed_nn_acc']),
                                       abs=1e-3)
  assert rows[0]['nn_acc_diff_to_plain'] == [0.0, 0.0]
  features = np.random.default_rng(0).normal(size=(300, 4))
  picks = bench.two_rounds(features, 5, 0)
  np.testing.assert_array_equal(picks['plain'][:5], picks['covered'][:5])
  assert len(set(picks['covered'])) == 10
  assert picks['plain'][5:].tolist() != picks['covered'][5:].tolist()


def test_pool_kappa_noise_lines():
  """benchmarks/pool_kappa_noise.py on the toy: lines at every 2nd
  iteration and the last, each holding per-seed kappas that its means
  summarize; fresh masks alone move some predictions (floor below 1)."""
  rows = _benchmark_rows('pool_kappa_noise.py', '--config.num_seeds=2',
                         '--every=2', '--config.num_iterations=3',
                         '--config.initial_epochs=10')
  assert [r['iteration'] for r in rows] == [2, 3]
  for r in rows:
    floor, kappa = r['per_seed']['floor'], r['per_seed']['pool_kappa']
    assert len(floor) == len(kappa) == 2
    assert all(-1 <= k < 1 for k in floor + kappa), r
    assert r['value'] == pytest.approx(np.mean(floor), abs=1e-4)
    assert r['pool_kappa'] == pytest.approx(np.mean(kappa), abs=1e-4)


def test_batchbald_check_line():
  """benchmarks/batchbald_check.py: exact, sampled and top-k picks."""
  line = _benchmark_rows('batchbald_check.py', '--iterations=0',
                         '--passes=10', '--picks=4', '--configs=500')[-1]
  for name in ('exact', 'sampled', 'bald_top_k'):
    assert len(set(line[name])) == 4, line
  # The first pick of both BatchBALDs is the top BALD.
  assert line['exact'][0] == line['sampled'][0] == line['bald_top_k'][0]
  assert line['sampled_in_exact'] == len(set(line['sampled']) &
                                         set(line['exact']))


# A hand-written optimized module: a fusion's body, a reduce's combiner and
# a sort's comparator are no kernels; a call's, a while's body and
# condition hold kernels; bookkeeping operations are no kernels.
_HLO = """HloModule m, entry_computation_layout={(f32[5]{0})->f32[]}

%add_region (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %s = f32[] add(%a, %b)
}

%less (c: f32[], d: f32[]) -> pred[] {
  %c = f32[] parameter(0)
  %d = f32[] parameter(1)
  ROOT %lt = pred[] compare(%c, %d), direction=LT
}

%fused_computation (p: f32[5]) -> f32[] {
  %p = f32[5]{0} parameter(0)
  %e = f32[5]{0} exponential(%p)
  %z = f32[] constant(0)
  ROOT %r = f32[] reduce(%e, %z), dimensions={0}, to_apply=%add_region
}

%body (t: (s32[], f32[5])) -> (s32[], f32[5]) {
  %t = (s32[], f32[5]{0}) parameter(0)
  %g = f32[5]{0} get-tuple-element(%t), index=1
  %i = s32[] get-tuple-element(%t), index=0
  %m = f32[5]{0} multiply(%g, %g)
  %sorted = f32[5]{0} sort(%m), dimensions={0}, to_apply=%less
  ROOT %o = (s32[], f32[5]{0}) tuple(%i, %sorted)
}

%cond (u: (s32[], f32[5])) -> pred[] {
  %u = (s32[], f32[5]{0}) parameter(0)
  %j = s32[] get-tuple-element(%u), index=0
  %n = s32[] constant(3)
  ROOT %k = pred[] compare(%j, %n), direction=LT
}

%wrapper (w: (s32[], f32[5])) -> (s32[], f32[5]) {
  %w = (s32[], f32[5]{0}) parameter(0)
  %gw = f32[5]{0} get-tuple-element(%w), index=1
  %ng = f32[5]{0} negate(%gw)
  ROOT %loop = (s32[], f32[5]{0}) while(%w), condition=%cond, body=%body
}

ENTRY %main (x: f32[5]) -> f32[] {
  %x = f32[5]{0} parameter(0)
  %cp = f32[5]{0} copy(%x)
  %zero = s32[] constant(0)
  %tu = (s32[], f32[5]{0}) tuple(%zero, %cp)
  %cl = (s32[], f32[5]{0}) call(%tu), to_apply=%wrapper
  %out = f32[5]{0} get-tuple-element(%cl), index=1
  %conv = (f32[5]{0}, s8[0]{0}) custom-call(%out), custom_call_target="x"
  %y = f32[5]{0} get-tuple-element(%conv), index=0
  ROOT %f = f32[] fusion(%y), kind=kLoop, calls=%fused_computation
}
"""


def test_kernel_ops_counts_kernels_of_an_optimized_module():
  step_anatomy = _import_benchmark('step_anatomy')
  # copy, custom-call and fusion in ENTRY; negate in the called wrapper;
  # multiply and sort in the body; compare in the condition.
  assert step_anatomy.kernel_ops(_HLO) == 7


def test_seed_sweep_programs_compute_the_same_sweeps():
  """sweep_seeds times two programs of one computation."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from bass_jax import models  # pylint: disable=g-import-not-at-top
  hot_path = _import_benchmark('hot_path')
  step_anatomy = _import_benchmark('step_anatomy')
  model = models.build_model('cnn', 10)
  x = hot_path.random_images(jax.random.key(0), 6)
  params = jax.vmap(lambda k: model.init(k, x[:1]))(
      jax.random.split(jax.random.key(1), 3))
  keys = jax.random.split(jax.random.key(2), 3)
  programs = step_anatomy.seed_sweep_programs(model.apply, 4, 4, ('bald',))
  out = {name: jax.jit(f)(params, keys, x) for name, f in programs.items()}
  assert out['map']['bald'].shape == (3, 6)
  for name in ('mean_probs', 'entropy', 'bald'):
    np.testing.assert_allclose(out['vmap'][name], out['map'][name],
                               atol=1e-5)
  # Different seeds' parameters give different sweeps.
  assert not np.allclose(out['map']['bald'][0], out['map']['bald'][1])


def test_step_anatomy_lines():
  """benchmarks/step_anatomy.py: three step parts, two seed strategies."""
  rows = _benchmark_rows('step_anatomy.py', '--quick',
                         '--conv_impls=fast_grad')
  parts = [r for r in rows if r['benchmark'] == 'step_part']
  assert [r['part'] for r in parts] == ['forward', 'grad', 'step']
  for r in parts:
    assert r['value'] > 0 and r['unit'] == 'ms/step'
    assert r['conv_impl'] == 'fast_grad' and r['hlo_ops'] > 0
  # The backward pass adds kernels, the optimizer more.
  assert parts[0]['hlo_ops'] < parts[1]['hlo_ops'] < parts[2]['hlo_ops']
  sweeps = {r['seed_strategy']: r for r in rows
            if r['benchmark'] == 'sweep_seeds'}
  assert set(sweeps) == {'map', 'vmap'}
  assert abs(sweeps['vmap']['vs_map'] - sweeps['vmap']['value'] /
             sweeps['map']['value']) < 1e-2 * sweeps['vmap']['vs_map']


def test_profile_iteration_lines(tmp_path):
  """benchmarks/profile_iteration.py on a tiny toy run: the iteration's
  time, its ops largest first with their kinds from the HLO, the trace."""
  rows = _benchmark_rows(
      'profile_iteration.py', '--config=configs/yinyang.py:active_semi',
      '--config.num_seeds=2', '--config.initial_epochs=5',
      '--config.num_iterations=6', '--iterations=2', '--top=8',
      f'--trace_dir={tmp_path}/trace')
  by_name = {}
  for r in rows:
    by_name.setdefault(r['benchmark'], []).append(r)
  (it,) = by_name['profile_iteration']
  assert it['value'] > 0 and it['traced_s'] > 0 and it['compile_s'] > 0
  assert it['iterations'] == '4-5 traced, 2-3 untraced'
  assert 0 < it['device_busy_s'] and 0 < it['cores_busy'] <= os.cpu_count()
  assert it['busy_fraction'] is None  # A CPU's: see cores_busy.
  assert it['mesh'] == 'seed:1,data:1'  # The mesh it ran on.
  ops = by_name['profile_op']
  assert len(ops) == 8
  times = [r['ms_per_iteration'] for r in ops]
  assert times == sorted(times, reverse=True)
  # The toy's matmuls and fusions, named by the optimized HLO.
  kinds = {r['op_kind'] for r in by_name['profile_kind']}
  assert any(k.startswith('fusion:') for k in kinds), kinds
  assert 'dot' in kinds or any('custom' in k.lower() for k in kinds), kinds
  assert sum(r['share'] for r in by_name['profile_kind']) == pytest.approx(
      1, abs=1e-3)
  (threads,) = by_name['profile_threads']
  assert threads['value'] >= 1 and all(threads['threads'].values())
  assert list((tmp_path / 'trace').glob('plugins/profile/*/*.trace.json.gz'))
  # More iterations than the run has: one line, nothing run.
  proc = subprocess.run(
      [sys.executable, str(REPO / 'benchmarks' / 'profile_iteration.py'),
       '--config=configs/yinyang.py:active_semi', '--config.num_iterations=3',
       '--iterations=2'], capture_output=True, text=True, cwd=str(REPO),
      timeout=300, check=False)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1].endswith(
      "exceed the run's 4 iterations; lower them or raise "
      'config.num_iterations'), proc.stderr


def _event(tid, name, ts, dur, pid=1, **args):
  return {'ph': 'X', 'pid': pid, 'tid': tid, 'name': name, 'ts': ts,
          'dur': dur, 'args': args}


def _names(pid, process, threads):
  return ([{'ph': 'M', 'name': 'process_name', 'pid': pid,
            'args': {'name': process}}] +
          [{'ph': 'M', 'name': 'thread_name', 'pid': pid, 'tid': tid,
            'args': {'name': name}} for tid, name in threads.items()])


def test_profile_summary_golden():
  """Self times, the busy union and the device's threads on hand-made
  traces: a GPU's (two streams, the derived 'XLA Ops' line not counted
  twice) and a CPU's (a loop's own time less its body's)."""
  profile = _import_benchmark('trace_summary')
  gpu = (_names(7, '/device:GPU:0', {1: 'Stream #13(Compute)',
                                     2: 'Stream #14(MemcpyD2H)',
                                     3: 'XLA Ops'}) +
         _names(9, '/host:CPU', {5: 'python'}) +
         [_event(1, 'sm90_xmma_fprop', 0, 10, pid=7, hlo_op='convolution.3'),
          _event(1, 'loop_add_fusion', 12, 4, pid=7, hlo_op='add_fusion.2'),
          _event(1, 'sm90_xmma_fprop', 20, 10, pid=7, hlo_op='convolution.3'),
          _event(2, 'MemcpyD2H', 28, 6, pid=7),
          # No hlo_op argument: the kernel's name says which fusion.
          _event(1, 'add_fusion_2', 40, 2, pid=7),
          _event(3, 'convolution.3', 0, 10, pid=7),  # Derived: not counted.
          _event(5, 'PjitFunction', 0, 40, pid=9)])
  threads = profile.device_threads(gpu)
  assert sorted(threads.values()) == ['/device:GPU:0 / Stream #13(Compute)',
                                      '/device:GPU:0 / Stream #14(MemcpyD2H)']
  kinds = profile.op_kinds(
      '%convolution.3 = (f32[8,16]{1,0}, u8[0]{0}) custom-call(%p, %k), '
      'custom_call_target="__cudnn$convForward"\n'
      '  ROOT %add_fusion.2 = f32[8]{0} fusion(%a, %b), kind=kLoop, '
      'calls=%fused_add\n')
  assert kinds == {'convolution.3': 'custom-call:__cudnn$convForward',
                   'add_fusion.2': 'fusion:kLoop'}
  rows, busy = profile.op_table(gpu, threads, kinds, iterations=2)
  # 0-10, 12-16, 20-34, 40-42.
  assert busy == pytest.approx((10 + 4 + 14 + 2) / 2)
  assert [(r['op'], r['op_kind'], r['ms_per_iteration'] * 1e3,
           r['calls_per_iteration']) for r in rows] == [
               ('convolution.3', 'custom-call:__cudnn$convForward', 10, 1),
               ('MemcpyD2H', 'not in the HLO: MemcpyD2H', 3, 0.5),
               ('add_fusion.2', 'fusion:kLoop', 2, 0.5),
               ('add_fusion_2', 'fusion:kLoop', 1, 0.5)]
  assert [r['share'] for r in rows] == pytest.approx([20 / 32, 6 / 32,
                                                      4 / 32, 2 / 32])
  assert profile.kind_table(rows)[0]['op_kind'] == (
      'custom-call:__cudnn$convForward')
  # A CPU trace: a while loop around two fusions, one nested deeper, and an
  # op's end marker (not an op).
  cpu = (_names(1, '/host:CPU', {4: 'tf_XLAEigen/123', 5: 'python'}) +
         [_event(4, 'while.1', 0, 100), _event(4, 'fusion.1', 10, 30),
          _event(4, 'dot.2', 15, 5), _event(4, 'fusion.1', 50, 30),
          _event(4, 'end: fusion.1', 80, 0.1), _event(5, 'np.asarray', 0, 99)])
  threads = profile.device_threads(cpu)
  assert list(threads.values()) == ['/host:CPU / tf_XLAEigen/123']
  rows, busy = profile.op_table(cpu, threads, {}, iterations=1)
  assert {r['op']: r['ms_per_iteration'] * 1e3 for r in rows} == (
      pytest.approx({'fusion.1': 55, 'while.1': 40, 'dot.2': 5}))
  assert busy == 100


def test_predict_confident_summary_golden():
  summary = _import_benchmark('predict_confident').summary
  table = {'label': np.array([0, 1, 1, 2]),
           'true_label': np.array([0, 1, 0, 0]),
           'confident': np.array([1, 1, 0, 0]),
           'entropy': np.array([0.1, 0.2, 0.3, 0.4]),
           'bald': np.array([0.4, 0.1, 0.2, 0.3])}
  assert summary(table) == {
      'accuracy': 0.5, 'confident_share': 0.5, 'confident_accuracy': 1.0,
      'other_accuracy': 0.0, 'half_by_entropy_accuracy': 1.0,
      'half_by_bald_accuracy': 0.5}
