"""Oracles: who answers a query. The simulated one lives on the device (it
reveals hidden labels inside the compiled iteration); the human ones live here.

File oracle: at a query iteration the run writes

  <workdir>/queries/<iteration>/manifest.csv   header `id,label`, label empty
  <workdir>/queries/<iteration>/<id>.png       one image per queried sample
  <workdir>/queries/<iteration>/contact_sheet.png

checkpoints, and exits with status 3 ("waiting for labels"). The user fills
the `label` column (a class number 0..C-1, or a class name where the dataset
has them; where a class name is itself a number, as folders named `1` and
`2`, labels are read as class names only, see `names_only`) and relaunches
the command (without --overwrite); the answers are checked here (unknown
or missing ids, unknown labels, a file not in UTF-8 -> one-line error,
nothing changed) and the run continues. `id` is the sample's index in the
dataset's training split in its original order. Nothing is ever read with
pickle.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from typing import Callable, Optional, Sequence, TextIO

import numpy as np

from bass_jax import writing
from bass_jax.errors import BassError

WAITING_FOR_LABELS = 3  # Exit status of a run paused for the file oracle.
# Every query's images at a glance, beside its manifest.
CONTACT_SHEET = 'contact_sheet.png'


class OracleError(BassError):
  """A bad answer file or answer."""


class WaitingForLabels(Exception):
  """The run paused at a query; relaunching after the answers continues it.

  Not an error: the launch scripts print the message and exit with
  `WAITING_FOR_LABELS`.
  """

  def __init__(self, manifest: str, num_ids: int,
               class_names: Sequence[str] = (), unlabelled: int = -1,
               num_classes: int = 0,
               then: str = 'relaunch without --overwrite to continue'):
    num_classes = num_classes or len(class_names)
    classes = (f'; {label_choices(num_classes, class_names)}'
               if num_classes else "; '?' for one you cannot tell")
    count = (f'{unlabelled} of {num_ids} samples still without a label'
             if 0 <= unlabelled < num_ids else f'{num_ids} samples')
    # Inputs that are no images (vectors) get no pictures.
    shown = ('their images and a contact sheet are beside it' if
             os.path.exists(os.path.join(os.path.dirname(manifest),
                                         CONTACT_SHEET))
             else 'their ids are pool rows')
    super().__init__(
        f'waiting for labels: fill the label column of {manifest} '
        f'({count}; {shown}{classes}), then {then}')
    self.manifest = manifest


# The answer for a sample one cannot label ('?' or 'skip' in a manifest or
# at the terminal): it stays unlabelled and is never asked again. Written
# back as '?', which no class name can take from it ('skip' can).
SKIPPED = -1
SKIP_WORDS = ('?', 'skip')


def class_legend(class_names: Sequence[str]) -> str:
  """'0=circle, 1=square': what each class number means."""
  return ', '.join(f'{j}={name}' for j, name in enumerate(class_names))


def _as_int(text: str) -> int | None:
  """The integer `text` spells, or None."""
  try:
    return int(text)
  except ValueError:
    return None


def names_only(class_names: Sequence[str]) -> bool:
  """Whether answers are read as class names only, never as class numbers.

  True when some class name is itself a number other than its own class
  number (image folders named `1` and `2` are classes 0 and 1): then `1`
  would mean class `1` to the user but class number 1, i.e. `2`, to a
  number parser; a manifest mixing both readings would be mislabelled
  silently. Names equal to their own numbers (folders `0`..`9`) agree with
  both readings and keep numbers allowed.
  """
  for j, name in enumerate(class_names):
    number = _as_int(name.strip())
    if number is not None and number != j:
      return True
  return False


def label_choices(num_classes: int, class_names: Sequence[str] = ()) -> str:
  """What an answer may be, for prompts and errors."""
  skip = ", or '?' for one you cannot tell"
  if not class_names:
    return f'0..{num_classes - 1}{skip}'
  if names_only(class_names):
    return (f"class names {', '.join(class_names)} (they are numbers, so a "
            f'label is read as a class name, never as a class number){skip}')
  return f'classes {class_legend(class_names)}{skip}'


def _match_name(text: str, names: Sequence[str]) -> int | None:
  """The class `text` names: exactly, else ignoring case if unique."""
  if text in names:
    return list(names).index(text)
  lowered = [n.lower() for n in names]
  if lowered.count(text.lower()) == 1:
    return lowered.index(text.lower())
  return None


def parse_label(text: str, num_classes: int,
                class_names: Sequence[str] = ()) -> int:
  """A class number from an answer: '1', or a class name ('square'), or
  SKIPPED for '?' / 'skip' (any case).

  A class name always means that class, matched exactly, else ignoring
  case (a class named 'skip' is that class). A number means that class
  number, unless some class name is a number (`names_only`): then only
  names are accepted.

  Raises:
    ValueError: one line saying what is accepted.
  """
  text = text.strip()
  named = _match_name(text, class_names)
  if named is not None:
    return named
  if text.lower() in SKIP_WORDS:
    return SKIPPED
  if names_only(class_names):
    raise ValueError(f'{text!r} is not one of the '
                     f'{label_choices(num_classes, class_names)}')
  label = _as_int(text)
  if label is None:
    accepted = (f'a class number or name ({class_legend(class_names)})'
                if class_names else f'an integer in 0..{num_classes - 1}')
    raise ValueError(f"{text!r} is not {accepted}, nor '?'")
  if not 0 <= label < num_classes:
    raise ValueError(f'{label} is outside 0..{num_classes - 1}')
  return label


def query_dir(workdir: str, iteration: int) -> str:
  return os.path.join(workdir, 'queries', str(iteration))


MANIFEST = 'manifest.csv'  # A query folder's answer file.


def manifest_path(workdir: str, iteration: int) -> str:
  return os.path.join(query_dir(workdir, iteration), MANIFEST)


def _as_image(x: np.ndarray) -> np.ndarray | None:
  """An [H, W] or [H, W, 3] float image in [0, 1], or None for non-images."""
  if x.ndim == 3 and x.shape[-1] == 1:
    x = x[..., 0]
  if x.ndim not in (2, 3):
    return None
  lo, hi = float(x.min()), float(x.max())
  return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def write_queries(workdir: str, iteration: int, ids: Sequence[int],
                  inputs: np.ndarray) -> str:
  """Writes the query folder for `ids` (pool indices); returns the manifest.

  Args:
    workdir: the run's workdir.
    iteration: the iteration that asked.
    ids: distinct pool indices, ascending.
    inputs: [N, ...] the pool inputs (images get a PNG each).
  """
  return write_query_folder(query_dir(workdir, iteration), ids, inputs)


def write_query_folder(folder: str, ids: Sequence[int],
                       inputs: np.ndarray) -> str:
  """Writes `folder`/manifest.csv (header id,label, labels empty), a PNG per
  image `folder`/<id>.png and the contact sheet; returns the manifest.

  Args:
    folder: where to write (created if needed).
    ids: distinct indices into inputs, ascending.
    inputs: [N, ...] inputs (images get a PNG each).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  os.makedirs(folder, exist_ok=True)
  images = []
  for i in ids:
    img = _as_image(np.asarray(inputs[i], np.float32))
    if img is not None:
      plt.imsave(os.path.join(folder, f'{i}.png'), img, cmap='gray')
      images.append((i, img))
  if images:
    cols = min(10, len(images))
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows),
                             squeeze=False)
    for ax in axes.ravel():
      ax.axis('off')
    for ax, (i, img) in zip(axes.ravel(), images):
      ax.imshow(img, cmap='gray')
      ax.set_title(f'id {i}', fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, CONTACT_SHEET), dpi=80)
    plt.close(fig)
  path = os.path.join(folder, MANIFEST)
  write_manifest(path, ids, {})
  return path


def write_manifest(path: str, ids: Sequence[int], answers: dict[int, int],
                   class_names: Sequence[str] = ()) -> None:
  """Writes (atomically) the manifest of `ids`, each with its answer (a
  class name where the classes have names) or an empty label."""
  def text(i):
    if int(i) not in answers:
      return ''
    label = answers[int(i)]
    if label == SKIPPED:
      return SKIP_WORDS[0]
    return class_names[label] if class_names else str(label)
  table = io.StringIO(newline='')
  writer = csv.writer(table)
  writer.writerow(['id', 'label'])
  for i in ids:
    writer.writerow([int(i), text(i)])
  writing.write_lines(path, [table.getvalue()], newline='')


def manifest_text(path: str) -> str:
  """A manifest's text; Excel's "CSV UTF-8" byte order mark is dropped.

  Raises:
    OracleError: the file is missing or not UTF-8 (a spreadsheet saved it
      in a legacy encoding such as cp1252).
  """
  if not os.path.exists(path):
    raise OracleError(f'{path} is missing; the query folder was removed')
  try:
    with open(path, encoding='utf-8-sig', newline='') as f:
      return f.read()
  except UnicodeDecodeError as e:
    raise OracleError(f'{path} is not UTF-8 text (byte {e.object[e.start]:#x} '
                      f'at offset {e.start}); save it as CSV UTF-8') from None


def _id_label_rows(path: str):
  """Yields (where, row) for the non-blank rows of an id,label file (a
  manifest, the corrections), its header checked.

  Raises:
    OracleError: a missing or non-UTF-8 file, or another header.
  """
  reader = csv.reader(io.StringIO(manifest_text(path), newline=''))
  header = next(reader, None)
  if header is None or [h.strip() for h in header] != ['id', 'label']:
    hint = ('; save it comma-separated (a spreadsheet used ";")'
            if header and ';' in header[0] else '')
    got = 'the file is empty' if header is None else f'got {header!r}'
    raise OracleError(f'{path}: the first line must be the header id,label '
                      f'({got}){hint}')
  for line_no, row in enumerate(reader, start=2):
    if row and any(c.strip() for c in row):
      yield f'{path} line {line_no}', row


def read_answers(path: str, ids: Sequence[int], num_classes: int,
                 class_names: Sequence[str] = (),
                 partial: bool = False) -> dict[int, int]:
  """The user's labels from a filled manifest, fully validated.

  The manifest is UTF-8 (with or without a byte order mark), any line ends.
  `partial`: rows without a label yet are skipped, not refused (a
  manifest filled part-way, or the answers a terminal session recorded
  before it stopped); every id still needs its line.

  Returns:
    id -> label for exactly the queried `ids` (some of them if partial).

  Raises:
    OracleError: missing or non-UTF-8 file, wrong header, unknown /
      duplicate / missing ids, or a label that `parse_label` refuses.
  """
  wanted = {int(i) for i in ids}
  answers = {}
  unlabelled = set()
  for where, row in _id_label_rows(path):
    if partial and len(row) == 2 and not row[1].strip():
      unlabelled.add(_as_int(row[0].strip()))
      continue
    sample, label = _answer(where, row, wanted, num_classes, class_names)
    if sample in answers:
      raise OracleError(f'{where}: id {sample} is answered twice')
    answers[sample] = label
  missing = sorted(wanted - set(answers) - unlabelled)
  if missing:
    raise OracleError(f'{path}: no line for id(s) {missing[:10]}')
  return answers


def read_corrections(path: str, num_ids: int, num_classes: int,
                     class_names: Sequence[str] = ()) -> dict[int, int]:
  """id -> corrected label from a corrections file (id,label lines, read
  as a manifest's answers: class numbers or names; no 'skip').

  Raises:
    OracleError: a bad header, id or label, an id twice, or a 'skip'.
  """
  fixes = {}
  for where, row in _id_label_rows(path):
    sample, label = _answer(where, row, set(range(num_ids)), num_classes,
                            class_names,
                            f'is not in the pool (ids 0..{num_ids - 1})')
    if label == SKIPPED:
      raise OracleError(f'{where}: a correction is a label; a sample the '
                        'run has a label for cannot be skipped')
    if sample in fixes:
      raise OracleError(f'{where}: id {sample} is corrected twice')
    fixes[sample] = label
  return fixes


def _answer(where: str, row: list[str], wanted: set[int], num_classes: int,
            class_names: Sequence[str],
            unwanted: str = 'was not queried') -> tuple[int, int]:
  """(id, label) of one manifest row, or OracleError naming `where` (and
  saying an id outside `wanted` is `unwanted`)."""
  if len(row) != 2:
    raise OracleError(f'{where}: expected id,label, got {row!r}')
  sid, text = row[0].strip(), row[1].strip()
  sample = _as_int(sid)
  if sample is None:
    raise OracleError(f'{where}: id {sid!r} is not an integer')
  if sample not in wanted:
    raise OracleError(f'{where}: id {sample} {unwanted}')
  if not text:
    raise OracleError(f'{where}: id {sample} has no label yet; fill the '
                      'label column')
  try:
    return sample, parse_label(text, num_classes, class_names)
  except ValueError as e:
    raise OracleError(f'{where}: label of id {sample}: {e}') from None


def ascii_preview(x: np.ndarray, width: int = 28) -> str:
  """A terminal rendering of an image sample (or its values otherwise).

  x: one pool sample: [H, W] or [H, W, C_in] (channels averaged) is drawn
  as ASCII; other shapes (e.g. [D] features) are printed as values.
  """
  img = _as_image(np.asarray(x, np.float32))
  if img is not None and img.ndim == 3:
    img = img.mean(axis=-1)  # Colour: its brightness.
  if img is None:
    return np.array2string(np.asarray(x), precision=3)
  ramp = ' .:-=+*#%@'
  step = max(1, img.shape[1] // width)
  rows = img[::2 * step, ::step]
  return '\n'.join(''.join(ramp[min(int(v * len(ramp)), len(ramp) - 1)]
                           for v in row) for row in rows)


def ask_terminal(ids: Sequence[int], inputs: np.ndarray, num_classes: int,
                 query_folder: str, stdin: TextIO = sys.stdin,
                 out: Callable[[str], None] = print,
                 class_names: Sequence[str] = (),
                 known: Optional[dict[int, int]] = None,
                 record: Optional[Callable[[dict[int, int]], None]] = None
                 ) -> dict[int, int]:
  """Asks for each label on the terminal (image path + ASCII preview).

  Args:
    ids: pool indices to ask about.
    inputs: [N, ...] pool inputs, indexed by ids.
    known: answers given before (a session that stopped part-way): not
      asked again.
    record: called with every answer so far after each new one (the run
      writes them into the query's manifest, so none is lost to a Ctrl-C).

  Raises:
    OracleError: stdin closed before every id was answered.
  """
  answers = dict(known or {})
  choices = label_choices(num_classes, class_names)
  if answers:
    rest = '; asking for the rest' if len(answers) < len(ids) else ''
    out(f'{len(answers)} of {len(ids)} labels were given before{rest}')
  for i in ids:
    if int(i) in answers:
      continue
    out(ascii_preview(inputs[i]))
    png = os.path.join(query_folder, f'{i}.png')
    while True:
      out(f'label of id {i} ({png}), {choices}: ')
      line = stdin.readline()
      if not line:
        raise OracleError(f'input ended before id {i} was labelled')
      try:
        answers[int(i)] = parse_label(line, num_classes, class_names)
        break
      except ValueError as e:
        out(str(e))
    if record is not None:
      record(answers)
  return answers
