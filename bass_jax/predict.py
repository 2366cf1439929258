"""Predictions of a trained run on new inputs, with their MC-dropout
uncertainty: one CSV row per input.

  id,label,confidence,entropy,bald,confident[,class_name][,true_label][,file]

- id: the input's row (an npz file's order; an image folder's files sorted
  by class folder, then name).
- label: the argmax of the MC-mean probabilities; confidence: their
  maximum.
- entropy: the normalized entropy of the MC mean (eq. 3, in [0, 1]); bald:
  the mutual information between prediction and weights (BALD), divided by
  log C as well: what the network would learn from the input's label.
- confident: 1 where entropy < theta, the mean entropy of the same
  predictor on the run's labelled samples: the paper's test for a
  pseudo-label (eq. 8), so the rows a run of DeepBASS would trust.
- class_name: the class's name (image folder runs); true_label: the known
  label (an npz's y, or the class subfolder), from which the result line
  gives the accuracy, on all rows and on the confident ones.

One seed's network (its newest checkpoint), or with `ensemble` every seed's:
their S x T passes as one predictor, each seed's T passes weighted alike.
"""

from __future__ import annotations

import contextlib
import pathlib
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bass_jax import data as data_lib
from bass_jax import experiment
from bass_jax import export
from bass_jax import progress
from bass_jax import uncertainty
from bass_jax import writing
from bass_jax.errors import DataError

COLUMNS = ('id', 'label', 'confidence', 'entropy', 'bald', 'confident')


def run_inputs(run: experiment.Run, inputs: data_lib.Inputs,
               where: str) -> np.ndarray:
  """The inputs' x [N, ...] shaped as the run's pool: grey images repeated
  into RGB for a run of colour images.

  Raises:
    DataError: other sample shapes, or labels outside the run's classes.
  """
  want = run.dataset.x_train.shape[1:]
  x = inputs.x
  if inputs.files is not None and x.shape[1:] == (*want[:-1], 1) and (
      want[-1:] == (3,)):
    x = np.repeat(x, 3, axis=-1)
  if x.shape[1:] != want:
    hint = (' (colour images for a run of grey ones: convert them to grey)'
            if inputs.files is not None and x.shape[1:] == (*want[:-1], 3)
            else '')
    raise DataError(f'{where}: inputs of shape {list(x.shape[1:])}, but the '
                    f'run was trained on {list(want)}{hint}')
  num_classes = run.dataset.num_classes
  if inputs.y is not None and inputs.y.max() >= num_classes:
    raise DataError(f'{where}: labels up to {inputs.y.max()}, but the run '
                    f'has {num_classes} classes (0..{num_classes - 1})')
  return x


def ensemble_statistics(per_seed: Sequence[dict[str, np.ndarray]]
                        ) -> dict[str, np.ndarray]:
  """The statistics of S seeds' T passes each as one predictor of S x T
  passes (each seed's passes weighted alike).

  Args:
    per_seed: S dicts of one seed's 'mean_probs' [N, C], 'entropy' [N]
      (normalized entropy of the mean) and 'bald' [N] (normalized mutual
      information), see `mc_dropout.mc_statistics`.

  Returns:
    The same keys for the S x T passes: the mean of the seeds' means, its
    entropy, and the entropy minus the mean over all passes of their
    entropy (each seed's mean pass entropy is its entropy minus its bald).
  """
  mean_probs = np.mean([s['mean_probs'] for s in per_seed], axis=0)
  entropy = np.asarray(uncertainty.normalized_entropy(jnp.asarray(mean_probs)))
  expected = np.mean([s['entropy'] - s['bald'] for s in per_seed], axis=0)
  return {'mean_probs': mean_probs, 'entropy': entropy,
          'bald': entropy - expected}


def predictor(run: experiment.Run, state, seed_indices: Sequence[int],
              num_passes: int) -> Callable[[np.ndarray, int], dict]:
  """(x [N, ...], stream) -> statistics over x of the seeds' networks
  (one seed's, or `ensemble_statistics` of several).

  Each seed's sweep draws its masks from its key, key(config.seed + seed
  index) for stream 0 (so a seed's prediction of its pool is that of
  `export.pool_predictions`), folded with `stream` otherwise; one compiled
  sweep serves every seed.
  """
  sweep = export.sweep_fn(run, num_passes, ('bald',))
  params = [export.seed_params(state, s) for s in seed_indices]

  def statistics(x: np.ndarray, stream: int) -> dict[str, np.ndarray]:
    per_seed = []
    for s, p in zip(seed_indices, params):
      key = export.seed_key(run, s)
      out = sweep(p, x, jax.random.fold_in(key, stream) if stream else key)
      per_seed.append({k: np.asarray(out[k])
                       for k in ('mean_probs', 'entropy', 'bald')})
    return per_seed[0] if len(per_seed) == 1 else ensemble_statistics(
        per_seed)

  return statistics


def labelled_threshold(run: experiment.Run, state,
                       seed_indices: Sequence[int],
                       statistics: Callable[[np.ndarray, int], dict]
                       ) -> float:
  """Theta (eq. 8) of the predictor: its mean normalized entropy over the
  labelled pool samples of each of `seed_indices` (an ensemble's over all
  of theirs, a sample labelled by two seeds counted twice)."""
  x = np.concatenate([
      np.asarray(run.seed_dataset(s).x_train)[np.asarray(state.labelled[s])]
      for s in seed_indices])
  if not x.shape[0]:  # No labels yet: nothing passes the test.
    return 0.0
  return float(np.mean(statistics(x, 1)['entropy']))


def predictions_table(stats: dict[str, np.ndarray], theta: float,
                      y: Optional[np.ndarray]) -> dict[str, np.ndarray]:
  """The CSV's columns as [N] arrays (see the module docstring), from the
  predictor's statistics over the inputs and their labels y [N] or None."""
  mean_probs = stats['mean_probs']
  table = {
      'id': np.arange(mean_probs.shape[0]),
      'label': mean_probs.argmax(-1).astype(np.int32),
      'confidence': mean_probs.max(-1).astype(np.float32),
      'entropy': stats['entropy'].astype(np.float32),
      'bald': stats['bald'].astype(np.float32),
      'confident': stats['entropy'] < theta,
  }
  if y is not None:
    table['true_label'] = y
  return table


def accuracy_text(table: dict[str, np.ndarray]) -> str:
  """'; accuracy 93.5 % on the 200 labelled rows, 97.1 % on the 171
  confident' ('' without labels)."""
  if 'true_label' not in table:
    return ''
  hit = table['label'] == table['true_label']
  confident = table['confident']
  text = (f'; accuracy {100 * hit.mean():.1f} % on the {hit.size:,} '
          'labelled rows')
  if confident.any():
    text += (f', {100 * hit[confident].mean():.1f} % on the '
             f'{confident.sum():,} confident')
  return text


def coverage_accuracy(hit: np.ndarray, score: np.ndarray) -> np.ndarray:
  """[N] the accuracy on the k most certain rows, k = 1..N: the rows in
  order of `score` (lowest, most certain, first; ties in row order).

  Args:
    hit: [N] bool, whether row i's label is right.
    score: [N] uncertainty (entropy, bald).
  """
  order = np.argsort(score, kind='stable')
  return np.cumsum(hit[order]) / np.arange(1, hit.size + 1)


def plot_coverage(table: dict[str, np.ndarray], path: str,
                  title: str = '') -> Optional[str]:
  """Draws the accuracy on the most certain share of the rows, by entropy
  and by BALD, against that share, with the confident rows' point
  (`plots.plot_accuracy_vs_coverage`); returns path, or None where the
  table has no labels."""
  if 'true_label' not in table:
    return None
  from bass_jax import plots  # pylint: disable=g-import-not-at-top
  hit = table['label'] == table['true_label']
  confident = table['confident']
  mark = ((float(confident.mean()), float(hit[confident].mean()))
          if confident.any() else None)
  return plots.plot_accuracy_vs_coverage(
      {k: coverage_accuracy(hit, table[k]) for k in ('entropy', 'bald')},
      mark, path, title)


def write_predictions(path: str, table: dict[str, np.ndarray],
                      class_names: tuple[str, ...],
                      files: Optional[tuple[str, ...]]) -> None:
  """Writes the table as CSV (atomically), with the optional columns."""
  header = list(COLUMNS) + ['class_name'] * bool(class_names) + (
      ['true_label'] * ('true_label' in table)) + ['file'] * bool(files)

  def row(i: int) -> list:
    label = int(table['label'][i])
    cells = [int(table['id'][i]), label,
             *(round(float(table[k][i]), 6)
               for k in ('confidence', 'entropy', 'bald')),
             int(table['confident'][i])]
    if class_names:
      cells.append(class_names[label])
    if 'true_label' in table:
      cells.append(int(table['true_label'][i]))
    if files:
      cells.append(files[i])
    return cells

  writing.write_csv(path, header, (row(i) for i in range(len(table['id']))))


def predict(workdir: str, inputs: str, out: str, seed_index: int = 0,
            ensemble: bool = False, num_passes: Optional[int] = None,
            dataset: Optional[data_lib.Dataset] = None,
            warn: Optional[Callable[[str], None]] = None,
            data_dir: str = '',
            log: Optional[Callable[[str], None]] = None
            ) -> tuple[dict[str, np.ndarray], float, str]:
  """Writes the predictions CSV of a run's newest checkpoint on `inputs`.

  Args:
    workdir: a finished, paused or interrupted run.
    inputs: an image folder or .npz file (see `data.load_inputs`).
    out: the CSV file to write.
    seed_index: which of the run's seeds, in [0, num_seeds).
    ensemble: every seed instead (seed_index is then ignored).
    num_passes: MC-dropout passes per seed; None: the config's
      mc_passes_gt.
    dataset, warn, data_dir: as for `export.export_labels` (the run's own
      data are read: they hold its labelled samples, for theta).
    log: gets a line before the sweeps and, while they run,
      `progress.heartbeat`'s.

  Returns:
    (the table written, see `predictions_table`; theta; the export's
    `progress_note`).

  Raises:
    ConfigError, DataError: as for `export.export_labels`, and a DataError
      for inputs that are missing, unreadable or of another shape than the
      run's samples.
  """
  if not pathlib.Path(inputs).expanduser().exists():
    # Checked first: restoring a run takes seconds.
    raise DataError(f'{inputs}: not found; give a folder of images or an '
                    '.npz file with x (and optionally y)')
  run, found = export.restored_seed(workdir, out, 'out', 'predictions.csv',
                                    seed_index, dataset, warn, data_dir)
  num_classes = run.dataset.num_classes
  class_names = run.dataset.class_names or tuple(
      str(c) for c in range(num_classes))
  given = data_lib.load_inputs(inputs, class_names, run.config.pixel_scale)
  x = run_inputs(run, given, inputs)
  seeds = range(run.config.num_seeds) if ensemble else [seed_index]
  num_passes = num_passes or run.loop_config.mc_passes_gt
  statistics = predictor(run, found.state, seeds, num_passes)
  if log:
    who = (f'the {len(seeds)} seeds' if ensemble else
           f'seed {run.config.seed + seed_index}')
    log(f'predicting {x.shape[0]:,} inputs: {num_passes} MC-dropout passes '
        f'of {who}, and theta on the run\'s labelled samples')
  with (progress.heartbeat(log, 'the sweep', time.time()) if log else
        contextlib.nullcontext()):
    theta = labelled_threshold(run, found.state, seeds, statistics)
    table = predictions_table(statistics(x, 0), theta, given.y)
  write_predictions(out, table, run.dataset.class_names, given.files)
  return table, theta, export.progress_note(run.config, found)
