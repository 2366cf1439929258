"""Flax models of the paper and the blog baseline, and their pure forward pass.

A forward pass is `apply_fn(params, x, key) -> logits`: with `key=None` it is
deterministic (dropout off, the evaluation mode); with a PRNG key every dropout
layer draws its mask from that key (the MC-dropout mode; by default one PRNG
call per pass, the masks hashed from it, see `hashed_words`). No module state
is mutated, so MC sampling is a `vmap` over split keys.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import flax.serialization
import flax.traverse_util
import jax
from jax.extend import core as jax_core
import jax.numpy as jnp
import numpy as np

from bass_jax import user_code
from bass_jax.errors import ConfigError
from bass_jax.errors import DataError

Params = Any
ApplyFn = Callable[[Params, jax.Array, Optional[jax.Array]], jax.Array]

# Keras' default kernel initializer; the paper's code relies on it.
glorot = nn.initializers.glorot_uniform()


MASK_IMPLS = ('hash', 'prng')


def mix32(x: jax.Array) -> jax.Array:
  """A bijective avalanche mix of uint32 words (C. Wellons' `lowbias32`)."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def seed_words(key: jax.Array) -> jax.Array:
  """The two uint32 words [2] a forward pass's hashed masks derive from."""
  return jax.random.bits(key, (2,), jnp.uint32)


def hashed_words(seed: jax.Array, n: int, stream: int = 0) -> jax.Array:
  """n pseudo-random uint32 words: a counter hash keyed by `seed` and `stream`.

  Word i is mix32(mix32(i * phi + a) ^ b) with phi = 2**32 / golden ratio
  (odd, so i -> i * phi is injective), a = seed[0] + stream * c and
  b = seed[1] ^ mix32(stream + c'): independent-looking words per seed and
  per stream (a dropout layer), from one PRNG call per forward pass. Why:
  threefry spends ~20 rounds per word and jax's per-layer key derivation
  more per key, which on a CPU made the masks cost several times the
  network they mask; this is a few integer operations per word that fuse
  into the consumer.

  Args:
    seed: [2] uint32 (see `seed_words`).
    n: number of words.
    stream: static index of the consumer (e.g. the dropout layer).

  Returns:
    [n] uint32.
  """
  a = seed[0] + jnp.uint32((stream * 0x632BE5AB) & 0xFFFFFFFF)
  b = seed[1] ^ mix32(jnp.uint32((stream + 0x5BD1E995) & 0xFFFFFFFF))
  counter = jax.lax.iota(jnp.uint32, n) * jnp.uint32(0x9E3779B9)
  return mix32(mix32(counter + a) ^ b)


def mask_from_words(words: jax.Array, shape: Sequence[int], rate: float,
                    bits: int) -> tuple[jax.Array, float]:
  """A keep mask of `shape` from [ceil(size * bits / 32)] uint32 words.

  Returns:
    (mask, keep_prob): bool mask and the exact probability that an element
    is kept (the drop rate quantised to a multiple of 2**-bits), used to
    scale the kept activations so E[output] = input.
  """
  levels = 2**bits
  threshold = min(int(round(rate * levels)), levels - 1)
  keep_prob = 1.0 - threshold / levels
  size = math.prod(shape)
  per_word = 32 // bits
  if per_word > 1:
    shifts = jnp.arange(per_word, dtype=jnp.uint32) * bits
    words = (words[:, None] >> shifts) & jnp.uint32(levels - 1)
  uniform_ints = words.reshape(-1)[:size].reshape(shape)
  return uniform_ints >= jnp.uint32(threshold), keep_prob


def num_words(shape: Sequence[int], bits: int) -> int:
  """uint32 words a mask of `shape` needs at `bits` bits per element."""
  return -(-math.prod(shape) // (32 // bits))


def keep_mask(key: jax.Array, shape: Sequence[int], rate: float,
              bits: int, impl: str = 'hash',
              stream: int = 0) -> tuple[jax.Array, float]:
  """Returns a Bernoulli keep mask and its exact keep probability.

  Args:
    key: PRNG key.
    shape: mask shape.
    rate: drop probability in [0, 1).
    bits: random bits per mask element: 32 (one word per element), 16 or 8
      (one 32-bit word is cut into 2 or 4 independent uniform integers, so
      2x or 4x fewer words; the drop probability is quantised to a multiple
      of 2**-bits).
    impl: where the words come from: 'hash' (`hashed_words` of the key's
      `seed_words`, the default) or 'prng' (`jax.random.bits` with the key's
      implementation, e.g. threefry: what `jax.random.bernoulli` costs).
    stream: with 'hash', which of the key's independent masks.

  Returns:
    (mask, keep_prob), see `mask_from_words`.
  """
  n = num_words(shape, bits)
  if impl == 'hash':
    words = hashed_words(seed_words(key), n, stream)
  elif impl == 'prng':
    words = jax.random.bits(key, (n,), jnp.uint32)
  else:
    raise ValueError(f'unknown mask impl {impl!r}; known: {MASK_IMPLS}')
  return mask_from_words(words, shape, rate, bits)


class MaskDropout(nn.Module):
  """Inverted dropout with cheap masks (see `keep_mask`).

  With impl 'hash' the mask of layer `stream` is hashed from the forward
  pass's `seed` words (one PRNG call per pass, not per layer); with 'prng'
  it comes from the 'dropout' rng stream like `nn.Dropout`.
  """
  rate: float
  bits: int = 32
  impl: str = 'hash'
  stream: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool,
               seed: Optional[jax.Array] = None) -> jax.Array:
    """x with dropout applied: the same shape (x itself when off).

    Args:
      x: [B, ...] activations.
      deterministic: True: no dropout.
      seed: [2] uint32 (`seed_words`), used only when impl is 'hash'.
    """
    if deterministic or self.rate == 0.0:
      return x
    if self.impl == 'hash':
      words = hashed_words(seed, num_words(x.shape, self.bits), self.stream)
      mask, keep_prob = mask_from_words(words, x.shape, self.rate, self.bits)
    else:
      mask, keep_prob = keep_mask(self.make_rng('dropout'), x.shape,
                                  self.rate, self.bits, 'prng')
    return jnp.where(mask, x / keep_prob, jnp.zeros_like(x))


def shifted_patches(x: jax.Array, size: int) -> jax.Array:
  """'SAME'-padded size x size neighbourhoods stacked on the channel axis.

  Args:
    x: [B, H, W, C_in].
    size: odd kernel size k.

  Returns:
    [B, H, W, k*k*C_in], patch channels ordered (dy, dx, c) like a flax
    kernel [k, k, C_in, F] reshaped to [k*k*C_in, F].
  """
  pad = size // 2
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  h, w = x.shape[1], x.shape[2]
  return jnp.concatenate([xp[:, dy:dy + h, dx:dx + w, :]
                          for dy in range(size) for dx in range(size)],
                         axis=-1)


_CONV_DIMS = ('NHWC', 'HWIO', 'NHWC')


def conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-1 'SAME' convolution.

  x [B, H, W, C_in] * kernel [k, k, C_in, F] -> [B, H, W, F].
  """
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                      dimension_numbers=_CONV_DIMS)


def conv_kernel_grad(x: jax.Array, g: jax.Array, size: int) -> jax.Array:
  """The kernel gradient of `conv_same` as k matmuls, [k, k, C_in, F].

  dw[dy, dx, c, f] = sum_{b,h,w} x_pad[b, h+dy, w+dx, c] * g[b, h, w, f].
  The k horizontal shifts of x are stacked on the channel axis
  ([B, H+k-1, W, k*C_in]: k x less memory than full k*k patches); kernel
  row dy is then one [k*C_in, B*H*W] x [B*H*W, F] matmul over the rows it
  sees.

  Args:
    x: [B, H, W, C_in] the convolution's input.
    g: [B, H, W, F] the gradient of its output.
    size: odd kernel size k.
  """
  pad = size // 2
  h, w, c = x.shape[1:]
  f = g.shape[-1]
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  rows = jnp.concatenate([xp[:, :, dx:dx + w, :] for dx in range(size)],
                         axis=-1)
  g2 = g.reshape(-1, f)
  per_row = [rows[:, dy:dy + h].reshape(-1, size * c).T @ g2
             for dy in range(size)]
  return jnp.stack(per_row).reshape(size, size, c, f)


@jax.custom_vjp
def conv_same_fast_grad(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`conv_same` whose gradient XLA:CPU runs fast inside loops.

  x [B, H, W, C_in] * kernel [k, k, C_in, F] -> [B, H, W, F], as
  `conv_same`.

  Why: XLA:CPU runs the gradients autodiff derives for a convolution (a
  batch-contracting convolution for the kernel, a padded/reversed one for
  the input) 20-100x slower inside a `while_loop` body, where the compiled
  epoch trains, than at top level. Here the input gradient is a plain
  'SAME' convolution (flipped kernel, in/out swapped) and the kernel
  gradient is `conv_kernel_grad`'s matmuls: both fast everywhere.
  """
  return conv_same(x, kernel)


def _conv_fwd(x, kernel):
  return conv_same(x, kernel), (x, kernel)


def _conv_bwd(residuals, g):
  x, kernel = residuals
  # Odd k, stride 1, symmetric padding: the transpose is a 'SAME' conv too.
  dx = conv_same(g, jnp.flip(kernel, (0, 1)).swapaxes(2, 3))
  return dx, conv_kernel_grad(x, g, kernel.shape[0])


conv_same_fast_grad.defvjp(_conv_fwd, _conv_bwd)


class SameConv(nn.Module):
  """A stride-1 'SAME' convolution with `nn.Conv`'s parameters (names,
  shapes, init), computed as `impl` says:

  'fast_grad': `conv_same_fast_grad` (native forward, fast custom gradient).
  'xla': `conv_same` with autodiff's gradients (what GPUs and TPUs run best;
    'auto' of `resolved_conv_impl` picks between the two by platform).
  'patches': shifted slices + one matmul: the earlier CPU training form,
    which materialises k*k shifted copies of the input; kept because a conv
    batched over seeds' weights becomes a batched matmul here rather than a
    grouped convolution.
  """
  features: int
  kernel_size: int = 3
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, H, W, C_in] -> [B, H, W, features]."""
    k, c = self.kernel_size, x.shape[-1]
    kernel = self.param('kernel', glorot, (k, k, c, self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    impl = resolved_conv_impl(self.impl)
    if impl == 'patches':
      y = shifted_patches(x, k) @ kernel.reshape(k * k * c, self.features)
    elif impl == 'xla':
      y = conv_same(x, kernel)
    else:
      y = conv_same_fast_grad(x, kernel)
    return y + bias


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pooling, stride 2, 'VALID' (odd trailing rows/columns dropped).

  As a reshape + max rather than `nn.max_pool`: the same values, and its
  gradient is elementwise instead of XLA's select-and-scatter, which costs
  a fifth of a CPU training step. (At ties, e.g. two dropped-out zeros, the
  gradient is shared between them instead of all going to the first.)

  Args:
    x: [B, H, W, C_in].

  Returns:
    [B, H // 2, W // 2, C_in].
  """
  b, h, w, c = x.shape
  x = x[:, :h - h % 2, :w - w % 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


CONV_IMPLS = ('auto', 'fast_grad', 'xla', 'patches')


def resolved_conv_impl(conv_impl: str) -> str:
  """'auto' -> 'fast_grad' on a CPU, 'xla' (native gradients) elsewhere."""
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f'unknown conv impl {conv_impl!r}; known: {CONV_IMPLS}')
  if conv_impl == 'auto':
    return 'fast_grad' if jax.default_backend() == 'cpu' else 'xla'
  return conv_impl


class ToyMLP(nn.Module):
  """The paper's §4 network: 2 -> 50 -> 50 -> 50 -> C, 5,352 parameters for
  C=2."""
  num_classes: int = 2
  hidden: Sequence[int] = (50, 50, 50)
  dropout_rate: float = 0.33
  negative_slope: float = 0.1
  dropout_bits: int = 32
  mask_impl: str = 'hash'

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True,
               seed: Optional[jax.Array] = None) -> jax.Array:
    """Logits of the MLP.

    Args:
      x: [B, ...] inputs, flattened to [B, D].
      deterministic: True: no dropout.
      seed: [2] uint32 (`seed_words`), the masks' words with mask_impl
        'hash'.

    Returns:
      [B, C] logits.
    """
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      x = nn.Dense(width, kernel_init=glorot)(x)
      x = nn.leaky_relu(x, self.negative_slope)
      x = MaskDropout(self.dropout_rate, self.dropout_bits, self.mask_impl,
                      stream=i)(x, deterministic, seed)
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
  mask_impl: str = 'hash'
  conv_impl: str = 'fast_grad'  # 'fast_grad', 'xla' (nn.Conv) or 'patches'.

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True,
               seed: Optional[jax.Array] = None) -> jax.Array:
    """Logits of the CNN.

    Args:
      x: [B, H, W, C_in] images, e.g. [B, 28, 28, 1].
      deterministic: True: no dropout.
      seed: [2] uint32 (`seed_words`), the masks' words with mask_impl
        'hash'.

    Returns:
      [B, C] logits.
    """
    for i in range(self.num_convs):
      name = f'Conv_{i}'
      if self.conv_impl == 'xla':
        x = nn.Conv(self.features, (3, 3), padding='SAME',
                    kernel_init=glorot, name=name)(x)
      else:
        x = SameConv(self.features, 3, self.conv_impl, name=name)(x)
      x = nn.leaky_relu(x, self.negative_slope)
      x = MaskDropout(self.dropout_rate, self.dropout_bits, self.mask_impl,
                      stream=i)(x, deterministic, seed)
      if i % 2 == 1:
        x = max_pool_2x2(x)
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_classes, kernel_init=glorot)(x)


class SoftmaxRegression(nn.Module):
  """The blog baseline: one dense layer 784 -> 10 starting at zero (7,850
  params)."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True,
               seed: Optional[jax.Array] = None) -> jax.Array:
    """x [B, ...] (flattened to [B, D]) -> logits [B, C]; no dropout."""
    del deterministic, seed  # No dropout: MC passes all agree.
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros)(x)


MODELS = {'mlp': ToyMLP, 'cnn': PaperCNN, 'softmax': SoftmaxRegression}


def is_user_model(name: str) -> bool:
  """True for a model named by where its code is, 'file.py:Name' or
  'package.module:Name', rather than one of MODELS."""
  return user_code.is_spec(name)


def user_module(spec: str, **settings) -> nn.Module:
  """The module of a user model, given those of `settings` (num_classes,
  dropout_rate, dropout_bits, negative_slope, mask_impl, conv_impl) its
  factory takes.

  Raises:
    ValueError: the factory does not take num_classes, or fails.
  """
  factory = user_code.loaded(spec)
  try:
    params = inspect.signature(factory).parameters
  except (TypeError, ValueError):  # No signature to read: offer them all.
    params = None
  if params is not None and not any(
      p.kind == p.VAR_KEYWORD for p in params.values()):
    if 'num_classes' not in params:
      raise ValueError(f'{spec!r}: it must take a num_classes '
                       'argument (the width of its logits)')
    settings = {k: v for k, v in settings.items() if k in params}
  try:
    return factory(**settings)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'{spec!r}: {user_code.error_line(e)}') from None


def features_and_logits(module: nn.Module, params: Params,
                        x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The deterministic forward pass with the input of its last `nn.Dense`.

  That input is the network's penultimate representation (the CNN's
  flattened last feature maps, the MLP's last hidden layer), the embedding
  the diversity acquisitions ('coreset', 'badge') measure distances in.
  Read with a flax method interceptor, so any module that ends in a dense
  layer has it without declaring anything.

  Args:
    module: the flax module, called as `module(x, deterministic=True)`.
    params: its parameters.
    x: [B, ...] inputs.

  Returns:
    (features [B, D] flattened, logits [B, C]).

  Raises:
    ValueError: the module calls no `nn.Dense`.
  """
  dense_inputs = []

  def grab(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.Dense) and context.method_name == (
        '__call__'):
      dense_inputs.append(args[0] if args else kwargs['inputs'])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(grab):
    logits = module.apply({'params': params}, x, deterministic=True)
  if not dense_inputs:
    raise ValueError(f'{type(module).__name__} calls no flax nn.Dense layer, '
                     'whose input is the embedding of the diversity '
                     "acquisitions ('coreset', 'badge')")
  return dense_inputs[-1].reshape(x.shape[0], -1), logits


@dataclasses.dataclass(frozen=True)
class Model:
  """A model as pure functions plus its static description.

  Attributes:
    init: `init(key, x) -> params` for an example batch x [B, ...].
    apply: `apply(params, x, key_or_None) -> logits [B, C]`, for inference
      and training alike (the CNN's convolutions carry fast gradients).
    module: the flax module (for introspection).
    embed: `embed(params, x) -> (features [B, D], logits [B, C])`, dropout
      off: `features_and_logits`.
  """
  init: Callable[[jax.Array, jax.Array], Params]
  apply: ApplyFn
  module: nn.Module
  embed: Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]


def build_model(name: str, num_classes: int, dropout_rate: float = 0.33,
                dropout_bits: int = 32, negative_slope: float = 0.1,
                mask_impl: str = 'hash', conv_impl: str = 'auto') -> Model:
  """Returns the named model as pure `init` / `apply` functions.

  Args:
    name: 'mlp' (toy), 'cnn' (the paper's MNIST CNN), 'softmax' (blog), or
      a module of one's own, 'file.py:Name' or 'package.module:Name' (see
      `user_module`): a flax module called as `module(x, deterministic,
      seed)` -> logits [B, num_classes], its dropout `MaskDropout` layers
      given `seed` (one `stream` each).
    num_classes: C, the width of the logits.
    dropout_rate: drop probability of every dropout layer.
    dropout_bits: random bits per mask element (32, 16 or 8).
    negative_slope: LeakyReLU slope (the paper: 0.1).
    mask_impl: dropout mask bits from 'hash' or 'prng' (see `keep_mask`).
    conv_impl: the CNN's convolutions, see `CONV_IMPLS` (same parameters
      and outputs; they differ in speed only).
  """
  if mask_impl not in MASK_IMPLS:
    raise ValueError(f'unknown mask impl {mask_impl!r}; known: {MASK_IMPLS}')
  if name == 'softmax':
    module = SoftmaxRegression(num_classes=num_classes)
  elif name == 'cnn':
    module = PaperCNN(num_classes=num_classes, dropout_rate=dropout_rate,
                      dropout_bits=dropout_bits, negative_slope=negative_slope,
                      mask_impl=mask_impl,
                      conv_impl=resolved_conv_impl(conv_impl))
  elif name in MODELS:
    module = MODELS[name](num_classes=num_classes, dropout_rate=dropout_rate,
                          dropout_bits=dropout_bits,
                          negative_slope=negative_slope, mask_impl=mask_impl)
  elif is_user_model(name):
    module = user_module(name, num_classes=num_classes,
                         dropout_rate=dropout_rate, dropout_bits=dropout_bits,
                         negative_slope=negative_slope, mask_impl=mask_impl,
                         conv_impl=resolved_conv_impl(conv_impl))
  else:
    raise ValueError(f'unknown model {name!r}; known: {sorted(MODELS)}, or '
                     "one of your own as 'file.py:Name'")

  def init(key: jax.Array, x: jax.Array) -> Params:
    return module.init({'params': key}, x, deterministic=True)['params']

  def apply(params: Params, x: jax.Array,
            key: Optional[jax.Array] = None) -> jax.Array:
    if key is None:
      return module.apply({'params': params}, x, deterministic=True)
    if mask_impl == 'hash':
      return module.apply({'params': params}, x, deterministic=False,
                          seed=seed_words(key))
    return module.apply({'params': params}, x, deterministic=False,
                        rngs={'dropout': key})

  return Model(init=init, apply=apply, module=module,
               embed=functools.partial(features_and_logits, module))


def abstract_batch(sample_shape: Sequence[int], dtype
                   ) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]:
  """(x, key): the shapes of a batch of 2 inputs and of a PRNG key, what
  the model checks below trace a model on without running it."""
  return (jax.ShapeDtypeStruct((2,) + tuple(sample_shape), dtype),
          jax.eval_shape(lambda: jax.random.key(0)))


def check_logits(model: Model, sample_shape: Sequence[int], dtype,
                 num_classes: int, name: str) -> None:
  """Traces (never runs) `model` on a batch of 2 inputs, deterministic and
  with a key, for a model of one's own whose contract nothing else checks.

  Raises:
    ValueError: tracing fails (the first line of its error), or the logits
      are not [2, num_classes] floats.
  """
  x, key = abstract_batch(sample_shape, dtype)
  where = f'{name!r} on inputs {x.shape} {x.dtype}'
  params = None
  for mode, k in (('deterministic', None), ('with dropout', key)):
    try:
      if params is None:  # Traced once; its errors count as deterministic.
        params = jax.eval_shape(model.init, key, x)
      out = jax.eval_shape(model.apply, params, x, k)
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f'{where} ({mode}): {user_code.error_line(e)}'
                       ) from None
    shape = getattr(out, 'shape', None)
    if shape != (2, num_classes) or not jnp.issubdtype(out.dtype,
                                                       jnp.floating):
      got = (f'{shape} {out.dtype}' if shape is not None
             else type(out).__name__)
      raise ValueError(f'{where} ({mode}) returned {got}, expected logits '
                       f'(2, {num_classes}) float')


def check_features(model: Model, sample_shape: Sequence[int], dtype,
                   name: str) -> None:
  """Traces (never runs) `model.embed` on a batch of 2 inputs: the
  diversity acquisitions need a last `nn.Dense` whose input they embed by.

  Raises:
    ValueError: naming the model and why (e.g. no `nn.Dense` layer).
  """
  x, key = abstract_batch(sample_shape, dtype)
  try:
    jax.eval_shape(model.embed, jax.eval_shape(model.init, key, x), x)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'{name!r}: {user_code.error_line(e)}') from None


def draws_masks(model: Model, sample_shape: Sequence[int], dtype) -> bool:
  """Whether `model.apply(params, x, key)`'s logits depend on the key at all
  (traced on a batch of 2 inputs, never run): False for a network without
  dropout, or with dropout rate 0, whose MC passes are all the same pass.
  """
  x, key = abstract_batch(sample_shape, dtype)
  params = jax.eval_shape(model.init, key, x)
  closed = jax.make_jaxpr(model.apply)(params, x, key)
  return closed.jaxpr.invars[-1] in _needed_vars(closed.jaxpr)


def _needed_vars(jaxpr) -> set:
  """The variables `jaxpr`'s outputs depend on (an equation counts whole:
  every input of one whose outputs are needed is needed)."""
  needed = {v for v in jaxpr.outvars if isinstance(v, jax_core.Var)}
  for eqn in reversed(jaxpr.eqns):
    if any(v in needed for v in eqn.outvars):
      needed.update(v for v in eqn.invars if isinstance(v, jax_core.Var))
  return needed


def params_from_file(path: str, template: Params) -> Params:
  """Parameters stored by `flax.serialization.to_bytes` (msgpack), checked
  against `template` (the model's own init): the same tree, shapes and
  dtypes.

  Raises:
    DataError: the file is missing or not a msgpack parameter file.
    ConfigError: its parameters are not this model's (names which differ).
  """
  try:
    with open(path, 'rb') as f:
      stored = flax.serialization.msgpack_restore(f.read())
  except OSError as e:
    raise DataError(f'config.init_params={path}: {e.strerror or e}') from None
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f'config.init_params={path} is not a parameter file of '
                    f'flax.serialization.to_bytes ({type(e).__name__}: '
                    f'{str(e).splitlines()[0] if str(e) else ""})') from None
  want = flax.traverse_util.flatten_dict(
      flax.serialization.to_state_dict(template), sep='/')
  have = flax.traverse_util.flatten_dict(stored, sep='/') if isinstance(
      stored, dict) else {}
  where = f'config.init_params={path}'
  if set(have) != set(want):
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    raise ConfigError(
        f'{where} holds other parameters than this model\'s: '
        + '; '.join(f'{what} {_some(names)}' for what, names in (
            ('missing', missing), ('not in the model', extra)) if names)
        + ' (another model or number of classes?)')
  for name, leaf in want.items():
    got = np.asarray(have[name])
    if got.shape != leaf.shape or got.dtype != leaf.dtype:
      raise ConfigError(
          f'{where}: {name} is {got.dtype}{list(got.shape)}, this model\'s '
          f'is {leaf.dtype}{list(leaf.shape)} (another model, input size or '
          'number of classes?)')
  return flax.serialization.from_state_dict(
      template, flax.traverse_util.unflatten_dict(
          {k: jnp.asarray(v) for k, v in have.items()}, sep='/'))


def _some(names: list[str], shown: int = 3) -> str:
  """'a, b, c and 4 more'."""
  more = f' and {len(names) - shown} more' if len(names) > shown else ''
  return ', '.join(names[:shown]) + more


def with_initial_params(model: Model, params: Params) -> Model:
  """`model` whose init returns `params` (whatever the key): every seed,
  and every retrain, starts from them."""
  return dataclasses.replace(model, init=lambda key, x: params)


def num_params(params: Params) -> int:
  """Returns the number of scalar parameters in a pytree."""
  return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))


def is_kernel(path: tuple[Any, ...]) -> bool:
  """True for a 'kernel' leaf path (the weights the L2 penalty applies to)."""
  last = path[-1]
  return getattr(last, 'key', getattr(last, 'name', None)) == 'kernel'
