"""Parameter counts and the pure forward pass of the three models."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bass_jax import models


@pytest.mark.parametrize('name,num_classes,shape,expected', [
    ('mlp', 2, (1, 2), 5352),
    ('cnn', 10, (1, 28, 28, 1), 14970),
    ('softmax', 10, (1, 28, 28, 1), 7850),
])
def test_parameter_counts(name, num_classes, shape, expected):
  model = models.build_model(name, num_classes)
  params = model.init(jax.random.key(0), jnp.zeros(shape))
  assert models.num_params(params) == expected


def test_softmax_regression_starts_at_zero():
  model = models.build_model('softmax', 10)
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  assert all(float(jnp.abs(p).max()) == 0.0
             for p in jax.tree_util.tree_leaves(params))


@pytest.mark.parametrize('impl', models.MASK_IMPLS)
@pytest.mark.parametrize('bits', [32, 16, 8])
def test_keep_mask_rate_and_independence(bits, impl):
  """Drop rate within 5 sigma; no correlation between neighbours or draws."""
  n = 200_000
  mask, keep = models.keep_mask(jax.random.key(3), (n,), 0.33, bits, impl)
  mask = np.asarray(mask, np.float64)
  sigma = np.sqrt(keep * (1 - keep) / n)
  assert abs(mask.mean() - keep) < 5 * sigma
  assert abs(keep - 0.67) <= 2.0**-bits
  # Adjacent elements share a PRNG word when bits < 32: must be independent.
  for lag in (1, 2, 3, 4):
    corr = np.corrcoef(mask[:-lag], mask[lag:])[0, 1]
    assert abs(corr) < 5 / np.sqrt(n)
  other, _ = models.keep_mask(jax.random.key(4), (n,), 0.33, bits, impl)
  corr = np.corrcoef(mask, np.asarray(other, np.float64))[0, 1]
  assert abs(corr) < 5 / np.sqrt(n)


@pytest.mark.parametrize('impl', models.MASK_IMPLS)
def test_masks_of_many_keys_are_independent(impl):
  """The masks of 256 split keys (passes x samples): rate and no pair correlated.

  A sweep draws one mask per (pass, sample) key, so masks must be
  independent across keys, including keys split from one parent.
  """
  keys = jax.random.split(jax.random.key(11), 256)
  masks, keep = jax.vmap(
      lambda k: models.keep_mask(k, (4096,), 0.33, 32, impl)[0])(keys), 0.67
  m = np.asarray(masks, np.float64)
  n = m.size
  assert abs(m.mean() - keep) < 5 * np.sqrt(keep * (1 - keep) / n)
  corr = np.corrcoef(m)[np.triu_indices(len(m), 1)]
  # 32,640 pairs of 4,096 elements: |r| ~ N(0, 1/4096); max below 5.5 sigma.
  assert np.abs(corr).max() < 5.5 / np.sqrt(m.shape[1])
  # Per-position rates across keys: no element is favoured.
  per_position = m.mean(axis=0)
  assert np.abs(per_position - keep).max() < 5.5 * np.sqrt(
      keep * (1 - keep) / len(m))


def test_hash_streams_of_one_seed_are_independent():
  """The dropout layers of one pass (streams of one seed) get unrelated masks."""
  n = 200_000
  masks = [np.asarray(models.keep_mask(jax.random.key(3), (n,), 0.33, 32,
                                       'hash', stream)[0], np.float64)
           for stream in range(4)]
  for i in range(4):
    for j in range(i):
      assert abs(np.corrcoef(masks[i], masks[j])[0, 1]) < 5 / np.sqrt(n)


def test_hashed_words_are_uniform_bytes():
  """Every byte of the hash's words is uniform (chi-square, 255 dof)."""
  seed = models.seed_words(jax.random.key(5))
  words = np.asarray(models.hashed_words(seed, 1 << 18))
  for shift in (0, 8, 16, 24):
    counts = np.bincount((words >> shift) & 0xFF, minlength=256)
    expected = words.size / 256
    chi2 = np.sum((counts - expected)**2 / expected)
    assert chi2 < 255 + 6 * np.sqrt(2 * 255)  # mean + 6 sd of chi2(255).


def test_deterministic_mode_is_dropout_free():
  model = models.build_model('cnn', 10)
  x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
  params = model.init(jax.random.key(0), x)
  a = model.apply(params, x, None)
  no_dropout = models.build_model('cnn', 10, dropout_rate=0.0)
  b = no_dropout.apply(params, x, jax.random.key(5))  # rate 0: key unused.
  np.testing.assert_allclose(a, b, rtol=1e-6)
  # With a key and rate > 0 the output changes.
  c = model.apply(params, x, jax.random.key(5))
  assert not np.allclose(a, c)


def test_same_key_same_output_different_key_different():
  model = models.build_model('mlp', 2)
  x = jax.random.normal(jax.random.key(1), (8, 2))
  params = model.init(jax.random.key(0), x)
  a = model.apply(params, x, jax.random.key(7))
  b = model.apply(params, x, jax.random.key(7))
  c = model.apply(params, x, jax.random.key(8))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


@pytest.mark.parametrize('impl', ['xla', 'patches'])
def test_fast_grad_conv_matches_autodiff(impl):
  """The custom conv gradient equals autodiff of the native conv."""
  x = jax.random.uniform(jax.random.key(1), (5, 28, 28, 1))
  y = jnp.arange(5) % 10
  fast = models.build_model('cnn', 10, conv_impl='fast_grad')
  ref = models.build_model('cnn', 10, conv_impl=impl)
  params = fast.init(jax.random.key(0), x)

  def loss(model, p):
    logits = model.apply(p, x, jax.random.key(2))
    return jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(5), y])

  np.testing.assert_allclose(loss(fast, params), loss(ref, params),
                             rtol=1e-5)
  g_fast = jax.grad(functools.partial(loss, fast))(params)
  g_ref = jax.grad(functools.partial(loss, ref))(params)
  for a, b in zip(jax.tree_util.tree_leaves(g_fast),
                  jax.tree_util.tree_leaves(g_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_max_pool_2x2_equals_flax_max_pool():
  x = jax.random.normal(jax.random.key(0), (2, 7, 6, 3))
  np.testing.assert_array_equal(
      models.max_pool_2x2(x),
      nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID'))


def test_conv_kernel_grad_golden():
  """Kernel gradient of a 1-channel 3x3 conv on a 3x3 image, by hand.

  d/dw sum(conv(x, w)) at kernel tap (dy, dx) is the sum of the padded
  input over the window the tap sees: all taps see some of x = 1..9.
  """
  x = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
  g = jnp.ones((1, 3, 3, 1))
  dw = models.conv_kernel_grad(x, g, 3)[..., 0, 0]
  # Tap (0, 0) sees x[0:2, 0:2] = 1 + 2 + 4 + 5 = 12, etc.
  expected = np.array([[12, 21, 16], [27, 45, 33], [24, 39, 28]], np.float32)
  np.testing.assert_array_equal(np.asarray(dw), expected)


@pytest.mark.parametrize('impl', ['xla', 'patches'])
def test_conv_impls_share_params_and_outputs(impl):
  """Every conv impl has the same parameter tree and the same outputs."""
  x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
  fast = models.build_model('cnn', 10, conv_impl='fast_grad')
  other = models.build_model('cnn', 10, conv_impl=impl)
  params = fast.init(jax.random.key(0), x)
  assert (jax.tree_util.tree_structure(params) ==
          jax.tree_util.tree_structure(other.init(jax.random.key(0), x)))
  for key in (None, jax.random.key(2)):
    np.testing.assert_allclose(fast.apply(params, x, key),
                               other.apply(params, x, key), atol=1e-5)


@pytest.mark.parametrize('impl', ['xla', 'patches', 'auto'])
def test_same_conv_impls_equal_nn_conv(impl):
  """SameConv (what a model of one's own uses) is nn.Conv 3x3 'SAME' with
  its parameters, outputs and gradients, whatever computes it."""
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
  conv = models.SameConv(5, impl=impl)
  ref = nn.Conv(5, (3, 3), padding='SAME')
  params = conv.init(jax.random.key(0), x)
  assert (jax.tree_util.tree_structure(params) ==
          jax.tree_util.tree_structure(ref.init(jax.random.key(0), x)))
  params = jax.tree_util.tree_map(
      lambda p: jax.random.normal(jax.random.key(3), p.shape), params)

  def loss(module, p):
    return jnp.sum(jnp.sin(module.apply(p, x)))

  np.testing.assert_allclose(loss(conv, params), loss(ref, params),
                             rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(jax.grad(
      functools.partial(loss, conv))(params)), jax.tree_util.tree_leaves(
          jax.grad(functools.partial(loss, ref))(params))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
