"""Helpers shared by the launch scripts: error handling and printing."""

import os
import sys
import time
import traceback

from absl import app
from absl import logging


def default_workdir(config) -> str:
  """workdirs/<name>_<variant>_<YYYYmmdd-HHMMSS> under the current folder."""
  variant = (config.variant or 'run').replace(',', '_')
  stamp = time.strftime('%Y%m%d-%H%M%S')
  return os.path.join('workdirs', f'{config.name or "run"}_{variant}_{stamp}')


def log_line(line: str) -> None:
  print(line, flush=True)


def fmt_acc(mean: float, std: float) -> str:
  return f'{100 * mean:.2f} ± {100 * std:.2f}'


def result_table(summaries: list[dict]) -> str:
  """A Markdown table: variant | labels | paper % | ours % (mean ± std) | seeds | wall."""
  lines = ['| experiment | labels | paper % | ours % (mean ± std) | seeds | wall s |',
           '| --- | --- | --- | --- | --- | --- |']
  for s in summaries:
    paper = s.get('paper_acc', -1)
    paper = f'{paper:.2f}' if paper is not None and paper >= 0 else '–'
    lines.append(
        f"| {s['name']}:{s['variant']} | {s['num_labels']} | {paper} | "
        f"{fmt_acc(s['val_acc']['mean'], s['val_acc']['std'])} | "
        f"{s['num_seeds']} | {s['wall_s']:.0f} |")
  return '\n'.join(lines)


def run_main(main) -> None:
  """`app.run(main)`, turning user errors into one line and exit status 2.

  Set BASS_DEBUG=1 to see the traceback instead.
  """
  from bass_jax.errors import BassError  # pylint: disable=g-import-not-at-top

  def guarded(argv):
    if not os.environ.get('BASS_DEBUG'):
      logging.set_verbosity(logging.WARNING)  # Hides jax's backend probing.
    try:
      return main(argv)
    except BassError as e:
      if os.environ.get('BASS_DEBUG'):
        traceback.print_exc()
      print(f'error: {e}', file=sys.stderr, flush=True)
      sys.exit(2)

  app.run(guarded)
