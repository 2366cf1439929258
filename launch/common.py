"""Helpers shared by the launch scripts: error handling and printing."""

import ast
import errno
import os
import re
import shlex
import shutil
import sys
import time
import traceback
from typing import NoReturn, Optional

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags


def default_workdir(config, variant: Optional[str] = None) -> str:
  """workdirs/<name>_<variant>_<YYYYmmdd-HHMMSS> under the current folder.

  `variant` defaults to the config's (a sweep passes 'sweep[_modifiers]').

  Raises:
    ConfigError: for a multi-process run (config.distributed), whose
      processes would each stamp their own clock: they must share a folder.
  """
  if config.get('distributed'):
    from bass_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
    raise ConfigError('config.distributed=True needs --workdir: every process '
                      'must write and read the same folder (a default name '
                      "carries each host's clock)")
  variant = (variant or config.variant or 'run').replace(',', '_')
  stamp = time.strftime('%Y%m%d-%H%M%S')
  return os.path.join('workdirs', f'{config.name or "run"}_{variant}_{stamp}')


def log_line(line: str) -> None:
  print(line, flush=True)


def result_table(summaries: list[dict],
                 labels: Optional[list[str]] = None) -> str:
  """The Markdown result table of `reporting.markdown_table`, from summaries
  (each row labelled `<name>:<variant>` unless `labels` are given)."""
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  if labels is None:
    labels = [reporting.experiment_label(s['name'], s['variant'])
              for s in summaries]
  rows = [{'experiment': label,
           'labels': s['num_labels'], 'paper': s.get('paper_acc'),
           'mean': 100 * s['val_acc']['mean'],
           'std': 100 * s['val_acc']['std'], 'seeds': s['num_seeds'],
           'wall_s': s['wall_s']} for s, label in zip(summaries, labels)]
  return reporting.markdown_table(rows).rstrip('\n')


def cli_overrides() -> list[str]:
  """The config fields overridden on the command line (`--config.x=v`, in
  any form absl accepts: `-config.x v`, a --flagfile, ...)."""
  return list(config_flags.get_override_values(flags.FLAGS['config']))


# The checkout: configs/ is beside launch/.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Fields a run's label leaves out: the label's own words, the table's seeds
# column, and where and how fast it ran (config_checks.PLACEMENT_FIELDS).
UNLABELLED_FIELDS = ('name', 'variant', 'num_seeds')


def overrides_text(config) -> str:
  """'mu=0.5, num_iterations=5': the command line's config overrides that
  change what a run computes, as labels show fields; '' if none. Those of
  the config argument (`mnist_blog.py:active_auto,semi=none`) count too,
  where configs/ has the file to compare with.

  Left out: name and variant (the label's own words), num_seeds (the
  table's seeds column) and where and how fast the run ran
  (config_checks.PLACEMENT_FIELDS).
  """
  from bass_jax import config_checks  # pylint: disable=g-import-not-at-top
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  from bass_jax import workdirs  # pylint: disable=g-import-not-at-top
  skip = config_checks.PLACEMENT_FIELDS + UNLABELLED_FIELDS
  fields = {k: config[k] for k in cli_overrides() if k not in skip}
  fields.update(stored_overrides(workdirs.as_stored(config)))
  return reporting.fields_text(dict(sorted(fields.items())))


def _config_made(name, variant: Optional[str]) -> Optional[dict]:
  """configs/<name>.py's config at `variant` (JSON types, as a workdir
  stores it); None where no config file of that name makes it (a name of
  one's own, a variant the file no longer has)."""
  from bass_jax import workdirs  # pylint: disable=g-import-not-at-top
  from bass_jax.errors import BassError  # pylint: disable=g-import-not-at-top
  if not (isinstance(name, str) and re.fullmatch(r'[a-z_][a-z0-9_]*', name)
          and os.path.isfile(os.path.join(REPO, 'configs', f'{name}.py'))):
    return None
  import importlib  # pylint: disable=g-import-not-at-top
  try:
    made = importlib.import_module(f'configs.{name}').get_config(variant)
  except (BassError, ValueError, KeyError, AttributeError):
    return None
  return workdirs.as_stored(made)


def stored_overrides(stored: dict) -> dict:
  """{field: value} in which a run's stored config differs from its
  experiment's (configs/<name>.py at its variant), as a command line's
  overrides would make it; {} where no config file of that name makes it
  (a name of one's own, a variant the file no longer has)."""
  from bass_jax import config_checks  # pylint: disable=g-import-not-at-top
  from bass_jax import workdirs  # pylint: disable=g-import-not-at-top
  made = _config_made(stored.get('name'), stored.get('variant'))
  if made is None:
    return {}
  old = workdirs.with_defaults(stored)
  skip = config_checks.PLACEMENT_FIELDS + UNLABELLED_FIELDS
  return {k: old[k] for k in sorted(old)
          if k not in skip and old[k] != made.get(k)}


def paper_label_fields(stored: dict) -> dict:
  """{field: the paper row's value} of the reporting.label_count_fields in
  which a run's stored config differs from its paper row (its variant
  without modifiers: `alldata_maxent` of 'alldata_maxent,small'), by an
  override or a modifier: the run ends at other labels than the paper's
  number beside it. {} where the run shows no paper % or no config file
  makes its row."""
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  from bass_jax import workdirs  # pylint: disable=g-import-not-at-top
  if reporting.paper_reference(stored) is None:
    return {}
  row = str(stored.get('variant') or '').split(',')[0] or None
  paper = _config_made(stored.get('name'), row)
  if paper is None:
    return {}
  ours = reporting.label_count_fields(workdirs.with_defaults(stored))
  theirs = reporting.label_count_fields(paper)
  return {k: theirs.get(k) for k in reporting.LABEL_COUNT_FIELDS
          if ours.get(k) != theirs.get(k)}


def paper_labels_note(label: str, config) -> str:
  """'<label>: paper % at the paper protocol's labels (num_iterations=200,
  query_every=10).': the line under a table for a run whose variant's
  modifiers (MNIST's `small`) make it end at other labels than its paper %
  was measured at (paper_label_fields of `config`, a stored dict or a
  ConfigDict); '' if none, or if its overrides alone do it (the label or
  another note names them)."""
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  from bass_jax import workdirs  # pylint: disable=g-import-not-at-top
  if hasattr(config, 'to_dict'):
    config = workdirs.as_stored(config)
  fields = paper_label_fields(config)
  if not fields.keys() - stored_overrides(config).keys():
    return ''
  return (f"{label}: paper % at the paper protocol's labels "
          f'({reporting.fields_text(fields)}).')


def table_notes(runs: list[dict]) -> str:
  """Lines under a report's table for what its labels do not say: the
  overrides every run shares ('Every run with num_iterations=20.', 'Run
  with ...' for one), then each run's others that its label does not name,
  then the runs whose paper % is at other labels (paper_labels_note), then
  the runs that have not reached their last iteration, then what differs
  in the environments the runs were computed under
  (provenance.report_notes); '' if none."""
  from bass_jax import provenance  # pylint: disable=g-import-not-at-top
  from bass_jax import reporting  # pylint: disable=g-import-not-at-top
  each = [stored_overrides(run['config']) for run in runs]
  common = {k: v for k, v in each[0].items()
            if all(k in o and o[k] == v for o in each[1:])}
  every = 'Every run' if len(runs) > 1 else 'Run'
  lines = [f'{every} with {reporting.fields_text(common)}.'] if common else []
  for run, own in zip(runs, each):
    label = reporting.label_of(run)
    rest = {k: v for k, v in own.items()
            if k not in common and f'{k}=' not in label}
    if rest:
      lines.append(f'{label} with {reporting.fields_text(rest)}.')
  for run in runs:
    note = paper_labels_note(reporting.label_of(run), run['config'])
    if note:
      lines.append(note)
  for run in runs:
    unfinished = reporting.unfinished_text(run)
    if unfinished:  # Its numbers are not the protocol's end.
      lines.append(f'{reporting.label_of(run)}: unfinished, {unfinished}.')
  lines += provenance.report_notes(
      [reporting.label_of(run) for run in runs],
      [(run.get('summary') or {}).get('environments') for run in runs])
  return '\n'.join(lines)


def debug() -> bool:
  """Whether BASS_DEBUG asks for tracebacks."""
  return bool(os.environ.get('BASS_DEBUG'))


def fail(message: str) -> NoReturn:
  """Prints `error: <message>` as one line and exits with status 2.

  Under BASS_DEBUG=1 the traceback of the exception being handled (if any)
  is printed first.
  """
  if debug() and sys.exc_info()[0] is not None:
    traceback.print_exc()
  print(f'error: {one_line(message)}', file=sys.stderr, flush=True)
  sys.exit(2)


def out_of_memory(e: BaseException) -> bool:
  """Whether `e` is XLA failing to allocate (host or device memory)."""
  return 'RESOURCE_EXHAUSTED' in str(e) and type(e).__name__ in (
      'JaxRuntimeError', 'XlaRuntimeError')


def out_of_memory_message(e: BaseException) -> str:
  """One line for an allocation XLA could not make: what ran out and what
  to lower."""
  what = str(e).split('RESOURCE_EXHAUSTED:', 1)[-1].strip().splitlines()
  return (f'out of memory ({what[0] if what else "RESOURCE_EXHAUSTED"}): '
          'lower config.chunk_size / eval_chunk_size (0 is auto; a workdir '
          'resumes under new ones), or num_seeds, batch_size or the MC '
          'passes (mc_passes_pool, mc_passes_gt, batchbald_passes: another '
          'run, so a new --workdir or --overwrite), or run on a device with '
          'more memory')


def command_line() -> str:
  """The command that continues this run, ready to paste.

  This process's `python launch/train.py ...` without --overwrite, which
  would start the run over and throw away what it has (typed labels too).
  """
  argv = [a for a in sys.argv if not re.fullmatch(r'--?overwrite(=.*)?', a)]
  if argv and argv[0].endswith('.py'):
    argv = [python_command()] + argv
  return shlex.join(argv)


def python_command() -> str:
  """'python' where that runs this interpreter (an active venv), else its
  path (a venv's python called by path, which plain 'python' is not)."""
  found = shutil.which('python')
  # The same bin folder is the same environment; resolving links is not (a
  # venv's python links to the system's).
  if found and (os.path.dirname(os.path.abspath(found)) ==
                os.path.dirname(os.path.abspath(sys.executable))):
    return 'python'
  return sys.executable


def one_line(text: str) -> str:
  """A message as one line.

  ml_collections embeds the config file's traceback in its message; of that
  only the first line (the flag) and the last (the exception) are kept.
  """
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  if not lines:
    return 'unknown error'
  if any(line.startswith('Traceback (most recent call') for line in lines):
    head = lines[0].replace('Error whilst parsing config file:', '').strip()
    # A ValueError is how a config file rejects its arg; the message says
    # what is wrong, the type name adds nothing. Other types (SyntaxError,
    # NameError, ...) name a bug in the file and stay.
    last = re.sub(r'^ValueError: ', '', lines[-1])
    return f'{head} {last}'
  return ' '.join(lines)


def _override_arg(field: str, argv: list[str]) -> Optional[str]:
  """The `--config.<field>...` argument of argv that names `field`, if any."""
  for arg in argv:
    name = arg.split('=', 1)[0].lstrip('-')
    if name.startswith('config.') and (name.endswith(f'.{field}') or
                                       f'.{field}.' in name):
      return arg
  return None


def unquoted(text: str) -> str:
  """`text` with layers of Python string quoting (repr of repr) removed."""
  for _ in range(4):
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
      break
    if not isinstance(value, str):
      break
    text = value
  return text


def flag_error_message(error: BaseException, argv: list[str]) -> str:
  """One line naming the flag or config field of a command-line error."""
  if isinstance(error, (AttributeError, KeyError)):
    # ml_collections' unknown override field: the field name, perhaps with a
    # line 'Did you mean "<other>" ...?', repr()-quoted once per re-raise.
    text = unquoted(str(error))
    field = text.splitlines()[0].strip('\'" ') if text else ''
    arg = _override_arg(field, argv) if field else None
    if arg:
      hint = re.search(r'Did you mean "([^"]+)"', text)
      return (f'unknown config field {field!r} ({arg})' +
              (f'; did you mean {hint.group(1)!r}?' if hint else ''))
  order = re.match(r'Found (\S+) in argv before a value for --config was '
                   'specified', str(error))
  if order:  # ml_collections reads an override only after the file.
    return (f'{order.group(1)} comes before --config: give --config=<file> '
            'first, then its --config.<field> overrides')
  if isinstance(error, (flags.Error, ValueError, TypeError)):
    return one_line(str(error))
  # Anything else came out of executing the config file itself.
  given = next((a for a in argv if a.startswith('--config=')), '--config')
  return one_line(f'{given}: {type(error).__name__}: {error}')


def _config_load_error(name: str, value: object) -> Optional[str]:
  """The message of a config flag whose file failed to load, else None.

  ml_collections does not raise for a missing config file: it stores an
  object that raises on first use, deep inside the run.
  """
  error = getattr(value, '_error', None)
  if not isinstance(error, BaseException):
    return None
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  given = next((a for a in sys.argv if a.startswith(f'--{name}=')),
               f'--{name}')
  return f'{given}: {lines[-1] if lines else type(error).__name__}'


HELP_FLAGS = ('-help', '--help', '-?', '--helpfull', '-helpfull',
              '--helpshort', '-helpshort', '--helpxml', '-helpxml')


def parse_flags(argv: list[str]) -> list[str]:
  """`app.run`'s flags parser: absl's, with every error as one line, exit 2."""
  files = [a for a in argv[1:] if re.match(r'--?config(=|$)', a)]
  if len(files) > 1:
    # absl would load both and complain of each override 'defined twice'.
    fail(f'--config is given {len(files)} times; give one config file and '
         'change its fields with --config.<field>=<value>')
  try:
    remaining = flags.FLAGS(argv)
  except SystemExit as e:
    # absl exits with status 1 after printing --help; asking for help is
    # not a failure (status 1 means a bug here, see the README).
    if e.code == 1 and any(a.split('=')[0] in HELP_FLAGS for a in argv[1:]):
      sys.exit(0)
    raise
  except Exception as e:  # pylint: disable=broad-except
    # Flags and config files raise many types; all are bad user input here.
    fail(flag_error_message(e, argv))
  for name in flags.FLAGS:
    message = _config_load_error(name, flags.FLAGS[name].value)
    if message:
      fail(message)
  return remaining


def define_data_dir_flag(what: str) -> flags.FlagHolder:
  """--data_dir of the tools that read a finished run (`what` it is for)."""
  return flags.DEFINE_string(
      'data_dir', '', f"The data root{what}, if not the run's config.data_dir"
      ' (default: BASS_DATA_DIR, else ../shared/data).')


def define_config_file(default: str, help_string: str):
  """`--config`: a locked ml_collections config file flag.

  Without --config on the command line, the default file is loaded (and the
  `--config.<field>` overrides looked up) right here, at definition time;
  an error there becomes one line too.
  """
  try:
    return config_flags.DEFINE_config_file('config', default, help_string,
                                           lock_config=True)
  except Exception as e:  # pylint: disable=broad-except
    fail(flag_error_message(e, sys.argv))


def unexpected_argument_message(arg: str) -> str:
  """The error of a positional argument (every input is a --flag)."""
  message = f'unexpected argument {arg!r} (every input is a --flag)'
  if arg.split(':')[0].endswith('.py'):
    message += f'; did you mean --config={arg}?'
  return message


def stopped_line(by_sigterm: bool) -> str:
  """The line of a run stopped by Ctrl-C or SIGTERM. Runs checkpoint every
  `checkpoint_every` iterations (and at a requested stop); the same command
  (without --overwrite) resumes from the newest checkpoint."""
  what = 'terminated (SIGTERM)' if by_sigterm else 'interrupted'
  return f'{what}; to continue, run: {command_line()}'


def run_main(main, resumes: bool = True) -> None:
  """`app.run(main)`, turning user errors into one line and exit status 2.

  User errors are bad flags or config files (while parsing), BassError (bad
  config values, data, checkpoints, a diverged run) and OSError (e.g. an
  unwritable workdir), and XLA running out of memory. Set BASS_DEBUG=1 to
  see the traceback too. Ctrl-C is one line as well (exit status 130), and
  so is SIGTERM (143): what was checkpointed is kept. `resumes`: a full
  disk's line says the same command resumes (train, sweep), else that it
  runs again (report, export).
  """
  from bass_jax import interrupts  # pylint: disable=g-import-not-at-top
  from bass_jax.errors import BassError  # pylint: disable=g-import-not-at-top
  # Before JAX starts: a Ctrl-C in its start-up's gc callbacks was dropped.
  interrupts.install(exit_line=stopped_line)

  def guarded(argv):
    if len(argv) > 1:
      fail(unexpected_argument_message(argv[1]))
    if not debug():
      logging.set_verbosity(logging.WARNING)  # Hides jax's backend probing.
    from bass_jax import oracle  # pylint: disable=g-import-not-at-top
    try:
      return main(argv)
    except oracle.WaitingForLabels as e:
      print(f'{e}:\n  {command_line()}', flush=True)
      sys.exit(oracle.WAITING_FOR_LABELS)
    except Exception as e:  # pylint: disable=broad-except
      if not isinstance(e, (BassError, OSError)):
        if out_of_memory(e):
          fail(out_of_memory_message(e))
        raise  # A bug: its traceback.
      if getattr(e, 'errno', None) == errno.ENOSPC:
        # E.g. metrics.jsonl's write: '[Errno 28] No space left on device'.
        fail(f'{e}; free some space and run the same command again'
             + ' to resume' * resumes)
      fail(str(e))
    except KeyboardInterrupt as e:
      if debug():
        traceback.print_exc()
      term = isinstance(e, interrupts.Terminated)
      print(stopped_line(term), file=sys.stderr, flush=True)
      sys.exit(143 if term else 130)

  app.run(guarded, flags_parser=parse_flags)
