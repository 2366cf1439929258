"""Stochastic batch acquisition: power / softmax / softrank picks.

Golden log-weights, the Plackett-Luce law of the Gumbel-top-k draw (checked
against exact enumeration), the top-k limit of a cold beta, and the picks'
guarantees: distinct, available only, seeded.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bass_jax import config_checks
from bass_jax import loop
from bass_jax import selection as sel
from bass_jax.errors import ConfigError
from configs import yinyang

TINY = np.finfo(np.float32).tiny


def test_split_acquisition_names():
  assert sel.split_acquisition('bald') == ('top_k', 'bald')
  assert sel.split_acquisition('power_bald') == ('power', 'bald')
  assert sel.split_acquisition('softrank_least_confidence') == (
      'softrank', 'least_confidence')
  assert sel.split_acquisition('softmax_mean_std') == ('softmax', 'mean_std')
  assert sel.split_acquisition('least_confidence') == ('top_k',
                                                       'least_confidence')
  assert sel.split_acquisition('above_average') == ('top_k', 'above_average')


def test_log_weights_golden():
  scores = jnp.array([0.5, 0.0, 0.25, 1.0])
  available = jnp.array([True, True, False, True])
  lw = lambda s: np.asarray(sel.sampling_log_weights(scores, available, s,
                                                     2.0))
  np.testing.assert_allclose(lw('power'),
                             2 * np.log([0.5, TINY, 0.25, 1.0]), rtol=1e-6)
  np.testing.assert_allclose(lw('softmax'), [1.0, 0.0, 0.5, 2.0])
  # Ranks among the available: 1.0 -> 1, 0.5 -> 2, 0.0 -> 3; the
  # unavailable sample ranks after them.
  np.testing.assert_allclose(lw('softrank'), -2 * np.log([2, 3, 4, 1]),
                             rtol=1e-6)
  with pytest.raises(ValueError, match='unknown sampling'):
    sel.sampling_log_weights(scores, available, 'gumbel', 1.0)


def _pick_frequencies(scores, available, k, sampling, beta, draws):
  """[N] inclusion frequency and [draws, k] picks over `draws` fixed keys."""
  keys = jax.random.split(jax.random.key(123), draws)
  idx, valid = jax.jit(jax.vmap(
      lambda key: sel.sampled_indices(key, scores, available, k, sampling,
                                      beta)))(keys)
  assert bool(valid.all())
  idx = np.asarray(idx)
  return np.bincount(idx.ravel(), minlength=scores.shape[0]) / draws, idx


def _plackett_luce_inclusion(w, k):
  """Exact P(sample m among k draws without replacement, prob ~ w)."""
  incl = np.zeros(len(w))
  for seq in itertools.permutations(range(len(w)), k):
    p, left = 1.0, w.sum()
    for i in seq:
      p *= w[i] / left
      left -= w[i]
    incl[list(seq)] += p
  return incl


@pytest.mark.parametrize('sampling,beta', [('power', 1.0), ('power', 2.0),
                                           ('softmax', 3.0),
                                           ('softrank', 1.0)])
def test_draws_follow_plackett_luce(sampling, beta):
  scores = jnp.array([0.1, 0.4, 0.2, 0.9, 0.3, 0.6])
  available = jnp.array([True, True, True, False, True, True])
  w = np.exp(np.asarray(sel.sampling_log_weights(scores, available,
                                                 sampling, beta),
                        np.float64)) * np.asarray(available)
  draws = 20_000
  for k in (1, 2):
    freq, idx = _pick_frequencies(scores, available, k, sampling, beta,
                                  draws)
    expected = _plackett_luce_inclusion(w, k)
    # Binomial standard error <= 0.0036 at 20,000 draws: 4 of them.
    np.testing.assert_allclose(freq, expected, atol=0.015)
    assert freq[3] == 0  # Never the unavailable one.
    if k == 2:
      assert (idx[:, 0] != idx[:, 1]).all()
  if sampling == 'power' and beta == 1.0:
    # k = 1: probability proportional to the score itself.
    freq, _ = _pick_frequencies(scores, available, 1, sampling, beta, draws)
    p = np.where(np.asarray(available), np.asarray(scores), 0)
    np.testing.assert_allclose(freq, p / p.sum(), atol=0.015)


def test_cold_beta_is_top_k_and_zero_beta_uniform():
  rng = np.random.default_rng(0)
  scores = jnp.asarray(rng.uniform(size=40).astype(np.float32))
  available = jnp.asarray(rng.uniform(size=40) > 0.3)
  top, _ = sel.top_k_indices(scores, available, 5)
  for sampling in sel.SAMPLINGS:
    for seed in range(5):
      idx, valid = sel.sampled_indices(jax.random.key(seed), scores,
                                       available, 5, sampling, 1e4)
      assert bool(valid.all())
      assert sorted(np.asarray(idx)) == sorted(np.asarray(top))
  freq, _ = _pick_frequencies(scores, available, 1, 'power', 0.0, 20_000)
  n_avail = int(available.sum())
  np.testing.assert_allclose(freq[np.asarray(available)], 1 / n_avail,
                             atol=0.015)


def test_zero_scores_still_picked_when_nothing_else_is_left():
  scores = jnp.array([0.0, -1e-8, 0.7, 0.0, 0.2])  # BALD can dip below 0.
  available = jnp.array([True, True, False, False, False])
  idx, valid = sel.sampled_indices(jax.random.key(0), scores, available, 3,
                                   'power', 1.0)
  picked = sorted(np.asarray(idx)[np.asarray(valid)])
  assert picked == [0, 1] and int(valid.sum()) == 2


def test_same_key_same_picks_other_key_other_picks():
  rng = np.random.default_rng(1)
  scores = jnp.asarray(rng.uniform(size=200).astype(np.float32))
  available = jnp.ones(200, bool)
  f = jax.jit(sel.sampled_indices, static_argnums=(3, 4, 5))
  a, _ = f(jax.random.key(7), scores, available, 10, 'power', 1.0)
  b, _ = f(jax.random.key(7), scores, available, 10, 'power', 1.0)
  c, _ = f(jax.random.key(8), scores, available, 10, 'power', 1.0)
  np.testing.assert_array_equal(a, b)
  assert set(np.asarray(a)) != set(np.asarray(c))


def test_loop_picks_with_a_sampled_acquisition():
  rng = np.random.default_rng(2)
  sweep = {'entropy': jnp.asarray(rng.uniform(size=30), jnp.float32),
           'bald': jnp.asarray(rng.uniform(size=30), jnp.float32)}
  available = jnp.asarray(rng.uniform(size=30) > 0.2)
  cfg = loop.LoopConfig(acquisition='power_bald', acquisition_beta=1.0,
                        query_size=4)
  assert cfg.score_names == ('bald',)
  args = (sweep, available, jnp.float32(0.5), jnp.float32(0.5))
  idx, valid = loop.acquisition_picks(cfg, jax.random.key(3), *args)
  expected, _ = sel.sampled_indices(jax.random.key(3), sweep['bald'],
                                    available, 4, 'power', 1.0)
  np.testing.assert_array_equal(idx, expected)
  assert bool(valid.all()) and bool(available[idx].all())
  top = loop.LoopConfig(acquisition='bald', query_size=4)
  idx_top, _ = loop.acquisition_picks(top, jax.random.key(3), *args)
  expected_top, _ = sel.top_k_indices(sweep['bald'], available, 4)
  np.testing.assert_array_equal(idx_top, expected_top)


def test_config_accepts_sampled_names_and_refuses_others():
  config = yinyang.get_config('active')
  config.acquisition = 'softrank_entropy'
  config.acquisition_beta = 2.0
  config_checks.validate_config(config)
  for bad in ('power_', 'power_foo', 'powerbald'):
    config.acquisition = bad
    with pytest.raises(ConfigError, match=r'<sampling>_<score>'):
      config_checks.validate_config(config)
  config.acquisition = 'power_entropy'
  config.acquisition_beta = -1.0
  with pytest.raises(ConfigError, match='acquisition_beta'):
    config_checks.validate_config(config)
