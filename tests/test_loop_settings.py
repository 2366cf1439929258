"""Loop settings and invariants that a wrong line would otherwise pass by:
the pseudo-label weight mu, label_budget, semi_start, epochs_per_iteration,
the above-average / above-theta thresholds (eq. 14 over X and X'), queries
among unlabelled samples only, validation without dropout and inverted
dropout's scale."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bass_jax import data
from bass_jax import experiment
from bass_jax import loop
from bass_jax import mc_dropout
from bass_jax import models
from bass_jax import sharding
from configs import yinyang
from conftest import run_metrics


def tiny_config(variant='active_semi', **overrides):
  config = yinyang.get_config(variant)
  config.num_iterations, config.initial_epochs = 6, 10
  config.num_seeds, config.mc_passes_gt = 1, 10
  for k, v in overrides.items():
    setattr(config, k, v)
  return config


@pytest.fixture(scope='module')
def toy():
  return data.load_yinyang(num_per_class=60, seed=0)


def iteration_rows(config, ds, iterations):
  """(final state, [per-iteration metrics of seed 0 as floats])."""
  _, state, rows = run_metrics(config, ds, iterations)
  return state, [{k: float(np.asarray(v)[0]) for k, v in m.items()}
                 for m in rows]


def test_label_budget_stops_queries_and_semi_start_holds_back_d(toy):
  # Queries every iteration, 2 at a time, up to 12 labels; D's
  # pseudo-labels join training from iteration 3 on.
  config = tiny_config(query_every=1, query_size=2, label_budget=12,
                       semi_start=3)
  _, rows = iteration_rows(config, toy, 6)
  assert [int(r['num_labels']) for r in rows] == [8, 10, 12, 12, 12, 12]
  assert [int(r['num_pseudo']) for r in rows[:3]] == [0, 0, 0]
  assert rows[3]['num_pseudo'] > 0
  # Without them: the budget never binds, D joins at once.
  _, free = iteration_rows(tiny_config(query_every=1, query_size=2), toy, 4)
  assert [int(r['num_labels']) for r in free] == [8, 10, 12, 14]
  assert free[1]['num_pseudo'] > 0


def test_initial_draw_labels_the_draw_of_each_seed(toy):
  # 2 seeds, 8 initial labels each: per class (4 + 4), drawn uniformly, or
  # nearest k-means centres of the inputs.
  for draw in data.INITIAL_DRAWS:
    config = tiny_config(num_seeds=2, initial_draw=draw)
    labelled = np.asarray(experiment.build(config, toy).state.labelled)
    for j, seed in enumerate(experiment.seeds_of(config)):
      want = data.initial_indices(toy.y_train, 4, 2, draw, seed,
                                  data.principal_features(toy.x_train))
      np.testing.assert_array_equal(np.flatnonzero(labelled[j]), want)


def test_epochs_per_iteration_trains_that_many_epochs(toy):
  """Adam's step count grows by epochs x batches in an iteration after 0."""
  def steps_in_iteration_1(epochs):
    config = tiny_config(acquisition='none', epochs_per_iteration=epochs)
    r = experiment.build(config, toy)
    state, _ = r.step(r.state, r.pool)
    before = count_of(state)
    state, m = r.step(state, r.pool)
    return count_of(state) - before, int(np.asarray(m['num_train'])[0])

  def count_of(state):
    counts = [np.asarray(leaf) for path, leaf in
              jax.tree_util.tree_leaves_with_path(state.train.opt_state)
              if 'count' in jax.tree_util.keystr(path)]
    return int(counts[0][0])

  one, size = steps_in_iteration_1(1)
  three, same_size = steps_in_iteration_1(3)
  assert size == same_size and one > 0
  assert three == 3 * one


def _adam_count(state) -> np.ndarray:
  """[S] optimizer steps taken since the parameters were initialised."""
  return next(np.asarray(leaf) for path, leaf in
              jax.tree_util.tree_leaves_with_path(state.train.opt_state)
              if 'count' in jax.tree_util.keystr(path))


def test_retrain_every_trains_a_fresh_network(toy):
  """retrain_every=2: iteration 2 starts from new parameters and a new
  optimizer and trains initial_epochs epochs, whatever the old network
  was; iteration 1 trains on as without the setting, and both seed layouts
  (vmap: a select of both starts; map: a cond) agree."""
  def steps(config):
    r = experiment.build(config, toy)
    # On the host: a step donates (deletes) the device state it is given.
    states = [jax.device_get(r.state)]
    for _ in range(3):
      states.append(jax.device_get(r.step(states[-1], r.pool)[0]))
    return r, states

  config = tiny_config(num_seeds=2, retrain_every=2, initial_epochs=4,
                       query_every=1)
  r, (s0, s1, s2, s3) = steps(config)
  _, plain = steps(tiny_config(num_seeds=2, initial_epochs=4, query_every=1))
  # Before the first retrain everything is as without it.
  for a, b in zip(jax.tree_util.tree_leaves((s1, s2)),
                  jax.tree_util.tree_leaves(plain[1:3])):
    np.testing.assert_array_equal(a, b)
  one_epoch = _adam_count(plain[3]) - _adam_count(plain[2])
  assert (one_epoch > 0).all()
  np.testing.assert_array_equal(_adam_count(s3), 4 * one_epoch)
  # Another network before iteration 2 gives the same network after it ...
  other = s2.replace(train=s1.train)
  again = jax.device_get(r.step(other, r.pool)[0])
  for a, b in zip(jax.tree_util.tree_leaves(again.train),
                  jax.tree_util.tree_leaves(s3.train)):
    np.testing.assert_array_equal(a, b)
  # ... but not after iteration 1, which trains on.
  moved = jax.device_get(r.step(s1.replace(train=s0.train), r.pool)[0])
  assert not np.array_equal(
      jax.tree_util.tree_leaves(moved.train.params)[0],
      jax.tree_util.tree_leaves(s2.train.params)[0])
  _, mapped = steps(tiny_config(num_seeds=2, retrain_every=2,
                                initial_epochs=4, query_every=1,
                                seed_strategy='map'))
  for a, b in zip(jax.tree_util.tree_leaves(mapped[3].train.params),
                  jax.tree_util.tree_leaves(s3.train.params)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_mu_weights_pseudo_labels_in_the_loss(toy):
  """mu scales D's pseudo-labelled samples (eq. 6): at iteration 1, the
  first to train on D, the runs part ways; before it they are equal."""
  _, full = iteration_rows(tiny_config(mu=1.0), toy, 3)
  _, half = iteration_rows(tiny_config(mu=0.5), toy, 3)
  # Iteration 0 trains on labels only. (assert_equal: the NaNs of
  # pseudo_acc, nothing in D, and pool_kappa, no iteration before, match.)
  np.testing.assert_equal(full[0], half[0])
  assert full[1]['num_pseudo'] > 0
  assert full[1]['loss'] != half[1]['loss']


def test_mean_entropy_over_labels_and_pool_golden():
  """Eq. 14's mean over X and X': the labels' T-pass entropies (valid
  slots only) and the unlabelled pool's T'-pass entropies, over N."""
  got = loop.mean_entropy_over_all(
      gt_entropy=jnp.array([0.2, 0.4, 0.9]),
      gt_valid=jnp.array([True, True, False]),
      pool_entropy=jnp.array([0.7, 0.7, 0.1, 0.3, 0.5]),
      labelled=jnp.array([True, True, False, False, False]))
  np.testing.assert_allclose(got, (0.2 + 0.4 + 0.1 + 0.3 + 0.5) / 5,
                             rtol=1e-6)


@pytest.mark.parametrize('acquisition, threshold', [
    ('above_average', 0.25), ('above_theta', 0.65)])
def test_above_threshold_picks_draw_above_their_own_threshold(acquisition,
                                                             threshold):
  """above_average draws above the mean over X and X', above_theta above
  theta (here 0.65 and 0.25 apart, so a swap shows)."""
  entropy = jnp.linspace(0.0, 1.0, 101)
  available = jnp.arange(101) % 7 != 0
  cfg = loop.LoopConfig(acquisition=acquisition, query_size=5)
  picked = set()
  for k in range(40):
    idx, valid = loop.acquisition_picks(
        cfg, jax.random.key(k), {'entropy': entropy}, available,
        theta=jnp.float32(0.65), mean_entropy_all=jnp.float32(0.25))
    assert bool(valid.all())
    picked |= set(np.asarray(idx).tolist())
  picked = np.array(sorted(picked))
  assert np.all(np.asarray(entropy)[picked] > threshold)
  assert np.all(np.asarray(available)[picked])
  # Drawn from all of them, not only the top few.
  assert np.asarray(entropy)[picked].min() < threshold + 0.1


@pytest.mark.parametrize('acquisition', ['random', 'above_average',
                                         'entropy'])
def test_queries_ask_for_unlabelled_samples_only(acquisition):
  """A 20-point pool, 8 labelled, 5 asked an iteration: every query is new,
  so the labels grow 8, 13, 18, 20 (the pool's last 2) and then stay."""
  ds = data.load_yinyang(num_per_class=10, seed=0)
  config = tiny_config(acquisition=acquisition, query_every=1, query_size=5,
                       num_iterations=8)
  _, rows = iteration_rows(config, ds, 5)
  assert [int(r['num_labels']) for r in rows] == [8, 13, 18, 20, 20]


def test_validation_runs_without_dropout():
  """The loop's validation accuracy is the deterministic model's, on a
  model whose predictions vary (so dropout would change them)."""
  ds = data.load_yinyang(num_per_class=100, seed=0)
  model = models.build_model('mlp', 2)
  x, y = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)
  params = model.init(jax.random.key(3), x[:1])
  logits = model.apply(params, x, None)
  assert len(set(np.asarray(jnp.argmax(logits, -1)).tolist())) == 2
  want = float(jnp.mean(jnp.argmax(logits, -1) == y))
  for chunk in (7, 64, x.shape[0]):
    got = mc_dropout.data_parallel_test_metrics(None, model.apply, params,
                                                x, y, chunk)
    assert float(got['val_acc']) == want, chunk
  noisy = [float(jnp.mean(jnp.argmax(model.apply(params, x,
                                                 jax.random.key(k)), -1)
                          == y)) for k in range(3)]
  assert any(a != want for a in noisy)  # Dropout would have shown.


def test_test_metrics_golden():
  """Golden: 3 classes of 6, 2 and 2 test samples (class 3 of 4 absent),
  recalls 5/6, 1/2 and 0: accuracy 6/10, balanced (5/6 + 1/2 + 0) / 3;
  the NLL and the calibration error of the logits' softmax; the same, the
  counts summed exactly, with the data split over 2 devices."""
  y = jnp.array([0] * 6 + [1] * 2 + [2] * 2, jnp.int32)
  pred = jnp.array([0, 0, 0, 0, 0, 1, 1, 0, 0, 1], jnp.int32)
  # Logits whose argmax is `pred`, confident (softmax e^3 / (e^3 + 3)) on
  # the first 5 samples, unsure (e / (e + 3)) on the rest.
  sure = jnp.arange(10) < 5
  x = jax.nn.one_hot(pred, 4) * jnp.where(sure, 3.0, 1.0)[:, None]
  apply_fn = lambda params, x, key=None: x
  high, low = np.e**3 / (np.e**3 + 3), np.e / (np.e + 3)
  # All 5 confident ones right; of the unsure 5 only sample 6 (class 1).
  nll = (-5 * np.log(high) - 1 * np.log(low)
         - 4 * np.log(1 / (np.e + 3))) / 10
  ece = (5 * abs(1 - high) + 5 * abs(1 / 5 - low)) / 10
  want = {'val_acc': 0.6, 'val_balanced_acc': (5 / 6 + 1 / 2 + 0) / 3,
          'val_nll': nll, 'val_ece': ece}
  assert int(high * mc_dropout.ECE_BINS) != int(low * mc_dropout.ECE_BINS)
  got = mc_dropout.data_parallel_test_metrics(None, apply_fn, {}, x, y, 3)
  assert {k: float(v) for k, v in got.items()} == pytest.approx(want,
                                                                rel=1e-6)
  if len(jax.devices()) >= 2:
    mesh = sharding.make_mesh({'seed': 1, 'data': 2}, jax.devices()[:2])
    got = mc_dropout.data_parallel_test_metrics(mesh, apply_fn, {}, x, y, 3)
    assert {k: float(v) for k, v in got.items()} == pytest.approx(
        want, rel=1e-6)
  # Perfectly calibrated: half right at confidence 1/2 (two classes tied
  # in the softmax, argmax the first).
  two = jnp.zeros((4, 2))
  got = mc_dropout.data_parallel_test_metrics(
      None, apply_fn, {}, two, jnp.array([0, 0, 1, 1]), 2)
  assert float(got['val_ece']) == pytest.approx(0, abs=1e-7)
  assert float(got['val_nll']) == pytest.approx(np.log(2))


@pytest.mark.parametrize('impl', ['hash', 'prng'])
def test_dropout_keeps_the_mean_activation(impl):
  """Inverted dropout: kept units scaled by 1 / (1 - rate), so the mean
  over masks is the input (MC passes, training and the deterministic
  evaluation share one scale)."""
  rate = 0.33
  layer = models.MaskDropout(rate, impl=impl)
  x = jnp.ones((64, 1024))

  def dropped(k):
    key = jax.random.key(k)
    return layer.apply({}, x, False, models.seed_words(key),
                       rngs={'dropout': key})
  out = np.stack([np.asarray(dropped(k)) for k in range(4)])
  np.testing.assert_allclose(np.unique(out), [0.0, 1 / (1 - rate)],
                             rtol=1e-6)
  assert abs(out.mean() - 1.0) < 0.01  # 262,144 units: SE ~0.0013.
  np.testing.assert_array_equal(layer.apply({}, x, True), x)
