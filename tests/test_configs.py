"""Every row of every config file, with every modifier, is a valid config."""

import importlib
import pathlib

import ml_collections
import pytest

from bass_jax import config_checks
from bass_jax import workdirs
from bass_jax.errors import ConfigError
from configs import common
from configs import yinyang

CONFIGS = sorted(p.stem for p in (pathlib.Path(__file__).resolve().parents[1]
                                  / 'configs').glob('*.py')
                 if p.stem not in ('__init__', 'common'))


def test_a_misspelt_field_is_an_error_from_python_too():
  # base_config's fields are the ones the library knows (a field added to
  # one but not the other fails here).
  assert set(common.base_config()) == config_checks.KNOWN_FIELDS
  config = yinyang.get_config('active')
  with pytest.raises(AttributeError, match='Did you mean "acquisition"'):
    config.acqusition = 'bald'  # Locked.
  # A hand-built (unlocked) config once ran with the field ignored.
  loose = ml_collections.ConfigDict(config.to_dict())
  loose.acqusition = 'bald'
  with pytest.raises(ConfigError, match=r"config.acqusition is no config "
                     r"field; did you mean 'acquisition'\?"):
    config_checks.validate_config(loose)


@pytest.mark.parametrize('name', CONFIGS)
def test_every_sweep_row_and_modifier_validates(name):
  module = importlib.import_module(f'configs.{name}')
  rows = []
  if hasattr(module, 'sweep'):
    module.sweep(rows.append)
  rows = rows or [None]  # A config without a sweep: its default row.
  for modifier in [None, *getattr(module, 'MODIFIERS', {})]:
    for row in rows:
      arg = ','.join(p for p in (row, modifier) if p) or None
      config = module.get_config(arg)
      if not config.dataset:  # configs/folder.py: the user names it.
        config.dataset = 'my_images'
      config_checks.validate_config(config)
      if row:
        assert config.variant.split(',')[0] == row, (name, arg)


def test_acquisition_rows_are_table1_deepbass_but_for_the_acquisition():
  from configs import yinyang, yinyang_acquisition  # pylint: disable=g-import-not-at-top
  table1 = yinyang.get_config('active_semi').to_dict()
  for acquisition in yinyang_acquisition.ACQUISITIONS:
    row = yinyang_acquisition.get_config(acquisition).to_dict()
    differ = {k for k in table1 if table1[k] != row[k]}
    assert differ <= {'name', 'variant', 'paper_acc', 'acquisition'}, differ
    assert row['acquisition'] == acquisition
  batch = yinyang_acquisition.get_config('power_bald,batch18')
  assert (batch.query_every, batch.query_size) == (18, 18)
  assert batch.acquisition == 'power_bald' and batch.semi == 'stepwise'


def test_mnist_active_rows_differ_in_the_query_rule_only():
  from configs import mnist_active  # pylint: disable=g-import-not-at-top
  base = mnist_active.get_config('random').to_dict()
  for name in mnist_active.ACQUISITIONS:
    row = mnist_active.get_config(name).to_dict()
    assert {k for k in base if base[k] != row[k]} <= {'variant',
                                                      'acquisition'}
  deepbass = mnist_active.get_config('deepbass').to_dict()
  assert {k for k in base if base[k] != deepbass[k]} == {
      'variant', 'acquisition', 'semi', 'mc_passes_gt'}
  # Gal et al.'s schedule: 20 labels, then 10 per iteration to 1,020.
  full = mnist_active.get_config('bald')
  assert (full.initial_per_class * 10 + full.num_iterations // full.query_every
          * full.query_size) == 1020
  small = mnist_active.get_config('batchbald,small')
  assert (small.pool_size, small.num_iterations) == (2000, 25)


def test_config_differences_as_a_resume_sees_them():
  import json  # pylint: disable=g-import-not-at-top
  from configs import yinyang  # pylint: disable=g-import-not-at-top
  config = yinyang.get_config('active_semi')
  stored = json.loads(json.dumps(config.to_dict()))
  # A run made before a field existed computed with its default ...
  del stored['acquisition_beta'], stored['batchbald_passes']
  # ... and where it ran does not change what it computed.
  stored['cpu_devices'], stored['mesh_shape'] = 2, 'seed:2'
  assert workdirs.config_differences(stored, config) == []
  config.acquisition_beta, config.mu = 2.0, 0.5
  assert workdirs.config_differences(stored, config) == [
      'acquisition_beta', 'mu']
