r"""Runs every row of a config's sweep (each row's seeds vmapped) into a table.

  python launch/sweep.py --config=configs/yinyang.py --workdir=workdirs/table1
  python launch/sweep.py --config=configs/mnist.py:small \
      --workdir=workdirs/table2_small --rows=alldata_maxent,supervised_100

Each row gets its own workdir `<workdir>/<row>/` (config.json,
metrics.jsonl, summary.json); the sweep writes `<workdir>/table.md` and
prints it. `--config.<field>=...` overrides apply to every row. Rows already
finished (a summary.json with the same config) are not run again.
"""

import importlib.util
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import flags  # pylint: disable=g-import-not-at-top

from launch import common as launch_common

_CONFIG = launch_common.define_config_file(
    os.path.join(REPO, 'configs', 'yinyang.py'),
    'Config file[:modifiers] whose `sweep(add)` lists the rows.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output folder of the sweep.')
_ROWS = flags.DEFINE_list('rows', None, 'Only these rows (default: all).')
_QUIET = flags.DEFINE_bool('quiet', False, 'Only print one line per row.')


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


def cli_overrides() -> dict:
  """`--config.x=v` flags given on the command line, as a field dict."""
  out = {}
  for arg in sys.argv[1:]:
    if arg.startswith('--config.'):
      key, _, _ = arg[len('--config.'):].partition('=')
      out[key] = None
  return out


def main(argv):
  del argv
  from bass_jax import experiment  # pylint: disable=g-import-not-at-top
  path, _, base_arg = sys_config_arg().partition(':')
  module = config_module(path)
  overridden = _CONFIG.value
  # Named for the sweep, not for the config's default row.
  workdir = _WORKDIR.value or launch_common.default_workdir(
      overridden, 'sweep' + (f',{base_arg}' if base_arg else ''))
  summaries = []
  args = selected_rows(row_args(module, base_arg), _ROWS.value)
  for k, arg in enumerate(args):
    name = arg.split(',')[0]
    config = module.get_config(arg)
    for key in cli_overrides():
      config[key] = overridden[key]
    row_dir = os.path.join(workdir, name)
    log = (lambda s: None) if _QUIET.value else launch_common.log_line
    done = finished_summary(row_dir, config)
    if done:
      print(f'== {name} (row {k + 1}/{len(args)}): already finished in '
            f'{row_dir}', flush=True)
      summaries.append(done)
      continue
    print(f'== {name} (row {k + 1}/{len(args)}) -> {row_dir}', flush=True)
    summaries.append(experiment.run(config, row_dir, log=log))
    print(launch_common.result_table(summaries[-1:]).splitlines()[-1],
          flush=True)
  table = launch_common.result_table(summaries)
  with open(os.path.join(workdir, 'table.md'), 'w') as f:
    f.write(table + '\n')
  with open(os.path.join(workdir, 'summaries.json'), 'w') as f:
    json.dump(summaries, f, indent=2)
  print(table)


def selected_rows(args: list[str], rows: list[str] | None) -> list[str]:
  """The row args named in `rows` (all if None), in the sweep's order.

  Raises:
    ConfigError: a name in `rows` is not a row of the sweep.
  """
  from bass_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  names = [a.split(',')[0] for a in args]
  unknown = [r for r in rows or [] if r not in names]
  if unknown:
    raise ConfigError(f'--rows: no row {", ".join(unknown)} in this sweep; '
                      f'its rows: {", ".join(names)}')
  return [a for a, n in zip(args, names) if not rows or n in rows]


def finished_summary(row_dir: str, config) -> dict | None:
  """The row's summary if it already ran to the end with this config."""
  try:
    with open(os.path.join(row_dir, 'config.json')) as f:
      same = json.load(f) == json.loads(json.dumps(config.to_dict()))
    with open(os.path.join(row_dir, 'summary.json')) as f:
      return json.load(f) if same else None
  except (OSError, ValueError):
    return None


def sys_config_arg() -> str:
  """The raw --config value: the config file path and its ':arg'."""
  for arg in sys.argv[1:]:
    if arg.startswith('--config='):
      return arg[len('--config='):]
  return os.path.join(REPO, 'configs', 'yinyang.py')


if __name__ == '__main__':
  launch_common.run_main(main)
