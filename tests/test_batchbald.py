"""BatchBALD: consistent dropout, the joint-entropy estimate against exact
enumeration, the greedy picks, and the acquisition inside the loop."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bass_jax import config_checks
from bass_jax import experiment
from bass_jax import loop
from bass_jax import mc_dropout
from bass_jax import models
from bass_jax import selection as sel
from bass_jax import uncertainty
from bass_jax.errors import ConfigError
from configs import yinyang


def _exact_joint_entropy(probs, idx):
  """H(y_idx...) of the MC mixture mean_t prod_i p_t(y_i), enumerated."""
  h = 0.0
  num_classes = probs.shape[-1]
  for labels in itertools.product(range(num_classes), repeat=len(idx)):
    p = np.mean(np.prod([probs[i, :, c] for i, c in zip(idx, labels)],
                        axis=0))
    h -= p * np.log(p) if p > 0 else 0.0
  return h


def _random_probs(m=6, t=8, c=3, seed=0):
  rng = np.random.default_rng(seed)
  return rng.dirichlet(np.full(c, 0.5), size=(m, t)).astype(np.float32)


def _configs_of(probs, picked, key, num_configs):
  """(log_q, log_scale) of sampled configurations of the picked labels."""
  t = probs.shape[1]
  key_t, key_y = jax.random.split(key)
  passes = np.asarray(jax.random.randint(key_t, (num_configs,), 0, t))
  log_q = np.zeros((num_configs, t))
  for i, k in zip(picked, jax.random.split(key_y, len(picked))):
    labels = np.asarray(jax.random.categorical(
        k, jnp.log(jnp.asarray(probs[i])[passes]), axis=-1))
    log_q += np.log(probs[i][:, labels].T)
  peak = log_q.max(axis=1)
  return jnp.asarray(log_q - peak[:, None]), jnp.asarray(peak)


def test_joint_entropy_estimate_matches_enumeration():
  probs = _random_probs()
  # No picks yet: exactly the entropy of each candidate's MC mean.
  empty = sel.joint_entropies(jnp.zeros((4, 8)), jnp.zeros(4),
                              jnp.asarray(probs))
  np.testing.assert_allclose(
      empty, [_exact_joint_entropy(probs, [m]) for m in range(6)], rtol=1e-5)
  # After two picks (0 and 1), from 100,000 sampled configurations.
  log_q, log_scale = _configs_of(probs, [0, 1], jax.random.key(1), 100_000)
  got = np.asarray(sel.joint_entropies(log_q, log_scale, jnp.asarray(probs)))
  want = [_exact_joint_entropy(probs, [0, 1, m]) for m in range(6)]
  np.testing.assert_allclose(got, want, atol=0.01)


def test_first_pick_is_the_top_bald_and_the_second_the_exact_best():
  probs = _random_probs(m=6, t=8, c=3, seed=3)
  valid = jnp.ones(6, bool)
  idx, ok = sel.batchbald_indices(jax.random.key(0), jnp.asarray(probs),
                                  valid, 2, 50_000)
  assert bool(ok.all())
  bald = uncertainty.mutual_information(jnp.asarray(probs).transpose(1, 0, 2))
  assert int(idx[0]) == int(jnp.argmax(bald))
  first = int(idx[0])
  cond = -np.mean(np.sum(probs * np.log(probs), axis=-1), axis=-1)
  exact = [(_exact_joint_entropy(probs, [first, m]) - cond[m])
           if m != first else -np.inf for m in range(6)]
  ranked = np.sort(exact)
  assert ranked[-1] - ranked[-2] > 0.02  # A clear winner for this draw.
  assert int(idx[1]) == int(np.argmax(exact))


def test_batchbald_skips_a_duplicate_that_top_k_bald_takes():
  # Candidate 0 and its copy 1 are the most uncertain about the network
  # (each pass sure, the passes disagreeing); 2 a little less; 3 certain.
  t = 10
  sure = np.where(np.arange(t)[:, None] % 2 == np.arange(2)[None, :],
                  0.99, 0.01)
  less = np.where(np.arange(t)[:, None] < 3, sure[:, ::-1], sure)
  certain = np.tile([0.98, 0.02], (t, 1))
  probs = jnp.asarray(np.stack([sure, sure, less, certain]), jnp.float32)
  bald = uncertainty.mutual_information(probs.transpose(1, 0, 2))
  assert bald[0] == bald[1] > bald[2] > bald[3]
  top, _ = sel.top_k_indices(bald, jnp.ones(4, bool), 2)
  assert sorted(np.asarray(top)) == [0, 1]
  idx, ok = sel.batchbald_indices(jax.random.key(0), probs,
                                  jnp.ones(4, bool), 2, 2000)
  assert bool(ok.all()) and int(idx[0]) in (0, 1) and int(idx[1]) == 2


def test_invalid_candidates_are_never_picked():
  probs = jnp.asarray(_random_probs(m=5))
  valid = jnp.array([False, True, False, True, False])
  idx, ok = sel.batchbald_indices(jax.random.key(2), probs, valid, 3, 500)
  picked = np.asarray(idx)[np.asarray(ok)]
  assert sorted(picked) == [1, 3] and int(ok.sum()) == 2


def test_answers_survive_picks_that_repeat_an_index():
  """Fewer valid candidates than k: BatchBALD's leftover steps repeat a
  valid pick's index; revealing must still store the oracle's answers."""
  probs = jnp.asarray(_random_probs(m=5))
  valid = jnp.array([True, True, False, False, False])
  idx, ok = sel.batchbald_indices(jax.random.key(3), probs, valid, 4, 500)
  assert int(ok.sum()) == 2 and len(set(np.asarray(idx).tolist())) < 4
  query = jnp.array([3, 4, 0, 0])[idx]  # Pool indices of the candidates.
  state = loop.LoopState(train=None, labelled=jnp.zeros(6, bool),
                         member=jnp.ones(6, bool),
                         labels=jnp.full(6, 7, jnp.int32),
                         key=jnp.zeros(2, jnp.uint32),
                         iteration=jnp.int32(0),
                         skipped=jnp.zeros(6, bool))
  answers = jnp.where(ok, jnp.array([1, 2, 0, 0])[idx], 9)
  for reveal in (loop.reveal, jax.jit(loop.reveal)):
    out = reveal(state, query, ok, answers)
    np.testing.assert_array_equal(out.labelled, [0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(out.labels, [7, 7, 7, 1, 2, 7])
    np.testing.assert_array_equal(out.member, [1, 1, 1, 0, 0, 1])


def test_consistent_probs_share_each_pass_network():
  model = models.build_model('mlp', 2, dropout_rate=0.33)
  x = jax.random.normal(jax.random.key(0), (9, 2))
  x = x.at[4].set(x[1])  # A duplicate input.
  params = model.init(jax.random.key(1), x[:1])
  key = jax.random.key(2)
  probs = mc_dropout.consistent_probs(model.apply, params, x, key, 6, 9)
  assert probs.shape == (9, 6, 2)
  # The same input gives the same output in every pass: one network each.
  np.testing.assert_array_equal(probs[1], probs[4])
  # The passes differ (other masks) ...
  assert float(jnp.abs(probs[1, 0] - probs[1, 1]).max()) > 1e-4
  # ... chunking changes nothing, and the key decides.
  np.testing.assert_array_equal(
      probs, mc_dropout.consistent_probs(model.apply, params, x, key, 6, 4))
  other = mc_dropout.consistent_probs(model.apply, params, x,
                                      jax.random.key(3), 6, 9)
  assert float(jnp.abs(other - probs).max()) > 1e-4
  # Per-sample sweeps give the duplicate its own masks instead.
  own = mc_dropout.mc_probs(model.apply, params, x,
                            mc_dropout.sample_keys(key, jnp.arange(9), 6))
  assert float(jnp.abs(own[:, 1] - own[:, 4]).max()) > 1e-4


def _tiny(strategy, **overrides):
  config = yinyang.get_config('active_semi')
  config.update({**dict(num_iterations=5, initial_epochs=20, num_seeds=2,
                       mc_passes_gt=20, acquisition='batchbald',
                       query_size=4, batchbald_candidates=50,
                       batchbald_passes=20, batchbald_configs=200,
                       seed_strategy=strategy, data_per_seed=False),
                 **overrides})
  return config


@pytest.fixture(scope='module')
def toy():
  from bass_jax import data  # pylint: disable=g-import-not-at-top
  return data.load_yinyang(num_per_class=100, seed=0)


def _run(config, ds, steps):
  """(run, [state after each step], last metrics) of `steps` iterations."""
  r = experiment.build(config, ds)
  states, state = [], r.state
  for _ in range(steps):
    state, metrics = r.step(state, r.pool)
    states.append(jax.device_get(state))  # The next step donates it.
  return r, states, jax.device_get(metrics)


@pytest.fixture(scope='module')
def runs(toy):
  """Four iterations of BatchBALD vmapped and mapped, one of BALD's top k."""
  return {'vmap': _run(_tiny('vmap'), toy, 4),
          'map': _run(_tiny('map'), toy, 4),
          'bald': _run(_tiny('vmap', acquisition='bald'), toy, 1)}


def test_loop_vmapped_equals_mapped_and_skips_non_query_iterations(runs):
  r, vm_states, vm = runs['vmap']
  _, map_states, mapped = runs['map']
  assert r.step._cache_size() == 1  # pylint: disable=protected-access
  # Queries at iterations 0 and 2: 8 + 2 * 4 labels, none of them repeated.
  assert list(vm['num_labels']) == [16, 16]
  np.testing.assert_array_equal(vm_states[-1].labelled,
                                map_states[-1].labelled)
  np.testing.assert_allclose(vm['val_acc'], mapped['val_acc'], atol=1e-6)
  # Under the seed vmap the acquisition stays a real conditional (skipped
  # on the other iterations), not a select that computes it every time.
  hlo = r.step.lower(r.state, r.pool).compile().as_text()
  assert 'conditional(' in hlo
  plain = runs['bald'][0]
  assert 'conditional(' not in plain.step.lower(
      plain.state, plain.pool).compile().as_text()


def test_loop_picks_differ_from_top_k_bald(runs):
  bb_state, top_state = runs['vmap'][1][0], runs['bald'][1][0]
  assert int(bb_state.labelled.sum()) == int(top_state.labelled.sum()) == 24
  assert (np.asarray(bb_state.labelled) != np.asarray(top_state.labelled)
          ).any()


def test_config_refuses_fewer_candidates_than_the_batch():
  config = _tiny('auto', batchbald_candidates=3)
  with pytest.raises(ConfigError, match='batchbald_candidates=3 is fewer '
                     'than config.query_size=4'):
    config_checks.validate_config(config)
  config.batchbald_candidates = 0
  with pytest.raises(ConfigError, match='batchbald_candidates=0 must be > 0'):
    config_checks.validate_config(config)
