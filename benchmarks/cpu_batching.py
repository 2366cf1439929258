r"""What batching buys on a CPU: the toy MLP's MC chunks, seed-batched convs.

Two measurements behind benchmarks/README.md's notes, as JSON lines (the format
of benchmarks/hot_path.py):

* `mlp_sweep_chunk`: forwards/s of the toy MLP's MC sweep per chunk size, at
  the shapes of a Table 1 iteration (T = 100 over 82 label slots, T' = 10
  over the 1,000-point pool); the chunk `mc_dropout.auto_chunk_size` picks
  for the MLP is marked `auto`. The chunks are timed interleaved, round by
  round, so a drifting machine slows them alike.
* `seed_batched_conv`: milliseconds of the paper CNN's 3x3 convolution for
  S seeds (each its own kernel and activations), three ways: `map` (S native
  convolutions one after another, what `seed_strategy='map'` runs), `vmap`
  (the batching rule's grouped convolution) and `vmap_patches` (3x3 patches
  times a batched matmul); `vs_map` is each one's time over map's.
* `epoch_shuffle`: milliseconds of `training.shuffled_slots` (an epoch's
  shuffle of D) at the slot capacities of Table 1's DeepBASS and 1,000-label
  rows and of the MNIST paper protocol, sorting uint32 words
  (`stable_argsort_u32`'s CPU path, `digit_sorts`) vs one (key, index) pair
  sort; both give the same permutation.
* `toy_epoch`: milliseconds of one training epoch (`train_epochs`) of 10
  vmapped toy seeds at iteration 0 of those two rows, with either sort.

  python benchmarks/cpu_batching.py --out=benchmarks/results/cpu_2core_batching.jsonl
  python benchmarks/cpu_batching.py --only=epoch_shuffle,toy_epoch
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import pathlib
import statistics
import sys
from typing import Callable, Optional

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'benchmarks'))

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp

import hot_path
from bass_jax import experiment
from bass_jax import mc_dropout
from bass_jax import models
from bass_jax import training
from configs import yinyang
# pylint: enable=g-import-not-at-top,wrong-import-position

MLP_SWEEPS = ((82, 100, (2, 10, 41, 82)), (1000, 10, (25, 100, 500, 1000)))
CONV_SHAPES = ((28, 1), (28, 16), (14, 16))  # (height = width, channels).
# Slot capacities (training.multiset_capacity) and pool sizes: Table 1's
# DeepBASS row, its 1,000-label row, the MNIST paper protocol.
SHUFFLES = ((2816, 1000), (20224, 1000), (66560, 60000))
TOY_EPOCH_ROWS = ('active_semi', 'supervised_1000')
GROUPS = ('mlp_sweep_chunk', 'seed_batched_conv', 'epoch_shuffle',
          'toy_epoch')


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--rounds', type=int, default=15,
                 help='interleaved timing rounds (median reported)')
  p.add_argument('--num_seeds', type=int, default=4)
  p.add_argument('--batch', type=int, default=256,
                 help='images per convolution (the CPU auto batch)')
  p.add_argument('--out', default=None, help='also append the lines here')
  p.add_argument('--note', default=None)
  p.add_argument('--only', default=','.join(GROUPS),
                 help=f'comma-separated subset of {",".join(GROUPS)}')
  args = p.parse_args(argv)
  args.only = [g.strip() for g in args.only.split(',') if g.strip()]
  if set(args.only) - set(GROUPS):
    p.error(f'--only: unknown {sorted(set(args.only) - set(GROUPS))}')
  return args


def interleaved_ms(fns: dict, rounds: int) -> dict:
  """Median milliseconds of each no-argument `fn`, timed round-robin."""
  samples = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      samples[name].extend(hot_path.time_runs(fn, 1, warmup=0))
  return {name: 1e3 * statistics.median(s) for name, s in samples.items()}


def bench_mlp_chunks(args, em: hot_path.Emitter) -> None:
  model = models.build_model('mlp', 2)
  params = model.init(jax.random.key(0), jnp.zeros((1, 2)))
  key = jax.random.key(1)
  sample_bytes = mc_dropout.sample_activation_bytes(model.init, model.apply,
                                                    (2,))
  for n, t, chunks in MLP_SWEEPS:
    x = jax.random.normal(jax.random.key(2), (n, 2))
    auto = min(n, mc_dropout.auto_chunk_size('cpu', t, sample_bytes))
    runs = {}
    for chunk in chunks:
      sweep = jax.jit(functools.partial(
          mc_dropout.mc_sweep, model.apply, num_passes=t, chunk_size=chunk,
          score_names=('entropy',)))
      compiled, _ = hot_path.compile_aot(sweep, params, x, key)
      runs[chunk] = lambda c=compiled: jax.block_until_ready(c(params, x,
                                                               key))
    for chunk, ms in interleaved_ms(runs, args.rounds).items():
      em.emit('mlp_sweep_chunk', hot_path._round(n * t / ms * 1e3),  # pylint: disable=protected-access
              'forwards/s', pool_size=n, T=t, chunk=chunk, batch=chunk * t,
              auto=chunk == auto, ms=hot_path._round(ms),  # pylint: disable=protected-access
              stat=f'median of {args.rounds} interleaved rounds')


def bench_seed_convs(args, em: hot_path.Emitter) -> None:
  s, b = args.num_seeds, args.batch

  def patches(x, k):
    return models.shifted_patches(x, 3) @ k.reshape(-1, k.shape[-1])

  ways = {
      'map': lambda x, k: jax.lax.map(lambda a: models.conv_same(*a), (x, k)),
      'vmap': jax.vmap(models.conv_same),
      'vmap_patches': jax.vmap(patches),
  }
  for h, c in CONV_SHAPES:
    x = jax.random.uniform(jax.random.key(0), (s, b, h, h, c))
    k = jax.random.uniform(jax.random.key(1), (s, 3, 3, c, 16))
    runs = {}
    for name, fn in ways.items():
      compiled, _ = hot_path.compile_aot(jax.jit(fn), x, k)
      runs[name] = lambda f=compiled: jax.block_until_ready(f(x, k))
    ms = interleaved_ms(runs, args.rounds)
    for name, value in ms.items():
      em.emit('seed_batched_conv', hot_path._round(value), 'ms', way=name,  # pylint: disable=protected-access
              vs_map=hot_path._round(value / ms['map']),  # pylint: disable=protected-access
              num_seeds=s, batch=b, height=h, channels_in=c, features=16,
              stat=f'median of {args.rounds} interleaved rounds')


SORT_WAYS = {'uint32_digits': True, 'key_index_pairs': False}


@contextlib.contextmanager
def forced_sort(digit_sorts: bool):
  """`training.stable_argsort_u32` with its CPU path on or off, while tracing."""
  original = training.stable_argsort_u32
  training.stable_argsort_u32 = functools.partial(original,
                                                  digit_sorts=digit_sorts)
  try:
    yield
  finally:
    training.stable_argsort_u32 = original


def emit_sort_ways(args, em: hot_path.Emitter, benchmark: str, fn: Callable,
                   *fn_args, **fields) -> None:
  """`fn(*fn_args)` compiled with each sort way, timed interleaved, emitted."""
  runs = {}
  for way, digits in SORT_WAYS.items():
    with forced_sort(digits):
      # A fresh function per way: jit would reuse the first way's trace.
      compiled, _ = hot_path.compile_aot(jax.jit(lambda *a: fn(*a)), *fn_args)
    runs[way] = lambda c=compiled: jax.block_until_ready(c(*fn_args))
  ms = interleaved_ms(runs, args.rounds)
  for way, value in ms.items():
    em.emit(benchmark, hot_path._round(value), 'ms', sort=way,  # pylint: disable=protected-access
            vs_pairs=hot_path._round(value / ms['key_index_pairs']),  # pylint: disable=protected-access
            **fields, stat=f'median of {args.rounds} interleaved rounds')


def bench_epoch_shuffle(args, em: hot_path.Emitter) -> None:
  for capacity, n in SHUFFLES:
    # D as late in a run: every pool sample a member, 1% labelled (x20).
    counts = jnp.where(jnp.arange(n) % 100 == 0, 20, 1).astype(jnp.int32)
    counts = counts.at[n - 1].set(0)
    emit_sort_ways(args, em, 'epoch_shuffle',
                   functools.partial(training.shuffled_slots,
                                     capacity=capacity),
                   jax.random.key(0), counts, capacity=capacity, pool_size=n)


def bench_toy_epoch(args, em: hot_path.Emitter) -> None:
  for row in TOY_EPOCH_ROWS:
    config = yinyang.get_config(row)
    config.compilation_cache = ''
    r = experiment.build(config, hot_path.yinyang_dataset(config.data_seed),
                         devices=jax.devices()[:1])
    cfg = r.loop_config
    optimizer = training.make_optimizer(config.learning_rate)

    def epoch(st, cfg=cfg, r=r, optimizer=optimizer):
      return training.train_epochs(
          st.train, optimizer, r.model.apply, jax.random.key(0), r.pool.x,
          st.labels, st.labelled, st.member, jnp.int32(1),
          gt_upsample=cfg.gt_upsample, mu=cfg.mu, batch_size=cfg.batch_size,
          capacity=cfg.train_capacity, l2=cfg.l2)

    emit_sort_ways(args, em, 'toy_epoch', jax.vmap(epoch), r.state, row=row,
                   num_seeds=config.num_seeds, capacity=cfg.train_capacity,
                   state='iteration 0')


def main(argv: Optional[list[str]] = None) -> None:
  args = parse_args(argv)
  experiment.use_compilation_cache('')
  context = hot_path.run_context()
  if args.note:
    context['note'] = args.note
  em = hot_path.Emitter(context, args.out)
  benches = {'mlp_sweep_chunk': bench_mlp_chunks,
             'seed_batched_conv': bench_seed_convs,
             'epoch_shuffle': bench_epoch_shuffle, 'toy_epoch': bench_toy_epoch}
  for group in args.only:
    benches[group](args, em)


if __name__ == '__main__':
  main(sys.argv[1:])
