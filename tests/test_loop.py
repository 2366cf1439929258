"""The compiled EM loop: one trace, seeds vmapped = sequential, it learns."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bass_jax import data
from bass_jax import experiment
from conftest import run_metrics
from configs import yinyang


def tiny_config(variant='active_semi', **overrides):
  config = yinyang.get_config(variant)
  config.num_iterations = 6
  config.initial_epochs = 30
  config.num_seeds = 2
  config.mc_passes_gt = 20
  for k, v in overrides.items():
    setattr(config, k, v)
  return config


@pytest.fixture(scope='module')
def toy():
  ds = data.load_yinyang(num_per_class=100, seed=0)
  return ds


def test_iteration_compiles_once(toy):
  r, _, rows = run_metrics(tiny_config(), toy, 5)
  assert r.step._cache_size() == 1
  # Labels grew (queries at 0, 2, 4) and D grew: shapes never changed.
  assert [int(m['num_labels'][0]) for m in rows] == [8, 10, 10, 12, 12]
  assert int(rows[-1]['num_train'][0]) > 12


def test_a_build_that_repeats_another_reuses_its_programs(toy):
  """Programs are kept by everything they are traced from: the same
  settings on other seeds reuse the jitted functions (nothing traced or
  compiled again); another setting, another data shape or code of one's
  own (a file that may change) gets programs of its own."""
  a = experiment.build(tiny_config(seed=1), toy)
  b = experiment.build(tiny_config(seed=7), toy)
  assert (b.step, b.em_step, b.reveal) == (a.step, a.em_step, a.reveal)
  _, ma = a.step(a.state, a.pool)
  _, mb = b.step(b.state, b.pool)
  assert a.step._cache_size() == 1  # pylint: disable=protected-access
  assert not np.array_equal(ma['val_acc'], mb['val_acc'])  # Other seeds.
  for other in (tiny_config(dropout_rate=0.2), tiny_config(mu=0.5),
                tiny_config(acquisition='bald'), tiny_config(num_seeds=3)):
    assert experiment.build(other, toy).step is not a.step
  smaller = data.load_yinyang(num_per_class=50, seed=0)
  assert experiment.build(tiny_config(), smaller).step is not a.step
  own = tiny_config(acquisition='tests/user_scores.py:bald_again')
  assert (experiment.build(own, toy).step is not
          experiment.build(own, toy).step)
  assert len(experiment._PROGRAMS) <= experiment.MAX_KEPT_PROGRAMS  # pylint: disable=protected-access
  experiment.forget_programs()
  assert experiment.build(tiny_config(seed=1), toy).step is not a.step


def test_vmapped_seeds_equal_sequential_seeds(toy):
  """Tolerance: 1e-4 absolute on float metrics, exact on counts."""
  _, vstate, vrows = run_metrics(tiny_config(num_seeds=2, seed=5), toy, 4)
  for j, seed in enumerate([5, 6]):
    _, sstate, srows = run_metrics(tiny_config(num_seeds=1, seed=seed), toy,
                                   4)
    for v, s in zip(vrows, srows):
      for name in v:
        np.testing.assert_allclose(v[name][j], s[name][0], atol=1e-4,
                                   err_msg=f'{name} seed {seed}')
    np.testing.assert_array_equal(vstate.labelled[j], sstate.labelled[0])
    np.testing.assert_array_equal(vstate.member[j], sstate.member[0])


def test_mapped_seeds_equal_vmapped_seeds(toy):
  """seed_strategy 'map' (lax.map) = 'vmap'; tolerance 1e-4 absolute."""
  _, vstate, vrows = run_metrics(tiny_config(seed_strategy='vmap'), toy, 3)
  _, mstate, mrows = run_metrics(tiny_config(seed_strategy='map'), toy, 3)
  for v, m in zip(vrows, mrows):
    for name in v:
      np.testing.assert_allclose(v[name], m[name], atol=1e-4, err_msg=name)
  np.testing.assert_array_equal(vstate.labelled, mstate.labelled)


def test_bfloat16_sweeps_change_the_run_only_slightly(toy):
  """mc_precision='bfloat16': the MC sweeps run in bf16, training in fp32.

  Same seeds as float32: theta and the pool entropy within 2e-2 at every
  iteration, and the run still learns. (The queries may differ: the top-k
  of near-equal entropies can flip at bf16's 8 significant bits.)
  """
  _, _, full = run_metrics(tiny_config(), toy, 3)
  _, _, half = run_metrics(tiny_config(mc_precision='bfloat16'), toy, 3)
  for f, h in zip(full, half):
    for name in ('theta', 'pool_entropy'):
      np.testing.assert_allclose(h[name], f[name], atol=2e-2, err_msg=name)
    assert not np.array_equal(h['theta'], f['theta'])
  assert min(half[-1]['val_acc']) > 0.7


@pytest.mark.parametrize('variant', ['active_semi', 'active'])
def test_end_to_end_toy_learns(toy, tmp_path, variant):
  config = tiny_config(variant, num_iterations=30, initial_epochs=20,
                       num_seeds=3)
  summary = experiment.run(config, str(tmp_path), dataset=toy)
  rows = (tmp_path / 'metrics.jsonl').read_text().splitlines()
  assert len(rows) == 31 * 3
  first = np.mean([json.loads(l)['val_acc'] for l in rows[:3]])
  # Accuracy rises above the initial model's (measured gain ~2 points).
  assert summary['val_acc']['mean'] > first + 0.01
  assert summary['num_params'] == 5352


def test_iteration_metrics_golden_values():
  """The original code's CSV: fresh pseudo-labels on D, entropy of the pool.

  Pool of 6: slot 0 labelled; 1, 2, 3 in D (3's truth unknown); 4, 5 out.
  """
  from bass_jax import loop  # pylint: disable=g-import-not-at-top
  sweep = {'entropy': jnp.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.9]),
           'pseudo_label': jnp.array([1, 0, 1, 1, 0, 0])}
  truth = jnp.array([1, 0, 0, -1, 0, 1])
  labelled = jnp.array([True, False, False, False, False, False])
  member = jnp.array([False, True, True, True, False, False])
  test = {'val_acc': jnp.float32(0.8), 'val_balanced_acc': jnp.float32(0.7),
          'val_nll': jnp.float32(0.5), 'val_ece': jnp.float32(0.05)}
  m = loop.iteration_metrics(
      jnp.int32(3), test, jnp.float32(0.25), jnp.float32(0.15),
      gt_pred=jnp.array([1, 0]), gt_labels=jnp.array([1, 1]),
      gt_valid=jnp.array([True, False]), sweep=sweep, labelled=labelled,
      member=member, truth=truth)
  # Slots 1 and 2 have a truth; this sweep labels 1 right and 2 wrong.
  np.testing.assert_allclose(m['pseudo_acc'], 0.5)
  np.testing.assert_allclose(m['pool_entropy'], 2.4 / 6, rtol=1e-6)
  np.testing.assert_allclose(m['gt_acc'], 1.0)
  assert (m['num_pseudo'], m['num_labels'], m['num_train']) == (3, 1, 4)
  assert {k: float(m[k]) for k in test} == pytest.approx(
      {k: float(v) for k, v in test.items()})
  # No truth known in D's pseudo-labelled part (an image folder's pool):
  # nothing to score, NaN, which metrics.jsonl writes as null.
  unknown = loop.iteration_metrics(
      jnp.int32(3), test, jnp.float32(0.25), jnp.float32(0.15),
      gt_pred=jnp.array([1, 0]), gt_labels=jnp.array([1, 1]),
      gt_valid=jnp.array([True, False]), sweep=sweep, labelled=labelled,
      member=member, truth=jnp.where(labelled, truth, -1))
  assert np.isnan(unknown['pseudo_acc'])
  rows = experiment.metrics_rows(
      jax.tree_util.tree_map(lambda a: np.asarray(a)[None],
                             {**m, 'pseudo_acc': unknown['pseudo_acc']}), [0])
  assert rows[0]['pseudo_acc'] is None and rows[0]['val_acc'] > 0.79


def numpy_kappa(a, b, mask):
  """Cohen's kappa from the confusion matrix of a[mask] against b[mask]."""
  a, b = np.asarray(a)[mask], np.asarray(b)[mask]
  k = max(a.max(), b.max()) + 1
  confusion = np.zeros((k, k))
  np.add.at(confusion, (a, b), 1)
  confusion /= confusion.sum()
  p_e = confusion.sum(1) @ confusion.sum(0)
  return (np.trace(confusion) - p_e) / (1 - p_e)


def test_prediction_kappa_golden_values():
  from bass_jax import loop  # pylint: disable=g-import-not-at-top
  every = jnp.ones(4, bool)
  # p_o 3/4, p_e 1/2 * 1/4 + 1/2 * 3/4 = 1/2: (3/4 - 1/2) / (1 - 1/2).
  before, after = jnp.array([0, 0, 1, 1]), jnp.array([0, 1, 1, 1])
  np.testing.assert_allclose(loop.prediction_kappa(before, after, every, 3),
                             0.5, rtol=1e-6)
  np.testing.assert_allclose(numpy_kappa(before, after, every), 0.5)
  # Swapped classes: no agreement where chance gives 1/2.
  np.testing.assert_allclose(loop.prediction_kappa(
      jnp.array([0, 1]), jnp.array([1, 0]), jnp.ones(2, bool), 2), -1.0)
  # Only the masked samples count: without sample 1 they all agree.
  mask = jnp.array([True, False, True, True])
  assert float(loop.prediction_kappa(before, after, mask, 2)) == 1.0
  # Agreement on one class throughout (no chance correction possible): 1.
  same = jnp.array([2, 2, 2, 2])
  assert float(loop.prediction_kappa(same, same, every, 3)) == 1.0
  assert np.isnan(loop.prediction_kappa(before, after, ~every, 2))


def test_pool_kappa_compares_with_the_last_iterations_predictions(toy):
  """metrics' pool_kappa: NaN at iteration 0, then the kappa of the pool's
  predicted classes (state.labels off X) against the previous iteration's,
  over the samples unlabelled when the iteration began. Checked at the
  iterations without a query (1 and 3): a query overwrites its picks'
  predictions with their answers."""
  r = experiment.build(tiny_config(), toy)
  state, states, rows = r.state, [jax.device_get(r.state)], []
  for _ in range(4):  # The step donates its state: keep host copies.
    state, m = r.step(state, r.pool)
    states.append(jax.device_get(state))
    rows.append(jax.device_get(m))
  assert np.isnan(rows[0]['pool_kappa']).all()
  for i in (1, 3):
    for j in range(2):
      before, after = states[i], states[i + 1]
      expected = numpy_kappa(before.labels[j], after.labels[j],
                             ~np.asarray(before.labelled[j]))
      np.testing.assert_allclose(rows[i]['pool_kappa'][j], expected,
                                 rtol=1e-5)
  assert all(-1 <= k <= 1 for m in rows[1:] for k in m['pool_kappa'])


def test_per_seed_data_vmapped_equals_each_seed_alone():
  """data_per_seed: every seed its own draw; 2 seeds vmapped = 2 runs of 1.

  Seed s draws with data_seed + 1000 s, so a seed's data does not depend on
  which other seeds share its run.
  """
  def config(seed, num_seeds):
    return tiny_config(num_iterations=2, initial_epochs=5, mc_passes_gt=10,
                       seed=seed, num_seeds=num_seeds)
  assert config(0, 2).data_per_seed  # The Table 1 default.
  drawn = experiment.seed_datasets(config(3, 2))
  assert experiment.is_per_seed(drawn)
  for j, seed in enumerate((3, 4)):
    alone = experiment.seed_datasets(config(seed, 1))
    assert not experiment.is_per_seed(alone)
    np.testing.assert_array_equal(alone[0].x_train, drawn[j].x_train)
    np.testing.assert_array_equal(alone[0].y_test, drawn[j].y_test)
  assert not np.array_equal(drawn[0].x_train, drawn[1].x_train)
  shared = config(3, 2)
  shared.data_per_seed = False
  assert not experiment.is_per_seed(experiment.seed_datasets(shared))
  # The same runs on smaller draws: the pool gains a seed axis.
  small = [data.load_yinyang(num_per_class=60, seed=1000 * s) for s in (3, 4)]
  both, _, rows = run_metrics(config(3, 2), small, 2)
  assert both.per_seed_data and both.pool.x.shape == (2, 120, 2)
  for j, seed in enumerate((3, 4)):
    alone, _, alone_rows = run_metrics(config(seed, 1), small[j], 2)
    assert alone.pool.x.shape == (120, 2)  # One seed: no seed axis.
    for r, a in zip(rows, alone_rows):
      for name in ('val_acc', 'theta', 'pool_entropy', 'num_train'):
        np.testing.assert_allclose(r[name][j], a[name][0], rtol=1e-5,
                                   err_msg=name)
