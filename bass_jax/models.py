"""Flax models of the paper and the blog baseline, and their pure forward pass.

A forward pass is `apply_fn(params, x, key) -> logits`: with `key=None` it is
deterministic (dropout off, the evaluation mode); with a PRNG key every dropout
layer draws its mask from that key (the MC-dropout mode). No module state is
mutated, so MC sampling is a `vmap` over split keys.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Params = Any
ApplyFn = Callable[[Params, jax.Array, Optional[jax.Array]], jax.Array]

# Keras' default kernel initializer; the paper's code relies on it.
glorot = nn.initializers.glorot_uniform()


def keep_mask(key: jax.Array, shape: Sequence[int], rate: float,
              bits: int) -> tuple[jax.Array, float]:
  """Returns a Bernoulli keep mask and its exact keep probability.

  Args:
    key: PRNG key.
    shape: mask shape.
    rate: drop probability in [0, 1).
    bits: random bits per mask element: 32 (one PRNG word per element, as
      `jax.random.bernoulli`), 16 or 8 (one 32-bit word is cut into 2 or 4
      independent uniform integers, so the PRNG runs 2x or 4x less; the drop
      probability is quantised to a multiple of 2**-bits).

  Returns:
    (mask, keep_prob): bool mask of `shape` and the exact probability that an
    element is kept, used to scale the kept activations so E[output] = input.
  """
  levels = 2**bits
  threshold = min(int(round(rate * levels)), levels - 1)
  keep_prob = 1.0 - threshold / levels
  size = 1
  for d in shape:
    size *= d
  per_word = 32 // bits
  words = jax.random.bits(key, (-(-size // per_word),), jnp.uint32)
  if per_word > 1:
    shifts = jnp.arange(per_word, dtype=jnp.uint32) * bits
    words = (words[:, None] >> shifts) & jnp.uint32(levels - 1)
  uniform_ints = words.reshape(-1)[:size].reshape(shape)
  return uniform_ints >= jnp.uint32(threshold), keep_prob


class MaskDropout(nn.Module):
  """Inverted dropout whose mask comes from the 'dropout' rng stream.

  Unlike `nn.Dropout` it can draw fewer random bits per element (see
  `keep_mask`), which is most of the MC-dropout cost on a CPU.
  """
  rate: float
  bits: int = 32

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    mask, keep_prob = keep_mask(self.make_rng('dropout'), x.shape, self.rate,
                                self.bits)
    return jnp.where(mask, x / keep_prob, jnp.zeros_like(x))


def shifted_patches(x: jax.Array, size: int) -> jax.Array:
  """'SAME'-padded size x size neighbourhoods stacked on the channel axis.

  Args:
    x: [B, H, W, C].
    size: odd kernel size k.

  Returns:
    [B, H, W, k*k*C], patch channels ordered (dy, dx, c) like a flax
    kernel [k, k, C, F] reshaped to [k*k*C, F].
  """
  pad = size // 2
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  h, w = x.shape[1], x.shape[2]
  return jnp.concatenate([xp[:, dy:dy + h, dx:dx + w, :]
                          for dy in range(size) for dx in range(size)],
                         axis=-1)


class PatchConv(nn.Module):
  """A stride-1 'SAME' convolution as shifted slices + one matmul.

  Same parameters (names, shapes, init) as `nn.Conv`. Why: XLA:CPU runs the
  gradient of a native convolution ~20x slower inside a `while_loop` body
  (where the compiled epoch runs it) than at the top level; slices, pads and
  a dot have fast gradients everywhere.
  """
  features: int
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, c = self.kernel_size, x.shape[-1]
    kernel = self.param('kernel', glorot, (k, k, c, self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    patches = shifted_patches(x, k)
    return patches @ kernel.reshape(k * k * c, self.features) + bias


class ToyMLP(nn.Module):
  """The paper's §4 network: 2 -> 50 -> 50 -> 50 -> C, 5,352 parameters for C=2."""
  num_classes: int = 2
  hidden: Sequence[int] = (50, 50, 50)
  dropout_rate: float = 0.33
  negative_slope: float = 0.1
  dropout_bits: int = 32

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.Dense(width, kernel_init=glorot)(x)
      x = nn.leaky_relu(x, self.negative_slope)
      x = MaskDropout(self.dropout_rate, self.dropout_bits)(x, deterministic)
    return nn.Dense(self.num_classes, kernel_init=glorot)(x)


class PaperCNN(nn.Module):
  """The paper's §5 MNIST network, 14,970 parameters for 28x28x1 and C=10.

  4 x [conv 3x3 'same', LeakyReLU(0.1), dropout]; 2x2 max-pool after conv 2
  and conv 4; dense to C logits.
  """
  num_classes: int = 10
  features: int = 16
  num_convs: int = 4
  dropout_rate: float = 0.33
  negative_slope: float = 0.1
  dropout_bits: int = 32
  conv_impl: str = 'patches'   # 'patches' (PatchConv) or 'xla' (nn.Conv).

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
    for i in range(self.num_convs):
      if self.conv_impl == 'xla':
        x = nn.Conv(self.features, (3, 3), padding='SAME',
                    kernel_init=glorot, name=f'Conv_{i}')(x)
      else:
        x = PatchConv(self.features, 3, name=f'Conv_{i}')(x)
      x = nn.leaky_relu(x, self.negative_slope)
      x = MaskDropout(self.dropout_rate, self.dropout_bits)(x, deterministic)
      if i % 2 == 1:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_classes, kernel_init=glorot)(x)


class SoftmaxRegression(nn.Module):
  """The blog baseline: one dense layer 784 -> 10 starting at zero (7,850 params)."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
    del deterministic  # No dropout: MC passes all agree.
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros)(x)


MODELS = {'mlp': ToyMLP, 'cnn': PaperCNN, 'softmax': SoftmaxRegression}


@dataclasses.dataclass(frozen=True)
class Model:
  """A model as two pure functions plus its static description.

  Attributes:
    init: `init(key, x) -> params` for an example batch x [B, ...].
    apply: `apply(params, x, key_or_None) -> logits [B, C]`, for inference.
    train_apply: the same function of the same parameters, in the form
      whose gradient is fastest inside the compiled epoch (for the CNN:
      convolutions as shifted-slice matmuls, see `PatchConv`).
    module: the flax module (for introspection).
  """
  init: Callable[[jax.Array, jax.Array], Params]
  apply: ApplyFn
  train_apply: ApplyFn
  module: nn.Module


def build_model(name: str, num_classes: int, dropout_rate: float = 0.33,
                dropout_bits: int = 32, negative_slope: float = 0.1) -> Model:
  """Returns the named model as pure `init` / `apply` functions.

  Args:
    name: 'mlp' (toy), 'cnn' (the paper's MNIST CNN) or 'softmax' (blog).
    num_classes: C, the width of the logits.
    dropout_rate: drop probability of every dropout layer.
    dropout_bits: random bits per mask element (32, 16 or 8).
    negative_slope: LeakyReLU slope (the paper: 0.1).
  """
  if name == 'softmax':
    module = SoftmaxRegression(num_classes=num_classes)
  elif name in MODELS:
    module = MODELS[name](num_classes=num_classes, dropout_rate=dropout_rate,
                          dropout_bits=dropout_bits,
                          negative_slope=negative_slope)
  else:
    raise ValueError(f'unknown model {name!r}; known: {sorted(MODELS)}')

  def init(key: jax.Array, x: jax.Array) -> Params:
    return module.init({'params': key}, x, deterministic=True)['params']

  def pure_apply(mod: nn.Module) -> ApplyFn:
    def apply(params: Params, x: jax.Array,
              key: Optional[jax.Array] = None) -> jax.Array:
      if key is None:
        return mod.apply({'params': params}, x, deterministic=True)
      return mod.apply({'params': params}, x, deterministic=False,
                       rngs={'dropout': key})
    return apply

  train_module = module
  if isinstance(module, PaperCNN):
    # Native XLA convolutions are fastest for the forward-only MC sweep.
    module = module.clone(conv_impl='xla')
  return Model(init=init, apply=pure_apply(module),
               train_apply=pure_apply(train_module), module=module)


def num_params(params: Params) -> int:
  """Returns the number of scalar parameters in a pytree."""
  return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))


def is_kernel(path: tuple[Any, ...]) -> bool:
  """True for a 'kernel' leaf path (the weights the L2 penalty applies to)."""
  last = path[-1]
  return getattr(last, 'key', getattr(last, 'name', None)) == 'kernel'
