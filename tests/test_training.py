"""The M-step: multiset expansion, eq. 6 weighting, one trace per run."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bass_jax import models
from bass_jax import training


def test_shuffled_slots_lists_the_multiset():
  counts = jnp.array([0, 20, 1, 0, 1, 20, 1], jnp.int32)
  samples, total = training.shuffled_slots(jax.random.key(0), counts, 64)
  assert int(total) == 43
  listed = np.bincount(np.asarray(samples)[:43], minlength=7)
  np.testing.assert_array_equal(listed, counts)
  other, _ = training.shuffled_slots(jax.random.key(1), counts, 64)
  assert not np.array_equal(np.asarray(samples)[:43], np.asarray(other)[:43])


@pytest.mark.parametrize('digit_sorts', [True, False])
@pytest.mark.parametrize('n,key_bits', [(1, 24), (2, 1), (7, 3), (4096, 24),
                                        (5000, 2), (70_000, 24)])
def test_stable_argsort_u32_is_numpys_stable_argsort(n, key_bits, digit_sorts):
  # Few key bits force many ties, which must keep their index order.
  keys = np.random.default_rng(n).integers(0, 2**key_bits, n, dtype=np.uint32)
  order = jax.jit(training.stable_argsort_u32, static_argnums=(1, 2))(
      jnp.asarray(keys), key_bits, digit_sorts)
  assert order.dtype == jnp.int32
  np.testing.assert_array_equal(order, np.argsort(keys, kind='stable'))


def test_shuffled_slots_is_the_argsort_of_uniform_draws():
  """The integer-key shuffle lists exactly what sorting the float draws did

  (the definition every earlier run trained with), padding last: so runs
  stay reproducible to the seed across the change."""
  counts = jnp.asarray(np.random.default_rng(0).choice(
      [0, 1, 20], size=1000, p=[.3, .6, .1]).astype(np.int32))
  capacity = 2816
  for seed in range(4):
    key = jax.random.key(seed)
    samples, total = jax.jit(training.shuffled_slots, static_argnums=2)(
        key, counts, capacity)
    slots = np.arange(capacity)
    draws = np.where(slots < int(total),
                     np.asarray(jax.random.uniform(key, (capacity,))), 2.0)
    owner = np.searchsorted(np.cumsum(counts), slots, side='right')
    expected = np.minimum(owner[np.argsort(draws, kind='stable')], 999)
    np.testing.assert_array_equal(samples, expected)


def test_slot_counts():
  labelled = jnp.array([True, False, False, True])
  member = jnp.array([True, True, False, False])
  np.testing.assert_array_equal(
      training.slot_counts(labelled, member, 20), [20, 1, 0, 20])


def test_weighted_loss_ignores_padding_and_weights_pseudo():
  model = models.build_model('mlp', 2, dropout_rate=0.0)
  x = jax.random.normal(jax.random.key(0), (4, 2))
  params = model.init(jax.random.key(1), x)
  y = jnp.array([0, 1, 0, 1])
  ce = np.asarray(jax.vmap(lambda xi, yi: training.weighted_loss(
      params, model.apply, xi[None], yi[None], jnp.ones(1), None, 0.0))(x, y))
  loss = training.weighted_loss(params, model.apply, x, y,
                                jnp.array([1.0, 0.5, 1.0, 0.0]), None, 0.0)
  np.testing.assert_allclose(loss, (ce[0] + 0.5 * ce[1] + ce[2]) / 3,
                             rtol=1e-5)
  l2 = training.weighted_loss(params, model.apply, x, y, jnp.ones(4), None,
                              1e-3) - training.weighted_loss(
                                  params, model.apply, x, y, jnp.ones(4),
                                  None, 0.0)
  kernels = sum(float(jnp.sum(p['kernel']**2)) for p in params.values())
  np.testing.assert_allclose(l2, 1e-3 * kernels, rtol=1e-4)


def _separable_points(seed: int, n: int = 300):
  """The toy MLP, Adam, [n, 2] normal points and their label x_0 > 0."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n, 2)), jnp.float32)
  y = jnp.asarray((np.asarray(x)[:, 0] > 0).astype(np.int32))
  return models.build_model('mlp', 2), training.make_optimizer(), x, y


def test_epoch_traced_once_while_training_set_grows():
  n = 300
  model, opt, x, y = _separable_points(0, n)
  params = model.init(jax.random.key(0), x[:1])
  state = training.TrainState(params, opt.init(params))
  labelled = jnp.zeros(n, bool).at[:8].set(True)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def epochs(state, key, member, num_epochs):
    return training.train_epochs(
        state, opt, model.apply, key, x, y, labelled, member, num_epochs,
        gt_upsample=20, mu=1.0, batch_size=64,
        capacity=training.multiset_capacity(n, 8, 20, True, 64), l2=1e-3)

  losses = []
  for i, num_members in enumerate([0, 50, 120, 292]):
    member = jnp.zeros(n, bool).at[8:8 + num_members].set(True)
    state, loss = epochs(state, jax.random.key(i), member,
                         jnp.int32(5 if i == 0 else 1))
    losses.append(float(loss))
  assert all(np.isfinite(losses))
  preds = jnp.argmax(model.apply(state.params, x, None), -1)
  assert float(jnp.mean(preds == y)) > 0.9


@pytest.mark.parametrize('steps_per_trip', [2, 3, 8])
def test_steps_per_trip_changes_nothing_but_speed(steps_per_trip):
  """k steps a loop trip, the steps past the epoch's end discarded: the same
  parameters, optimizer state and loss as one step a trip, for an epoch of
  5 batches (the last one partial) whether k divides it, does not, or
  exceeds it, over two epochs and under a vmap over seeds."""
  n = 300
  model, opt, x, y = _separable_points(1, n)
  labelled = jnp.zeros(n, bool).at[:8].set(True)
  # 8 x 20 + 130 = 290 slots: batches of 64, 64, 64, 64, 34.
  member = jnp.zeros(n, bool).at[8:138].set(True)

  def run(k, seed):
    params = model.init(jax.random.key(seed), x[:1])
    state = training.TrainState(params, opt.init(params))
    return training.train_epochs(
        state, opt, model.apply, jax.random.key(seed + 10), x, y, labelled,
        member, jnp.int32(2), gt_upsample=20, mu=0.5, batch_size=64,
        capacity=training.multiset_capacity(n, 8, 20, True, 64), l2=1e-3,
        steps_per_trip=k)

  seeds = jnp.arange(2)
  one = jax.jit(jax.vmap(lambda s: run(1, s)))(seeds)
  many = jax.jit(jax.vmap(lambda s: run(steps_per_trip, s)))(seeds)
  chex.assert_trees_all_close(many, one, rtol=1e-6, atol=1e-7)
  # A discarded step would have moved Adam's step count.
  counts = [leaf for leaf in jax.tree_util.tree_leaves(one[0].opt_state)
            if leaf.dtype == jnp.int32]
  assert counts and all(int(c[0]) == 10 for c in counts)


def test_each_step_of_an_epoch_draws_its_own_dropout_masks():
  """One sample up-sampled to fill every batch, so the batches are equal and
  a zero learning rate keeps the parameters: the epoch's mean loss over
  2 steps equals the 1-step epoch's (step 0's, same key) only if step 1
  reused step 0's masks."""
  model, _, x, y = _separable_points(0, 16)
  opt = optax.sgd(0.0)
  params = model.init(jax.random.key(0), x[:1])
  state = training.TrainState(params, opt.init(params))
  labelled = jnp.zeros(16, bool).at[3].set(True)

  def epoch_loss(upsample):  # upsample copies of sample 3: upsample/8 steps.
    _, loss = training.train_epochs(
        state, opt, model.apply, jax.random.key(7), x, y, labelled,
        jnp.zeros(16, bool), jnp.int32(1), gt_upsample=upsample, mu=1.0,
        batch_size=8, capacity=upsample, l2=0.0)
    return float(loss)

  one, two = epoch_loss(8), epoch_loss(16)
  assert np.isfinite(one) and np.isfinite(two)
  assert one != two
