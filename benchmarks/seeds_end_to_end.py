r"""S seeds as one vmapped run vs S single-seed runs, end to end, as JSON lines.

What a user pays for S seeds either way: each run is a fresh
`launch/train.py` process (imports, data, compilation, every iteration,
checkpoints, summary), timed by its wall clock. The single-seed runs use
seeds seed, seed + 1, ...; the vmapped run holds the same seeds, and the
per-seed accuracies of both must agree (they are the same computation), so
the comparison is of equal work. The S-seed run is timed in two layouts:
'cores' (`--config.cpu_devices=D --config.mesh_shape=seed:D`, each of D
CPU devices runs S/D seeds; D = the largest divisor of S up to the core
count) and 'one_device' (the default config: one program on one device).

Prints (stdout, one JSON object per line, like benchmarks/hot_path.py):

  {"benchmark": "seeds_end_to_end", "value": sequential_s / vmapped_s,
   "unit": "x (sequential/vmapped)", "config": ..., "wall_sequential_s": [...],
   "wall_vmapped_s": ..., "per_seed_acc_equal": true, ...}

  python benchmarks/seeds_end_to_end.py --config=configs/yinyang.py:active_semi
  python benchmarks/seeds_end_to_end.py \
      --config=configs/mnist.py:alldata_maxent,small
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'benchmarks'))

import hot_path  # pylint: disable=g-import-not-at-top,wrong-import-position


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--config', default='configs/yinyang.py:active_semi',
                 help='config file[:arg] as for launch/train.py')
  p.add_argument('--num_seeds', type=int, default=4)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--python', default=sys.executable)
  p.add_argument('--workdir', default=None,
                 help='where the runs write (default: a temporary folder)')
  p.add_argument('--layouts', default='cores,one_device',
                 help="S-seed run layouts to time: 'cores', 'one_device'")
  p.add_argument('--out', default=None, help='also append the lines here')
  p.add_argument('--note', default=None)
  return p.parse_args(argv)


def layout_flags(layout: str, num_seeds: int) -> list[str]:
  if layout == 'one_device':
    return []
  d = hot_path.default_cpu_devices(num_seeds)
  return [f'--config.cpu_devices={d}', f'--config.mesh_shape=seed:{d}']


def timed_run(args, workdir: pathlib.Path, seed: int, num_seeds: int,
              extra: tuple[str, ...] = ()) -> tuple[float, dict[str, Any]]:
  """Wall seconds of one `launch/train.py` process and its summary.json."""
  cmd = [args.python, str(REPO / 'launch' / 'train.py'),
         f'--config={args.config}', f'--config.seed={seed}',
         f'--config.num_seeds={num_seeds}', f'--workdir={workdir}',
         # Every run compiles: no run loads another's program from JAX's
         # persistent cache (with it, S single-seed runs compile once).
         '--config.compilation_cache=', *extra]
  start = time.perf_counter()
  proc = subprocess.run(cmd, cwd=str(REPO), capture_output=True, text=True,
                        check=False)
  wall = time.perf_counter() - start
  if proc.returncode != 0:
    sys.exit(f'run failed ({proc.returncode}): {" ".join(cmd)}\n'
             f'{proc.stderr[-2000:]}')
  summary = json.loads((workdir / 'summary.json').read_text())
  print(f'[train.py] seeds {seed}..{seed + num_seeds - 1} '
        f'{" ".join(extra)}: {wall:.1f}s', file=sys.stderr, flush=True)
  return wall, summary


def main(argv: Optional[list[str]] = None) -> list[dict[str, Any]]:
  args = parse_args(argv)
  root = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix='seeds_e2e_'))
  s = args.num_seeds
  sequential, single_run_s, single_acc = [], [], {}
  for j in range(s):
    wall, summary = timed_run(args, root / f'seed_{args.seed + j}',
                              args.seed + j, 1)
    sequential.append(wall)
    single_run_s.append(summary.get('wall_s'))
    single_acc.update(summary['val_acc']['per_seed'])
  lines = []
  for layout in [x.strip() for x in args.layouts.split(',') if x.strip()]:
    if layout not in ('cores', 'one_device'):
      sys.exit(f"--layouts: unknown layout {layout!r}; use 'cores' or "
               "'one_device'")
    flags = layout_flags(layout, s)
    vm_wall, vm_summary = timed_run(args, root / f'seeds_{layout}',
                                    args.seed, s, tuple(flags))
    vm_acc = vm_summary['val_acc']['per_seed']
    # Same seeds, same computation: equal up to float reduction order.
    equal = (set(vm_acc) == set(single_acc) and
             all(abs(vm_acc[k] - single_acc[k]) <= 0.005 for k in vm_acc))
    line = {
        'benchmark': 'seeds_end_to_end',
        'value': round(sum(sequential) / vm_wall, 3),
        'unit': 'x (sequential/vmapped)',
        # The host's; the runs' own devices are the layout's.
        **{k: v for k, v in hot_path.run_context().items()
           if k != 'num_devices'},
        'compile_s': None, 'config': args.config, 'num_seeds': s,
        'layout': layout, 'flags': flags,
        'what': 'S fresh launch/train.py processes (1 seed each) vs one '
                'with S seeds: imports, data, compilation and every '
                'iteration',
        'wall_sequential_s': [round(w, 2) for w in sequential],
        'wall_sequential_total_s': round(sum(sequential), 2),
        'wall_vmapped_s': round(vm_wall, 2),
        # experiment.run's own wall clock (no imports): summary.json wall_s.
        'run_wall_s_single': single_run_s,
        'run_wall_s_vmapped': vm_summary.get('wall_s'),
        'per_seed_acc_single': single_acc, 'per_seed_acc_vmapped': vm_acc,
        'per_seed_acc_equal': equal,
    }
    if args.note:
      line['note'] = args.note
    text = json.dumps(line)
    print(text, flush=True)
    if args.out:
      with open(args.out, 'a') as f:
        f.write(text + '\n')
    lines.append(line)
  return lines


if __name__ == '__main__':
  main(sys.argv[1:])
