"""Looking inside a run: its restored state and decision surface."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from bass_jax import experiment
from bass_jax import mc_dropout
from bass_jax import reporting
from bass_jax import workdirs
from bass_jax.errors import DataError
from configs import common


def stored_config(workdir: str) -> dict:
  """The config.json of a workdir as a dict.

  Raises:
    DataError: the file is missing, not JSON (torn or edited), not an
      object, or a field of the wrong type.
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise DataError(f'{path} not found: {workdir} is not the --workdir of a '
                    'launch/train.py run')
  return reporting.read_config(path)


def restored(workdir: str, dataset=None, warn=None, data_dir: str = ''):
  """(Run, checkpoint.Restored) of a workdir's newest valid checkpoint;
  Restored.state is a LoopState [S, ...] (a leading seed axis).

  `dataset` overrides loading the data named by the workdir's config (for a
  run that was given its dataset directly). Damaged checkpoints are skipped
  (as a resume does) and reported to `warn`, if given, as one line in all.
  Restored.step is the number of iterations done (0..step-1); its `extra`
  holds a paused run's `pending` query. `data_dir`, if given, replaces the
  run's config.data_dir (the data moved, or a relative path).

  Raises:
    DataError: an unreadable config.json, or no usable checkpoint.
    ConfigError: the data are not those the run was made with.
  """
  stored = stored_config(workdir)
  # Fields added since the run was made take their defaults.
  config = common.base_config()
  config.update(stored)
  if data_dir:
    config.data_dir = data_dir  # Where the data are: not what is computed.
  # Reading a run needs no bit-exact kernels, and a process that already
  # started JAX (a notebook, a report over several runs) could not set them.
  config.deterministic_ops = False
  # Nor the devices it ran on (a mesh, several processes or CPU devices:
  # placement only): read on this process's first device, which any
  # machine has.
  config.mesh_shape, config.distributed = 'data:-1', False
  config.cpu_devices = 0
  run = experiment.build(config, dataset, devices=jax.devices()[:1])
  skipped = []
  # Collected, not logged: one line in all instead of one per checkpoint.
  found = workdirs.latest_checkpoint(workdir, run.state, skipped.append)
  if found is None:
    damaged = f' ({len(skipped)} damaged)' if skipped else ''
    raise DataError(f'{workdir} has no valid checkpoint{damaged}')
  # Another pool (rows reordered, files edited) would put the run's labels
  # on the wrong samples.
  experiment.check_same_data(found, experiment.data_fingerprint(run),
                             workdir,
                             "give the run's own (--data_dir where they moved)")
  if skipped and warn is not None:
    warn(f'{workdir}: skipped {len(skipped)} damaged checkpoint(s), using '
         f'checkpoints/{found.step}')
  return run, found


def restored_run(workdir: str, dataset=None, warn=None, data_dir: str = ''):
  """(Run, LoopState [S, ...], where) of a workdir's newest checkpoint;
  `where` as `workdirs.checkpoint_point` says it, e.g. 'after iteration 12'.

  See `restored`.
  """
  run, found = restored(workdir, dataset, warn, data_dir)
  return run, found.state, workdirs.checkpoint_point(run.config, found)


def seed_params(state, seed_index: int):
  """The parameters of one seed from a seed-batched state."""
  return jax.tree_util.tree_map(lambda a: a[seed_index], state.train.params)


def decision_surface(run, state, seed_index: int = 0, grid_size: int = 150,
                     margin: float = 0.3) -> dict[str, np.ndarray]:
  """MC-dropout prediction and entropy over a grid covering 2-D pool data.

  Args:
    run: the built run (`restored_run`).
    state: LoopState [S, ...] (a leading seed axis).

  Returns:
    'grid_x', 'grid_y', 'pred', 'entropy' [G, G] (G = grid_size);
    'points' [N, 2], 'labels' [N], 'labelled' [N] bool of the chosen seed.
  """
  ds = run.seed_dataset(seed_index)
  x = np.asarray(ds.x_train)
  if x.ndim != 2 or x.shape[1] != 2:
    raise DataError(f'decision surfaces need 2-D inputs, got {x.shape[1:]}')
  lo, hi = x.min(0) - margin, x.max(0) + margin
  gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], grid_size),
                       np.linspace(lo[1], hi[1], grid_size))
  pts = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], 1), jnp.float32)
  sweep = jax.jit(lambda p, pts: mc_dropout.mc_sweep(
      run.model.apply, p, pts, jax.random.key(0),
      run.loop_config.mc_passes_gt, 4096))(seed_params(state, seed_index), pts)
  return {
      'grid_x': gx, 'grid_y': gy,
      'pred': np.asarray(sweep['pseudo_label']).reshape(gx.shape),
      'entropy': np.asarray(sweep['entropy']).reshape(gx.shape),
      'points': x, 'labels': np.asarray(ds.y_train),
      'labelled': np.asarray(state.labelled[seed_index]),
  }
