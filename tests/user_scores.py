"""Acquisition scores of one's own, as
`--config.acquisition=tests/user_scores.py:<name>` loads them
(tests/test_user_code.py)."""

import jax
import jax.numpy as jnp


def least_confidence_again(probs, mean_probs):
  """The built-in least_confidence, written by a user: [T, B, C], [B, C] -> [B]."""
  del probs
  return 1.0 - jnp.max(mean_probs, axis=-1)


def bald_again(probs, mean_probs):
  """The built-in BALD (normalized by log C), written by a user."""
  def entropy(p):
    return -jnp.sum(jax.scipy.special.xlogy(p, p), axis=-1)
  return ((entropy(mean_probs) - jnp.mean(entropy(probs), axis=0)) /
          jnp.log(probs.shape[-1]))


def per_pass(probs, mean_probs):
  """Forgets to reduce over the passes: [T, B]."""
  del mean_probs
  return jnp.max(probs, axis=-1)


def broken(probs, mean_probs):
  """Fails when traced, as code under development does: [T, B] times
  [B, C], which do not broadcast."""
  return jnp.max(probs, axis=-1) * mean_probs


def naive_entropy(probs, mean_probs):
  """Entropy as log 0 makes it: NaN for a probability of 0 (a softmax
  rarely gives one), fine otherwise."""
  del probs
  return -jnp.sum(mean_probs * jnp.log(mean_probs), axis=-1)


def nan_score(probs, mean_probs):
  """Never a number (a bug under development): [B] of NaN."""
  del probs
  return jnp.full(mean_probs.shape[:1], jnp.nan)
