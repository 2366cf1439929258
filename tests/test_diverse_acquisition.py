"""Diversity acquisitions: core-set's greedy k-center and BADGE's k-means++
over gradient embeddings, golden values, the embedding the model exposes,
and both inside the loop."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bass_jax import config_checks
from bass_jax import experiment
from bass_jax import loop
from bass_jax import mc_dropout
from bass_jax import models
from bass_jax import selection as sel
from bass_jax.errors import ConfigError
from configs import yinyang


def _line_dists(x):
  """sq_dists_to of 1-D points x [N]."""
  x = jnp.asarray(x, jnp.float32)
  return lambda i: (x - x[i])**2


def test_nearest_center_golden():
  f = jnp.array([[0., 0.], [3., 4.], [1., 0.]])
  centers = jnp.array([[0., 0.], [10., 10.], [3., 4.]])
  np.testing.assert_allclose(
      sel.nearest_center_sq_dists(f, centers, jnp.array([True, True, False])),
      [0., 25., 1.])
  np.testing.assert_allclose(
      sel.nearest_center_sq_dists(f, centers, jnp.array([False, True, True])),
      [25., 0., 20.])
  assert np.isinf(sel.nearest_center_sq_dists(
      f, centers, jnp.zeros(3, bool))).all()


def test_k_center_golden():
  # Points 0, 1, 2, 10, 11, 20 on a line, 0 labelled: the farthest (20),
  # then 10 (100 from its nearest center), then 2 (4; 1 and 11 are 1 off).
  x = [0., 1., 2., 10., 11., 20.]
  nearest = jnp.asarray([(v - 0.)**2 for v in x])
  available = jnp.array([False, True, True, True, True, True])
  idx, valid = sel.k_center_greedy_indices(nearest, available, 3,
                                           _line_dists(x))
  assert idx.tolist() == [5, 3, 2] and valid.all()
  # More picks than samples: the rest are marked invalid.
  idx, valid = sel.k_center_greedy_indices(nearest, available, 7,
                                           _line_dists(x))
  assert sorted(idx[:5].tolist()) == [1, 2, 3, 4, 5]
  assert valid.tolist() == [True] * 5 + [False] * 2
  # Nothing labelled yet: the first available, then farthest from it.
  idx, _ = sel.k_center_greedy_indices(jnp.full(6, jnp.inf), available, 2,
                                       _line_dists(x))
  assert idx.tolist() == [1, 5]


def test_k_center_skips_near_duplicates_that_top_k_takes():
  """Three near-copies far from the labelled point: top-k distance takes
  all three, the greedy cover one of them."""
  x = [0., 9., 9.01, 9.02, 5.]
  nearest = jnp.asarray(x)**2
  available = jnp.array([False, True, True, True, True])
  idx, _ = sel.k_center_greedy_indices(nearest, available, 3, _line_dists(x))
  top, _ = sel.top_k_indices(nearest, available, 3)
  assert sorted(top.tolist()) == [1, 2, 3]
  assert idx[0] == 3 and 4 in idx.tolist()


def test_kmeans_pp_first_pick_and_d2_draws():
  # Norms pick 2 first (x = 2); then P(0) = 4 / 5, P(1) = 1 / 5.
  x = jnp.array([0., 1., 2.])
  available = jnp.ones(3, bool)
  keys = jax.random.split(jax.random.key(0), 4000)
  idx, valid = jax.vmap(lambda k: sel.kmeans_pp_indices(
      k, x**2, available, 2, _line_dists(x)))(keys)
  assert (idx[:, 0] == 2).all() and valid.all()
  share = float(jnp.mean(idx[:, 1] == 0))
  assert abs(share - 0.8) < 0.03, share  # 4 sigma: 0.025.
  # Same key, same picks; a batch of one is the largest norm.
  again = sel.kmeans_pp_indices(keys[0], x**2, available, 2, _line_dists(x))
  assert again[0].tolist() == idx[0].tolist()
  one, ok = sel.kmeans_pp_indices(keys[0], x**2, available, 1, _line_dists(x))
  assert one.tolist() == [2] and ok.tolist() == [True]


def test_kmeans_pp_never_draws_a_copy_of_a_pick():
  # 0 and 3 twice: after 3 and 0, only copies are left (distance 0).
  x = jnp.array([0., 0., 3., 3.])
  idx, valid = sel.kmeans_pp_indices(jax.random.key(1), x**2,
                                     jnp.ones(4, bool), 3, _line_dists(x))
  assert idx[0] == 2 and int(idx[1]) in (0, 1)
  assert valid.tolist() == [True, True, False]
  # Unavailable samples are never picked, however far.
  idx, valid = sel.kmeans_pp_indices(jax.random.key(1), x**2,
                                     jnp.array([True, False, False, False]),
                                     2, _line_dists(x))
  assert idx[0] == 0 and valid.tolist() == [True, False]


def test_gradient_embedding_distances_equal_the_explicit_ones():
  rng = np.random.default_rng(0)
  probs = rng.dirichlet(np.ones(4), size=7).astype(np.float32)
  h = rng.normal(size=(7, 5)).astype(np.float32)
  a = np.asarray(sel.gradient_factor(jnp.asarray(probs)))
  expected_a = probs - np.eye(4)[probs.argmax(1)]
  np.testing.assert_allclose(a, expected_a, atol=1e-7)
  g = np.einsum('nc,nd->ncd', expected_a, h).reshape(7, -1)
  for c in (0, 3):
    np.testing.assert_allclose(
        sel.gradient_embedding_sq_dists(jnp.asarray(a), jnp.asarray(h),
                                        jnp.asarray(a[c]), jnp.asarray(h[c])),
        ((g - g[c])**2).sum(1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('name, dim', [('mlp', 50), ('cnn', 784),
                                       ('softmax', 784)])
def test_features_are_the_last_dense_layers_input(name, dim):
  shape = (2,) if name == 'mlp' else (28, 28, 1)
  model = models.build_model(name, 3 if name == 'mlp' else 10)
  x = jax.random.normal(jax.random.key(0), (5,) + shape)
  params = model.init(jax.random.key(1), x)
  features, logits = model.embed(params, x)
  assert features.shape == (5, dim)
  np.testing.assert_allclose(logits, model.apply(params, x), atol=1e-6)
  last = params[sorted(k for k in params if k.startswith('Dense'))[-1]]
  np.testing.assert_allclose(features @ last['kernel'] + last['bias'],
                             logits, atol=1e-5)


class _NoDense(nn.Module):
  num_classes: int = 3

  @nn.compact
  def __call__(self, x, deterministic=True, seed=None):
    del deterministic, seed
    w = self.param('w', nn.initializers.ones, (x.shape[-1], self.num_classes))
    return x @ w


def test_a_model_without_a_dense_layer_is_named():
  model = models.Model(init=None, apply=None, module=_NoDense(),
                       embed=lambda p, x: models.features_and_logits(
                           _NoDense(), p, x))
  params = _NoDense().init(jax.random.key(0), jnp.ones((2, 4)))['params']
  with pytest.raises(ValueError, match='_NoDense calls no flax nn.Dense'):
    model.embed(params, jnp.ones((2, 4)))


def test_embedding_sweep_is_chunk_size_free():
  model = models.build_model('mlp', 2)
  x = jax.random.normal(jax.random.key(0), (37, 2))
  params = model.init(jax.random.key(1), x)
  centers = model.embed(params, x[:4] * 2)[0]
  valid = jnp.array([True, False, True, True])
  whole = mc_dropout.embedding_sweep(model.embed, params, x, 37, centers,
                                     valid)
  chunked = mc_dropout.embedding_sweep(model.embed, params, x, 8, centers,
                                       valid)
  for name in ('features', 'probs', 'nearest_d2'):
    np.testing.assert_allclose(chunked[name], whole[name], atol=1e-6)
  f, _ = model.embed(params, x)
  np.testing.assert_allclose(
      whole['nearest_d2'], sel.nearest_center_sq_dists(f, centers, valid),
      rtol=1e-5, atol=1e-6)
  assert (whole['nearest_d2'] > 0).all()
  np.testing.assert_allclose(whole['probs'].sum(-1), 1.0, atol=1e-6)


def _tiny(acquisition, strategy='vmap'):
  config = yinyang.get_config('active')
  config.update(dict(num_iterations=5, initial_epochs=20, num_seeds=2,
                     mc_passes_gt=20, acquisition=acquisition, query_size=4,
                     seed_strategy=strategy, data_per_seed=False))
  return config


@pytest.fixture(scope='module')
def toy():
  from bass_jax import data  # pylint: disable=g-import-not-at-top
  return data.load_yinyang(num_per_class=100, seed=0)


def _labelled_after(config, ds, steps):
  """(run, [labelled [S, N] after each of `steps` iterations], metrics)."""
  r = experiment.build(config, ds)
  state, labelled = r.state, []
  for _ in range(steps):
    state, metrics = r.step(state, r.pool)
    labelled.append(np.asarray(state.labelled))  # The next step donates it.
  return r, labelled, jax.device_get(metrics)


@pytest.fixture(scope='module')
def max_entropy_labelled(toy):
  return _labelled_after(_tiny('entropy'), toy, 1)[1][0]


@pytest.mark.parametrize('acquisition', loop.DIVERSE_ACQUISITIONS)
def test_loop_vmapped_equals_mapped_and_queries_fresh_samples(
    toy, max_entropy_labelled, acquisition):
  r, vm, vm_metrics = _labelled_after(_tiny(acquisition), toy, 3)
  _, mapped, map_metrics = _labelled_after(_tiny(acquisition, 'map'), toy, 3)
  assert r.step._cache_size() == 1  # pylint: disable=protected-access
  # 8 initial labels, queries at iterations 0 and 2 (iteration 2 trained
  # on 12), none repeated.
  assert list(vm_metrics['num_labels']) == [12, 12]
  assert vm[-1].sum(1).tolist() == [16, 16]
  np.testing.assert_array_equal(vm[-1], mapped[-1])
  np.testing.assert_allclose(vm_metrics['val_acc'], map_metrics['val_acc'],
                             atol=1e-6)
  # A real conditional: skipped on the iterations that ask nothing.
  assert 'conditional(' in r.step.lower(r.state, r.pool).compile().as_text()
  # Other picks than max entropy's from the same model and pool.
  assert (vm[0] != max_entropy_labelled).any()


def test_config_accepts_both_and_checks_a_model_of_ones_own(toy, tmp_path):
  config = _tiny('coreset')
  config_checks.validate_config(config)
  config.acquisition = 'badge'
  config_checks.validate_config(config)
  net = tmp_path / 'nodense.py'
  net.write_text(
      'import flax.linen as nn\n'
      'class Net(nn.Module):\n'
      '  num_classes: int = 2\n'
      '  @nn.compact\n'
      '  def __call__(self, x, deterministic=True, seed=None):\n'
      "    w = self.param('w', nn.initializers.ones, (2, self.num_classes))\n"
      '    return x @ w\n')
  config.model = f'{net}:Net'
  with pytest.raises(ConfigError, match=r"config.acquisition='badge' needs "
                     r'config.model .*Net calls no flax nn.Dense layer'):
    experiment.check_user_code(config, toy)
  config.acquisition = 'entropy'
  experiment.check_user_code(config, toy)  # No embedding needed.
