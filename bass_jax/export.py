"""Exports a run's labels: one CSV row per pool sample.

Human labels where the run has them, elsewhere the MC-dropout prediction of
one seed's newest checkpoint (a finished, paused or interrupted run; the
latter two are reported as such by `progress_note`):

  id,label,confidence,source[,class_name][,file]

- id: the sample's index in the dataset's training split, original order.
- label: the class index; the known label (source 'human', confidence 1.0:
  given by the human oracle, the labelled folder, or, with a simulated
  oracle, the dataset's labels),
  else the argmax of the MC-mean probabilities (source 'pseudo' for members
  of the pseudo-labelled set D, 'model' for the rest, 'skipped' for a
  query the human oracle skipped).
- confidence: the MC-mean probability of that label.
- class_name, file: the class folder name and the image path, for datasets
  read from an image folder (`data.load_image_folder`).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Callable, Optional

import flax.serialization
import jax
import numpy as np

from bass_jax import analysis
from bass_jax import checkpoint
from bass_jax import data as data_lib
from bass_jax import experiment
from bass_jax import mc_dropout
from bass_jax import models
from bass_jax import progress
from bass_jax import reporting
from bass_jax import workdirs
from bass_jax import writing
from bass_jax.errors import ConfigError
from bass_jax.errors import DataError

HEADER = ('id', 'label', 'confidence', 'source')


def chunk_for_passes(run: experiment.Run, num_passes: int) -> int:
  """Samples per chunk of a sweep of `num_passes` passes with the run's
  model: config.chunk_size if set, else the run's 'auto' pool chunk (sized
  for its T' passes) scaled to as many activations (a T = 100 sweep in the
  chunks of T' = 10 would hold 10x the memory)."""
  cfg = run.loop_config
  if run.config.chunk_size:
    return run.config.chunk_size
  return max(1, cfg.chunk_size * cfg.mc_passes_pool // num_passes)


def seed_key(run: experiment.Run, seed_index: int) -> jax.Array:
  """The PRNG key of seed `seed_index`'s sweeps outside the loop (this
  export's, `predict`'s): key(config.seed + seed_index)."""
  return jax.random.key(run.config.seed + seed_index,
                        impl=run.loop_config.prng_impl)


def seed_params(state, seed_index: int):
  """One seed's parameters, on the host: the seed slice of a state sharded
  over devices would otherwise meet the inputs on another device inside
  the sweep's jit."""
  return jax.device_get(analysis.seed_params(state, seed_index))


def sweep_fn(run: experiment.Run, num_passes: int,
             score_names: tuple[str, ...] = ()) -> Callable:
  """jit((params, x [N, ...], key) -> `mc_dropout.mc_sweep` statistics) of
  the run's model in its own sweep arithmetic (config.mc_precision), in
  chunks for `num_passes` passes (`chunk_for_passes`): compiled once per
  shape of x, for every seed."""
  apply_fn = mc_dropout.with_precision(run.model.apply,
                                       run.loop_config.mc_precision)
  chunk = chunk_for_passes(run, num_passes)
  return jax.jit(lambda params, x, key: mc_dropout.mc_sweep(
      apply_fn, params, x, key, num_passes, chunk, score_names))


def pool_predictions(run: experiment.Run, state, seed_index: int,
                     num_passes: Optional[int] = None) -> dict[str, np.ndarray]:
  """MC-dropout predictions of one seed over the whole pool.

  Args:
    run: the built run (`analysis.restored_run`).
    state: its LoopState with a leading seed axis [S, ...].
    seed_index: which seed's parameters to use, in [0, S).
    num_passes: dropout passes T per sample; None: the config's mc_passes_gt.

  Returns:
    'label' [N] int32 argmax of the MC-mean probabilities and 'confidence'
    [N] float32 their maximum.
  """
  num_passes = num_passes or run.loop_config.mc_passes_gt
  sweep = sweep_fn(run, num_passes)(seed_params(state, seed_index),
                                    run.seed_dataset(seed_index).x_train,
                                    seed_key(run, seed_index))
  mean_probs = np.asarray(sweep['mean_probs'])
  return {'label': mean_probs.argmax(-1).astype(np.int32),
          'confidence': mean_probs.max(-1).astype(np.float32)}


def labels_table(run: experiment.Run, state, seed_index: int = 0,
                 num_passes: Optional[int] = None) -> dict[str, np.ndarray]:
  """The exported labels of one seed, as columns of [N] arrays.

  Args:
    run, seed_index, num_passes: as for `pool_predictions`.
    state: its LoopState with a leading seed axis [S, ...].

  Returns:
    'id' int, 'label' int32, 'confidence' float32 and 'source' str
    ('human' | 'pseudo' | 'model' | 'skipped'), see the module docstring.
  """
  labelled = np.asarray(state.labelled[seed_index])
  skipped = np.asarray(state.skipped[seed_index])
  member = np.asarray(state.member[seed_index])
  given = np.asarray(state.labels[seed_index])
  pred = pool_predictions(run, state, seed_index, num_passes)
  return {
      'id': np.arange(labelled.shape[0]),
      'label': np.where(labelled, given, pred['label']).astype(np.int32),
      'confidence': np.where(labelled, np.float32(1.0), pred['confidence']),
      'source': np.where(labelled, 'human', np.where(
          skipped, 'skipped', np.where(member, 'pseudo', 'model'))),
  }


def pool_files(config, pool_size: int) -> Optional[list[str]]:
  """Image paths of the pool if the config's dataset is an image folder.

  Resolved as `data.load_dataset` does, so relative to the current folder
  or the data dir; None for every other kind of dataset.
  """
  if config.data_source not in ('auto', 'folder'):
    return None
  root = data_lib.image_folder_root(config.dataset,
                                    experiment.data_dir(config))
  if root is None:
    return None
  return [str(p) for p in data_lib.image_folder_files(root).train[:pool_size]]


def is_run_file(workdir: str, path: str) -> bool:
  """Whether `path` is (or would be) one of the run's own files in
  `workdir`: its config, metrics, summary, lock, corrections, or a file in
  its checkpoints or query folders, which a labels CSV must not replace."""
  root = os.path.realpath(workdir)
  path = os.path.realpath(path)
  if os.path.dirname(path) == root and os.path.basename(path) in (
      *workdirs.RUN_FILES, workdirs.LOCK_FILE):
    return True
  return any(path.startswith(os.path.join(root, folder) + os.sep)
             for folder in ('checkpoints', *workdirs.RUN_FOLDERS))


def write_csv(path: str, table: dict[str, np.ndarray],
              class_names: tuple[str, ...] = (),
              files: Optional[list[str]] = None) -> str:
  """Writes the table (atomically) with the optional columns; returns path.

  A failed write (e.g. `path` is a folder) removes its temp file, so it
  leaves nothing behind.

  Args:
    path: the CSV file.
    table: columns of [N] arrays (see `labels_table`).
    class_names: [C] names of the labels' classes, or ().
    files: N paths, row i's file; None: no file column.
  """
  header = list(HEADER) + ['class_name'] * bool(class_names) + (
      ['file'] if files is not None else [])
  writing.write_csv(path, header, (_csv_row(table, i, class_names, files)
                                   for i in range(table['id'].shape[0])))
  return path


def _csv_row(table: dict[str, np.ndarray], i: int,
             class_names: tuple[str, ...],
             files: Optional[list[str]]) -> list:
  """Row i of the CSV: id, label, confidence, source[, class_name][, file]."""
  label = int(table['label'][i])
  row = [int(table['id'][i]), label,
         round(float(table['confidence'][i]), 6), str(table['source'][i])]
  if class_names:
    row.append(class_names[label])
  if files is not None:
    row.append(files[i])
  return row


def progress_note(config, found: checkpoint.Restored) -> str:
  """'' for a finished run, else which iteration the export is from and why.

  See `workdirs.is_finished`.
  """
  if workdirs.is_finished(config, found):
    return ''
  why = ('paused, waiting for labels' if found.extra.get('pending') else
         'unfinished run')
  where = workdirs.checkpoint_point(config, found)
  if found.step:
    where += f' of {config.num_iterations}'
  return f'{where} ({why})'


def restored_seed(workdir: str, out: str, flag: str, example: str,
                  seed_index: int, dataset: Optional[data_lib.Dataset],
                  warn: Optional[Callable[[str], None]], data_dir: str):
  """(Run, checkpoint.Restored) of a workdir's newest checkpoint, after the
  checks of an export of its seed `seed_index` to `out` (given as
  --`flag`; `example`: a file name to suggest).

  Raises:
    ConfigError: seed_index out of range, or `out` is a folder or one of
      the run's own files (`is_run_file`).
    DataError: the workdir holds no run, an unreadable config.json or no
      valid checkpoint.
  """
  if not os.path.isfile(os.path.join(workdir, 'config.json')):
    rows = reporting.run_folders(workdir)
    if rows:  # A sweep: each row is a run of its own.
      raise DataError(f'{workdir} holds a sweep of {len(rows)} runs, not one;'
                      f' export a row: --workdir={rows[0]} (rows: '
                      f'{", ".join(os.path.basename(r) for r in rows)})')
    raise DataError(f'{workdir} holds no run (no config.json); pass the '
                    '--workdir of a launch/train.py run')
  if is_run_file(workdir, out):
    raise ConfigError(f'--{flag}={out} is a file of the run in {workdir}; '
                      'give another name, e.g. '
                      f'--{flag}={os.path.join(workdir, example)}')
  if os.path.isdir(out):
    # Checked first: the MC-dropout sweep before the write may take long.
    raise ConfigError(f'--{flag}={out} is a folder; give a file name, e.g. '
                      f'--{flag}={os.path.join(out, example)}')
  run, found = analysis.restored(workdir, dataset, warn, data_dir)
  if not 0 <= seed_index < run.config.num_seeds:
    raise ConfigError(f'--seed_index={seed_index} must be in [0, '
                      f'{run.config.num_seeds}) for the '
                      f'{run.config.num_seeds} seeds of {workdir}')
  return run, found


def export_params(workdir: str, out: str, seed_index: int = 0,
                  dataset: Optional[data_lib.Dataset] = None,
                  warn: Optional[Callable[[str], None]] = None,
                  data_dir: str = '') -> tuple[int, str]:
  """Writes one seed's network parameters from a workdir's newest
  checkpoint to `out` in flax's msgpack format
  (`flax.serialization.to_bytes`), which `config.init_params` reads: a run
  of one's own data may start from a model trained on other data.

  Args and errors as for `export_labels`.

  Returns:
    (the number of parameters written, `progress_note`).
  """
  run, found = restored_seed(workdir, out, 'params_out', 'params.msgpack',
                             seed_index, dataset, warn, data_dir)
  params = seed_params(found.state, seed_index)
  writing.write_bytes(out, flax.serialization.to_bytes(params))
  return models.num_params(params), progress_note(run.config, found)


def export_labels(workdir: str, out: str, seed_index: int = 0,
                  num_passes: Optional[int] = None,
                  dataset: Optional[data_lib.Dataset] = None,
                  warn: Optional[Callable[[str], None]] = None,
                  data_dir: str = '',
                  log: Optional[Callable[[str], None]] = None
                  ) -> tuple[dict[str, np.ndarray], str]:
  """Writes the labels CSV of a workdir's newest checkpoint to `out`.

  Args:
    workdir: a finished, paused or interrupted run.
    out: the CSV file to write.
    seed_index: which of the run's seeds, in [0, num_seeds).
    num_passes: MC-dropout passes; None: the config's mc_passes_gt.
    dataset: overrides loading the data named by the run's config.
    warn: gets one line if damaged checkpoints were skipped.
    data_dir: replaces the run's config.data_dir (see `analysis.restored`).
    log: gets a line before the pool's MC-dropout sweep (one compiled
      call: 60,000 MNIST images x 100 passes are 6 M forwards, ~10 minutes
      at the ~10,000 a second `hot_path.py` measured on a 2-core CPU) and,
      while it runs, `progress.heartbeat`'s lines.

  Returns:
    The table written (see `labels_table`) and `progress_note` ('' for a
    finished run, else the iteration exported and why the run stopped).

  Raises:
    ConfigError: seed_index out of range, or `out` is a folder or one of
      the run's own files (`is_run_file`).
    DataError: the workdir holds no run, an unreadable config.json or no
      valid checkpoint.
  """
  run, found = restored_seed(workdir, out, 'out', 'labels.csv', seed_index,
                             dataset, warn, data_dir)
  if log:
    passes = num_passes or run.loop_config.mc_passes_gt
    log(f'sweeping the pool: {run.dataset.x_train.shape[0]:,} samples x '
        f'{passes} MC-dropout passes (seed {run.config.seed + seed_index})')
  with (progress.heartbeat(log, 'the sweep', time.time()) if log else
        contextlib.nullcontext()):
    table = labels_table(run, found.state, seed_index, num_passes)
  # Corrections the run has not trained on yet (it finished, or has not
  # been relaunched since): a person's latest word on a label.
  fixes = experiment.corrections(run, found.state, workdir)
  ids = [i for i in fixes if table['source'][i] == 'human']
  if ids:
    table['label'][ids] = [fixes[i] for i in ids]
    if log:
      log(f'applied {len(ids)} label correction(s) from '
          f'{os.path.join(workdir, workdirs.CORRECTIONS)} (not trained on '
          'yet)')
  files = None if dataset is not None else pool_files(
      run.config, table['id'].shape[0])
  write_csv(out, table, run.dataset.class_names, files)
  return table, progress_note(run.config, found)
