"""Builds a run from a config and drives the host loop.

The only long function of the library lives here: it loads data, builds the
model and the vmapped, jitted iteration, then loops over iterations, handing
metrics to a writer. Everything inside an iteration stays on the device.
The config's own checks are `config_checks`'s, the workdir's (its config,
lock, resume point and files) `workdirs`'s, the progress lines `progress`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental.compilation_cache import compilation_cache
from jax.sharding import Mesh

from bass_jax import augment as augment_lib
from bass_jax import checkpoint
from bass_jax import config_checks
from bass_jax import data as data_lib
from bass_jax import interrupts
from bass_jax import loop
from bass_jax import mc_dropout
from bass_jax import models
from bass_jax import oracle
from bass_jax import progress
from bass_jax import provenance
from bass_jax import reporting
from bass_jax import sharding
from bass_jax import training
from bass_jax import user_code
from bass_jax import workdirs
from bass_jax import writing
from bass_jax.errors import BassError
from bass_jax.errors import ConfigError


class TrainingDivergedError(BassError):
  """The loss became NaN or Inf."""


# One dataset shared by every seed, or one per seed; None: the config's.
DatasetArg = Optional[data_lib.Dataset | list[data_lib.Dataset]]
# Datasets drawn from a seed, which `data_per_seed` can draw once per seed.
GENERATED_DATASETS = ('yinyang',)


def check_user_code(config: ml_collections.ConfigDict,
                    ds: data_lib.Dataset) -> None:
  """Traces the model and scores of one's own on the data's shapes, so
  that one breaking its contract is named before anything runs.

  Raises:
    ConfigError: naming the field, the code and what it did.
  """
  for field in user_code.CONFIG_FIELDS:
    spec = config_checks.user_code_of(field, config[field])
    if spec is None or (field == 'confident_score' and
                        config.semi != 'confident'):
      continue
    try:
      if field == 'model':
        models.check_logits(build_model(config, ds.num_classes),
                            ds.x_train.shape[1:], ds.x_train.dtype,
                            ds.num_classes, spec)
      else:
        mc_dropout.check_score(spec, config.mc_passes_pool, ds.num_classes)
    except ValueError as e:
      raise ConfigError(f'config.{field} {e}') from None
  if (config.acquisition in loop.DIVERSE_ACQUISITIONS and
      models.is_user_model(config.model)):
    try:
      models.check_features(build_model(config, ds.num_classes),
                            ds.x_train.shape[1:], ds.x_train.dtype,
                            config.model)
    except ValueError as e:
      raise ConfigError(f'config.acquisition={config.acquisition!r} needs '
                        f'config.model {e}') from None


def model_draws_masks(config: ml_collections.ConfigDict,
                      ds: data_lib.Dataset) -> bool:
  """Whether the config's model has dropout that makes its MC passes
  differ: the built-in MLP and CNN at a rate > 0, a model of one's own
  whose logits depend on the pass's key (traced on ds's inputs)."""
  if not models.is_user_model(config.model):
    return config.model != 'softmax' and config.dropout_rate > 0
  return models.draws_masks(build_model(config, ds.num_classes),
                            ds.x_train.shape[1:], ds.x_train.dtype)


def no_masks_text(config: ml_collections.ConfigDict) -> str:
  """Why the config's model draws no dropout masks (see
  `model_draws_masks`), as 'config.model=... <reason>'."""
  if config.model == 'softmax':
    why = 'has no dropout'
  elif models.is_user_model(config.model):
    why = ("never uses its pass's key (no MaskDropout given the seed, or "
           'at a dropout rate of 0)')
  else:
    why = f'draws no dropout masks at dropout_rate={config.dropout_rate}'
  return f'config.model={config.model!r} {why}'


def check_masks_for_scores(config: ml_collections.ConfigDict,
                           ds: data_lib.Dataset) -> None:
  """Raises ConfigError for a score of PASS_SCORES on a model without
  dropout: its passes are the same pass, so every score would be 0."""
  used = config_checks.pass_scores_used(config)
  if not used or model_draws_masks(config, ds):
    return
  field = next(iter(used))
  raise ConfigError(
      f'config.{field}={config[field]!r} compares MC passes, but '
      f'{no_masks_text(config)}, so every pass is the same and every score '
      'is 0: use a network with dropout, or a score of the mean '
      "prediction ('entropy', 'least_confidence', 'margin')")


def identical_passes_note(config: ml_collections.ConfigDict,
                          ds: data_lib.Dataset) -> str:
  """A line for a run whose MC passes repeat one pass (no dropout), else
  ''."""
  passes = max(config.mc_passes_pool, config.mc_passes_gt)
  if passes < 2 or model_draws_masks(config, ds):
    return ''
  return (f'note: {no_masks_text(config)}, so its {passes} MC passes '
          'repeat one pass: --config.mc_passes_pool=1 --config.mc_passes_gt=1 '
          'compute it once; for MC dropout, give the network dropout (README: '
          'Your own network)')


def compilation_cache_dir(setting: str) -> str:
  """The folder `config.compilation_cache` names; '' for none.

  'auto' keeps the folder JAX already has (JAX_COMPILATION_CACHE_DIR or
  jax.config), else ~/.cache/bass_jax/xla; '', 'off' (or 'none', 'false',
  '0') switch the cache off.
  """
  if setting.strip().lower() in ('', 'off', 'none', 'false', '0'):
    return ''
  if setting == 'auto':
    return (jax.config.jax_compilation_cache_dir or
            os.path.join(os.path.expanduser('~'), '.cache', 'bass_jax',
                         'xla'))
  return os.path.expanduser(setting)


# Cache folders found unusable (warned about once per process).
_UNUSABLE_CACHES = set()


def is_writable_folder(path: str) -> bool:
  """Whether `path` is (or can be made) a folder this process may write."""
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    return False
  return os.access(path, os.W_OK | os.X_OK)


def use_compilation_cache(setting: str) -> None:
  """Points JAX's persistent compilation cache at `setting`'s folder.

  Results do not depend on it: JAX keys an entry by the program, the
  compiler options, the backend and the jax version. An unwritable folder
  (or a file) costs a one-line warning, once, and the cache, not the run.
  """
  path = compilation_cache_dir(setting)
  if path and not is_writable_folder(path):
    if path not in _UNUSABLE_CACHES:
      _UNUSABLE_CACHES.add(path)
      print(f'warning: config.compilation_cache: {path} is not a writable '
            'folder; compiling without the cache', file=sys.stderr,
            flush=True)
    path = ''
  if path == (jax.config.jax_compilation_cache_dir or ''):
    return
  jax.config.update('jax_compilation_cache_dir', path or None)
  # The next compilation opens `path`. reset_cache is internal API: a jax
  # without it still gets the folder, from the next process on.
  reset = getattr(compilation_cache, 'reset_cache', None)
  if reset is not None:
    reset()


def data_dir(config: ml_collections.ConfigDict) -> str:
  """The data root: config.data_dir, else `data.default_data_dir`
  ($BASS_DATA_DIR, else ../shared/data from here or beside the checkout),
  else ../shared/data (which then names what is missing in the error)."""
  if config.data_dir:
    return config.data_dir
  found = data_lib.default_data_dir()
  return str(found) if found else os.path.join('..', 'shared', 'data')


def data_seed_of(config: ml_collections.ConfigDict, seed: int) -> int:
  """The draw of `seed`'s generated data: data_seed, + 1000 * seed if per seed.

  1000 * seed mirrors the original code, whose run r draws its toy data
  with seed 1000 * r; seed 0 keeps the shared draw of data_per_seed=False.
  """
  return config.data_seed + (1000 * seed if config.data_per_seed else 0)


def load_data(config: ml_collections.ConfigDict,
              seed: Optional[int] = None) -> data_lib.Dataset:
  """The dataset of a config (of `seed`, default config.seed), shrunk to
  pool_size / test_size if set."""
  seed = config.seed if seed is None else seed
  ds = data_lib.load_dataset(config.dataset, data_dir=data_dir(config),
                             source=config.data_source,
                             scale=config.pixel_scale,
                             seed=data_seed_of(config, seed))
  return shrunk(config, ds)


def shrunk(config: ml_collections.ConfigDict,
           ds: data_lib.Dataset) -> data_lib.Dataset:
  """`ds` cut to the first config.pool_size / test_size samples (0: all).

  Raises:
    ConfigError: a size beyond its split, or a cut that leaves out every
      sample of a class the split has (a file sorted by class: the first
      2,000 would be one class or two).
  """
  splits = (('pool_size', 'pool', ds.y_train), ('test_size', 'test',
                                                ds.y_test))
  for field, split, y in splits:
    if config[field] > y.shape[0]:
      raise ConfigError(f'config.{field}={config[field]} exceeds the '
                        f'{y.shape[0]} {split} samples of dataset '
                        f'{ds.name!r}; set 0 to take them all')
  part = data_lib.subset(ds, config.pool_size or None,
                         config.test_size or None)
  for (field, split, y), cut in zip(splits, (part.y_train, part.y_test)):
    lost = sorted(set(np.unique(y[y >= 0]).tolist()) -
                  set(np.unique(cut[cut >= 0]).tolist()))
    if lost:
      classes = ', '.join(map(str, lost[:5])) + (', ...' if len(lost) > 5
                                                  else '')
      fix = ('(Yin-Yang is drawn class by class, 0 then 1): set' if
             ds.name == 'yinyang' else
             '(is the file sorted by class?): shuffle its rows, or set')
      raise ConfigError(
          f'config.{field}={config[field]} keeps the first {cut.shape[0]} '
          f'of {y.shape[0]} {split} samples, which hold no sample of class '
          f'{classes} {fix} config.{field}=0 to take them all')
  return part


def seed_datasets(config: ml_collections.ConfigDict,
                  dataset: DatasetArg = None) -> list[data_lib.Dataset]:
  """The dataset of every seed of a run, in seed order.

  One shared object unless config.data_per_seed and the dataset is drawn
  from a seed (GENERATED_DATASETS; files hold one dataset). A `dataset`
  given by the caller is shared by all seeds; a list of num_seeds datasets
  (of equal shapes) gives each seed its own.
  """
  if isinstance(dataset, (list, tuple)):
    if len(dataset) != config.num_seeds:
      raise ConfigError(f'{len(dataset)} datasets for '
                        f'config.num_seeds={config.num_seeds} seeds')
    return list(dataset)
  if dataset is not None:
    return [dataset] * config.num_seeds
  if not (config.data_per_seed and config.dataset in GENERATED_DATASETS):
    return [load_data(config)] * config.num_seeds
  return [load_data(config, seed) for seed in seeds_of(config)]


def is_per_seed(datasets: list[data_lib.Dataset]) -> bool:
  """Whether the seeds of a run hold different datasets."""
  return any(d is not datasets[0] for d in datasets)


def stacked_pool(datasets: list[data_lib.Dataset]) -> loop.Pool:
  """The Pool (host arrays): shared [N, ...], or [S, N, ...] per seed."""
  def pool(d):
    return loop.Pool(x=d.x_train, y=d.y_train, test_x=d.x_test,
                     test_y=d.y_test)
  if not is_per_seed(datasets):
    return pool(datasets[0])
  return jax.tree_util.tree_map(lambda *a: np.stack(a),
                                *[pool(d) for d in datasets])


def label_capacity(config: ml_collections.ConfigDict, pool_size: int,
                   num_classes: int) -> int:
  """At least the most labels a seed can hold: initial + every query.

  An upper bound: the last iteration asks no query (`loop.LoopConfig`), but
  the shapes and hence every result stay those of earlier runs.
  """
  if config.initial_per_class == -1:
    return pool_size
  initial = config.initial_per_class * num_classes
  queries = 0
  if config.acquisition != 'none':
    queries = config.query_size * (config.num_iterations //
                                   config.query_every + 1)
  return min(pool_size, initial + queries)


def chunk_sizes(config: ml_collections.ConfigDict, platform: str,
                sample_bytes: int) -> dict[str, int]:
  """The pool / ground-truth MC chunks and the evaluation chunk of a run.

  A size of 0 in the config is 'auto' (`mc_dropout.auto_chunk_size`): the
  platform's batch of activation bytes, over the model's `sample_bytes`
  and the sweep's number of passes. A sample's statistics do not depend on
  its chunk (up to float rounding), so this changes speed and memory only.
  """
  def size(value, passes):
    return value or mc_dropout.auto_chunk_size(platform, passes, sample_bytes)
  return {'chunk_size': size(config.chunk_size, config.mc_passes_pool),
          'gt_chunk_size': size(config.chunk_size, config.mc_passes_gt),
          'batchbald_chunk_size': size(config.chunk_size,
                                       config.batchbald_passes),
          'eval_chunk_size': size(config.eval_chunk_size, 1)}


# Training samples (over all seeds) from which an 'auto' initial phase runs
# in blocks before iteration 0: about 5 minutes of the paper CNN on a 2-core
# CPU (~3,000 samples/s), 2 minutes on an H200 (~430,000 samples/s).
LONG_INITIAL_PHASE_SAMPLES = {'cpu': 1_000_000}
LONG_INITIAL_PHASE_SAMPLES_ACCELERATOR = 50_000_000
# An 'auto' block is this fraction of the initial epochs: ~20 progress
# lines and checkpoints over the phase.
AUTO_INITIAL_BLOCKS = 20


def initial_block_plan(config: ml_collections.ConfigDict, initial_labels: int,
                       platform: str) -> tuple[int, int]:
  """(epochs per block, epochs run in blocks before iteration 0) of the
  initial phase; (0, 0): iteration 0 trains all of it.

  Blocks cover whole multiples of the block below initial_epochs, so
  iteration 0 always trains the last 1..block epochs (and reports their
  loss). `config.initial_block_epochs` 0 is 'auto': blocks of 1/20 of the
  phase when it trains at least LONG_INITIAL_PHASE_SAMPLES over all seeds
  (`initial_labels` a seed, up-sampled), else none.
  """
  epochs = config.initial_epochs
  block = config.initial_block_epochs
  if block == 0:
    samples = (epochs * config.gt_upsample * initial_labels *
               config.num_seeds)
    long = LONG_INITIAL_PHASE_SAMPLES.get(
        platform, LONG_INITIAL_PHASE_SAMPLES_ACCELERATOR)
    block = -(-epochs // AUTO_INITIAL_BLOCKS) if samples >= long else epochs
  if block >= epochs:
    return 0, 0
  return block, block * ((epochs - 1) // block)


def loop_config(config: ml_collections.ConfigDict, pool_size: int,
                num_classes: int, platform: str, sample_bytes: int,
                initial_blocks: bool = False) -> loop.LoopConfig:
  """The static part of the loop (shapes, modes, constants).

  `platform` ('cpu', 'gpu', 'tpu') and `sample_bytes` (the model's widest
  activation of one sample, `mc_dropout.sample_activation_bytes`) pick the
  'auto' (0) chunk sizes; `initial_blocks`: plan the initial phase's blocks
  (`initial_block_plan`), else iteration 0 trains the whole phase.
  """
  labels = label_capacity(config, pool_size, num_classes)
  initial_labels = (pool_size if config.initial_per_class == -1 else
                    config.initial_per_class * num_classes)
  block, blocked = (initial_block_plan(config, initial_labels, platform)
                    if initial_blocks else (0, 0))
  return loop.LoopConfig(
      semi=config.semi, acquisition=config.acquisition,
      acquisition_beta=float(config.acquisition_beta),
      batchbald_candidates=config.batchbald_candidates,
      batchbald_passes=config.batchbald_passes,
      batchbald_configs=config.batchbald_configs,
      query_every=config.query_every, query_size=config.query_size,
      label_budget=config.label_budget, semi_start=config.semi_start,
      num_iterations=config.num_iterations,
      confident_k=config.confident_k,
      confident_score=config.confident_score,
      initial_epochs=config.initial_epochs,
      initial_block_epochs=block, initial_blocked_epochs=blocked,
      epochs_per_iteration=config.epochs_per_iteration,
      retrain_every=config.retrain_every,
      gt_upsample=config.gt_upsample, mu=config.mu,
      batch_size=config.batch_size, steps_per_trip=config.steps_per_trip,
      l2=config.l2, mc_passes_gt=config.mc_passes_gt,
      mc_passes_pool=config.mc_passes_pool,
      **chunk_sizes(config, platform, sample_bytes),
      label_capacity=labels,
      train_capacity=training.multiset_capacity(
          pool_size, labels, config.gt_upsample, config.semi != 'none',
          config.batch_size),
      prng_impl=config.prng_impl, mc_precision=config.mc_precision,
      augment=augment_lib.parse(config.augment))


def check_against_data(config: ml_collections.ConfigDict,
                       ds: data_lib.Dataset) -> None:
  """Cross-checks config values that depend on the data's size and labels.

  Pool labels of -1 are unknown: they count towards no class, and only a
  human oracle can answer queries about them.
  """
  n = ds.x_train.shape[0]
  if ds.num_classes < 2:
    # One class has zero entropy everywhere: theta is NaN, nothing is ever
    # queried, and every accuracy is trivially 100 %.
    raise ConfigError(f'dataset {ds.name!r} has {ds.num_classes} class; '
                      'classification needs at least 2')
  known = ds.y_train[ds.y_train >= 0]
  if known.size == 0:
    raise ConfigError(f'dataset {ds.name!r} has no labelled pool samples; '
                      'label a few per class')
  counts = np.bincount(known, minlength=ds.num_classes)
  initial = config.initial_per_class * ds.num_classes
  if config.initial_draw != 'balanced' and initial > known.size:
    raise ConfigError(
        f'config.initial_per_class={config.initial_per_class} draws {initial} '
        f'initial labels but dataset {ds.name!r} has only {known.size} '
        'labelled pool samples')
  if config.initial_draw == 'balanced' and (
      config.initial_per_class > counts.min()):
    k = int(counts.argmin())
    why = ''
    if counts[k] == 0:  # Labels are class indices 0..C-1.
      why = (' (labels numbered from 1? they are class indices 0..'
             f'{ds.num_classes - 1})' if k == 0 else
             ' (a class of y_test or num_classes only, or ids with gaps? '
             'np.unique(y, return_inverse=True)[1] numbers them 0..C-1)')
    raise ConfigError(
        f'config.initial_per_class={config.initial_per_class} but class '
        f'{k} has only {int(counts[k])} labelled pool samples{why}')
  if (config.acquisition != 'none' and config.initial_per_class > 0 and
      0 < config.label_budget < initial + config.query_size):
    raise ConfigError(
        f'config.label_budget={config.label_budget} leaves no room for a '
        f'query: the run starts with {initial} labels '
        f'(initial_per_class={config.initial_per_class} x '
        f'{ds.num_classes} classes) and a query adds '
        f'{config.query_size}; raise it, or set 0 for no budget')
  if config.model == 'cnn' and ds.x_train.ndim != 4:
    # Found here, not as a convolution's shape error deep in a trace.
    hint = '; add a channel axis: x[..., None]' if ds.x_train.ndim == 3 else ''
    raise ConfigError(f"config.model='cnn' takes images [N, H, W, C]; "
                      f'dataset {ds.name!r} has inputs '
                      f'{list(ds.x_train.shape)}{hint}')
  check_augment_against_data(config, ds)
  unknown = n - known.size
  # Without acquisition no query is ever asked, so no oracle is needed.
  if unknown and config.oracle == 'simulated' and config.acquisition != 'none':
    raise ConfigError(f'the pool has {unknown} unlabelled samples: use '
                      '--config.oracle=files or terminal')
  if config.acquisition != 'none' and config.query_size > n:
    raise ConfigError(f'config.query_size={config.query_size} exceeds the '
                      f'pool size {n}')
  if config.semi == 'confident' and config.confident_k > n:
    raise ConfigError(f'config.confident_k={config.confident_k} exceeds the '
                      f'pool size {n}')


def check_augment_against_data(config: ml_collections.ConfigDict,
                               ds: data_lib.Dataset) -> None:
  """Raises ConfigError where config.augment cannot apply to the inputs:
  not images [N, H, W, C], or a shift as large as an image side."""
  spec = augment_lib.parse(config.augment)
  if not spec.active:
    return
  shape = list(ds.x_train.shape[1:])
  if len(shape) != 3:
    raise ConfigError(f'config.augment={config.augment!r} shifts and flips '
                      f'images [H, W, C]; dataset {ds.name!r} has inputs '
                      f"{shape}: set config.augment='none'")
  if spec.shift >= min(shape[:2]):
    raise ConfigError(f'config.augment={config.augment!r} shifts by as much '
                      f'as the images are wide ({shape[0]}x{shape[1]}); '
                      'shift by a few pixels')


def seeds_of(config: ml_collections.ConfigDict) -> list[int]:
  """The seeds of a run: seed, seed + 1, ..., seed + num_seeds - 1."""
  return [config.seed + j for j in range(config.num_seeds)]


def initial_states(config, model: models.Model, optimizer,
                   datasets: list[data_lib.Dataset]) -> loop.LoopState:
  """The LoopState of every seed, stacked on a leading seed axis [S, ...].

  `datasets`: the dataset of every seed (`seed_datasets`).
  """
  states = []
  make_init = lambda: jax.jit(functools.partial(
      loop.init_state, model.init, optimizer), static_argnums=1)
  init = kept(_STATE_INITS, model_key(config, datasets[0].num_classes),
              make_init)
  features = {}  # id(dataset) -> its principal features, computed once.
  for seed, ds in zip(seeds_of(config), datasets):
    n = ds.x_train.shape[0]
    labelled = np.zeros(n, bool)
    if config.initial_per_class == -1:
      labelled[:] = ds.y_train >= 0  # Every sample whose label is known.
    else:
      if config.initial_draw == 'representative' and id(ds) not in features:
        features[id(ds)] = data_lib.principal_features(ds.x_train)
      labelled[data_lib.initial_indices(
          ds.y_train, config.initial_per_class, ds.num_classes,
          config.initial_draw, seed, features.get(id(ds)))] = True
    key_data = jax.random.key_data(jax.random.key(seed,
                                                  impl=config.prng_impl))
    states.append(init(key_data, config.prng_impl,
                       jnp.asarray(ds.x_train[:1]), jnp.asarray(labelled),
                       jnp.asarray(ds.y_train)))
  # Stacked on the host: jnp.stack of S device arrays is one op of S
  # operands, compiled per S (23 s of 27 for 2,000 toy seeds).
  return jax.tree_util.tree_map(
      lambda *a: jnp.asarray(np.stack(jax.device_get(a))), *states)


@dataclasses.dataclass
class Run:
  """A built experiment: what the host loop needs."""
  config: ml_collections.ConfigDict
  dataset: data_lib.Dataset  # The first seed's (every seed's if shared).
  model: models.Model
  loop_config: loop.LoopConfig
  pool: loop.Pool
  state: loop.LoopState
  step: Callable[[loop.LoopState, loop.Pool], tuple[loop.LoopState, dict]]
  num_params: int
  mesh: Optional[jax.sharding.Mesh] = None
  # For oracles answering on the host (config.oracle != 'simulated'):
  em_step: Optional[Callable] = None   # (state, pool) -> (state, q, valid, m)
  reveal: Optional[Callable] = None    # (state, q, valid, answers) -> state
  # Every seed's dataset; with data_per_seed the pool is [S, N, ...].
  datasets: Optional[list[data_lib.Dataset]] = None
  # (state, pool, start [S]) -> (state, loss [S]): a block of the initial
  # phase before iteration 0; None when iteration 0 trains all of it.
  initial_block: Optional[Callable] = None
  # (state, ids [m], labels [m]) -> state: corrections of labels in X.
  correct: Optional[Callable] = None

  @property
  def per_seed_data(self) -> bool:
    return self.datasets is not None and is_per_seed(self.datasets)

  def seed_dataset(self, seed_index: int) -> data_lib.Dataset:
    """The dataset seed number `seed_index` (0..S-1) of the run works on."""
    return self.datasets[seed_index] if self.datasets else self.dataset


def build_model(config, num_classes: int) -> models.Model:
  return models.build_model(config.model, num_classes, config.dropout_rate,
                            config.dropout_bits, config.negative_slope,
                            config.mask_impl, config.conv_impl)


def initial_params(config: ml_collections.ConfigDict, model: models.Model,
                   ds: data_lib.Dataset) -> Optional[models.Params]:
  """The trained parameters `config.init_params` names, checked against
  `model` on `ds`'s inputs (the errors: `models.params_from_file`); None
  for a random init."""
  if not config.init_params:
    return None
  template = jax.eval_shape(model.init, jax.random.key(0),
                            jnp.asarray(ds.x_train[:1]))
  return models.params_from_file(config.init_params, template)


def init_params_fingerprint(config: ml_collections.ConfigDict
                            ) -> Optional[str]:
  """The sha256 (16 hex digits) of the `config.init_params` file, kept in
  each checkpoint: a resume must restart retrains from the same
  parameters; None without the file."""
  if not config.init_params:
    return None
  with open(config.init_params, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()[:16]


def preferred_seed_strategy(config: ml_collections.ConfigDict,
                            ds: data_lib.Dataset) -> str:
  """config.seed_strategy with 'auto' resolved, before any mesh check.

  'auto' maps the seeds of a convolutional network on a CPU (a convolution
  batched over seeds' weights is a grouped convolution, which XLA:CPU ran
  the MC sweep with ~13x slower than 4 seeds one after another) and vmaps
  everything else.
  """
  if config.seed_strategy != 'auto':
    return config.seed_strategy
  cpu = jax.devices()[0].platform == 'cpu'
  return 'map' if cpu and is_convolutional(config, ds) else 'vmap'


def is_convolutional(config: ml_collections.ConfigDict,
                     ds: data_lib.Dataset) -> bool:
  """Whether the config's model has convolution kernels (parameters of 3
  or more axes): the CNN, or a model of one's own, traced on ds's inputs."""
  if not models.is_user_model(config.model):
    return config.model == 'cnn'
  model = build_model(config, ds.num_classes)
  x = jax.ShapeDtypeStruct((1,) + ds.x_train.shape[1:], ds.x_train.dtype)
  params = jax.eval_shape(model.init, jax.eval_shape(
      lambda: jax.random.key(0)), x)
  return any(p.ndim >= 3 for p in jax.tree_util.tree_leaves(params))


def mesh_axis_sizes(config: ml_collections.ConfigDict, ds: data_lib.Dataset,
                    devices: Optional[list[jax.Device]] = None
                    ) -> dict[str, int]:
  """{'seed': s, 'data': d} of config.mesh_shape on `devices` (default all);
  'auto' as `sharding.auto_axis_sizes` chooses for this data and batch."""
  num_devices = len(jax.devices() if devices is None else devices)
  if config.mesh_shape != sharding.AUTO:
    return sharding.axis_sizes(config.mesh_shape, num_devices)
  return sharding.auto_axis_sizes(
      num_devices, config.num_seeds,
      (ds.x_train.shape[0], ds.x_test.shape[0], config.batch_size),
      one_axis=preferred_seed_strategy(config, ds) == 'map')


def seed_strategy(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                  ds: data_lib.Dataset) -> str:
  """'vmap' or 'map' for the seed axis (see `loop.over_seeds`).

  'auto': see `preferred_seed_strategy`. 'map' cannot shard the seed axis
  of a mesh that also splits the data.
  """
  strategy = preferred_seed_strategy(config, ds)
  sizes = sharding.mesh_sizes(mesh)
  if strategy == 'map' and sizes[sharding.SEED] > 1 and sizes[
      sharding.DATA] > 1:
    chosen = ("config.seed_strategy='map'" if config.seed_strategy == 'map'
              else "config.seed_strategy='auto' (which maps a convolutional "
              "network's seeds on a CPU)")
    raise ConfigError(f"{chosen} cannot split seeds over a mesh with both "
                      "'seed' and 'data' axes > 1; pass "
                      "--config.seed_strategy=vmap, or use a mesh of one of "
                      'the two axes')
  return strategy


def build(config: ml_collections.ConfigDict,
          dataset: DatasetArg = None,
          devices: Optional[list[jax.Device]] = None,
          initial_blocks: bool = False) -> Run:
  """Validates the config, loads the data and compiles nothing yet.

  The arrays are placed on the mesh of `config.mesh_shape`: the pool and
  test set split along N over 'data', the state along its seed axis over
  'seed' (replicated over 'data'); the step keeps that layout and returns
  the metrics replicated, so every host can read them.

  `dataset` (default: the config's) is one dataset shared by the seeds, or
  a list with one per seed; per-seed data (also `config.data_per_seed`)
  gives the pool a leading seed axis, split over 'seed' like the state
  (and N over 'data').

  `devices` (default: all of them) lets one process run several builds side
  by side, e.g. a 1-seed run on the first CPU device next to a seed-parallel
  run over all of them (benchmarks/hot_path.py).

  `initial_blocks`: a long initial phase is split as
  `config.initial_block_epochs` says, its first blocks left to
  `Run.initial_block` (for a host loop that runs them first, as `run`
  does); without, `Run.step` from the initial state trains all of it in
  iteration 0.
  """
  datasets, per_seed, mesh = checked_setup(config, dataset, devices)
  ds = datasets[0]
  model = build_model(config, ds.num_classes)
  params = initial_params(config, model, ds)
  if params is not None:
    model = models.with_initial_params(model, params)
  optimizer = training.make_optimizer(config.learning_rate)
  cfg = loop_config(config, ds.x_train.shape[0], ds.num_classes,
                    mesh.devices.flat[0].platform,
                    mc_dropout.sample_activation_bytes(
                        model.init, model.apply, ds.x_train.shape[1:],
                        ds.x_train.dtype), initial_blocks)
  on_data = sharding.data_sharding(mesh)
  on_seeds = sharding.seed_sharding(mesh)
  # A per-seed pool [S, N, ...]: S over 'seed' like the state, N over 'data'.
  on_pool = (sharding.seed_data_sharding(mesh) if per_seed else on_data)
  pool = sharding.put(stacked_pool(datasets), on_pool)
  state = sharding.put(initial_states(config, model, optimizer, datasets),
                       on_seeds)
  strategy = seed_strategy(config, mesh, ds)
  programs = kept(_PROGRAMS, program_key(config, ds.num_classes, cfg, mesh,
                                         strategy, per_seed, pool, state),
                  lambda: jitted_programs(cfg, model, optimizer, mesh,
                                          strategy, per_seed, on_pool))
  params0 = jax.tree_util.tree_map(lambda a: a[0], state.train.params)
  return Run(config, ds, model, cfg, pool, state, programs.step,
             models.num_params(params0), mesh, programs.em_step,
             programs.reveal, datasets, programs.initial_block,
             programs.correct)


@dataclasses.dataclass(frozen=True)
class Programs:
  """The jitted functions of a `Run` (see its fields)."""
  step: Callable
  em_step: Callable
  reveal: Callable
  correct: Callable
  initial_block: Optional[Callable]


# The jitted functions of recent builds in this process, by what they are
# traced from (`program_key`, `model_key`): a build that repeats one (a run
# relaunched after a pause for labels, a resume, a notebook's second call)
# reuses them, traced and compiled already, instead of tracing them again
# (seconds each; JAX's persistent cache only saves the compilation).
_PROGRAMS: dict[tuple, Programs] = {}
_STATE_INITS: dict[tuple, Callable] = {}
MAX_KEPT_PROGRAMS = 8


def forget_programs() -> None:
  """Drops the kept programs (and the memory of their compiled code): the
  next build of any config traces afresh."""
  _PROGRAMS.clear()
  _STATE_INITS.clear()


def kept(store: dict, key: Optional[tuple], make: Callable[[], Any]) -> Any:
  """store[key], made by `make()` where absent (and always for key None);
  the most recently used kept, at most MAX_KEPT_PROGRAMS of them."""
  value = store.pop(key, None) if key is not None else None
  if value is None:
    value = make()
  if key is not None:  # The newest last, the oldest dropped first.
    store[key] = value
    while len(store) > MAX_KEPT_PROGRAMS:
      del store[next(iter(store))]
  return value


def model_key(config: ml_collections.ConfigDict,
              num_classes: int) -> Optional[tuple]:
  """What a built-in model and the optimizer are made of, hashable;
  None where a file enters the programs (code of one's own, which may
  change between builds; trained initial parameters): those are traced
  afresh at every build."""
  if user_code.names_any(config) or config.init_params:
    return None
  # The class behind a built-in name too: a name registered again in
  # models.MODELS is another model.
  return (models.MODELS.get(config.model), num_classes) + tuple(
      config[f] for f in ('model', 'dropout_rate', 'dropout_bits',
                          'negative_slope', 'mask_impl', 'conv_impl',
                          'learning_rate'))


def program_key(config: ml_collections.ConfigDict, num_classes: int,
                cfg: loop.LoopConfig, mesh: Mesh, strategy: str,
                per_seed: bool, pool: loop.Pool,
                state: loop.LoopState) -> Optional[tuple]:
  """Everything `jitted_programs` traces from, hashable: the loop's static
  settings, `model_key`, the mesh, and the shapes, dtypes and shardings of
  the pool and the state (so each kept program sees one signature); None
  where `model_key` is."""
  model = model_key(config, num_classes)
  if model is None:
    return None

  def avals(tree):
    return (jax.tree_util.tree_structure(tree),
            tuple((a.shape, a.dtype, a.sharding)
                  for a in jax.tree_util.tree_leaves(tree)))

  return (cfg, model, mesh, strategy, per_seed, avals(pool), avals(state))


def jitted_programs(cfg: loop.LoopConfig, model: models.Model,
                    optimizer: optax.GradientTransformation, mesh: Mesh,
                    strategy: str, per_seed: bool,
                    on_pool: jax.sharding.Sharding) -> Programs:
  """A run's jitted functions: the state split over 'seed' as in and out,
  the pool as `on_pool`, metrics replicated; the state donated."""
  on_seeds = sharding.seed_sharding(mesh)
  replicated = sharding.replicated(mesh)
  step = jax.jit(loop.seeds_iteration(cfg, model.apply, optimizer, mesh,
                                      strategy, per_seed, model.init,
                                      model.embed),
                 in_shardings=(on_seeds, on_pool),
                 out_shardings=(on_seeds, replicated), donate_argnums=0)
  em_step = jax.jit(loop.seeds_em_step(cfg, model.apply, optimizer, mesh,
                                       strategy, per_seed, model.init,
                                       model.embed),
                    in_shardings=(on_seeds, on_pool),
                    out_shardings=(on_seeds, replicated, replicated,
                                   replicated),
                    donate_argnums=0)
  reveal = jax.jit(loop.seeds_reveal, out_shardings=on_seeds)
  correct = jax.jit(loop.seeds_corrected, out_shardings=on_seeds)
  initial_block = None
  if cfg.initial_blocked_epochs:
    initial_block = jax.jit(
        loop.seeds_initial_block(cfg, model.apply, optimizer, mesh, strategy,
                                 per_seed),
        in_shardings=(on_seeds, on_pool, on_seeds),
        out_shardings=(on_seeds, replicated), donate_argnums=0)
  return Programs(step, em_step, reveal, correct, initial_block)


def checked_setup(config: ml_collections.ConfigDict,
                  dataset: DatasetArg = None,
                  devices: Optional[list[jax.Device]] = None
                  ) -> tuple[list[data_lib.Dataset], bool, Mesh]:
  """Every check of a config against its data and devices, nothing placed.

  `build`'s first half, also run by a sweep's --overwrite on every row
  before it deletes anything, so a bad value (a missing data file, a query
  larger than the pool, seeds that do not divide the mesh) leaves every
  workdir as it was.

  Returns:
    (the datasets: one, or one per seed; whether they are per seed; the
    mesh of `config.mesh_shape`).
  """
  config_checks.validate_config(config)
  start_backends(config)
  use_compilation_cache(config.compilation_cache)
  datasets = seed_datasets(config, dataset)
  per_seed = is_per_seed(datasets)
  ds = datasets[0]
  for d in (datasets if per_seed else [ds]):
    check_against_data(config, d)
    if (d.x_train.shape, d.x_test.shape, d.x_train.dtype) != (
        ds.x_train.shape, ds.x_test.shape, ds.x_train.dtype):
      raise ConfigError('the seeds\' datasets differ in shape: '
                        f'{d.x_train.shape} / {d.x_test.shape} '
                        f'{d.x_train.dtype} vs {ds.x_train.shape} / '
                        f'{ds.x_test.shape} {ds.x_train.dtype}')
    if (d.num_classes, list(d.class_names)) != (ds.num_classes,
                                                list(ds.class_names)):
      raise ConfigError('the seeds\' datasets differ in classes: '
                        f'{d.num_classes} {list(d.class_names)} vs '
                        f'{ds.num_classes} {list(ds.class_names)}')
  check_user_code(config, ds)
  initial_params(config, build_model(config, ds.num_classes), ds)
  check_masks_for_scores(config, ds)
  if per_seed and config.oracle != 'simulated':
    raise ConfigError(
        f"config.oracle={config.oracle!r} labels one pool, but the "
        f'{config.num_seeds} seeds each have their own '
        '(config.data_per_seed=True): set it False, or run one seed')
  mesh = sharding.make_mesh(mesh_axis_sizes(config, ds, devices), devices)
  sizes = sharding.mesh_sizes(mesh)
  sharding.check_divisible(sizes, config.num_seeds, ds.x_train.shape[0],
                           ds.x_test.shape[0], config.batch_size,
                           config.cpu_devices)
  seed_strategy(config, mesh, ds)  # Its check; build asks again.
  if config.prng_impl != 'threefry2x32' and sizes[sharding.DATA] > 1:
    # XLA's RngBitGenerator draws a batch of keys' bits together, not key by
    # key: a sample's masks would depend on the samples sharing its shard.
    raise ConfigError(
        f'config.prng_impl={config.prng_impl!r} draws masks that depend on '
        "how the pool is split, so it runs with a 'data' axis of 1 only; use "
        "the default 'threefry2x32' to split the data over devices")
  return datasets, per_seed, mesh


# Metrics that are NaN where nothing defines them, written as null.
NULL_WHEN_NAN = ('pseudo_acc', 'pool_kappa')


def metrics_rows(metrics: dict[str, np.ndarray],
                 seeds: list[int]) -> list[dict[str, Any]]:
  """Per-seed JSON rows from metrics with a leading seed axis."""
  rows = []
  for j, seed in enumerate(seeds):
    row = {'iteration': int(metrics['iteration'][j]), 'seed': seed}
    for name, value in metrics.items():
      if name == 'iteration':
        continue
      v = value[j].item()
      if name in NULL_WHEN_NAN and not math.isfinite(v):
        v = None  # No pseudo-label with a known truth to score, no
        # previous predictions to compare with.
      row[name] = v
    rows.append(row)
  return rows


def summarize(config, rows_by_seed: dict[int, dict], num_params: int,
              wall_s: float, ds: Optional[data_lib.Dataset] = None,
              environments: Sequence[Optional[dict]] = ()
              ) -> dict[str, Any]:
  """summary.json's content from the last metrics row of every seed; with
  `ds` (a seed's data) also the sizes the run worked on: pool_size,
  test_size (samples per seed) and num_classes; `environments`: the
  distinct `provenance.environment()`s its launches computed under, oldest
  first (None: a launch before they were recorded)."""
  seeds = sorted(rows_by_seed)
  labels = [rows_by_seed[s]['num_labels'] for s in seeds]

  def over_seeds(key):
    if any(key not in rows_by_seed[s] for s in seeds):
      return None  # A metric newer than the rows (an older run's).
    values = np.array([rows_by_seed[s][key] for s in seeds])
    return {'mean': float(values.mean()), 'std': float(values.std()),
            'per_seed': {str(s): float(a) for s, a in zip(seeds, values)}}

  return {
      'name': config.name,
      'variant': config.variant,
      'paper_acc': reporting.paper_reference(config),
      # val_acc and the metrics the report's tables put beside it.
      **{metric: over_seeds(metric) for metric in
         ('val_acc',) + tuple(m for m, _, _ in reporting.SIDE_METRICS)},
      'num_labels': int(labels[0]) if len(set(labels)) == 1 else labels,
      'num_params': num_params,
      'iterations': config.num_iterations,
      'num_seeds': len(seeds),
      **({'pool_size': int(ds.x_train.shape[0]),
          'test_size': int(ds.x_test.shape[0]),
          'num_classes': int(ds.num_classes)} if ds is not None else {}),
      'wall_s': round(wall_s, 3),
      'environments': list(environments),
  }


def start_backends(config: ml_collections.ConfigDict) -> None:
  """The CPU device count, the compiler's determinism and the multi-host
  cluster of `config`.

  All three must be set before JAX starts its backends, so this comes
  before anything touches a device (asking which process writes the
  workdir included).
  """
  sharding.set_cpu_devices(config.cpu_devices)
  sharding.set_deterministic_ops(config.deterministic_ops)
  sharding.initialize_distributed(config.distributed)
  # Everything but per-host paths must match across hosts.
  shared = {k: v for k, v in config.to_dict().items()
            if k not in config_checks.PER_HOST_FIELDS}
  sharding.check_processes_agree('config', json.dumps(shared, sort_keys=True,
                                                      default=str))


def run(config: ml_collections.ConfigDict, workdir: str,
        log: Callable[[str], None] = lambda s: None,
        dataset: Optional[data_lib.Dataset] = None,
        overwrite: bool = False) -> dict[str, Any]:
  """Runs (or resumes) every iteration of every seed and writes the workdir.

  The workdir gets config.json, metrics.jsonl (one row per iteration and
  seed), summary.json and checkpoints/ (every `checkpoint_every` iterations
  and at the end). If it already holds checkpoints of the same config, the
  run resumes from the newest valid one: the result is identical to an
  uninterrupted run, since every key depends only on (seed, iteration).
  With `config.oracle='files'` a query iteration writes queries/<i>/,
  checkpoints with the pending query and raises `oracle.WaitingForLabels`;
  the next call reads the answers and goes on ('terminal' asks inline).

  Args:
    config: a full config (see configs/common.py).
    workdir: output folder.
    log: receives one human-readable line per logged iteration.
    dataset: an already-loaded dataset (tests), else loaded from the config.
    overwrite: start afresh in a workdir of a different config.

  Returns:
    The summary (also written to summary.json).
  """
  start = time.time()
  # Every config and data check comes first, so a bad input names itself
  # (not the workdir) and leaves the workdir untouched.
  r = build(config, dataset, initial_blocks=True)
  sharding.check_shared_folder(workdir)
  workdirs.check_workdir_config(workdir, config, overwrite)
  writer = sharding.is_writer()
  note = identical_passes_note(config, r.dataset)
  if note and writer:
    log(note)
  # A first Ctrl-C stops at the next iteration's end, checkpointed; not
  # where a process alone cannot checkpoint (several) or reads the terminal.
  graceful = jax.process_count() == 1 and config.oracle != 'terminal'
  lock = (workdirs.workdir_lock(workdir) if writer
          else contextlib.nullcontext())
  with lock, interrupts.stop_requests(graceful) as stop:
    return _checked_run(r, workdir, log, overwrite, start, stop)


def _checked_run(r: Run, workdir: str, log: Callable[[str], None],
                 overwrite: bool, start: float, stop) -> dict[str, Any]:
  """`run` after its checks, with the workdir locked: the run itself;
  `stop.requested` (`interrupts.stop_requests`) ends it early, at a
  checkpoint, with KeyboardInterrupt."""
  config = r.config
  # Several processes (config.distributed) run this same loop in lockstep;
  # process 0 alone writes the workdir, which must be on a filesystem all
  # of them read (they all resume from its checkpoints).
  writer = sharding.is_writer()
  if jax.process_count() > 1 and config.oracle == 'terminal':
    raise ConfigError("config.oracle='terminal' needs one process; use "
                      "'files' with config.distributed")
  if not writer:
    log = lambda s: None  # pylint: disable=unnecessary-lambda-assignment
  state, first = r.state, 0
  restored = None
  if overwrite:
    if writer:
      workdirs.clear_run(workdir)
    sharding.sync('cleared')
  else:
    restored = workdirs.resume_point(workdir, state, log)
  data_hash = data_fingerprint(r)
  init_hash = init_params_fingerprint(config)
  if restored:
    # Same config and shapes, other data (a data_dir or image folder that
    # points elsewhere, files edited): the run would go on with other data.
    check_same_data(restored, data_hash, workdir, 'use a new --workdir')
    if restored.extra.get('init_params') != init_hash:
      raise ConfigError(
          f'config.init_params={config.init_params} differs from the file '
          f'the run in {workdir} started from (fingerprint {init_hash}, the '
          f'checkpoint has {restored.extra.get("init_params")}); restore '
          'it, or start afresh with --overwrite or a new --workdir')
  metrics_path = os.path.join(workdir, 'metrics.jsonl')
  kept = workdirs.kept_metrics(metrics_path, restored.step) if restored else []
  if restored and len(kept) < restored.step * config.num_seeds:
    # Resuming would summarise the missing iterations as nothing.
    raise ConfigError(
        f'{metrics_path} holds {len(kept)} of the '
        f'{restored.step * config.num_seeds} rows of iterations '
        f'0..{restored.step - 1}, which the newest checkpoint has done; '
        'restore the file, delete the newest checkpoints/<step> folders to '
        'resume from an older one, or pass --overwrite to run again')
  if writer:
    os.makedirs(workdir, exist_ok=True)
  # Wall time of the launches that made the checkpoint resumed from: the
  # summary's wall_s is the run's, not only this launch's.
  earlier_s = float(restored.extra.get('wall_s', 0.0)) if restored else 0.0
  total = config.num_iterations + 1
  # The summary's wall_s is the newest checkpoint's: relaunching a finished
  # run (which saves nothing) rewrites the same summary.
  saved_wall_s = earlier_s
  # So are its environments: the software and devices of the launches that
  # made the checkpoint (None: one made before they were recorded), and
  # this launch's (`with_env`) once it saves.
  env = provenance.environment()
  earlier_envs = (list(restored.extra.get('environments', [None]))
                  if restored else [])
  with_env = provenance.with_environment(earlier_envs, env)
  saved_envs = earlier_envs

  def save(step: int, state: loop.LoopState, extra=None,
           where: Optional[str] = None) -> None:
    nonlocal saved_wall_s, saved_envs
    host = sharding.host_tree(state)  # A collective: every process calls.
    check_finite_params(host.train.params, where or f'iteration {step - 1}',
                        workdir)
    saved_wall_s = earlier_s + time.time() - start
    saved_envs = with_env
    if writer:
      with interrupts.deferred():  # Ctrl-C stops after the write.
        checkpoint.save(workdir, step, host,
                        extra={**(extra or {}), 'wall_s': saved_wall_s,
                               'environments': saved_envs,
                               'data': data_hash,
                               **({'init_params': init_hash}
                                  if init_hash else {}),
                               'metrics_version': workdirs.METRICS_VERSION})
        checkpoint.keep_last(workdir, config.keep_checkpoints)

  initial_done = 0
  if restored is not None:
    state, first = restored.state, restored.step
    initial_done = initial_epochs_done(r, restored)
    if workdirs.is_finished(config, restored):
      log(f'already finished (iterations 0..{total - 1}, '
          f'{checkpoint.step_path(workdir, first)}); nothing to compute')
      if writer:  # A run killed after its last save may have left some.
        checkpoint.tidy(workdir, config.keep_checkpoints)
    elif initial_done:
      log(f'resuming the initial phase after epoch {initial_done} of '
          f'{config.initial_epochs} ({checkpoint.step_path(workdir, 0)})')
    else:
      log(f'resuming from iteration {first} '
          f'({checkpoint.step_path(workdir, first)})')
      if restored.extra.get('metrics_version', 1) != workdirs.METRICS_VERSION:
        log(f'note: metrics.jsonl rows of iterations 0..{first - 1} were '
            'written by an earlier bass_jax: their pseudo_acc and '
            'pool_entropy follow its definitions (labels trained on, '
            'unlabelled part); val_acc and the rest are unchanged')
    changes = (provenance.changes(earlier_envs[-1], env)
               if earlier_envs[-1] is not None else '')
    if changes and not workdirs.is_finished(config, restored):
      log(f'note: resuming with other software or devices than the '
          f'checkpoint was made with: {changes}; from here the run may '
          'round differently from one made in one go (README: '
          'Reproducibility)')
    pending = restored.extra.get('pending')
    fixes_path = os.path.join(workdir, workdirs.CORRECTIONS)
    if pending and os.path.exists(fixes_path):
      # The file's format checked before the answers are taken (its ids
      # may be among them: those are checked after).
      oracle.read_corrections(fixes_path, r.dataset.x_train.shape[0],
                              r.dataset.num_classes, r.dataset.class_names)
      log(f'{fixes_path}: applied once the query is answered')
    if pending:
      # Validated before anything is written: bad answers change nothing.
      state = answered_state(r, state, workdir, pending, log)
    finished = workdirs.is_finished(config, restored)
    if finished and os.path.exists(fixes_path):
      log(f'note: {fixes_path} is not trained on: the run has finished; '
          'launch/export.py applies it to the labels it writes')
    fixes = {} if finished else corrections(r, state, workdir)
    if fixes:
      state = r.correct(state, np.array(list(fixes), np.int32),
                        np.array(list(fixes.values()), np.int32))
      log(f'corrected {len(fixes)} label(s) from '
          f'{os.path.join(workdir, workdirs.CORRECTIONS)}: ids '
          f'{", ".join(map(str, list(fixes)[:10]))}'
          f'{", ..." if len(fixes) > 10 else ""}')
    if pending or fixes:
      save(first, state)
    if fixes:
      # Applied once: the file moves into corrections/, the record of them.
      sharding.sync('corrected')
      if writer:
        workdirs.archived_corrections(workdir, first)
  tb = None
  if writer:
    writing.write_json(os.path.join(workdir, 'config.json'), config.to_dict())
    writing.write_lines(metrics_path, kept)
    if first < total:
      tb = workdirs.rewritten_tensorboard(workdir, config, kept)
  seeds = seeds_of(config)
  cfg = r.loop_config
  if first == 0 and r.initial_block is not None:
    state = initial_blocks(r, state, initial_done, save, log, workdir, stop)
  if first < total:
    # The first iteration compiles (and at 0 trains the initial model), a
    # silent minute or more on a large pool: say what is going on.
    work = (f'training the initial model ({config.initial_epochs} epochs) '
            'and ' if first == 0 and config.initial_epochs else '')
    if first == 0 and cfg.initial_blocked_epochs:
      rest = config.initial_epochs - cfg.initial_blocked_epochs
      work = f'training the last {rest} initial epochs and '
    seeds_text = f'{config.num_seeds} seed' + ('s' * (config.num_seeds > 1))
    if r.mesh is not None and r.mesh.size > 1:  # What mesh_shape gave.
      sizes = sharding.mesh_sizes(r.mesh)
      seeds_text += (f' on {r.mesh.size} devices, mesh seed:'
                     f'{sizes[sharding.SEED]},data:{sizes[sharding.DATA]}')
    log(f'iteration {first}: compiling, {work}sweeping the pool of '
        f'{r.dataset.x_train.shape[0]:,} samples ({seeds_text}); progress '
        'lines follow')
  # The first iteration's clock: after a blocked initial phase the launch
  # began many minutes before it.
  began = time.time()
  with (open(metrics_path, 'a') if writer else contextlib.nullcontext()) as f:
    for i in range(first, total):
      query = None
      with (progress.heartbeat(log, f'iteration {i}', began) if i == first else
            contextlib.nullcontext()):
        if config.oracle == 'simulated':
          state, metrics = r.step(state, r.pool)
        else:
          state, query, valid, metrics = r.em_step(state, r.pool)
        rows = metrics_rows(jax.device_get(metrics), seeds)
      check_finite(rows, f'iteration {i}', workdir)
      # Read once (a signal may set it any time); the last iteration ends
      # the run anyway.
      stopping = stop.requested and i < total - 1
      checkpoint_due = ((i + 1) % config.checkpoint_every == 0 or
                        i == total - 1 or stopping)
      if writer:
        with writing.naming_file(metrics_path):
          f.write(''.join(json.dumps(row) + '\n' for row in rows))
          f.flush()
          if config.oracle != 'simulated' or checkpoint_due:
            # A checkpoint follows: its rows must outlive a host crash as
            # the (fsynced) checkpoint does, or the resume would lack them.
            os.fsync(f.fileno())
      if tb:
        tb.scalars(i, rows)
      # Logged before a query, so an iteration that pauses for labels
      # shows its line too.
      now = time.time()
      if i == first:
        first_done = now
      if i % config.log_every == 0 or i == total - 1:
        log(progress.progress_line(rows, i - first, total - first,
                                   first_done - began, now - first_done, i,
                                   total))
      if query is not None:
        pending = pending_query(i, query, valid)
        if pending['ids']:
          manifest = oracle.manifest_path(workdir, i)
          if writer:
            manifest = oracle.write_queries(workdir, i, pending['ids'],
                                            r.dataset.x_train)
          # Checkpointed with the query first: a relaunch asks it again,
          # with the answers the manifest holds by then (the terminal
          # oracle records each answer there as it is typed).
          save(i + 1, state, extra={'pending': pending})
          if config.oracle == 'files':
            raise oracle.WaitingForLabels(
                manifest, len(pending['ids']), r.dataset.class_names,
                num_classes=r.dataset.num_classes)
          state = answered_state(r, state, workdir, pending, log)
      if checkpoint_due:
        save(i + 1, state)
      if stopping:
        raise stop.interrupt()
  if tb:
    tb.close()
  sharding.sync('metrics')  # Every process reads process 0's final rows.
  summary = summarize(config, workdirs.last_rows(metrics_path), r.num_params,
                      saved_wall_s, r.dataset, saved_envs)
  if writer:
    writing.write_json(os.path.join(workdir, 'summary.json'), summary)
  return summary


def data_fingerprint(r: Run) -> str:
  """The fingerprint of a run's data (every seed's, if they have their own),
  kept in each of its checkpoints."""
  return data_lib.fingerprint(
      *(r.datasets if r.per_seed_data else r.datasets[:1]))


def check_same_data(restored: checkpoint.Restored, data_hash: str,
                    workdir: str, otherwise: str) -> None:
  """Raises ConfigError when a checkpoint was made with other data than
  those of `data_hash` (checkpoints older than the fingerprint pass)."""
  saved = restored.extra.get('data', data_hash)
  if saved != data_hash:
    raise ConfigError(
        f'the data differ from those the run in {workdir} was made with '
        f'(fingerprint {data_hash}, the checkpoint has {saved}); restore '
        f'them, or {otherwise}')


def initial_epochs_done(r: Run, restored: checkpoint.Restored) -> int:
  """The initial epochs a checkpoint made before iteration 0 holds (0 for
  any other checkpoint).

  Raises:
    ConfigError: it holds more than this run would train in blocks (e.g.
      'auto' blocks on a CPU, resumed on a GPU where 'auto' trains the
      whole phase in iteration 0): iteration 0 would train them again.
  """
  if restored.step != 0:
    return 0
  done = int(restored.extra.get('initial_epochs_done', 0))
  if done > r.loop_config.initial_blocked_epochs:
    block = restored.extra.get('initial_block_epochs')
    raise ConfigError(
        f'the checkpoint holds {done} of the {r.config.initial_epochs} '
        'initial epochs, trained in blocks before iteration 0, but this run '
        f'trains only {r.loop_config.initial_blocked_epochs} that way (config.'
        f'initial_block_epochs={r.config.initial_block_epochs} here); pass '
        f'--config.initial_block_epochs={block} to go on from there')
  return done


def initial_blocks(r: Run, state: loop.LoopState, done: int,
                   save: Callable, log: Callable[[str], None],
                   workdir: str, stop) -> loop.LoopState:
  """The initial phase's blocks before iteration 0, from epoch `done`.

  Each block (`loop.initial_block`) is followed by a progress line with an
  ETA and a checkpoint at step 0, so a long phase shows how far it is and a
  crash loses one block; iteration 0 then trains the remaining epochs.

  Args:
    r: the run (`r.initial_block` is not None).
    state: the seed-batched state after `done` initial epochs.
    done: initial epochs already trained (a resumed checkpoint's).
    save: (step, state, extra, where) -> None, `run`'s checkpoint writer.
    log: receives the lines.
    workdir: named in errors.
    stop: `stop.requested` (`interrupts.stop_requests`) ends the phase
      after the block's checkpoint, with KeyboardInterrupt.

  Returns:
    The state after `r.loop_config.initial_blocked_epochs` epochs.
  """
  cfg = r.loop_config
  total, block = cfg.initial_blocked_epochs, cfg.initial_block_epochs
  if done >= total:
    return state
  seeds = seeds_of(r.config)
  log(f'initial phase: epochs {done}..{total - 1} of {cfg.initial_epochs} '
      f'in blocks of {block}, each followed by a checkpoint (the rest in '
      'iteration 0)')
  on_seeds = sharding.seed_sharding(r.mesh)
  began, first_done, first_end = time.time(), None, None
  while done < total:
    start_epochs = sharding.put(np.full(len(seeds), done, np.int32), on_seeds)
    with (progress.heartbeat(log, f'initial epochs from {done}', began)
          if first_end is None else contextlib.nullcontext()):
      state, loss = r.initial_block(state, r.pool, start_epochs)
      loss = np.asarray(jax.device_get(loss))
    done = min(done + block, total)
    where = f'initial epoch {done - 1}'
    check_finite([{'seed': s, 'loss': l} for s, l in zip(seeds, loss)],
                 where, workdir)
    save(0, state, extra={'initial_epochs_done': done,
                          'initial_block_epochs': block}, where=where)
    now = time.time()
    if first_end is None:
      first_end, first_done = now, done
    log(progress.initial_progress_line(loss, done, cfg.initial_epochs,
                              first_end - began, now - first_end,
                              done - first_done))
    if stop.requested:
      raise stop.interrupt()
  return state


def pending_query(iteration: int, query: jax.Array,
                  valid: jax.Array) -> dict[str, Any]:
  """A query as JSON (kept in the checkpoint until it is answered).

  Returns:
    {'iteration', 'query' [S][k], 'valid' [S][k], 'ids': the distinct
    queried pool indices over all seeds, ascending}.
  """
  query = np.asarray(jax.device_get(query))
  valid = np.asarray(jax.device_get(valid))
  return {'iteration': iteration, 'query': query.tolist(),
          'valid': valid.tolist(),
          'ids': sorted({int(i) for i in query[valid]})}


def answered_state(r: Run, state: loop.LoopState, workdir: str,
                   pending: dict, log: Callable[[str], None]
                   ) -> loop.LoopState:
  """The state with a pending query's answers revealed (file or terminal).

  Raises:
    oracle.OracleError: a missing, incomplete or invalid answer file.
  """
  ids, i = pending['ids'], pending['iteration']
  manifest = oracle.manifest_path(workdir, i)
  names = r.dataset.class_names
  if r.config.oracle == 'terminal':
    answers = oracle.ask_terminal(
        ids, r.dataset.x_train, r.dataset.num_classes,
        oracle.query_dir(workdir, i), stdin=sys.stdin, out=log,
        class_names=names,
        known=oracle.read_answers(manifest, ids, r.dataset.num_classes,
                                  names, partial=True),
        record=lambda a: oracle.write_manifest(manifest, ids, a, names))
  else:
    if not os.path.exists(manifest):  # Deleted: the query is asked again.
      oracle.write_queries(workdir, i, ids, r.dataset.x_train)
      raise oracle.WaitingForLabels(manifest, len(ids), names,
                                    num_classes=r.dataset.num_classes)
    answers = oracle.read_answers(manifest, ids, r.dataset.num_classes,
                                  names, partial=True)
    if len(answers) < len(ids):  # Not answered yet (or part-way): paused.
      raise oracle.WaitingForLabels(manifest, len(ids), names,
                                    len(ids) - len(answers),
                                    r.dataset.num_classes)
  query = np.asarray(pending['query'], np.int32)
  labels = np.vectorize(lambda j: answers.get(int(j), 0), otypes=[np.int32])(
      query)
  skipped = sum(a == oracle.SKIPPED for a in answers.values())
  log(f'iteration {i}: {len(answers) - skipped} labels from the oracle'
      + (f' ({skipped} skipped: never asked again)' if skipped else ''))
  return r.reveal(state, query, np.asarray(pending['valid'], bool), labels)


def corrections(r: Run, state: loop.LoopState,
                workdir: str) -> dict[int, int]:
  """{id: label} of the workdir's corrections.csv ({} without one), each
  for a sample some seed has in X.

  Raises:
    ConfigError: a run whose labels no person gave (a simulated oracle).
    oracle.OracleError: a bad file, or an id no seed has a label for.
  """
  path = os.path.join(workdir, workdirs.CORRECTIONS)
  if not os.path.exists(path):
    return {}
  if r.config.oracle not in workdirs.HUMAN_ORACLES:
    raise ConfigError(f'{path}: corrections are of labels a person gave '
                      "(config.oracle 'files' or 'terminal'); this run's "
                      'oracle is simulated: remove the file')
  fixes = oracle.read_corrections(path, r.dataset.x_train.shape[0],
                                  r.dataset.num_classes,
                                  r.dataset.class_names)
  labelled = np.asarray(jax.device_get(state.labelled)).any(axis=0)
  never = sorted(i for i in fixes if not labelled[i])
  if never:
    raise oracle.OracleError(
        f'{path}: id(s) {never[:10]} have no label in the run: only labels '
        'it has (given or answered) can be corrected; a query asks for new '
        'ones')
  return fixes


def check_finite(rows: list[dict], where: str, workdir: str) -> None:
  """Stops a diverged run (NaN/Inf loss) in `workdir` with a clear error.

  `where`: the place named, e.g. 'iteration 12' or 'initial epoch 40'.

  Raises:
    TrainingDivergedError: the checkpoints written so far stay intact.
  """
  for row in rows:
    if not np.isfinite(row['loss']):
      raise TrainingDivergedError(
          f'training diverged at {where} (seed {row["seed"]}, '
          f'loss {row["loss"]}); {workdirs.diverged_advice(workdir)}')


def check_finite_params(params: Any, where: str, workdir: str) -> None:
  """Refuses to checkpoint NaN/Inf parameters (a finite loss can precede
  them), so the newest checkpoint is always a good one.

  Raises:
    TrainingDivergedError: naming `where` (as in `check_finite`).
  """
  leaves = jax.tree_util.tree_leaves(jax.device_get(params))
  if not all(np.isfinite(leaf).all() for leaf in leaves):
    raise TrainingDivergedError(
        f'training diverged at {where} (NaN/Inf parameters); '
        f'{workdirs.diverged_advice(workdir)}')


