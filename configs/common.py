"""Shared config pieces: the default fields and the `arg` parser.

Imports nothing but ml_collections, so a config file can be read without the
library.
"""

from __future__ import annotations

import ml_collections


def parse_arg(arg: str | None, variants: dict[str, dict],
              modifiers: dict[str, dict] | None = None,
              **defaults) -> ml_collections.ConfigDict:
  """Parses "variant[,modifier][,key=value...]" into a ConfigDict of overrides.

  Args:
    arg: the text after ':' in `--config=configs/x.py:<arg>`, or None.
    variants: variant name -> field overrides (the first name in `arg`).
    modifiers: flag-like names (e.g. 'small') -> field overrides, for the
      fields the variant does not set itself.
    **defaults: default variant etc.: `variant='active_semi'`.

  Returns:
    (variant, modifier names, field overrides, raw key=value pairs).

  Raises:
    ValueError: an unknown variant, modifier or key=value pair.
  """
  modifiers = modifiers or {}
  parts = [p for p in (arg or '').split(',') if p]
  variant = defaults.get('variant')
  chosen, pairs, named = [], {}, None
  for part in parts:
    if '=' in part:
      key, value = part.split('=', 1)
      pairs[key] = value
    elif part in variants:
      if named:
        raise ValueError(f'config arg {arg!r} names two variants, '
                         f'{named!r} and {part!r}; give one')
      variant = named = part
    elif part in modifiers:
      chosen.append(part)
    else:
      known = f'variants: {", ".join(sorted(variants))}'
      if modifiers:
        known += f'; modifiers: {", ".join(sorted(modifiers))}'
      raise ValueError(f'unknown config arg {part!r} ({known}; or '
                       'field=value)')
  if variant not in variants:
    raise ValueError(f'unknown variant {variant!r}; known: {sorted(variants)}')
  # A variant's own fields win over a modifier's: e.g. 'small' shortens the
  # schedule, but a supervised row's num_iterations=0 stays 0.
  overrides = {}
  for name in chosen:
    overrides.update(modifiers[name])
  overrides.update(variants[variant])
  return variant, chosen, overrides, pairs


def base_config() -> ml_collections.ConfigDict:
  """Every field a run reads, with the paper's MNIST defaults (SPEC §1)."""
  c = ml_collections.ConfigDict()
  c.name = ''
  c.variant = ''
  c.paper_acc = -1.0           # The paper's accuracy % for this row (-1: none).
  # Data.
  c.dataset = 'mnist'          # 'yinyang', 'mnist', a tfds name, a .npz path,
                               # or an image folder (see data.load_image_folder).
  c.data_dir = ''              # '' -> $BASS_DATA_DIR, else ../shared/data.
  c.data_source = 'auto'       # 'auto' | 'idx' | 'tfds' | 'npz' | 'folder'.
  c.data_seed = 0              # Draw of the generated (toy) data.
  c.data_per_seed = False      # Generated data (yinyang): seed s draws its
                               # own pool and test set (seed data_seed +
                               # 1000 s), as the original code's runs do;
                               # no effect on data read from files.
  c.pool_size = 0              # 0 = the whole training split.
  c.test_size = 0              # 0 = the whole test split.
  c.pixel_scale = 1 / 256      # The original code's scaling.
  # Model.
  c.model = 'cnn'              # 'mlp' | 'cnn' | 'softmax' | your own flax
                               # module, 'file.py:Name' (README).
  c.dropout_rate = 0.33
  c.dropout_bits = 32          # Random bits per mask element: 32, 16 or 8.
  c.mask_impl = 'hash'         # Mask bits: 'hash' (keyed counter hash, fast)
                               # or 'prng' (jax.random.bits, e.g. threefry).
  c.conv_impl = 'auto'         # CNN convolutions: 'auto' | 'fast_grad' |
                               # 'xla' | 'patches' (same math, speed only).
  c.negative_slope = 0.1
  # Seeds: seed, seed + 1, ..., run as one vmapped program.
  c.seed = 0
  c.num_seeds = 10
  c.seed_strategy = 'auto'     # 'vmap' | 'map' | 'auto' (map the CNN on CPU).
  c.prng_impl = 'threefry2x32'  # or 'rbg', 'unsafe_rbg'.
  # Protocol.
  c.initial_per_class = 10      # Initial labels per class; -1: all known.
  # How the initial labels are drawn: 'balanced' (the papers': per class,
  # which uses labels an active learner does not have yet), 'random'
  # (initial_per_class x classes pool samples drawn uniformly, whatever
  # their classes: the cold start of a user who cannot pick by class) or
  # 'representative' (as many, the samples nearest k-means centres of the
  # inputs: a cold start that picks without labels, as
  # launch/first_labels.py does for an image folder).
  c.initial_draw = 'balanced'
  c.num_iterations = 200       # Iterations 0..num_iterations.
  c.initial_epochs = 100
  # A long initial phase runs in blocks of this many epochs before
  # iteration 0, each followed by a progress line with an ETA and a
  # checkpoint (a crash loses one block). The same epochs with the same
  # keys: the results do not depend on it. 0: 'auto', blocks of 1/20 of
  # the phase when it trains at least ~5 minutes' worth on this platform
  # (1 M samples over all seeds on a CPU, 50 M on an accelerator), else
  # none; >= initial_epochs: none (iteration 0 trains the whole phase).
  c.initial_block_epochs = 0
  c.epochs_per_iteration = 1
  # Every retrain_every-th iteration (i > 0) trains a fresh network (new
  # initial parameters and optimizer) for initial_epochs epochs instead of
  # training on: with query_every = retrain_every = 1 the deep active
  # learning papers' retraining from scratch after each query. 0: never.
  c.retrain_every = 0
  # Trained parameters every seed's network starts from (and restarts from
  # on a retrain) instead of a random init: a file in flax's msgpack format
  # (`flax.serialization.to_bytes(params)`; `launch/export.py
  # --params_out=...` writes one from a run). '': a random init per seed.
  c.init_params = ''
  c.semi = 'all'               # 'none' | 'stepwise' | 'all' | 'confident'.
  c.confident_k = 10           # Samples added per iteration by 'confident'.
  c.confident_score = 'entropy'  # 'confident' adds the lowest of this score
                                 # (a score name or 'file.py:fn').
  c.acquisition = 'entropy'    # 'none', a score name (its top k), a
                               # score drawn in proportion to a weight
                               # (power_<score>: score^beta, softmax_:
                               # exp(beta score), softrank_: rank^-beta;
                               # Kirsch et al. 2023), 'batchbald'
                               # (Kirsch et al. 2019), 'coreset' (greedy
                               # k-center, Sener and Savarese 2018),
                               # 'badge' (Ash et al. 2020), 'random',
                               # 'above_average' (eq. 14), 'above_theta';
                               # a score may be your own, 'file.py:fn'.
  c.acquisition_beta = 1.0     # beta of power_/softmax_/softrank_ picks.
  # BatchBALD: it picks among the pool's `batchbald_candidates` highest
  # BALD, from `batchbald_passes` consistent-dropout passes over them (one
  # network per pass), estimating joint entropies from `batchbald_configs`
  # sampled label configurations; computed on query iterations only.
  c.batchbald_candidates = 1000
  c.batchbald_passes = 100
  c.batchbald_configs = 1000
  c.query_every = 10
  c.query_size = 10
  c.label_budget = 0           # Stop querying at this many labels (0: never).
  c.semi_start = 0             # First iteration training on pseudo-labels.
  c.oracle = 'simulated'       # 'simulated' | 'files' | 'terminal'.
  # Training.
  c.batch_size = 256
  c.steps_per_trip = 1         # Optimizer steps per trip of an epoch's
                               # loop (speed only: same results for any;
                               # see training.train_epochs).
  c.learning_rate = 1e-3
  # Random shifts and flips of the training batches' images (see
  # bass_jax/augment.py): 'none' (the paper's), 'shift:<pixels>', 'flip'
  # (left-right) or both, 'shift:2+flip'. The sweeps and the validation
  # see the images as they are.
  c.augment = 'none'
  c.l2 = 1e-3
  c.gt_upsample = 20
  c.mu = 1.0
  # MC dropout.
  c.mc_passes_gt = 100         # T, on the labelled set (theta).
  c.mc_passes_pool = 10        # T', on the pool.
  # Samples per chunk of the MC sweeps (memory is bounded by T * chunk
  # activations) and of the evaluation (eval_chunk_size, also the
  # 'coreset' / 'badge' embedding sweep); 0: 'auto', a batch of
  # mc_dropout.AUTO_BATCH paper-CNN images per platform (256 on a CPU,
  # where batches of 100-1,000 ran faster than 10,000), or as many
  # activation bytes of another model.
  # Speed and memory only: a sample's statistics do not depend on its
  # chunk, and a workdir resumes under other sizes.
  c.chunk_size = 0
  c.eval_chunk_size = 0
  c.mc_precision = 'default'   # MC sweeps' matmuls: 'default' (platform:
                               # TF32 on recent NVIDIA GPUs, fp32 on CPU),
                               # 'float32', 'tensorfloat32' or 'bfloat16'.
  # Devices (see bass_jax/sharding.py): the mesh axis sizes, comma-separated
  # 'axis:size' pairs over axes 'seed' and 'data', one size may be -1.
  # 'auto': as many devices on 'seed' as divide num_seeds, the rest on
  # 'data' (1 seed on 8 GPUs: data:8; 10 seeds: seed:2,data:4).
  c.mesh_shape = 'auto'        # or e.g. 'data:-1', 'seed:4', 'data:2,seed:2'.
  c.distributed = False        # jax.distributed.initialize() (multi-host).
  # GPU: XLA's deterministic kernels and no autotuning
  # (--xla_gpu_deterministic_ops), for runs that must repeat to the bit on
  # the same GPU and software. Off, XLA picks convolution and matmul
  # algorithms by timing them at each compilation, so two compilations of
  # a run may round differently. CPU runs are bit-reproducible either way.
  c.deterministic_ops = False
  # CPU only: split the host's cores into this many JAX devices (0: JAX's
  # default, one). With num_seeds a multiple of it, the default mesh then
  # runs each device's (core's) own seeds: small models (the toy MLP) use
  # the cores far better than one program's intra-op threads do.
  c.cpu_devices = 0
  # Host side.
  # Compiled programs are kept here (JAX's persistent compilation cache), so
  # a rerun, a resume or a later run of the same shapes skips compiling
  # (most of a toy run's wall time). 'auto': the folder JAX was given
  # (JAX_COMPILATION_CACHE_DIR), else ~/.cache/bass_jax/xla; '': off.
  c.compilation_cache = 'auto'
  c.checkpoint_every = 10
  c.keep_checkpoints = 3
  c.log_every = 1
  c.tensorboard = True         # Event files in <workdir>/tensorboard/ when the
                               # tensorboard package is installed.
  # Locked: a misspelt field (config.acqusition = 'bald') is an error where
  # it is set, from Python as on the command line, not a field nothing reads.
  c.lock()
  return c


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict,
                    pairs: dict[str, str]) -> ml_collections.ConfigDict:
  """Sets `overrides` (typed) and `pairs` (strings parsed to each field's type)."""
  for key, value in overrides.items():
    setattr(config, key, value)
  for key, text in pairs.items():
    if key not in config:
      raise ValueError(f'unknown config field {key!r} in config arg')
    try:
      setattr(config, key, parsed_value(key, text, config[key]))
    except ValueError as e:
      raise ValueError(f'config arg {e}') from None
  return config


def parsed_value(key: str, text: str, current):
  """`text` (of a config arg `key=text` or a --vary value) as the type of
  the field's `current`.

  Raises:
    ValueError: "key='text': expected ...", when `text` is not of that type
      (1.5 for an int field is refused rather than truncated) or the field is
      not a number, a bool or a string.
  """
  def bad(what):
    return ValueError(f'{key}={text!r}: expected {what}')

  if isinstance(current, bool):
    words = {'1': True, 'true': True, 'yes': True,
             '0': False, 'false': False, 'no': False}
    if text.lower() not in words:
      raise bad('true or false')
    return words[text.lower()]
  if isinstance(current, (int, float)):
    try:
      number = float(text)
    except ValueError:
      raise bad('a number') from None
    if isinstance(current, float):
      return number
    if not number.is_integer():
      raise bad('an int')
    return int(number)
  if isinstance(current, str):
    return text
  raise ValueError(f'{key} ({type(current).__name__}) cannot be set from '
                   'text; only numbers, bools and strings')


def build(arg, variants, modifiers=None, base=None, references=None,
          **defaults):
  """The full ConfigDict for `arg` on top of `base` (default `base_config()`).

  `references` maps a variant to the paper's accuracy %, stored as
  `paper_acc` so tables can show it beside the measured value.
  """
  variant, chosen, overrides, pairs = parse_arg(arg, variants, modifiers,
                                                **defaults)
  config = base if base is not None else base_config()
  config.variant = ','.join([variant] + chosen)
  config.paper_acc = float((references or {}).get(variant, -1.0))
  return apply_overrides(config, overrides, pairs)
