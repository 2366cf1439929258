"""Plots of one or more runs, from what `reporting` reads out of workdirs.

Learning, calibration and paired curves over iterations, accuracy against
labels, label counts, a 2-D decision panel, and a prediction's accuracy
against coverage, each written as a PNG.
matplotlib is imported on first use with the Agg backend, so plots work on
a headless machine and the rest of bass_jax never needs it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from bass_jax import reporting


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _saved(fig, path: str, dpi: int = 100) -> str:
  """Lays `fig` out, writes it to `path` (PNG) and frees it; returns path."""
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  _pyplot().close(fig)
  return path


def _legend_beside(ax, fontsize: int = 8) -> None:
  """The legend right of the plot, where it hides no curve or error bar."""
  ax.legend(fontsize=fontsize, loc='upper left', bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0)


def _palette(num_runs: int) -> list:
  """One distinct colour per run, the same in every plot of a report.

  Matplotlib's colour cycle (10 colours) while it suffices; beyond it
  (an ablation of 11-20 rows) the 20 colours of 'tab20', so no two runs of
  one figure share a colour.
  """
  cycle = _pyplot().rcParams['axes.prop_cycle'].by_key()['color']
  if num_runs <= len(cycle):
    return cycle
  import matplotlib  # pylint: disable=g-import-not-at-top
  return list(matplotlib.colormaps['tab20'].colors)


def any_run_iterates(runs: Sequence[dict]) -> bool:
  """Whether some run has (or is to have) more than one iteration: else
  plots over iterations have nothing to show (every run an initial
  model)."""
  return any(len({r['iteration'] for r in run['rows']}) > 1 or
             (run['config'].get('num_iterations') or 0) > 0 for run in runs)


def plot_learning_curves(runs: Sequence[dict], path: str) -> str:
  """Fig. 3 style: validation accuracy vs iteration, mean ± std per run.

  A run of one iteration (an initial model, e.g. a supervised row) beside
  longer ones is a dashed level across the plot, its std an error bar.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(9.5, 4.5))
  draw_learning_curves(ax, runs)
  return _saved(fig, path)


def draw_learning_curves(ax, runs: Sequence[dict], metric: str = 'val_acc',
                         scale: float = 100,
                         ylabel: str = 'validation accuracy %',
                         legend: bool = True) -> None:
  """plot_learning_curves' content, drawn into a matplotlib Axes: `metric`
  (times `scale`) over iterations, mean ± std over seeds per run."""
  palette = _palette(len(runs))
  data = [(run,) + reporting.curves(run['rows'], metric) for run in runs]
  longest = max((len(its) for _, its, _, _ in data), default=0)
  for j, (run, its, mean, std) in enumerate(data):
    if len(its):  # A run from before `metric` existed has none.
      _draw_curve(ax, its, scale * mean, scale * std,
                  palette[j % len(palette)], reporting.label_of(run),
                  as_level=len(its) == 1 and longest > 1)
  ax.set_xlabel('iteration')
  ax.set_ylabel(f'{ylabel} (mean ± std over seeds)')
  ax.grid(alpha=0.3)
  if legend:
    _legend_beside(ax)


def plot_calibration_curves(runs: Sequence[dict], path: str) -> str | None:
  """How well calibrated each run's model is over the iterations: the test
  set's negative log-likelihood and expected calibration error (val_nll,
  val_ece), mean ± std over seeds; None where no run has them (runs made
  before they were metrics)."""
  if not any(r.get('val_ece') is not None for run in runs
             for r in run['rows']):
    return None
  plt = _pyplot()
  fig, (nll, ece) = plt.subplots(1, 2, figsize=(13, 4.5))
  draw_learning_curves(nll, runs, 'val_nll', 1, 'test NLL, nats',
                       legend=False)
  draw_learning_curves(ece, runs, 'val_ece', 100,
                       'expected calibration error %')
  return _saved(fig, path)


def _draw_curve(ax, its: np.ndarray, mean: np.ndarray, spread: np.ndarray,
                color, label: str, as_level: bool) -> None:
  """One run over iterations [I]: its mean line in a band of ± spread, or,
  `as_level` (an initial model beside longer runs), a dashed level across
  the plot with an error bar at its one iteration."""
  if as_level:
    ax.axhline(mean[0], linestyle='--', linewidth=1, color=color,
               label=f'{label} (initial model)')
    ax.errorbar(its, mean, yerr=spread, fmt='o', capsize=3, color=color)
    return
  ax.plot(its, mean, label=label, color=color,
          marker='o' if len(its) == 1 else None)
  ax.fill_between(its, mean - spread, mean + spread, color=color, alpha=0.2)


def plot_paired_curves(runs: Sequence[dict], baseline: int,
                       path: str) -> str:
  """Each run's validation accuracy minus runs[baseline]'s, seed by seed,
  over iterations: mean ± standard error over the shared seeds.

  Where the seeds spread far more than the rows differ (the learning
  curves' bands overlap), this says which row is ahead, and from when. An
  initial model is a dashed level with an error bar, as in the learning
  curves; the baseline is the zero line.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(9.5, 4.5))
  palette = _palette(len(runs))
  data = [(j, run) + reporting.paired_curve(run, runs[baseline])
          for j, run in enumerate(runs) if j != baseline]
  longest = max((len(its) for _, _, its, _, _ in data), default=0)
  ax.axhline(0, color=palette[baseline % len(palette)], linewidth=1,
             label=f'{reporting.label_of(runs[baseline])} (baseline)')
  for j, run, its, mean, se in data:
    _draw_curve(ax, its, mean, np.nan_to_num(se), palette[j % len(palette)],
                reporting.label_of(run), as_level=len(its) == 1 and longest > 1)
  ax.set_xlabel('iteration')
  ax.set_ylabel(f'minus {reporting.label_of(runs[baseline])}\n'
                '(points, paired; mean ± SE over seeds)')
  ax.grid(alpha=0.3)
  _legend_beside(ax)
  return _saved(fig, path)


def plot_accuracy_vs_labels(runs: Sequence[dict], path: str,
                            target: float | None = None,
                            paper_points: Sequence[bool] | None = None
                            ) -> str:
  """Active learning's curve: validation accuracy vs ground-truth labels."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(9.5, 4.5))
  draw_accuracy_vs_labels(ax, runs, target, paper_points)
  return _saved(fig, path)


def draw_accuracy_vs_labels(ax, runs: Sequence[dict],
                            target: float | None = None,
                            paper_points: Sequence[bool] | None = None
                            ) -> None:
  """plot_accuracy_vs_labels' content, drawn into a matplotlib Axes.

  Per run, the mean ± std over seeds at each iteration against the mean
  labels then; a run whose labels never change (no acquisition) is one
  point, its final accuracy. The paper's accuracy for a run, where its
  config names one, is an open diamond in the run's colour at the run's
  final labels, unless `paper_points` (one per run) says the run does not
  end with the paper row's labels (a change of
  reporting.LABEL_COUNT_FIELDS: the paper's number belongs elsewhere on the
  axis). `target` (a fraction)
  draws a dotted level. Label counts
  spanning 20x or more (Table 2's 100 to 60,000) get a log axis, where the
  few-label end is not crowded into a corner.
  """
  palette = _palette(len(runs))
  all_labels, any_paper = [], False
  for j, run in enumerate(runs):
    color = palette[j % len(palette)]
    _, labels, _ = reporting.curves(run['rows'], 'num_labels')
    _, mean, std = reporting.curves(run['rows'], 'val_acc')
    all_labels.extend(labels)
    if len(set(labels)) == 1:
      acc = 100 * reporting.final_accuracies(run)
      ax.errorbar(labels[-1:], [acc.mean()], yerr=[acc.std()], fmt='o',
                  capsize=3, color=color, label=reporting.label_of(run))
    else:
      ax.plot(labels, 100 * mean, label=reporting.label_of(run), color=color)
      ax.fill_between(labels, 100 * (mean - std), 100 * (mean + std),
                      color=color, alpha=0.2)
    paper = reporting.paper_accuracy(run)
    if paper is not None and (paper_points is None or paper_points[j]):
      any_paper = True
      ax.plot(labels[-1:], [paper], linestyle='none', marker='D',
              markerfacecolor='none', markersize=8, color=color)
  if any_paper:
    # One legend entry for all the diamonds, not one per run.
    ax.plot([], [], linestyle='none', marker='D', markerfacecolor='none',
            color='gray', label='paper')
  if target is not None:
    ax.axhline(100 * target, linestyle=':', color='black', linewidth=1)
  if all_labels and max(all_labels) >= 20 * max(min(all_labels), 1):
    _log_labels_axis(ax)
  ax.set_xlabel('ground-truth labels (mean over seeds)')
  ax.set_ylabel('validation accuracy % (mean ± std over seeds)')
  ax.grid(alpha=0.3, which='both')
  _legend_beside(ax)


def _log_labels_axis(ax) -> None:
  """A log x axis ticked at 1, 2, 5 x 10^n and written 100, 200, ...,
  1,000 (label counts read better so than as 10^2)."""
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  ax.set_xscale('log')
  ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
  ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f'{v:,.0f}'))
  ax.xaxis.set_minor_formatter(ticker.NullFormatter())


# Why a panel of `plot_label_counts` can be empty.
EMPTY_PANEL_TEXT = {
    'pseudo_acc': 'no pseudo-label with a known\nlabel to score it by',
    'pool_kappa': 'no pool_kappa: runs made by\nan earlier bass_jax',
}


def plot_label_counts(runs: Sequence[dict], path: str) -> str:
  """Labels, training-set size, pseudo-label accuracy and the pool's
  prediction agreement with the previous iteration over iterations."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
  panels = (('num_labels', 'labels (ground truth)', 1),
            ('num_train', '|D| without up-sampling', 1),
            ('pseudo_acc', 'pseudo-label accuracy %', 100),
            ('pool_kappa', 'pool predictions: kappa with the last iteration',
             1))
  # One colour per run in every panel, though runs without pseudo-labels
  # have no pseudo_acc curve.
  palette = _palette(len(runs))
  for ax, (metric, title, scale) in zip(axes, panels):
    drawn = False
    for j, run in enumerate(runs):
      its, mean, std = reporting.curves(run['rows'], metric)
      if len(its):
        drawn = True
        color = palette[j % len(palette)]
        ax.plot(its, scale * mean, label=reporting.label_of(run), color=color,
                marker='o' if len(its) == 1 else None)
        ax.fill_between(its, scale * (mean - std), scale * (mean + std),
                        color=color, alpha=0.2)
    if not drawn:  # E.g. a pool without known labels: an empty box says why.
      ax.text(0.5, 0.5, EMPTY_PANEL_TEXT.get(metric, 'no values'),
              ha='center', va='center', transform=ax.transAxes, color='gray')
    ax.set_title(title, fontsize=10)
    ax.set_xlabel('iteration')
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  return _saved(fig, path)


def plot_decision_panel(grid_x: np.ndarray, grid_y: np.ndarray,
                        pred: np.ndarray, entropy: np.ndarray,
                        points: np.ndarray, labels: np.ndarray,
                        labelled: np.ndarray, title: str, path: str) -> str:
  """Figs. 1-2 style: predicted class and uncertainty over a 2-D grid.

  Args:
    grid_x, grid_y: [G, G] grid coordinates.
    pred: [G, G] predicted class (MC mean argmax).
    entropy: [G, G] normalized entropy.
    points: [N, 2] pool inputs; labels: [N] their hidden classes;
      labelled: [N] bool, marked with black-edged stars.
    title: panel title.
    path: output PNG.
  """
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
  axes[0].contourf(grid_x, grid_y, pred, levels=[-0.5, 0.5, 1.5],
                   cmap='coolwarm', alpha=0.35)
  axes[0].set_title('predicted class, labelled points starred', fontsize=10)
  im = axes[1].contourf(grid_x, grid_y, entropy, levels=20, cmap='viridis')
  fig.colorbar(im, ax=axes[1], label='normalized entropy (MC dropout)')
  axes[1].set_title('uncertainty', fontsize=10)
  for ax in axes:
    ax.scatter(points[:, 0], points[:, 1], c=labels, cmap='coolwarm', s=4,
               alpha=0.5)
    ax.scatter(points[labelled, 0], points[labelled, 1], c=labels[labelled],
               cmap='coolwarm', marker='*', s=120, edgecolors='black',
               linewidths=0.8)
    ax.set_aspect('equal')
  fig.suptitle(title)
  return _saved(fig, path, dpi=90)


def plot_accuracy_vs_coverage(curves: dict[str, np.ndarray],
                              confident: tuple[float, float] | None,
                              path: str, title: str = '') -> str:
  """Accuracy on the most certain share of the rows against that share.

  Args:
    curves: per uncertainty score ('entropy', 'bald'), [N] the accuracy on
      its k most certain rows, k = 1..N (`predict.coverage_accuracy`).
    confident: (share, accuracy) of the rows marked confident, or None.
    path: the PNG.
    title: the figure's title.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  for name, accuracy in curves.items():
    share = np.arange(1, accuracy.size + 1) / accuracy.size
    ax.plot(100 * share, 100 * accuracy, label=f'most certain by {name}')
  if confident is not None:
    ax.plot(100 * confident[0], 100 * confident[1], 'ko',
            label='confident (entropy < theta)')
  ax.set_xlabel('share of the rows kept %')
  ax.set_ylabel('accuracy on them %')
  ax.set_xlim(0, 100)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc='lower left')
  if title:
    ax.set_title(title, fontsize=10)
  return _saved(fig, path)
