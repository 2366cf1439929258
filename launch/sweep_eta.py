"""The ETA launch/sweep.py prints before each row: the rows' walls fitted
against a rough count of each row's work (its forward passes)."""


def eta_text(done: list[tuple[float, float | None]],
             left: list[float | None]) -> str:
  """'; about 12m30s left in the sweep', '' before any row ran.

  Args:
    done: (wall s, `row_work` or None) of each row this process ran.
    left: `row_work` (None: unknown) of each row left to run, this one
      included and finished ones not.

  A row's wall is read as a fixed part (compiling) plus a part in
  proportion to its work, fitted to the rows run (`wall_model`); rows of
  unknown work count the mean wall. Rows differ in ways the work does not
  count, so an estimate.
  """
  from bass_jax import progress  # pylint: disable=g-import-not-at-top
  if not done:
    return ''
  mean = sum(wall for wall, _ in done) / len(done)
  model = wall_model([(wall, work) for wall, work in done if work])
  seconds = sum(model(work) if model and work else mean for work in left)
  return f'; about {progress.duration_text(seconds)} left in the sweep'


def wall_model(points: list[tuple[float, float]]):
  """work -> predicted wall s, fitted to (wall s, work) points: a line
  (least squares) when 2+ distinct works give one with a positive slope
  and a non-negative intercept, else in proportion to the work; None
  without points."""
  if not points:
    return None
  walls = [wall for wall, _ in points]
  works = [work for _, work in points]
  n = len(points)
  mean_wall, mean_work = sum(walls) / n, sum(works) / n
  spread = sum((x - mean_work) ** 2 for x in works)
  if spread > 0:
    slope = sum((x - mean_work) * (w - mean_wall)
                for w, x in points) / spread
    intercept = mean_wall - slope * mean_work
    if slope > 0 and intercept >= 0:
      return lambda work: intercept + slope * work
  rate = sum(walls) / sum(works)
  return lambda work: rate * work


def row_work(config, sizes: dict | None) -> float | None:
  """Roughly the forward passes of a row over all its seeds, None where
  `sizes` (pool_size, test_size, num_classes of a seed's data) is unknown.

  Counts the initial epochs, then per iteration the MC sweeps of the pool
  and the labels, the evaluation and the epoch (the initial epochs on a
  retrain iteration) over the labels (up-sampled) and the pseudo-labels,
  guessed: the unlabelled pool for semi='all', half
  of it for 'stepwise', confident_k more each iteration for 'confident'.
  An epoch counts its optimizer steps, each a whole batch of forward and
  backward passes (3 forwards a sample): steps run one after another, so
  a small epoch costs a whole batch. What the sweep's ETA scales the
  rows' walls by.
  """
  from bass_jax import loop  # pylint: disable=g-import-not-at-top
  if sizes is None:
    return None
  pool, test = sizes['pool_size'], sizes['test_size']
  labels = (pool if config.initial_per_class == -1 else
            min(pool, config.initial_per_class * sizes['num_classes']))
  most = max(labels, min(pool, config.label_budget or pool))

  def epochs(count, samples):
    return 3 * config.batch_size * count * -(-samples // config.batch_size)

  work = epochs(config.initial_epochs, config.gt_upsample * labels)
  for i in range(config.num_iterations + 1):
    unlabelled = pool - labels
    pseudo = {'all': unlabelled, 'stepwise': unlabelled // 2,
              'confident': min(unlabelled, config.confident_k * i)
              }.get(config.semi, 0)
    retrain = loop.is_retrain_iteration(config.get('retrain_every', 0), i)
    work += (config.mc_passes_pool * pool + config.mc_passes_gt * labels +
             test + epochs(config.initial_epochs if retrain else
                           config.epochs_per_iteration,
                           config.gt_upsample * labels + pseudo))
    if config.acquisition != 'none' and i % config.query_every == 0:
      labels = min(most, labels + config.query_size)
  return float(config.num_seeds * work)


def data_key(config) -> tuple:
  """What a row's data sizes depend on besides pool_size and test_size."""
  return (config.dataset, config.data_dir, config.data_source)


def learn_sizes(known: dict, config, summary: dict) -> None:
  """Adds to `known` ({data_key: sizes}) what a finished row's summary
  tells of its data: the classes, and the whole splits' sizes where the row
  used them whole (pool_size / test_size 0). Older summaries tell nothing."""
  if 'num_classes' not in summary:
    return
  sizes = known.setdefault(data_key(config), {})
  sizes['num_classes'] = summary['num_classes']
  for field in ('pool_size', 'test_size'):
    if not config[field]:
      sizes[field] = summary[field]


def row_sizes(known: dict, config) -> dict | None:
  """A row's pool_size, test_size and num_classes: its config's sizes, else
  those learnt from finished rows of the same data; None if any is unknown."""
  learnt = known.get(data_key(config), {})
  sizes = {'num_classes': learnt.get('num_classes'),
           'pool_size': config.pool_size or learnt.get('pool_size'),
           'test_size': config.test_size or learnt.get('test_size')}
  return None if None in sizes.values() else sizes
