"""The EM loop as pure functions of a `LoopState` pytree.

One call of `iteration(state, pool)` is one iteration of Algorithm 3.1 in the
order of the original code (SPEC §1): train -> evaluate -> MC inference ->
acquire -> refresh pseudo-labels and D. Every array has a fixed shape over the
pool, the iteration counter is traced, so the function compiles once and runs
200 iterations without recompiling or leaving the device. A leading seed axis
is a `jax.vmap` (or `lax.map`) away (`seeds_iteration`).

This module never imports a model: the forward pass comes in as `apply_fn`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from bass_jax import augment as augment_lib
from bass_jax import mc_dropout
from bass_jax import selection
from bass_jax import sharding
from bass_jax import training

SEMI_MODES = ('none', 'stepwise', 'all', 'confident')
# Acquisition functions: any score of `uncertainty.SCORE_NAMES` (its top k),
# the same drawn in proportion to a weight of the score ('power_bald', see
# `selection.SAMPLINGS`), or:
RANDOM_ACQUISITIONS = ('random', 'above_average', 'above_theta')
# Batch-aware acquisitions that model the picks' labels jointly.
JOINT_ACQUISITIONS = ('batchbald',)
# Batches spread over the network's embedding of the pool (the input of its
# last dense layer, dropout off): 'coreset', greedy k-center (Sener and
# Savarese 2018); 'badge', k-means++ seeding over gradient embeddings (Ash
# et al. 2020).
DIVERSE_ACQUISITIONS = ('coreset', 'badge')
# Worth skipping on the iterations that ask no query (a real `lax.cond`).
GATED_ACQUISITIONS = JOINT_ACQUISITIONS + DIVERSE_ACQUISITIONS


@flax.struct.dataclass
class Pool:
  """The data an iteration reads (one seed's view).

  Shared by all seeds, or, with per-seed data (`config.data_per_seed`),
  every field carries a leading seed axis [S, ...] outside the seed map
  (see `over_seeds`); one seed's iteration sees the shapes below.

  Attributes:
    x: [N, ...] pool inputs (ground truth X and unlabelled X' together).
    y: [N] int32 hidden labels: what the simulated oracle reveals, and the
      truth pseudo-label accuracy is measured against (-1 where unknown).
    test_x: [M, ...] validation inputs.
    test_y: [M] int32 validation labels.
  """
  x: jax.Array
  y: jax.Array
  test_x: jax.Array
  test_y: jax.Array


@flax.struct.dataclass
class LoopState:
  """Everything that changes from one iteration to the next (one seed).

  Attributes:
    train: model parameters and optimizer state.
    labelled: [N] bool, the ground-truth set X.
    member: [N] bool, pseudo-labelled members of D (grows monotonically).
    labels: [N] int32 training labels: revealed truth where labelled, the
      newest pseudo-label elsewhere.
    key: raw PRNG key data of this seed (typed keys are rebuilt from it, so
      the state checkpoints as plain arrays).
    iteration: scalar int32, the index of the next iteration.
    skipped: [N] bool, samples a human oracle could not label: never
      queried again, pseudo-labelled like the rest of X'. Last, so the
      checkpoints made before it are a prefix of the state's leaves.
  """
  train: training.TrainState
  labelled: jax.Array
  member: jax.Array
  labels: jax.Array
  key: jax.Array
  iteration: jax.Array
  skipped: jax.Array


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """Static settings of the loop (hashable; part of the compiled program)."""
  semi: str = 'stepwise'
  acquisition: str = 'entropy'
  query_every: int = 10
  query_size: int = 10
  label_budget: int = 0          # Stop querying at this many labels (0: never).
  num_iterations: int = -1       # The last iteration, which asks no query:
                                 # nothing would train on its answers
                                 # (-1: no last iteration).
  semi_start: int = 0            # First iteration whose training uses D's
                                 # pseudo-labels (the blog: after the queries).
  acquisition_beta: float = 1.0  # Coldness of a sampled acquisition.
  batchbald_candidates: int = 1000  # BatchBALD picks among the top BALD.
  batchbald_passes: int = 100    # Consistent-dropout passes over them.
  batchbald_configs: int = 1000  # Sampled label configurations.
  batchbald_chunk_size: int = 100  # Candidates per chunk of that sweep.
  confident_k: int = 10
  confident_score: str = 'entropy'  # What 'confident' ranks by (lowest).
  initial_epochs: int = 100
  # The initial phase's first epochs, run by the host in calls of
  # `initial_block_epochs` before iteration 0 (`seeds_initial_block`), so a
  # long phase reports progress and checkpoints; iteration 0 trains the
  # rest. 0: iteration 0 trains them all. The same epochs either way.
  initial_blocked_epochs: int = 0
  initial_block_epochs: int = 0
  epochs_per_iteration: int = 1
  # Every retrain_every-th iteration (i > 0) trains a fresh network, newly
  # initialised with a fresh optimizer, for initial_epochs epochs in place
  # of epochs_per_iteration more on the old one (0: never): the deep active
  # learning papers retrain from scratch after each query.
  retrain_every: int = 0
  gt_upsample: int = 20
  mu: float = 1.0
  batch_size: int = 256
  steps_per_trip: int = 1        # See `training.train_epochs`.
  l2: float = 1e-3
  mc_passes_gt: int = 100
  mc_passes_pool: int = 10
  chunk_size: int = 1000         # Pool samples per chunk of the T' sweep.
  gt_chunk_size: int = 1000      # Labelled samples per chunk of the T sweep.
  eval_chunk_size: int = 2000
  label_capacity: int = 310
  train_capacity: int = 66560
  prng_impl: str = 'threefry2x32'
  mc_precision: str = 'default'  # See `mc_dropout.with_precision`.
  # Training batches' random shifts and flips (`augment.augmented`).
  augment: augment_lib.Augment = augment_lib.Augment()

  @property
  def score_names(self) -> tuple[str, ...]:
    """The scores the pool sweep needs (entropy is always computed)."""
    names = []
    if self.acquisition == 'batchbald':
      names.append('bald')  # Its candidates: the pool's top BALD.
    elif self.acquisition not in (('none',) + RANDOM_ACQUISITIONS +
                                  DIVERSE_ACQUISITIONS):
      names.append(selection.split_acquisition(self.acquisition)[1])
    if self.semi == 'confident':
      names.append(self.confident_score)
    return tuple(dict.fromkeys(names))  # Each once, in order.


def _named_keys(cfg: LoopConfig, key_data: jax.Array,
                iteration: jax.Array) -> dict[str, jax.Array]:
  """This iteration's keys, one per consumer; a function of seed and i only."""
  root = jax.random.fold_in(
      jax.random.wrap_key_data(key_data, impl=cfg.prng_impl), iteration)
  # Appended names leave the earlier keys (and every result) as they were.
  names = ('train', 'gt', 'pool', 'acquire', 'init')
  return {n: jax.random.fold_in(root, j) for j, n in enumerate(names)}


def _is_query_iteration(cfg: LoopConfig, iteration: jax.Array,
                        num_labels: jax.Array) -> jax.Array:
  if cfg.acquisition == 'none':
    return jnp.bool_(False)
  within_budget = (True if cfg.label_budget <= 0 else
                   num_labels + cfg.query_size <= cfg.label_budget)
  before_last = (True if cfg.num_iterations < 0 else
                 iteration < cfg.num_iterations)
  return (iteration % cfg.query_every == 0) & within_budget & before_last


def mean_entropy_over_all(gt_entropy: jax.Array, gt_valid: jax.Array,
                          pool_entropy: jax.Array,
                          labelled: jax.Array) -> jax.Array:
  """Eq. 14's mean normalized entropy over X and X' (above_average's bar).

  Args:
    gt_entropy: [L] the label slots' entropies from the T-pass sweep.
    gt_valid: [L] bool, the slots that hold a label.
    pool_entropy: [N] the pool's entropies from the T'-pass sweep.
    labelled: [N] bool, X; the rest of the pool is X'.

  Returns:
    A scalar: each labelled sample counted once (its T-pass entropy), over N.
  """
  total = (jnp.sum(jnp.where(gt_valid, gt_entropy, 0.0)) +
           jnp.sum(jnp.where(labelled, 0.0, pool_entropy)))
  return total / labelled.shape[0]


def acquisition_picks(cfg: LoopConfig, key: jax.Array,
                      sweep: dict[str, jax.Array], available: jax.Array,
                      theta: jax.Array, mean_entropy_all: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
  """The `query_size` pool samples to send to the oracle.

  Args:
    cfg: loop config.
    key: this iteration's acquisition key.
    sweep: the pool sweep (`mc_statistics`): [N] 'entropy', and the scores
      of `cfg.score_names` [N].
    available: [N] bool, the samples a query may pick.
    theta: scalar, the bar of 'above_theta'.
    mean_entropy_all: scalar, the bar of 'above_average'.

  Returns:
    (indices [k] int32, valid [k] bool), k = cfg.query_size.
  """
  k = cfg.query_size
  if cfg.acquisition == 'none':
    return no_picks(k)
  if cfg.acquisition == 'random':
    return selection.random_indices(key, available, k)
  if cfg.acquisition == 'above_average':
    return selection.above_average_indices(key, sweep['entropy'],
                                           mean_entropy_all, available, k)
  if cfg.acquisition == 'above_theta':
    return selection.above_average_indices(key, sweep['entropy'], theta,
                                           available, k)
  sampling, score = selection.split_acquisition(cfg.acquisition)
  if sampling == 'top_k':
    return selection.top_k_indices(sweep[score], available, k)
  return selection.sampled_indices(key, sweep[score], available, k, sampling,
                                   cfg.acquisition_beta)


def batchbald_picks(cfg: LoopConfig, key: jax.Array, bald: jax.Array,
                    available: jax.Array,
                    candidate_probs: Callable[[jax.Array, jax.Array],
                                              jax.Array]
                    ) -> tuple[jax.Array, jax.Array]:
  """BatchBALD's `query_size` picks among the pool's top BALD candidates.

  Args:
    cfg: loop config (`batchbald_*` fields).
    key: this iteration's acquisition key.
    bald: [N] the pool sweep's BALD.
    available: [N] bool, the unlabelled pool.
    candidate_probs: (indices [M] int32, key) -> [M, T, C] consistent
      dropout samples of those pool samples (`mc_dropout.consistent_probs`).

  Returns:
    (pool indices [k] int32, valid [k] bool).
  """
  m = min(cfg.batchbald_candidates, bald.shape[0])
  candidates, valid = selection.top_k_indices(bald, available, m)
  key_probs, key_picks = jax.random.split(key)
  picks, ok = selection.batchbald_indices(
      key_picks, candidate_probs(candidates, key_probs), valid,
      cfg.query_size, cfg.batchbald_configs)
  return candidates[picks], ok


def diverse_picks(cfg: LoopConfig, key: jax.Array, embed_fn: Callable,
                  params, pool_x: jax.Array, gt_idx: jax.Array,
                  gt_valid: jax.Array, available: jax.Array,
                  mesh: Mesh | None) -> tuple[jax.Array, jax.Array]:
  """The `query_size` picks of 'coreset' or 'badge' (`DIVERSE_ACQUISITIONS`).

  Args:
    cfg: loop config.
    key: this iteration's acquisition key (BADGE's draws).
    embed_fn: (params, x [B, ...]) -> (features [B, D], logits [B, C]), the
      model's `embed`.
    params: the model trained this iteration.
    pool_x: [N, ...] the pool (split over 'data' with a mesh).
    gt_idx, gt_valid: [L] the label slots (`selection.labelled_slots`):
      core-set's initial centers.
    available: [N] bool, the samples a query may pick.
    mesh: the run's mesh or None.

  Returns:
    (pool indices [k] int32, valid [k] bool).
  """
  def row(a, i):  # a[i] of a pool-long array a [N, ...] split over 'data'.
    return sharding.gather_rows(mesh, a, i[None])[0]

  k = cfg.query_size
  if cfg.acquisition == 'coreset':
    centers = mc_dropout.embedding_sweep(
        embed_fn, params, sharding.gather_rows(mesh, pool_x, gt_idx),
        cfg.eval_chunk_size)['features']
    sweep = mc_dropout.data_parallel_embedding_sweep(
        mesh, embed_fn, params, pool_x, cfg.eval_chunk_size, centers,
        gt_valid)
    f = sweep['features'].astype(jnp.float32)
    return selection.k_center_greedy_indices(
        sweep['nearest_d2'], available, k,
        lambda i: jnp.sum((f - row(f, i))**2, axis=-1))
  sweep = mc_dropout.data_parallel_embedding_sweep(
      mesh, embed_fn, params, pool_x, cfg.eval_chunk_size)
  a = selection.gradient_factor(sweep['probs'])
  h = sweep['features'].astype(jnp.float32)
  norms_sq = jnp.sum(a * a, -1) * jnp.sum(h * h, -1)  # |g_i|^2
  return selection.kmeans_pp_indices(
      key, norms_sq, available, k,
      lambda i: selection.gradient_embedding_sq_dists(a, h, row(a, i),
                                                      row(h, i)))


def no_picks(k: int) -> tuple[jax.Array, jax.Array]:
  """([k] int32, [k] bool): an acquisition that picks nothing."""
  return jnp.zeros(k, jnp.int32), jnp.zeros(k, bool)


def refreshed_membership(cfg: LoopConfig, member: jax.Array,
                         sweep: dict[str, jax.Array], theta: jax.Array,
                         labelled: jax.Array) -> jax.Array:
  """D's pseudo-labelled part after this iteration's E-step: [N] bool.

  `member` and `labelled` are [N] bool, `theta` a scalar; `sweep` holds
  the pool's [N] 'entropy' and the scores of `cfg.score_names`.
  """
  if cfg.semi == 'none':
    return jnp.zeros_like(member)
  if cfg.semi == 'all':
    return selection.all_data_membership(labelled)
  if cfg.semi == 'stepwise':
    return selection.stepwise_membership(member, sweep['entropy'], theta,
                                         labelled)
  return selection.top_k_confident_membership(
      member, sweep[cfg.confident_score], labelled, cfg.confident_k)


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.sum(jnp.where(mask, values, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def prediction_kappa(before: jax.Array, after: jax.Array, mask: jax.Array,
                     num_classes: int) -> jax.Array:
  """Cohen's kappa of two labelings of the same samples: a scalar.

  The agreement beyond chance, (p_o - p_e) / (1 - p_e): p_o the share of
  masked samples both give one class, p_e the share two independent
  labelings with these class frequencies would give one class by chance.
  1 where they agree on every sample (also all on one class); NaN where
  `mask` holds no sample.

  Args:
    before, after: [N] int32 classes in 0..num_classes - 1.
    mask: [N] bool, the samples compared.
    num_classes: C (static).
  """
  w = mask.astype(jnp.float32)
  n = jnp.maximum(jnp.sum(w), 1.0)
  p_o = jnp.sum(jnp.where(before == after, w, 0.0)) / n
  p_before = jax.ops.segment_sum(w, before, num_classes) / n
  p_after = jax.ops.segment_sum(w, after, num_classes) / n
  p_e = jnp.sum(p_before * p_after)
  kappa = jnp.where(p_e < 1.0, (p_o - p_e) / jnp.maximum(1.0 - p_e, 1e-12),
                    1.0)
  return jnp.where(jnp.any(mask), kappa, jnp.nan)


def iteration_metrics(i: jax.Array, test: dict[str, jax.Array],
                      loss: jax.Array, theta: jax.Array, gt_pred: jax.Array,
                      gt_labels: jax.Array, gt_valid: jax.Array,
                      sweep: dict[str, jax.Array], labelled: jax.Array,
                      member: jax.Array, truth: jax.Array
                      ) -> dict[str, jax.Array]:
  """One iteration's metrics row (the original code's CSV, and more).

  Args:
    i: the iteration.
    test: the validation metrics (`mc_dropout.data_parallel_test_metrics`:
      val_acc, val_balanced_acc, val_nll, val_ece).
    loss: the mean training loss.
    theta: the mean entropy over X.
    gt_pred, gt_labels, gt_valid: [L] MC predictions on X's slots, their
      true labels, and which slots are real.
    sweep: the pool sweep's [N] 'entropy' and 'pseudo_label'.
    labelled, member: [N] bool X and D's pseudo-labelled part, as this
      iteration trained on them (before its acquisition and refresh).
    truth: [N] hidden labels (-1 where unknown).

  Returns:
    Scalars. As in the original code, 'pseudo_acc' scores this
    iteration's pseudo-labels (the pool sweep's) on D's pseudo-labelled
    part (NaN if none of it has a known truth, e.g. an image folder's
    unlabelled pool), and 'pool_entropy' is the mean entropy over the whole
    pool.
  """
  pseudo = member & ~labelled
  scored = pseudo & (truth >= 0)
  return {
      'iteration': i,
      **test,
      'gt_acc': _masked_mean(gt_pred == gt_labels, gt_valid),
      # NaN (null in metrics.jsonl) where no such sample has a known truth.
      'pseudo_acc': jnp.where(jnp.any(scored), _masked_mean(
          sweep['pseudo_label'] == truth, scored), jnp.nan),
      'num_pseudo': jnp.sum(pseudo),
      'num_labels': jnp.sum(labelled),
      'num_train': jnp.sum(labelled) + jnp.sum(pseudo),
      'theta': theta,
      'pool_entropy': jnp.mean(sweep['entropy']),
      'loss': loss,
  }


def is_retrain_iteration(retrain_every: int, iteration):
  """Whether iteration `iteration` (an int, or a scalar int array in a
  trace) trains a fresh network: a bool, or a scalar bool array
  (config.retrain_every; the sweep's ETA counts with it too)."""
  if retrain_every <= 0:
    return False
  return (iteration > 0) & (iteration % retrain_every == 0)


def retrained_start(cfg: LoopConfig, init_fn: Callable | None,
                    optimizer: optax.GradientTransformation,
                    train: training.TrainState, example_x: jax.Array,
                    key: jax.Array, fresh: jax.Array) -> training.TrainState:
  """The train state an iteration's M-step starts from: `train`, or where
  `fresh` (a scalar bool) new parameters from `init_fn(key, example_x)`
  (example_x [1, ...]) with a fresh optimizer state."""
  if cfg.retrain_every <= 0:
    return train
  if init_fn is None:
    raise ValueError('retrain_every > 0 needs the model\'s init_fn')

  def fresh_state():
    params = init_fn(key, example_x)
    return training.TrainState(params, optimizer.init(params))

  # Under the seed vmap a batched `fresh` makes this a select of both.
  return jax.lax.cond(fresh, fresh_state, lambda: train)


def em_step(cfg: LoopConfig, apply_fn: Callable,
            optimizer: optax.GradientTransformation, state: LoopState,
            pool: Pool, mesh: Mesh | None = None,
            may_query: jax.Array | None = None,
            init_fn: Callable | None = None,
            embed_fn: Callable | None = None
            ) -> tuple[LoopState, jax.Array, jax.Array, dict]:
  """One iteration up to, not including, the oracle's answer.

  With a `mesh` (see `sharding.make_mesh`; the pool split over its 'data'
  axis) the pool and ground-truth sweeps, the validation and the training
  batches run data-parallel; the results are those of `mesh=None` up to
  float reduction order.

  `may_query`: an unbatched scalar bool, False when no seed of the program
  queries this iteration (`any_seed_may_query`), so a costly acquisition
  (BatchBALD) is skipped by a real `lax.cond` even under the seed vmap,
  where this seed's own condition would be batched and the cond a select
  that computes both branches. None: this seed's own condition.

  `init_fn`: `init(key, x [1, ...]) -> params`, the model's; needed with
  `cfg.retrain_every` > 0.

  `embed_fn`: `embed(params, x) -> (features, logits)`, the model's;
  needed by the acquisitions of `DIVERSE_ACQUISITIONS`.

  Returns:
    (state, query [k] int32, query_valid [k] bool, metrics): the state has
    the refreshed pseudo-labels and D and the advanced iteration counter;
    `query_valid` is all False on non-query iterations. Metrics are scalars
    describing the model trained in this iteration: `iteration_metrics`'
    and 'pool_kappa' (`prediction_kappa` of the pool's predicted classes
    against the previous iteration's, over X'; NaN at iteration 0).
  """
  i = state.iteration
  keys = _named_keys(cfg, state.key, i)
  labelled, member = state.labelled, state.member

  # 1. M-step: the initial phase at i = 0 (the part not run in blocks
  # before it), then one epoch per iteration; a whole initial phase from
  # fresh parameters on a retrain iteration.
  fresh = is_retrain_iteration(cfg.retrain_every, i)
  num_epochs = jnp.where(i == 0,
                         cfg.initial_epochs - cfg.initial_blocked_epochs,
                         jnp.where(fresh, cfg.initial_epochs,
                                   cfg.epochs_per_iteration))
  first_epoch = (jnp.where(i == 0, cfg.initial_blocked_epochs, 0)
                 if cfg.initial_blocked_epochs else 0)
  start = state.replace(train=retrained_start(
      cfg, init_fn, optimizer, state.train, pool.x[:1], keys['init'], fresh))
  train_state, loss = _trained(cfg, apply_fn, optimizer, start, pool,
                               keys['train'], first_epoch, num_epochs, mesh)
  params = train_state.params

  # 2. Validation with dropout off.
  test = mc_dropout.data_parallel_test_metrics(
      mesh, apply_fn, params, pool.test_x, pool.test_y, cfg.eval_chunk_size)

  # 3. MC inference: T passes on X (theta), T' passes on the whole pool.
  sweep_fn = mc_dropout.with_precision(apply_fn, cfg.mc_precision)
  gt_idx, gt_valid = selection.labelled_slots(labelled, cfg.label_capacity)
  gt = mc_dropout.labelled_sweep(mesh, sweep_fn, params, pool.x, gt_idx,
                                keys['gt'], cfg.mc_passes_gt,
                                cfg.gt_chunk_size,
                                jnp.sum(gt_valid, dtype=jnp.int32))
  theta = selection.threshold_theta(gt['entropy'], gt_valid)
  sweep = mc_dropout.data_parallel_sweep(mesh, sweep_fn, params, pool.x,
                                         keys['pool'], cfg.mc_passes_pool,
                                         cfg.chunk_size, cfg.score_names)
  unlabelled = ~labelled
  mean_entropy_all = mean_entropy_over_all(gt['entropy'], gt_valid,
                                           sweep['entropy'], labelled)
  askable = unlabelled & ~state.skipped  # What a query may pick.

  # 4. Acquisition (only on query iterations).
  is_query = _is_query_iteration(cfg, i, jnp.sum(labelled))
  if cfg.acquisition == 'batchbald':
    def candidate_probs(idx, key):
      return mc_dropout.consistent_probs(
          sweep_fn, params, sharding.gather_rows(mesh, pool.x, idx), key,
          cfg.batchbald_passes, cfg.batchbald_chunk_size)

    def picks():
      return batchbald_picks(cfg, keys['acquire'], sweep['bald'], askable,
                             candidate_probs)
  elif cfg.acquisition in DIVERSE_ACQUISITIONS:
    def picks():
      return diverse_picks(cfg, keys['acquire'], embed_fn, params, pool.x,
                           gt_idx, gt_valid, askable, mesh)
  if cfg.acquisition in GATED_ACQUISITIONS:
    query, query_valid = jax.lax.cond(
        is_query if may_query is None else may_query, picks,
        lambda: no_picks(cfg.query_size))
  else:
    query, query_valid = acquisition_picks(cfg, keys['acquire'], sweep,
                                           askable, theta,
                                           mean_entropy_all)
  query_valid &= is_query

  # 5. Pseudo-labels refresh every iteration; D only grows.
  new_member = refreshed_membership(cfg, member, sweep, theta, labelled)
  if cfg.semi_start > 0:
    new_member &= i + 1 >= cfg.semi_start
  new_labels = jnp.where(labelled, state.labels, sweep['pseudo_label'])

  metrics = iteration_metrics(
      i, test, loss, theta, gt['pseudo_label'], state.labels[gt_idx],
      gt_valid, sweep, labelled, member, pool.y)
  # Stabilizing predictions (Bloodgood & Vijay-Shanker 2009), a sign of
  # progress that needs no labels: how far the pool's predicted classes
  # agree with the previous iteration's (state.labels off X), over what is
  # unlabelled now; MC noise alone keeps it below 1 (README, How far the
  # predictions still move). Iteration 0 has no previous predictions.
  num_classes = jax.eval_shape(apply_fn, params, pool.x[:1], None).shape[-1]
  metrics['pool_kappa'] = jnp.where(
      i > 0, prediction_kappa(state.labels, sweep['pseudo_label'],
                              unlabelled, num_classes), jnp.nan)
  new_state = state.replace(train=train_state, member=new_member,
                            labels=new_labels, iteration=i + 1)
  return new_state, query, query_valid, metrics


def _trained(cfg: LoopConfig, apply_fn: Callable,
             optimizer: optax.GradientTransformation, state: LoopState,
             pool: Pool, key: jax.Array, first_epoch: jax.Array | int,
             num_epochs: jax.Array, mesh: Mesh | None
             ) -> tuple[training.TrainState, jax.Array]:
  """(train state, last epoch's mean loss) after epochs first_epoch ..
  first_epoch + num_epochs - 1 over D (`training.train_epochs`)."""
  return training.train_epochs(
      state.train, optimizer, apply_fn, key, pool.x, state.labels,
      state.labelled, state.member, num_epochs, gt_upsample=cfg.gt_upsample,
      mu=cfg.mu, batch_size=cfg.batch_size, capacity=cfg.train_capacity,
      l2=cfg.l2, mesh=mesh, steps_per_trip=cfg.steps_per_trip,
      first_epoch=first_epoch, augment=cfg.augment)


def initial_block(cfg: LoopConfig, apply_fn: Callable,
                  optimizer: optax.GradientTransformation, state: LoopState,
                  pool: Pool, start: jax.Array, mesh: Mesh | None = None
                  ) -> tuple[LoopState, jax.Array]:
  """One block of the initial phase, before iteration 0 (one seed).

  Trains epochs start .. min(start + initial_block_epochs,
  initial_blocked_epochs) - 1 of iteration 0's M-step with its key, so
  that blocks followed by iteration 0 (which trains the remaining epochs)
  compute what iteration 0 alone would. The iteration counter stays 0.

  Args:
    start: scalar int32, the block's first epoch (traced: every block
      shares one compilation).

  Returns:
    (state, the block's last epoch's mean loss).
  """
  key = _named_keys(cfg, state.key, jnp.int32(0))['train']
  stop = jnp.minimum(start + cfg.initial_block_epochs,
                     cfg.initial_blocked_epochs)
  train_state, loss = _trained(cfg, apply_fn, optimizer, state, pool, key,
                               start, jnp.maximum(stop - start, 0), mesh)
  return state.replace(train=train_state), loss


def reveal(state: LoopState, query: jax.Array, query_valid: jax.Array,
           answers: jax.Array) -> LoopState:
  """The oracle's answers join X (and leave D's pseudo-labelled part).

  Args:
    state: loop state.
    query: [k] int32 pool indices.
    query_valid: [k] bool, which picks are real.
    answers: [k] int32 true labels of the picks; -1 (`oracle.SKIPPED`) for
      one the oracle could not tell, which stays in X' and is never asked
      again.
  """
  answered = query_valid & (answers >= 0)
  labelled = selection.mark(state.labelled, query, answered)
  skipped = selection.mark(state.skipped, query, query_valid & (answers < 0))
  # Invalid picks may repeat a valid one's index (BatchBALD's leftover
  # steps when fewer candidates than k remain), so they are sent out of
  # bounds and dropped rather than written back: a duplicate index must not
  # overwrite the answer with the old label.
  n = state.labels.shape[0]
  labels = state.labels.at[jnp.where(answered, query, n)].set(
      answers, mode='drop')
  return state.replace(labelled=labelled, labels=labels, skipped=skipped,
                       member=state.member & ~labelled)


def corrected(state: LoopState, ids: jax.Array,
              labels: jax.Array) -> LoopState:
  """The state with the labels of samples in X replaced (a person's
  corrections of answers given before); ids not in X are left as they are.

  Args:
    state: loop state.
    ids: [m] int32 pool indices.
    labels: [m] int32 their correct labels.
  """
  mine = state.labelled[ids]
  return state.replace(labels=state.labels.at[ids].set(
      jnp.where(mine, labels, state.labels[ids])))


def iteration(cfg: LoopConfig, apply_fn: Callable,
              optimizer: optax.GradientTransformation, state: LoopState,
              pool: Pool, mesh: Mesh | None = None,
              may_query: jax.Array | None = None,
              init_fn: Callable | None = None,
              embed_fn: Callable | None = None
              ) -> tuple[LoopState, dict]:
  """One full iteration with the simulated oracle (hidden labels in pool.y).

  Returns:
    (state, metrics): the state after `em_step` and `reveal` of the
    oracle's answers; metrics, all scalars: `em_step`'s plus
    'num_queried' (int32, the valid picks).
  """
  state, query, query_valid, metrics = em_step(cfg, apply_fn, optimizer,
                                               state, pool, mesh, may_query,
                                               init_fn, embed_fn)
  metrics['num_queried'] = jnp.sum(query_valid)
  return reveal(state, query, query_valid, pool.y[query]), metrics


def init_state(apply_init: Callable, optimizer: optax.GradientTransformation,
               key_data: jax.Array, prng_impl: str, example_x: jax.Array,
               labelled: jax.Array, labels: jax.Array) -> LoopState:
  """The state of one seed before iteration 0.

  Args:
    apply_init: `init(key, x) -> params`.
    optimizer: the optax transform.
    key_data: raw key data of this seed's root key; it is split once into
      the parameter-init key and the loop key kept in the state.
    prng_impl: PRNG implementation name of `key_data`.
    example_x: [1, ...] an input, for shapes.
    labelled: [N] bool initial ground truth.
    labels: [N] int32 labels (only the labelled entries are used).
  """
  rng_init, rng_loop = jax.random.split(
      jax.random.wrap_key_data(key_data, impl=prng_impl))
  params = apply_init(rng_init, example_x)
  return LoopState(
      train=training.TrainState(params, optimizer.init(params)),
      labelled=labelled, member=jnp.zeros_like(labelled),
      labels=jnp.where(labelled, labels, 0).astype(jnp.int32),
      key=jax.random.key_data(rng_loop), iteration=jnp.int32(0),
      skipped=jnp.zeros_like(labelled))


def any_seed_may_query(cfg: LoopConfig, state: LoopState) -> jax.Array:
  """Whether any seed of a seed-batched state queries this iteration.

  An unbatched scalar bool, computed before the seed vmap: see `em_step`'s
  `may_query`.
  """
  return jnp.any(jax.vmap(
      lambda i, labelled: _is_query_iteration(cfg, i, jnp.sum(labelled)))(
          state.iteration, state.labelled))


def over_seeds(make_fn: Callable[[Mesh | None], Callable],
               mesh: Mesh | None, strategy: str,
               pool_per_seed: bool = False,
               gate_fn: Callable[[LoopState], jax.Array] | None = None
               ) -> Callable:
  """`fn(state, pool)` applied to every seed of a seed-batched state.

  Three layouts, by the mesh's axis sizes:
    * no mesh, or a 1 x 1 mesh: the seeds as one program (`strategy`).
    * 'data' > 1: vmap with `spmd_axis_name='seed'` (or a map if 'seed' is
      1), so the data-parallel parts inside run on [S/s, N/d] blocks.
    * 'seed' > 1 and 'data' = 1: a `shard_map` over 'seed'. Each device runs
      its own S/s seeds (`strategy` again) and talks to no other device until
      the outputs. Why not vmap with the seed axis sharded: a vmapped
      while_loop runs until every seed's condition is false, and with seeds
      on several devices that condition is all-reduced on every trip of the
      training loop, locking the devices into step. On a CPU this layout
      runs seeds in parallel over cores (`config.cpu_devices`).

  Args:
    make_fn: mesh -> one seed's function of (state, pool, may_query); it
      gets the mesh its data-parallel parts should use (None inside the
      shard_map), and `may_query` (see `em_step`): `gate_fn` of the seeds
      it runs with, where they are vmapped, else None.
    mesh: the run's mesh or None.
    strategy: 'vmap' (the seeds as one batched program) or 'map' (a
      `lax.map`: the seeds one after another inside the same program). Why
      'map': on a CPU a convolution batched over S weight sets is a grouped
      convolution, which XLA:CPU runs ~13x slower than S separate ones.
    pool_per_seed: the pool has a leading seed axis too (every seed its own
      data, split over 'seed' like the state, N over 'data').
    gate_fn: seed-batched state -> unbatched scalar bool, or None (then
      `may_query` is always None). Inside a shard_map it sees the device's
      own seeds, so it adds no communication.
  """
  sizes = (sharding.mesh_sizes(mesh) if mesh is not None else
           {sharding.SEED: 1, sharding.DATA: 1})
  seeds, data = sizes[sharding.SEED], sizes[sharding.DATA]
  if data > 1:
    if strategy == 'map' and seeds > 1:
      raise ValueError("strategy 'map' cannot shard seeds over a mesh whose "
                       "'data' axis is > 1")
    return _each_seed(make_fn(mesh), strategy, pool_per_seed, gate_fn,
                      sharding.SEED)
  # One device per seed group: nothing to split the data over.
  local = _each_seed(make_fn(None), strategy, pool_per_seed, gate_fn)
  if seeds == 1:
    return local
  # check_vma off: the loop carries fresh constants (zeros, counters) next to
  # seed-varying values, which the check would ask to pcast one by one. Every
  # output is per seed, so P('seed') is exact.
  pool_spec = P(sharding.SEED) if pool_per_seed else P()
  return jax.shard_map(local, mesh=mesh, in_specs=(P(sharding.SEED), pool_spec),
                       out_specs=P(sharding.SEED), check_vma=False)


def _each_seed(fn: Callable, strategy: str, pool_per_seed: bool,
               gate_fn: Callable[[LoopState], jax.Array] | None = None,
               spmd_axis_name: str | None = None) -> Callable:
  """fn(state, pool, may_query) over the leading seed axis of state (and of
  the pool if `pool_per_seed`), by `strategy`; may_query is `gate_fn` of
  the vmapped seeds (a mapped seed's own condition is a scalar already)."""
  if strategy == 'map':
    if pool_per_seed:
      return lambda state, pool: jax.lax.map(lambda a: fn(*a, None),
                                             (state, pool))
    return lambda state, pool: jax.lax.map(lambda st: fn(st, pool, None),
                                           state)
  batched = jax.vmap(fn, in_axes=(0, 0 if pool_per_seed else None, None),
                     spmd_axis_name=spmd_axis_name)
  return lambda state, pool: batched(
      state, pool, None if gate_fn is None else gate_fn(state))


def seeds_iteration(cfg: LoopConfig, apply_fn: Callable,
                    optimizer: optax.GradientTransformation,
                    mesh: Mesh | None = None, strategy: str = 'vmap',
                    pool_per_seed: bool = False,
                    init_fn: Callable | None = None,
                    embed_fn: Callable | None = None
                    ) -> Callable[[LoopState, Pool], tuple[LoopState, dict]]:
  """`iteration` over a leading seed axis of the state (and of the pool if
  `pool_per_seed`, else the pool is shared); `init_fn` and `embed_fn` as
  `em_step`'s.

  Returns:
    fn(state [S, ...], pool) -> (state [S, ...], metrics dict of [S]).
  """
  def make(m):
    return lambda state, pool, may_query: iteration(
        cfg, apply_fn, optimizer, state, pool, m, may_query, init_fn,
        embed_fn)
  return over_seeds(make, mesh, strategy, pool_per_seed, seeds_gate(cfg))


def seeds_em_step(cfg: LoopConfig, apply_fn: Callable,
                  optimizer: optax.GradientTransformation,
                  mesh: Mesh | None = None, strategy: str = 'vmap',
                  pool_per_seed: bool = False,
                  init_fn: Callable | None = None,
                  embed_fn: Callable | None = None) -> Callable:
  """`em_step` over seeds, for oracles that answer on the host; `init_fn`
  and `embed_fn` as `em_step`'s.

  Returns:
    fn(state [S, ...], pool) -> (state, query [S, k], query_valid [S, k],
    metrics [S]); feed the answers back with `seeds_reveal`.
  """
  def make(m):
    def one(state, pool, may_query):
      state, query, valid, metrics = em_step(cfg, apply_fn, optimizer, state,
                                             pool, m, may_query, init_fn,
                                             embed_fn)
      metrics['num_queried'] = jnp.sum(valid)
      return state, query, valid, metrics
    return one
  return over_seeds(make, mesh, strategy, pool_per_seed, seeds_gate(cfg))


def seeds_initial_block(cfg: LoopConfig, apply_fn: Callable,
                        optimizer: optax.GradientTransformation,
                        mesh: Mesh | None = None, strategy: str = 'vmap',
                        pool_per_seed: bool = False) -> Callable:
  """`initial_block` over seeds.

  Returns:
    fn(state [S, ...], pool, start [S] int32) -> (state, loss [S]). The
    start travels with the state (one per seed, split like it), so every
    layout of `over_seeds` passes it without a case of its own.
  """
  def make(m):
    def one(state_and_start, pool, may_query):
      del may_query  # No acquisition in the initial phase.
      state, start = state_and_start
      return initial_block(cfg, apply_fn, optimizer, state, pool, start, m)
    return one
  fn = over_seeds(make, mesh, strategy, pool_per_seed)
  return lambda state, pool, start: fn((state, start), pool)


def seeds_gate(cfg: LoopConfig) -> Callable[[LoopState], jax.Array] | None:
  """The `gate_fn` of `over_seeds`: only an acquisition that is worth
  skipping on other iterations (`GATED_ACQUISITIONS`) gets one, so every
  other program stays as it was."""
  if cfg.acquisition not in GATED_ACQUISITIONS:
    return None
  return functools.partial(any_seed_may_query, cfg)


seeds_reveal = jax.vmap(reveal)
seeds_corrected = jax.vmap(corrected, in_axes=(0, None, None))
