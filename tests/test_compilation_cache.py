"""config.compilation_cache: JAX's persistent cache, placement only."""

import os
import shutil
import warnings

import jax
import pytest

from bass_jax import checkpoint
from bass_jax import data
from bass_jax import experiment
from configs import yinyang


@pytest.fixture
def restore_cache():
  """Puts JAX's cache folder and threshold back after the test."""
  folder = jax.config.jax_compilation_cache_dir
  threshold = jax.config.jax_persistent_cache_min_compile_time_secs
  yield
  experiment.use_compilation_cache(folder or '')
  jax.config.update('jax_persistent_cache_min_compile_time_secs', threshold)


def test_auto_keeps_the_folder_jax_was_given_else_the_user_cache(
    restore_cache):
  experiment.use_compilation_cache('/tmp/some_cache')
  assert experiment.compilation_cache_dir('auto') == '/tmp/some_cache'
  experiment.use_compilation_cache('')
  assert jax.config.jax_compilation_cache_dir is None
  assert experiment.compilation_cache_dir('auto') == os.path.join(
      os.path.expanduser('~'), '.cache', 'bass_jax', 'xla')
  assert experiment.compilation_cache_dir('~/x') == os.path.expanduser('~/x')


def test_a_run_fills_its_cache_and_resumes_under_another(tmp_path,
                                                         restore_cache):
  """The compiled step lands in the folder; the field is placement only, so
  the workdir resumes with the cache switched off, to the same result."""
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  config = yinyang.get_config('active_semi')
  config.num_iterations, config.initial_epochs = 2, 2
  config.num_seeds, config.mc_passes_gt = 1, 4
  config.checkpoint_every = 1
  config.compilation_cache = str(tmp_path / 'cache')
  ds = data.load_yinyang(num_per_class=20, seed=0)
  workdir = str(tmp_path / 'run')
  first = experiment.run(config, workdir, dataset=ds)
  assert jax.config.jax_compilation_cache_dir == config.compilation_cache
  assert any(name.startswith('jit_') for name in
             os.listdir(config.compilation_cache))
  # The last iteration is computed again, compiled without the cache.
  shutil.rmtree(checkpoint.step_path(workdir, 3))
  config.compilation_cache = ''
  lines = []
  again = experiment.run(config, workdir, dataset=ds, log=lines.append)
  assert jax.config.jax_compilation_cache_dir is None
  assert any(l.startswith('resuming from iteration 2') for l in lines), lines
  assert again['val_acc'] == first['val_acc']


def test_an_unusable_cache_folder_costs_a_warning_not_the_run(
    tmp_path, restore_cache, capsys):
  config = yinyang.get_config('initial')
  config.num_seeds, config.initial_epochs = 1, 2
  ds = data.load_yinyang(num_per_class=20, seed=0)
  (tmp_path / 'a_file').write_text('x')
  for folder in ('/proc/bass_jax_no_such_folder/cache',
                 str(tmp_path / 'a_file')):
    config.compilation_cache = folder
    # One line of ours, once, instead of JAX's two-line warning at every
    # compilation.
    with warnings.catch_warnings():
      warnings.filterwarnings('error', message='.*compilation cache')
      summary = experiment.run(config, str(tmp_path / 'run'), dataset=ds,
                               overwrite=True)
      experiment.use_compilation_cache(folder)
    assert summary['num_seeds'] == 1
    assert capsys.readouterr().err.splitlines() == [
        f'warning: config.compilation_cache: {folder} is not a writable '
        'folder; compiling without the cache']
    assert jax.config.jax_compilation_cache_dir is None
