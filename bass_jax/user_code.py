"""Code of one's own, named in a config by where it is: a model
(`config.model`) or an acquisition score (`config.acquisition`,
`config.confident_score`) as 'file.py:name' or 'package.module:name'."""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import os
import sys
from typing import Any, Callable


# Config fields that may name code of one's own, 'file.py:name'.
CONFIG_FIELDS = ('model', 'acquisition', 'confident_score')


def names_any(config) -> bool:
  """Whether a config (a dict or ConfigDict) names code of one's own in any
  of CONFIG_FIELDS (an acquisition after a sampling prefix too:
  'power_scores.py:fn' holds the ':')."""
  return any(is_spec(str(config.get(field, ''))) for field in CONFIG_FIELDS)


def is_spec(name: str) -> bool:
  """True for a name of code of one's own ('nets.py:WideCNN'), which no
  built-in name contains (they have no ':')."""
  return ':' in name


def loaded(spec: str) -> Callable[..., Any]:
  """The callable (a class or a function) `spec` names.

  'nets.py:WideCNN' loads the file (a path, relative to the folder the run
  starts in; each version of it once); 'my_package.nets:WideCNN' imports
  the module.

  Raises:
    ValueError: "'spec': ..." for a spec not of that form, a file or
      module that cannot be loaded (its error named), or no callable of
      that name in it.
  """
  where, _, attr = spec.rpartition(':')
  if not where or not attr.isidentifier():
    raise ValueError(f"{spec!r}: expected 'file.py:name' or "
                     "'package.module:name'")
  is_file = where.endswith('.py')
  if is_file and not os.path.isfile(where):
    raise ValueError(f'{spec!r}: no file {where!r} (paths are relative to '
                     f'{os.getcwd()})')
  try:
    if is_file:
      path = os.path.abspath(where)
      module = _loaded_file(path, os.stat(path).st_mtime_ns)
    else:
      module = importlib.import_module(where)
  except (Exception, SystemExit) as e:  # pylint: disable=broad-except
    # Whatever the user's code raises on import (a sys.exit too, which
    # would end the run with a status of its own): one line, naming it.
    raise ValueError(f'{spec!r}: loading {where} failed: '
                     f'{error_line(e)}') from None
  found = getattr(module, attr, None)
  if found is None:
    raise ValueError(f'{spec!r}: {where} has no class or function {attr!r}')
  if not callable(found):
    raise ValueError(f'{spec!r}: {attr!r} in {where} is {found!r:.40}, '
                     'not a class or function')
  return found


def error_line(e: BaseException) -> str:
  """'TypeError: <the first line of its message>': what one's own code
  raised, for a one-line error (JAX's trace errors run to many lines)."""
  first = (str(e).strip().splitlines() or [''])[0]
  return f'{type(e).__name__}: {first}'


@functools.lru_cache(maxsize=None)
def _loaded_file(path: str, mtime_ns: int) -> Any:
  """The Python file at `path` as a module, loaded once per version of it.

  It is registered in sys.modules under a name of its own, as dataclasses
  (and so flax modules) look their module up there.
  """
  name = ('bass_jax_user_code_' +
          hashlib.sha1(f'{path}:{mtime_ns}'.encode()).hexdigest()[:16])
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[name]
    raise
  return module
