"""Training-time augmentation (`config.augment`): random shifts and flips of
the training batches only, drawn from the step's key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bass_jax import augment
from bass_jax import data
from bass_jax import experiment
from bass_jax import training
from bass_jax.errors import ConfigError
from conftest import run_metrics
from configs import yinyang


@pytest.mark.parametrize('text, spec', [
    ('', augment.Augment()),
    ('none', augment.Augment()),
    ('shift:2', augment.Augment(shift=2)),
    ('flip', augment.Augment(flip=True)),
    (' shift:3 + flip ', augment.Augment(3, True)),
    ('shift:0', augment.Augment()),
])
def test_parse(text, spec):
  assert augment.parse(text) == spec
  assert augment.parse(text).active == (spec != augment.Augment())


@pytest.mark.parametrize('text, message', [
    ('shift', "'shift' is not 'shift:<pixels>' or 'flip'"),
    ('shift:-1', "'shift:-1' is not"),
    ('rotate:10', "'rotate:10' is not"),
    ('flip:1', "'flip:1' is not"),
    ('flip+flip', "names 'flip' twice"),
    ('shift:2,flip', "'shift:2,flip' is not"),
    ('none+flip', "'none' is not"),
])
def test_parse_errors_name_the_part(text, message):
  with pytest.raises(ValueError, match=message):
    augment.parse(text)


def reference_shift(x: np.ndarray, oy: int, ox: int, s: int) -> np.ndarray:
  """out[i, j] = x[clip(i - s + oy), clip(j - s + ox)] of one [H, W, C]."""
  h, w = x.shape[:2]
  rows = np.clip(np.arange(h) - s + oy, 0, h - 1)
  cols = np.clip(np.arange(w) - s + ox, 0, w - 1)
  return x[rows][:, cols]


def test_shifted_golden():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(9, 5, 6, 2)).astype(np.float32)
  offsets = np.array([[a, b] for a in range(3) for b in range(3)], np.int32)
  out = np.asarray(augment.shifted(jnp.asarray(x), jnp.asarray(offsets), 1))
  for b, (oy, ox) in enumerate(offsets):
    np.testing.assert_array_equal(out[b], reference_shift(x[b], oy, ox, 1))
  np.testing.assert_array_equal(out[4], x[4])  # Offset (s, s): unmoved.
  # (0, 0): the content moves one pixel down and right.
  np.testing.assert_array_equal(out[0][1:, 1:], x[0][:-1, :-1])


def test_augmented_draws_per_image_from_the_key():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2000, 6, 6, 1)),
                  jnp.float32)
  key = jax.random.key(3)
  assert augment.augmented(x, key, augment.Augment()) is x
  spec = augment.Augment(shift=2, flip=True)
  once = np.asarray(augment.augmented(x, key, spec))
  np.testing.assert_array_equal(once, augment.augmented(x, key, spec))
  other = np.asarray(augment.augmented(x, jax.random.key(4), spec))
  assert not np.array_equal(once, other)
  # Each image is one of its 5 x 5 shifts, mirrored or not; count which.
  xs = np.asarray(x)
  seen = {}
  for b in range(200):
    matches = [(oy, ox, m) for oy in range(5) for ox in range(5)
               for m in (False, True)
               if np.array_equal(once[b], (lambda r: r[:, ::-1] if m else r)(
                   reference_shift(xs[b], oy, ox, 2)))]
    assert len(matches) == 1, b
    seen[matches[0]] = seen.get(matches[0], 0) + 1
  assert len({k[:2] for k in seen}) == 25  # Every offset occurs.
  mirrored = sum(n for k, n in seen.items() if k[2])
  assert 70 < mirrored < 130  # About half of 200 (binomial sd ~7).


def images(n: int = 120, seed: int = 0) -> data.Dataset:
  """3 classes of 8x8 grey images: a bright bar in one of three rows."""
  rng = np.random.default_rng(seed)

  def draw(m):
    y = np.arange(m) % 3
    x = rng.uniform(0, 0.2, (m, 8, 8, 1))
    for i, c in enumerate(y):
      x[i, 1 + 2 * c:3 + 2 * c] += 0.8
    return x.astype(np.float32), y.astype(np.int32)

  x_train, y_train = draw(n)
  x_test, y_test = draw(60)
  return data.validate_dataset(data.Dataset(x_train, y_train, x_test, y_test,
                                            3, 'bars'))


def image_config(**overrides):
  config = yinyang.get_config('active_semi')
  config.dataset, config.pixel_scale = 'bars', 1.0
  config.num_iterations, config.initial_epochs = 3, 5
  config.num_seeds, config.mc_passes_gt = 2, 10
  config.initial_per_class, config.batch_size = 2, 32
  config.update(overrides)
  return config


def test_training_with_and_without_augmentation():
  ds = images()
  base = run_metrics(image_config(), ds, 2)[2]
  shifted = run_metrics(image_config(augment='shift:1+flip'), ds, 2)[2]
  again = run_metrics(image_config(augment='shift:1+flip'), ds, 2)[2]
  for a, b in zip(shifted, again):  # Same keys, same run.
    for name in a:
      np.testing.assert_array_equal(a[name], b[name], err_msg=name)
  assert not np.array_equal(base[-1]['loss'], shifted[-1]['loss'])


def test_vmapped_seeds_equal_sequential_seeds_with_augmentation():
  """Tolerance: 1e-4 absolute on float metrics, exact on counts."""
  ds = images()
  _, vstate, vrows = run_metrics(
      image_config(augment='shift:1+flip', seed=5), ds, 2)
  for j, seed in enumerate([5, 6]):
    _, sstate, srows = run_metrics(
        image_config(augment='shift:1+flip', seed=seed, num_seeds=1), ds, 2)
    for v, s in zip(vrows, srows):
      for name in v:
        np.testing.assert_allclose(v[name][j], s[name][0], atol=1e-4,
                                   err_msg=f'{name} seed {seed}')
    np.testing.assert_array_equal(vstate.labelled[j], sstate.labelled[0])


def test_train_epochs_augments_the_batches_it_trains_on():
  # A network that sees only pixel (0, 0): a shift of 1 moves other
  # pixels there, so the gradient, and so the step, differ.
  ds = images()
  x = jnp.asarray(ds.x_train)
  apply_fn = lambda params, xb, key: xb[:, 0, 0, :] @ params['w']
  optimizer = training.make_optimizer(0.1)
  params = {'w': jnp.ones((1, 3))}
  state = training.TrainState(params, optimizer.init(params))
  labelled = jnp.arange(x.shape[0]) < 12

  def trained(spec):
    return training.train_epochs(
        state, optimizer, apply_fn, jax.random.key(0), x,
        jnp.asarray(ds.y_train), labelled, ~labelled, jnp.int32(1),
        gt_upsample=2, mu=1.0, batch_size=16, capacity=256, l2=0.0,
        augment=spec)[0].params['w']

  plain = trained(augment.Augment())
  np.testing.assert_array_equal(plain, trained(augment.Augment()))
  assert not np.allclose(plain, trained(augment.Augment(shift=1)))


@pytest.mark.parametrize('overrides, message', [
    (dict(augment='shift:two'), "config.augment='shift:two': 'shift:two' is "
                                "not 'shift:<pixels>' or 'flip'"),
])
def test_bad_augment_is_a_config_error(overrides, message):
  with pytest.raises(ConfigError, match=message):
    experiment.build(image_config(**overrides), images())


def test_augment_needs_images():
  with pytest.raises(ConfigError, match=(
      r"config.augment='flip' shifts and flips images \[H, W, C\]; dataset "
      r"'yinyang' has inputs \[2\]: set config.augment='none'")):
    experiment.check_against_data(
        image_config(augment='flip', dataset='yinyang'),
        data.load_yinyang(num_per_class=20, seed=0))
  with pytest.raises(ConfigError, match=r'shifts by as much as the images '
                     r'are wide \(8x8\)'):
    experiment.check_against_data(image_config(augment='shift:8'), images())

