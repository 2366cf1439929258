"""The M-step: eq. 6's loss over the up-sampled training multiset, jitted.

The training set D is a multiset over the pool: each labelled sample appears
`gt_upsample` times per epoch, each pseudo-labelled member once. An epoch is
ONE compiled function of fixed shapes: D is expanded into a fixed-capacity
slot array, shuffled, and consumed in batches by a `while_loop` whose trip
count is data-dependent, so a growing D never triggers a recompilation.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from bass_jax import augment as augment_lib
from bass_jax import models
from bass_jax import sharding

Params = Any


@flax.struct.dataclass
class TrainState:
  """Parameters and optimizer state; the optax transform itself is static."""
  params: Params
  opt_state: Any


def make_optimizer(learning_rate: float = 1e-3) -> optax.GradientTransformation:
  """Adam with Keras' defaults except epsilon (optax's 1e-8 = Keras 2.0.8's)."""
  return optax.adam(learning_rate)


def l2_penalty(params: Params) -> jax.Array:
  """Sum of squared kernel weights (Keras `kernel_regularizer`, no biases)."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  return sum(jnp.sum(jnp.square(w)) for path, w in leaves
             if models.is_kernel(path))


def weighted_loss(params: Params, apply_fn: Callable, x: jax.Array,
                  y: jax.Array, weight: jax.Array, key: jax.Array,
                  l2: float) -> jax.Array:
  """Eq. 6 on one batch plus the coupled L2 term.

  Args:
    params: model parameters.
    apply_fn: the model's forward pass (dropout on: `key` is given).
    x: [B, ...] inputs.
    y: [B] int32 labels (true or pseudo).
    weight: [B] per-slot weight: 1 for ground truth, mu for a pseudo-label,
      0 for padding slots of the last batch.
    key: dropout key.
    l2: coefficient of the L2 penalty.

  Returns:
    Scalar: sum(weight * CE) / (number of real slots) + l2 * ||kernels||^2,
    i.e. Keras' mean over the (possibly short) last batch.
  """
  logits = apply_fn(params, x, key)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  real = jnp.maximum(jnp.sum(weight > 0), 1)
  return jnp.sum(weight * ce) / real + l2 * l2_penalty(params)


def train_step(state: TrainState, optimizer: optax.GradientTransformation,
               apply_fn: Callable, x: jax.Array, y: jax.Array,
               weight: jax.Array, key: jax.Array, l2: float
               ) -> tuple[TrainState, jax.Array]:
  """One Adam step on one batch; returns (new state, loss).

  x [B, ...], y [B] int32 and weight [B] float32 as for `weighted_loss`;
  the loss is its float32 scalar (L2 term included), before the step.
  """
  loss, grads = jax.value_and_grad(weighted_loss)(state.params, apply_fn, x,
                                                  y, weight, key, l2)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  return TrainState(optax.apply_updates(state.params, updates),
                    opt_state), loss


def slot_counts(labelled: jax.Array, member: jax.Array,
                gt_upsample: int) -> jax.Array:
  """Copies of each pool sample in the multiset D: [N] int32 in {0, 1, up}.

  labelled [N] bool (gt_upsample copies each), member [N] bool (one each).
  """
  return jnp.where(labelled, gt_upsample, member.astype(jnp.int32)).astype(
      jnp.int32)


# Mantissa bits of a float32 from `jax.random.uniform`: its draws in [0, 1)
# are exact multiples of 2**-23, so `u * 2**23` is an integer key.
_UNIFORM_BITS = 23


def stable_argsort_u32(keys: jax.Array, key_bits: int,
                       digit_sorts: bool | None = None) -> jax.Array:
  """`jnp.argsort(keys, stable=True)` of [n] uint32 keys < 2**key_bits.

  Returns [n] int32: ascending keys, equal keys in index order. On a CPU it
  runs as a few sorts of single uint32 words, least significant digit first:
  each sorts (digit << p) | rank, where rank (p bits) is the position in the
  order so far, so every pass is stable and the final order is by (key,
  index). Why: XLA:CPU sorts one uint32 operand with a fast native path
  and a (key, index) pair through a compiled comparator, ~8x slower (2,816
  slots: 106 vs 875 us); the epoch shuffle was ~20% of a toy MLP epoch.
  Elsewhere (GPU/TPU sorts pairs natively) it is one pair sort;
  `digit_sorts` forces one way (None: by the default backend).
  """
  n = keys.shape[-1]
  p = max(1, (n - 1).bit_length())  # Bits of a rank in [0, n).
  digit_bits = 32 - p
  if digit_sorts is None:
    digit_sorts = jax.default_backend() == 'cpu'
  if not digit_sorts or digit_bits < 8:
    iota = jnp.arange(n, dtype=jnp.int32)
    return jax.lax.sort((keys, iota), num_keys=1, is_stable=True)[1]
  rank_mask = jnp.uint32((1 << p) - 1)
  ranks = jnp.arange(n, dtype=jnp.uint32)
  order = None  # The identity before the first pass.
  for shift in range(0, key_bits, digit_bits):
    in_order = keys if order is None else keys[order]
    digit = (in_order >> shift) & jnp.uint32((1 << digit_bits) - 1)
    moved = (jnp.sort((digit << p) | ranks) & rank_mask).astype(jnp.int32)
    order = moved if order is None else order[moved]
  return order


def shuffled_slots(key: jax.Array, counts: jax.Array,
                   capacity: int) -> tuple[jax.Array, jax.Array]:
  """A uniformly shuffled listing of the multiset given by `counts`.

  Args:
    key: PRNG key of this epoch.
    counts: [N] int32 copies per sample.
    capacity: static slot count, at least sum(counts).

  Returns:
    (samples [capacity] int32, total int32 scalar = sum(counts)): the
    first `total` entries list every sample counts[i] times in random
    order; the rest are padding.
  """
  ends = jnp.cumsum(counts)
  total = ends[-1]
  slots = jnp.arange(capacity, dtype=jnp.int32)
  owner = jnp.searchsorted(ends, slots, side='right').astype(jnp.int32)
  # Slot s sorts by a uniform draw (padding last, at 2**23): the order of
  # argsort(uniform) with padding at 2.0, computed on integer keys.
  draw = jax.random.uniform(key, (capacity,)) * (1 << _UNIFORM_BITS)
  sort_key = jnp.where(slots < total, draw.astype(jnp.uint32),
                       jnp.uint32(1 << _UNIFORM_BITS))
  order = stable_argsort_u32(sort_key, _UNIFORM_BITS + 1)
  return jnp.minimum(owner[order], counts.shape[0] - 1), total


def train_epochs(state: TrainState, optimizer: optax.GradientTransformation,
                 apply_fn: Callable, key: jax.Array, x: jax.Array,
                 labels: jax.Array, labelled: jax.Array, member: jax.Array,
                 num_epochs: jax.Array, *, gt_upsample: int, mu: float,
                 batch_size: int, capacity: int, l2: float,
                 mesh: jax.sharding.Mesh | None = None,
                 steps_per_trip: int = 1,
                 first_epoch: jax.Array | int = 0,
                 augment: augment_lib.Augment = augment_lib.Augment()
                 ) -> tuple[TrainState, jax.Array]:
  """`num_epochs` shuffled epochs over D, as one compiled loop.

  Args:
    state: parameters and optimizer state.
    optimizer: the optax transform.
    apply_fn: the model's forward pass.
    key: PRNG key; epoch e uses fold_in(key, e), its step s fold_in(., s).
    x: [N, ...] pool inputs.
    labels: [N] int32 training labels (true where labelled, else pseudo).
    labelled: [N] bool ground-truth set X.
    member: [N] bool pseudo-labelled members of D.
    num_epochs: scalar int32 (traced: the initial phase and later
      iterations share one compilation).
    gt_upsample: copies of each labelled sample per epoch.
    mu: weight of a pseudo-labelled sample's loss (eq. 6).
    batch_size: samples per step.
    capacity: static bound on |D| with up-sampling.
    l2: L2 coefficient.
    mesh: the run's mesh, x split over its 'data' axis, or None. Each
      batch [B, ...] is then gathered from the devices holding its rows and
      split over 'data': every device runs forward and backward on its B/D
      rows and XLA all-reduces the gradients.
    steps_per_trip: optimizer steps per trip of the epoch's while_loop.
      The loop's trip count depends on |D|, so a GPU reads its condition
      back to the host every trip; k steps a trip read it 1/k as often. Steps
      past the epoch's end (at most k - 1) are computed and discarded, so
      the result is the same for every k: speed only.
    first_epoch: the first epoch's index e (scalar int32, may be traced):
      epochs first_epoch .. first_epoch + num_epochs - 1 run, so a phase
      split over several calls trains exactly as one call would.
    augment: the random shifts and flips each batch [B, H, W, C] goes
      through before its step (`augment.augmented`, drawn from the step's
      key); inactive (the default): none.

  Returns:
    (new state, mean loss of the last epoch; 0 if no epoch ran).
  """
  counts = slot_counts(labelled, member, gt_upsample)
  weight_of = jnp.where(labelled, 1.0, mu)

  def epoch(e, carry):
    state, _ = carry
    epoch_key = jax.random.fold_in(key, e)
    # The shuffle's draw for slot b and step b's dropout key both come from
    # threefry(epoch_key, b) (partitionable threefry). The only link: that
    # draw places one of the epoch's samples, while step b's masks are the
    # key hashed again per element, so no usable correlation. Kept as is:
    # splitting the key would change every recorded run.
    samples, total = shuffled_slots(epoch_key, counts, capacity)
    num_batches = (total + batch_size - 1) // batch_size

    def step(b, state):
      pos = b * batch_size + jnp.arange(batch_size)
      # Past the end (a discarded step of a trip) the slice start clamps.
      idx = jax.lax.dynamic_slice(samples, (b * batch_size,), (batch_size,))
      weight = jnp.where(pos < total, weight_of[idx], 0.0)
      xb = sharding.gather_rows(mesh, x, idx)
      if mesh is not None:
        xb = jax.lax.with_sharding_constraint(xb,
                                              sharding.data_sharding(mesh))
      step_key = jax.random.fold_in(epoch_key, b)
      xb = augment_lib.augmented(xb, step_key, augment)
      return train_step(state, optimizer, apply_fn, xb, labels[idx], weight,
                        step_key, l2)

    def trip(c):
      b, state, loss_sum = c
      # The trip's condition covers its first step; the rest (unrolled: no
      # inner loop) may fall past the epoch's end and are then discarded.
      state, loss = step(b, state)
      loss_sum = loss_sum + loss
      for j in range(1, steps_per_trip):
        new_state, loss = step(b + j, state)
        valid = b + j < num_batches
        state = jax.tree_util.tree_map(
            lambda new, old, valid=valid: jnp.where(valid, new, old),
            new_state, state)
        loss_sum = loss_sum + jnp.where(valid, loss, 0.0)
      return b + steps_per_trip, state, loss_sum

    _, state, loss_sum = jax.lax.while_loop(
        lambda c: c[0] < num_batches, trip,
        (jnp.int32(0), state, jnp.float32(0.0)))
    return state, loss_sum / jnp.maximum(num_batches, 1)

  return jax.lax.fori_loop(first_epoch, first_epoch + num_epochs, epoch,
                           (state, jnp.float32(0.0)))


def multiset_capacity(pool_size: int, max_labels: int, gt_upsample: int,
                      semi_supervised: bool, batch_size: int) -> int:
  """Static slot count for D: every label up-sampled plus (maybe) the pool.

  Rounded up to whole batches so the last batch's slice stays in bounds.
  """
  cap = gt_upsample * max_labels + (pool_size if semi_supervised else 0)
  return -(-cap // batch_size) * batch_size
