r"""The blog baseline (SPEC §3): softmax regression on a 4,000-image MNIST pool.

  python launch/sweep.py --config=configs/mnist_blog.py --workdir=workdirs/blog

Variants:
  random_400   10 labels, then 39 rounds of +10 random labels (400).
  active_400   the same with least-confidence acquisition (lowest max p).
  active_auto  active_400, then 20 rounds that each pseudo-label the 10 most
               confident pool samples (highest max p; auto-labelling).
  all_4000     all 4,000 pool labels.
Pool = first 4,000 train images, test = first 400 test images. Adam lr 0.1,
no dropout (so T = 1), no L2, no up-sampling; 10 initial labels (1 per
class); each round trains 10 epochs on the current labels (100 at the start).
Unlike the blog we never select a model on the test set: every number is the
model after its fixed training schedule.
"""

from configs import common

# The blog's accuracies %, on its 400 test images.
BLOG = {'random_400': 83.75, 'active_400': 89.75, 'active_auto': 90.50,
        'all_4000': 92.25}

VARIANTS = {
    'random_400': dict(acquisition='random'),
    'active_400': dict(acquisition='least_confidence'),
    'active_auto': dict(acquisition='least_confidence', semi='confident',
                        confident_k=10, confident_score='least_confidence',
                        semi_start=40, num_iterations=59),
    'all_4000': dict(acquisition='none', initial_per_class=-1,
                     num_iterations=0),
}


def get_config(arg=None):
  """Config of one blog row; `arg` = "variant[,key=value...]"."""
  config = common.base_config()
  config.name = 'mnist_blog'
  config.dataset = 'mnist'
  config.model = 'softmax'
  config.pool_size = 4000
  config.test_size = 400
  config.learning_rate = 0.1
  config.l2 = 0.0
  config.dropout_rate = 0.0
  config.gt_upsample = 1
  config.initial_per_class = 1
  config.initial_epochs = 100
  config.epochs_per_iteration = 10
  config.batch_size = 32
  config.num_iterations = 39
  config.semi = 'none'
  config.query_every = 1
  config.query_size = 10
  config.label_budget = 400
  config.mc_passes_gt = 1
  config.mc_passes_pool = 1
  config.chunk_size = 4000
  return common.build(arg, VARIANTS, base=config, references=BLOG,
                      variant='active_400')


def sweep(add):
  for variant in VARIANTS:
    add(variant)
