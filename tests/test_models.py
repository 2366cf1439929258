"""Parameter counts and the pure forward pass of the three models."""

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


@pytest.mark.parametrize('bits', [32, 16, 8])
def test_keep_mask_rate_and_independence(bits):
  """Drop rate within 5 sigma; no correlation between neighbours or draws."""
  n = 200_000
  mask, keep = models.keep_mask(jax.random.key(3), (n,), 0.33, bits)
  mask = np.asarray(mask, np.float64)
  sigma = np.sqrt(keep * (1 - keep) / n)
  assert abs(mask.mean() - keep) < 5 * sigma
  assert abs(keep - 0.67) <= 2.0**-bits
  # Adjacent elements share a PRNG word when bits < 32: must be independent.
  for lag in (1, 2, 3, 4):
    corr = np.corrcoef(mask[:-lag], mask[lag:])[0, 1]
    assert abs(corr) < 5 / np.sqrt(n)
  other, _ = models.keep_mask(jax.random.key(4), (n,), 0.33, bits)
  corr = np.corrcoef(mask, np.asarray(other, np.float64))[0, 1]
  assert abs(corr) < 5 / np.sqrt(n)


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


def test_cnn_training_form_equals_inference_form():
  """PatchConv (training) and nn.Conv (inference) share params and outputs."""
  model = models.build_model('cnn', 10)
  x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
  params = model.init(jax.random.key(0), x)
  np.testing.assert_allclose(model.train_apply(params, x, None),
                             model.apply(params, x, None), atol=1e-5)
  key = jax.random.key(2)
  np.testing.assert_allclose(model.train_apply(params, x, key),
                             model.apply(params, x, key), atol=1e-5)
  grads = [jax.grad(lambda p: f(p, x, key).sum())(params)
           for f in (model.train_apply, model.apply)]
  for a, b in zip(jax.tree_util.tree_leaves(grads[0]),
                  jax.tree_util.tree_leaves(grads[1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
