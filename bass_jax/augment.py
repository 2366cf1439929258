"""Training-time augmentation of image batches: random shifts and flips.

`config.augment` names what each training batch goes through before its
step: 'shift:<s>' moves every image by its own random offset of up to s
pixels in each direction (its border pixels repeated into the gap), 'flip'
mirrors every image left-right with probability 1/2, 'shift:2+flip' does
both. Only training sees it: the MC-dropout sweeps (entropy, pseudo-labels,
acquisitions) and the validation score the images as they are. 'none' (the
default, the paper's setting) leaves the batches untouched: the program
is then the one without augmentation.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

# Folded into a step's key for its augmentation draws, apart from the key
# its dropout masks hash.
_STREAM = 0x61756720


@dataclasses.dataclass(frozen=True)
class Augment:
  """What a training batch goes through (hashable: part of the program)."""
  shift: int = 0     # Largest offset, in pixels, along each image axis.
  flip: bool = False  # Left-right mirror with probability 1/2.

  @property
  def active(self) -> bool:
    return self.shift > 0 or self.flip


def parse(text: str) -> Augment:
  """The Augment of a `config.augment` string ('none' or '', 'shift:2',
  'flip', 'shift:2+flip'; '+' joins parts, so that a sweep's
  `--vary=augment=none,shift:2+flip` lists values with commas).

  Raises:
    ValueError: one line naming the part that is not 'shift:<int >= 0>' or
      'flip', or a part given twice.
  """
  shift, flip, seen = 0, False, set()
  if text.strip() == 'none':
    return Augment()
  for part in (p.strip() for p in text.split('+') if p.strip()):
    name, _, value = part.partition(':')
    if name in seen:
      raise ValueError(f'config.augment={text!r} names {name!r} twice')
    seen.add(name)
    if name == 'flip' and not value:
      flip = True
    elif name == 'shift' and value.strip().isdigit():
      shift = int(value)
    else:
      raise ValueError(f'config.augment={text!r}: {part!r} is not '
                       "'shift:<pixels>' or 'flip' (e.g. 'shift:2+flip', or "
                       "'none')")
  return Augment(shift, flip)


def shifted(x: jax.Array, offsets: jax.Array, shift: int) -> jax.Array:
  """Each image moved by its own offset, border pixels filling the gap.

  Args:
    x: [B, H, W, C] images.
    offsets: [B, 2] int32 in [0, 2 * shift]: image b's content moves by
      shift - offsets[b] pixels down and to the right (negative: up, left).
    shift: the largest move (static).

  Returns:
    [B, H, W, C]: out[b, i, j] = x[b, clip(i - shift + oy), clip(j - shift
    + ox)], (oy, ox) = offsets[b], indices clipped to the image.
  """
  _, height, width, channels = x.shape
  padded = jnp.pad(x, ((0, 0), (shift, shift), (shift, shift), (0, 0)),
                   mode='edge')
  crop = lambda img, o: jax.lax.dynamic_slice(
      img, (o[0], o[1], 0), (height, width, channels))
  return jax.vmap(crop)(padded, offsets)


def augmented(x: jax.Array, key: jax.Array, spec: Augment) -> jax.Array:
  """A training batch x [B, H, W, C] after `spec`'s random shifts and flips,
  drawn per image from `key` (a step's key: `_STREAM` is folded in first).
  Returns x itself where `spec` is inactive."""
  if not spec.active:
    return x
  shift_key, flip_key = jax.random.split(jax.random.fold_in(key, _STREAM))
  if spec.shift:
    offsets = jax.random.randint(shift_key, (x.shape[0], 2), 0,
                                 2 * spec.shift + 1, dtype=jnp.int32)
    x = shifted(x, offsets, spec.shift)
  if spec.flip:
    mirror = jax.random.bernoulli(flip_key, 0.5, (x.shape[0],))
    x = jnp.where(mirror[:, None, None, None], x[:, :, ::-1, :], x)
  return x
