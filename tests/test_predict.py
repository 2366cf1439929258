"""Predicting new inputs with a trained run (`launch/predict.py`): labels,
MC-dropout uncertainty, the paper's confidence test, seed ensembles."""

import csv
import os
import types

import jax
import numpy as np
import pytest

from bass_jax import analysis
from bass_jax import data
from bass_jax import experiment
from bass_jax import export
from bass_jax import mc_dropout
from bass_jax import predict
from bass_jax.errors import DataError
from conftest import REPO
from configs import yinyang
from test_folder_data import CLASSES
from test_folder_data import folder_config
from test_folder_data import make_folder
from test_folder_data import pattern
from test_folder_data import save

PREDICT = str(REPO / 'launch' / 'predict.py')


def read_csv(path) -> list[list[str]]:
  with open(path, newline='') as f:
    return list(csv.reader(f))


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
  """(workdir, dataset) of a 2-seed Yin-Yang DeepBASS run, 2 iterations."""
  root = tmp_path_factory.mktemp('toy')
  ds = data.load_yinyang(num_per_class=60, seed=0)
  config = yinyang.get_config('active_semi')
  config.num_iterations, config.num_seeds = 2, 2
  config.initial_epochs, config.mc_passes_gt = 5, 10
  experiment.run(config, str(root / 'run'), dataset=ds)
  return str(root / 'run'), ds


@pytest.fixture(scope='module')
def images(tmp_path_factory):
  """(workdir, dataset folder) of a run on an image folder of 8x8 greys."""
  root = tmp_path_factory.mktemp('images')
  make_folder(root / 'shapes')
  experiment.run(folder_config(root / 'shapes'), str(root / 'run'))
  return root / 'run', root / 'shapes'


def test_an_ensemble_is_one_predictor_of_all_its_passes():
  # Golden: S seeds' T passes combined from their statistics alone equal
  # the statistics of the S x T passes themselves.
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 7, 11, 4)) * 2  # [S, T, N, C]
  probs = np.asarray(jax.nn.softmax(logits, axis=-1), np.float32)
  per_seed = [{k: np.asarray(v) for k, v in
               mc_dropout.mc_statistics(p, ('bald',)).items()}
              for p in probs]
  together = mc_dropout.mc_statistics(probs.reshape(21, 11, 4), ('bald',))
  combined = predict.ensemble_statistics(per_seed)
  for key in ('mean_probs', 'entropy', 'bald'):
    np.testing.assert_allclose(combined[key], together[key], atol=2e-6)
  assert np.all(combined['bald'] > 0.01)  # The seeds disagree.


def test_coverage_accuracy_keeps_the_most_certain_rows_first():
  hit = np.array([True, False, True, True])
  score = np.array([0.3, 0.1, 0.3, 0.9])  # Rows 0 and 2 tie: row order.
  np.testing.assert_allclose(predict.coverage_accuracy(hit, score),
                             [0, 1 / 2, 2 / 3, 3 / 4])


def test_theta_is_the_mean_entropy_over_each_seeds_labelled_samples(toy):
  workdir, ds = toy
  run, found = analysis.restored(workdir, dataset=ds)
  # A stand-in predictor whose entropy is the first input coordinate.
  fake = lambda x, stream: {'entropy': x[:, 0]}
  x = np.asarray(ds.x_train)
  labelled = np.asarray(found.state.labelled)
  assert 0 < labelled[0].sum() < labelled.shape[1]
  assert predict.labelled_threshold(run, found.state, [1], fake) == (
      pytest.approx(x[labelled[1], 0].mean(), rel=1e-6))
  both = np.concatenate([x[labelled[0], 0], x[labelled[1], 0]])
  assert predict.labelled_threshold(run, found.state, [0, 1], fake) == (
      pytest.approx(both.mean(), rel=1e-6))


def test_the_pool_predicted_is_the_export_s_prediction(toy, tmp_path):
  workdir, ds = toy
  inputs = tmp_path / 'pool.npz'
  np.savez(inputs, x=ds.x_train, y=ds.y_train)
  out = tmp_path / 'pred.csv'
  table, theta, note = predict.predict(workdir, str(inputs), str(out), 1,
                                       dataset=ds)
  assert note == ''  # A finished run.
  run, found = analysis.restored(workdir, dataset=ds)
  pool = export.pool_predictions(run, found.state, 1)
  np.testing.assert_array_equal(table['label'], pool['label'])
  np.testing.assert_allclose(table['confidence'], pool['confidence'],
                             atol=1e-6)
  rows = read_csv(out)
  assert rows[0] == ['id', 'label', 'confidence', 'entropy', 'bald',
                     'confident', 'true_label']
  assert len(rows) == 1 + ds.x_train.shape[0]
  values = np.array(rows[1:], float)
  np.testing.assert_array_equal(values[:, 0], np.arange(len(rows) - 1))
  np.testing.assert_array_equal(values[:, 1], pool['label'])
  entropy, bald, confident = values[:, 3], values[:, 4], values[:, 5]
  assert np.all((entropy >= 0) & (entropy <= 1 + 1e-6))
  assert np.all((bald >= -1e-5) & (bald <= entropy + 1e-5))
  np.testing.assert_array_equal(confident == 1, table['entropy'] < theta)
  assert 0 < confident.sum() < len(confident) and 0 < theta < 1
  np.testing.assert_array_equal(values[:, 6], ds.y_train)
  hit = pool['label'] == ds.y_train
  assert predict.accuracy_text(table) == (
      f'; accuracy {100 * hit.mean():.1f} % on the {hit.size} labelled rows,'
      f' {100 * hit[confident == 1].mean():.1f} % on the '
      f'{int(confident.sum())} confident')
  # Confident rows are the right ones more often (the point of the test).
  assert hit[confident == 1].mean() > hit.mean()
  # Same keys, same predictions.
  again, theta_again, _ = predict.predict(workdir, str(inputs),
                                          str(tmp_path / 'again.csv'), 1,
                                          dataset=ds)
  assert theta_again == theta
  np.testing.assert_array_equal(again['entropy'], table['entropy'])


def test_an_ensemble_averages_its_seeds(toy, tmp_path):
  workdir, ds = toy
  run, found = analysis.restored(workdir, dataset=ds)
  x = np.asarray(ds.x_test[:50])
  one, two, both = (predict.predictor(run, found.state, seeds, 10)(x, 0)
                    for seeds in ([0], [1], [0, 1]))
  np.testing.assert_allclose(
      both['mean_probs'], (one['mean_probs'] + two['mean_probs']) / 2,
      atol=1e-6)
  assert not np.allclose(one['mean_probs'], two['mean_probs'], atol=1e-3)
  # Its BALD counts the seeds' disagreement too.
  assert np.mean(both['bald']) > np.mean((one['bald'] + two['bald']) / 2)
  inputs = tmp_path / 'x.npz'
  np.savez(inputs, x=x)
  table, _, _ = predict.predict(workdir, str(inputs),
                                str(tmp_path / 'e.csv'), ensemble=True,
                                num_passes=10, dataset=ds)
  np.testing.assert_allclose(table['confidence'],
                             both['mean_probs'].max(-1), atol=1e-6)
  assert read_csv(tmp_path / 'e.csv')[0][-1] == 'confident'  # No labels.


def test_image_inputs_by_class_and_flat(images, tmp_path, forkserver):
  workdir, _ = images
  rng = np.random.default_rng(7)
  new = tmp_path / 'new'
  truth = []
  for c in (2, 0, 1, 2, 0, 1):
    name = CLASSES[c]
    save(new / name / f'n{len(truth)}.png', pattern(c, rng))
    truth.append(c)
  out, plot = tmp_path / 'pred.csv', tmp_path / 'coverage.png'
  result = forkserver([PREDICT, f'--workdir={workdir}', f'--inputs={new}',
                       f'--out={out}', '--mc_passes=5', f'--plot={plot}'],
                      dict(os.environ))
  assert result.returncode == 0, result.stderr
  *_, line, plotted = result.stdout.splitlines()
  assert line.startswith(f'wrote {out}: 6 rows, ') and 'accuracy' in line
  assert plotted == f'wrote {plot}' and plot.stat().st_size > 0
  rows = read_csv(out)
  assert rows[0] == ['id', 'label', 'confidence', 'entropy', 'bald',
                     'confident', 'class_name', 'true_label', 'file']
  listed = [str(p) for name in CLASSES
            for p in sorted((new / name).iterdir())]
  assert [r[8] for r in rows[1:]] == listed  # By class, then name.
  assert [int(r[7]) for r in rows[1:]] == [0, 0, 1, 1, 2, 2]
  for r in rows[1:]:
    assert r[6] == CLASSES[int(r[1])]
  # A flat folder: no labels.
  flat = tmp_path / 'flat'
  save(flat / 'a.png', pattern(1, rng))
  save(flat / 'b.png', pattern(2, rng))
  result = forkserver([PREDICT, f'--workdir={workdir}', f'--inputs={flat}',
                       f'--out={out}', '--mc_passes=5',
                       f'--plot={tmp_path / "flat.png"}'], dict(os.environ))
  assert result.returncode == 0, result.stderr
  rows = read_csv(out)
  assert rows[0][-2:] == ['class_name', 'file'] and len(rows) == 3
  assert 'accuracy' not in result.stdout
  assert result.stdout.splitlines()[-1] == (
      f'no plot: the labels of {flat} are unknown (class subfolders or an '
      'npz y give them)')
  assert not (tmp_path / 'flat.png').exists()


@pytest.mark.parametrize('make, culprit', [
    (lambda d: save(d / 'rgb' / 'a.png', np.zeros((8, 8, 3), np.uint8)),
     'inputs of shape [8, 8, 3], but the run was trained on [8, 8, 1] '
     '(colour images for a run of grey ones: convert them to grey)'),
    (lambda d: save(d / 'big' / 'a.png', np.zeros((9, 8), np.uint8)),
     'inputs of shape [9, 8, 1], but the run was trained on [8, 8, 1]'),
    (lambda d: save(d / 'odd' / 'circle' / 'a.png', np.zeros((8, 8),
                                                            np.uint8)),
     "class 'circle' is not a class of the run (bottom, left, top)"),
    (lambda d: np.savez(d / 'nox.npz', inputs=np.zeros((2, 8, 8, 1))),
     'nox.npz: no key x (has inputs); save the inputs as x'),
    (lambda d: np.savez(d / 'y.npz', x=np.zeros((2, 8, 8, 1)),
                        y=np.array([0, 3])),
     'labels up to 3, but the run has 3 classes (0..2)'),
    (lambda d: None, 'absent: not found; give a folder of images or an .npz'),
])
def test_bad_inputs_are_one_line_errors(images, tmp_path, forkserver, make,
                                        culprit):
  workdir, _ = images
  make(tmp_path)
  name = next(iter(os.listdir(tmp_path)), 'absent')
  out = tmp_path / 'pred.csv'
  result = forkserver([PREDICT, f'--workdir={workdir}',
                       f'--inputs={tmp_path / name}', f'--out={out}'],
                      dict(os.environ))
  assert result.returncode == 2, result.stdout + result.stderr
  lines = result.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  assert culprit in lines[0], lines[0]
  assert not out.exists()


def test_grey_images_are_repeated_for_a_run_of_colour_ones():
  run = types.SimpleNamespace(dataset=types.SimpleNamespace(
      x_train=np.zeros((5, 4, 4, 3), np.float32), num_classes=2))
  grey = np.arange(32, dtype=np.float32).reshape(2, 4, 4, 1)
  x = predict.run_inputs(run, data.Inputs(grey, None, ('a', 'b')), 'new')
  assert x.shape == (2, 4, 4, 3)
  for c in range(3):
    np.testing.assert_array_equal(x[..., c], grey[..., 0])
  # An npz's arrays are taken as saved: one channel is not three.
  with pytest.raises(DataError, match=r'new: inputs of shape \[4, 4, 1\], '
                     r'but the run was trained on \[4, 4, 3\]$'):
    predict.run_inputs(run, data.Inputs(grey, None, None), 'new')


def test_load_inputs_reads_npz_as_the_run_read_its_data(tmp_path):
  path = tmp_path / 'x.npz'
  np.savez(path, x=np.full((3, 2, 2, 1), 128, np.uint8))
  given = data.load_inputs(path, ('a', 'b'), 1 / 256)
  assert given.x.dtype == np.float32 and np.all(given.x == 0.5)
  assert given.y is None and given.files is None
  np.savez(path, x=np.full((3, 2), 0.25), y=np.array([1, 0]))
  with pytest.raises(DataError, match='x has 3 samples but y has 2 labels'):
    data.load_inputs(path, ('a', 'b'), 1 / 256)
  (tmp_path / 'notes.txt').write_text('hi')
  with pytest.raises(DataError, match='neither a folder nor .npz'):
    data.load_inputs(tmp_path / 'notes.txt', ('a', 'b'), 1.0)


def test_cli_asks_for_its_three_flags(forkserver):
  result = forkserver([PREDICT, '--workdir=somewhere'], dict(os.environ))
  assert result.returncode == 2
  assert result.stderr.strip() == (
      'error: give --workdir=DIR (a trained run), --inputs=FOLDER or '
      'FILE.npz and --out=FILE.csv')
