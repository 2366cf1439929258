"""launch/sweep_eta.py: the sweep's ETA from its rows' walls and work."""

import pytest

from configs import yinyang
from launch import sweep_eta


def tiny_config(**changes):
  """A config small enough to count its work by hand."""
  config = yinyang.get_config()
  for key, value in dict(
      num_seeds=2, initial_per_class=1, gt_upsample=2, batch_size=4,
      initial_epochs=3, epochs_per_iteration=1, num_iterations=1,
      mc_passes_pool=2, mc_passes_gt=3, semi='all', acquisition='entropy',
      query_every=1, query_size=3, label_budget=0, pool_size=0,
      test_size=0).items():
    config[key] = value
  for key, value in changes.items():
    config[key] = value
  return config


SIZES = {'pool_size': 10, 'test_size': 5, 'num_classes': 2}


def test_row_work_counts_whole_batches_sweeps_and_queries_by_hand():
  # 2 labels (1 per class). Initial: 3 epochs of 4 samples = 1 step of 4,
  # 3 forwards a sample: 36. Iteration 0: sweeps 2 x 10 + 3 x 2 + 5 test =
  # 31, epoch 2 x 2 + 8 pseudo = 12 samples = 3 steps = 36; query -> 5
  # labels. Iteration 1: sweeps 20 + 15 + 5 = 40, epoch 10 + 5 = 15 samples
  # = 4 steps = 48. (36 + 67 + 88) x 2 seeds.
  assert sweep_eta.row_work(tiny_config(), SIZES) == 382.0
  # No pseudo-labels, no queries: iteration 0 sweeps 31 and trains 1 step
  # (12), iteration 1 the same.
  assert sweep_eta.row_work(tiny_config(semi='none', acquisition='none'),
                            SIZES) == 2 * (36 + 2 * (31 + 12))
  # A label budget of 4 stops the query at 4 labels: iteration 1 sweeps
  # 20 + 12 + 5 and trains 8 + 6 pseudo = 14 samples, 4 steps.
  assert sweep_eta.row_work(tiny_config(label_budget=4), SIZES) == 2 * (
      36 + 67 + (20 + 12 + 5 + 48))
  # retrain_every=1: iteration 1 trains the 3 initial epochs of its 15
  # samples (4 steps each) from a fresh network, 2 x 48 more than one.
  assert sweep_eta.row_work(tiny_config(retrain_every=1), SIZES) == (
      382.0 + 2 * 2 * 48)
  assert sweep_eta.row_work(tiny_config(), None) is None


def test_wall_model_fits_a_fixed_part_and_a_rate():
  line = sweep_eta.wall_model([(5.0, 100.0), (15.0, 600.0)])
  assert line(100.0) == pytest.approx(5.0)
  assert line(1100.0) == pytest.approx(25.0)  # 3 s + 0.02 s per unit.
  # A negative fixed part (the small row ran faster per unit) and one
  # point both fall back to the mean rate.
  rate = sweep_eta.wall_model([(1.0, 100.0), (12.0, 1000.0)])
  assert rate(1100.0) == pytest.approx(13.0)
  assert sweep_eta.wall_model([(4.0, 200.0)])(50.0) == pytest.approx(1.0)
  assert sweep_eta.wall_model([]) is None


def test_eta_text_adds_the_model_and_the_mean_for_unknown_rows():
  assert sweep_eta.eta_text([], [1.0]) == ''
  done = [(5.0, 100.0), (15.0, 600.0)]
  # 25 s for the known row, the mean 10 s for the unknown one.
  assert sweep_eta.eta_text(done, [1100.0, None]) == (
      '; about 35s left in the sweep')
  assert sweep_eta.eta_text([(6.0, None)], [None, None]) == (
      '; about 12s left in the sweep')


def test_sizes_are_learnt_from_rows_that_used_the_whole_data():
  known = {}
  summary = {'pool_size': 300, 'test_size': 50, 'num_classes': 2}
  sweep_eta.learn_sizes(known, tiny_config(pool_size=300, test_size=50),
                        summary)
  # A cut pool tells the classes only.
  assert sweep_eta.row_sizes(known, tiny_config()) is None
  assert sweep_eta.row_sizes(known, tiny_config(pool_size=20, test_size=5)
                             ) == {'pool_size': 20, 'test_size': 5,
                                   'num_classes': 2}
  sweep_eta.learn_sizes(known, tiny_config(), {
      'pool_size': 1000, 'test_size': 900, 'num_classes': 2})
  assert sweep_eta.row_sizes(known, tiny_config(test_size=5)) == {
      'pool_size': 1000, 'test_size': 5, 'num_classes': 2}
  # Other data, or a summary from before sizes were recorded: unknown.
  sweep_eta.learn_sizes(known, tiny_config(dataset='mnist'), {'wall_s': 1})
  assert sweep_eta.row_sizes(known, tiny_config(dataset='mnist')) is None
