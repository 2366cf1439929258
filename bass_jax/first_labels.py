"""The first labels of an image folder that has none: which images to label.

An image folder run (`configs/folder.py`) needs a few labelled images of
every class. Where there are none yet, `launch/first_labels.py` picks
`num` images of `unlabelled/` (by default the ones nearest k-means centres
of the images, `data.representative_indices`: typical images of the data's
modes, which a uniform draw of a few misses), asks for their labels as a
run's query does (a manifest to fill, or the terminal), and moves each
answered image into `labelled/<class_name>/`. State, inside the image folder:

  first_labels/picks.json      the pending picks: files, classes, how picked
  first_labels/manifest.csv    header id,label; id = position in the picks
  first_labels/<id>.png        each pick as shown, and contact_sheet.png
  first_labels/moved.csv       every move made: file,class_name (appended)

The loaders read only labelled/, unlabelled/ and test/, so this folder is
never data.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
from typing import Sequence

import numpy as np

from bass_jax import data
from bass_jax import oracle
from bass_jax import writing
from bass_jax.errors import DataError

FOLDER = 'first_labels'
PICKS = 'picks.json'
MOVED = 'moved.csv'
PICKINGS = ('representative', 'random')


def folder_of(root: pathlib.Path) -> pathlib.Path:
  return root / FOLDER


def pending_picks(root: pathlib.Path) -> dict | None:
  """The picks waiting for labels ({'files', 'class_names', 'pick', 'seed'}),
  or None."""
  path = folder_of(root) / PICKS
  if not path.exists():
    return None
  try:
    with open(path, encoding='utf-8') as f:
      picks = json.load(f)
    if not {'files', 'class_names'} <= set(picks):
      raise ValueError('no files or class_names')
  except (ValueError, AttributeError, TypeError) as e:
    raise DataError(f'{path}: not the picks this tool wrote ({e}); remove '
                    f'{folder_of(root)} to pick anew') from None
  return picks


def picked_images(root: pathlib.Path, picks: dict) -> np.ndarray:
  """[n, H, W, C] the pending picks' images, read from unlabelled/."""
  return data.read_images([root / 'unlabelled' / f for f in picks['files']])


def labelled_class_names(root: pathlib.Path) -> tuple[str, ...]:
  """The class subfolders of labelled/ (empty ones too), sorted; () if none."""
  folder = root / 'labelled'
  if not folder.is_dir():
    return ()
  return tuple(sorted(p.name for p in folder.iterdir()
                      if p.is_dir() and not p.name.startswith('.')))


def class_names(root: pathlib.Path, given: Sequence[str]) -> tuple[str, ...]:
  """The classes to label with: labelled/'s subfolders and `given`, sorted.

  Raises:
    DataError: fewer than two classes, or a name no folder can have.
  """
  names = sorted(set(labelled_class_names(root)) |
                 {n.strip() for n in given if n.strip()})
  for name in names:
    if name in ('.', '..') or '/' in name or os.sep in name or (
        name.startswith('.')):
      raise DataError(f'class name {name!r} cannot be a folder name in '
                      f'{root / "labelled"}; rename it')
  if len(names) < 2:
    raise DataError(f'{root}: {len(names)} class(es) known '
                    f'({", ".join(names) or "none"}); name them all with '
                    '--classes=cat,dog,... (or make labelled/<class_name>/ '
                    'folders)')
  return tuple(names)


def picked(root: pathlib.Path, num: int, pick: str, seed: int
           ) -> tuple[list[pathlib.Path], np.ndarray]:
  """num images of root/unlabelled/ to label first, by `pick`.

  Representative picks treat the images of labelled/ (an earlier round's)
  as covered: fixed k-means centres (`data.representative_indices`), so
  the picks are typical of the images unlike them.

  Returns:
    (their files, sorted by name; their images [num, H, W, C] as a run
    reads them, `data.load_inputs`).

  Raises:
    DataError: no unlabelled/ images, num outside 1..their count, an
      unknown `pick`, or an image that cannot be read or differs in size.
  """
  if pick not in PICKINGS:
    raise DataError(f'pick {pick!r} is not one of {PICKINGS}')
  pool = root / 'unlabelled'
  if not pool.is_dir():
    raise DataError(f'{pool}: folder not found; put the images to label '
                    'there (flat, any names)')
  inputs = data.load_inputs(pool, (), 1 / 256)
  count = inputs.x.shape[0]
  if not 1 <= num <= count:
    raise DataError(f'num={num} images to label must be in 1..{count} (the '
                    f'images of {pool})')
  if pick == 'random':  # Every image a candidate: all labels "known".
    idx = data.random_initial_indices(np.zeros(count, np.int32), num, seed)
  else:
    # Images labelled already (an earlier round's) cover their clusters:
    # the picks are typical images of the rest. Read with the unlabelled
    # ones, as a run reads them all (one size, RGB if any is).
    labelled = labelled_files(root)
    x = (data.read_images([pathlib.Path(f) for f in inputs.files] + labelled,
                          1 / 256) if labelled else inputs.x)
    position = np.arange(len(x))
    idx = data.representative_indices(
        data.principal_features(x), position < count, num, seed,
        covered=position >= count)
  return [pathlib.Path(inputs.files[i]) for i in idx], inputs.x[idx]


def labelled_files(root: pathlib.Path) -> list[pathlib.Path]:
  """The images of labelled/'s class subfolders, by class then name."""
  return [f for name in labelled_class_names(root)
          for f in data.image_files(root / 'labelled' / name)]


def write_picks(root: pathlib.Path, files: Sequence[pathlib.Path],
                images: np.ndarray, names: Sequence[str], pick: str,
                seed: int) -> str:
  """Writes the pending picks (see the module doc); returns the manifest."""
  folder = folder_of(root)
  manifest = oracle.write_query_folder(str(folder), range(len(files)), images)
  writing.write_lines(str(folder / PICKS), [json.dumps(
      {'files': [f.name for f in files], 'class_names': list(names),
       'pick': pick, 'seed': seed}, indent=1)])
  return manifest


def moves(root: pathlib.Path, picks: dict, answers: dict[int, int]
          ) -> list[tuple[pathlib.Path, pathlib.Path]]:
  """[(unlabelled/<file>, labelled/<class>/<file>)] of the answered picks
  still to move (skipped ones stay; one moved already, by a run of
  `apply_answers` stopped part-way, is left out), checked before anything
  moves.

  Raises:
    DataError: a picked file gone from unlabelled/, or one already in
      its class folder.
  """
  out = []
  for i, name in enumerate(picks['files']):
    label = answers.get(i, oracle.SKIPPED)
    if label == oracle.SKIPPED:
      continue
    src = root / 'unlabelled' / name
    dst = root / 'labelled' / picks['class_names'][label] / name
    if dst.exists() and not src.exists():  # Moved before a stop.
      continue
    if not src.exists():
      raise DataError(f'{src}: picked but no longer there; put it back, or '
                      f'remove {folder_of(root) / PICKS} to pick anew')
    if dst.exists():
      raise DataError(f'{dst} exists already; rename one of the two')
    out.append((src, dst))
  return out


def apply_answers(root: pathlib.Path, picks: dict,
                  answers: dict[int, int]) -> list[tuple[str, str]]:
  """Moves each answered pick into labelled/<class_name>/, records the
  moves in first_labels/moved.csv and clears the pending picks. Every
  class gets its folder, an empty one too: the next picks know the class
  (and a run refuses the empty folder in one line).

  Returns:
    [(file name, class name)] moved.
  """
  planned = moves(root, picks, answers)
  folder = folder_of(root)
  for name in picks['class_names']:  # Empty ones too: they keep the class.
    (root / 'labelled' / name).mkdir(parents=True, exist_ok=True)
  record = folder / MOVED
  new = not record.exists()
  done = []
  with open(record, 'a', encoding='utf-8', newline='') as f:
    writer = csv.writer(f)
    if new:
      writer.writerow(['file', 'class_name'])
    for src, dst in planned:  # Each move recorded as it is made.
      os.replace(src, dst)
      writer.writerow([src.name, dst.parent.name])
      f.flush()
      done.append((src.name, dst.parent.name))
  for i in range(len(picks['files'])):  # The shown copies, then the query.
    (folder / f'{i}.png').unlink(missing_ok=True)
  for name in (oracle.CONTACT_SHEET, oracle.MANIFEST, PICKS):
    (folder / name).unlink(missing_ok=True)
  return done


def class_counts(root: pathlib.Path,
                 names: Sequence[str]) -> dict[str, int]:
  """{class name: images in labelled/<class name>/} for every class."""
  def count(name):
    folder = root / 'labelled' / name
    return len(data.image_files(folder)) if folder.is_dir() else 0
  return {name: count(name) for name in names}
