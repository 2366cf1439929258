r"""Runs every row of a config's sweep (each row's seeds vmapped) into a table.

  python launch/sweep.py --config=configs/yinyang.py --workdir=workdirs/table1
  python launch/sweep.py --config=configs/mnist.py:small \
      --workdir=workdirs/table2_small --rows=alldata_maxent,supervised_100

Each row gets its own workdir `<workdir>/<row>/` (config.json,
metrics.jsonl, summary.json); the sweep writes `<workdir>/table.md` and
prints it. `--config.<field>=...` overrides apply to every row (named once
below the table: `Every row with num_iterations=5.`; so is each row that a
modifier such as MNIST's `small` ends at other labels than its paper %).
Rows already finished (a summary.json with the same config) are not run
again.

An ablation is one command: `--vary=acquisition_beta=1,2,4,8` runs every
selected row once per value, in `<workdir>/<row>-acquisition_beta=2/` and so
on, labelled `<name>:<variant> (acquisition_beta=2)` in the table; several
--vary flags run every combination:

  python launch/sweep.py --config=configs/mnist_active.py:small \
      --rows=power_bald --vary=acquisition_beta=1,2,4,8 \
      --workdir=workdirs/power_beta
"""

import contextlib
import importlib.util
import itertools
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import flags  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

from configs import common  # pylint: disable=g-import-not-at-top
from launch import common as launch_common
from launch import sweep_eta

_CONFIG = launch_common.define_config_file(
    os.path.join(REPO, 'configs', 'yinyang.py'),
    'Config file[:modifiers] whose `sweep(add)` lists the rows.')
flags.declare_key_flag('config')  # Listed by --help, not only --helpfull.
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output folder of the sweep.')
_ROWS = flags.DEFINE_list('rows', None, 'Only these rows (default: all).')
_QUIET = flags.DEFINE_bool('quiet', False, 'Only print one line per row.')
_VARY = flags.DEFINE_multi_string(
    'vary', [], 'field=v1,v2,...: run every selected row once per value, '
    'each in <workdir>/<row>-<field>=<value>; several --vary run every '
    'combination.')
_OVERWRITE = flags.DEFINE_bool(
    'overwrite', False, 'Run every selected row afresh, even in a row '
    'folder that holds another (or a finished) run: their earlier runs are '
    'deleted before the first row starts, so an interrupted sweep is '
    'continued by the same command without --overwrite.')


def config_module(path: str):
  """Imports the config file (the part of --config before ':')."""
  spec = importlib.util.spec_from_file_location('sweep_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def row_args(module, base_arg: str) -> list[str]:
  """The config args of every row: the sweep's args plus the base modifiers."""
  rows = []
  module.sweep(rows.append)
  if base_arg:
    rows = [f'{r},{base_arg}' for r in rows]
  return rows


def config_path_and_arg() -> tuple[str, str]:
  """The --config file and its ':arg', as absl parsed them."""
  path, _, arg = config_flags.get_config_filename(
      flags.FLAGS['config']).partition(':')
  return path, arg


def check_base_arg(base_arg: str, row_names: list[str],
                   variants: dict) -> None:
  """Refuses a row or variant in --config's ':arg' (it would replace every
  row's own variant); rows are chosen with --rows."""
  from bass_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  for part in base_arg.split(','):
    if '=' in part or (part not in row_names and part not in variants):
      continue
    fix = (f'choose rows with --rows={part}' if part in row_names else
           f'{part!r} is no row of this sweep (rows: {", ".join(row_names)});'
           f' run it with launch/train.py --config=<file>:{part}')
    raise ConfigError(f"--config ':{base_arg}' names the variant {part!r}; a "
                      f'sweep runs each row with its own variant: {fix}')


def main(argv):
  del argv
  from bass_jax import config_checks  # pylint: disable=g-import-not-at-top
  from bass_jax import experiment  # pylint: disable=g-import-not-at-top
  from bass_jax import interrupts  # pylint: disable=g-import-not-at-top
  from bass_jax import provenance  # pylint: disable=g-import-not-at-top
  from bass_jax import workdirs  # pylint: disable=g-import-not-at-top
  from bass_jax import writing  # pylint: disable=g-import-not-at-top
  from bass_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  path, base_arg = config_path_and_arg()
  module = config_module(path)
  if not callable(getattr(module, 'sweep', None)):
    raise ConfigError(f'{path} defines no sweep(add) listing its rows; run '
                      'it with launch/train.py, or add one (see '
                      'configs/yinyang.py)')
  overridden = _CONFIG.value
  all_args = row_args(module, '')
  check_base_arg(base_arg, [a.split(',')[0] for a in all_args],
                 getattr(module, 'VARIANTS', {}))
  # Named for the sweep, not for the config's default row.
  workdir = _WORKDIR.value or launch_common.default_workdir(
      overridden, 'sweep' + (f',{base_arg}' if base_arg else ''))
  workdirs.check_is_folder(workdir)
  if os.path.isfile(os.path.join(workdir, 'config.json')):
    raise ConfigError(f'{workdir} holds a run (its config.json), not a '
                      'sweep; give the sweep a --workdir of its own')
  summaries = []
  rows = []
  labels = []
  combos = variations(_VARY.value, overridden, launch_common.cli_overrides())
  # Labels name the fields that take several values, as the report does.
  varied = [k for k in combos[0] if len({str(c[k]) for c in combos}) > 1]
  args = selected_rows(row_args(module, base_arg), _ROWS.value)
  for arg in args:
    for combo in combos:
      config = module.get_config(arg)
      for key in launch_common.cli_overrides():
        config[key] = overridden[key]
      for key, value in combo.items():
        config[key] = value
      # A bad value in the last combination fails now, not hours in.
      config_checks.validate_config(config)
      name = row_name(arg.split(',')[0], combo)
      rows.append((name, config, os.path.join(workdir, name)))
      labels.append(row_label(config, {k: combo[k] for k in varied}))
  for line in replaced_row_values(
      module, args, launch_common.cli_overrides() + list(combos[0])):
    print(line, flush=True)
  # --overwrite reruns finished rows too.
  finished = [None if _OVERWRITE.value else finished_summary(row_dir, config)
              for _, config, row_dir in rows]
  check_rows_up_front([(row, arg) for row, arg, done in zip(
      rows, [a for a in args for _ in combos], finished) if not done])
  if _OVERWRITE.value and rows:
    discard_earlier_runs(rows)
  # (wall s, row_work) of the rows this process ran, for the sweep's ETA;
  # rows finished before it started only tell their data's sizes.
  ran = []
  known = {}
  for (_, config, _), summary in zip(rows, finished):
    if summary:
      sweep_eta.learn_sizes(known, config, summary)
  for k, (name, config, row_dir) in enumerate(rows):
    # Ctrl-C or SIGTERM in the previous row's last iteration let it
    # finish; the sweep stops before the next one.
    stop = interrupts.unserved_stop()
    if stop:
      raise stop.interrupt()
    log = (lambda s: None) if _QUIET.value else launch_common.log_line
    done = finished[k]
    if done:
      print(f'== {name} (row {k + 1}/{len(rows)}): already finished in '
            f'{row_dir}', flush=True)
      summaries.append(dict(done, row=name))
      continue
    left = [sweep_eta.row_work(c, sweep_eta.row_sizes(known, c))
            for (_, c, _), f in zip(rows[k:], finished[k:]) if not f]
    print(f'== {name} (row {k + 1}/{len(rows)}) -> {row_dir}'
          f'{sweep_eta.eta_text(ran, left)}', flush=True)
    start = time.monotonic()
    summaries.append(dict(experiment.run(config, row_dir, log=log), row=name))
    sweep_eta.learn_sizes(known, config, summaries[-1])
    ran.append((time.monotonic() - start, sweep_eta.row_work(
        config, sweep_eta.row_sizes(known, config))))
    print(launch_common.result_table(summaries[-1:], labels[k:k + 1])
          .splitlines()[-1], flush=True)
  table = launch_common.result_table(summaries, labels)
  changed = launch_common.overrides_text(overridden)
  # What every row shares, said once rather than in each label; then the
  # rows whose paper % is at other labels than theirs.
  notes = [f'Every row with {changed}.'] if changed else []
  notes += [note for note in (launch_common.paper_labels_note(label, config)
                              for (_, config, _), label in zip(rows, labels))
            if note]
  # Rows finished earlier may have run under other software.
  notes += provenance.report_notes(
      labels, [summary.get('environments') for summary in summaries])
  kept = earlier_summaries(workdir, [name for name, _, _ in rows])
  if kept:
    notes.append(
        f'Also in {workdir}, from an earlier sweep: '
        f'{", ".join(k["row"] for k in kept)} (launch/report.py '
        f'--workdir={workdir} tabulates every row).')
  if notes:
    table += '\n\n' + '\n'.join(notes)
  writing.write_lines(os.path.join(workdir, 'table.md'), [table + '\n'])
  writing.write_json(os.path.join(workdir, 'summaries.json'), merged_summaries(
      summaries, kept, [a.split(',')[0] for a in all_args]))
  print(table)


def earlier_summaries(workdir: str, names: list[str]) -> list[dict]:
  """The summaries.json entries of finished rows in `workdir` that this
  sweep did not run (not in `names`): an earlier sweep's, e.g. other --vary
  values added to the same folder, which its record keeps."""
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  return [s for s in reporting.sweep_summaries(workdir)
          if isinstance(s.get('row'), str) and s['row'] not in names
          and os.path.isfile(os.path.join(workdir, s['row'], 'summary.json'))]


def merged_summaries(summaries: list[dict], kept: list[dict],
                     row_order: list[str]) -> list[dict]:
  """This sweep's summaries, or with `kept` (earlier rows) all of them in
  the config's row order, each row's values by value (natural_key): rows
  added by two sweeps read as one."""
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  if not kept:
    return summaries  # The order the rows ran in, --vary's values as given.

  def rank(summary):
    row = str(summary.get('variant', '')).split(',')[0]
    return (row_order.index(row) if row in row_order else len(row_order),
            reporting.natural_key(summary['row']))
  return sorted(kept + summaries, key=rank)


def variations(specs: list[str], config, overridden: list[str]
               ) -> list[dict]:
  """The --vary combinations, [{field: value}, ...] ([{}] without --vary),
  the first field's values outermost; values take the field's type in
  `config`.

  Raises:
    ConfigError: a spec not of the form field=v1,v2,..., a field the config
      lacks or varied twice (or also set by --config.<field>), a value not
      of the field's type, or two values that name one row folder.
  """
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  from bass_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  fields, values = [], []
  for spec in specs:
    field, eq, text = spec.partition('=')
    field = field.strip()
    if not eq or not field or not text.strip(' ,'):
      raise ConfigError(f'--vary={spec}: expected field=v1,v2,... (e.g. '
                        '--vary=acquisition_beta=1,2,4)')
    if field not in config:
      raise ConfigError(f'--vary={spec}: the config has no field {field!r}')
    if field in fields or field in overridden:
      raise ConfigError(f'--vary={spec}: {field} is set twice (by another '
                        '--vary or by --config.' + field + ')')
    try:
      parsed = [common.parsed_value(field, t.strip(), config[field])
                for t in text.split(',') if t.strip()]
    except ValueError as e:
      raise ConfigError(f'--vary={spec}: {e}') from None
    names = [reporting.field_text(v) for v in parsed]
    if len(set(names)) < len(names):
      raise ConfigError(f'--vary={spec}: a value is given twice')
    folders = [folder_text(v) for v in parsed]
    if len(set(folders)) < len(folders):
      shared = next(f for f in folders if folders.count(f) > 1)
      twins = [n for n, f in zip(names, folders) if f == shared]
      raise ConfigError(f'--vary={spec}: {twins[0]!r} and {twins[1]!r} would '
                        f'share the row folder ...-{field}={shared}')
    fields.append(field)
    values.append(parsed)
  return [dict(zip(fields, combo)) for combo in itertools.product(*values)]


def folder_text(value) -> str:
  """A --vary value as its row folder's name shows it: as the table labels
  it, with path separators as '_' (model=nets/a.py:Net names the folder
  ...-model=nets_a.py:Net)."""
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  text = reporting.field_text(value)
  for sep in {'/', os.sep, os.altsep} - {None}:
    text = text.replace(sep, '_')
  return text


def row_name(row: str, combo: dict) -> str:
  """The row's folder name: 'power_bald', 'power_bald-acquisition_beta=2'."""
  return '-'.join([row] + [f'{k}={folder_text(v)}' for k, v in combo.items()])


def row_label(config, combo: dict) -> str:
  """The row's label in the table, as launch/report.py gives it:
  'mnist_active:power_bald,small (acquisition_beta=2)'."""
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  label = reporting.experiment_label(config.name, config.variant)
  return f'{label} ({reporting.fields_text(combo)})' if combo else label


def replaced_row_values(module, args: list[str],
                        fields: list[str]) -> list[str]:
  """Notes on the fields given for every row (--config.<field>, --vary)
  that the selected rows set to values of their own, e.g. 'note: every row
  runs with the num_iterations given, in place of its own (initial: 0,
  semi: 72)': an override can turn Table 1's initial model into an active
  learning run, which its label alone does not say."""
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  own = {a: module.get_config(a) for a in args}
  lines = []
  for field in dict.fromkeys(fields):  # Once each, in order.
    if len({str(c[field]) for c in own.values()}) < 2:
      continue  # The same in every row: nothing tells the rows apart.
    values = ', '.join(
        f'{a.split(",")[0]}: {reporting.field_text(own[a][field])}'
        for a in args)
    lines.append(f'note: every row runs with the {field} given, in place '
                 f'of its own ({values})')
  return lines


def check_rows_up_front(rows: list[tuple[tuple[str, object, str], str]]
                        ) -> None:
  """Checks every row to run against its data and devices, user code traced
  (`experiment.checked_setup`, what a run checks before it starts), before
  the first row starts: a row that cannot run (a query larger than its
  pool, a class short of initial labels, a broken data file or model) once
  stopped sweeps minutes or hours in.

  Args:
    rows: ((name, config, workdir), its --config row arg) of each row.

  Raises:
    ConfigError: naming every row that cannot run and why, and the --rows
      that would run the others.
  """
  from bass_jax import experiment  # pylint: disable=g-import-not-at-top
  from bass_jax.errors import BassError  # pylint: disable=g-import-not-at-top
  from bass_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  problems = {}
  for (name, config, _), _ in rows:
    try:
      experiment.checked_setup(config)
    except BassError as e:
      problems[name] = str(e)
  if not problems:
    return
  bad = {arg.split(',')[0] for (name, _, _), arg in rows if name in problems}
  good = list(dict.fromkeys(arg.split(',')[0] for _, arg in rows
                            if arg.split(',')[0] not in bad))
  hint = f'; run the others with --rows={",".join(good)}' if good else ''
  what = '; '.join(f'row {name}: {why}' for name, why in problems.items())
  if len(rows) > 1:
    what = f'{len(problems)} of the {len(rows)} rows cannot run: {what}'
  raise ConfigError(what + hint)


def discard_earlier_runs(rows: list[tuple[str, object, str]]) -> None:
  """--overwrite: deletes every selected row's earlier run up front.

  Every row was checked against its data and devices before
  (`check_rows_up_front`), so a bad value or a missing data file deletes
  nothing, and so is a row another process is running (its workdir lock
  is held).
  Rows then start afresh, and a sweep stopped part-way (Ctrl-C, a crash)
  is continued by its command without --overwrite: the rows it finished
  are kept, the one it was running resumes, the others start afresh
  (deleting each row only when its turn came left the later rows holding
  runs of the old config, which the plain command refused).
  """
  from bass_jax import sharding  # pylint: disable=g-import-not-at-top
  from bass_jax import workdirs  # pylint: disable=g-import-not-at-top
  for _, config, row_dir in rows:
    workdirs.check_workdir_config(row_dir, config, overwrite=True)
  if sharding.is_writer():
    existing = [d for _, _, d in rows if os.path.isdir(d)]
    # Every row's lock first: a row another process is running (a train.py
    # or another sweep) is refused with one line before anything is deleted.
    with contextlib.ExitStack() as locks:
      for row_dir in existing:
        locks.enter_context(workdirs.workdir_lock(row_dir))
      for row_dir in existing:
        workdirs.clear_run(row_dir)
  sharding.sync('sweep rows cleared')


def selected_rows(args: list[str], rows: list[str] | None) -> list[str]:
  """The row args named in `rows` (all if None), in the sweep's order.

  Raises:
    ConfigError: a name in `rows` is not a row of the sweep.
  """
  from bass_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  names = [a.split(',')[0] for a in args]
  if rows is not None and not rows:
    # An empty shell variable (--rows=$ROWS) must not run the whole sweep.
    raise ConfigError(f'--rows is empty; name rows ({", ".join(names)}) or '
                      'leave the flag out to run them all')
  unknown = [r for r in rows or [] if r not in names]
  if unknown:
    raise ConfigError(f'--rows: no row {", ".join(unknown)} in this sweep; '
                      f'its rows: {", ".join(names)}')
  return [a for a, n in zip(args, names) if not rows or n in rows]


def finished_summary(row_dir: str, config) -> dict | None:
  """The row's summary if it already ran to the end with this config (as
  experiment.run compares them: fields added since the run take their
  defaults, and where it ran does not count). A damaged config.json or
  summary.json is no finished row: running it says what is wrong, or
  rewrites the summary (the run finds itself finished)."""
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  from bass_jax import workdirs  # pylint: disable=g-import-not-at-top
  from bass_jax.errors import BassError  # pylint: disable=g-import-not-at-top
  paths = [os.path.join(row_dir, name) for name in ('config.json',
                                                    'summary.json')]
  if not all(os.path.exists(p) for p in paths):
    return None
  try:
    same = not workdirs.config_differences(
        reporting.read_config(paths[0]), config)
    return reporting.read_summary(paths[1]) if same else None
  except BassError:
    return None


if __name__ == '__main__':
  launch_common.run_main(main)
