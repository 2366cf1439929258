"""The M-step: multiset expansion, eq. 6 weighting, one trace per run."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

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


def test_epoch_traced_once_while_training_set_grows():
  model = models.build_model('mlp', 2)
  opt = training.make_optimizer()
  rng = np.random.default_rng(0)
  n = 300
  x = jnp.asarray(rng.normal(size=(n, 2)), jnp.float32)
  y = jnp.asarray((np.asarray(x)[:, 0] > 0).astype(np.int32))
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
