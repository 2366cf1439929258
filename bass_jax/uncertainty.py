"""Uncertainty scores from MC-dropout samples: pure array -> array functions.

Every score is oriented so that HIGHER means MORE uncertain, so one top-k picks
the most informative samples for any of them. Inputs are softmax samples
`probs` [T, B, C] (T MC passes) or their mean [B, C].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp



def entropy(p: jax.Array, axis: int = -1) -> jax.Array:
  """Shannon entropy in nats along `axis` (0 log 0 := 0).

  p [..., C] (C along `axis`, the last by default) -> [...].
  """
  return -jnp.sum(jax.scipy.special.xlogy(p, p), axis=axis)


def normalized_entropy(mean_probs: jax.Array) -> jax.Array:
  """Eq. 3: entropy of the MC mean divided by log C, in [0, 1].

  Args:
    mean_probs: [B, C] MC-mean class probabilities.

  Returns:
    [B] normalized entropy: 0 for one-hot, 1 for uniform.
  """
  num_classes = mean_probs.shape[-1]
  return entropy(mean_probs) / jnp.log(num_classes)


def mutual_information(probs: jax.Array) -> jax.Array:
  """BALD (Houlsby et al. 2011): H[mean_t p_t] - mean_t H[p_t], normalized
  by log C.

  Args:
    probs: [T, B, C] softmax samples.

  Returns:
    [B] mutual information between prediction and weights, in [0, 1] up
    to float32 rounding: passes that all agree give 0 or a few -1e-7
    (left as computed: clamping would tie them for a top-k pick).
  """
  num_classes = probs.shape[-1]
  expected_entropy = jnp.mean(entropy(probs), axis=0)
  return (entropy(jnp.mean(probs, axis=0)) - expected_entropy) / jnp.log(
      num_classes)


def variation_ratio(probs: jax.Array) -> jax.Array:
  """1 - (votes of the modal argmax class) / T (Freeman 1965; Gal et al. 2017).

  Args:
    probs: [T, B, C] softmax samples.

  Returns:
    [B] variation ratio in [0, 1 - 1/C].
  """
  num_passes, _, num_classes = probs.shape
  votes = jnp.sum(jax.nn.one_hot(jnp.argmax(probs, axis=-1), num_classes),
                  axis=0)
  return 1.0 - jnp.max(votes, axis=-1) / num_passes


def mean_std(probs: jax.Array) -> jax.Array:
  """Mean over classes of the std over MC passes (Kampffmeyer et al. 2016).

  Args:
    probs: [T, B, C] softmax samples.

  Returns:
    [B] mean standard deviation (population std, ddof=0).
  """
  return jnp.mean(jnp.std(probs, axis=0), axis=-1)


def least_confidence(mean_probs: jax.Array) -> jax.Array:
  """1 - max_c p_c of the MC mean (the blog's acquisition).

  Args:
    mean_probs: [B, C].

  Returns:
    [B] in [0, 1 - 1/C].
  """
  return 1.0 - jnp.max(mean_probs, axis=-1)


def margin(mean_probs: jax.Array) -> jax.Array:
  """1 - (p_top1 - p_top2) of the MC mean: small margins are uncertain.

  Args:
    mean_probs: [B, C].

  Returns:
    [B] in [0, 1].
  """
  top2 = jax.lax.top_k(mean_probs, 2)[0]
  return 1.0 - (top2[..., 0] - top2[..., 1])


# Names usable as `acquisition` in configs and as keys of `all_scores`.
SCORE_NAMES = ('entropy', 'bald', 'variation_ratio', 'mean_std',
               'least_confidence', 'margin')


def all_scores(probs: jax.Array) -> dict[str, jax.Array]:
  """Every score from one set of MC samples.

  Args:
    probs: [T, B, C] softmax samples.

  Returns:
    Dict name -> [B] score, names as in `SCORE_NAMES`, plus 'mean_probs'
    [B, C].
  """
  mean_probs = jnp.mean(probs, axis=0)
  return {
      'mean_probs': mean_probs,
      'entropy': normalized_entropy(mean_probs),
      'bald': mutual_information(probs),
      'variation_ratio': variation_ratio(probs),
      'mean_std': mean_std(probs),
      'least_confidence': least_confidence(mean_probs),
      'margin': margin(mean_probs),
  }
