r"""Picks the images of a folder without labels to label first, and files
your answers as the labelled images a run starts from.

  python launch/first_labels.py --images=my_images --classes=cat,dog,bird \
      [--num=0] [--pick=representative|random] [--seed=0] [--terminal]

For an image folder (`configs/folder.py`) with only `unlabelled/` images:
picks --num of them (0: 2 per class), by default the images nearest the
centres of a k-means clustering of all of them (typical images of every
kind; --pick=random draws uniformly), writes
`my_images/first_labels/manifest.csv` with each pick's PNG and a contact
sheet, and exits with status 3. Fill the label column (class names, or
numbers in sorted order; `?` to skip one) and run the same command again:
each answered image moves from `unlabelled/` into `labelled/<class>/`,
which the run then starts from (skipped ones stay). With --terminal it
asks on the terminal instead and moves them at once. Run it again for more
picks (classes still without an image are named): k-means then holds the
labelled images as fixed centres, so the new picks are typical of what
they leave uncovered. The classes are labelled/'s subfolders and --classes.
"""

import os
import pathlib
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import flags  # pylint: disable=g-import-not-at-top

from launch import common as launch_common

_IMAGES = flags.DEFINE_string(
    'images', None, 'The image folder: unlabelled/ (the images), and '
    'labelled/<class>/ once some are labelled.')
_CLASSES = flags.DEFINE_list(
    'classes', [], 'The class names (with labelled/<class>/ folders: more '
    'of them).')
_NUM = flags.DEFINE_integer('num', 0, 'Images to pick (0: 2 per class).')
_PICK = flags.DEFINE_enum(
    'pick', 'representative', ['representative', 'random'],
    'representative: the images nearest k-means centres of all of them; '
    'random: drawn uniformly.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the pick.')
_TERMINAL = flags.DEFINE_boolean(
    'terminal', False, 'Ask on the terminal instead of a manifest to fill.')


def main(argv):
  del argv
  from bass_jax import first_labels  # pylint: disable=g-import-not-at-top
  from bass_jax import oracle  # pylint: disable=g-import-not-at-top
  from bass_jax.errors import BassError  # pylint: disable=g-import-not-at-top
  if not _IMAGES.value:
    raise BassError('give --images=FOLDER (its unlabelled/ holds the images)')
  root = pathlib.Path(_IMAGES.value).expanduser()
  if not root.is_dir():
    raise BassError(f'{root}: folder not found')
  picks = first_labels.pending_picks(root)
  folder = first_labels.folder_of(root)
  manifest = str(folder / oracle.MANIFEST)
  if picks is None:
    names = first_labels.class_names(root, _CLASSES.value)
    num = _NUM.value or 2 * len(names)
    files, images = first_labels.picked(root, num, _PICK.value, _SEED.value)
    first_labels.write_picks(root, files, images, names, _PICK.value,
                             _SEED.value)
    picks = first_labels.pending_picks(root)
    print(f'picked {num} of the images of {root / "unlabelled"} '
          f'({_PICK.value}); their copies are in {folder}')
  elif any(f.present for f in (_CLASSES, _NUM, _PICK, _SEED)):
    print(f'{len(picks["files"])} picks of {folder} wait for labels first; '
          '--classes, --num, --pick and --seed apply to the next picks')
  names, ids = picks['class_names'], range(len(picks['files']))
  if not os.path.exists(manifest):  # Deleted: the picks are asked again.
    oracle.write_query_folder(str(folder), ids,
                              first_labels.picked_images(root, picks))
  known = oracle.read_answers(manifest, ids, len(names), names, partial=True)
  if _TERMINAL.value:
    answers = oracle.ask_terminal(
        ids, first_labels.picked_images(root, picks), len(names),
        str(folder), stdin=sys.stdin, out=print,
        class_names=names, known=known,
        record=lambda a: oracle.write_manifest(manifest, ids, a, names))
  elif len(known) < len(ids):
    raise oracle.WaitingForLabels(
        manifest, len(ids), names, len(ids) - len(known),
        then='run the same command again to move them into labelled/')
  else:
    answers = known
  moved = first_labels.apply_answers(root, picks, answers)
  counts = first_labels.class_counts(root, names)
  print(f'moved {len(moved)} image(s) into {root / "labelled"}'
        + (f' ({len(ids) - len(moved)} skipped: left in unlabelled/)'
           if len(moved) < len(ids) else '') + '; labelled/ now holds '
        + ', '.join(f'{n}: {c}' for n, c in counts.items()))
  missing = [n for n, c in counts.items() if c == 0]
  if missing:
    print(f'class(es) {", ".join(missing)} have no labelled image yet, and a '
          'run knows only the classes of labelled/: run this again for more '
          'picks (--num)')
  else:
    print('now train on them: python launch/train.py '
          f'--config=configs/folder.py --config.dataset={_IMAGES.value} '
          f'--workdir=workdirs/{root.resolve().name}')


if __name__ == '__main__':
  launch_common.run_main(main, resumes=False)
