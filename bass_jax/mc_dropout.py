"""MC-dropout inference: T stochastic passes, folded into the batch, chunked.

Randomness is per sample: the mask of pass t on sample i comes from
`fold_in(key, i)` split T ways, where i is the sample's index in the pool. So a
sample's MC statistics do not depend on the chunk size, the padding, the
device count or which other samples share its batch: chunked = unchunked and
sharded = unsharded hold exactly, not just in distribution.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.extend.core
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from bass_jax import selection
from bass_jax import sharding
from bass_jax import uncertainty
from bass_jax import user_code

ApplyFn = Callable  # (params, x [B, ...], key | None) -> logits [B, C]


def sample_keys(key: jax.Array, indices: jax.Array,
                num_passes: int) -> jax.Array:
  """Returns the dropout keys [T, B] of samples `indices` [B] for T passes."""
  per_sample = jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)
  return jax.vmap(lambda k: jax.random.split(k, num_passes), out_axes=1)(
      per_sample)


def mc_probs(apply_fn: ApplyFn, params, x: jax.Array,
             keys: jax.Array) -> jax.Array:
  """Softmax outputs of T dropout passes over a batch.

  The two vmaps (passes, samples) fold into one batch of T*B for the
  network's convolutions and matmuls; every (pass, sample) pair draws its own
  dropout mask from its key.

  Args:
    apply_fn: the model's forward pass.
    params: model parameters.
    x: [B, ...] inputs.
    keys: [T, B] dropout keys (see `sample_keys`).

  Returns:
    [T, B, C] float32 probabilities.
  """
  def one(xi, k):
    return apply_fn(params, xi[None], k)[0]

  logits = jax.vmap(jax.vmap(one, in_axes=(0, 0)), in_axes=(None, 0))(x, keys)
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


MC_PRECISIONS = ('default', 'float32', 'tensorfloat32', 'bfloat16')

# The paper CNN's widest activation of one image: 28 x 28 x 16 float32.
CNN_SAMPLE_BYTES = 28 * 28 * 16 * 4
# The forward batch of an 'auto' chunk (config.chunk_size / eval_chunk_size
# 0), in paper-CNN images per platform; other models get the same activation
# bytes (`auto_chunk_size`). CPU: measured (benchmarks/hot_path.py, its
# `mc_sweep_chunk` lines; benchmarks/results/cpu_2core_chunk.jsonl): on 2
# cores batches of 100-1,000 forwards (10-100 images at T = 10) run the
# paper CNN's MC sweep faster than one of 10,000 (their activations stay in
# cache). GPU/TPU: large batches to fill the device (~0.8 GB per CNN layer
# at 16,384); on an H200 that batch ran within 15 % of the fastest measured
# (60,000) at a quarter of its memory (benchmarks/results/h200_hot_path.jsonl).
AUTO_BATCH = {'cpu': 256, 'gpu': 16384, 'tpu': 16384}


def auto_chunk_size(platform: str, num_passes: int = 1,
                    sample_bytes: int = CNN_SAMPLE_BYTES) -> int:
  """Samples per chunk for a sweep of `num_passes` passes on `platform`.

  Args:
    platform: 'cpu', 'gpu' or 'tpu'; an unknown one gets the GPU size.
    num_passes: dropout passes per sample (1 for the evaluation).
    sample_bytes: the model's widest activation of one sample (see
      `sample_activation_bytes`); the default is the paper CNN's.

  Returns:
    max(1, AUTO_BATCH[platform] * CNN_SAMPLE_BYTES // (num_passes *
    sample_bytes)): the CNN's measured batch, and for another model the
    batch whose activations take as many bytes (the toy MLP's 50 floats
    give ~250x the CNN's images: its chunks of 256 images were all loop
    overhead).
  """
  images = AUTO_BATCH.get(platform, AUTO_BATCH['gpu'])
  return max(1, images * CNN_SAMPLE_BYTES // (num_passes * sample_bytes))


def _widest_output_bytes(jaxpr) -> int:
  """Bytes of the largest array any equation of `jaxpr` (or of a nested
  jaxpr: loops, custom gradients, jitted calls) produces."""
  widest = 0
  for eqn in jaxpr.eqns:
    for var in eqn.outvars:
      aval = var.aval
      if hasattr(aval, 'shape') and hasattr(aval, 'dtype'):
        itemsize = getattr(aval.dtype, 'itemsize', 8)
        widest = max(widest, math.prod(aval.shape) * itemsize)
  for sub in _nested_jaxprs(jaxpr):
    widest = max(widest, _widest_output_bytes(sub))
  return widest


def _nested_jaxprs(jaxpr):
  """The jaxprs one level down in `jaxpr`'s equations (loop bodies, jitted
  calls, custom-gradient functions).

  `jax.extend.core.subjaxprs` where this jax has it; otherwise the Jaxpr
  and ClosedJaxpr values of the equations' parameters, which is what it
  returns, so the estimate does not depend on the jax version.
  """
  subjaxprs = getattr(jax.extend.core, 'subjaxprs', None)
  if subjaxprs is not None:
    yield from subjaxprs(jaxpr)
    return
  for eqn in jaxpr.eqns:
    for value in eqn.params.values():
      for item in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(item, jax.extend.core.ClosedJaxpr):
          yield item.jaxpr
        elif isinstance(item, jax.extend.core.Jaxpr):
          yield item


def sample_activation_bytes(init_fn: Callable, apply_fn: ApplyFn,
                            sample_shape: Sequence[int],
                            dtype=jnp.float32) -> int:
  """Bytes of the widest array one sample's dropout forward pass creates.

  Traced, never run: the model is abstractly initialised and its forward
  pass with dropout on (a batch of one) turned into a jaxpr, whose largest
  intermediate (or the input itself, which a chunk slices from the pool)
  is what a batch of B samples multiplies by B.

  Args:
    init_fn: `init(key, x) -> params`.
    apply_fn: the model's forward pass.
    sample_shape: one input's shape, e.g. (28, 28, 1).
    dtype: the inputs' dtype.
  """
  x = jax.ShapeDtypeStruct((1,) + tuple(sample_shape), dtype)
  key = jax.eval_shape(lambda: jax.random.key(0))
  params = jax.eval_shape(init_fn, key, x)
  closed = jax.make_jaxpr(apply_fn)(params, x, key)
  return max(_widest_output_bytes(closed.jaxpr),
             math.prod(x.shape) * x.dtype.itemsize, 1)


def _to_bfloat16(a: jax.Array) -> jax.Array:
  return a.astype(jnp.bfloat16) if jnp.issubdtype(a.dtype,
                                                  jnp.floating) else a


def with_precision(apply_fn: ApplyFn, precision: str) -> ApplyFn:
  """`apply_fn` computing at `precision`, for the MC sweeps.

  Args:
    apply_fn: the model's forward pass.
    precision: 'default': the platform's default for float32 matmuls and
      convolutions (full float32 on a CPU; TF32 on Ampere and later NVIDIA
      GPUs; bfloat16 passes on a TPU). 'float32' / 'tensorfloat32': that
      matmul precision (`jax.default_matmul_precision`), inputs and
      parameters stay float32. 'bfloat16': parameters and inputs cast to
      bfloat16, so every activation is bfloat16 too (half the memory
      traffic; bf16 tensor cores).

  Returns:
    apply(params, x, key) -> logits; float32 logits for 'bfloat16', so the
    softmax and every statistic of the sweep stay float32.
  """
  if precision not in MC_PRECISIONS:
    raise ValueError(f'unknown precision {precision!r}; known: '
                     f'{MC_PRECISIONS}')
  if precision == 'default':
    return apply_fn
  if precision == 'bfloat16':
    def apply_bf16(params, x, key=None):
      params = jax.tree_util.tree_map(_to_bfloat16, params)
      return apply_fn(params, _to_bfloat16(x), key).astype(jnp.float32)
    return apply_bf16

  def apply_at(params, x, key=None):
    # Resolved while tracing: the dots and convolutions traced here carry it.
    with jax.default_matmul_precision(precision):
      return apply_fn(params, x, key)
  return apply_at


def chunk_starts(n: int, chunk_size: int) -> jax.Array:
  """Start rows of the chunks covering [0, n): [ceil(n / chunk)] int32.

  The last chunk starts at n - chunk_size (it may overlap the previous one)
  so every chunk is a full, in-bounds slice of the unpadded array.
  """
  num_chunks = -(-n // chunk_size)
  return jnp.minimum(jnp.arange(num_chunks, dtype=jnp.int32) * chunk_size,
                     n - chunk_size)


def chunks_needed(starts: jax.Array, num_rows: jax.Array) -> jax.Array:
  """How many of the chunks at `starts` (`chunk_starts`) cover rows
  [0, num_rows): those starting below it (int32 scalar)."""
  return jnp.sum(starts < num_rows, dtype=jnp.int32)


def map_chunks(fn: Callable, n: int, chunk_size: int, *arrays: jax.Array,
               num_rows: jax.Array | None = None):
  """fn over row chunks of `arrays` ([n, ...] each), results reassembled.

  Why not reshape into [num_chunks, chunk, ...] and `lax.map`: that pads and
  re-lays out a copy of the inputs, so memory would grow by a pool copy.
  Here each step slices its chunk in place and writes its rows of the
  outputs; overlapping rows of the last chunk are written twice with the
  same values (`fn` must be row-wise: row i's output depends on row i only).

  Args:
    fn: (*chunks [chunk, ...]) -> pytree of [chunk, ...] arrays.
    n: rows.
    chunk_size: rows per step, at most n (static).
    *arrays: [n, ...] inputs.
    num_rows: optional int32 scalar: only rows [0, num_rows) are needed, so
      only the chunks starting below it run (a loop of data-dependent trip
      count, hence no recompilation as it grows); the rows no chunk covers
      are zeros. None: every row.

  Returns:
    The pytree of `fn`'s outputs, [n, ...] each.
  """
  def chunk_of(start):
    return [jax.lax.dynamic_slice_in_dim(a, start, chunk_size) for a in arrays]

  out_shapes = jax.eval_shape(fn, *chunk_of(0))
  zeros = jax.tree_util.tree_map(
      lambda s: jnp.zeros((n,) + s.shape[1:], s.dtype), out_shapes)
  starts = chunk_starts(n, chunk_size)

  def body(j, out):
    start = starts[j]
    result = fn(*chunk_of(start))
    return jax.tree_util.tree_map(
        lambda o, r: jax.lax.dynamic_update_slice_in_dim(o, r, start, 0),
        out, result)

  num_chunks = (starts.shape[0] if num_rows is None else
                chunks_needed(starts, num_rows))
  return jax.lax.fori_loop(0, num_chunks, body, zeros)


def mc_statistics(probs: jax.Array,
                  score_names: Sequence[str]) -> dict[str, jax.Array]:
  """Per-sample statistics of MC samples [T, B, C].

  Returns:
    'mean_probs' [B, C], 'pseudo_label' [B] int32 (eq. 4), 'entropy' [B]
    (eq. 3), and each requested score in `score_names` [B].
  """
  mean_probs = jnp.mean(probs, axis=0)
  out = {
      'mean_probs': mean_probs,
      'pseudo_label': jnp.argmax(mean_probs, axis=-1).astype(jnp.int32),
      'entropy': uncertainty.normalized_entropy(mean_probs),
  }
  for name in score_names:
    if name not in out:
      out[name] = score_fn(name)(probs, mean_probs)
  return out


SCORE_FNS = {
    'entropy': lambda p, m: uncertainty.normalized_entropy(m),
    'bald': lambda p, m: uncertainty.mutual_information(p),
    'variation_ratio': lambda p, m: uncertainty.variation_ratio(p),
    'mean_std': lambda p, m: uncertainty.mean_std(p),
    'least_confidence': lambda p, m: uncertainty.least_confidence(m),
    'margin': lambda p, m: uncertainty.margin(m),
}


def score_fn(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """The score `name` as (probs [T, B, C], mean_probs [B, C]) -> [B],
  higher = more uncertain: one of SCORE_FNS, or a function of one's own
  ('scores.py:my_score', see `user_code.loaded`) called the same way.

  Raises:
    ValueError: a function of one's own that cannot be loaded.
  """
  if name in SCORE_FNS:
    return SCORE_FNS[name]
  return user_code.loaded(name)


def example_probs(num_passes: int, num_classes: int) -> jax.Array:
  """[T, 3, C] MC passes of 3 samples: confident (every pass 0.9 on class
  0), uncertain (every pass uniform) and disputed (pass t 0.9 on class
  t mod C); no probability is 0, as a softmax's rarely is."""
  rest = 0.1 / (num_classes - 1)
  confident = jnp.full((num_classes,), rest).at[0].set(0.9)
  uniform = jnp.full((num_classes,), 1.0 / num_classes)
  disputed = jnp.stack([jnp.roll(confident, t) for t in range(num_passes)])
  return jnp.stack([jnp.broadcast_to(confident, disputed.shape),
                    jnp.broadcast_to(uniform, disputed.shape), disputed],
                   axis=1).astype(jnp.float32)


def check_score(name: str, num_passes: int, num_classes: int) -> None:
  """Traces the score `name` on 3 samples' [T, 3, C] passes, then runs it
  on `example_probs`.

  Raises:
    ValueError: "'name' ...": tracing fails (the first line of its error),
      it does not return one float score per sample, [3], or it returns a
      NaN or infinite score for those valid probabilities (a score that is
      never a number would silently rank every sample last).
  """
  probs = jax.ShapeDtypeStruct((num_passes, 3, num_classes), jnp.float32)
  mean_probs = jax.ShapeDtypeStruct((3, num_classes), jnp.float32)
  where = f'{name!r} on probs ({num_passes}, 3, {num_classes})'
  fn = score_fn(name)
  try:
    out = jax.eval_shape(fn, probs, mean_probs)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'{where}: {user_code.error_line(e)}') from None
  shape = getattr(out, 'shape', None)
  if shape != (3,) or not jnp.issubdtype(out.dtype, jnp.floating):
    got = f'{shape} {out.dtype}' if shape is not None else type(out).__name__
    raise ValueError(f'{where} returned {got}, expected scores (3,) float '
                     '(one per sample)')
  probs = example_probs(num_passes, num_classes)
  try:
    values = jax.device_get(jax.jit(fn)(probs, probs.mean(axis=0)))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'{where}: {user_code.error_line(e)}') from None
  if not jnp.isfinite(values).all():
    raise ValueError(
        f'{where} returned {[float(v) for v in values]} for a confident, a '
        'uniform and a disputed sample: every score must be a finite number')


def mc_sweep(apply_fn: ApplyFn, params, x: jax.Array, key: jax.Array,
             num_passes: int, chunk_size: int,
             score_names: Sequence[str] = (),
             indices: jax.Array | None = None,
             num_rows: jax.Array | None = None) -> dict[str, jax.Array]:
  """MC-dropout statistics over a pool of any size with bounded memory.

  The pool is processed `chunk_size` samples at a time (`map_chunks`), so at
  most T * chunk_size activations are alive and the pool is never copied;
  only per-sample statistics are returned, never the [T, N, C] samples.

  Args:
    apply_fn: the model's forward pass.
    params: model parameters.
    x: [N, ...] inputs.
    key: PRNG key of this sweep.
    num_passes: T, dropout passes per sample.
    chunk_size: samples per chunk (static).
    score_names: extra scores to compute (see `uncertainty.SCORE_NAMES`).
    indices: [N] int32 sample ids that seed each sample's masks; default
      0..N-1 (the position in x).
    num_rows: optional int32 scalar: only the first num_rows samples are
      needed (see `map_chunks`); later rows may be zeros.

  Returns:
    Dict of [N, ...] arrays, see `mc_statistics`.
  """
  n = x.shape[0]
  if indices is None:
    indices = jnp.arange(n, dtype=jnp.int32)

  def one_chunk(xc, ic):
    probs = mc_probs(apply_fn, params, xc, sample_keys(key, ic, num_passes))
    return mc_statistics(probs, score_names)

  return map_chunks(one_chunk, n, min(chunk_size, n), x, indices,
                    num_rows=num_rows)


def consistent_probs(apply_fn: ApplyFn, params, x: jax.Array,
                     key: jax.Array, num_passes: int,
                     chunk_size: int) -> jax.Array:
  """Softmax samples [B, T, C] where pass t is one network for every sample.

  "Consistent MC dropout" (Kirsch et al. 2019): pass t draws every
  sample's masks from the same key, so the T passes are T sampled networks
  and the samples' labels can be modelled jointly (BatchBALD). The sweeps
  above give every sample its own masks instead. Chunked like `mc_sweep`;
  a sample's row does not depend on its chunk.

  Args:
    apply_fn: the model's forward pass.
    params: model parameters.
    x: [B, ...] inputs.
    key: PRNG key of this sweep.
    num_passes: T.
    chunk_size: samples per chunk (static).

  Returns:
    [B, T, C] float32 probabilities.
  """
  pass_keys = jax.random.split(key, num_passes)

  def one(xi, k):
    return apply_fn(params, xi[None], k)[0]

  def one_chunk(xc):
    logits = jax.vmap(jax.vmap(one, in_axes=(0, None)), in_axes=(None, 0),
                      out_axes=1)(xc, pass_keys)
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

  n = x.shape[0]
  return map_chunks(one_chunk, n, min(chunk_size, n), x)


def predict_logits(apply_fn: ApplyFn, params, x: jax.Array,
                   chunk_size: int) -> jax.Array:
  """Deterministic (dropout off) logits [N, C] of x [N, ...], computed
  chunk by chunk."""
  n = x.shape[0]
  return map_chunks(lambda xc: apply_fn(params, xc, None), n,
                    min(chunk_size, n), x)


def accuracy(apply_fn: ApplyFn, params, x: jax.Array, y: jax.Array,
             chunk_size: int) -> jax.Array:
  """Deterministic accuracy (a scalar in [0, 1]) of the model on
  x [N, ...] with labels y [N] int32."""
  logits = predict_logits(apply_fn, params, x, chunk_size)
  return jnp.mean(jnp.argmax(logits, axis=-1) == y)


# Off: under the seed vmap (spmd_axis_name='seed') jax 0.10's varying-axes
# check rejects adds of seed-batched parameters to data-sharded activations
# (it asks for this workaround). The specs above are exact, so nothing is lost.
_CHECK_VMA = False


def data_parallel_sweep(mesh: Mesh | None, apply_fn: ApplyFn, params,
                        x: jax.Array, key: jax.Array, num_passes: int,
                        chunk_size: int, score_names: Sequence[str] = (),
                        indices: jax.Array | None = None,
                        num_rows: jax.Array | None = None
                        ) -> dict[str, jax.Array]:
  """`mc_sweep` of x [N, ...] with every 'data' device sweeping its N/D shard.

  Each shard gets its samples' global pool indices, so the per-sample keys,
  hence the statistics, are those of the unsharded sweep. Parameters and the
  key are replicated over 'data'; nothing is communicated during the sweep.

  Args:
    mesh: the run's mesh (see `sharding.make_mesh`); None: one device.
    apply_fn, params, key, num_passes, chunk_size, score_names: as for
      `mc_sweep` (chunk_size then bounds each device's chunks).
    x: [N, ...] inputs, N divisible by the 'data' axis size.
    indices: [N] int32 pool index of each row of x (its masks' key);
      None: x is the pool, row i is sample i.
    num_rows: optional int32 scalar: only rows [0, num_rows) of x are
      needed (see `mc_sweep`); each device sweeps its shard's part of them.

  Returns:
    Dict of [N, ...] arrays split over 'data', see `mc_statistics`.
  """
  if mesh is None:
    return mc_sweep(apply_fn, params, x, key, num_passes, chunk_size,
                    score_names, indices, num_rows)

  def local(params, x, indices, key, num_rows):
    if num_rows is not None:  # Of this device's rows, the needed ones.
      start = jax.lax.axis_index(sharding.DATA) * x.shape[0]
      num_rows = jnp.clip(num_rows - start, 0, x.shape[0])
    return mc_sweep(apply_fn, params, x, key, num_passes, chunk_size,
                    score_names, indices, num_rows)

  data = P(sharding.DATA)
  if indices is None:
    indices = jnp.arange(x.shape[0], dtype=jnp.int32)
  return jax.shard_map(local, mesh=mesh,
                       in_specs=(P(), data, data, P(), P()),
                       out_specs=data, check_vma=_CHECK_VMA)(
                           params, x, indices, key, num_rows)


def labelled_sweep(mesh: Mesh | None, apply_fn: ApplyFn, params,
                   pool_x: jax.Array, idx: jax.Array, key: jax.Array,
                   num_passes: int, chunk_size: int,
                   num_valid: jax.Array | None = None
                   ) -> dict[str, jax.Array]:
  """`mc_sweep` of the pool rows `idx`, split over 'data' like the pool's.

  The ground-truth sweep (T passes over the labelled samples, for theta):
  with a 'data' axis each device sweeps its share of the L slots instead
  of all of them, the slots padded to a multiple of the axis size (padding
  rows are swept and dropped). Each row's masks are keyed by its pool
  index, so the statistics are those of the unsharded sweep.

  Args:
    mesh: the run's mesh; None: one device.
    apply_fn, params, key, num_passes, chunk_size: as for `mc_sweep`.
    pool_x: [N, ...] the pool, split along N over 'data'.
    idx: [L] int32 pool indices of the label slots
      (`selection.labelled_slots`).
    num_valid: optional int32 scalar: only the first num_valid slots hold
      labels (`selection.labelled_slots`), so only the chunks holding them
      are swept: early in a run, when few of the L slots are filled, the
      T-pass sweep costs what the labels need. The other rows may be zeros.

  Returns:
    Dict of [L, ...] arrays, see `mc_statistics`.
  """
  k = idx.shape[0]
  devices = 1 if mesh is None else mesh.shape[sharding.DATA]
  padded = jnp.pad(idx, (0, -k % devices))  # Row 0 fills; results dropped.
  x = sharding.gather_rows(mesh, pool_x, padded)
  stats = data_parallel_sweep(mesh, apply_fn, params, x, key, num_passes,
                              chunk_size, indices=padded, num_rows=num_valid)
  return {name: value[:k] for name, value in stats.items()}


def embedding_sweep(embed_fn: Callable, params, x: jax.Array,
                    chunk_size: int, centers: jax.Array | None = None,
                    center_valid: jax.Array | None = None
                    ) -> dict[str, jax.Array]:
  """The deterministic embeddings of x [N, ...], chunk by chunk.

  Args:
    embed_fn: (params, x [B, ...]) -> (features [B, D], logits [B, C]), see
      `models.features_and_logits`.
    params: the model's parameters.
    x: [N, ...] inputs.
    chunk_size: rows per step (at most N is used).
    centers: optional [L, D] features (e.g. of the labelled samples) and
    center_valid: [L] bool, which of them count.

  Returns:
    'features' [N, D], 'probs' [N, C] float32 softmax, and with centers
    'nearest_d2' [N], each row's squared distance to its nearest valid
    center (`selection.nearest_center_sq_dists`), computed chunk by chunk
    so no [N, L] matrix is ever held.
  """
  def one_chunk(xc):
    features, logits = embed_fn(params, xc)
    out = {'features': features,
           'probs': jax.nn.softmax(logits.astype(jnp.float32), axis=-1)}
    if centers is not None:
      out['nearest_d2'] = selection.nearest_center_sq_dists(
          features, centers, center_valid)
    return out

  n = x.shape[0]
  return map_chunks(one_chunk, n, min(chunk_size, n), x)


def data_parallel_embedding_sweep(mesh: Mesh | None, embed_fn: Callable,
                                  params, x: jax.Array, chunk_size: int,
                                  centers: jax.Array | None = None,
                                  center_valid: jax.Array | None = None
                                  ) -> dict[str, jax.Array]:
  """`embedding_sweep` of x [N, ...] with every 'data' device embedding its
  N/D shard (parameters and centers replicated; no communication).

  Returns:
    Dict of [N, ...] arrays split over 'data', see `embedding_sweep`.
  """
  if mesh is None:
    return embedding_sweep(embed_fn, params, x, chunk_size, centers,
                           center_valid)

  def local(params, x, centers, center_valid):
    return embedding_sweep(embed_fn, params, x, chunk_size, centers,
                           center_valid)

  data = P(sharding.DATA)
  return jax.shard_map(local, mesh=mesh, in_specs=(P(), data, P(), P()),
                       out_specs=data, check_vma=_CHECK_VMA)(
                           params, x, centers, center_valid)


# Equal-width confidence bins of the expected calibration error (Guo et
# al. 2017's 15).
ECE_BINS = 15


def eval_sums(apply_fn: ApplyFn, params, x: jax.Array, y: jax.Array,
              chunk_size: int) -> dict[str, jax.Array]:
  """Deterministic predictions on (x, y) summed into what the test metrics
  need; sums, so that shards of (x, y) add up to the whole.

  Args:
    apply_fn, params, chunk_size: as for `predict_logits`.
    x: [N, ...] inputs.
    y: [N] int32 labels.

  Returns:
    'correct' [C] int32: samples of class c predicted c; 'count' [C] int32:
    samples of class c (C the logits' width); 'nll' (): the summed negative
    log-likelihood of the labels; per confidence bin b of ECE_BINS (the top
    softmax probability in [b, b + 1) / ECE_BINS, as float32 computes
    them: a confidence on an edge, such as 1/15 for 15 equal logits, falls
    on the side its rounding puts it; Guo et al.'s bins are (b, b + 1],
    which differs only there): 'bin_correct' [ECE_BINS] int32,
    the right predictions in it, and 'bin_confidence' [ECE_BINS], the top
    probabilities of all its samples summed.
  """
  logits = predict_logits(apply_fn, params, x, chunk_size)
  num_classes = logits.shape[-1]
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  confidence = jnp.exp(jnp.max(log_p, axis=-1))
  hit = (jnp.argmax(logits, axis=-1) == y).astype(jnp.int32)
  ones = jnp.ones_like(hit)
  bins = jnp.minimum((confidence * ECE_BINS).astype(jnp.int32), ECE_BINS - 1)
  return {
      'correct': jax.ops.segment_sum(hit, y, num_classes),
      'count': jax.ops.segment_sum(ones, y, num_classes),
      'nll': -jnp.sum(jnp.take_along_axis(log_p, y[:, None], axis=-1)),
      'bin_correct': jax.ops.segment_sum(hit, bins, ECE_BINS),
      'bin_confidence': jax.ops.segment_sum(confidence, bins, ECE_BINS)}


def data_parallel_test_metrics(mesh: Mesh | None, apply_fn: ApplyFn, params,
                               x: jax.Array, y: jax.Array,
                               chunk_size: int) -> dict[str, jax.Array]:
  """The deterministic model's metrics on the test set (x [M, ...], y [M]),
  every 'data' device scoring its own shard.

  Returns scalars:
    'val_acc': accuracy.
    'val_balanced_acc': the mean over the classes y holds of their recall
      (what imbalanced data need: a majority class alone no longer scores
      high).
    'val_nll': the mean negative log-likelihood of the labels.
    'val_ece': the expected calibration error, sum over confidence bins of
      |accuracy - mean confidence| weighted by the bin's share of samples.
  Counts are summed exactly (int32 psum), so the accuracies equal the
  unsharded values; the float sums up to the order of their additions.
  """
  if mesh is None:
    sums = eval_sums(apply_fn, params, x, y, chunk_size)
  else:
    def local(params, x, y):
      return jax.lax.psum(eval_sums(apply_fn, params, x, y, chunk_size),
                          sharding.DATA)

    data = P(sharding.DATA)
    sums = jax.shard_map(local, mesh=mesh, in_specs=(P(), data, data),
                         out_specs=P(), check_vma=_CHECK_VMA)(params, x, y)
  n = y.shape[0]
  held = sums['count'] > 0
  recall = jnp.where(held, sums['correct'] / jnp.maximum(sums['count'], 1),
                     0.0)
  gap = jnp.abs(sums['bin_correct'] - sums['bin_confidence'])
  return {'val_acc': jnp.sum(sums['correct']) / n,
          'val_balanced_acc': jnp.sum(recall) / jnp.sum(held),
          'val_nll': sums['nll'] / n,
          # sum_b n_b / n |acc_b - conf_b| = sum_b |hits_b - conf sum_b| / n.
          'val_ece': jnp.sum(gap) / n}
