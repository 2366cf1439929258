"""Checks a config's fields and cross-field rules before anything is built.

What each field may hold (its type, choices and range), the rules between
fields, and which fields say where a run executes rather than what it
computes (PLACEMENT_FIELDS: a workdir resumes on another mesh, not under
another learning rate). Checks that need the data or the network (a model
of one's own traced on the data's shapes) are `experiment.checked_setup`'s.
"""

from __future__ import annotations

import difflib
import math
import os
from typing import Any, Optional

import ml_collections
import numpy as np

from bass_jax import augment as augment_lib
from bass_jax import data as data_lib
from bass_jax import loop
from bass_jax import mc_dropout
from bass_jax import models
from bass_jax import selection
from bass_jax import sharding
from bass_jax import uncertainty
from bass_jax import user_code
from bass_jax.errors import ConfigError


CHOICES = {
    'model': tuple(models.MODELS),
    'semi': loop.SEMI_MODES,
    'confident_score': uncertainty.SCORE_NAMES,
    'acquisition': ('none',) + uncertainty.SCORE_NAMES + tuple(
        f'{sampling}_{score}' for sampling in selection.SAMPLINGS
        for score in uncertainty.SCORE_NAMES) + loop.RANDOM_ACQUISITIONS +
                   loop.JOINT_ACQUISITIONS + loop.DIVERSE_ACQUISITIONS,
    'oracle': ('simulated', 'files', 'terminal'),
    'initial_draw': data_lib.INITIAL_DRAWS,
    'seed_strategy': ('auto', 'vmap', 'map'),
    'data_source': data_lib.SOURCES,
    'prng_impl': ('threefry2x32', 'rbg', 'unsafe_rbg'),
    'dropout_bits': (8, 16, 32),
    'mask_impl': models.MASK_IMPLS,
    'conv_impl': models.CONV_IMPLS,
    'mc_precision': mc_dropout.MC_PRECISIONS,
}


POSITIVE = ('num_seeds', 'initial_epochs', 'query_every',
            'query_size', 'gt_upsample', 'batch_size', 'mc_passes_gt',
            'mc_passes_pool', 'checkpoint_every', 'keep_checkpoints',
            'log_every', 'confident_k', 'batchbald_candidates',
            'batchbald_passes', 'batchbald_configs', 'steps_per_trip')
# Where a run executes or what it logs, not what it computes (equal up to
# float reduction order): a workdir may be resumed on another mesh, e.g.
# more GPUs, with TensorBoard logging switched or checkpoints kept more
# often or longer (log_every, checkpoint_every, keep_checkpoints: when the
# host logs and saves, not what the device computes; initial_block_epochs:
# how the host splits the initial phase into calls). data_dir is where the
# data files are (moved data: md5-checked idx files, or a checkpoint of
# other shapes refused), not which data.
PLACEMENT_FIELDS = ('mesh_shape', 'distributed', 'deterministic_ops',
                    'seed_strategy',
                    'tensorboard', 'conv_impl', 'cpu_devices', 'chunk_size',
                    'eval_chunk_size', 'compilation_cache', 'data_dir',
                    'log_every', 'checkpoint_every', 'keep_checkpoints',
                    'steps_per_trip', 'initial_block_epochs')
# Paths each host may give its own way (a mount point, a local cache); the
# rest of a multi-process run's config must agree across processes.
PER_HOST_FIELDS = ('data_dir', 'compilation_cache')
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Far above any CPU's core count; more CPU devices only cost start-up time.
MAX_CPU_DEVICES = 512
NON_NEGATIVE = ('chunk_size', 'eval_chunk_size', 'initial_block_epochs',
                'num_iterations', 'epochs_per_iteration', 'retrain_every',
                'pool_size',
                'cpu_devices', 'label_budget', 'semi_start',
                'test_size', 'seed', 'data_seed', 'mu', 'l2',
                'acquisition_beta')
INT_FIELDS = POSITIVE + ('chunk_size', 'eval_chunk_size',
                         'num_iterations', 'epochs_per_iteration',
                         'retrain_every',
                         'cpu_devices', 'pool_size', 'label_budget',
                         'semi_start', 'test_size', 'seed', 'data_seed',
                         'initial_per_class', 'dropout_bits',
                         'initial_block_epochs')
REAL_FIELDS = ('mu', 'l2', 'dropout_rate', 'learning_rate', 'pixel_scale',
               'negative_slope', 'paper_acc', 'acquisition_beta')
STR_FIELDS = ('name', 'variant', 'dataset', 'data_dir', 'data_source',
              'model', 'semi', 'acquisition', 'oracle', 'prng_impl',
              'seed_strategy', 'mask_impl', 'conv_impl', 'mc_precision',
              'compilation_cache', 'init_params', 'augment',
              'initial_draw')
_INT = ((int, np.integer), 'an int')
_REAL = ((int, float, np.integer, np.floating), 'a number')
_STR = ((str,), 'a string')
FIELD_TYPES = {**dict.fromkeys(INT_FIELDS, _INT),
               **dict.fromkeys(REAL_FIELDS, _REAL),
               **dict.fromkeys(STR_FIELDS, _STR)}
# Every field of configs/common.base_config(): those of FIELD_TYPES and
# these, checked where they are used (a mesh, bools, a score name).
OTHER_FIELDS = ('mesh_shape', 'deterministic_ops', 'tensorboard',
                'distributed', 'confident_score', 'data_per_seed')
KNOWN_FIELDS = frozenset(FIELD_TYPES) | frozenset(OTHER_FIELDS)


def check_types(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for an unknown or missing field or a value of the
  wrong type.

  A locked ConfigDict refuses most of these on assignment already; this
  also covers unlocked configs and hand-built ones, where e.g. 1.5 for an
  int field would otherwise be truncated somewhere downstream.
  """
  for field in config:
    if field not in KNOWN_FIELDS:
      # An unlocked config (built by hand) takes a misspelt field silently;
      # nothing would read it.
      close = difflib.get_close_matches(field, KNOWN_FIELDS, n=1)
      hint = f"; did you mean '{close[0]}'?" if close else ''
      raise ConfigError(f'config.{field} is no config field{hint} (the '
                        'fields are those of configs/common.base_config())')
  for field, (types, what) in FIELD_TYPES.items():
    if field not in config:
      raise ConfigError(f'config.{field} is missing; build configs on '
                        'configs/common.base_config()')
    value = config[field]
    # bool is an int subclass, but True is never a sensible count or rate.
    if isinstance(value, bool) or not isinstance(value, types):
      raise ConfigError(f'config.{field}={value!r} has type '
                        f'{type(value).__name__}, expected {what}')
    if types is _REAL[0] and not math.isfinite(value):
      raise ConfigError(f'config.{field}={value!r} must be a finite number')


def choices_text(field: str, allowed: tuple) -> str:
  """The allowed values of a field, for an error message.

  The sampled acquisitions (every sampling x every score) are summarized
  as their pattern instead of being listed one by one.
  """
  if field in ('model', 'confident_score'):
    return f"{list(allowed)} or one of your own as 'file.py:name'"
  if field != 'acquisition':
    return str(list(allowed))
  plain = [a for a in allowed
           if selection.split_acquisition(a)[0] == 'top_k']
  return (f'{plain} or <sampling>_<score> with a sampling of '
          f'{list(selection.SAMPLINGS)} and a score of '
          f"{list(uncertainty.SCORE_NAMES)} or of your own as 'file.py:name'")


def user_code_of(field: str, value: Any) -> Optional[str]:
  """The code of one's own ('scores.py:my_score') a config field's value
  names, None for a built-in value: a model, an acquisition's score (also
  after a sampling, 'power_scores.py:my_score') or the confident score."""
  if field not in user_code.CONFIG_FIELDS or not isinstance(value, str):
    return None
  if field == 'acquisition':
    value = selection.split_acquisition(value)[1]
  return value if user_code.is_spec(value) else None


def prefix_hint(value: str, spec: str) -> str:
  """For an acquisition whose file name begins like a sampling
  ('power_mine.py:fn' read as power_ of 'mine.py:fn'), how to name the
  file itself; '' otherwise."""
  if value == spec or not os.path.isfile(value.rpartition(':')[0]):
    return ''
  return (f"; {value!r} reads as {selection.split_acquisition(value)[0]}_ "
          f"sampling of {spec!r}: for the top k of {value.split(':')[0]}, "
          f"write './{value}'")


# The most optimizer steps one trip of an epoch's loop may compile.
MAX_STEPS_PER_TRIP = 64


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks every field's value and the cross-field rules, in one place.

  Raises:
    ConfigError: naming the field, its value and what is allowed.
  """
  check_types(config)
  for field, allowed in CHOICES.items():
    spec = user_code_of(field, config[field])
    if spec is not None:
      try:
        user_code.loaded(spec)
      except ValueError as e:
        raise ConfigError(f'config.{field} {e}'
                          f'{prefix_hint(config[field], spec)}') from None
    elif config[field] not in allowed:
      raise ConfigError(f'config.{field}={config[field]!r} is not one of '
                        f'{choices_text(field, allowed)}')
  for field in POSITIVE:
    if not config[field] > 0:
      raise ConfigError(f'config.{field}={config[field]!r} must be > 0')
  for field in NON_NEGATIVE:
    if not config[field] >= 0:
      raise ConfigError(f'config.{field}={config[field]!r} must be >= 0')
  for field in REAL_FIELDS:
    # The device computes in float32: beyond its range a value is inf.
    if abs(config[field]) > FLOAT32_MAX:
      raise ConfigError(f'config.{field}={config[field]!r} is beyond float32 '
                        f'(at most {FLOAT32_MAX:.3g})')
  if config.cpu_devices > MAX_CPU_DEVICES:
    # XLA starts that many devices before any other check: 100,000 hung.
    raise ConfigError(f'config.cpu_devices={config.cpu_devices} must be at '
                      f'most {MAX_CPU_DEVICES} (one per core is the useful '
                      f'size; this machine has {os.cpu_count()})')
  if config.steps_per_trip > MAX_STEPS_PER_TRIP:
    # Each step of a trip is compiled in turn: 100,000 compiled for minutes
    # at gigabytes of memory.
    raise ConfigError(f'config.steps_per_trip={config.steps_per_trip} must '
                      f'be at most {MAX_STEPS_PER_TRIP} (its steps are '
                      'compiled one after another; 1-16 were measured, '
                      'benchmarks/README.md)')
  if not config.dataset:
    raise ConfigError('config.dataset is empty: name a dataset, a .npz file '
                      'or an image folder')
  if config.initial_per_class == 0 or config.initial_per_class < -1:
    raise ConfigError(f'config.initial_per_class={config.initial_per_class}'
                      ' must be > 0, or -1 to label every known pool label')
  if config.initial_per_class == -1 and config.initial_draw != 'balanced':
    # Every known label is labelled: there is nothing to draw.
    raise ConfigError(f'config.initial_draw={config.initial_draw!r} draws '
                      'initial_per_class x classes labels, but '
                      'initial_per_class=-1 labels every known one: set '
                      'initial_per_class > 0, or drop initial_draw')
  if not 0.0 <= config.dropout_rate < 1.0:
    raise ConfigError(f'config.dropout_rate={config.dropout_rate!r} must be '
                      'in [0, 1)')
  if not config.learning_rate > 0:
    raise ConfigError(f'config.learning_rate={config.learning_rate!r} must '
                      'be > 0')
  if not 0 < config.pixel_scale:
    raise ConfigError(f'config.pixel_scale={config.pixel_scale!r} must be > 0')
  if (config.acquisition in loop.JOINT_ACQUISITIONS and
      config.batchbald_candidates < config.query_size):
    raise ConfigError(
        f'config.batchbald_candidates={config.batchbald_candidates} is '
        f'fewer than config.query_size={config.query_size}: BatchBALD picks '
        'the batch among the candidates')
  check_passes_for_scores(config)
  try:
    augment_lib.parse(config.augment)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if config.mesh_shape != sharding.AUTO:
    sharding.parse_mesh_shape(config.mesh_shape)  # The format; sizes at build.
  for field in ('distributed', 'data_per_seed', 'deterministic_ops'):
    if not isinstance(config[field], bool):
      raise ConfigError(f'config.{field}={config[field]!r} must be True or '
                        'False')


# Scores that compare MC passes: with one pass they are 0 for every sample
# (BatchBALD picks its candidates by BALD).
PASS_SCORES = ('bald', 'variation_ratio', 'mean_std', 'batchbald')


def pass_scores_used(config: ml_collections.ConfigDict) -> dict[str, str]:
  """{config field: score} of the scores of PASS_SCORES the config uses."""
  used = {'acquisition': selection.split_acquisition(config.acquisition)[1]}
  if config.semi == 'confident':
    used['confident_score'] = config.confident_score
  return {f: score for f, score in used.items() if score in PASS_SCORES}


def check_passes_for_scores(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for a score of PASS_SCORES on one MC pass, which
  would rank the pool by index instead of by uncertainty."""
  used = pass_scores_used(config)
  if config.mc_passes_pool >= 2 or not used:
    return
  field = next(iter(used))
  raise ConfigError(
      f'config.{field}={config[field]!r} compares MC passes: with '
      f'config.mc_passes_pool={config.mc_passes_pool} every score is 0; '
      'use 2 or more passes')
