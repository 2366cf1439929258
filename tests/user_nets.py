"""Models of one's own, as `--config.model=tests/user_nets.py:<Name>` loads
them (tests/test_user_model.py, and bad ones in tests/test_reliability.py)."""

from typing import Optional

import flax.linen as nn
import jax

from bass_jax import models


class TinyNet(nn.Module):
  """d -> 16 -> C with one dropout layer: 16 (d + 1) + 17 C parameters."""
  num_classes: int
  dropout_rate: float = 0.5
  mask_impl: str = 'hash'

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True,
               seed: Optional[jax.Array] = None) -> jax.Array:
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(16)(x))
    x = models.MaskDropout(self.dropout_rate, impl=self.mask_impl,
                           stream=0)(x, deterministic, seed)
    return nn.Dense(self.num_classes)(x)


def tiny_net(num_classes: int, **settings) -> nn.Module:
  """A factory function in place of a class: every setting offered."""
  return TinyNet(num_classes, settings['dropout_rate'], settings['mask_impl'])


class NoDropout(nn.Module):
  """Keeps the contract but never uses its seed: every MC pass the same."""
  num_classes: int

  @nn.compact
  def __call__(self, x, deterministic=True, seed=None):
    x = nn.relu(nn.Dense(16)(x.reshape((x.shape[0], -1))))
    return nn.Dense(self.num_classes)(x)


class ThreeLogits(TinyNet):
  """Ignores num_classes: three logits whatever the data."""

  @nn.compact
  def __call__(self, x, deterministic=True, seed=None):
    return nn.Dense(3)(x.reshape((x.shape[0], -1)))


class NoSeed(nn.Module):
  """Its __call__ does not take the dropout seed."""
  num_classes: int

  @nn.compact
  def __call__(self, x, deterministic=True):
    return nn.Dense(self.num_classes)(x.reshape((x.shape[0], -1)))


class NoClasses(nn.Module):
  """Takes no num_classes."""

  @nn.compact
  def __call__(self, x, deterministic=True, seed=None):
    return nn.Dense(2)(x.reshape((x.shape[0], -1)))


class TinyCNN(nn.Module):
  """One 3x3 convolution (models.SameConv) and dropout, then logits."""
  num_classes: int
  dropout_rate: float = 0.5
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, deterministic=True, seed=None):
    x = nn.relu(models.SameConv(4, impl=self.conv_impl)(x))
    x = models.MaskDropout(self.dropout_rate)(x, deterministic, seed)
    return nn.Dense(self.num_classes)(x.reshape((x.shape[0], -1)))
