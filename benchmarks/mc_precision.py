r"""What `mc_precision` does to a run: accuracy and E-step drift, as JSON lines.

The same config and seeds are run once per precision (a fresh
`launch/train.py` process each, like a user's runs); the first precision is
the reference. Only the MC sweeps change precision (training and validation
stay float32), so any difference comes from the sweeps' entropies: theta,
the pool entropies, hence D and the queries. Compared per seed, paired.

Prints (stdout, one JSON object per line, like benchmarks/hot_path.py):

  {"benchmark": "mc_precision_run", "value": mean final val_acc %,
   "precision": ..., "per_seed": {...}, "wall_s": ..., ...}
  {"benchmark": "mc_precision_effect", "value": mean paired difference of
   the final val_acc in points vs the reference, "per_seed_diff": {...},
   "theta_max_abs_diff": ..., "pool_entropy_max_abs_diff": ...,
   "final_labels_equal_seeds": ..., ...}

  python benchmarks/mc_precision.py --config=configs/yinyang.py:active_semi
  python benchmarks/mc_precision.py \
      --config=configs/mnist.py:alldata_maxent,small --num_seeds=2

On a CPU 'default' is float32 and 'tensorfloat32' is float32 too, so the
default comparison is default vs bfloat16; on a GPU pass
--precisions=float32,tensorfloat32,bfloat16,default.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
from typing import Any, Optional

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'benchmarks'))

import seeds_end_to_end  # pylint: disable=g-import-not-at-top,wrong-import-position


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--config', default='configs/yinyang.py:active_semi',
                 help='config file[:arg] as for launch/train.py')
  p.add_argument('--precisions', default='default,bfloat16',
                 help='comma-separated mc_precision values; the first is '
                 'the reference')
  p.add_argument('--num_seeds', type=int, default=10)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--python', default=sys.executable)
  p.add_argument('--workdir', default=None,
                 help='where the runs write (default: a temporary folder)')
  p.add_argument('--extra', default='',
                 help='more launch/train.py flags, space-separated')
  p.add_argument('--out', default=None, help='also append the lines here')
  p.add_argument('--note', default=None)
  return p.parse_args(argv)


def run_once(args, precision: str,
             workdir: pathlib.Path) -> tuple[float, dict, list[dict]]:
  """(wall seconds, summary.json, metrics.jsonl rows) of one run."""
  wall, summary = seeds_end_to_end.timed_run(
      args, workdir, args.seed, args.num_seeds,
      (f'--config.mc_precision={precision}', *args.extra.split()))
  rows = [json.loads(line) for line in
          (workdir / 'metrics.jsonl').read_text().splitlines() if line]
  return wall, summary, rows


def by_seed_iteration(rows: list[dict], field: str) -> dict[tuple, float]:
  return {(r['seed'], r['iteration']): r[field] for r in rows
          if r.get(field) is not None}


def max_abs_diff(a: dict[tuple, float], b: dict[tuple, float]) -> float:
  return max((abs(a[k] - b[k]) for k in a.keys() & b.keys()), default=0.0)


def effect_line(ref: str, ref_run, precision: str, run) -> dict[str, Any]:
  """Paired differences of one precision's run against the reference's."""
  _, ref_summary, ref_rows = ref_run
  _, summary, rows = run
  ref_acc = ref_summary['val_acc']['per_seed']
  acc = summary['val_acc']['per_seed']
  diff = {k: round(100 * (acc[k] - ref_acc[k]), 3) for k in sorted(acc)}
  fields = ('theta', 'pool_entropy', 'val_acc', 'num_labels')
  new = {f: by_seed_iteration(rows, f) for f in fields}
  old = {f: by_seed_iteration(ref_rows, f) for f in fields}
  # A seed whose E-step statistics and accuracy never moved at all.
  identical = sum(
      1 for s in {seed for seed, _ in new['theta']}
      if all(v == old[f].get(k) for f in fields[:3]
             for k, v in new[f].items() if k[0] == s))
  values = list(diff.values())
  return {
      'benchmark': 'mc_precision_effect',
      'value': round(statistics.mean(values), 3),
      'unit': 'final val_acc points vs reference (mean of paired diffs)',
      'precision': precision, 'reference': ref,
      'per_seed_diff': diff,
      'std_of_diffs': round(statistics.stdev(values), 3) if len(values) > 1
                      else None,
      'max_abs_diff': round(max(abs(v) for v in values), 3),
      'theta_max_abs_diff': round(max_abs_diff(new['theta'], old['theta']),
                                  5),
      'pool_entropy_max_abs_diff': round(max_abs_diff(
          new['pool_entropy'], old['pool_entropy']), 5),
      'num_labels_equal': new['num_labels'] == old['num_labels'],
      'seeds_identical_throughout': identical,
  }


def main(argv: Optional[list[str]] = None) -> list[dict[str, Any]]:
  args = parse_args(argv)
  precisions = [p.strip() for p in args.precisions.split(',') if p.strip()]
  if len(precisions) < 2:
    sys.exit('--precisions: name at least two (the first is the reference)')
  root = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix='mc_prec_'))
  runs = {p: run_once(args, p, root / p) for p in precisions}
  context = {**seeds_end_to_end.hot_path.run_context(),
             'config': args.config, 'num_seeds': args.num_seeds,
             'seed': args.seed, 'extra': args.extra}
  if args.note:
    context['note'] = args.note
  lines = []
  for p, (wall, summary, _) in runs.items():
    acc = summary['val_acc']
    lines.append({'benchmark': 'mc_precision_run',
                  'value': round(100 * acc['mean'], 3),
                  'unit': 'final val_acc % (mean over seeds)',
                  'precision': p, 'std': round(100 * acc['std'], 3),
                  'per_seed': acc['per_seed'], 'wall_s': round(wall, 2),
                  'run_wall_s': summary.get('wall_s'),
                  'iterations': summary.get('iterations'),
                  'num_labels': summary.get('num_labels')})
  ref = precisions[0]
  for p in precisions[1:]:
    lines.append(effect_line(ref, runs[ref], p, runs[p]))
  for line in lines:
    line.update({k: v for k, v in context.items() if k not in line})
    text = json.dumps(line)
    print(text, flush=True)
    if args.out:
      with open(args.out, 'a') as f:
        f.write(text + '\n')
  return lines


if __name__ == '__main__':
  main(sys.argv[1:])
