r"""Active learning on MNIST as the deep active learning papers measure it:
the labels a query rule needs to reach an accuracy.

  python launch/sweep.py --config=configs/mnist_active.py \
      --workdir=workdirs/mnist_active
  python launch/report.py --workdir=workdirs/mnist_active --target_acc=95
  python launch/sweep.py --config=configs/mnist_active.py:small \
      --workdir=workdirs/mnist_active_small    # CPU-sized, see below

Protocol (after Gal et al. 2017 and Kirsch et al. 2019): 20 initial labels
(2 per class, drawn per seed), then 100 iterations, each asking the oracle
for 10 labels (1,020 labels at the end), on the paper's CNN and MNIST split
(60,000-image pool, 10,000 test images). Unlike those papers the network is
not retrained from scratch after each query (unless `retrain`, below): as
everywhere in bass_jax it trains on, 100 initial epochs over the 20x
up-sampled labels, then one epoch per iteration. T' = 20 dropout passes on
the pool; the AL rows use no pseudo-labels, so T on the labels (theta,
logged only) is 10.

Variants (the query rule; none pseudo-labels but `deepbass`):
  random, entropy, bald, variation_ratio   the top 10 of a score (random:
                                            uniform picks).
  power_bald                                10 drawn with probability ~ BALD
                                            (Kirsch et al. 2023).
  batchbald                                 greedy BatchBALD over the 1,000
                                            highest-BALD pool images.
  coreset                                   greedy k-center over the CNN's
                                            embedding of the pool (Sener and
                                            Savarese 2018).
  badge                                     k-means++ over gradient
                                            embeddings (Ash et al. 2020).
  deepbass                                  entropy queries + all-data
                                            pseudo-labels (the paper's method;
                                            T = 100 on the labels).

Published anchors (SPEC §4; their own networks, retrained per query): Gal et
al. 2017 need 335 (BALD), 295 (variation ratios) and 835 (random) acquired
images to reach 5 % test error; BatchBALD with batches of 10 reaches 95 % at
a median of 200 labels. `launch/report.py --target_acc=95` prints the same
measure for each row (median over seeds of the labels at the first
iteration reaching 95 %).

Modifier `retrain`: every iteration after the first trains a fresh
network for the initial epochs (`retrain_every=1`), as the anchors' papers
retrain from scratch after each query; each iteration then trains ~100x
what it trains on (`python launch/sweep.py
--config=configs/mnist_active.py:retrain`, or `:small,retrain`). On the
`small` pool training on as long (`--config.epochs_per_iteration=30`)
did as well, and 3 epochs per iteration as well at 1/7 of the wall, so
the gain there is the training, not the fresh start (README, Active
learning on MNIST).

Modifier `small` (the 2-core CPU): pool = first 2,000 train images, test =
first 2,000 test images, 30 initial epochs, 25 iterations (270 labels),
T' = 10, BatchBALD over the top 200 with 50 passes. A relative comparison of
the rules, not the anchors' scale.
"""

from configs import common

ACQUISITIONS = ('random', 'entropy', 'bald', 'variation_ratio', 'power_bald',
                'batchbald', 'coreset', 'badge')

VARIANTS = {
    **{name: dict(acquisition=name) for name in ACQUISITIONS},
    'deepbass': dict(acquisition='entropy', semi='all', mc_passes_gt=100),
}

MODIFIERS = {
    'small': dict(pool_size=2000, test_size=2000, initial_epochs=30,
                  num_iterations=25, mc_passes_pool=10,
                  batchbald_candidates=200, batchbald_passes=50),
    # The papers' protocol: a fresh network after every query.
    'retrain': dict(retrain_every=1),
}


def get_config(arg=None):
  """One row; `arg` = "rule[,small][,retrain][,key=value...]"."""
  config = common.base_config()
  config.name = 'mnist_active'
  config.dataset = 'mnist'
  config.model = 'cnn'
  config.initial_per_class = 2
  config.num_iterations = 100
  config.query_every = 1
  config.query_size = 10
  config.semi = 'none'
  config.mc_passes_pool = 20
  config.mc_passes_gt = 10
  return common.build(arg, VARIANTS, MODIFIERS, base=config,
                      variant='bald')


def sweep(add):
  """Every query rule, then DeepBASS."""
  for name in VARIANTS:
    add(name)
