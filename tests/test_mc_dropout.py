"""MC dropout: reproducible per key, per-sample masks, chunking invariance."""

import functools

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from bass_jax import mc_dropout as mc
from bass_jax import models


@pytest.fixture(scope='module')
def cnn():
  model = models.build_model('cnn', 10)
  x = jax.random.uniform(jax.random.key(1), (37, 28, 28, 1))
  return model, model.init(jax.random.key(0), x), x


def test_same_key_same_samples_different_key_different(cnn):
  model, params, x = cnn
  keys = mc.sample_keys(jax.random.key(3), jnp.arange(8), 5)
  a = mc.mc_probs(model.apply, params, x[:8], keys)
  b = mc.mc_probs(model.apply, params, x[:8], keys)
  np.testing.assert_array_equal(a, b)
  other = mc.sample_keys(jax.random.key(4), jnp.arange(8), 5)
  c = mc.mc_probs(model.apply, params, x[:8], other)
  assert not np.allclose(a, c)
  # Passes differ from each other (fresh masks), rows sum to one.
  assert not np.allclose(a[0], a[1])
  np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-5)


def test_masks_differ_between_passes_and_samples():
  """Identity-like net: dropout masks are visible in the output directly."""
  model = models.build_model('mlp', 2, dropout_rate=0.5)
  x = jnp.ones((4, 2))
  params = model.init(jax.random.key(0), x)
  keys = mc.sample_keys(jax.random.key(1), jnp.arange(4), 6)
  logits = jax.vmap(jax.vmap(lambda xi, k: model.apply(params, xi[None], k)[0],
                             in_axes=(0, 0)), in_axes=(None, 0))(x, keys)
  flat = np.asarray(logits).reshape(24, 2)
  # All 4 identical inputs x 6 passes give distinct outputs.
  assert len({tuple(np.round(r, 5)) for r in flat}) == 24


def test_chunked_sweep_equals_unchunked(cnn):
  model, params, x = cnn
  key = jax.random.key(9)
  whole = mc.mc_sweep(model.apply, params, x, key, 4, chunk_size=37,
                      score_names=('bald', 'margin'))
  chunked = mc.mc_sweep(model.apply, params, x, key, 4, chunk_size=8,
                        score_names=('bald', 'margin'))
  for name in whole:
    np.testing.assert_allclose(whole[name], chunked[name], rtol=1e-5,
                               atol=1e-6, err_msg=name)
  assert whole['mean_probs'].shape == (37, 10)
  assert whole['entropy'].shape == (37,)


def test_map_chunks_runs_only_the_chunks_of_the_needed_rows():
  x = jnp.arange(1.0, 11.0)

  def double(c):
    return {'y': 2 * c}

  @jax.jit
  def upto(num_rows):
    return mc.map_chunks(double, 10, 3, x, num_rows=num_rows)['y']

  # Chunks start at 0, 3, 6 and 7 (the last one is moved in bounds).
  np.testing.assert_array_equal(upto(10), 2 * x)
  np.testing.assert_array_equal(upto(4), [2, 4, 6, 8, 10, 12, 0, 0, 0, 0])
  np.testing.assert_array_equal(upto(3), [2, 4, 6] + [0] * 7)
  np.testing.assert_array_equal(upto(0), np.zeros(10))
  np.testing.assert_array_equal(upto(7), [2, 4, 6, 8, 10, 12, 14, 16, 18, 0])
  assert upto._cache_size() == 1  # pylint: disable=W0212
  np.testing.assert_array_equal(
      mc.map_chunks(double, 10, 3, x)['y'], 2 * x)


def test_sweep_of_the_first_rows_equals_the_full_sweep_there(cnn):
  """The ground-truth sweep of the filled label slots only: their
  statistics are the full sweep's, bit for bit (same chunks, same keys)."""
  model, params, x = cnn
  key = jax.random.key(4)
  idx = jnp.arange(100, 137, dtype=jnp.int32)
  full = mc.mc_sweep(model.apply, params, x, key, 3, 5, indices=idx)
  part = jax.jit(lambda n: mc.mc_sweep(model.apply, params, x, key, 3, 5,
                                       indices=idx, num_rows=n))(12)
  for name in full:
    np.testing.assert_array_equal(part[name][:12], full[name][:12], name)
  # Rows past the last needed chunk (rows 15-36) are not swept.
  assert not np.any(part['mean_probs'][15:])


def test_sweep_matches_direct_samples(cnn):
  model, params, x = cnn
  key = jax.random.key(2)
  out = mc.mc_sweep(model.apply, params, x[:6], key, 3, chunk_size=4)
  probs = mc.mc_probs(model.apply, params, x[:6],
                      mc.sample_keys(key, jnp.arange(6), 3))
  np.testing.assert_allclose(out['mean_probs'], probs.mean(0), rtol=1e-5)


def test_deterministic_accuracy_chunking(cnn):
  model, params, x = cnn
  y = jnp.arange(37) % 10
  a = mc.accuracy(model.apply, params, x, y, 37)
  b = mc.accuracy(model.apply, params, x, y, 5)
  np.testing.assert_allclose(a, b)


def test_sweep_memory_does_not_grow_with_pool(cnn):
  """Compiled temp memory: a 10x larger pool adds only its [N] outputs.

  XLA's memory analysis of the compiled sweep at N = 600 and N = 6,000
  (chunk 100, T = 10): the temporaries are the chunk's activations and the
  per-sample outputs, never a copy of the pool.
  """
  model, params, _ = cnn
  key = jax.random.key(0)
  temp, arg = {}, {}
  for n in (600, 6000):
    sweep = jax.jit(functools.partial(mc.mc_sweep, model.apply, num_passes=10,
                                      chunk_size=100,
                                      score_names=('entropy',)))
    stats = sweep.lower(params, jax.ShapeDtypeStruct((n, 28, 28, 1),
                                                     jnp.float32),
                        key).compile().memory_analysis()
    temp[n], arg[n] = stats.temp_size_in_bytes, stats.argument_size_in_bytes
  pool_growth = arg[6000] - arg[600]        # 5,400 images: ~16.9 MB.
  assert pool_growth > 16_000_000
  # Outputs per sample: mean_probs [10] + entropy x2 + pseudo_label: 52 B.
  assert temp[6000] - temp[600] <= 5400 * 64, (temp, arg)


# ------------------------------------------------------------ MC precision


def _conv_and_dot_eqns(fn, *args):
  """The convolution and dot equations of fn's jaxpr, nested ones included."""
  found = []

  def visit(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in ('conv_general_dilated', 'dot_general'):
        found.append(eqn)
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        visit(sub)

  visit(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


def test_default_precision_is_the_model_itself(cnn):
  model = cnn[0]
  assert mc.with_precision(model.apply, 'default') is model.apply
  with pytest.raises(ValueError, match='unknown precision'):
    mc.with_precision(model.apply, 'fp8')


@pytest.mark.parametrize('precision, expected', [
    ('float32', jax.lax.Precision.HIGHEST),
    ('tensorfloat32', jax.lax.Precision.HIGH),
])
def test_matmul_precision_reaches_every_conv_and_dot(cnn, precision,
                                                      expected):
  model, params, x = cnn
  apply = mc.with_precision(model.apply, precision)
  eqns = _conv_and_dot_eqns(lambda p, v: apply(p, v, jax.random.key(0)),
                            params, x[:2])
  assert len(eqns) == 5  # 4 convolutions, 1 dense layer.
  for eqn in eqns:
    assert eqn.params['precision'] == (expected, expected), eqn
  plain = _conv_and_dot_eqns(lambda p, v: model.apply(p, v), params, x[:2])
  assert all(e.params['precision'] is None for e in plain)


def test_bfloat16_sweep_computes_in_bfloat16_close_to_float32(cnn):
  """bf16 operands in every conv and dot; statistics float32, within 5e-3
  of the float32 sweep on average and 5e-2 at worst (bf16 keeps 8
  significant bits)."""
  model, params, x = cnn
  apply = mc.with_precision(model.apply, 'bfloat16')
  eqns = _conv_and_dot_eqns(lambda p, v: apply(p, v, jax.random.key(0)),
                            params, x[:2])
  assert len(eqns) == 5
  for eqn in eqns:
    assert all(v.aval.dtype == jnp.bfloat16 for v in eqn.invars), eqn
  key = jax.random.key(5)
  # Sharper outputs than the init's near-uniform ones: scaled logits.
  sharp = jax.tree_util.tree_map(lambda a: a * 3.0, params)
  full = mc.mc_sweep(model.apply, sharp, x, key, 10, 16, ('bald',))
  half = mc.mc_sweep(apply, sharp, x, key, 10, 16, ('bald',))
  for name in ('entropy', 'bald', 'mean_probs'):
    assert half[name].dtype == jnp.float32
    assert not np.array_equal(half[name], full[name]), name
    diff = np.abs(np.asarray(half[name]) - np.asarray(full[name]))
    assert diff.mean() <= 5e-3 and diff.max() <= 5e-2, (name, diff.mean(),
                                                         diff.max())
  assert np.mean(half['pseudo_label'] == full['pseudo_label']) >= 0.9


def test_auto_chunk_sizes_follow_the_platform_batch():
  assert mc.auto_chunk_size('cpu', 10) == mc.AUTO_BATCH['cpu'] // 10
  assert mc.auto_chunk_size('cpu', 1000) == 1  # Never 0.
  assert mc.auto_chunk_size('gpu', 100) == mc.AUTO_BATCH['gpu'] // 100
  assert mc.auto_chunk_size('cuda', 10) == mc.AUTO_BATCH['gpu'] // 10


@pytest.mark.parametrize('name,conv_impl,shape,expected', [
    ('mlp', 'auto', (2,), 50 * 4),                    # A hidden layer.
    ('cnn', 'fast_grad', (28, 28, 1), 28 * 28 * 16 * 4),  # A conv output.
    ('cnn', 'xla', (28, 28, 1), 28 * 28 * 16 * 4),
    ('cnn', 'patches', (28, 28, 1), 28 * 28 * 9 * 16 * 4),  # 3x3 patches.
    ('softmax', 'auto', (28, 28, 1), 28 * 28 * 4),   # The input itself.
])
def test_sample_activation_bytes_is_the_widest_array_of_a_forward(
    name, conv_impl, shape, expected):
  model = models.build_model(name, 10, conv_impl=conv_impl)
  assert mc.sample_activation_bytes(model.init, model.apply,
                                    shape) == expected


@pytest.mark.parametrize('with_subjaxprs', [True, False])
def test_widest_output_bytes_looks_inside_nested_jaxprs(
    with_subjaxprs, monkeypatch):
  """The widest array lives only in a loop body (5,000 floats; outside it
  10): found through jax.extend.core.subjaxprs and, on a jax without it,
  through the equations' parameters."""
  if not with_subjaxprs:
    monkeypatch.delattr(jax.extend.core, 'subjaxprs', raising=False)
  body = lambda i, c: c * jnp.ones((5000,)).sum()
  jaxpr = jax.make_jaxpr(lambda x: jax.lax.fori_loop(0, 3, body, x))(
      jnp.ones(10)).jaxpr
  assert mc._widest_output_bytes(jaxpr) == 5000 * 4


def test_auto_chunk_sizes_give_every_model_the_cnn_batch_bytes():
  """The CNN keeps its measured batch; the toy MLP (250x narrower) gets
  250x the samples, so its T = 100 sweep over ~80 labels is one chunk."""
  cnn = 28 * 28 * 16 * 4
  assert mc.CNN_SAMPLE_BYTES == cnn
  for platform, images in mc.AUTO_BATCH.items():
    assert mc.auto_chunk_size(platform, 1, cnn) == images
  assert mc.auto_chunk_size('cpu', 10, 200) == 256 * cnn // (10 * 200)
  assert mc.auto_chunk_size('cpu', 100, 200) == 642
  assert mc.auto_chunk_size('cpu', 100, 10**9) == 1
