"""Atomic, verified checkpoints of the loop state (any pytree of arrays).

On-disk layout, one directory per saved iteration:

  <directory>/checkpoints/<step>/state/      orbax (OCDBT) arrays, one per leaf
  <directory>/checkpoints/<step>/meta.json   step, leaves, files, `extra`
  <directory>/checkpoints/.tmp-<step>-<hex>/ a write in progress (or killed)

A checkpoint is written into a `.tmp-*` directory, `meta.json` goes in last,
and one `rename` publishes it, so a numbered directory is either absent or
complete: a crash at any point leaves at most a temp directory, which readers
ignore and the next `save` removes. `meta.json` holds the shape, dtype and
sha256 of every leaf and the size and sha256 of every file orbax wrote, so
damage after the fact (a truncated or overwritten file) is detected on
restore, and `latest_valid` falls back to the previous checkpoint.

Backend: orbax stores the arrays (no pickle anywhere; `extra` is JSON). Orbax
only sees a flat dict `{'leaf_00000': array, ...}`: the pytree structure,
shapes and dtypes are checked here against a caller-given template, because
orbax silently casts to the template's dtype and ignores its shape, and does
not accept zero-size arrays (those are rebuilt from `meta.json` alone).

Single writer per directory: `save` deletes every `.tmp-*` entry it finds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import operator
import os
import re
import shutil
import uuid
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from bass_jax.errors import BassError

FORMAT = 'bass_jax.checkpoint/1'
CHECKPOINTS = 'checkpoints'
META = 'meta.json'
ARRAYS = 'state'
TMP_PREFIX = '.tmp-'
_STEP_NAME = re.compile(r'(0|[1-9][0-9]*)')
_MAX_REASON = 300

PyTree = Any


class CheckpointError(BassError):
  """A checkpoint that is missing, incomplete, corrupt or does not fit."""


class CheckpointMismatchError(CheckpointError):
  """An intact checkpoint whose leaves differ from the template's.

  Not corruption but a different model, config or pool: `latest_valid` lets
  it propagate instead of silently falling back to (equally mismatched) older
  checkpoints and starting the run from scratch.

  Attributes:
    saved_shape, wanted_shape: the first differing leaf's shapes (checkpoint,
      template), or None when the leaves differ in number, name or dtype.
    leaf: the first differing leaf's path ('.train.params[...]'), or ''.
  """
  saved_shape: Optional[tuple[int, ...]] = None
  wanted_shape: Optional[tuple[int, ...]] = None
  leaf: str = ''


class Restored(NamedTuple):
  """A restored checkpoint: the iteration, the state, the saved `extra`."""
  step: int
  state: PyTree
  extra: dict


def checkpoints_dir(directory: str | os.PathLike) -> str:
  """The folder holding the numbered checkpoints of a run directory."""
  return os.path.join(os.fspath(directory), CHECKPOINTS)


def step_path(directory: str | os.PathLike, step: int) -> str:
  """The path checkpoint `step` of a run directory has (or would have)."""
  return os.path.join(checkpoints_dir(directory), str(step))


# ----------------------------------------------------------------- helpers


def _one_line(reason: Any) -> str:
  """A reason squeezed onto one short line (orbax errors can be pages long)."""
  text = ' '.join(str(reason).split())
  if len(text) > _MAX_REASON:
    text = text[:_MAX_REASON - 3] + '...'
  return text


def _error(path: str, what: Any,
           cls: type[CheckpointError] = CheckpointError) -> CheckpointError:
  return cls(f'checkpoint {path}: {_one_line(what)}')


def _leaf_paths_and_values(tree: PyTree) -> tuple[list[str], list[Any]]:
  """Key paths as strings (".train.params['Dense_0']['kernel']"), leaves."""
  with_paths = jax.tree_util.tree_leaves_with_path(tree)
  return ([jax.tree_util.keystr(p) for p, _ in with_paths],
          [leaf for _, leaf in with_paths])


def _host_array(name: str, leaf: Any) -> np.ndarray:
  """A leaf as a numpy array with the exact bytes and dtype it has."""
  dtype = getattr(leaf, 'dtype', None)
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    # Typed keys have no stable byte layout; the state keeps raw key data.
    raise TypeError(f'checkpoint.save: leaf {name} is a typed PRNG key; '
                    'store jax.random.key_data(key) instead')
  array = np.asarray(jax.device_get(leaf))
  if array.dtype.hasobject or array.dtype.kind in 'SU':
    # Only numeric arrays: anything else would need pickle to round-trip.
    raise TypeError(f'checkpoint.save: leaf {name} has dtype '
                    f'{array.dtype}, not a numeric array')
  return array


def _sha256(array: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _leaf_meta(name: str, array: np.ndarray) -> dict:
  return {'path': name, 'shape': list(array.shape),
          'dtype': array.dtype.name, 'sha256': _sha256(array)}


def _array_key(index: int) -> str:
  # Plain names: orbax joins nested keys with '.', and key paths contain
  # dots, brackets and quotes.
  return f'leaf_{index:05d}'


def _files_under(root: str) -> list[str]:
  """Paths of the files under `root`, relative, '/'-separated, sorted."""
  found = []
  for folder, _, files in os.walk(root):
    for name in files:
      rel = os.path.relpath(os.path.join(folder, name), root)
      found.append(rel.replace(os.sep, '/'))
  return sorted(found)


def _file_sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def _file_digests(folder: str) -> dict[str, dict]:
  """{relative path: {size, sha256}} of the files orbax wrote."""
  root = os.path.join(folder, ARRAYS)
  if not os.path.isdir(root):
    return {}
  return {rel: {'size': os.path.getsize(os.path.join(root, rel)),
                'sha256': _file_sha256(os.path.join(root, rel))}
          for rel in _files_under(root)}


def _fsync_tree(root: str) -> None:
  """Flushes every file and folder under `root`, so the rename publishes data
  that is on disk, not only in the page cache, if the machine loses power."""
  for folder, _, files in os.walk(root):
    for name in files:
      fd = os.open(os.path.join(folder, name), os.O_RDONLY)
      try:
        os.fsync(fd)
      finally:
        os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: str) -> None:
  fd = os.open(folder, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _remove_temp_dirs(root: str) -> None:
  """Deletes leftovers of killed writes and of interrupted deletions."""
  for name in os.listdir(root):
    if name.startswith(TMP_PREFIX):
      shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _discard(path: str) -> None:
  """Deletes a checkpoint folder; it vanishes at once (rename), and a crash
  during the slow rmtree leaves a temp folder, not a half-deleted checkpoint
  that still has its meta.json."""
  parent, name = os.path.split(path)
  trash = os.path.join(parent, f'{TMP_PREFIX}{name}-{uuid.uuid4().hex}')
  os.rename(path, trash)
  shutil.rmtree(trash, ignore_errors=True)


def _step_dirs(directory: str | os.PathLike) -> list[tuple[int, str]]:
  """(step, path) of the numbered checkpoint folders, oldest first."""
  root = checkpoints_dir(directory)
  if not os.path.isdir(root):
    return []
  found = [(int(name), os.path.join(root, name)) for name in os.listdir(root)
           if _STEP_NAME.fullmatch(name)]
  return sorted(p for p in found if os.path.isdir(p[1]))


def steps(directory: str | os.PathLike) -> list[int]:
  """The steps of the numbered checkpoint folders (any state), oldest first."""
  return [step for step, _ in _step_dirs(directory)]


def discard_all(directory: str | os.PathLike) -> None:
  """Deletes every checkpoint of a run directory (starting it afresh)."""
  root = checkpoints_dir(directory)
  for _, path in _step_dirs(directory):
    _discard(path)
  if os.path.isdir(root):
    _remove_temp_dirs(root)


def _is_complete(path: str) -> bool:
  return os.path.isfile(os.path.join(path, META))


# -------------------------------------------------------------------- save


def _checkpointer() -> ocp.Checkpointer:
  """An orbax checkpointer of host (numpy) arrays for this process alone.

  Our checkpoints hold whole host arrays that one process writes (process 0
  in a multi-process run, see experiment.run) and each reads for itself, so
  orbax must not wait for the other processes at its barriers.
  """
  me = jax.process_index()
  alone = ocp.options.MultiprocessingOptions(primary_host=me,
                                             active_processes={me})
  return ocp.Checkpointer(
      ocp.StandardCheckpointHandler(multiprocessing_options=alone),
      multiprocessing_options=alone)


class _OrbaxErrors(logging.Filter):
  """Drops the log records of orbax's own files."""

  def filter(self, record: logging.LogRecord) -> bool:
    return f'{os.sep}orbax{os.sep}' not in record.pathname


@contextlib.contextmanager
def _orbax_errors_unlogged():
  """Orbax's worker threads log a failed write's traceback (a full disk:
  pages of them) before the save raises it; `save` says it in one line."""
  absl_logger = logging.getLogger('absl')
  quiet = _OrbaxErrors()
  absl_logger.addFilter(quiet)
  try:
    yield
  finally:
    absl_logger.removeFilter(quiet)


def _write_arrays(folder: str, arrays: list[np.ndarray]) -> None:
  """Orbax writes the non-empty leaves (it rejects zero-size arrays)."""
  items = {_array_key(i): a for i, a in enumerate(arrays) if a.size}
  if not items:
    return
  # Orbax requires absolute paths; workdirs are often relative.
  target = os.path.abspath(os.path.join(folder, ARRAYS))
  with _orbax_errors_unlogged(), _checkpointer() as checkpointer:
    checkpointer.save(target, args=ocp.args.StandardSave(items))
  # Orbax renames its own temp folder into place; check it really did
  # before meta.json declares this checkpoint complete.
  if not os.path.isdir(target):
    raise OSError(f'orbax did not produce {target}')


def _meta_text(meta: dict) -> str:
  """meta.json's content."""
  try:
    return json.dumps(meta, indent=1, sort_keys=True)
  except (TypeError, ValueError) as e:
    raise TypeError(f'checkpoint.save: extra is not JSON-serializable: '
                    f'{e}') from None


def _write_meta(folder: str, text: str) -> None:
  with open(os.path.join(folder, META), 'w') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())


def _publish(tmp: str, final: str) -> None:
  """Renames the finished temp folder to its step; replaces an old one."""
  if os.path.exists(final):
    # Re-saving a step (e.g. after resuming from an earlier one): move the
    # old one aside first, since rename cannot replace a non-empty folder.
    _discard(final)
  os.rename(tmp, final)
  _fsync_dir(os.path.dirname(final))


def save(directory: str | os.PathLike, step: int, state: PyTree,
         extra: Optional[dict] = None) -> str:
  """Writes `state` as checkpoint `step`, atomically.

  Args:
    directory: the run directory; checkpoints go to `<directory>/checkpoints`.
    step: the iteration this state belongs to (a non-negative int).
    state: a pytree of arrays (jax or numpy), e.g. `loop.LoopState` with a
      seed axis. Restored later against a template of the same structure.
    extra: JSON-serializable facts to keep with it (pending oracle queries,
      the config hash, ...). Round-trips through JSON: tuples become lists.

  Returns:
    The path of the published checkpoint folder.

  Raises:
    ValueError: a negative step.
    TypeError: a non-int step, a typed PRNG key leaf, or a non-JSON `extra`.
    OSError: the write failed; it leaves no partial numbered folder.
  """
  step = operator.index(step)
  if step < 0:
    raise ValueError(f'checkpoint.save: step must be >= 0, got {step}')
  names, leaves = _leaf_paths_and_values(state)
  arrays = [_host_array(n, leaf) for n, leaf in zip(names, leaves)]
  meta = {'format': FORMAT, 'step': step, 'num_leaves': len(arrays),
          'leaves': [_leaf_meta(n, a) for n, a in zip(names, arrays)],
          'extra': {} if extra is None else extra}
  _meta_text(meta)  # A non-JSON `extra` fails before anything is written.

  root = checkpoints_dir(directory)
  os.makedirs(root, exist_ok=True)
  _remove_temp_dirs(root)
  _check_free_space(root, step, sum(a.nbytes for a in arrays))
  tmp = os.path.join(root, f'{TMP_PREFIX}{step}-{uuid.uuid4().hex}')
  os.mkdir(tmp)
  try:
    _write_arrays(tmp, arrays)
    meta['files'] = _file_digests(tmp)
    _fsync_tree(tmp)
    # Last: only now does the folder look complete.
    _write_meta(tmp, _meta_text(meta))
    final = step_path(directory, step)
    _publish(tmp, final)
  except BaseException as e:
    shutil.rmtree(tmp, ignore_errors=True)
    if isinstance(e, Exception) and not isinstance(e, OSError):
      # Orbax reports a failed write (a full disk among them) as a
      # ValueError or RuntimeError, some as 'Event loop is closed'.
      raise OSError(f'writing checkpoint {step} to {root} failed: '
                    f'{_one_line(e)} ({_free_space_text(root)})') from e
    raise
  return final


# Room a checkpoint needs beyond its arrays' bytes: orbax's metadata and
# index files, meta.json (a few KB to a few hundred KB).
_SPACE_MARGIN = 1 << 20


def _check_free_space(root: str, step: int, nbytes: int) -> None:
  """Raises OSError (one line) when `root`'s disk cannot hold `nbytes`
  more: orbax would run out of space inside its worker threads, whose
  tracebacks bury the cause."""
  free = _free_bytes(root)
  if free is not None and free < nbytes + _SPACE_MARGIN:
    raise OSError(f'no room for checkpoint {step} in {root}: it needs about '
                  f'{(nbytes + _SPACE_MARGIN) / 1e6:.1f} MB, its disk has '
                  f'{free / 1e6:.1f} MB free; free some space and run the '
                  'same command again to resume')


def _free_bytes(folder: str) -> Optional[int]:
  """Free bytes on `folder`'s disk; None where the system does not say."""
  try:
    return shutil.disk_usage(folder).free
  except OSError:
    return None


def _free_space_text(folder: str) -> str:
  """'12.3 MB free on its disk', the likely cause of a failed write."""
  free = _free_bytes(folder)
  return ('free space unknown' if free is None else
          f'{free / 1e6:.1f} MB free on its disk')


def tidy(directory: str | os.PathLike, n: int) -> None:
  """Removes what a run killed after its last save may leave: temp folders
  of an unfinished deletion, and checkpoints beyond the newest `n` complete
  ones (a kill between `save` and `keep_last`). For the writer of a
  finished run (whose newest checkpoint is its valid last one), holding
  the run's lock; an unfinished run tidies as it saves."""
  root = checkpoints_dir(directory)
  if os.path.isdir(root):
    _remove_temp_dirs(root)
    keep_last(directory, n)


# --------------------------------------------------------------- keep_last


def keep_last(directory: str | os.PathLike, n: int) -> list[str]:
  """Deletes all but the newest `n` complete checkpoints.

  Numbered folders without meta.json are garbage (they can only arise from
  damage) and are deleted too. Checksums are not read here: with n >= 2, a
  newest checkpoint damaged later still leaves a good one to fall back to.

  Returns:
    The paths deleted.
  """
  if operator.index(n) < 1:
    raise ValueError(f'checkpoint.keep_last: n must be >= 1, got {n}')
  steps = _step_dirs(directory)
  complete = [path for _, path in steps if _is_complete(path)]
  keep = set(complete[-n:])
  doomed = [path for _, path in steps if path not in keep]
  for path in doomed:
    _discard(path)
  return doomed


# ----------------------------------------------------------------- restore


def _is_leaf_entry(leaf: Any) -> bool:
  """Whether a meta.json leaf entry has the fields and types restore uses."""
  return (isinstance(leaf, dict) and isinstance(leaf.get('path'), str) and
          isinstance(leaf.get('dtype'), str) and
          isinstance(leaf.get('sha256'), str) and
          isinstance(leaf.get('shape'), list) and
          all(isinstance(d, int) and d >= 0 for d in leaf['shape']))


def _is_files_entry(files: Any) -> bool:
  """Whether meta.json's `files` maps relative paths to {size, sha256}."""
  return isinstance(files, dict) and all(
      isinstance(f, dict) and isinstance(f.get('size'), int) and
      isinstance(f.get('sha256'), str) for f in files.values())


def _read_meta(path: str) -> dict:
  """meta.json, checked for the fields restore relies on."""
  if not os.path.isdir(path):
    raise _error(path, 'no such checkpoint folder')
  meta_path = os.path.join(path, META)
  if not os.path.isfile(meta_path):
    raise _error(path, f'missing {META} (incomplete or damaged write)')
  try:
    with open(meta_path) as f:
      meta = json.load(f)
    leaves = meta['leaves']
    valid = (meta['format'] == FORMAT and isinstance(meta['step'], int) and
             isinstance(meta['extra'], dict) and isinstance(leaves, list) and
             meta['num_leaves'] == len(leaves) and
             all(_is_leaf_entry(leaf) for leaf in leaves) and
             _is_files_entry(meta['files']))
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise _error(path, f'unreadable {META}: {type(e).__name__}: {e}') from None
  if not valid:
    raise _error(path, f'{META} is not a {FORMAT} file or is inconsistent')
  name = os.path.basename(os.path.normpath(path))
  if _STEP_NAME.fullmatch(name) and int(name) != meta['step']:
    raise _error(path, f'{META} says step {meta["step"]}')
  return meta


Spec = tuple[str, tuple[int, ...], Any]  # (key path, shape, dtype)


def _template_specs(template: PyTree) -> list[Spec]:
  """(key path, shape, dtype) of each template leaf (arrays or
  jax.ShapeDtypeStruct)."""
  names, leaves = _leaf_paths_and_values(template)
  leaves = [leaf if hasattr(leaf, 'dtype') else np.asarray(leaf)
            for leaf in leaves]
  return [(name, tuple(leaf.shape), leaf.dtype)
          for name, leaf in zip(names, leaves)]


def _dtype_name(dtype: Any) -> str:
  """numpy's name of a dtype ('bool', 'uint32', 'bfloat16'); typed PRNG key
  dtypes, which numpy cannot name, as jax prints them (never equal to a
  saved leaf's, so such a template is reported as a mismatch)."""
  if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    return str(dtype)
  return np.dtype(dtype).name


def _check_template(path: str, meta: dict, specs: list[Spec]) -> None:
  """Raises CheckpointMismatchError at the first leaf that differs."""
  saved = meta['leaves']
  if len(saved) != len(specs):
    raise _error(path, f'has {len(saved)} leaves, the template has '
                 f'{len(specs)}', CheckpointMismatchError)
  for leaf, (name, shape, dtype) in zip(saved, specs):
    dtype = _dtype_name(dtype)
    if leaf['path'] != name:
      raise _error(path, f'leaf {leaf["path"]} where the template has {name}',
                   CheckpointMismatchError)
    if tuple(leaf['shape']) != shape or leaf['dtype'] != dtype:
      error = _error(path, f'leaf {name} is {leaf["dtype"]}{leaf["shape"]}, '
                     f'the template wants {dtype}{list(shape)}',
                     CheckpointMismatchError)
      error.saved_shape, error.wanted_shape = tuple(leaf['shape']), shape
      error.leaf = name
      raise error


def _verify_files(path: str, meta: dict) -> None:
  """Raises unless orbax's files are byte-identical to what was written.

  Checked before orbax reads them: orbax's messages for damaged files are
  cryptic, and a failed read leaves tensorstore callbacks that print
  tracebacks to stderr after the fact.
  """
  root = os.path.join(path, ARRAYS)
  for rel, want in sorted(meta['files'].items()):
    file_path = os.path.join(root, *rel.split('/'))
    try:
      size = os.path.getsize(file_path)
      digest = _file_sha256(file_path) if size == want['size'] else None
    except OSError as e:
      raise _error(path, f'file {ARRAYS}/{rel} is unreadable: '
                   f'{e.strerror or e}') from None
    if size != want['size']:
      raise _error(path, f'file {ARRAYS}/{rel} has {size} bytes, expected '
                   f'{want["size"]} (truncated or overwritten)')
    if digest != want['sha256']:
      raise _error(path, f'checksum mismatch in file {ARRAYS}/{rel}')


def _read_arrays(path: str, specs: list[Spec]) -> list[np.ndarray]:
  """The saved leaves as numpy arrays (specs already match meta.json)."""
  targets = {_array_key(i): jax.ShapeDtypeStruct(shape, dtype)
             for i, (_, shape, dtype) in enumerate(specs)
             if int(np.prod(shape))}
  loaded = {}
  if targets:
    try:
      with _checkpointer() as checkpointer:
        loaded = checkpointer.restore(
            os.path.abspath(os.path.join(path, ARRAYS)),
            args=ocp.args.StandardRestore(targets))
    except Exception as e:  # pylint: disable=broad-except
      # Orbax and tensorstore raise a zoo of types for damaged files; to the
      # caller they all mean the same: this checkpoint is unreadable.
      raise _error(path, f'unreadable arrays: {type(e).__name__}: {e}'
                   ) from None
  arrays = []
  for i, (name, shape, dtype) in enumerate(specs):
    key = _array_key(i)
    if key in targets:
      if key not in loaded:
        raise _error(path, f'leaf {name} is missing from {ARRAYS}/')
      arrays.append(np.asarray(loaded[key]))
    else:
      arrays.append(np.zeros(shape, dtype))
  return arrays


def _verify(path: str, meta: dict, arrays: list[np.ndarray]) -> None:
  """Raises unless every array is bit-identical to what was saved."""
  for leaf, array in zip(meta['leaves'], arrays):
    if (list(array.shape) != list(leaf['shape']) or
        array.dtype.name != leaf['dtype']):
      raise _error(path, f'leaf {leaf["path"]} read back as '
                   f'{array.dtype.name}{list(array.shape)}')
    if _sha256(array) != leaf['sha256']:
      raise _error(path, f'checksum mismatch in leaf {leaf["path"]}')


def _like(template_leaf: Any, array: np.ndarray) -> Any:
  """`array` as the kind of leaf the template has: numpy stays numpy, jax
  arrays (and abstract ShapeDtypeStructs) become jax arrays."""
  if isinstance(template_leaf, (np.ndarray, np.generic)):
    return array
  sharding = getattr(template_leaf, 'sharding', None)
  return jax.device_put(array, sharding)


def restore(path: str | os.PathLike, template: PyTree) -> Restored:
  """Reads one checkpoint folder back, bit-exact, in the template's structure.

  Args:
    path: a checkpoint folder, e.g. the return value of `save`.
    template: a pytree with the structure, shapes and dtypes to restore to
      (a fresh state, or `jax.eval_shape` of one); its values are not read.

  Returns:
    Restored(step, state, extra).

  Raises:
    CheckpointMismatchError: the leaves differ from the template's.
    CheckpointError: the folder or meta.json is missing or unreadable, an
      array is unreadable, or a checksum does not match. Always one line
      naming the path.
  """
  path = os.fspath(path)
  meta = _read_meta(path)
  specs = _template_specs(template)
  _check_template(path, meta, specs)
  _verify_files(path, meta)
  arrays = _read_arrays(path, specs)
  _verify(path, meta, arrays)
  leaves, treedef = jax.tree_util.tree_flatten(template)
  state = jax.tree_util.tree_unflatten(
      treedef, [_like(t, a) for t, a in zip(leaves, arrays)])
  return Restored(meta['step'], state, meta['extra'])


def _log_warning(message: str) -> None:
  logging.getLogger(__name__).warning('%s', message)


def latest_valid(directory: str | os.PathLike, template: PyTree,
                 warn: Callable[[str], None] = _log_warning
                 ) -> Optional[Restored]:
  """The newest checkpoint that is complete and verifies, or None.

  Damaged checkpoints (no meta.json, unreadable, checksum mismatch) are
  skipped, newest first, each reported as one line through `warn`; temp
  folders of killed writes are never considered.

  Args:
    directory: the run directory given to `save`.
    template: as for `restore`.
    warn: called with one line per skipped checkpoint (default: logging).

  Returns:
    Restored(step, state, extra) (a tuple), or None if no checkpoint is good.

  Raises:
    CheckpointMismatchError: an intact checkpoint does not fit the template
      (a different model or pool in this run directory); falling back would
      silently restart the run.
  """
  for _, path in reversed(_step_dirs(directory)):
    try:
      return restore(path, template)
    except CheckpointMismatchError:
      raise
    except CheckpointError as e:
      warn(f'skipping damaged {e}')
  return None
