"""Starting from trained parameters (`config.init_params`): a run's export
(`launch/export.py --params_out`) starts every seed, and every retrain, of
another run; files that do not fit the network are one-line errors."""

import shutil
import subprocess
import sys

import flax.serialization
import jax
import numpy as np
import pytest

from bass_jax import analysis
from bass_jax import checkpoint
from bass_jax import data
from bass_jax import experiment
from bass_jax import export
from bass_jax.errors import ConfigError
from bass_jax.errors import DataError
from conftest import REPO
from configs import yinyang


def tiny_config(**changes):
  config = yinyang.get_config('active_semi')
  config.num_iterations, config.num_seeds = 2, 2
  config.initial_epochs, config.mc_passes_gt = 5, 10
  config.update(changes)
  return config


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  """(workdir, dataset, params file of its seed index 1, those params)."""
  root = tmp_path_factory.mktemp('source')
  ds = data.load_yinyang(num_per_class=60, seed=0)
  experiment.run(tiny_config(), str(root / 'run'), dataset=ds)
  path = str(root / 'params.msgpack')
  count, note = export.export_params(str(root / 'run'), path, 1, dataset=ds)
  assert (count, note) == (5352, '')
  _, found = analysis.restored(str(root / 'run'), dataset=ds)
  params = jax.device_get(analysis.seed_params(found.state, 1))
  return str(root / 'run'), ds, path, params


def assert_same_params(a, b):
  leaves_a, tree_a = jax.tree_util.tree_flatten(a)
  leaves_b, tree_b = jax.tree_util.tree_flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y)


def test_every_seed_and_every_retrain_start_from_the_file(source):
  _, ds, path, params = source
  with open(path, 'rb') as f:  # The export is flax's own format.
    assert_same_params(flax.serialization.from_bytes(params, f.read()),
                       params)
  r = experiment.build(tiny_config(num_seeds=3, init_params=path), ds)
  for s in range(3):
    assert_same_params(analysis.seed_params(r.state, s), params)
  # The loop draws a retrain's fresh network from model.init: the file's
  # parameters whatever the key.
  for seed in (0, 1):
    assert_same_params(r.model.init(jax.random.key(seed), ds.x_train[:1]),
                       params)
  # Without it, the seeds draw their own.
  plain = experiment.build(tiny_config(num_seeds=3), ds)
  first, second = (jax.tree_util.tree_leaves(analysis.seed_params(
      plain.state, s)) for s in (0, 1))
  assert not all(np.array_equal(a, b) for a, b in zip(first, second))


def test_files_that_do_not_fit_the_network_are_one_line_errors(source,
                                                               tmp_path):
  _, ds, path, params = source
  with pytest.raises(ConfigError, match=(
      r"holds other parameters than this model's: not in the model "
      r'Dense_1/bias, Dense_1/kernel, Dense_2/bias and 3 more \(another '
      r'model or number of classes\?\)$')):
    experiment.build(tiny_config(model='softmax', init_params=path), ds)
  wider = jax.tree_util.tree_map(lambda a: a, params)
  wider['Dense_0']['kernel'] = np.zeros((3, 50), np.float32)
  other = tmp_path / 'wider.msgpack'
  other.write_bytes(flax.serialization.to_bytes(wider))
  with pytest.raises(ConfigError, match=(
      r'Dense_0/kernel is float32\[3, 50\], this model.s is '
      r'float32\[2, 50\]')):
    experiment.build(tiny_config(init_params=str(other)), ds)
  with pytest.raises(DataError, match='No such file or directory'):
    experiment.build(tiny_config(init_params=str(tmp_path / 'nope')), ds)
  (tmp_path / 'text').write_text('not msgpack at all')
  with pytest.raises(DataError, match='is not a parameter file of '
                     'flax.serialization.to_bytes'):
    experiment.build(tiny_config(init_params=str(tmp_path / 'text')), ds)


def test_a_resume_refuses_a_changed_file(source, tmp_path):
  """A retrain after the resume would start from other parameters."""
  run_dir, ds, path, _ = source
  mine = tmp_path / 'params.msgpack'
  shutil.copy(path, mine)
  config = tiny_config(init_params=str(mine), num_seeds=1,
                       checkpoint_every=1)
  experiment.run(config, str(tmp_path / 'run'), dataset=ds)
  shutil.rmtree(checkpoint.step_path(tmp_path / 'run', 3))
  export.export_params(run_dir, str(mine), 0, dataset=ds)  # Seed index 0.
  with pytest.raises(ConfigError, match=(
      r'config.init_params=\S+ differs from the file the run in \S+ started '
      r'from \(fingerprint [0-9a-f]{16}, the checkpoint has [0-9a-f]{16}\)')):
    experiment.run(config, str(tmp_path / 'run'), dataset=ds)
  shutil.copy(path, mine)  # The file it started from: the run goes on.
  lines = []
  experiment.run(config, str(tmp_path / 'run'), dataset=ds,
                 log=lines.append)
  assert lines[0].startswith('resuming from iteration 2')


def test_export_cli_asks_for_an_output(source):
  res = subprocess.run([sys.executable, str(REPO / 'launch' / 'export.py'),
                        f'--workdir={source[0]}'], capture_output=True,
                       text=True, timeout=300)
  assert res.returncode == 2
  assert res.stderr.splitlines() == [
      'error: give --workdir=DIR and --out=FILE.csv (labels), '
      '--params_out=FILE.msgpack (parameters) or both']
