r"""Where a training step and a seed-vmapped MC sweep spend their time.

On the paper's MNIST CNN (random parameters and images: speed does not
depend on them), once per convolution implementation (--conv_impls), one
JSON line per measurement, each program timed after a warm-up run
(compilation reported apart as `compile_s`), median of --repeats:

* `step_part`: milliseconds per step of batch --batch_size, --steps steps
  inside one compiled loop (as an epoch runs them), for three programs that
  each add one stage: 'forward' (the loss), 'grad' (loss and gradients),
  'step' (gradients and the Adam update, `training.train_step`). The
  differences are what the backward pass and the optimizer cost. Each line
  has `hlo_ops`: the operations of one step's optimized HLO outside fused
  computations (fusions, library calls, copies, ...), about the kernels a
  GPU launches per step, so ms / hlo_ops is the time per kernel.
* `sweep_seeds`: forwards/s of the MC sweep of a pool (T passes, the
  library's default masks and chunk) with --num_seeds seeds' parameters,
  `seed_strategy` 'vmap' (one batched program, the loop's default) and
  'map' (seeds one after another in one program); `vs_map` on the vmap
  line. What a 10-seed paper run's iterations mostly are on a GPU.

  python benchmarks/step_anatomy.py
  python benchmarks/step_anatomy.py --conv_impls=xla,patches --num_seeds=10
"""

from __future__ import annotations

import argparse
import collections
import functools
import pathlib
import re
import sys
import time
from typing import Any, Callable, Optional

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'benchmarks'))

import hot_path  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position

from bass_jax import mc_dropout  # pylint: disable=g-import-not-at-top,wrong-import-position
from bass_jax import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from bass_jax import training  # pylint: disable=g-import-not-at-top,wrong-import-position

PARTS = ('forward', 'grad', 'step')
# HLO operations that are bookkeeping, never a kernel of their own.
_NOT_KERNELS = frozenset((
    'parameter', 'constant', 'get-tuple-element', 'tuple', 'bitcast',
    'while', 'conditional', 'call', 'after-all', 'partition-id',
    'replica-id', 'opt-barrier', 'add-dependency'))
# `%name = TYPE opcode(`; TYPE may be a tuple with spaces inside.
_OP = re.compile(r'^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*.*?\s([a-z][\w\-]*)\(')
# A computation that runs inside an operation (a fusion's body, a reduce's
# combiner, a sort's comparator) rather than as kernels of its own; a
# `call`'s to_apply is not one of those (its operations are kernels).
_INNER = re.compile(r'\b(?:calls|to_apply|comparator)=%?([\w.\-]+)')


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--quick', action='store_true', help='tiny sizes: a smoke run')
  p.add_argument('--conv_impls', default=None,
                 help='comma-separated models.CONV_IMPLS (default: '
                 "xla,fast_grad,patches on a GPU, the platform's auto "
                 'and patches on a CPU)')
  p.add_argument('--batch_size', type=int, default=256)
  p.add_argument('--steps', type=int, default=None,
                 help='steps per timed loop (default 64 GPU, 4 CPU)')
  p.add_argument('--num_seeds', type=int, default=None,
                 help='seeds of sweep_seeds (default 10 GPU, 4 CPU)')
  p.add_argument('--pool_size', type=int, default=None,
                 help='pool of sweep_seeds (default 6,000 GPU, 256 CPU)')
  p.add_argument('--T', type=int, default=10, help='MC passes of the sweep')
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--out', default=None, help='also append the lines here')
  return p.parse_args(argv)


def fill_defaults(args: argparse.Namespace, on_gpu: bool) -> None:
  big = on_gpu and not args.quick
  if args.conv_impls is None:
    args.conv_impls = ('xla,fast_grad,patches' if on_gpu else
                       f'{models.resolved_conv_impl("auto")},patches')
  args.conv_impls = [c.strip() for c in args.conv_impls.split(',')]
  for impl in args.conv_impls:
    models.resolved_conv_impl(impl)  # ValueError names the known ones.
  if args.steps is None:
    args.steps = 64 if big else (2 if args.quick else 4)
  if args.num_seeds is None:
    args.num_seeds = 10 if big else (2 if args.quick else 4)
  if args.pool_size is None:
    args.pool_size = 6000 if big else (32 if args.quick else 256)
  if args.quick:
    args.batch_size = min(args.batch_size, 32)
    args.repeats = min(args.repeats, 2)


def kernel_ops(hlo_text: str) -> int:
  """Operations outside fused/called computations of an optimized HLO module.

  Each such operation (a fusion, a convolution or GEMM library call, a
  copy, a sort, ...) is about one kernel launch on a GPU; the bookkeeping
  ones in `_NOT_KERNELS` are left out.
  """
  inner = set()
  for line in hlo_text.splitlines():
    match = _OP.match(line)
    if match and match.group(1) != 'call':
      inner.update(_INNER.findall(line))
  count, current = 0, None
  for line in hlo_text.splitlines():
    stripped = line.strip()
    if stripped.endswith('{') and '=' not in stripped.split('(')[0]:
      # A computation's header: `%name (args) -> type {` or `ENTRY %name ...`.
      current = stripped.split()[1 if stripped.startswith('ENTRY') else 0]
      current = current.lstrip('%')
      continue
    if stripped == '}':
      current = None
      continue
    if current is None or current in inner:
      continue
    match = _OP.match(line)
    if match and match.group(1) not in _NOT_KERNELS:
      count += 1
  return count


def part_fn(part: str, apply_fn: Callable, optimizer, l2: float,
            w: jax.Array) -> Callable:
  """One step's `(state, x, y, key) -> (state, loss)` up to `part`, every
  sample of weight `w` [B]."""
  def forward(state, x, y, key):
    return state, training.weighted_loss(state.params, apply_fn, x, y, w,
                                         key, l2)

  def grad(state, x, y, key):
    loss, grads = jax.value_and_grad(training.weighted_loss)(
        state.params, apply_fn, x, y, w, key, l2)
    # Folded into the carried state so the gradients are not dead code.
    params = jax.tree_util.tree_map(lambda p, g: p + 0.0 * g, state.params,
                                    grads)
    return training.TrainState(params, state.opt_state), loss

  def step(state, x, y, key):
    return training.train_step(state, optimizer, apply_fn, x, y, w, key, l2)

  return {'forward': forward, 'grad': grad, 'step': step}[part]


def bench_step_parts(args, em: hot_path.Emitter, conv_impl: str,
                     defaults: dict[str, Any]) -> None:
  """`step_part` lines for one convolution implementation."""
  b, steps = args.batch_size, args.steps
  model = models.build_model('cnn', hot_path.NUM_CLASSES,
                             dropout_bits=defaults['dropout_bits'],
                             mask_impl=defaults['mask_impl'],
                             conv_impl=conv_impl)
  optimizer = training.make_optimizer(defaults['learning_rate'])
  k_batches, k_init, k_run = jax.random.split(jax.random.key(args.seed), 3)
  xs, ys = hot_path.train_batches(k_batches, b)
  w = jnp.ones((b,), jnp.float32)
  params = model.init(k_init, xs[0, :1])
  previous = None
  for part in PARTS:
    one = part_fn(part, model.apply, optimizer, defaults['l2'], w)
    state = training.TrainState(params, optimizer.init(params))
    single, _ = hot_path.compile_aot(jax.jit(one), state, xs[0], ys[0], k_run)
    ops = kernel_ops(single.as_text())
    compiled, compile_s = hot_path.compile_aot(
        jax.jit(hot_path.looped_steps(one, xs, ys, steps), donate_argnums=0),
        state, k_run)
    fresh = jax.tree_util.tree_map(jnp.copy, state)
    seconds = hot_path.time_runs(
        hot_path.donating_runner(compiled, fresh, k_run), args.repeats)
    ms = sorted(seconds)[len(seconds) // 2] / steps * 1e3
    extra = {} if previous is None else {'added_ms': hot_path._round(
        ms - previous)}
    em.emit('step_part', hot_path._round(ms), 'ms/step', part=part,
            conv_impl=conv_impl, batch_size=b, steps=steps, hlo_ops=ops,
            us_per_op=hot_path._round(ms * 1e3 / ops) if ops else None,
            compile_s=hot_path._round(compile_s),
            seconds=[hot_path._round(s) for s in seconds],
            stat=f'median of {len(seconds)}', **extra)
    hot_path.log(f'step_part {part} conv_impl={conv_impl}: {ms:.3f} ms/step, '
                 f'{ops} HLO ops')
    previous = ms


def seed_sweep_programs(apply_fn: Callable, num_passes: int, chunk: int,
                        score_names: tuple[str, ...]
                        ) -> dict[str, Callable]:
  """{'map', 'vmap'}: `(params [S, ...], keys [S], x [N, ...]) -> stats`.

  The same MC sweeps of one shared pool for S seeds' parameters and keys,
  one seed after another ('map') or batched over seeds ('vmap'); each
  statistic is [S, N, ...].
  """
  one = functools.partial(mc_dropout.mc_sweep, apply_fn,
                          num_passes=num_passes, chunk_size=chunk,
                          score_names=score_names)
  return collections.OrderedDict(
      map=lambda p, k, x: jax.lax.map(lambda pk: one(pk[0], x, pk[1]),
                                      (p, k)),
      vmap=lambda p, k, x: jax.vmap(one, in_axes=(0, None, 0))(p, x, k))


def bench_sweep_seeds(args, em: hot_path.Emitter, conv_impl: str,
                      defaults: dict[str, Any]) -> None:
  """`sweep_seeds` lines (vmap and map) for one convolution implementation."""
  n, t, s = args.pool_size, args.T, args.num_seeds
  model = models.build_model('cnn', hot_path.NUM_CLASSES,
                             dropout_bits=defaults['dropout_bits'],
                             mask_impl=defaults['mask_impl'],
                             conv_impl=conv_impl)
  x = hot_path.random_images(jax.random.key(args.seed), n)
  init_keys = jax.random.split(jax.random.key(args.seed + 1), s)
  params = jax.vmap(lambda k: model.init(k, x[:1]))(init_keys)
  keys = jax.random.split(jax.random.key(args.seed + 2,
                                         impl=defaults['prng_impl']), s)
  chunk = mc_dropout.auto_chunk_size(jax.devices()[0].platform, t)
  programs = seed_sweep_programs(model.apply, t, chunk,
                                 (defaults['acquisition'],))
  rates = {}
  for strategy, program in programs.items():
    compiled, compile_s = hot_path.compile_aot(jax.jit(program), params, keys,
                                               x)
    seconds = hot_path.time_runs(
        lambda c=compiled: jax.block_until_ready(c(params, keys, x)),
        args.repeats)
    fields = hot_path.rate_fields(s * n * t, seconds)
    value = fields.pop('value')
    rates[strategy] = value
    extra = ({'vs_map': hot_path._round(value / rates['map'])}
             if strategy == 'vmap' else {})
    em.emit('sweep_seeds', value, 'forwards/s', seed_strategy=strategy,
            conv_impl=conv_impl, num_seeds=s, pool_size=n, T=t, chunk=chunk,
            compile_s=hot_path._round(compile_s), **extra, **fields)
    hot_path.log(f'sweep_seeds {strategy} conv_impl={conv_impl}: '
                 f'{value:.0f} forwards/s')


def main(argv: Optional[list[str]] = None) -> list[dict[str, Any]]:
  args = parse_args(argv)
  dev = jax.devices()[0]
  fill_defaults(args, dev.platform == 'gpu')
  context = hot_path.run_context()
  em = hot_path.Emitter(context, args.out)
  defaults = hot_path.library_defaults()
  start = time.perf_counter()
  for conv_impl in args.conv_impls:
    bench_step_parts(args, em, conv_impl, defaults)
    bench_sweep_seeds(args, em, conv_impl, defaults)
  hot_path.log(f'done in {time.perf_counter() - start:.1f}s')
  return em.lines


if __name__ == '__main__':
  main()
