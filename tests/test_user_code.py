"""Code of one's own: a model (`config.model='file.py:Name'` or
'module:Name') and acquisition scores, loaded, checked against their
contracts, and run like the built-in ones."""

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bass_jax import config_checks
from bass_jax import data
from bass_jax import experiment
from bass_jax import models
from bass_jax import reporting
from bass_jax.errors import ConfigError
from conftest import REPO
from configs import yinyang

NETS = os.path.join('tests', 'user_nets.py')  # As a user gives it: relative.
# TinyNet on the toy's 2-D points, 2 classes: 16 x (2 + 1) + 17 x 2.
TINY_PARAMS = 82


def tiny_config(model: str):
  config = yinyang.get_config('active_semi')
  config.model = model
  config.num_iterations, config.num_seeds = 2, 2
  config.initial_epochs, config.mc_passes_gt = 5, 10
  return config


@pytest.fixture
def in_repo(monkeypatch):
  monkeypatch.chdir(REPO)


@pytest.mark.parametrize('name', ['TinyNet', 'tiny_net'])
def test_masks_follow_the_key_and_no_key_is_no_dropout(in_repo, name):
  model = models.build_model(f'{NETS}:{name}', 2, dropout_rate=0.5)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(64, 2)), jnp.float32)
  params = model.init(jax.random.key(0), x)
  assert models.num_params(params) == TINY_PARAMS
  a, b, c = (np.asarray(model.apply(params, x, jax.random.key(k)))
             for k in (1, 1, 2))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  no_dropout = models.build_model(f'{NETS}:{name}', 2, dropout_rate=0.0)
  np.testing.assert_array_equal(
      np.asarray(model.apply(params, x, None)),
      np.asarray(no_dropout.apply(params, x, jax.random.key(1))))


def test_a_module_path_loads_the_same_network(in_repo):
  # tests/ is on sys.path here, as a user's package would be.
  by_file = models.build_model(f'{NETS}:TinyNet', 2)
  by_module = models.build_model('user_nets:TinyNet', 2)
  x = jnp.ones((4, 2))
  params = by_file.init(jax.random.key(3), x)
  np.testing.assert_array_equal(
      np.asarray(by_file.apply(params, x, jax.random.key(4))),
      np.asarray(by_module.apply(params, x, jax.random.key(4))))


@pytest.mark.parametrize('model, message', [
    ('nets.py', "config.model='nets.py' is not one of"),
    ('tests/nope.py:Net', "config.model 'tests/nope.py:Net': no file "
                          "'tests/nope.py'"),
    ('no_such_package_xyz:Net', 'loading no_such_package_xyz failed: '
                                'ModuleNotFoundError'),
    (f'{NETS}:Nope', "has no class or function 'Nope'"),
    (f'{NETS}:TinyNet.x', "expected 'file.py:name'"),
])
def test_a_model_that_cannot_be_found_is_a_config_error(in_repo, model,
                                                       message):
  with pytest.raises(ConfigError, match=re.escape(message)) as e:
    config_checks.validate_config(tiny_config(model))
  assert str(e.value).startswith('config.model')


def test_an_error_on_import_is_named_in_one_line(tmp_path):
  # A ValueError from the user's code is theirs, not a bad spec: named.
  (tmp_path / 'nets.py').write_text('import math\nmath.log(-1)\n')
  with pytest.raises(ConfigError, match=re.escape(
      f"config.model '{tmp_path}/nets.py:Net': loading {tmp_path}/nets.py "
      'failed: ValueError: math domain error')):
    config_checks.validate_config(tiny_config(f'{tmp_path}/nets.py:Net'))
  # A sys.exit on import once ended the run with the oracle's status 3.
  (tmp_path / 'exits.py').write_text('import sys\nsys.exit(3)\n')
  with pytest.raises(ConfigError, match=re.escape(
      f'loading {tmp_path}/exits.py failed: SystemExit: 3')):
    config_checks.validate_config(tiny_config(f'{tmp_path}/exits.py:Net'))
  # A name that is there but is no class or function says so.
  (tmp_path / 'values.py').write_text('Net = 5\n')
  with pytest.raises(ConfigError, match=re.escape(
      f"'Net' in {tmp_path}/values.py is 5, not a class or function")):
    config_checks.validate_config(tiny_config(f'{tmp_path}/values.py:Net'))


@pytest.mark.parametrize('name, message', [
    ('ThreeLogits', 'returned (2, 3) float32, expected logits (2, 2) float'),
    ('NoSeed', "TypeError: NoSeed.__call__() got an unexpected keyword "
               "argument 'seed'"),
    ('NoClasses', 'it must take a num_classes argument'),
])
def test_a_model_that_breaks_the_contract_is_a_config_error(in_repo, name,
                                                           message):
  ds = data.load_yinyang(num_per_class=20, seed=0)
  with pytest.raises(ConfigError) as e:
    experiment.checked_setup(tiny_config(f'{NETS}:{name}'), ds)
  assert str(e.value).startswith(f"config.model '{NETS}:{name}'")
  assert message in str(e.value) and '\n' not in str(e.value)


def test_train_cli_runs_a_model_from_a_file(tmp_path, in_repo):
  workdir = tmp_path / 'run'
  result = subprocess.run(
      [sys.executable, 'launch/train.py', '--config=configs/yinyang.py',
       f'--config.model={NETS}:TinyNet', '--config.num_iterations=2',
       '--config.num_seeds=2', '--config.initial_epochs=5',
       '--config.mc_passes_gt=10', f'--workdir={workdir}'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['num_params'] == TINY_PARAMS
  rows = reporting.read_workdir(str(workdir))['rows']
  assert sorted({(r['iteration'], r['seed']) for r in rows}) == [
      (i, s) for i in range(3) for s in range(2)]
  # The same run in-process, from the config it stored: the same numbers
  # (the model is the file's, not a built-in one by chance).
  stored = json.loads((workdir / 'config.json').read_text())
  assert stored['model'] == f'{NETS}:TinyNet'
  again = experiment.run(tiny_config(f'{NETS}:TinyNet'),
                         str(tmp_path / 'again'))
  assert again['val_acc']['per_seed'] == summary['val_acc']['per_seed']


@pytest.mark.parametrize('model, rate, impl, draws', [
    ('mlp', 0.33, 'hash', True), ('mlp', 0.33, 'prng', True),
    ('mlp', 0.0, 'hash', False), ('cnn', 0.33, 'hash', True),
    ('cnn', 0.0, 'hash', False), ('softmax', 0.33, 'hash', False),
    (f'{NETS}:TinyNet', 0.5, 'hash', True),
    (f'{NETS}:TinyNet', 0.0, 'hash', False),
    (f'{NETS}:NoDropout', 0.5, 'hash', False),
])
def test_draws_masks_tells_whether_the_passes_can_differ(in_repo, model, rate,
                                                        impl, draws):
  shape = (28, 28, 1) if model == 'cnn' else (2,)
  net = models.build_model(model, 10, dropout_rate=rate, mask_impl=impl)
  assert models.draws_masks(net, shape, jnp.float32) == draws
  if model in ('mlp', 'cnn', 'softmax'):
    # The built-ins are judged from the config without tracing: the same.
    config = tiny_config(model)
    config.dropout_rate = rate
    assert experiment.model_draws_masks(config, None) == draws


@pytest.mark.parametrize('model, rate, field, why', [
    ('softmax', 0.33, 'acquisition', "config.model='softmax' has no dropout"),
    ('mlp', 0.0, 'confident_score',
     "config.model='mlp' draws no dropout masks at dropout_rate=0.0"),
    (f'{NETS}:NoDropout', 0.33, 'acquisition',
     f"config.model='{NETS}:NoDropout' never uses its pass's key"),
])
def test_a_pass_score_on_a_network_without_dropout_is_a_config_error(
    in_repo, model, rate, field, why):
  config = tiny_config(model)
  config.dropout_rate = rate
  config.semi, config.confident_score = 'confident', 'bald'
  config.acquisition = 'bald' if field == 'acquisition' else 'entropy'
  ds = data.load_yinyang(num_per_class=20, seed=0)
  with pytest.raises(ConfigError) as e:
    experiment.checked_setup(config, ds)
  assert str(e.value).startswith(
      f"config.{field}='bald' compares MC passes, but {why}")
  assert 'every score is 0' in str(e.value) and '\n' not in str(e.value)


def test_batchbald_without_dropout_or_with_one_pass_is_a_config_error(
    in_repo):
  ds = data.load_yinyang(num_per_class=20, seed=0)
  for field, value in (('dropout_rate', 0.0), ('mc_passes_pool', 1)):
    config = tiny_config('mlp')
    config.acquisition = 'batchbald'
    config[field] = value
    with pytest.raises(ConfigError, match="^config.acquisition='batchbald' "
                       'compares MC passes'):
      experiment.checked_setup(config, ds)


def test_a_run_without_dropout_notes_its_passes_repeat_one(in_repo,
                                                          tmp_path):
  config = tiny_config(f'{NETS}:NoDropout')
  config.num_iterations, config.num_seeds, config.initial_epochs = 0, 1, 1
  ds = data.load_yinyang(num_per_class=20, seed=0)
  lines = []
  experiment.run(config, str(tmp_path / 'a'), lines.append, dataset=ds)
  notes = [s for s in lines if s.startswith('note: ')]
  assert notes == [f"note: config.model='{NETS}:NoDropout' never uses its "
                   "pass's key (no MaskDropout given the seed, or at a "
                   'dropout rate of 0), so its '
                   '10 MC passes repeat one pass: --config.mc_passes_pool=1 '
                   '--config.mc_passes_gt=1 compute it once; for MC dropout, '
                   'give the network dropout (README: Your own network)']
  config.mc_passes_pool = config.mc_passes_gt = 1
  lines.clear()
  experiment.run(config, str(tmp_path / 'b'), lines.append, dataset=ds)
  assert not [s for s in lines if s.startswith('note: ')]


SCORES = os.path.join('tests', 'user_scores.py')


def toy_rows(config, workdir):
  ds = data.load_yinyang(num_per_class=100, seed=0)
  experiment.run(config, str(workdir), dataset=ds)
  return [{k: r[k] for k in ('iteration', 'seed', 'val_acc', 'num_labels',
                             'num_train', 'theta')}
          for r in reporting.read_workdir(str(workdir))['rows']]


@pytest.mark.parametrize('field, own, built_in', [
    ('acquisition', f'{SCORES}:least_confidence_again', 'least_confidence'),
    ('acquisition', f'power_{SCORES}:bald_again', 'power_bald'),
])
def test_a_score_of_ones_own_picks_what_the_built_in_picks(
    in_repo, tmp_path, field, own, built_in):
  def config(value):
    c = yinyang.get_config('active_semi')
    c.num_iterations, c.num_seeds, c.query_every = 3, 2, 1
    c.initial_epochs, c.mc_passes_gt = 5, 10
    setattr(c, field, value)
    return c
  mine = toy_rows(config(own), tmp_path / 'own')
  theirs = toy_rows(config(built_in), tmp_path / 'built_in')
  assert [r['num_labels'] for r in mine][-1] > mine[0]['num_labels']
  assert mine == theirs


@pytest.mark.parametrize('score, message', [
    ('per_pass', 'returned (10, 3) float32, expected scores (3,) float'),
    ('broken', 'TypeError: mul got incompatible shapes for broadcasting'),
    ('nope', "has no class or function 'nope'"),
    ('nan_score', 'returned [nan, nan, nan] for a confident, a uniform and '
     'a disputed sample: every score must be a finite number'),
])
def test_a_score_that_breaks_the_contract_is_a_config_error(in_repo, score,
                                                           message):
  ds = data.load_yinyang(num_per_class=20, seed=0)
  for field, value in (('acquisition', f'{SCORES}:{score}'),
                       ('acquisition', f'softmax_{SCORES}:{score}'),
                       ('confident_score', f'{SCORES}:{score}')):
    config = tiny_config('mlp')
    config.semi = 'confident'
    setattr(config, field, value)
    with pytest.raises(ConfigError) as e:
      experiment.checked_setup(config, ds)
    assert str(e.value).startswith(f"config.{field} '{SCORES}:{score}'")
    assert message in str(e.value) and '\n' not in str(e.value)


def test_auto_maps_the_seeds_of_a_convolutional_model_on_a_cpu(in_repo):
  ds = data.load_yinyang(num_per_class=20, seed=0)
  config = tiny_config(f'{NETS}:TinyNet')
  assert not experiment.is_convolutional(config, ds)
  assert experiment.preferred_seed_strategy(config, ds) == 'vmap'
  images = data.Dataset(
      x_train=np.zeros((8, 6, 6, 1), np.float32), y_train=np.zeros(8, int),
      x_test=np.zeros((4, 6, 6, 1), np.float32), y_test=np.zeros(4, int),
      num_classes=2, name='images')
  config.model = f'{NETS}:TinyCNN'
  assert experiment.is_convolutional(config, images)
  assert experiment.preferred_seed_strategy(config, images) == 'map'
  config.seed_strategy = 'vmap'
  assert experiment.preferred_seed_strategy(config, images) == 'vmap'


def test_a_file_named_like_a_sampling_is_named_in_the_error(tmp_path,
                                                            monkeypatch):
  # 'power_mine.py:fn' reads as power_ sampling of mine.py's fn; the error
  # says how to name the file itself, and that way works.
  monkeypatch.chdir(tmp_path)
  (tmp_path / 'power_mine.py').write_text(
      'def fn(probs, mean_probs):\n  return 1.0 - mean_probs.max(-1)\n')
  config = tiny_config('mlp')
  config.acquisition = 'power_mine.py:fn'
  with pytest.raises(ConfigError, match=re.escape(
      "no file 'mine.py'") + '.*' + re.escape(
          "for the top k of power_mine.py, write './power_mine.py:fn'")):
    config_checks.validate_config(config)
  config.acquisition = './power_mine.py:fn'
  config_checks.validate_config(config)
