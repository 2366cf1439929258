"""Tables from one or more workdirs (config.json, metrics.jsonl).

Pure readers of a run's files, its labels among other runs, statistics over
seeds (paired differences, sign-flip p-values, labels to reach a target) and
the result tables in Markdown, LaTeX, CSV and JSON; no training. The plots
of the same runs are `plots`'s.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import os
import re
from typing import Any, Sequence

import numpy as np

from bass_jax import user_code
from bass_jax import writing
from bass_jax.errors import DataError
from configs import common

# What the tables and plots read from every metrics.jsonl row.
ROW_KEYS = ('iteration', 'seed', 'val_acc', 'num_labels')


class NoFinishedIteration(DataError):
  """A workdir whose run has not finished its first iteration yet."""


def read_workdir(workdir: str) -> dict[str, Any]:
  """config, summary and metrics rows of a workdir.

  Returns:
    {'workdir', 'config' (dict), 'summary' (dict or None), 'rows' (list,
    not empty)}.

  Raises:
    DataError: the workdir lacks config.json, or one of its files is
      corrupt.
    NoFinishedIteration: metrics.jsonl is missing or has no row yet.
  """
  out = {'workdir': workdir}
  for name, key in (('config.json', 'config'), ('summary.json', 'summary')):
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
      if key == 'config':
        raise DataError(f'{path} not found: not a bass_jax workdir')
      out[key] = None
      continue
    out[key] = read_config(path) if key == 'config' else read_summary(path)
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    ckpts = os.path.join(workdir, 'checkpoints')
    if out['summary'] is not None or (os.path.isdir(ckpts) and
                                      os.listdir(ckpts)):
      # The run has iterations, but their rows are gone (deleted, moved).
      raise DataError(f'{path} not found, though the run has '
                      f'{"finished" if out["summary"] else "checkpoints"}: '
                      'restore the file (its rows are the results), or run '
                      'again with --overwrite')
    raise NoFinishedIteration(f'{path} not found: the run has not started')
  out['rows'] = read_metrics(path)
  if not out['rows']:
    raise NoFinishedIteration(f'{workdir} has no finished iteration yet '
                              f'(no rows in {path})')
  newest = newest_checkpoint(workdir)
  check_rows_complete(path, out['config'], out['summary'] is not None,
                      out['rows'], newest)
  out['paused'] = out['summary'] is None and waits_for_labels(workdir, newest)
  return out


def _is_number(value: Any) -> bool:
  """An int or float from JSON, not a bool (which JSON keeps apart)."""
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def waits_for_labels(workdir: str, step: int) -> bool:
  """Whether checkpoint `step` holds a query waiting for a person's labels
  (its meta.json's extra 'pending')."""
  try:
    with open(os.path.join(workdir, 'checkpoints', str(step),
                           'meta.json')) as f:
      extra = json.load(f).get('extra')
  except (OSError, ValueError, AttributeError):
    return False
  return isinstance(extra, dict) and bool(extra.get('pending'))


def newest_checkpoint(workdir: str) -> int:
  """The highest step of the workdir's complete checkpoints (a
  checkpoints/<step> folder with its meta.json), 0 if none; a run
  checkpoints step i + 1 after iteration i."""
  folder = os.path.join(workdir, 'checkpoints')
  names = os.listdir(folder) if os.path.isdir(folder) else []
  return max((int(n) for n in names if n.isdigit() and os.path.isfile(
      os.path.join(folder, n, 'meta.json'))), default=0)


def check_rows_complete(path: str, config: dict[str, Any], finished: bool,
                        rows: list[dict[str, Any]], checkpointed: int) -> None:
  """Refuses metrics rows that miss an iteration the run has done: all of
  0..num_iterations of every seed once it `finished`, else those below its
  newest checkpoint (`checkpointed`); a lost row would silently change a
  table (train.py refuses to resume from such a file, too).

  Raises:
    DataError: naming how many rows the file holds and should.
  """
  seeds = config.get('num_seeds', 1)
  done = config.get('num_iterations', 0) + 1 if finished else checkpointed
  have = {(r['iteration'], r['seed']) for r in rows if r['iteration'] < done}
  if len(have) < done * seeds:
    raise DataError(
        f'{path} holds {len(have)} of the {done * seeds} rows of iterations '
        f'0..{done - 1} ({seeds} seeds), which the run '
        f'{"finished" if finished else "checkpointed"}: restore the file '
        '(its rows are the results), or run again with --overwrite')


def read_summary(path: str) -> dict[str, Any]:
  """A run's summary.json, with what the tables read from it: val_acc's
  mean and std, num_seeds and wall_s as numbers.

  Raises:
    DataError: the file is unreadable, not an object, or lacks one of them.
  """
  summary = read_json_object(path)
  acc = summary.get('val_acc')
  if not (isinstance(acc, dict) and _is_number(acc.get('mean')) and
          _is_number(acc.get('std')) and
          _is_number(summary.get('num_seeds')) and
          _is_number(summary.get('wall_s'))):
    raise DataError(f'{path} is unreadable (no val_acc mean and std, '
                    'num_seeds or wall_s); it must be the file that '
                    'launch/train.py wrote (relaunching the run rewrites it)')
  return summary


def read_config(path: str) -> dict[str, Any]:
  """A run's config.json: a JSON object whose fields have their types.

  Raises:
    DataError: the file is unreadable, not an object, or a field's value
      is not of the field's type (a hand-edited or damaged file).
  """
  stored = read_json_object(path)
  for field, default in common.base_config().items():
    value = stored.get(field, default)
    kind = type(default)
    ok = (_is_number(value) if kind is float else
          isinstance(value, kind) and (kind is bool or
                                       not isinstance(value, bool)))
    if not ok:
      what = {bool: 'true or false', int: 'an integer', float: 'a number',
              str: 'a string'}[kind]
      raise DataError(f'{path} is unreadable (its {field} is {value!r}, not '
                      f'{what}); it must be the file that launch/train.py '
                      'wrote')
  return stored


def read_json_object(path: str) -> dict[str, Any]:
  """A JSON object from a file written by a run.

  Raises:
    DataError: the file is unreadable, not JSON or not an object.
  """
  try:
    with open(path) as f:
      value = json.load(f)
  except (OSError, ValueError) as e:
    raise DataError(f'{path} is unreadable ({e}); it must be the file that '
                    'launch/train.py wrote') from None
  if not isinstance(value, dict):
    raise DataError(f'{path} is unreadable (a JSON {type(value).__name__}, '
                    'not an object); it must be the file that '
                    'launch/train.py wrote')
  return value


def read_metrics(path: str) -> list[dict[str, Any]]:
  """The rows of metrics.jsonl.

  A torn last line (a run killed, or still running, mid-write) is skipped,
  as `workdirs.kept_metrics` does on resume; a bad line before it is
  corruption and an error.

  Raises:
    DataError: a line other than the last is not a metrics row.
  """
  with open(path) as f:
    lines = [(n, l) for n, l in enumerate(f, start=1) if l.strip()]
  rows = []
  for k, (line_no, line) in enumerate(lines):
    row = _metrics_row(line)
    if row is not None:
      rows.append(row)
    elif k < len(lines) - 1:
      raise DataError(f'{path} line {line_no} is not a metrics row (a JSON '
                      f'object with {", ".join(ROW_KEYS)}); the file is '
                      'corrupt')
  return rows


def _metrics_row(line: str) -> dict[str, Any] | None:
  """A metrics.jsonl line as a row, or None if it is not one: a JSON
  object with ROW_KEYS, integer iteration, seed and num_labels, a number
  for val_acc, and numbers or null (pseudo_acc) elsewhere."""
  try:
    row = json.loads(line)
  except ValueError:
    return None
  if not isinstance(row, dict) or not set(ROW_KEYS) <= set(row):
    return None
  if not (all(v is None or _is_number(v) for v in row.values()) and
          _is_number(row['val_acc']) and
          all(isinstance(row[k], int) for k in ('iteration', 'seed',
                                                'num_labels'))):
    return None
  return row


def experiment_label(name: str, variant: str) -> str:
  """'<name>:<variant>', e.g. 'yinyang:active_semi'; 'run' / '-' if empty."""
  return f"{name or 'run'}:{variant or '-'}"


def natural_key(name: str) -> list[tuple[int, Any]]:
  """A sort key that orders the numbers in names by value:
  'bald-mc_passes_pool=2' before 'bald-mc_passes_pool=10'."""
  parts = re.split(r'(\d+(?:\.\d+)?)', name)
  return [(1, float(p)) if i % 2 else (0, p) for i, p in enumerate(parts)]


def run_folders(folder: str) -> list[str]:
  """The paths of `folder`'s sub-folders that hold a run (a config.json):
  a sweep's rows, by name (numbers by value); [] for any other folder."""
  if not os.path.isdir(folder):
    return []
  return sorted((os.path.join(folder, d) for d in os.listdir(folder)
                 if os.path.isfile(os.path.join(folder, d, 'config.json'))),
                key=natural_key)


def sweep_summaries(sweep_dir: str) -> list[dict[str, Any]]:
  """The row summaries a sweep recorded (launch/sweep.py's summaries.json,
  in its order); [] where there is none or it is no list of objects."""
  try:
    with open(os.path.join(sweep_dir, 'summaries.json')) as f:
      summaries = json.load(f)
  except (OSError, ValueError):
    return []
  if not (isinstance(summaries, list) and
          all(isinstance(s, dict) for s in summaries)):
    return []
  return summaries


def sweep_order(sweep_dir: str, rows: list[str]) -> list[str]:
  """Row workdirs in the order the sweep ran them (its summaries.json, by
  their 'row' folder names, or by variant in a sweep written before rows
  were named there); rows it does not list (an unfinished sweep) follow,
  by name, numbers by value (natural_key)."""
  rows = sorted(rows, key=natural_key)
  summaries = sweep_summaries(sweep_dir)
  if not all('variant' in s for s in summaries):
    return rows
  names = [s.get('row') for s in summaries]
  variants = [s['variant'] for s in summaries]
  def rank(row):
    if os.path.basename(row) in names:
      return names.index(os.path.basename(row))
    try:
      variant = read_json_object(os.path.join(row, 'config.json')).get(
          'variant')
    except DataError:
      return len(variants)
    return variants.index(variant) if variant in variants else len(variants)
  return sorted(rows, key=rank)  # Stable: ties stay in natural order.


def label_of(run: dict) -> str:
  """The run's 'label' where with_distinct_labels gave it one, else
  config_label."""
  return run.get('label') or config_label(run)


def config_label(run: dict) -> str:
  """experiment_label of a run's stored config."""
  c = run['config']
  return experiment_label(c.get('name'), c.get('variant'))


def with_distinct_labels(runs: Sequence[dict],
                         ignore: Sequence[str] = ()) -> list[dict]:
  """The runs, those sharing a config_label each with a 'label' of its own.

  An ablation over a `--config.<field>` flag (runs of one variant with
  acquisition_beta 1, 2 and 4) once gave table rows and legend entries that
  could not be told apart. Namesakes are labelled by the config fields in
  which they differ, but for `ignore` (where and how fast they ran), e.g.
  'mnist_active:power_bald,small (acquisition_beta=4)'; namesakes of equal
  configs (a run repeated in two workdirs) by the workdir part that
  differs, e.g. 'yinyang:active_semi (first)', or both where needed,
  'yinyang:active_semi (mu=0.5; first)'.
  """
  groups: dict[str, list[int]] = {}
  for i, run in enumerate(runs):
    groups.setdefault(config_label(run), []).append(i)
  out = [dict(run) for run in runs]
  for label, members in groups.items():
    if len(members) < 2:
      continue
    fields = differing_fields([runs[i]['config'] for i in members], ignore)
    what = {i: fields_text({k: runs[i]['config'].get(k) for k in fields})
            for i in members}
    for i in members:
      twins = [runs[j] for j in members if what[j] == what[i]]
      text = what[i]
      if len(twins) > 1:  # Equal configs: told apart by their workdirs.
        part = _workdir_part(runs[i], twins)
        text = f'{text}; {part}' if text else part
      out[i]['label'] = f'{label} ({text})'
  return out


def differing_fields(configs: Sequence[dict],
                     ignore: Sequence[str] = ()) -> list[str]:
  """The fields, sorted, whose values are not the same in all `configs`
  (a field some lack counts as None there), but for `ignore`."""
  return sorted(k for k in set().union(*configs) if k not in ignore and
                len({json.dumps(c.get(k), sort_keys=True)
                     for c in configs}) > 1)


def fields_text(values: dict[str, Any]) -> str:
  """'acquisition_beta=4, mu=0.5': the fields that tell runs apart."""
  return ', '.join(f'{k}={field_text(v)}' for k, v in values.items())


def field_text(value: Any) -> str:
  """A config value as a label (and a sweep's row folder) shows it: 4 for
  4.0, 0.5 for 0.5, as given otherwise."""
  if isinstance(value, float):
    short = f'{value:g}'
    return short if float(short) == value else repr(value)
  return str(value)


def _workdir_part(run: dict, namesakes: Sequence[dict]) -> str:
  """The workdir below what the namesakes' workdirs share: 'first' for
  /w/first, 't1/active_semi' for the rows of two sweeps /w/t1 and /w/t2."""
  paths = [os.path.abspath(r['workdir']) for r in namesakes]
  return os.path.relpath(os.path.abspath(run['workdir']),
                         os.path.commonpath(paths))


def file_stem(run: dict, runs: Sequence[dict]) -> str:
  """A file-name stem for one run's own plot, unique among `runs`.

  '<name>_<variant>', plus the part of the workdir path that differs where
  other runs have the same config_label (two workdirs of one config, or the
  rows of two sweeps), so that no plot overwrites another.
  """
  label = config_label(run)
  stem = label.replace(':', '_').replace(',', '_')
  same = [r for r in runs if config_label(r) == label]
  if len(same) > 1:
    stem += '_' + _workdir_part(run, same).replace(os.sep, '_')
  return stem


def curves(rows: Sequence[dict], metric: str) -> tuple[np.ndarray, np.ndarray,
                                                      np.ndarray]:
  """Per-iteration mean and std over seeds of one metric.

  Returns:
    (iterations [I], mean [I], std [I]); None values (e.g. pseudo_acc
    before any pseudo-label) are skipped.
  """
  by_iter = collections.defaultdict(list)
  for r in rows:
    if r.get(metric) is not None:
      by_iter[r['iteration']].append(float(r[metric]))
  its = np.array(sorted(by_iter))
  vals = [np.array(by_iter[i]) for i in its]
  return (its, np.array([v.mean() for v in vals]),
          np.array([v.std() for v in vals]))


def last_row_by_seed(rows: Sequence[dict]) -> dict[int, dict]:
  """{seed: its row of the highest iteration}, seeds ascending."""
  last = {}
  for r in rows:
    if r['iteration'] >= last.get(r['seed'], {}).get('iteration', -1):
      last[r['seed']] = r
  return dict(sorted(last.items()))


def final_values_by_seed(run: dict, key: str) -> dict[int, Any]:
  """{seed: `key` of its last iteration's row (None if it lacks it)},
  seeds ascending."""
  return {s: row.get(key) for s, row in last_row_by_seed(run['rows']).items()}


def final_accuracy_by_seed(run: dict) -> dict[int, float]:
  """{seed: val_acc of its last iteration}, seeds ascending."""
  return final_values_by_seed(run, 'val_acc')


def last_iterations(run: dict) -> dict[int, int]:
  """{seed: the last iteration its rows reach}, seeds ascending."""
  return final_values_by_seed(run, 'iteration')


def unfinished_text(run: dict) -> str:
  """'after iteration 26 of 40' for a run whose rows stop before its
  config's last iteration (stopped or killed), '..., waiting for labels'
  for one paused at a person's query (`read_workdir`'s 'paused'); ''."""
  planned = run['config'].get('num_iterations')
  reached = min(last_iterations(run).values(), default=planned)
  if planned is None or reached >= planned:
    return ''
  paused = ', waiting for labels' if run.get('paused') else ''
  return f'after iteration {reached} of {planned}{paused}'


def final_accuracies(run: dict) -> np.ndarray:
  """val_acc of the last iteration of every seed, [S]."""
  return np.array(list(final_accuracy_by_seed(run).values()))


def baseline_index(runs: Sequence[dict], name: str) -> int:
  """The index of the run `name` picks: its label ('mnist:semi_100,small'),
  its variant ('semi_100,small'), the variant's first part ('semi_100') or
  its workdir's folder name (a sweep row's, 'power_bald-acquisition_beta=2',
  as the sweep printed it).

  Raises:
    DataError: no run, or more than one, answers to `name`.
  """
  def names(run):
    variant = run['config'].get('variant') or ''
    folder = os.path.basename(os.path.normpath(run['workdir']))
    return {label_of(run), variant, variant.split(',')[0], folder}
  hits = [i for i, run in enumerate(runs) if name in names(run)]
  if len(hits) != 1:
    # Ambiguous: the runs that answer, by their labels; else every run's.
    labels = ', '.join(label_of(runs[i]) for i in (hits or range(len(runs))))
    what = 'no run' if not hits else f'{len(hits)} runs'
    raise DataError(f'{what} of the report answer to {name!r}; give one of: '
                    f'{labels}')
  return hits[0]


def paired_by_seed(run: dict, baseline: dict) -> dict[int, float]:
  """{seed: run's final val_acc minus baseline's, in points (%)} over the
  seeds both hold, ascending.

  Raises:
    DataError: the two runs share no seed.
  """
  acc, base = final_accuracy_by_seed(run), final_accuracy_by_seed(baseline)
  common = sorted(set(acc) & set(base))
  if not common:
    raise DataError(f'{label_of(run)} (seeds {sorted(acc)}) and '
                    f'{label_of(baseline)} (seeds {sorted(base)}) share no '
                    'seed: nothing to pair')
  return {s: 100 * (acc[s] - base[s]) for s in common}


def paired_difference(run: dict, baseline: dict) -> dict[str, Any]:
  """run's final val_acc minus baseline's, seed by seed, in points (%).

  Rows of a sweep that share a seed share its data draw, initial labels and
  (where their initial phases agree) initial model, so the difference per
  seed removes what the seeds have in common: its spread is what decides
  whether one row beats the other, not the rows' own spreads.

  Returns:
    {'mean', 'std' (population, as the table's), 'std_error' (of the mean,
    std / sqrt(n - 1); None for one seed), 'p' (sign_flip_p_value),
    'better' (seeds where run is ahead), 'tied' (seeds where the two are
    equal, e.g. two acquisition functions that rank alike), 'seeds' (common
    seeds, n)}.

  Raises:
    DataError: the two runs share no seed.
  """
  diff = np.array(list(paired_by_seed(run, baseline).values()))
  se = _std_error(diff)
  return {'mean': float(diff.mean()), 'std': float(diff.std()),
          'std_error': None if np.isnan(se) else se,
          'p': sign_flip_p_value(diff),
          'better': int((diff > 0).sum()), 'tied': int((diff == 0).sum()),
          'seeds': len(diff)}


# Up to 2^16 sign patterns are enumerated; more seeds draw this many.
_EXACT_SIGN_FLIPS = 16
_DRAWN_SIGN_FLIPS = 100_000


def sign_flip_p_value(diff: np.ndarray) -> float:
  """Two-sided p-value of a mean paired difference under 'no difference'.

  With no difference between two rows, each seed's difference is as likely
  negative as positive; the p-value is the share of the 2^n sign patterns
  of the [n] differences whose mean is at least as far from 0 as the one
  observed (a randomization test: exact, no normality assumed, and
  meaningful with 10 seeds, where a t-test leans on its assumption). More
  than 16 seeds draw 100,000 patterns from a fixed seed, the observed one
  counted among them. With n seeds the smallest p possible is 2 / 2^n
  (0.002 for 10 seeds, 0.25 for 3: 3 seeds never reach p < 0.05).
  """
  diff = np.asarray(diff, dtype=np.float64)
  n = len(diff)
  if n > _EXACT_SIGN_FLIPS:
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=(_DRAWN_SIGN_FLIPS, n))
  else:
    bits = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
    signs = 1.0 - 2.0 * bits
  means = np.abs(signs @ diff) / n
  # Ties in floating point: the observed pattern must count itself.
  observed = abs(diff.mean())
  hits = int(np.sum(means >= observed - 1e-9 * (1 + observed)))
  if n > _EXACT_SIGN_FLIPS:  # The observed pattern counts as one drawn.
    return (hits + 1) / (_DRAWN_SIGN_FLIPS + 1)
  return hits / len(signs)


def _std_error(values: np.ndarray) -> float:
  """The standard error of the mean of [n] values, their population std
  / sqrt(n - 1); NaN for one value."""
  n = len(values)
  return float(values.std() / np.sqrt(n - 1)) if n > 1 else float('nan')


def labels_to_reach(rows: Sequence[dict], target: float) -> dict[int, Any]:
  """Per seed, the labels its model had when it first reached `target`.

  Gal et al. 2017's measure of label efficiency: the first iteration whose
  val_acc >= target (a fraction), and that iteration's num_labels (the
  labels it trained on; acquisitions come after its evaluation).

  Returns:
    {seed: labels (int), or None where the seed never reached it}.
  """
  first = {}
  for r in sorted(rows, key=lambda r: r['iteration']):
    first.setdefault(r['seed'], None)
    if first[r['seed']] is None and r['val_acc'] >= target:
      first[r['seed']] = int(r['num_labels'])
  return first


def median_labels_to_reach(per_seed: dict[int, Any]) -> float | None:
  """The median over seeds of labels_to_reach; a seed that never reached
  the target counts as more than any; None if half or more never did."""
  ordered = sorted(per_seed.values(),
                   key=lambda n: float('inf') if n is None else n)
  k = len(ordered)
  middle = ordered[(k - 1) // 2: k // 2 + 1]  # One value, or the two middle.
  if not middle or None in middle:
    return None
  return float(np.mean(middle))


def merged_seeds(runs: Sequence[dict],
                 ignore: Sequence[str] = ('seed', 'num_seeds')
                 ) -> list[dict[str, Any]]:
  """Runs of one experiment split over seeds, joined into one run each.

  Runs whose configs agree but for the `ignore` fields (the seeds, and
  where and how fast they ran) are one experiment run in parts, e.g. seeds
  0-4 and 5-9 on two machines or in two sessions: their rows form one run,
  at the place of the first part; wall_s adds up (None if a part lacks
  it). Other runs are kept as they are.

  Raises:
    DataError: two parts hold the same seed (a rerun, not a part).
  """
  groups: dict[str, list[dict]] = {}
  for run in runs:
    key = json.dumps({k: v for k, v in run['config'].items()
                      if k not in ignore}, sort_keys=True, default=str)
    groups.setdefault(key, []).append(run)
  return [_joined(parts) for parts in groups.values()]


def _joined(parts: list[dict]) -> dict[str, Any]:
  """One run of the rows of `parts` (see `merged_seeds`)."""
  if len(parts) == 1:
    return parts[0]
  ends = {run['workdir']: max(last_iterations(run).values()) for run in parts}
  if len(set(ends.values())) > 1:
    # Seeds at iteration 26 and at 40 averaged would be neither.
    ended = ', '.join(f'{w} at {i}' for w, i in ends.items())
    raise DataError(
        f'the parts of {label_of(parts[0])} end at different iterations '
        f'({ended}): finish the runs (relaunch their commands), or report '
        'them without --merge_seeds')
  holder = {}
  for run in parts:
    for seed in sorted({r['seed'] for r in run['rows']}):
      if seed in holder:
        raise DataError(
            f'{holder[seed]} and {run["workdir"]} both hold seed {seed} of '
            f'{label_of(run)}: a rerun, not a part; report them without '
            '--merge_seeds, or leave one out')
      holder[seed] = run['workdir']
  walls = [(run['summary'] or {}).get('wall_s') for run in parts]
  envs = []  # The parts' distinct environments, in the parts' order.
  for run in parts:
    envs += [e for e in (run['summary'] or {}).get('environments') or []
             if e not in envs]
  config = dict(parts[0]['config'], seed=min(holder), num_seeds=len(holder))
  return {'workdir': parts[0]['workdir'],
          'parts': [run['workdir'] for run in parts],
          'config': config,
          'summary': {'wall_s': None if None in walls else sum(walls),
                      'environments': envs},
          'rows': [r for run in parts for r in run['rows']]}


# The datasets the paper's (and the blog's) tables are on.
PAPER_DATASETS = ('yinyang', 'mnist')


# Config fields that change how many labels a run ends with: a run that
# changes one of them (by an override or a modifier such as MNIST's
# `small`) ends elsewhere than its paper row's labels. The first two always,
# the others where the run acquires labels.
LABEL_COUNT_FIELDS = ('initial_per_class', 'acquisition', 'num_iterations',
                      'query_every', 'query_size', 'label_budget')


def label_count_fields(config) -> dict[str, Any]:
  """{field: value} of the LABEL_COUNT_FIELDS that decide the labels a run
  of `config` (a dict or ConfigDict) ends with: the query schedule's only
  where it acquires (acquisition not 'none')."""
  fields = LABEL_COUNT_FIELDS if config.get('acquisition') != 'none' else (
      LABEL_COUNT_FIELDS[:2])
  return {k: config.get(k) for k in fields}


def paper_reference(config) -> float | None:
  """The paper's accuracy % beside a run of `config` (a dict or ConfigDict),
  None where its config names none (`paper_acc` -1 or null) or the run is
  not the paper's: on other data (a .npz, an image folder, another
  dataset) or with code of one's own (a model or score 'file.py:name')."""
  paper = config.get('paper_acc', -1)
  if paper is None or paper < 0:
    return None
  if (config.get('dataset', 'mnist') not in PAPER_DATASETS or
      user_code.names_any(config)):
    return None
  return paper


def paper_accuracy(run: dict) -> float | None:
  """`paper_reference` of a read run."""
  return paper_reference(run['config'])


def paired_curve(run: dict, baseline: dict) -> tuple[np.ndarray, np.ndarray,
                                                     np.ndarray]:
  """paired_difference at every iteration of `run`, in points (%).

  At iteration i a seed's difference is its val_acc minus the baseline's at
  its newest iteration <= i: an initial model (one iteration) stays at its
  level, a run of fewer iterations at its last.

  Returns:
    (iterations [I], mean [I], std_error [I]; NaN where one seed) over the
    seeds the two runs share; all empty if they share none.
  """
  base = collections.defaultdict(list)
  for r in sorted(baseline['rows'], key=lambda r: r['iteration']):
    base[r['seed']].append((r['iteration'], r['val_acc']))
  by_iter = collections.defaultdict(list)
  for r in run['rows']:
    earlier = [acc for it, acc in base.get(r['seed'], ())
               if it <= r['iteration']]
    if earlier:
      by_iter[r['iteration']].append(100 * (r['val_acc'] - earlier[-1]))
  its = np.array(sorted(by_iter), dtype=int)
  diffs = [np.array(by_iter[i]) for i in its]
  return (its, np.array([d.mean() for d in diffs]),
          np.array([_std_error(d) for d in diffs]))


# (metric, table_rows key, scale) of the final metrics table_rows gives as
# mean and std beside the accuracy (csv and json only): the mean per-class
# recall (for imbalanced data) and the calibration of the deterministic
# model, its NLL (nats) and expected calibration error, in points.
SIDE_METRICS = (('val_balanced_acc', 'balanced', 100), ('val_nll', 'nll', 1),
                ('val_ece', 'ece', 100))


def table_rows(runs: Sequence[dict], target: float | None = None,
               baseline: int | None = None) -> list[dict[str, Any]]:
  """One row per run: experiment, labels, paper %, mean %, std %, seeds, wall,
  and the SIDE_METRICS' means and stds (csv and json only).

  With a `target` accuracy (a fraction) also 'labels_to_target' (the median
  over seeds of labels_to_reach, None if half or more never reached it) and
  'reached' (how many seeds did). With `baseline` (an index into runs) also
  'paired_<key>' for each key of paired_difference against that run (None
  in the baseline's own row).
  """
  out = []
  for i, run in enumerate(runs):
    acc = 100 * final_accuracies(run)
    last_labels = max(run['rows'], key=lambda r: r['iteration'])['num_labels']
    out.append({
        'experiment': label_of(run),
        'labels': last_labels,
        'paper': paper_accuracy(run),
        'mean': float(acc.mean()), 'std': float(acc.std()),
        'seeds': len(acc),
        # As summary.json and config.num_iterations: the last iteration
        # (iterations run 0..num_iterations).
        'iterations': max(r['iteration'] for r in run['rows']),
        'wall_s': (run['summary'] or {}).get('wall_s'),
    })
    # Beside the accuracy (rows written before a metric existed lack it:
    # None).
    for metric, key, scale in SIDE_METRICS:
      values = list(final_values_by_seed(run, metric).values())
      ok = None not in values
      out[-1][f'{key}_mean'] = float(scale * np.mean(values)) if ok else None
      out[-1][f'{key}_std'] = float(scale * np.std(values)) if ok else None
    if target is not None:
      per_seed = labels_to_reach(run['rows'], target)
      out[-1]['labels_to_target'] = median_labels_to_reach(per_seed)
      out[-1]['reached'] = sum(n is not None for n in per_seed.values())
    if baseline is not None:
      paired = paired_difference(run, runs[baseline])
      out[-1].update({f'paired_{k}': None if i == baseline else v
                      for k, v in paired.items()})
  return out


RESULTS_UNITS = (
    'accuracies, ece and differences in points (%), nll in nats; '
    'balanced_*: the mean over classes of their recall, nll_*, ece_*: the '
    "deterministic model's test negative log-likelihood and expected "
    'calibration error (15 equal-width confidence bins); val_acc_by_seed: each '
    "seed's validation accuracy after its last iteration; mean, std: over "
    'seeds, std the population std; paired_*: this run minus the baseline '
    '(paired_with), seed by seed over the seeds both hold, paired_std_error '
    '= paired_std / sqrt(n - 1), paired_p the two-sided sign-flip p-value '
    '(unadjusted for multiple comparisons), paired_better / paired_tied the '
    'seeds ahead / level; labels_to_target_by_seed: the labels at the first '
    'iteration with val_acc >= target_acc, null if never; wall_s: the '
    "run's wall-clock seconds (summary.json); curve: per iteration the "
    'labels (mean over seeds), val_acc and pool_kappa (null at iteration '
    '0 and for runs made before it) mean and std over seeds; '
    'paired_curve: per iteration the mean and standard error over seeds of '
    "val_acc minus the baseline's (at its newest iteration up to then)")


def _curve_lists(its: np.ndarray, **columns: np.ndarray) -> dict[str, list]:
  """Per-iteration columns as JSON lists (NaN as null)."""
  out = {'iteration': [int(i) for i in its]}
  for name, values in columns.items():
    out[name] = [None if not np.isfinite(v) else float(v) for v in values]
  return out


def _kappa_columns(rows: Sequence[dict], its: np.ndarray
                   ) -> dict[str, np.ndarray]:
  """pool_kappa's mean and std over seeds at iterations `its` [I] (NaN
  where undefined: iteration 0); {} for rows without it (an earlier
  bass_jax)."""
  k_its, mean, std = curves(rows, 'pool_kappa')
  if not len(k_its):
    return {}
  at = {int(i): (m, s) for i, m, s in zip(k_its, mean, std)}
  both = np.array([at.get(int(i), (np.nan, np.nan)) for i in its])
  return {'pool_kappa_mean': both[:, 0], 'pool_kappa_std': both[:, 1]}


def results(runs: Sequence[dict], rows: Sequence[dict],
            target: float | None = None, baseline: int | None = None,
            ignore: Sequence[str] = ()) -> dict[str, Any]:
  """The report as one JSON-ready object, seed by seed.

  `rows` are table_rows(runs, target, baseline); each run's entry is its
  row plus its workdir, its config fields that differ between the runs
  (differing_fields, but for `ignore`),
  its seeds' final accuracies, its learning curve and, with `target` /
  `baseline`, its seeds' labels to reach the target and paired differences
  (final and over the iterations): what a paper's table, a plot or test of
  one's own or a later report needs without the workdirs.
  """
  varying = differing_fields([run['config'] for run in runs], ignore)
  entries = []
  for i, (run, row) in enumerate(zip(runs, rows)):
    entry = dict(row, workdir=run['workdir'],
                 # --merge_seeds: every workdir that held some of the seeds.
                 parts=run.get('parts', [run['workdir']]),
                 fields={k: run['config'].get(k) for k in varying},
                 # What it was computed with (summary.json; None: unknown).
                 environments=(run['summary'] or {}).get('environments'),
                 val_acc_by_seed={str(s): 100 * a for s, a in
                                  final_accuracy_by_seed(run).items()})
    if target is not None:
      entry['labels_to_target_by_seed'] = {
          str(s): n for s, n in labels_to_reach(run['rows'], target).items()}
    its, mean, std = curves(run['rows'], 'val_acc')
    label_its, labels, _ = curves(run['rows'], 'num_labels')
    if len(label_its) == len(its):
      entry['curve'] = _curve_lists(its, labels=labels,
                                    val_acc_mean=100 * mean,
                                    val_acc_std=100 * std,
                                    **_kappa_columns(run['rows'], its))
    if baseline is not None and i != baseline:
      entry['paired_by_seed'] = {
          str(s): d for s, d in paired_by_seed(run, runs[baseline]).items()}
      its, mean, se = paired_curve(run, runs[baseline])
      entry['paired_curve'] = _curve_lists(its, mean=mean, std_error=se)
    entries.append(entry)
  return {'units': RESULTS_UNITS,
          'target_acc': None if target is None else 100 * target,
          'paired_with': None if baseline is None else label_of(runs[baseline]),
          'runs': entries}


def table_cells(rows: Sequence[dict], target: float | None = None,
                baseline: str | None = None
                ) -> tuple[list[str], list[list[str]]]:
  """(column heads, one list of cells per row): the table in the layout of
  the paper's tables, paper beside ours, as markdown_table and latex_table
  print it.

  With `target` (the fraction given to table_rows) a column of the median
  labels to reach it, e.g. '130 (3/3 seeds)', or '> 220 (1/3 seeds)' where
  half or more never did (220: the most labels any of them had). With
  `baseline` (the label of the run table_rows paired against) two columns:
  the paired difference, e.g. '+7.98 ± 2.18 (SE 0.73, p 0.002)', and the seeds
  ahead of the baseline, e.g. '10/10', or '0/10 (10 tied)'.
  """
  head = ['experiment', 'labels', 'paper %',
          'ours % (mean ± std over seeds, ddof 0)', 'seeds']
  if target is not None:
    head.append(f'labels to {100 * target:g} % (median)')
  if baseline is not None:
    head += [f'vs {baseline}, paired (points, mean ± std; SE, sign-flip p)',
             'seeds ahead']
  head.append('wall s')
  body = []
  for r in rows:
    paper = '–' if r['paper'] is None else f"{r['paper']:.2f}"
    # One seed has no spread to show: its number alone, not '± 0.00'.
    ours = (f"{r['mean']:.2f}" if r['seeds'] == 1 else
            f"{r['mean']:.2f} ± {r['std']:.2f}")
    cells = [r['experiment'], str(r['labels']), paper, ours, str(r['seeds'])]
    if target is not None:
      n = r['labels_to_target']
      median = f'> {r["labels"]}' if n is None else f'{n:g}'
      cells.append(f"{median} ({r['reached']}/{r['seeds']} seeds)")
    if baseline is not None:
      cells += _paired_cells(r)
    cells.append('–' if r['wall_s'] is None else f"{r['wall_s']:.0f}")
    body.append(cells)
  return head, body


def markdown_table(rows: Sequence[dict], target: float | None = None,
                   baseline: str | None = None) -> str:
  """table_cells as a markdown table."""
  head, body = table_cells(rows, target, baseline)
  line = lambda cells: '|' + ''.join(f' {c} |' if c else ' |' for c in cells)
  return '\n'.join([line(head), line(['---'] * len(head))] +
                   [line(cells) for cells in body]) + '\n'


_LATEX_SPECIAL = {'\\': r'\textbackslash{}', '&': r'\&', '%': r'\%',
                  '$': r'\$', '#': r'\#', '_': r'\_', '{': r'\{',
                  '}': r'\}', '~': r'\textasciitilde{}',
                  '^': r'\textasciicircum{}', '±': r'$\pm$', '–': '--',
                  '<': r'$<$', '>': r'$>$'}


def latex_text(text: str) -> str:
  """`text` as LaTeX typesets it: its special characters escaped, ± as
  a math-mode plus-minus."""
  return ''.join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex_table(rows: Sequence[dict], target: float | None = None,
                baseline: str | None = None) -> str:
  """table_cells as a LaTeX tabular (booktabs rules), for a paper."""
  head, body = table_cells(rows, target, baseline)
  line = lambda cells: ' & '.join(latex_text(c) for c in cells) + r' \\'
  return '\n'.join(
      [r'\begin{tabular}{l' + 'r' * (len(head) - 1) + '}', r'\toprule',
       line(head), r'\midrule'] + [line(cells) for cells in body] +
      [r'\bottomrule', r'\end{tabular}']) + '\n'


def _paired_cells(row: dict) -> list[str]:
  """The two paired-difference cells of a table_cells row."""
  if row['paired_mean'] is None:
    return ['(baseline)', '']
  se = row['paired_std_error']
  se = '' if se is None else f' (SE {se:.2f}, p {_p_text(row["paired_p"])})'
  tied = row['paired_tied']
  tied = f' ({tied} tied)' if tied else ''
  spread = ('' if row['paired_seeds'] == 1 else
            f" ± {row['paired_std']:.2f}")
  return [f"{row['paired_mean']:+.2f}{spread}{se}",
          f"{row['paired_better']}/{row['paired_seeds']}{tied}"]


def _p_text(p: float) -> str:
  """'< 0.001', '0.002', '0.25', '1': a p-value to the digits that matter."""
  if p < 0.001:
    return '< 0.001'
  return f'{p:.3f}' if p < 0.01 else f'{p:.2g}'


def write_csv(path: str, rows: Sequence[dict]) -> None:
  """Writes `rows` (one dict each, the first's keys as header) atomically."""
  text = io.StringIO(newline='')
  writer = csv.DictWriter(text, fieldnames=list(rows[0]))
  writer.writeheader()
  writer.writerows(rows)
  writing.write_lines(path, [text.getvalue()], newline='')


