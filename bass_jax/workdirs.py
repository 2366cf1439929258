"""A run's workdir: whose config it holds, who holds it, where it resumes.

The checks before a run writes into a workdir (another config's run, a
sweep's folder, files where folders belong), its lock, the checkpoint it
resumes from (and why one no longer fits), what --overwrite clears, and
the metrics and TensorBoard files rewritten to the resume point.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from typing import Any, Callable, Optional

import jax
import ml_collections
import numpy as np

from bass_jax import checkpoint
from bass_jax import config_checks
from bass_jax import loop
from bass_jax import reporting
from bass_jax import tb_writer
from bass_jax.errors import BassError
from bass_jax.errors import ConfigError
from configs import common


def as_stored(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """`config` as its run's config.json holds it (JSON types: a tuple as a
  list), to compare with a stored one."""
  return json.loads(json.dumps(config.to_dict()))


def with_defaults(stored: dict[str, Any]) -> dict[str, Any]:
  """A stored config.json's fields, with the defaults of fields added since
  the run was made (as analysis.restored_run does): it computed with them."""
  return {**as_stored(common.base_config()), **stored}


# What a run is, named first when two configs differ: another experiment
# altogether says more than the fields that follow from it.
IDENTITY_FIELDS = ('name', 'variant', 'dataset', 'model')
# The oracles a person answers, each way a run may ask them.
HUMAN_ORACLES = ('files', 'terminal')


def config_differences(stored: dict[str, Any],
                       config: ml_collections.ConfigDict) -> list[str]:
  """The fields in which `config` computes differently from a run whose
  config.json holds `stored`, IDENTITY_FIELDS first, then sorted; placement
  fields do not count."""
  old = with_defaults(stored)
  new = as_stored(config)
  diff = [k for k in set(old) | set(new) if old.get(k) != new.get(k) and
          k not in config_checks.PLACEMENT_FIELDS]
  if {old.get('oracle'), new.get('oracle')} <= set(HUMAN_ORACLES):
    # Two ways to give the same answers (the terminal records each in the
    # query's manifest, which the files oracle reads): a paused run may go
    # on with either; the folder config's variants differ in that alone.
    diff = [k for k in diff if k != 'oracle']
    if diff == ['variant']:
      diff = []
  return sorted(diff, key=lambda k: (
      IDENTITY_FIELDS.index(k) if k in IDENTITY_FIELDS
      else len(IDENTITY_FIELDS), k))


def check_is_folder(workdir: str) -> None:
  """Refuses a workdir that exists as something else than a folder.

  Raises:
    ConfigError: naming it.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f'workdir {workdir} exists and is not a folder; use '
                      'another --workdir')


def check_workdir_config(workdir: str, config: ml_collections.ConfigDict,
                         overwrite: bool = False) -> None:
  """Refuses a workdir that holds a run of a different config.

  Raises:
    ConfigError: naming the first differing field (unless `overwrite`).
  """
  check_is_folder(workdir)
  for name in ('checkpoints', 'queries'):
    path = os.path.join(workdir, name)
    if os.path.exists(path) and not os.path.isdir(path):
      raise ConfigError(f'{path} is not a folder; move it away (the run '
                        'keeps its checkpoints and queries there)')
  path = os.path.join(workdir, 'config.json')
  runs = [] if os.path.exists(path) else reporting.run_folders(workdir)
  if runs:  # --overwrite clears a run's files, never other runs.
    names = ', '.join(os.path.basename(r) for r in runs)
    raise ConfigError(f'workdir {workdir} holds {len(runs)} runs in its '
                      f'folders ({names}: a sweep?), not one; give this run '
                      'a --workdir of its own')
  if overwrite:
    return
  if not os.path.exists(path):
    if os.path.isdir(workdir) and checkpoint.steps(workdir):
      # Resuming would continue the checkpointed run under any config.
      raise ConfigError(f'workdir {workdir} has checkpoints but no '
                        'config.json, so its config cannot be checked; put '
                        'it back, or use a new --workdir or --overwrite')
    return
  try:
    stored = reporting.read_config(path)
  except BassError as e:
    raise ConfigError(f'{e}; or use a new --workdir, or pass --overwrite'
                      ) from None
  diff = config_differences(stored, config)
  if diff:
    k = diff[0]
    old = with_defaults(stored)
    new = as_stored(config)
    # A field added since the run was made: the run computed with its
    # default, and setting that continues it as it was made.
    since = (f'; the run predates config.{k}: --config.{k}='
             f'{old.get(k)!r} continues it' if k not in stored else '')
    more = f' and {len(diff) - 1} more field(s)' if len(diff) > 1 else ''
    raise ConfigError(
        f'workdir {workdir} holds a run with a different config '
        f'({k}: {old.get(k)!r} there, {new.get(k)!r} now{more}){since}; use '
        'a new --workdir or pass --overwrite')


def latest_checkpoint(workdir: str, template: loop.LoopState,
                      warn: Callable[[str], None]
                      ) -> Optional[checkpoint.Restored]:
  """`checkpoint.latest_valid`, also of a run made before the state had
  `skipped` (its last field): read without it, then given none skipped,
  as nothing could be skipped then.

  Raises:
    checkpoint.CheckpointMismatchError: the newest intact checkpoint fits
      neither state; the message says what changed (`mismatch_cause`).
  """
  try:
    return checkpoint.latest_valid(workdir, template, warn=warn)
  except checkpoint.CheckpointMismatchError as e:
    mismatch = e
  try:  # Damaged checkpoints were reported by the first pass.
    found = checkpoint.latest_valid(workdir, template.replace(skipped=None),
                                    warn=lambda _: None)
  except checkpoint.CheckpointMismatchError:
    found = None
  if found is None:
    num_seeds = template.iteration.shape[0]
    raise checkpoint.CheckpointMismatchError(
        f'{mismatch}: {mismatch_cause(mismatch, num_seeds)}') from mismatch
  none = np.zeros(template.skipped.shape, bool)
  where = getattr(template.skipped, 'sharding', None)
  return found._replace(state=found.state.replace(
      skipped=none if where is None else jax.device_put(none, where)))


def mismatch_cause(e: checkpoint.CheckpointMismatchError,
                   num_seeds: int) -> str:
  """What changed, when a workdir's checkpoint does not fit the state its
  config (which matched) builds: 'the checkpoint holds 2 seed(s), ...'."""
  saved, wanted = e.saved_shape, e.wanted_shape
  if saved and wanted and saved[1:] == wanted[1:] and wanted[0] == num_seeds:
    # Only the seed axis differs: the checkpoint is another run's (copied
    # in, or config.json edited), which the config check cannot see.
    return (f'the checkpoint holds {saved[0]} seed(s), this run has '
            f'{num_seeds}')
  if e.leaf.startswith(('.train.params', '.train.opt_state')):
    # The weights' shapes follow the network and the number of classes.
    return ('the network differs from the one the run was made with (its '
            "model file edited, or the data's classes changed?)")
  # E.g. images added to or removed from a folder dataset.
  return ('the data differ from those the run was made with (their size or '
          'classes changed?)')


def resume_point(workdir: str, template: loop.LoopState,
                 log: Callable[[str], None]
                 ) -> Optional[checkpoint.Restored]:
  """The newest valid checkpoint of a workdir; None if it has none at all.

  Damaged checkpoints are reported through `log` and skipped.

  Raises:
    checkpoint.CheckpointError: there are checkpoints but none is valid
      (starting afresh would silently discard the run), or the newest intact
      one does not fit this run's state.
  """
  try:
    restored = latest_checkpoint(workdir, template, warn=log)
  except checkpoint.CheckpointMismatchError as e:
    raise checkpoint.CheckpointMismatchError(
        f'{e}; put back what changed, or use a new --workdir or --overwrite'
    ) from e
  found = checkpoint.steps(workdir)
  if restored is None and found:
    raise checkpoint.CheckpointError(
        f'no valid checkpoint in {checkpoint.checkpoints_dir(workdir)} '
        f'(steps {found} are all damaged); pass --overwrite to start afresh')
  return restored


def is_finished(config: ml_collections.ConfigDict,
                found: checkpoint.Restored) -> bool:
  """Whether a checkpoint is a finished run's last one.

  A checkpoint at step s holds the state after iterations 0..s-1, and a run
  does iterations 0..num_iterations; a paused human-oracle run keeps its
  unanswered query in the checkpoint's `pending`.
  """
  return (found.step > config.num_iterations and
          not found.extra.get('pending'))


def checkpoint_point(config: ml_collections.ConfigDict,
                     found: checkpoint.Restored) -> str:
  """Where a checkpoint's run stands: 'after iteration 12', or inside the
  initial phase (a checkpoint at step 0) 'after initial epoch 40 of 100'."""
  if found.step == 0:
    return (f'after initial epoch {found.extra.get("initial_epochs_done", 0)}'
            f' of {config.initial_epochs}')
  return f'after iteration {found.step - 1}'


# Held (flock) by the process writing a workdir, for as long as it runs.
LOCK_FILE = 'run.lock'


@contextlib.contextmanager
def workdir_lock(workdir: str):
  """Holds the workdir for one run at a time.

  Two runs writing one workdir delete each other's checkpoints in progress;
  the second is refused. The lock (flock on an empty file, which a refused
  or failed run leaves as it was) goes with the process, so a crash or
  SIGKILL leaves nothing to clean up; on a filesystem without locks the
  run goes on unlocked.

  Raises:
    ConfigError: another process holds the lock.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  with open(path, 'a') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise ConfigError(
          f'{workdir} is in use by another run (its process holds {path});'
          ' wait for it to end, or use another --workdir') from None
    except OSError:
      pass  # No locks on this filesystem.
    yield


def clear_run(workdir: str) -> None:
  """Deletes an earlier run (for --overwrite): its checkpoints, so that a
  later resume cannot pick up one of the other config; its config.json,
  metrics and summary, so that a launch stopped before the new run writes
  its own (e.g. while compiling) is continued by the plain command instead
  of being refused as another config's workdir; and its queries,
  corrections and TensorBoard events, which would sit beside the new run's
  (old query images next to a new manifest, two curves per tag)."""
  checkpoint.discard_all(workdir)
  for name in RUN_FILES:
    path = os.path.join(workdir, name)
    if os.path.exists(path):
      os.remove(path)
  for folder in RUN_FOLDERS:
    path = os.path.join(workdir, folder)
    if os.path.isdir(path):
      shutil.rmtree(path)


def rewritten_tensorboard(workdir: str, config: ml_collections.ConfigDict,
                          kept: list[str]) -> Optional[tb_writer.Writer]:
  """The run's TensorBoard writer (None when off or not installed), its
  folder rewritten from the kept metrics.jsonl lines: the hparams and every
  iteration before the resume point, so the points a killed run logged
  after its last checkpoint do not stay beside the resumed run's (one
  events file, one point per step and tag)."""
  if not (config.tensorboard and tb_writer.available()):
    return None
  folder = os.path.join(workdir, 'tensorboard')
  if os.path.isdir(folder):
    shutil.rmtree(folder)
  tb = tb_writer.Writer(folder)
  tb.hparams(config.to_dict())
  by_iteration = {}
  for line in kept:  # In iteration order, as the run wrote them.
    row = json.loads(line)
    by_iteration.setdefault(row['iteration'], []).append(row)
  for i, rows in by_iteration.items():
    tb.scalars(i, rows)
  return tb


def kept_metrics(path: str, before_iteration: int) -> list[str]:
  """metrics.jsonl lines of iterations < before_iteration (a resume point).

  Later lines (written after the checkpoint) and a torn last line from a
  crash are dropped, so every (iteration, seed) appears exactly once.

  Raises:
    DataError: a line before the last is no metrics row (a damaged or
      hand-edited file; `reporting.read_metrics`).
  """
  if not os.path.exists(path):
    return []
  # Written back as json.dumps wrote them: the same bytes.
  return [json.dumps(row) + '\n' for row in reporting.read_metrics(path)
          if row['iteration'] < before_iteration]


# A person's corrections of labels a run has, read when it goes on.
CORRECTIONS = 'corrections.csv'
# A run's own files and folders in its workdir, besides checkpoints/ and
# LOCK_FILE: what --overwrite clears (`clear_run`).
RUN_FILES = ('summary.json', 'config.json', 'metrics.jsonl', CORRECTIONS)
RUN_FOLDERS = ('queries', 'tensorboard', 'corrections')


def archived_corrections(workdir: str, iteration: int) -> str:
  """Moves corrections.csv to corrections/at_iteration_<i>[_<k>].csv."""
  folder = os.path.join(workdir, 'corrections')
  os.makedirs(folder, exist_ok=True)
  name, k = f'at_iteration_{iteration}', 1
  while os.path.exists(os.path.join(folder, f'{name}.csv')):
    k += 1
    name = f'at_iteration_{iteration}_{k}'
  target = os.path.join(folder, f'{name}.csv')
  os.replace(os.path.join(workdir, CORRECTIONS), target)
  return target


# What metrics.jsonl's columns mean; kept in every checkpoint. 2: pseudo_acc
# scores the iteration's new pseudo-labels, pool_entropy the whole pool (the
# original code's CSV); 1 (checkpoints without it): the labels trained on,
# and the unlabelled part.
METRICS_VERSION = 2


def diverged_advice(workdir: str) -> str:
  """What a diverged run in `workdir` leaves and what to do (a resume must
  keep the config, so a lower learning rate means a new run)."""
  retrain = 'retrain with a lower config.learning_rate and --overwrite'
  if checkpoint.steps(workdir):
    return ('the last good checkpoint is kept (report and export read it); '
            + retrain)
  # So early, a model or data that give NaN logits are as likely a cause.
  return ('no checkpoint was written before it, so there is nothing to '
          f'report; {retrain}, or, if it fails from the start, check that the '
          'model gives finite logits on the data')


def last_rows(metrics_path: str) -> dict[int, dict]:
  """The row of the highest iteration per seed, from metrics.jsonl."""
  return reporting.last_row_by_seed(reporting.read_metrics(metrics_path))
