"""Pseudo-label membership and acquisition over boolean masks, jittable.

All functions take and return fixed-shape arrays over the whole pool [N]:
masks instead of index lists, a static `k` for every top-k, so they compile
once and run inside the loop without host round trips.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy

NEG_INF = -jnp.inf


def threshold_theta(gt_entropy: jax.Array, gt_valid: jax.Array) -> jax.Array:
  """Eq. 8: theta, the mean normalized entropy over the labelled samples.

  Args:
    gt_entropy: [L] entropy of the labelled samples (MC, T passes).
    gt_valid: [L] bool, which of the L slots hold a labelled sample.

  Returns:
    Scalar theta.
  """
  return jnp.sum(jnp.where(gt_valid, gt_entropy, 0.0)) / jnp.maximum(
      jnp.sum(gt_valid), 1)


def stepwise_membership(member: jax.Array, entropy: jax.Array,
                        theta: jax.Array, labelled: jax.Array) -> jax.Array:
  """Eq. 8 step-wise: unlabelled samples with H < theta join D, and stay.

  Args:
    member: [N] bool, current pseudo-labelled members of D.
    entropy: [N] normalized entropy (T' passes).
    theta: scalar threshold.
    labelled: [N] bool.

  Returns:
    [N] bool, the grown membership (never shrinks; labelled excluded).
  """
  return (member | (entropy < theta)) & ~labelled


def all_data_membership(labelled: jax.Array) -> jax.Array:
  """'All data' (theta = 1): every unlabelled pool sample is in D.

  labelled [N] bool -> [N] bool.
  """
  return ~labelled


def top_k_confident_membership(member: jax.Array, scores: jax.Array,
                               labelled: jax.Array, k: int) -> jax.Array:
  """Adds the k most confident (lowest score) unlabelled non-members to D.

  Auto-labelling: the blog ranks by the max softmax (the score
  'least_confidence' = 1 - max p), Wang et al.'s CEAL by entropy;
  membership grows by exactly min(k, available) per call.

  Args:
    member: [N] bool.
    scores: [N] uncertainty scores, higher = more uncertain (normalized
      entropy or any of `uncertainty.SCORE_NAMES`).
    labelled: [N] bool.
    k: static number of samples to add.

  Returns:
    [N] bool.
  """
  available = ~labelled & ~member
  # NaN, as -NaN, ranks as the least confident.
  values, idx = jax.lax.top_k(_priority(-scores, available), k)
  added = jnp.zeros_like(member).at[idx].set(values > NEG_INF)
  return (member | added) & ~labelled


def top_k_indices(scores: jax.Array, available: jax.Array,
                  k: int) -> tuple[jax.Array, jax.Array]:
  """The k available samples with the highest score ("max entropy" & co).

  Args:
    scores: [N] uncertainty scores, higher = more uncertain.
    available: [N] bool, samples that may be picked (unlabelled pool).
    k: static number of picks.

  Returns:
    (indices [k] int32, valid [k] bool): `valid` is False for picks beyond
    the number of available samples, which must then be ignored.
  """
  values, idx = jax.lax.top_k(_priority(scores, available), k)
  return idx.astype(jnp.int32), values > NEG_INF


def _priority(scores: jax.Array, available: jax.Array) -> jax.Array:
  """[N] scores as a top k ranks them: NaN and -inf as the lowest number
  (picked last, but picked: lax.top_k ranks NaN first, and a NaN pick once
  counted as no pick, so a score of NaNs silently stopped acquisition),
  unavailable samples as -inf (below every available one)."""
  lowest = jnp.finfo(scores.dtype).min
  ranked = jnp.where(jnp.isnan(scores), lowest, jnp.maximum(scores, lowest))
  return jnp.where(available, ranked, NEG_INF)


# Stochastic batch acquisition (Kirsch et al., "Stochastic Batch
# Acquisition: A Simple Baseline for Deep Active Learning", TMLR 2023): the
# k picks are drawn without replacement with probability proportional to a
# weight of the score instead of being its top k, so that a batch does not
# spend all its labels on near-duplicates of one uncertain region.
SAMPLINGS = ('power', 'softmax', 'softrank')
# The smallest normal float32: a score of 0 (or a float error below it, e.g.
# a BALD of -1e-8) gets a tiny weight instead of log 0 = -inf, so it can
# still be picked once nothing else is left, as a top-k pick would be.
_TINY = float(jnp.finfo(jnp.float32).tiny)


def sampling_log_weights(scores: jax.Array, available: jax.Array,
                         sampling: str, beta: float) -> jax.Array:
  """Log of the unnormalized pick probability of every pool sample.

  Args:
    scores: [N] uncertainty scores, higher = more uncertain.
    available: [N] bool; the ranks of 'softrank' count available samples
      only.
    sampling: 'power' (p ~ score^beta), 'softmax' (p ~ exp(beta * score))
      or 'softrank' (p ~ rank^-beta, rank 1 = the highest available score;
      equal scores take consecutive ranks in index order, not their mean).
    beta: coldness; beta -> inf is top-k, beta = 0 is uniform.

  Returns:
    [N] float32 log-weights (finite; unavailable samples are masked later).
  """
  scores = scores.astype(jnp.float32)
  if sampling == 'power':
    return beta * jnp.log(jnp.maximum(scores, _TINY))
  if sampling == 'softmax':
    return beta * scores
  if sampling == 'softrank':
    order = jnp.argsort(-jnp.where(available, scores, NEG_INF))
    rank = jnp.zeros(scores.shape, jnp.float32).at[order].set(
        jnp.arange(1, scores.shape[0] + 1, dtype=jnp.float32))
    return -beta * jnp.log(rank)
  raise ValueError(f'unknown sampling {sampling!r}; one of {SAMPLINGS}')


def sampled_indices(key: jax.Array, scores: jax.Array, available: jax.Array,
                    k: int, sampling: str, beta: float
                    ) -> tuple[jax.Array, jax.Array]:
  """k distinct available samples drawn in proportion to a score's weight.

  Gumbel-top-k: the top k of log-weight + Gumbel noise are a draw of k
  without replacement, each next pick with probability proportional to
  its weight among the samples not yet picked (Plackett-Luce).

  Args:
    key: PRNG key.
    scores: [N] uncertainty scores, higher = more uncertain.
    available: [N] bool.
    k: static number of picks.
    sampling, beta: see `sampling_log_weights`.

  Returns:
    (indices [k] int32, valid [k] bool) as in `top_k_indices`.
  """
  log_w = sampling_log_weights(scores, available, sampling, beta)
  return top_k_indices(log_w + jax.random.gumbel(key, scores.shape),
                       available, k)


def split_acquisition(name: str) -> tuple[str, str]:
  """('top_k' or a sampling of `SAMPLINGS`, the score) of an acquisition.

  'bald' -> ('top_k', 'bald'); 'power_bald' -> ('power', 'bald'). Names
  without a sampling prefix ('random', 'above_average', ...) come back
  as ('top_k', name).
  """
  prefix, _, rest = name.partition('_')
  if prefix in SAMPLINGS and rest:
    return prefix, rest
  return 'top_k', name


def random_indices(key: jax.Array, available: jax.Array, k: int,
                   preferred: jax.Array | None = None
                   ) -> tuple[jax.Array, jax.Array]:
  """k distinct available samples uniformly at random (preferred ones first).

  Args:
    key: PRNG key.
    available: [N] bool.
    k: static number of picks.
    preferred: [N] bool or None: picks are uniform among available &
      preferred; only if there are fewer than k of those are the remaining
      picks drawn uniformly from the other available samples.

  Returns:
    (indices [k] int32, valid [k] bool) as in `top_k_indices`.
  """
  u = jax.random.uniform(key, available.shape)
  if preferred is not None:
    u = u + jnp.where(preferred, 1.0, 0.0)
  return top_k_indices(u, available, k)


def above_average_indices(key: jax.Array, entropy: jax.Array,
                          mean_entropy: jax.Array, available: jax.Array,
                          k: int) -> tuple[jax.Array, jax.Array]:
  """Eq. 14: random picks among available samples with H above `mean_entropy`.

  The paper's mean is over X u X'; the original code's variant passes theta.

  Args:
    key: PRNG key.
    entropy: [N] normalized entropy.
    mean_entropy: scalar, the bar.
    available: [N] bool.
    k: static number of picks.

  Returns:
    (indices [k] int32, valid [k] bool) as in `random_indices`, those
    above the bar preferred.
  """
  return random_indices(key, available, k, preferred=entropy > mean_entropy)


def mark(mask: jax.Array, indices: jax.Array, valid: jax.Array) -> jax.Array:
  """Sets mask[indices[j]] = True for the valid picks j; [N] bool.

  Args:
    mask: [N] bool.
    indices: [k] int32 pool indices.
    valid: [k] bool, which picks are real.
  """
  return mask.at[indices].max(valid)


def labelled_slots(labelled: jax.Array,
                   capacity: int) -> tuple[jax.Array, jax.Array]:
  """Indices of the labelled samples in a fixed-size buffer.

  Args:
    labelled: [N] bool.
    capacity: static buffer size L, at least the number of labels ever
      held.

  Returns:
    (indices [L] int32, valid [L] bool): the label slots.
  """
  idx = jnp.nonzero(labelled, size=capacity, fill_value=0)[0].astype(
      jnp.int32)
  valid = jnp.arange(capacity) < jnp.sum(labelled)
  return idx, valid


def joint_entropies(log_q: jax.Array, log_scale: jax.Array,
                    probs: jax.Array) -> jax.Array:
  """H(y_1..y_{n-1}, y_m) of every candidate m, from sampled configurations.

  The R configurations s of the labels already picked were drawn from their
  MC mixture p(y_1..y_{n-1}) = mean_t prod_i p_t(y_i); `q[s, t]` = prod_i
  p_t(y_i^s) up to the factor exp(log_scale[s]). With p(s, c) = mean_t
  q[s, t] p_t(c | x_m), the estimate is
  H = -mean_s sum_c p(s, c) / p(s) log p(s, c) (exact for n = 1, where
  every s is the empty configuration: the entropy of the MC mean).

  Args:
    log_q: [R, T] log of q / exp(log_scale) (rows peak at 0, so q's
      products of many probabilities do not underflow).
    log_scale: [R] log of each row's scale.
    probs: [M, T, C] softmax samples of the candidates, pass t one network
      for all of them (consistent dropout).

  Returns:
    [M] joint entropies in nats.
  """
  q = jnp.exp(log_q)
  t = probs.shape[1]
  joint = jnp.einsum('st,mtc->msc', q, probs) / t       # p(s, c) / scale
  marginal = jnp.mean(q, axis=1)                          # p(s) / scale
  # sum_c p(s, c) log p(s, c) / p(s), with sum_c p(s, c) = p(s) carrying
  # the scale's log out of the sum.
  per_config = (jnp.sum(xlogy(joint, joint), axis=-1) / marginal +
                log_scale)
  return -jnp.mean(per_config, axis=-1)


def batchbald_indices(key: jax.Array, probs: jax.Array, valid: jax.Array,
                      k: int, num_configs: int
                      ) -> tuple[jax.Array, jax.Array]:
  """Greedy BatchBALD (Kirsch, van Amersfoort, Gal, NeurIPS 2019).

  Pick n maximizes I(y_1..y_n; w) - I(y_1..y_{n-1}; w), i.e. (up to terms
  that do not depend on the candidate) the joint entropy
  H(y_1..y_{n-1}, y) minus the candidate's expected entropy
  mean_t H(p_t(y)): a point whose label the batch already tells adds
  little, so a batch of near-duplicates scores low where top-k BALD takes
  them all. The joint entropy is estimated from `num_configs` label
  configurations of the picks so far, each drawn from one pass t (the
  greedy step n draws y_n^s ~ p_{t_s}(. | x_pick) for every s).

  Args:
    key: PRNG key.
    probs: [M, T, C] softmax samples of M candidates with consistent
      dropout (pass t is one network for every candidate; see
      `mc_dropout.consistent_probs`).
    valid: [M] bool, which candidates may be picked.
    k: static number of picks.
    num_configs: static number R of sampled label configurations.

  Returns:
    (indices [k] int32 into M, valid [k] bool) as in `top_k_indices`.
  """
  probs = probs.astype(jnp.float32)
  m, t, _ = probs.shape
  expected = -jnp.mean(jnp.sum(xlogy(probs, probs), axis=-1), axis=-1)  # [M]
  key_t, key_y = jax.random.split(key)
  passes = jax.random.randint(key_t, (num_configs,), 0, t)           # t_s
  step_keys = jax.random.split(key_y, k)

  def step(carry, step_key):
    log_q, log_scale, taken = carry
    score = joint_entropies(log_q, log_scale, probs) - expected
    score = jnp.where(valid & ~taken, score, NEG_INF)
    pick = jnp.argmax(score).astype(jnp.int32)
    ok = score[pick] > NEG_INF
    # Every configuration s gets a label of the pick from its own pass.
    p_pick = probs[pick]                                             # [T, C]
    labels = jax.random.categorical(
        step_key, jnp.log(p_pick[passes]), axis=-1)                  # [R]
    factor = p_pick[:, labels].T                                     # [R, T]
    log_q = log_q + jnp.log(factor)  # -inf where a pass rules s out.
    # Rows rescaled to peak at 1 (their scale moves to log_scale), so
    # products of many probabilities do not underflow.
    peak = jnp.max(log_q, axis=1)
    log_q, log_scale = log_q - peak[:, None], log_scale + peak
    return (log_q, log_scale, taken.at[pick].set(True)), (pick, ok)

  init = (jnp.zeros((num_configs, t)), jnp.zeros(num_configs),
          jnp.zeros(m, bool))
  _, (picks, ok) = jax.lax.scan(step, init, step_keys)
  return picks, ok & valid[picks]


# Diversity acquisitions: a batch spread over an embedding of the pool
# instead of its k most uncertain samples, which on a redundant pool are
# often near-copies of one another.


def nearest_center_sq_dists(features: jax.Array, centers: jax.Array,
                            center_valid: jax.Array) -> jax.Array:
  """Squared distance of every row to its nearest valid center.

  Args:
    features: [B, D].
    centers: [L, D].
    center_valid: [L] bool, which centers count.

  Returns:
    [B], +inf where no center is valid.
  """
  features = features.astype(jnp.float32)
  centers = centers.astype(jnp.float32)
  # |f|^2 + |c|^2 - 2 f.c: a matmul instead of a [B, L, D] difference;
  # full precision, since TF32 would round the cross term to 1e-3.
  cross = jnp.dot(features, centers.T, precision=jax.lax.Precision.HIGHEST)
  d2 = (jnp.sum(features**2, axis=1)[:, None] +
        jnp.sum(centers**2, axis=1)[None, :] - 2 * cross)
  d2 = jnp.where(center_valid[None, :], jnp.maximum(d2, 0.0), jnp.inf)
  return jnp.min(d2, axis=1)


def k_center_greedy_indices(nearest_d2: jax.Array, available: jax.Array,
                            k: int, sq_dists_to) -> tuple[jax.Array,
                                                          jax.Array]:
  """Core-set's greedy k-center picks (Sener and Savarese, ICLR 2018).

  Each pick is the available sample farthest from its nearest center (the
  labelled samples, then the picks so far too): the batch that best
  covers the pool, a 2-approximation of the minimax cover.

  Args:
    nearest_d2: [N] squared distance of each sample to its nearest
      labelled sample (+inf where none is labelled yet; the first pick is
      then the first available sample).
    available: [N] bool, the samples a pick may be.
    k: static number of picks.
    sq_dists_to: pool index (int32 scalar) -> [N] squared distances of
      every sample to that one.

  Returns:
    (indices [k] int32, valid [k] bool) as in `top_k_indices`.
  """
  def step(carry, _):
    d2, allowed = carry
    pick = jnp.argmax(jnp.where(allowed, d2, NEG_INF)).astype(jnp.int32)
    ok = allowed[pick]
    d2 = jnp.where(ok, jnp.minimum(d2, sq_dists_to(pick)), d2)
    return (d2, allowed.at[pick].set(False)), (pick, ok)

  _, (picks, ok) = jax.lax.scan(step, (nearest_d2, available), None, k)
  return picks, ok


def kmeans_pp_indices(key: jax.Array, norms_sq: jax.Array,
                      available: jax.Array, k: int,
                      sq_dists_to) -> tuple[jax.Array, jax.Array]:
  """k-means++ seeding over the available samples, as BADGE picks (Ash et
  al., ICLR 2020): the largest-norm sample first, then each next one drawn
  with probability proportional to its squared distance to the nearest
  pick so far (samples at distance 0, copies of a pick, are never drawn).

  Args:
    key: PRNG key.
    norms_sq: [N] squared norm of each sample's embedding.
    available: [N] bool.
    k: static number of picks.
    sq_dists_to: pool index (int32 scalar) -> [N] squared distances.

  Returns:
    (indices [k] int32, valid [k] bool) as in `top_k_indices`.
  """
  first = jnp.argmax(jnp.where(available, norms_sq, NEG_INF)).astype(
      jnp.int32)
  first_ok = available[first]
  allowed = available.at[first].set(False)

  def step(carry, step_key):
    d2, allowed = carry
    log_w = jnp.where(allowed & (d2 > 0), jnp.log(d2), NEG_INF)
    pick = jax.random.categorical(step_key, log_w).astype(jnp.int32)
    ok = log_w[pick] > NEG_INF
    d2 = jnp.where(ok, jnp.minimum(d2, sq_dists_to(pick)), d2)
    return (d2, allowed.at[pick].set(allowed[pick] & ~ok)), (pick, ok)

  # Before the first pick counts, no sample has a distance to draw by.
  d2 = jnp.where(first_ok, sq_dists_to(first), 0.0)
  _, (picks, ok) = jax.lax.scan(step, (d2, allowed),
                                jax.random.split(key, k - 1))
  return (jnp.concatenate([first[None], picks]),
          jnp.concatenate([first_ok[None], ok]))


def gradient_embedding_sq_dists(a: jax.Array, h: jax.Array, a_c: jax.Array,
                                h_c: jax.Array) -> jax.Array:
  """Squared distances between BADGE's gradient embeddings, never built.

  BADGE embeds sample i by the gradient of its loss at its own predicted
  label w.r.t. the last layer's weights, g_i = a_i (x) h_i with
  a_i = p_i - onehot(argmax p_i) [C] and h_i the last layer's input [D]:
  C x D numbers per sample. Since <g_i, g_j> = <a_i, a_j> <h_i, h_j>,
  |g_i - g_c|^2 = |a_i|^2 |h_i|^2 + |a_c|^2 |h_c|^2 - 2 <a_i, a_c> <h_i, h_c>
  costs C + D per sample instead.

  Args:
    a: [N, C] `gradient_factor` of the softmax outputs.
    h: [N, D] float32, the last dense layer's inputs.
    a_c: [C], h_c: [D]: those of the center.

  Returns:
    [N] squared distances (>= 0).
  """
  d2 = (jnp.sum(a * a, -1) * jnp.sum(h * h, -1) +
        jnp.sum(a_c * a_c) * jnp.sum(h_c * h_c) -
        2 * jnp.sum(a * a_c, -1) * jnp.sum(h * h_c, -1))
  return jnp.maximum(d2, 0.0)


def gradient_factor(probs: jax.Array) -> jax.Array:
  """a = p - onehot(argmax p): [N, C] -> [N, C] float32 (see
  `gradient_embedding_sq_dists`)."""
  probs = probs.astype(jnp.float32)
  return probs - jax.nn.one_hot(jnp.argmax(probs, -1), probs.shape[-1])
