"""Golden values for every uncertainty score, computed by hand, under jit."""

import jax
import jax.numpy as jnp
import numpy as np

from bass_jax import uncertainty as u

LOG2 = np.log(2.0)
LOG3 = np.log(3.0)
# Two samples, T = 2 passes, C = 3 classes.
PROBS = np.array([
    [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]],   # pass 1
    [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]],   # pass 2
], np.float32)


def test_normalized_entropy_extremes_and_golden():
  f = jax.jit(u.normalized_entropy)
  np.testing.assert_allclose(f(jnp.eye(4)), np.zeros(4), atol=1e-7)
  np.testing.assert_allclose(f(jnp.full((2, 5), 0.2)), np.ones(2), rtol=1e-6)
  # p = (0.5, 0.25, 0.25): H = 1.5 log 2 nats; / log 3.
  p = jnp.array([[0.5, 0.25, 0.25]])
  np.testing.assert_allclose(f(p), [1.5 * LOG2 / LOG3], rtol=1e-6)


def test_mutual_information_golden():
  # Sample 1: both passes one-hot and equal -> 0.
  # Sample 2: mean (.25, .5, .25): H = 1.5 log 2; each pass H = log 2;
  #   MI = 0.5 log 2 nats; / log 3.
  mi = jax.jit(u.mutual_information)(PROBS)
  np.testing.assert_allclose(mi, [0.0, 0.5 * LOG2 / LOG3], atol=1e-6)


def test_variation_ratio_golden():
  probs = np.array([[[0.9, 0.1]], [[0.8, 0.2]], [[0.3, 0.7]], [[0.6, 0.4]]],
                   np.float32)  # T = 4, one sample; votes 3 for class 0.
  np.testing.assert_allclose(jax.jit(u.variation_ratio)(probs), [0.25])


def test_mean_std_golden():
  # Sample 2, class stds over the 2 passes: (0.25, 0, 0.25) -> mean 1/6.
  np.testing.assert_allclose(jax.jit(u.mean_std)(PROBS), [0.0, 1 / 6],
                             atol=1e-7)


def test_least_confidence_and_margin_golden():
  mean = jnp.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
  np.testing.assert_allclose(jax.jit(u.least_confidence)(mean), [0.3, 0.6],
                             rtol=1e-6)
  np.testing.assert_allclose(jax.jit(u.margin)(mean), [0.5, 0.95],
                             rtol=1e-6)


def test_all_scores_higher_is_more_uncertain():
  confident = jnp.broadcast_to(jnp.array([0.98, 0.01, 0.01]), (5, 1, 3))
  unsure = jnp.stack([jnp.array([[0.6, 0.3, 0.1]]),
                      jnp.array([[0.1, 0.6, 0.3]])] * 2 +
                     [jnp.array([[0.3, 0.1, 0.6]])])
  a = u.all_scores(confident)
  b = u.all_scores(unsure)
  for name in u.SCORE_NAMES:
    assert float(b[name][0]) > float(a[name][0]), name
