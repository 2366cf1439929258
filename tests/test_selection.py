"""Membership and acquisition: masks, fixed k, never a labelled pick."""

import jax
import jax.numpy as jnp
import numpy as np

from bass_jax import loop
from bass_jax import selection as sel
from bass_jax import uncertainty

N = 50


def _state(seed=0):
  rng = np.random.default_rng(seed)
  labelled = np.zeros(N, bool)
  labelled[rng.choice(N, 12, replace=False)] = True
  scores = rng.uniform(size=N).astype(np.float32)
  return jnp.asarray(labelled), jnp.asarray(scores)


def test_top_k_golden_and_never_labelled():
  labelled, scores = _state()
  idx, valid = jax.jit(sel.top_k_indices, static_argnums=2)(
      scores, ~labelled, 5)
  expected = [i for i in np.argsort(-np.asarray(scores))
              if not labelled[i]][:5]
  assert list(np.asarray(idx)) == expected
  assert bool(valid.all())


def test_top_k_with_fewer_available_than_k():
  available = jnp.zeros(N, bool).at[jnp.array([3, 7])].set(True)
  idx, valid = sel.top_k_indices(jnp.ones(N), available, 4)
  assert sorted(np.asarray(idx)[np.asarray(valid)]) == [3, 7]
  assert int(valid.sum()) == 2
  marked = sel.mark(jnp.zeros(N, bool), idx, valid)
  assert sorted(np.nonzero(np.asarray(marked))[0]) == [3, 7]


def test_nan_and_minus_inf_scores_rank_last_but_are_picked():
  # lax.top_k ranks NaN first: k NaN scores once filled the query with
  # picks marked invalid, so acquisition silently stopped.
  nan, inf = float('nan'), float('inf')
  scores = jnp.array([0.1, nan, 0.5, -inf, 0.3, nan])
  available = jnp.ones(6, bool).at[2].set(False)
  idx, valid = sel.top_k_indices(scores, available, 3)
  assert list(np.asarray(idx)) == [4, 0, 1] and bool(valid.all())
  idx, valid = sel.top_k_indices(scores, available, 6)
  assert sorted(np.asarray(idx)[np.asarray(valid)]) == [0, 1, 3, 4, 5]
  assert not bool(valid[-1])  # The unavailable one, last and invalid.
  # Sampled: a NaN weight is the lowest too; 2 picks are the 2 numbers.
  idx, valid = sel.sampled_indices(jax.random.key(0), scores.at[3].set(nan),
                                   available, 2, 'softmax', 1.0)
  assert sorted(np.asarray(idx)) == [0, 4] and bool(valid.all())
  # Confident membership: NaN is the least confident, never added first.
  m = sel.top_k_confident_membership(jnp.zeros(6, bool), scores,
                                     jnp.zeros(6, bool), 3)
  assert sorted(np.nonzero(np.asarray(m))[0]) == [0, 3, 4]


def test_random_picks_distinct_available_and_seeded():
  labelled, _ = _state()
  f = jax.jit(sel.random_indices, static_argnums=2)
  idx, valid = f(jax.random.key(0), ~labelled, 10)
  idx = np.asarray(idx)
  assert len(set(idx)) == 10 and not np.asarray(labelled)[idx].any()
  again, _ = f(jax.random.key(0), ~labelled, 10)
  other, _ = f(jax.random.key(1), ~labelled, 10)
  np.testing.assert_array_equal(idx, again)
  assert set(idx) != set(np.asarray(other))


def test_above_average_prefers_uncertain():
  labelled, scores = _state()
  mean = jnp.mean(scores)
  idx, valid = sel.above_average_indices(jax.random.key(2), scores, mean,
                                         ~labelled, 5)
  assert (np.asarray(scores)[np.asarray(idx)] > float(mean)).all()
  assert not np.asarray(labelled)[np.asarray(idx)].any()
  # Uniform among candidates: over many keys every candidate gets picked.
  cand = set(np.nonzero((np.asarray(scores) > float(mean)) &
                        ~np.asarray(labelled))[0])
  seen = set()
  for k in range(40):
    i, _ = sel.above_average_indices(jax.random.key(k), scores, mean,
                                     ~labelled, 5)
    seen |= set(np.asarray(i))
  assert seen == cand


def test_stepwise_membership_grows_and_excludes_labelled():
  labelled, entropy = _state()
  member = jnp.zeros(N, bool)
  m1 = sel.stepwise_membership(member, entropy, jnp.float32(0.3), labelled)
  expected = (np.asarray(entropy) < 0.3) & ~np.asarray(labelled)
  np.testing.assert_array_equal(m1, expected)
  # A later, stricter threshold never removes members.
  m2 = sel.stepwise_membership(m1, entropy, jnp.float32(0.1), labelled)
  np.testing.assert_array_equal(m2, expected)


def test_all_data_and_confident_membership():
  labelled, entropy = _state()
  np.testing.assert_array_equal(sel.all_data_membership(labelled), ~labelled)
  m = sel.top_k_confident_membership(jnp.zeros(N, bool), entropy, labelled, 4)
  chosen = np.nonzero(np.asarray(m))[0]
  expected = [i for i in np.argsort(np.asarray(entropy))
              if not labelled[i]][:4]
  assert sorted(chosen) == sorted(expected)
  m2 = sel.top_k_confident_membership(m, entropy, labelled, 4)
  assert int(m2.sum()) == 8 and bool((m2 | ~m).all())


def test_confident_membership_ranks_by_the_configured_score():
  # Two 3-class predictions that the two rankings order differently:
  # a = [0.6, 0.4, 0.0] has the lower entropy, b = [0.7, 0.15, 0.15] the
  # higher max p (the blog's "most confident").
  probs = jnp.array([[0.6, 0.4, 0.0], [0.7, 0.15, 0.15]])
  entropy = uncertainty.normalized_entropy(probs)
  least_conf = uncertainty.least_confidence(probs)
  assert entropy[0] < entropy[1] and least_conf[1] < least_conf[0]
  sweep = {'entropy': entropy, 'least_confidence': least_conf}
  none, no_labels = jnp.zeros(2, bool), jnp.zeros(2, bool)
  picked = {}
  for score in ('entropy', 'least_confidence'):
    cfg = loop.LoopConfig(semi='confident', confident_k=1,
                          confident_score=score, acquisition='entropy')
    assert score == 'entropy' or score in cfg.score_names
    m = loop.refreshed_membership(cfg, none, sweep, jnp.float32(0.5),
                                  no_labels)
    picked[score] = list(np.nonzero(np.asarray(m))[0])
  assert picked == {'entropy': [0], 'least_confidence': [1]}


def test_theta_and_labelled_slots():
  labelled, entropy = _state()
  idx, valid = sel.labelled_slots(labelled, 20)
  assert int(valid.sum()) == 12
  np.testing.assert_array_equal(np.asarray(idx)[:12],
                                np.nonzero(np.asarray(labelled))[0])
  theta = sel.threshold_theta(entropy[idx], valid)
  np.testing.assert_allclose(theta, np.asarray(entropy)[np.asarray(labelled)]
                             .mean(), rtol=1e-6)
