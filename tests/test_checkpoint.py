"""Checkpoints: bit-exact round trips, atomic writes, damage is survived."""

import json
import logging
import os
import re
import pathlib
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bass_jax import checkpoint
from bass_jax import errors
from bass_jax import interrupts
from bass_jax import loop
from bass_jax import models
from bass_jax import training

NUM_SEEDS = 2
POOL = 40


def seeded_states(pool_size=POOL):
  """A fresh LoopState per seed, stacked on a leading seed axis."""
  model = models.build_model('mlp', 2)
  optimizer = training.make_optimizer()
  key_data = jax.random.key_data(
      jax.random.split(jax.random.key(0), NUM_SEEDS))
  labelled = jnp.zeros(pool_size, bool).at[:4].set(True)
  labels = jnp.arange(pool_size, dtype=jnp.int32) % 2

  def one(k):
    return loop.init_state(model.init, optimizer, k, 'threefry2x32',
                           jnp.zeros((1, 2)), labelled, labels)

  return jax.jit(jax.vmap(one))(key_data)


def mid_run(state):
  """Values a real run has: random floats (with -0.0 and a NaN payload),
  grown masks, random labels, advanced counters; dtypes unchanged."""
  rng = np.random.default_rng(1)

  def scramble(x):
    x = np.asarray(x)
    if x.dtype == np.float32:
      v = rng.standard_normal(x.shape).astype(np.float32).ravel()
      v[0] = -0.0
      v[-1:] = np.frombuffer(np.uint32(0x7fc01234).tobytes(), np.float32)
      return jnp.asarray(v.reshape(x.shape))
    return jnp.asarray(x)

  state = jax.tree.map(scramble, state)
  shape = state.labelled.shape
  return state.replace(
      member=jnp.asarray(rng.random(shape) < 0.5),
      labels=jnp.asarray(rng.integers(0, 2**31 - 1, shape, np.int32)),
      key=jnp.asarray(rng.integers(2**31, 2**32, state.key.shape,
                                   np.uint32)),
      iteration=jnp.full(shape[:1], 7, jnp.int32))


@pytest.fixture(scope='module')
def template():
  return seeded_states()


@pytest.fixture(scope='module')
def state(template):
  return mid_run(template)


def assert_bit_identical(restored, expected):
  assert (jax.tree_util.tree_structure(restored) ==
          jax.tree_util.tree_structure(expected))
  for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(expected)):
    assert isinstance(got, jax.Array)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.asarray(got).tobytes() == np.asarray(want).tobytes()


def data_file(path):
  """The largest file orbax wrote: it holds array data."""
  files = [f for f in pathlib.Path(path, checkpoint.ARRAYS).rglob('*')
           if f.is_file()]
  return max(files, key=lambda f: f.stat().st_size)


def truncate(path):
  f = data_file(path)
  f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])


def flip_bytes(path):
  f = data_file(path)
  data = bytearray(f.read_bytes())
  data[len(data) // 2] ^= 0xFF
  f.write_bytes(bytes(data))


def delete_meta(path):
  os.remove(os.path.join(path, checkpoint.META))


def garble_meta(path):
  with open(os.path.join(path, checkpoint.META), 'r+') as f:
    f.truncate(40)


DAMAGE = {'truncate': truncate, 'flip_bytes': flip_bytes,
          'delete_meta': delete_meta, 'garble_meta': garble_meta}


def test_round_trip_is_bit_exact(tmp_path, state, template):
  dtypes = {x.dtype.name for x in jax.tree.leaves(state)}
  assert dtypes == {'bool', 'int32', 'uint32', 'float32'}
  extra = {'pending_queries': [[3, 5], [7, 9]], 'config_hash': 'ab12'}
  path = checkpoint.save(tmp_path, 20, state, extra)
  assert path == os.path.join(tmp_path, 'checkpoints', '20')

  step, restored, got_extra = checkpoint.restore(path, template)
  assert step == 20 and got_extra == extra
  assert_bit_identical(restored, state)
  # An abstract template (no arrays allocated) works the same.
  abstract = jax.eval_shape(lambda: template)
  assert_bit_identical(checkpoint.restore(path, abstract).state, state)


def test_layout_meta_and_no_pickle(tmp_path, state):
  path = checkpoint.save(tmp_path, 3, state)
  assert os.listdir(checkpoint.checkpoints_dir(tmp_path)) == ['3']
  assert sorted(os.listdir(path)) == ['meta.json', 'state']
  meta = json.loads(pathlib.Path(path, 'meta.json').read_text())
  assert meta['step'] == 3 and meta['extra'] == {}
  assert meta['num_leaves'] == len(jax.tree.leaves(state))
  assert all(len(leaf['sha256']) == 64 for leaf in meta['leaves'])
  assert meta['leaves'][-1]['path'] == '.skipped'
  for f in pathlib.Path(path).rglob('*'):
    if f.is_file() and f.stat().st_size:
      assert f.read_bytes()[:1] != b'\x80', f'{f} looks like a pickle'


def test_numpy_leaves_and_zero_size_arrays(tmp_path):
  tree = {'empty': np.zeros((0, 3), np.float32), 'ids': np.arange(4),
          'flag': np.bool_(True), 'key': np.array([1, 2**32 - 1], np.uint32),
          'half': np.array([1.5, -0.0], jnp.bfloat16)}
  path = checkpoint.save(tmp_path, 0, tree)
  restored = checkpoint.restore(path, tree).state
  for name, want in tree.items():
    got = restored[name]
    assert isinstance(got, np.ndarray)
    assert got.dtype == want.dtype and got.shape == np.shape(want)
    assert got.tobytes() == np.asarray(want).tobytes()


def test_keep_last(tmp_path, state):
  for step in range(5):
    checkpoint.save(tmp_path, step * 10, state)
  os.mkdir(checkpoint.step_path(tmp_path, 45))  # Damaged: no meta.json.
  deleted = checkpoint.keep_last(tmp_path, 2)
  assert sorted(os.path.basename(p) for p in deleted) == ['0', '10', '20',
                                                           '45']
  assert sorted(os.listdir(checkpoint.checkpoints_dir(tmp_path))) == ['30',
                                                                      '40']
  with pytest.raises(ValueError):
    checkpoint.keep_last(tmp_path, 0)


@pytest.mark.parametrize('damage', sorted(DAMAGE))
def test_latest_valid_skips_damaged_newest(tmp_path, state, template, damage):
  checkpoint.save(tmp_path, 10, state, {'at': 10})
  newest = checkpoint.save(tmp_path, 20, template, {'at': 20})
  DAMAGE[damage](newest)

  warnings = []
  step, restored, extra = checkpoint.latest_valid(tmp_path, template,
                                                  warn=warnings.append)
  assert (step, extra) == (10, {'at': 10})
  assert_bit_identical(restored, state)
  assert len(warnings) == 1 and newest in warnings[0]

  with pytest.raises(checkpoint.CheckpointError) as e:
    checkpoint.restore(newest, template)
  assert isinstance(e.value, errors.BassError)
  message = str(e.value)
  assert newest in message and '\n' not in message, message


def test_latest_valid_logs_by_default(tmp_path, template, caplog):
  checkpoint.save(tmp_path, 1, template)
  newest = checkpoint.save(tmp_path, 2, template)
  delete_meta(newest)
  with caplog.at_level(logging.WARNING):
    assert checkpoint.latest_valid(tmp_path, template).step == 1
  assert newest in caplog.text and 'meta.json' in caplog.text


def test_killed_write_is_ignored_then_cleaned(tmp_path, state, template):
  checkpoint.save(tmp_path, 10, state)
  root = checkpoint.checkpoints_dir(tmp_path)
  # A write of step 20 killed just before its rename: complete inside, but
  # still under a temp name.
  leftover = os.path.join(root, checkpoint.TMP_PREFIX + '20-dead')
  shutil.copytree(checkpoint.step_path(tmp_path, 10), leftover)

  warnings = []
  found = checkpoint.latest_valid(tmp_path, template, warn=warnings.append)
  assert found.step == 10 and not warnings
  checkpoint.save(tmp_path, 20, state)
  assert sorted(os.listdir(root)) == ['10', '20']


def test_failed_write_leaves_no_checkpoint(tmp_path, state, monkeypatch):
  def crash(*unused_args):
    raise OSError('disk full')

  monkeypatch.setattr(checkpoint, '_write_meta', crash)
  with pytest.raises(OSError):
    checkpoint.save(tmp_path, 5, state)
  assert os.listdir(checkpoint.checkpoints_dir(tmp_path)) == []
  with pytest.raises(TypeError, match='extra'):
    checkpoint.save(tmp_path, 5, state, {'bad': np.zeros(2)})
  assert checkpoint.latest_valid(tmp_path, state) is None


def test_a_write_orbax_fails_is_one_oserror_line(tmp_path, state,
                                                monkeypatch):
  def full_disk(*unused_args):  # What orbax raised on a full tmpfs.
    raise ValueError('RESOURCE_EXHAUSTED: Error writing "leaf_00001/0.0.0"'
                     '\n  ... No space left on device [os_error_code=28]')

  monkeypatch.setattr(checkpoint, '_write_arrays', full_disk)
  with pytest.raises(OSError) as e:
    checkpoint.save(tmp_path, 5, state)
  message = str(e.value)
  root = checkpoint.checkpoints_dir(tmp_path)
  assert message.startswith(f'writing checkpoint 5 to {root} failed: '
                            'RESOURCE_EXHAUSTED'), message
  assert re.search(r'No space left on device \[os_error_code=28\] '
                   r'\([0-9.]+ MB free on its disk\)$', message), message
  assert os.listdir(root) == []


def test_a_disk_without_room_is_refused_before_writing(tmp_path, state,
                                                      monkeypatch):
  real = shutil.disk_usage
  monkeypatch.setattr(checkpoint.shutil, 'disk_usage',
                      lambda p: real(p)._replace(free=300_000))
  with pytest.raises(OSError) as e:
    checkpoint.save(tmp_path, 7, state)
  root = checkpoint.checkpoints_dir(tmp_path)
  assert re.fullmatch(
      f'no room for checkpoint 7 in {re.escape(root)}: it needs about '
      r'[0-9.]+ MB, its disk has 0\.3 MB free; free some space and run the '
      'same command again to resume', str(e.value)), str(e.value)
  assert os.listdir(root) == []


def test_tidy_removes_leftovers_of_a_kill_after_the_last_save(tmp_path,
                                                              state):
  for step in (1, 2, 3):
    checkpoint.save(tmp_path, step, state)
  root = checkpoint.checkpoints_dir(tmp_path)
  # Killed during keep_last: a renamed, half-deleted old checkpoint.
  os.rename(checkpoint.step_path(tmp_path, 1),
            os.path.join(root, checkpoint.TMP_PREFIX + '1-trash'))
  checkpoint.save(tmp_path, 4, state)  # Removes the temp folder as it saves.
  os.rename(checkpoint.step_path(tmp_path, 2),
            os.path.join(root, checkpoint.TMP_PREFIX + '2-trash'))
  assert sorted(os.listdir(root)) == [checkpoint.TMP_PREFIX + '2-trash', '3',
                                      '4']
  checkpoint.tidy(tmp_path, 1)
  assert sorted(os.listdir(root)) == ['4']
  checkpoint.tidy(tmp_path / 'none', 1)  # No checkpoints: nothing to do.


def test_save_replaces_an_existing_step(tmp_path, state, template):
  checkpoint.save(tmp_path, 5, template, {'v': 1})
  checkpoint.save(tmp_path, 5, state, {'v': 2})
  assert os.listdir(checkpoint.checkpoints_dir(tmp_path)) == ['5']
  restored = checkpoint.restore(checkpoint.step_path(tmp_path, 5), template)
  assert restored.extra == {'v': 2}
  assert_bit_identical(restored.state, state)


def test_mismatched_template_raises(tmp_path, state, template):
  path = checkpoint.save(tmp_path, 1, state)
  other_pool = jax.eval_shape(lambda: seeded_states(POOL + 1))
  wrong_dtype = template.replace(labels=template.labels.astype(jnp.float32))
  fewer_leaves = template.replace(train=template.train.params)
  for bad, culprit in [(other_pool, '.labelled'), (wrong_dtype, '.labels'),
                       (fewer_leaves, 'leaves')]:
    with pytest.raises(checkpoint.CheckpointMismatchError) as e:
      checkpoint.restore(path, bad)
    assert isinstance(e.value, checkpoint.CheckpointError)
    message = str(e.value)
    assert path in message and culprit in message and '\n' not in message
  # Not damage: latest_valid must not fall back to a fresh start.
  with pytest.raises(checkpoint.CheckpointMismatchError):
    checkpoint.latest_valid(tmp_path, other_pool)


def test_latest_valid_none(tmp_path, template):
  assert checkpoint.latest_valid(tmp_path, template) is None
  delete_meta(checkpoint.save(tmp_path, 1, template))
  warnings = []
  assert checkpoint.latest_valid(tmp_path, template,
                                 warn=warnings.append) is None
  assert len(warnings) == 1


def test_leaf_checksum_is_checked_after_reading(tmp_path, state, template):
  """Intact files whose arrays differ from what was saved (e.g. a backend
  that casts) fail on the per-leaf sha256, not silently."""
  path = checkpoint.save(tmp_path, 4, state)
  meta_path = os.path.join(path, checkpoint.META)
  meta = json.loads(pathlib.Path(meta_path).read_text())
  meta['leaves'][-3]['sha256'] = '0' * 64
  pathlib.Path(meta_path).write_text(json.dumps(meta))
  with pytest.raises(checkpoint.CheckpointError,
                     match=r'checksum mismatch in leaf \.key$'):
    checkpoint.restore(path, template)


def test_ctrl_c_during_a_save_lands_after_it(tmp_path, state, template,
                                            python_sigint):
  """SIGINT inside the deferred block: the write completes, then it stops."""
  with pytest.raises(KeyboardInterrupt):
    with interrupts.deferred():
      os.kill(os.getpid(), signal.SIGINT)
      checkpoint.save(tmp_path, 3, state)  # Not interrupted.
  restored = checkpoint.latest_valid(tmp_path, template)
  assert restored is not None and restored.step == 3
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  with interrupts.deferred():  # No Ctrl-C: nothing raised.
    pass
