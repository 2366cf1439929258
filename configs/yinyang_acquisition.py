r"""Acquisition ablation on the Yin-Yang toy: DeepBASS with every query rule.

Each row is Table 1's DeepBASS run (configs/yinyang.py:active_semi: 8
initial labels, step-wise pseudo-labels, 72 iterations, 80 labels trained
on, every seed its own draw) with another `acquisition`:

  random                         uniform picks (the baseline).
  entropy, bald, variation_ratio, mean_std, least_confidence, margin
                                 the top k of a score.
  power_entropy, softmax_entropy, softrank_entropy, power_bald
                                 k picks drawn without replacement with
                                 probability ~ score^beta, exp(beta score),
                                 rank^-beta (beta = 1; Kirsch et al. 2023).
  batchbald                      greedy BatchBALD (Kirsch et al. 2019): the
                                 batch whose labels jointly tell most about
                                 the network.
  coreset, badge                 diversity: greedy k-center over the
                                 network's last hidden layer (Sener and
                                 Savarese 2018), k-means++ over gradient
                                 embeddings (Ash et al. 2020).

Modifiers:
  batch18  18 labels every 18th iteration (iterations 0, 18, 36, 54) instead
           of 2 every 2nd: the same 80 labels in 4 large batches, where a
           top-k batch can spend its labels on one uncertain region.
  active   no pseudo-labels (Table 1's 'active' row instead of DeepBASS).

  python launch/sweep.py --config=configs/yinyang_acquisition.py \
      --workdir=workdirs/acq
  python launch/sweep.py --config=configs/yinyang_acquisition.py:batch18 \
      --workdir=workdirs/acq_batch18
"""

from configs import common
from configs import yinyang

ACQUISITIONS = ('random', 'entropy', 'power_entropy', 'softmax_entropy',
                'softrank_entropy', 'bald', 'power_bald', 'batchbald',
                'variation_ratio', 'mean_std', 'least_confidence', 'margin',
                'coreset', 'badge')

VARIANTS = {name: dict(acquisition=name) for name in ACQUISITIONS}

MODIFIERS = {
    'batch18': dict(query_every=18, query_size=18),
    'active': dict(semi='none'),
}


def get_config(arg=None):
  """One row; `arg` = "acquisition[,batch18][,active][,key=value...]"."""
  config = yinyang.get_config('active_semi')
  config.name = 'yinyang_acquisition'
  return common.build(arg, VARIANTS, MODIFIERS, base=config,
                      variant='entropy')


def sweep(add):
  """Every acquisition of `ACQUISITIONS`, one row each."""
  for name in VARIANTS:
    add(name)
