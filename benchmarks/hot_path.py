r"""Hot-path benchmarks of bass_jax on the paper's MNIST CNN, as JSON lines.

Every result is printed to stdout as one JSON object per line,

  {"benchmark": NAME, "value": X, "unit": U, ...context}

where the context always holds the device, the jax version, the CPU count
and `compile_s` (the ahead-of-time lower + compile time of the measured
program, kept out of `value`; null where nothing was compiled). Progress goes
to stderr, so stdout stays machine-readable.

Benchmarks (all on the paper's CNN with random 28x28x1 inputs unless noted):

* `mc_sweep`: MC-dropout forwards/s of `mc_dropout.mc_sweep` over a pool, for
  every mask source: the keyed hash (mask_impl 'hash') and jax.random.bits
  (mask_impl 'prng', PRNG impl threefry2x32 or rbg), each with
  dropout_bits in (32, 16, 8); `default: true` marks the library's default.
* `mc_sweep_precision`: the default sweep with `mc_precision` 'bfloat16'
  (and on a GPU 'float32' and 'tensorfloat32'; the platform default, i.e.
  `mc_sweep`, is TF32 there), with its ratio to `mc_sweep`.
  `benchmarks/mc_precision.py` measures what it does to a run's accuracy.
* `mc_sweep_memory`: XLA's compiled memory analysis of the sweep at pool
  6,000 and 60,000 (temporaries vs arguments: the pool).
* `deterministic_forward`: forwards/s with dropout off (`predict_logits`) on
  the same images at the same batch size (T * chunk).
* `mc_to_deterministic_ratio`: default mc_sweep / deterministic_forward.
  It can exceed 1: the sweep runs the first convolution once per image
  (it precedes the first dropout, so vmap over the passes leaves it
  unbatched), the deterministic baseline, like the PyTorch one, T times.
* `mc_sweep_replicated_input`: the default sweep with every image copied T
  times first, so the first convolution runs T times too: the same work as
  deterministic_forward plus the masks. `mask_cost_ratio` is it over
  deterministic_forward: what the dropout masks alone cost.
* `train_step`: samples/s of `training.train_step` run as the library runs
  it, steps inside one compiled loop; `train_step_dispatched`: the same
  jitted step called once per step from Python (state donated).
* `train_epoch`: samples/s of `train_epochs`, the same steps inside the
  compiled while_loop the EM iteration trains with; `train_epoch_augment`
  the same epoch with its batches shifted and flipped (`config.augment`
  'shift:2+flip'), `vs_plain` its rate over `train_epoch`'s.
* `iteration`: seconds of one EM iteration after iteration 0 (1 epoch,
  all-data semi-supervision, max-entropy acquisition, T=100 on the labelled
  slots, T'=10 on the pool), one seed, at pool 6,000 and (GPU or --full)
  60,000.
* `seeds_vmap`: wall time of S single-seed runs one after another (one
  device each) over that of one S-seed run, compiled once: on Yin-Yang the
  whole Table 1 DeepBASS run (active_semi, iteration 0's 100 epochs and 72
  iterations), on MNIST a few iterations of a small CNN run. The S-seed run
  spreads its seeds over all devices (on a CPU, --cpu_devices cores, each
  running S/D seeds); `seeds_vmap_one_device` is it on one device. The
  runs are timed in interleaved rounds (single-seed runs, then every S-seed
  layout), and `value` is the median of the rounds' ratios, so the
  machine's drift between runs cancels. --seed_strategies adds the S-seed
  runs of other config.seed_strategy values ('map', 'vmap'); `default:
  true` marks the library's choice.
  `seeds_processes` (CPU, --seed_processes): the S seeds as --cpu_devices
  processes, each pinned to one core with S/D seeds vmapped and nothing
  shared between them: what the cores give without in-process
  interference, a reference for `seeds_vmap`. `seeds_one_core` (also
  --seed_processes): in one process pinned to one core, the S single-seed
  runs over one S-seed run (what batching saves on a core), with
  `one_seed_speedup`, the single-seed runs there over the same runs on
  every core: seeds over D cores gain at most ~D x value / one_seed_speedup.
* `roofline_fp32`, `roofline_tf32`, `roofline_bf16` (GPU only): achieved
  FLOP/s of mc_sweep and iteration over the peaks of the precision they
  compute at (the device's data-sheet peaks in PEAK_TFLOPS, or
  --peak_*_tflops; no fraction for a device the table lacks), with SPEC §5's 5.66 MFLOP per forward (an MC forward executes
  the first convolution's 0.23 MFLOP once per image, not per pass) and 3x
  that per training sample.
* `torch_mc_sweep`, `torch_train_step`: benchmarks/torch_baseline.py in a
  subprocess (torch lives in its own venv), and the ratios `mc_vs_torch`,
  `train_vs_torch`.

Each measurement runs once untimed (warm-up), then `repeats` times; the
median is reported and every sample is listed in `samples`. Exceptions, to
fit ~5 minutes on 2 CPU cores: an iteration's warm-up is iteration 0, the
seeds runs (compiled ahead of time) have no warm-up run, and on a CPU the
MNIST-small ones are timed in 2 rounds (see `warmup_runs`). Default sizes
differ by platform (a GPU gets larger pools and the 60,000-image
iteration); every line states the sizes it used.

  python benchmarks/hot_path.py \
      --torch_python=path/to/torch_venv/bin/python --out=hot_path.jsonl
  python benchmarks/hot_path.py --quick --skip_torch

(torch in a venv of its own, e.g. `python3 -m venv torch_venv &&
torch_venv/bin/pip install torch numpy`.)
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import multiprocessing
import os
import pathlib
import queue
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, NamedTuple, Optional

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import numpy as np

from bass_jax import augment
from bass_jax import data as data_lib
from bass_jax import experiment
from bass_jax import loop
from bass_jax import mc_dropout
from bass_jax import models
from bass_jax import provenance
from bass_jax import sharding
from bass_jax import training
from configs import common
from configs import yinyang
# pylint: enable=g-import-not-at-top

# SPEC §5: multiply-adds of one CNN forward, x2 for FLOPs.
FLOP_PER_FORWARD = 2 * 2_830_240
# Of those, the first convolution's (28 x 28 x 16 outputs x 9 taps): it
# precedes the first dropout, so an MC sweep runs it once per image, not
# once per pass (`vmap` over the passes leaves what does not depend on the
# pass key unbatched).
FLOP_CONV1 = 2 * 28 * 28 * 16 * 9
# SPEC §5: forward + backward of a training sample, relative to a forward.
TRAIN_FLOP_FACTOR = 3
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)
DROPOUT_BITS = (32, 16, 8)
# (mask_impl, prng_impl): the hash draws 2 words per key from the PRNG, so
# the PRNG impl hardly matters to it; with 'prng' every mask bit comes from it.
MASK_SOURCES = (('hash', 'threefry2x32'), ('prng', 'threefry2x32'),
                ('prng', 'rbg'))
GROUPS = ('mc', 'train', 'iteration', 'seeds', 'torch')


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
  """Parses flags; sizes left at None get platform/--quick dependent values."""
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--quick', action='store_true',
                 help='tiny sizes everywhere: a < 60 s smoke run')
  p.add_argument('--full', action='store_true',
                 help='also time the 60,000-image iteration on a CPU')
  p.add_argument('--skip_60k', action='store_true',
                 help='never time the 60,000-image iteration (even on GPU)')
  p.add_argument('--only', default=','.join(GROUPS),
                 help=f'comma-separated subset of {",".join(GROUPS)}')
  p.add_argument('--out', default=None,
                 help='also append the JSON lines to this file')
  p.add_argument('--note', default=None,
                 help='free text added to every line (e.g. "machine shared")')
  # MC sweep / deterministic forward.
  p.add_argument('--pool_size', type=int, default=None,
                 help='mc_sweep pool (default: 500 CPU, 6,000 GPU)')
  p.add_argument('--T', type=int, default=10, help='MC passes of mc_sweep')
  p.add_argument('--chunk', type=int, default=None,
                 help='pool samples per MC chunk (batch T * chunk; '
                 'default 500)')
  p.add_argument('--repeats', type=int, default=None,
                 help='timed runs of the cheap benchmarks (default 3)')
  # Training.
  p.add_argument('--batch_size', type=int, default=256)
  p.add_argument('--train_steps', type=int, default=None,
                 help='train steps per timed block (default 8)')
  p.add_argument('--train_epoch_batches', type=int, default=None,
                 help='batches of the timed train_epochs call (default 2 on '
                 'a CPU, 256 on a GPU, ~ one epoch of the paper protocol)')
  p.add_argument('--steps_per_trip', default=None,
                 help='comma-separated steps_per_trip values of train_epoch '
                 '(default 1 on a CPU, 1,4,16 on a GPU)')
  # Iteration.
  p.add_argument('--iteration_pool_size', type=int, default=None,
                 help='pool of the small iteration (default 6,000)')
  p.add_argument('--large_pool_size', type=int, default=60_000)
  p.add_argument('--test_size', type=int, default=None,
                 help='validation images of an iteration (default 10,000)')
  p.add_argument('--iteration_repeats', type=int, default=None,
                 help='timed iterations after iteration 0 (default 2)')
  # Seeds.
  p.add_argument('--num_seeds', type=int, default=4)
  p.add_argument('--cpu_devices', type=int, default=None,
                 help='JAX devices to split the CPU into (default: the '
                 'largest divisor of --num_seeds up to the core count); '
                 'only seeds_vmap uses more than the first')
  p.add_argument('--seed_strategies', default='auto',
                 help="comma-separated config.seed_strategy values of the "
                 "S-seed runs ('auto': the library's choice)")
  p.add_argument('--seed_processes', action='store_true',
                 help='CPU: also time the seeds as --cpu_devices pinned '
                 'processes and on one pinned core (seeds_processes, '
                 'seeds_one_core; ~3 minutes more)')
  p.add_argument('--yinyang_iterations', type=int, default=None,
                 help='iterations per Yin-Yang run (default 73: the whole '
                 'Table 1 run, iteration 0 and 72 more)')
  p.add_argument('--mnist_small_pool', type=int, default=None,
                 help='pool of the MNIST-small seeds run (default 256 '
                 'CPU, 2,000 GPU)')
  p.add_argument('--mnist_small_per_class', type=int, default=None,
                 help='initial labels per class (default 2 CPU, 10 GPU)')
  p.add_argument('--mnist_small_iterations', type=int, default=None,
                 help='iterations per MNIST-small run (default 2 CPU, 3 GPU)')
  p.add_argument('--mnist_small_repeats', type=int, default=None,
                 help='interleaved timed rounds of the MNIST-small seeds '
                 'runs (default 2 CPU, keeping the run near 5 minutes; '
                 '--repeats on a GPU)')
  p.add_argument('--mnist_data', choices=('auto', 'random'), default='auto',
                 help="'auto': real MNIST if the idx files are found")
  # Torch.
  p.add_argument('--skip_torch', action='store_true')
  p.add_argument('--torch_python', default=None,
                 help='python with torch (default: this one if it has torch)')
  p.add_argument('--torch_timeout_s', type=float, default=600.0)
  # Roofline (GPU only).
  # Default: PEAK_TFLOPS of the device (H100 / H200 SXM: 67, 495, 989).
  p.add_argument('--peak_fp32_tflops', type=float, default=None,
                 help='fp32 peak (default: the device\'s in PEAK_TFLOPS)')
  p.add_argument('--peak_tf32_tflops', type=float, default=None,
                 help='dense TF32 tensor-core peak (default: as fp32)')
  p.add_argument('--peak_bf16_tflops', type=float, default=None,
                 help='dense bf16 tensor-core peak (default: as fp32)')
  p.add_argument('--seed', type=int, default=0)
  args = p.parse_args(argv)
  args.only = [g.strip() for g in args.only.split(',') if g.strip()]
  args.seed_strategies = [g.strip() for g in args.seed_strategies.split(',')
                          if g.strip()]
  unknown = set(args.only) - set(GROUPS)
  if unknown:
    p.error(f'--only: unknown groups {sorted(unknown)}; known: {GROUPS}')
  return args


# Dense peaks in TFLOP/s (fp32, TF32 tensor cores, bf16 tensor cores) from
# NVIDIA's data sheets, by a part of jax's device_kind; first match wins,
# so the PCIe and NVL cards come before the SXM ones that share their name.
PEAK_TFLOPS = (
    ('H100 PCIe', (51.0, 378.0, 756.0)),
    ('H100 NVL', (60.0, 418.0, 835.0)),
    ('H100', (67.0, 495.0, 989.0)),    # SXM: 'NVIDIA H100 80GB HBM3'.
    ('H200 NVL', (60.0, 418.0, 835.0)),
    ('H200', (67.0, 495.0, 989.0)),    # SXM ('NVIDIA H200').
    ('A100', (19.5, 156.0, 312.0)),
)


def device_peaks(device_kind: str) -> Optional[tuple[float, float, float]]:
  """(fp32, tf32, bf16) dense peak TFLOP/s of a device, or None if the
  table does not know it."""
  for part, peaks in PEAK_TFLOPS:
    if part in device_kind:
      return peaks
  return None


def fill_peaks(args: argparse.Namespace, device_kind: str) -> None:
  """The --peak_*_tflops not given, from the device's data-sheet peaks;
  left None (no roofline line) for a device the table lacks."""
  known = device_peaks(device_kind) or (None, None, None)
  for kind, peak in zip(('fp32', 'tf32', 'bf16'), known):
    if getattr(args, f'peak_{kind}_tflops') is None:
      setattr(args, f'peak_{kind}_tflops', peak)


def fill_defaults(args: argparse.Namespace, on_gpu: bool) -> None:
  """Sizes: --quick shrinks everything; a GPU affords the paper's sizes."""
  quick = args.quick
  defaults = {
      # --quick: a pool of 2 chunks, so the chunked loop still runs, and no
      # larger: the test suite runs it unoptimized, where some mask
      # variants are slow.
      'pool_size': 16 if quick else (6000 if on_gpu else 500),
      'chunk': 8 if quick else 500,
      'repeats': 2 if quick else 3,
      'train_steps': 2 if quick else 8,
      'iteration_pool_size': 128 if quick else 6000,
      'test_size': 128 if quick else 10_000,
      # ~30-40 s per 6,000-image iteration on 2 CPU cores.
      'iteration_repeats': 1 if quick else (3 if on_gpu else 2),
      'yinyang_iterations': 2 if quick else 73,
      # 8 CNN runs (S vmapped + S single-seed) must fit the CPU budget, and
      # the seed-vmapped MC sweep runs ~3x slower than sequential seeds there
      # (XLA:CPU grouped convolutions), so the CPU pool is small.
      'mnist_small_pool': 2000 if on_gpu else 256,
      'mnist_small_per_class': 10 if on_gpu else 2,
      'mnist_small_iterations': 3 if on_gpu else 2,
      'train_epoch_batches': 2 if quick or not on_gpu else 256,
      'steps_per_trip': '1,4,16' if on_gpu and not quick else '1',
  }
  for name, value in defaults.items():
    if getattr(args, name) is None:
      setattr(args, name, value)
  if args.mnist_small_repeats is None:
    args.mnist_small_repeats = args.repeats if on_gpu else min(args.repeats, 2)
  if quick:
    args.batch_size = min(args.batch_size, 64)
    args.num_seeds = min(args.num_seeds, 2)


# ----------------------------------------------------------------------------
# Output and timing helpers.


def run_context() -> dict[str, Any]:
  """What every benchmark line says of where it ran: the device, jax's
  release, bass_jax's (with its git commit: which code gave the number),
  the cores, and the compiler settings that change what is timed: those of
  a run's `provenance.environment()`, under the benchmarks' names."""
  env = provenance.environment()
  context = {'device': env['device_kind'], 'platform': env['platform'],
             'num_devices': env['devices'], 'jax_version': env['jax'],
             'bass_jax': env['bass_jax'], 'cpu_count': os.cpu_count()}
  if env['xla_flags']:
    context['xla_flags'] = env['xla_flags']
  if env['jax_disable_most_optimizations']:  # Slower programs.
    context['jax_disable_most_optimizations'] = True
  return context


class Emitter:
  """Prints result lines (and appends them to --out) with a shared context."""

  def __init__(self, context: dict[str, Any], out: Optional[str]):
    self.context = context
    self.out = out
    self.lines: list[dict[str, Any]] = []

  def emit(self, benchmark: str, value: Optional[float], unit: Optional[str],
           **fields) -> dict[str, Any]:
    # benchmark/value/unit first so the lines read well in a terminal.
    line = {'benchmark': benchmark, 'value': value, 'unit': unit}
    line.update(self.context)
    line.setdefault('compile_s', None)
    line.update(fields)
    text = json.dumps(line, default=_json_default)
    print(text, flush=True)
    if self.out:
      with open(self.out, 'a') as f:
        f.write(text + '\n')
    self.lines.append(line)
    return line


def _json_default(obj):
  # numpy scalars from device_get are not JSON-serialisable by default.
  if isinstance(obj, (np.generic,)):
    return obj.item()
  raise TypeError(f'{type(obj).__name__} is not JSON serialisable')


def log(msg: str) -> None:
  print(f'[hot_path {time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr,
        flush=True)


def compile_aot(jitted, *args) -> tuple[Callable, float]:
  """Lowers and compiles `jitted` for `args`; returns (executable, seconds)."""
  t0 = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - t0


def time_runs(run: Callable[[], Any], repeats: int,
              warmup: int = 1) -> list[float]:
  """Seconds of `repeats` calls of `run` after `warmup` untimed ones.

  `run` must block on its results (block_until_ready / device_get), else the
  clock stops at dispatch.
  """
  for _ in range(warmup):
    run()
  seconds = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    run()
    seconds.append(time.perf_counter() - t0)
  return seconds


def _round(x: float, digits: int = 4) -> float:
  return float(f'{x:.{digits}g}')


def rate_fields(work: float, seconds: list[float]) -> dict[str, Any]:
  """Median rate `work / s` plus the raw samples, for a line's context."""
  rates = [work / s for s in seconds]
  return {'value': _round(statistics.median(rates)),
          'samples': [_round(r) for r in rates],
          'seconds': [_round(s) for s in seconds],
          'stat': f'median of {len(seconds)}'}


def donating_runner(compiled: Callable, state, key: jax.Array
                    ) -> Callable[[], None]:
  """A timed call of `compiled(state, key) -> (state, loss)` that donates its
  state: each call feeds the previous call's state and a fresh key."""
  holder = [state, 0]
  # Keys made before the clock starts (fold_in is a dispatch of its own).
  keys = [jax.random.fold_in(key, i) for i in range(1, 65)]

  def run():
    holder[1] += 1
    holder[0], loss = compiled(holder[0], keys[holder[1] % len(keys)])
    jax.block_until_ready((holder[0], loss))

  return run


def random_images(key: jax.Array, n: int) -> jax.Array:
  """[n, 28, 28, 1] float32 in [0, 1): pixel values do not affect speed."""
  return jax.random.uniform(key, (n,) + IMAGE_SHAPE, jnp.float32)


# Batches the training benchmarks rotate through: each step reads another.
TRAIN_BATCHES = 4


def train_batches(key: jax.Array, batch_size: int
                  ) -> tuple[jax.Array, jax.Array]:
  """(xs [4, B, 28, 28, 1], ys [4, B] int32): random batches in rotation."""
  k_x, k_y = jax.random.split(key)
  xs = random_images(k_x, TRAIN_BATCHES * batch_size).reshape(
      (TRAIN_BATCHES, batch_size) + IMAGE_SHAPE)
  ys = jax.random.randint(k_y, (TRAIN_BATCHES, batch_size), 0, NUM_CLASSES,
                          jnp.int32)
  return xs, ys


def looped_steps(step: Callable, xs: jax.Array, ys: jax.Array,
                 steps: int) -> Callable:
  """`(state, key) -> (state, loss)`: `steps` calls of
  `step(state, x, y, key)` in one compiled loop, as an epoch runs them;
  call i reads batch i % len(xs) and key fold_in(key, i)."""
  def looped(state, key):
    def body(i, carry):
      j = i % xs.shape[0]
      return step(carry[0], xs[j], ys[j], jax.random.fold_in(key, i))
    return jax.lax.fori_loop(0, steps, body, (state, jnp.float32(0.0)))
  return looped


# ----------------------------------------------------------------------------
# MC sweep and deterministic forward.


def bench_mc(args, em: Emitter, defaults: dict[str, Any]) -> dict[str, float]:
  """mc_sweep for every (bits, impl), deterministic forward, their ratio.

  Returns:
    {'mc_sweep': default variant's forwards/s, 'deterministic_forward': ...}.
  """
  n, t = args.pool_size, args.T
  chunk = min(args.chunk, n)  # What mc_sweep itself does with a small pool.
  x = random_images(jax.random.key(args.seed), n)
  forwards = n * t
  results = {}
  for mask_impl, impl in MASK_SOURCES:
    for bits in DROPOUT_BITS:
      model = models.build_model('cnn', NUM_CLASSES, dropout_bits=bits,
                                 mask_impl=mask_impl)
      params = model.init(jax.random.key(args.seed), x[:1])
      is_default = (bits == defaults['dropout_bits'] and
                    mask_impl == defaults['mask_impl'] and
                    impl == defaults['prng_impl'])
      key = jax.random.key(args.seed + 1, impl=impl)
      sweep = jax.jit(functools.partial(
          mc_dropout.mc_sweep, model.apply, num_passes=t, chunk_size=chunk,
          score_names=(defaults['acquisition'],)))
      compiled, compile_s = compile_aot(sweep, params, x, key)
      seconds = time_runs(
          lambda c=compiled, p=params, k=key: jax.block_until_ready(
              c(p, x, k)), args.repeats)
      fields = rate_fields(forwards, seconds)
      value = fields.pop('value')
      em.emit('mc_sweep', value, 'forwards/s', compile_s=_round(compile_s),
              dropout_bits=bits, mask_impl=mask_impl, prng_impl=impl,
              default=is_default,
              pool_size=n, T=t, chunk=chunk, batch=t * chunk,
              gflops=_round(value * mc_flop_per_forward(t) / 1e9),
              first_conv='once per image (before the first dropout)',
              **fields)
      log(f'mc_sweep {mask_impl} bits={bits} impl={impl}: {value:.0f} '
          'forwards/s')
      if is_default:
        results['mc_sweep'] = value

  # Same images, each repeated T times, in batches of T * chunk: the same
  # forward count and batch shape as the sweep, minus the dropout masks.
  model = models.build_model('cnn', NUM_CLASSES,
                             dropout_bits=defaults['dropout_bits'],
                             mask_impl=defaults['mask_impl'])
  params = model.init(jax.random.key(args.seed), x[:1])
  xt = jnp.tile(x, (t, 1, 1, 1))
  det = jax.jit(functools.partial(mc_dropout.predict_logits, model.apply,
                                  chunk_size=t * chunk))
  compiled, compile_s = compile_aot(det, params, xt)
  seconds = time_runs(lambda: jax.block_until_ready(compiled(params, xt)),
                      args.repeats)
  fields = rate_fields(forwards, seconds)
  value = fields.pop('value')
  em.emit('deterministic_forward', value, 'forwards/s',
          compile_s=_round(compile_s), pool_size=n, T=t, chunk=chunk,
          batch=t * chunk, gflops=_round(value * FLOP_PER_FORWARD / 1e9),
          **fields)
  log(f'deterministic_forward: {value:.0f} forwards/s')
  results['deterministic_forward'] = value
  bench_replicated_sweep(args, em, defaults, x, value)
  if 'mc_sweep' in results:
    em.emit('mc_to_deterministic_ratio',
            _round(results['mc_sweep'] / value), 'ratio',
            numerator='mc_sweep (default bits/impl)',
            denominator='deterministic_forward',
            dropout_bits=defaults['dropout_bits'],
            mask_impl=defaults['mask_impl'], prng_impl=defaults['prng_impl'])
  bench_sweep_memory(args, em, defaults)
  return results


def replicated_input_sweep(apply_fn, params, x: jax.Array, key: jax.Array,
                           num_passes: int, chunk_size: int,
                           score_names=()) -> dict[str, jax.Array]:
  """`mc_dropout.mc_sweep` with each image copied T times before the
  network, so that nothing is shared between its passes (the PyTorch
  libraries' way). Same keys, masks and statistics."""
  def one_chunk(xc, ic):
    keys = mc_dropout.sample_keys(key, ic, num_passes)
    copies = jnp.broadcast_to(xc, (num_passes,) + xc.shape)  # Batched in T.
    logits = jax.vmap(jax.vmap(lambda xi, k: apply_fn(params, xi[None],
                                                      k)[0]))(copies, keys)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    return mc_dropout.mc_statistics(probs, score_names)

  n = x.shape[0]
  return mc_dropout.map_chunks(one_chunk, n, min(chunk_size, n), x,
                               jnp.arange(n, dtype=jnp.int32))


def bench_replicated_sweep(args, em: Emitter, defaults: dict[str, Any],
                           x: jax.Array, deterministic_rate: float) -> None:
  """`mc_sweep_replicated_input` and `mask_cost_ratio` (see the top)."""
  n, t = x.shape[0], args.T
  chunk = min(args.chunk, n)
  _, model, params, key = default_sweep_inputs(args, defaults, n)
  sweep = jax.jit(functools.partial(
      replicated_input_sweep, model.apply, num_passes=t, chunk_size=chunk,
      score_names=(defaults['acquisition'],)))
  compiled, compile_s = compile_aot(sweep, params, x, key)
  seconds = time_runs(lambda: jax.block_until_ready(compiled(params, x, key)),
                      args.repeats)
  fields = rate_fields(n * t, seconds)
  value = fields.pop('value')
  em.emit('mc_sweep_replicated_input', value, 'forwards/s',
          compile_s=_round(compile_s), pool_size=n, T=t, chunk=chunk,
          batch=t * chunk, gflops=_round(value * FLOP_PER_FORWARD / 1e9),
          **fields)
  em.emit('mask_cost_ratio', _round(value / deterministic_rate), 'ratio',
          numerator='mc_sweep_replicated_input',
          denominator='deterministic_forward',
          dropout_bits=defaults['dropout_bits'],
          mask_impl=defaults['mask_impl'], prng_impl=defaults['prng_impl'])
  log(f'mc_sweep_replicated_input: {value:.0f} forwards/s')


def default_sweep_inputs(args, defaults: dict[str, Any], n: int):
  """(x [n, 28, 28, 1], the CNN with the library's default masks, its
  params, the sweep key) for the sweeps that vary one setting."""
  x = random_images(jax.random.key(args.seed), n)
  model = models.build_model('cnn', NUM_CLASSES,
                             dropout_bits=defaults['dropout_bits'],
                             mask_impl=defaults['mask_impl'])
  params = model.init(jax.random.key(args.seed), x[:1])
  key = jax.random.key(args.seed + 1, impl=defaults['prng_impl'])
  return x, model, params, key


def bench_mc_precision(args, em: Emitter, defaults: dict[str, Any],
                       default_rate: float, on_gpu: bool) -> dict[str, float]:
  """`mc_sweep_precision`: the default-mask sweep at each `mc_precision`.

  On a GPU 'float32', 'tensorfloat32' and 'bfloat16' (the platform default,
  timed as `mc_sweep`, is TF32 on recent NVIDIA GPUs); on a CPU, where
  float32 is the default and TF32 does not exist, 'bfloat16' only.

  Returns:
    {precision: forwards/s}.
  """
  precisions = (('float32', 'tensorfloat32', 'bfloat16') if on_gpu else
                ('bfloat16',))
  n, t = args.pool_size, args.T
  chunk = min(args.chunk, n)
  x, model, params, key = default_sweep_inputs(args, defaults, n)
  rates = {}
  for precision in precisions:
    sweep = jax.jit(functools.partial(
        mc_dropout.mc_sweep, mc_dropout.with_precision(model.apply,
                                                       precision),
        num_passes=t, chunk_size=chunk,
        score_names=(defaults['acquisition'],)))
    compiled, compile_s = compile_aot(sweep, params, x, key)
    seconds = time_runs(lambda c=compiled: jax.block_until_ready(
        c(params, x, key)), args.repeats)
    fields = rate_fields(n * t, seconds)
    value = fields.pop('value')
    rates[precision] = value
    em.emit('mc_sweep_precision', value, 'forwards/s', precision=precision,
            vs_default=_round(value / default_rate) if default_rate else None,
            compile_s=_round(compile_s), pool_size=n, T=t, chunk=chunk,
            gflops=_round(value * mc_flop_per_forward(t) / 1e9), **fields)
    log(f'mc_sweep precision={precision}: {value:.0f} forwards/s')
  return rates


def chunk_candidates(on_gpu: bool, quick: bool, t: int) -> list[int]:
  """Chunk sizes to time: batches (T * chunk) around the platform's auto."""
  if quick:
    return [8, 32]
  batches = ((1024, 4096, 16384, 60000) if on_gpu else
             (100, 250, 500, 1000, 2500, 10000))
  return sorted({max(1, b // t) for b in batches})


def bench_mc_chunks(args, em: Emitter, defaults: dict[str, Any],
                    on_gpu: bool) -> None:
  """`mc_sweep_chunk`: forwards/s and compiled temporaries per chunk size.

  The evidence behind `mc_dropout.AUTO_BATCH` (what config.chunk_size=0
  picks): the same default-mask sweep of the pool, one line per chunk, the
  auto choice marked.
  """
  t = args.T
  chunks = chunk_candidates(on_gpu, args.quick, t)
  # A pool of at least the largest chunk, so that no candidate is capped.
  n = max(args.pool_size, max(chunks))
  platform = jax.devices()[0].platform
  auto = mc_dropout.auto_chunk_size(platform, t)
  x, model, params, key = default_sweep_inputs(args, defaults, n)
  for chunk in chunks:
    sweep = jax.jit(functools.partial(
        mc_dropout.mc_sweep, model.apply, num_passes=t, chunk_size=chunk,
        score_names=(defaults['acquisition'],)))
    compiled, compile_s = compile_aot(sweep, params, x, key)
    temp = compiled.memory_analysis().temp_size_in_bytes
    seconds = time_runs(lambda c=compiled: jax.block_until_ready(
        c(params, x, key)), args.repeats)
    fields = rate_fields(n * t, seconds)
    value = fields.pop('value')
    em.emit('mc_sweep_chunk', value, 'forwards/s', chunk=chunk,
            batch=t * chunk, auto=chunk == auto,
            auto_chunk=auto, temp_mib=_round(temp / 2**20),
            compile_s=_round(compile_s), pool_size=n, T=t, **fields)
    log(f'mc_sweep chunk={chunk} (batch {t * chunk}): {value:.0f} '
        f'forwards/s, temporaries {temp / 2**20:.0f} MiB')


def bench_sweep_memory(args, em: Emitter, defaults: dict[str, Any]) -> None:
  """Compiled memory of the MC sweep at two pool sizes (XLA's analysis).

  `mc_sweep_memory`: temporaries in MiB at --iteration_pool_size and
  --large_pool_size (the pool itself is an argument, listed apart): chunking
  bounds the temporaries by the chunk, so they should not grow with N.
  Nothing is executed, so the 60,000 pool costs two compilations only.
  """
  model = models.build_model('cnn', NUM_CLASSES,
                             dropout_bits=defaults['dropout_bits'],
                             mask_impl=defaults['mask_impl'])
  params = model.init(jax.random.key(args.seed), jnp.zeros((1,) + IMAGE_SHAPE))
  # The chunk a run uses here (config.chunk_size 0, 'auto').
  chunk = mc_dropout.auto_chunk_size(jax.devices()[0].platform, args.T)
  sweep = jax.jit(functools.partial(
      mc_dropout.mc_sweep, model.apply, num_passes=args.T, chunk_size=chunk,
      score_names=(defaults['acquisition'],)))
  mib = 2.0**20
  stats = {}
  for n in (args.iteration_pool_size, args.large_pool_size):
    analysis = sweep.lower(
        params, jax.ShapeDtypeStruct((n,) + IMAGE_SHAPE, jnp.float32),
        jax.random.key(args.seed)).compile().memory_analysis()
    if analysis is None:
      em.emit('mc_sweep_memory', None, 'MiB', skipped='no memory analysis')
      return
    stats[n] = analysis
  small, large = args.iteration_pool_size, args.large_pool_size
  temp = {n: a.temp_size_in_bytes / mib for n, a in stats.items()}
  em.emit('mc_sweep_memory', round(temp[large], 1), 'MiB',
          what='compiled temporaries of mc_sweep at the large pool',
          pool_sizes=[small, large],
          temp_mib=[round(temp[small], 1), round(temp[large], 1)],
          argument_mib=[round(stats[n].argument_size_in_bytes / mib, 1)
                        for n in (small, large)],
          output_mib=[round(stats[n].output_size_in_bytes / mib, 2)
                      for n in (small, large)],
          temp_growth_mib=round(temp[large] - temp[small], 2),
          T=args.T, chunk=chunk)
  log(f'mc_sweep_memory: temporaries {temp[small]:.1f} MiB at {small}, '
      f'{temp[large]:.1f} MiB at {large}')


# ----------------------------------------------------------------------------
# Training step.


def bench_train(args, em: Emitter, defaults: dict[str, Any]) -> float:
  """Samples/s of `training.train_step` at --batch_size, two ways.

  `train_step`: --train_steps steps inside one compiled `fori_loop`, the way
  the library runs its steps (the epoch is a while_loop; no step is ever
  dispatched from Python). `train_step_dispatched`: the same jitted step
  called from a Python loop with the state donated, the way the PyTorch
  baseline runs. Each step reads its own batch (4 batches in rotation).
  """
  b = args.batch_size
  model = models.build_model('cnn', NUM_CLASSES,
                             dropout_bits=defaults['dropout_bits'],
                             mask_impl=defaults['mask_impl'])
  optimizer = training.make_optimizer(defaults['learning_rate'])
  key = jax.random.key(args.seed, impl=defaults['prng_impl'])
  k_batches, k_init, k_steps = jax.random.split(key, 3)
  xs, ys = train_batches(k_batches, b)
  weight = jnp.ones((b,), jnp.float32)
  params = model.init(k_init, xs[0, :1])
  steps = args.train_steps
  step_keys = jax.random.split(k_steps, steps)

  def train_step(state, x, y, key):
    return training.train_step(state, optimizer, model.apply, x, y,
                               weight, key, defaults['l2'])

  looped = looped_steps(train_step, xs, ys, steps)

  context = dict(batch_size=b, steps_per_block=steps,
                 dropout_bits=defaults['dropout_bits'],
                 mask_impl=defaults['mask_impl'],
                 prng_impl=defaults['prng_impl'],
                 conv_impl=models.resolved_conv_impl('auto'))
  rates = {}

  def fresh_state():  # Each program donates its own copy.
    p = jax.tree_util.tree_map(jnp.copy, params)
    return training.TrainState(p, optimizer.init(p))

  # Steps inside one compiled loop.
  state = fresh_state()
  compiled, compile_s = compile_aot(jax.jit(looped, donate_argnums=0),
                                    state, k_steps)
  run_looped = donating_runner(compiled, state, k_steps)

  # Steps dispatched one by one.
  state = fresh_state()
  single, single_compile_s = compile_aot(
      jax.jit(train_step, donate_argnums=0), state, xs[0], ys[0],
      step_keys[0])
  dispatched = [state]
  # Sliced before the clock starts: indexing a device array is a dispatch
  # of its own, which would be timed as the step's.
  step_args = [(xs[i % TRAIN_BATCHES], ys[i % TRAIN_BATCHES], step_keys[i])
               for i in range(steps)]
  jax.block_until_ready(step_args)

  def run_dispatched():
    s = dispatched[0]
    for x_i, y_i, key_i in step_args:
      s, loss = single(s, x_i, y_i, key_i)
    jax.block_until_ready((s, loss))
    dispatched[0] = s

  for name, run, c_s, how in (
      ('train_step', run_looped, compile_s, 'steps inside one compiled loop'),
      ('train_step_dispatched', run_dispatched, single_compile_s,
       'one jitted call per step from Python')):
    seconds = time_runs(run, args.repeats)
    fields = rate_fields(steps * b, seconds)
    value = fields.pop('value')
    em.emit(name, value, 'samples/s', compile_s=_round(c_s), how=how,
            gflops=_round(value * TRAIN_FLOP_FACTOR * FLOP_PER_FORWARD / 1e9),
            **context, **fields)
    log(f'{name}: {value:.0f} samples/s')
    rates[name] = value
  return rates['train_step']


def bench_train_epoch(args, em: Emitter, defaults: dict[str, Any],
                      step_rate: Optional[float]) -> None:
  """Samples/s of `train_epochs`: the same steps inside the compiled loop.

  This is how the EM iteration really trains (a while_loop over batches), so
  any gap to `train_step` is a cost of the loop, not of the network (XLA:CPU
  once ran native conv gradients ~15x slower inside a loop than outside).
  Once per `--steps_per_trip` value (steps per trip of that loop: the same
  result, a different number of loop-condition reads).
  """
  b = args.batch_size
  n = args.train_epoch_batches * b
  model = models.build_model('cnn', NUM_CLASSES,
                             dropout_bits=defaults['dropout_bits'],
                             mask_impl=defaults['mask_impl'])
  optimizer = training.make_optimizer(defaults['learning_rate'])
  key = jax.random.key(args.seed, impl=defaults['prng_impl'])
  k_x, k_init, k_epoch = jax.random.split(key, 3)
  x = random_images(k_x, n)
  labels = jnp.asarray(balanced_labels(n, args.seed))
  # Every sample a pseudo-labelled member, none up-sampled: |D| = n slots,
  # exactly `train_epoch_batches` full batches.
  labelled = jnp.zeros((n,), bool)
  member = jnp.ones((n,), bool)
  params = model.init(k_init, x[:1])
  state = training.TrainState(params, optimizer.init(params))

  base = None
  trips = [int(v) for v in str(args.steps_per_trip).split(',')]
  # Last, the first value's epoch with its batches shifted and flipped
  # (config.augment): what augmentation costs a training step.
  shifted = augment.Augment(shift=2, flip=True)
  for k, spec in [(k, augment.Augment()) for k in trips] + [(trips[0],
                                                            shifted)]:

    def epoch(state, key, k=k, spec=spec):
      return training.train_epochs(
          state, optimizer, model.apply, key, x, labels, labelled,
          member, jnp.int32(1), gt_upsample=1, mu=1.0, batch_size=b,
          capacity=n, l2=defaults['l2'], steps_per_trip=k, augment=spec)

    compiled, compile_s = compile_aot(jax.jit(epoch, donate_argnums=0),
                                      state, k_epoch)
    # Each value starts from the same state; the runs donate their copy.
    fresh = jax.tree_util.tree_map(jnp.copy, state)
    seconds = time_runs(donating_runner(compiled, fresh, k_epoch),
                        args.repeats)
    fields = rate_fields(n, seconds)
    value = fields.pop('value')
    extra = {}
    if base is None:
      base = value
      name = 'train_epoch'
      if step_rate:
        extra['train_step_over_epoch'] = _round(step_rate / value)
    elif spec.active:
      name = 'train_epoch_augment'
      extra.update(augment='shift:2+flip', vs_plain=_round(value / base))
    else:
      name = 'train_epoch_steps_per_trip'
      extra['vs_first'] = _round(value / base)
    em.emit(name, value, 'samples/s', compile_s=_round(compile_s),
            batch_size=b, batches=args.train_epoch_batches,
            steps_per_trip=k, dropout_bits=defaults['dropout_bits'],
            mask_impl=defaults['mask_impl'], prng_impl=defaults['prng_impl'],
            conv_impl=models.resolved_conv_impl('auto'), **extra, **fields)
    log(f'{name} steps_per_trip={k}: {value:.0f} samples/s'
        + (' (shift:2+flip)' if spec.active else ''))


# ----------------------------------------------------------------------------
# One EM iteration.


def iteration_config(args) -> Any:
  """The paper's MNIST protocol with all-data semi-supervision + entropy."""
  config = common.base_config()
  config.semi = 'all'
  config.acquisition = 'entropy'
  # Iteration 0 only serves as the warm-up that reaches the state of a later
  # iteration (D = labels + the whole pool); its 100-epoch initial phase
  # would be timed nowhere, so it trains not at all. Iteration 0 is never a
  # timed one, so this changes no measured value.
  config.initial_epochs = 0
  config.epochs_per_iteration = 1
  if args.quick:
    # Keeps the T=100 sweep over the labelled slots tiny (capacity: initial
    # labels + one query) and the epoch at two batches.
    config.initial_per_class = 1
    config.num_iterations = 2
    config.gt_upsample = 1
    config.chunk_size = args.chunk
    config.eval_chunk_size = 64
    config.batch_size = args.batch_size
  return config


def mc_flop_per_forward(num_passes: int) -> float:
  """Executed FLOPs of one MC-dropout forward at T passes per image: the
  first convolution is shared by the T passes (see FLOP_CONV1)."""
  return FLOP_PER_FORWARD - FLOP_CONV1 * (1 - 1 / num_passes)


def balanced_labels(n: int, seed: int) -> np.ndarray:
  """[n] int32 labels with every class as equal as possible, shuffled."""
  y = np.arange(n, dtype=np.int32) % NUM_CLASSES
  np.random.default_rng(seed).shuffle(y)
  return y


def swept_label_slots(num_labels: int, capacity: int, chunk: int) -> int:
  """Label slots the ground-truth sweep runs (one device): every row of each
  chunk that starts below `num_labels`."""
  chunk = min(chunk, capacity)
  starts = mc_dropout.chunk_starts(capacity, chunk)
  return chunk * int(mc_dropout.chunks_needed(starts, num_labels))


def iteration_flops(cfg: loop.LoopConfig, state: loop.LoopState, n: int,
                    test_size: int) -> dict[str, float]:
  """Executed FLOPs of one iteration from `state`, padding included.

  MC forwards: T' over the pool plus T over the label slots the sweep's
  chunks cover (those holding the labels, `mc_dropout.labelled_sweep`);
  validation: one forward per test image; training: every slot of the
  (padded) batches of one epoch over D, at 3x a forward.
  """
  counts = training.slot_counts(state.labelled, state.member,
                                cfg.gt_upsample)
  slots = int(jnp.sum(counts))
  batches = -(-slots // cfg.batch_size)
  trained = batches * cfg.batch_size * cfg.epochs_per_iteration
  gt_rows = swept_label_slots(int(jnp.sum(state.labelled)),
                              cfg.label_capacity, cfg.gt_chunk_size)
  forwards = (n * cfg.mc_passes_pool + gt_rows * cfg.mc_passes_gt
              + test_size)
  flops = (n * cfg.mc_passes_pool * mc_flop_per_forward(cfg.mc_passes_pool)
           + gt_rows * cfg.mc_passes_gt
           * mc_flop_per_forward(cfg.mc_passes_gt)
           + (test_size + TRAIN_FLOP_FACTOR * trained) * FLOP_PER_FORWARD)
  return {'mc_and_eval_forwards': forwards, 'train_samples': trained,
          'flop': float(flops)}


def bench_iteration(args, em: Emitter, n: int) -> Optional[dict[str, Any]]:
  """Seconds of one iteration (not iteration 0) at pool size n, one seed."""
  config = iteration_config(args)
  model = experiment.build_model(config, NUM_CLASSES)
  cfg = experiment.loop_config(
      config, n, NUM_CLASSES, jax.devices()[0].platform,
      mc_dropout.sample_activation_bytes(model.init, model.apply,
                                         IMAGE_SHAPE))
  optimizer = training.make_optimizer(config.learning_rate)
  kx, kt = jax.random.split(jax.random.key(args.seed))
  y = balanced_labels(n, args.seed)
  pool = loop.Pool(x=random_images(kx, n), y=jnp.asarray(y),
                   test_x=random_images(kt, args.test_size),
                   test_y=jnp.asarray(balanced_labels(args.test_size,
                                                      args.seed + 1)))
  idx = data_lib.balanced_initial_indices(y, config.initial_per_class,
                                          args.seed)
  labelled = np.zeros(n, bool)
  labelled[idx] = True
  key_data = jax.random.key_data(jax.random.key(args.seed,
                                                impl=cfg.prng_impl))
  state = jax.jit(loop.init_state, static_argnums=(0, 1, 3))(
      model.init, optimizer, key_data, cfg.prng_impl, pool.x[:1],
      jnp.asarray(labelled), pool.y)

  step = jax.jit(functools.partial(loop.iteration, cfg, model.apply,
                                   optimizer),
                 donate_argnums=0)
  compiled, compile_s = compile_aot(step, state, pool)
  holder = {'state': state}

  def run():
    s, metrics = compiled(holder['state'], pool)
    # The host loop reads the metrics every iteration; so does the timer.
    holder['metrics'] = jax.device_get(metrics)
    holder['state'] = s

  log(f'iteration n={n}: compiled in {compile_s:.1f}s; running iteration 0')
  # The warm-up run is iteration 0 (no training, see iteration_config);
  # after it D holds the labels and the whole pool.
  t0 = time.perf_counter()
  run()
  iteration0_s = time.perf_counter() - t0
  work = iteration_flops(cfg, holder['state'], n, args.test_size)
  seconds = time_runs(run, args.iteration_repeats, warmup=0)
  value = _round(statistics.median(seconds))
  m = holder['metrics']
  line = em.emit(
      'iteration', value, 's', compile_s=_round(compile_s), pool_size=n,
      test_size=args.test_size, samples=[_round(s) for s in seconds],
      stat=f'median of {len(seconds)}',
      warmup=('iteration 0, untrained (initial_epochs=0): MC sweeps and '
              'validation only'),
      warmup_s=_round(iteration0_s),
      iterations_timed=[int(m['iteration']) - len(seconds) + 1 + i
                        for i in range(len(seconds))],
      semi=cfg.semi, acquisition=cfg.acquisition,
      mc_passes_gt=cfg.mc_passes_gt, mc_passes_pool=cfg.mc_passes_pool,
      label_capacity=cfg.label_capacity, chunk=cfg.chunk_size,
      gt_chunk=cfg.gt_chunk_size, batch_size=cfg.batch_size,
      dropout_bits=config.dropout_bits,
      prng_impl=cfg.prng_impl, num_train=int(m['num_train']),
      gflops=_round(work['flop'] / value / 1e9), **work)
  log(f'iteration n={n}: {value:.2f} s')
  return line


# ----------------------------------------------------------------------------
# Seeds: vmapped vs sequential.


def yinyang_dataset(seed: int) -> data_lib.Dataset:
  """The Yin-Yang toy: the library's loader, else SPEC §3's formula here."""
  if hasattr(data_lib, 'load_yinyang'):
    return data_lib.load_yinyang(seed=seed)
  rng = np.random.default_rng(seed)

  def draw(n):
    pts = []
    for center, sign in (((-0.33, 0.1), -1.0), ((0.33, -0.1), 1.0)):
      r = rng.normal(1.0, 0.25, n)
      phi = np.pi * (0.5 + 0.33 * rng.normal(0.0, 1.0, n))
      pts.append(np.asarray(center) + r[:, None] *
                 np.stack([np.cos(phi), sign * np.sin(phi)], axis=1))
    return (np.concatenate(pts).astype(np.float32),
            np.repeat(np.arange(2, dtype=np.int32), n))

  x, y = draw(500)
  xt, yt = draw(500)
  return data_lib.Dataset(x, y, xt, yt, num_classes=2, name='yinyang')


def mnist_small_dataset(args, n: int, test: int,
                        per_class: int) -> tuple[data_lib.Dataset, str]:
  """n real MNIST pool images if the idx files are found, else random ones.

  Random images also stand in when the first n real ones hold fewer than
  `per_class` examples of some class (the initial labelled set needs them).
  """
  if args.mnist_data == 'auto':
    root = os.environ.get('BASS_DATA_DIR') or str(REPO.parent / 'shared' /
                                                  'data')
    try:
      ds = data_lib.subset(
          data_lib.load_dataset('mnist', data_dir=root, source='idx'), n,
          test)
      if np.bincount(ds.y_train, minlength=NUM_CLASSES).min() >= per_class:
        return ds, 'mnist (idx files)'
      log(f'first {n} MNIST images lack {per_class} of a class; random images')
    except Exception as e:  # pylint: disable=broad-except
      log(f'real MNIST not loaded ({type(e).__name__}: {e}); random images')
  rng = np.random.default_rng(args.seed)
  ds = data_lib.Dataset(
      rng.random((n,) + IMAGE_SHAPE, dtype=np.float32),
      balanced_labels(n, args.seed),
      rng.random((test,) + IMAGE_SHAPE, dtype=np.float32),
      balanced_labels(test, args.seed + 1), num_classes=NUM_CLASSES,
      name='mnist_random')
  return ds, 'random images'


def run_steps(step: Callable, state_host, pool, iterations: int,
              placement) -> None:
  """`iterations` steps from a fresh device copy of a host state.

  The step donates its state, so every timed run starts from its own copy
  (put where `placement` says: a device or a pytree of shardings); the
  metrics are fetched every iteration as the real host loop does.
  """
  state = jax.device_put(state_host, placement)
  for _ in range(iterations):
    state, metrics = step(state, pool)
    jax.device_get(metrics)
  jax.block_until_ready(state)


def seed_layouts(num_seeds: int) -> list[tuple[str, list, str]]:
  """(benchmark name, devices, mesh_shape) of each S-seed layout to time.

  `seeds_vmap` is the S seeds over every device (the 'seed' axis: on a CPU
  split into cores by --cpu_devices, each core runs its S/D seeds);
  `seeds_vmap_one_device` is the same S-seed program on one device, shown
  when there are several.
  """
  devices = jax.devices()
  if len(devices) == 1 or num_seeds % len(devices):
    return [('seeds_vmap', devices[:1], 'data:-1')]
  return [('seeds_vmap', devices, f'seed:{len(devices)}'),
          ('seeds_vmap_one_device', devices[:1], 'data:-1')]


def seeds_data(ds, lo: int, hi: int):
  """The data of seeds lo..hi-1: `ds` if shared, else its slice (per seed)."""
  return ds[lo:hi] if isinstance(ds, list) else ds


class SeedLayout(NamedTuple):
  """One compiled S-seed run of `bench_seeds`, ready to time."""
  benchmark: str
  devices: int
  mesh_shape: str
  config_strategy: str   # config.seed_strategy as asked ('auto', ...).
  seed_strategy: str     # What it resolved to ('vmap' or 'map').
  per_seed_data: bool
  compile_s: float
  run: Callable[[], None]  # The timed iterations from a fresh state.


def seed_layout(config, ds, num_seeds: int, strategy: str, benchmark: str,
                devices: list, mesh_shape: str, iterations: int
                ) -> SeedLayout:
  """Builds and compiles the `num_seeds`-seed run of one layout."""
  c = config.copy_and_resolve_references()
  c.num_seeds, c.mesh_shape, c.seed_strategy = num_seeds, mesh_shape, strategy
  vm = experiment.build(c, ds, devices=devices)
  step, compile_s = compile_aot(vm.step, vm.state, vm.pool)
  shardings = jax.tree_util.tree_map(lambda a: a.sharding, vm.state)
  run = functools.partial(run_steps, step, jax.device_get(vm.state), vm.pool,
                          iterations, shardings)
  return SeedLayout(benchmark, len(devices), mesh_shape, strategy,
                    experiment.seed_strategy(c, vm.mesh, vm.dataset),
                    vm.per_seed_data, compile_s, run)


def single_seed_runs(config, ds, num_seeds: int, device, iterations: int
                     ) -> tuple[Callable[[], None], float, data_lib.Dataset]:
  """The seeds' single-seed runs on `device`, to time one after another.

  One compiled program serves every seed (the shapes agree). Returns
  (run: all `num_seeds` runs of `iterations` steps from fresh states,
  compile seconds, the first seed's dataset).
  """
  singles = []
  for j in range(num_seeds):
    c = config.copy_and_resolve_references()
    c.num_seeds, c.seed = 1, config.seed + j
    singles.append(experiment.build(c, seeds_data(ds, j, j + 1),
                                    devices=[device]))
  step, compile_s = compile_aot(singles[0].step, singles[0].state,
                                singles[0].pool)
  hosts = [jax.device_get(r.state) for r in singles]

  def run():
    for host, single in zip(hosts, singles):
      run_steps(step, host, single.pool, iterations, device)

  return run, compile_s, singles[0].dataset


def interleaved_seconds(first: Callable[[], None],
                        others: list[Callable[[], None]], repeats: int,
                        warmup: int) -> tuple[list[float], list[list[float]]]:
  """Seconds of `first` and of each of `others` over `repeats` rounds, each
  round timing all of them back to back (after `warmup` untimed rounds):
  ([repeats], [len(others)][repeats])."""
  for _ in range(warmup):
    for run in [first, *others]:
      run()
  first_s, others_s = [], [[] for _ in others]
  for _ in range(repeats):
    first_s += time_runs(first, 1, 0)
    for run, seconds in zip(others, others_s):
      seconds += time_runs(run, 1, 0)
  return first_s, others_s


def bench_seeds(args, em: Emitter, name: str, config, ds, iterations: int,
                repeats: int, warmup: int, data_note: str) -> None:
  """Wall time of S seeds in one run vs S single-seed runs, one after another.

  `ds`: one Dataset shared by the seeds, or a list of S, one per seed (as
  the Yin-Yang default draws them). The single-seed runs use one device,
  as a user's separate runs would.

  Every program is compiled first; then each of the `repeats` rounds times
  the single-seed runs and every S-seed layout back to back, so a drift of
  the machine's speed (30-50% between runs here) hits all of them alike.
  `value` is the median of the rounds' ratios.
  """
  s = args.num_seeds
  config.compilation_cache = ''  # See main().
  sequential, one_compile, first_data = single_seed_runs(
      config, ds, s, jax.devices()[0], iterations)
  layouts = [seed_layout(config, ds, s, strategy, benchmark, devices,
                         mesh_shape, iterations)
             for strategy in args.seed_strategies
             for benchmark, devices, mesh_shape in seed_layouts(s)]
  log(f'seeds {name}: compiled the single-seed program in {one_compile:.1f}s '
      f'and {len(layouts)} S-seed layouts')
  seq_seconds, vm_seconds = interleaved_seconds(
      sequential, [layout.run for layout in layouts], repeats, warmup)
  seq_s = statistics.median(seq_seconds)
  log(f'seeds {name}: {s} single-seed runs {seq_s:.2f}s')
  for layout, seconds in zip(layouts, vm_seconds):
    ratios = [a / b for a, b in zip(seq_seconds, seconds)]
    vm_s = statistics.median(seconds)
    em.emit(layout.benchmark, _round(statistics.median(ratios)),
            'x (sequential/vmapped)', compile_s=_round(layout.compile_s),
            compile_single_s=_round(one_compile), dataset=name,
            data=data_note, model=config.model, num_seeds=s,
            devices=layout.devices, mesh_shape=layout.mesh_shape,
            seed_strategy=layout.seed_strategy,
            default=layout.config_strategy == 'auto', iterations=iterations,
            pool_size=int(first_data.x_train.shape[0]),
            test_size=int(first_data.x_test.shape[0]),
            per_seed_data=layout.per_seed_data, wall_vmapped_s=_round(vm_s),
            wall_sequential_s=_round(seq_s),
            ratio_per_round=[_round(r) for r in ratios],
            samples_vmapped_s=[_round(x) for x in seconds],
            samples_sequential_s=[_round(x) for x in seq_seconds],
            stat=f'median of {repeats} interleaved rounds',
            warmup_runs=warmup, config_arg=getattr(config, 'variant', ''))
    log(f'{layout.benchmark} {name} ({layout.config_strategy}): {s} seeds '
        f'on {layout.devices} device(s) {vm_s:.2f}s vs {seq_s:.2f}s '
        'sequential')
  bench_seed_processes(args, em, name, config, ds, iterations, repeats,
                       seq_s, data_note)
  bench_seeds_one_core(args, em, name, config, ds, iterations, repeats,
                       seq_s, data_note)


def pinned_cores(groups: int) -> list[int]:
  """`groups` cores of this process to pin seed groups to; [] if it can't."""
  if not hasattr(os, 'sched_getaffinity') or groups < 2:
    return []
  cores = sorted(os.sched_getaffinity(0))
  return cores[:groups] if len(cores) >= groups else []


def pinned_worker_device(core: int) -> jax.Device:
  """A spawned worker's JAX device, the process pinned to `core` first (so
  JAX's thread pools start with one thread) and, as in main(), without
  JAX's persistent cache, so that its compile_s is a compilation."""
  os.sched_setaffinity(0, {core})
  experiment.use_compilation_cache('')
  return jax.devices()[0]


def _seed_group_worker(core: int, config, ds, iterations: int, repeats: int,
                       barrier, results) -> None:
  """One seed group's run in its own process, pinned to `core`.

  Runs in a fresh (spawned) interpreter: the affinity is set before JAX
  starts, so its thread pools hold one thread each. Every timed run starts
  at a barrier shared with the other groups, so they run concurrently.
  """
  device = pinned_worker_device(core)
  r = experiment.build(config, ds, devices=[device])
  step, compile_s = compile_aot(r.step, r.state, r.pool)
  host = jax.device_get(r.state)
  seconds = []
  for _ in range(repeats):
    barrier.wait(timeout=900)
    t0 = time.perf_counter()
    run_steps(step, host, r.pool, iterations, device)
    seconds.append(time.perf_counter() - t0)
  results.put((core, compile_s, seconds))


def bench_seed_processes(args, em: Emitter, name: str, config, ds,
                         iterations: int, repeats: int, seq_s: float,
                         data_note: str) -> None:
  """`seeds_processes`: the S seeds as D processes, one pinned core each.

  Each process runs S/D seeds vmapped (as `seeds_vmap` does per device) but
  shares no runtime with the others: no common thread pool, no lockstep.
  So it measures what the cores give when nothing in between interferes,
  a reference for `seeds_vmap` on this machine. CPU only.
  """
  if not args.seed_processes or jax.devices()[0].platform != 'cpu':
    return
  s, groups = args.num_seeds, args.cpu_devices
  cores = pinned_cores(groups)
  if not cores or s % groups:
    return
  per = s // groups
  ctx = multiprocessing.get_context('spawn')
  barrier, results = ctx.Barrier(groups), ctx.Queue()
  procs = []
  for g, core in enumerate(cores):
    c = config.copy_and_resolve_references()
    c.num_seeds, c.seed, c.mesh_shape = per, config.seed + g * per, 'data:-1'
    c.cpu_devices = 0
    procs.append(ctx.Process(target=_seed_group_worker, args=(
        core, c, seeds_data(ds, g * per, (g + 1) * per), iterations,
        repeats, barrier, results)))
  for p in procs:
    p.start()
  got = []
  # Poll, so a group that dies (before or after the barrier) ends the
  # measurement at once instead of leaving the others waiting.
  while len(got) < groups:
    try:
      got.append(results.get(timeout=2))
    except queue.Empty:
      codes = [p.exitcode for p in procs]
      if any(c not in (None, 0) for c in codes) or None not in codes:
        barrier.abort()
        break
  for p in procs:
    p.join(timeout=60)
    if p.is_alive():
      p.kill()
  if len(got) < groups:
    codes = [p.exitcode for p in procs]
    em.emit('seeds_processes', None, 'x (sequential/processes)',
            dataset=name, error=f'a seed-group process failed: exit codes '
            f'{codes}')
    return
  walls = [max(sec[i] for _, _, sec in got) for i in range(repeats)]
  wall = statistics.median(walls)
  em.emit('seeds_processes', _round(seq_s / wall), 'x (sequential/processes)',
          compile_s=_round(max(c for _, c, _ in got)), dataset=name,
          data=data_note, model=config.model, num_seeds=s, processes=groups,
          seeds_per_process=per, cores=cores, iterations=iterations,
          wall_processes_s=_round(wall), wall_sequential_s=_round(seq_s),
          samples_processes_s=[_round(w) for w in walls],
          stat=f'median of {repeats}',
          what=f'{groups} processes, each pinned to one core and running '
          f'{per} seeds vmapped, timed from a shared barrier (compilation '
          'excluded): the cores with nothing shared between them')
  log(f'seeds_processes {name}: {s} seeds as {groups} pinned processes '
      f'{wall:.2f}s vs {seq_s:.2f}s sequential')


def _one_core_worker(core: int, config, ds, iterations: int, repeats: int,
                     results) -> None:
  """S single-seed runs and one S-seed run, one process pinned to `core`.

  As `bench_seeds` times them (one compiled single-seed program, the S-seed
  program on one device, interleaved rounds), but with one core and a
  one-thread runtime: what batching the seeds saves on a core.
  """
  device = pinned_worker_device(core)
  sequential, _, _ = single_seed_runs(config, ds, config.num_seeds, device,
                                      iterations)
  multi = experiment.build(config, ds, devices=[device])
  multi_step, _ = compile_aot(multi.step, multi.state, multi.pool)
  multi_host = jax.device_get(multi.state)
  seq_s, (multi_s,) = interleaved_seconds(
      sequential, [lambda: run_steps(multi_step, multi_host, multi.pool,
                                     iterations, device)], repeats, 0)
  results.put((experiment.seed_strategy(config, multi.mesh, multi.dataset),
               seq_s, multi_s))


def bench_seeds_one_core(args, em: Emitter, name: str, config, ds,
                         iterations: int, repeats: int, seq_s: float,
                         data_note: str) -> None:
  """`seeds_one_core`: what batching S seeds saves on one core, and how
  much faster one seed runs on every core than on one (CPU only).

  `seeds_vmap` over D cores can reach at most about D x `value` /
  `one_seed_speedup`: D cores each batching S/D seeds, against single-seed
  runs that already use more than one core.
  """
  if (not args.seed_processes or jax.devices()[0].platform != 'cpu' or
      not hasattr(os, 'sched_getaffinity')):
    return
  s, core = args.num_seeds, min(os.sched_getaffinity(0))
  c = config.copy_and_resolve_references()
  c.num_seeds, c.mesh_shape, c.cpu_devices = s, 'data:-1', 0
  ctx = multiprocessing.get_context('spawn')
  results = ctx.Queue()
  proc = ctx.Process(target=_one_core_worker, args=(
      core, c, ds, iterations, repeats, results))
  proc.start()
  got = None
  while got is None and (proc.is_alive() or not results.empty()):
    try:
      got = results.get(timeout=2)
    except queue.Empty:
      pass
  proc.join(timeout=60)
  if got is None:
    em.emit('seeds_one_core', None, 'x (sequential/S-seed, one core)',
            dataset=name, error=f'the pinned process failed: exit code '
            f'{proc.exitcode}')
    return
  strategy, pinned_seq, multi = got
  ratios = [a / b for a, b in zip(pinned_seq, multi)]
  pinned_seq_s = statistics.median(pinned_seq)
  em.emit('seeds_one_core', _round(statistics.median(ratios)),
          'x (sequential/S-seed, one core)', dataset=name, data=data_note,
          model=config.model, num_seeds=s, core=core, seed_strategy=strategy,
          iterations=iterations,
          wall_vmapped_s=_round(statistics.median(multi)),
          wall_sequential_s=_round(pinned_seq_s),
          ratio_per_round=[_round(r) for r in ratios],
          one_seed_speedup=_round(pinned_seq_s / seq_s),
          wall_sequential_all_cores_s=_round(seq_s),
          stat=f'median of {repeats} interleaved rounds',
          what='one process pinned to one core: S single-seed runs one after '
          'another vs one S-seed run (value); one_seed_speedup: the '
          'single-seed runs here vs on every core (wall_sequential_all_cores_s'
          ', from seeds_vmap)')
  log(f'seeds_one_core {name}: {s} seeds on one core '
      f'{statistics.median(multi):.2f}s vs {pinned_seq_s:.2f}s sequential; '
      f'the single-seed runs take {seq_s:.2f}s on every core')


def bench_all_seeds(args, em: Emitter) -> None:
  """seeds_vmap on Yin-Yang (paper config) and on MNIST-small (CNN)."""
  config = yinyang.get_config('active_semi')
  if args.quick:
    config.initial_epochs = 5
    config.mc_passes_gt = 10
  # Every seed its own draw, as the Yin-Yang config's default does.
  draws = [yinyang_dataset(experiment.data_seed_of(config, config.seed + j))
           for j in range(args.num_seeds)]
  bench_seeds(args, em, 'yinyang', config, draws, args.yinyang_iterations,
              args.repeats, 0, 'load_yinyang, one draw per seed')

  if args.quick:
    # Two more CNN-loop compilations would not fit a < 60 s smoke run.
    em.emit('seeds_vmap', None, 'x (sequential/vmapped)',
            dataset='mnist_small', skipped='--quick')
    return
  n = args.mnist_small_pool
  test = min(n, 500)
  config = common.base_config()
  config.name = 'mnist_small'
  config.variant = 'all,entropy'
  config.dataset = 'mnist'
  config.semi = 'all'
  config.acquisition = 'entropy'
  config.initial_per_class = args.mnist_small_per_class
  # A 100-epoch initial phase would dwarf the iterations being compared.
  config.initial_epochs = 1
  # Label capacity (initial + queries) follows the short run, not 200 its.
  config.num_iterations = args.mnist_small_iterations
  ds, note = mnist_small_dataset(args, n, test, config.initial_per_class)
  # On a CPU a warm-up round would add a third of the costliest benchmark
  # here, and with ahead-of-time compilation it only saves first-call
  # allocations.
  on_cpu = jax.devices()[0].platform == 'cpu'
  bench_seeds(args, em, 'mnist_small', config, ds,
              args.mnist_small_iterations, args.mnist_small_repeats,
              0 if on_cpu else 1, note)


# ----------------------------------------------------------------------------
# Roofline.


def emit_rooflines(args, em: Emitter, of: str, flops_per_s: float,
                   precision: str = 'default', **fields) -> None:
  """Achieved FLOP/s over the peaks (flags) of the precision the program
  computes at, one line each: fp32 for 'float32'; fp32 and TF32 for
  'default' (float32 arrays, convolutions and matmuls in TF32 on recent
  NVIDIA GPUs) and 'tensorfloat32'; bf16 for 'bfloat16'."""
  peaks = {'float32': ('fp32',), 'default': ('fp32', 'tf32'),
           'tensorfloat32': ('fp32', 'tf32'), 'bfloat16': ('bf16',)}
  for kind in peaks[precision]:
    peak = getattr(args, f'peak_{kind}_tflops')
    if peak is None:
      em.emit(f'roofline_{kind}', None, 'fraction of peak', of=of,
              program_precision=precision,
              achieved_tflops=_round(flops_per_s / 1e12),
              skipped=f'no {kind} peak known for this device: pass '
              f'--peak_{kind}_tflops', **fields)
      continue
    em.emit(f'roofline_{kind}', _round(flops_per_s / (peak * 1e12)),
            'fraction of peak', of=of, program_precision=precision,
            peak_tflops=peak, achieved_tflops=_round(flops_per_s / 1e12),
            flop_per_forward=FLOP_PER_FORWARD, flop_conv1=FLOP_CONV1,
            train_flop_factor=TRAIN_FLOP_FACTOR, **fields)


# ----------------------------------------------------------------------------
# PyTorch baseline (subprocess).


def default_torch_python() -> Optional[str]:
  """This interpreter if it can import torch, else None."""
  return sys.executable if importlib.util.find_spec('torch') else None


def bench_torch(args, em: Emitter, on_gpu: bool) -> dict[str, float]:
  """Runs torch_baseline.py in `--torch_python` and re-prints its lines."""
  names = ('torch_mc_sweep', 'torch_train_step')
  units = ('forwards/s', 'samples/s')

  def skipped(reason: str) -> dict[str, float]:
    for name, unit in zip(names, units):
      em.emit(name, None, unit, skipped=reason)
    log(f'torch skipped: {reason}')
    return {}

  if args.skip_torch:
    return skipped('--skip_torch')
  python = args.torch_python or default_torch_python()
  if python is None:
    return skipped(f'torch is not importable from {sys.executable}; pass '
                   '--torch_python')
  cmd = [python, str(REPO / 'benchmarks' / 'torch_baseline.py'),
         '--pool_size', str(args.pool_size), '--T', str(args.T),
         '--chunk', str(args.chunk), '--batch_size', str(args.batch_size),
         '--repeats', str(args.repeats), '--seed', str(args.seed),
         '--device', 'cuda' if on_gpu else 'cpu']
  log('torch: ' + ' '.join(cmd))
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO),
                          timeout=args.torch_timeout_s, check=False)
  except (OSError, subprocess.TimeoutExpired) as e:
    return skipped(f'{type(e).__name__}: {e}')
  if proc.returncode != 0:
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
    return skipped(f'exit {proc.returncode}: {" ".join(tail)}')
  results = {}
  for text in proc.stdout.splitlines():
    text = text.strip()
    if not text.startswith('{'):
      continue
    line = json.loads(text)
    name = line.pop('benchmark')
    value = line.pop('value')
    unit = line.pop('unit')
    # Its own device/threads fields win over ours: they describe torch.
    em.emit(name, value, unit, torch_python=python,
            **{('torch_' + k if k in em.context else k): v
               for k, v in line.items()})
    results[name] = value
  missing = [n for n in names if n not in results]
  if missing:
    for name in missing:
      em.emit(name, None, units[names.index(name)],
              skipped='no line from torch_baseline.py')
  return results


# ----------------------------------------------------------------------------


def library_defaults() -> dict[str, Any]:
  """The library's configured defaults (configs/common.py), to mark/match."""
  c = common.base_config()
  return {'dropout_bits': c.dropout_bits, 'prng_impl': c.prng_impl,
          'mask_impl': c.mask_impl,
          'learning_rate': c.learning_rate, 'l2': c.l2,
          'acquisition': c.acquisition}


def default_cpu_devices(num_seeds: int) -> int:
  """The largest divisor of num_seeds up to the core count."""
  cores = os.cpu_count() or 1
  return max(d for d in range(1, min(cores, num_seeds) + 1)
             if num_seeds % d == 0)


def main(argv: Optional[list[str]] = None) -> list[dict[str, Any]]:
  args = parse_args(argv)
  if args.cpu_devices is None:
    args.cpu_devices = default_cpu_devices(args.num_seeds)
  # Before JAX starts (it only shapes the CPU backend on an accelerator).
  sharding.set_cpu_devices(args.cpu_devices)
  # Every compile_s is a compilation, never a load from JAX's persistent
  # cache (which a run's config.compilation_cache='auto' would switch on).
  experiment.use_compilation_cache('')
  dev = jax.devices()[0]
  on_gpu = dev.platform == 'gpu'
  fill_defaults(args, on_gpu)
  fill_peaks(args, dev.device_kind)
  context = {**run_context(), 'quick': args.quick}
  if args.note:
    context['note'] = args.note
  em = Emitter(context, args.out)
  defaults = library_defaults()
  start = time.perf_counter()

  mc = {}
  train_rate = None
  if 'mc' in args.only:
    mc = bench_mc(args, em, defaults)
    if on_gpu and 'mc_sweep' in mc:
      emit_rooflines(args, em, 'mc_sweep',
                     mc['mc_sweep'] * mc_flop_per_forward(args.T),
                     dropout_bits=defaults['dropout_bits'],
                     prng_impl=defaults['prng_impl'], pool_size=args.pool_size)
    rates = bench_mc_precision(args, em, defaults, mc.get('mc_sweep'),
                               on_gpu)
    for precision, rate in rates.items() if on_gpu else ():
      emit_rooflines(args, em, f'mc_sweep_precision {precision}',
                     rate * mc_flop_per_forward(args.T), precision,
                     pool_size=args.pool_size)
    bench_mc_chunks(args, em, defaults, on_gpu)
  if 'train' in args.only:
    train_rate = bench_train(args, em, defaults)
    bench_train_epoch(args, em, defaults, train_rate)

  if 'iteration' in args.only:
    sizes = [args.iteration_pool_size]
    large = args.large_pool_size
    want_large = (on_gpu or args.full) and not args.skip_60k and not args.quick
    for n in sizes + ([large] if want_large else []):
      line = bench_iteration(args, em, n)
      if on_gpu and line is not None:
        emit_rooflines(args, em, 'iteration', line['flop'] / line['value'],
                       pool_size=n)
    if not want_large and not args.quick:
      em.emit('iteration', None, 's', pool_size=large,
              skipped=('--skip_60k' if args.skip_60k else
                       'off by default on CPU (~4-5 min); pass --full'))

  if 'seeds' in args.only:
    bench_all_seeds(args, em)

  if 'torch' in args.only:
    torch = bench_torch(args, em, on_gpu)
    if 'mc_sweep' in mc and torch.get('torch_mc_sweep'):
      em.emit('mc_vs_torch', _round(mc['mc_sweep'] / torch['torch_mc_sweep']),
              'ratio', numerator='mc_sweep (default bits/impl)',
              denominator='torch_mc_sweep', pool_size=args.pool_size,
              T=args.T, chunk=args.chunk)
    if train_rate and torch.get('torch_train_step'):
      em.emit('train_vs_torch', _round(train_rate /
                                       torch['torch_train_step']),
              'ratio', numerator='train_step', denominator='torch_train_step',
              batch_size=args.batch_size)
  log(f'done in {time.perf_counter() - start:.1f}s')
  return em.lines


if __name__ == '__main__':
  main(sys.argv[1:])
