"""What a run was computed with: the code, packages and devices.

A seed gives the same bits in every run of one environment, but other jax
releases, devices or XLA flags may round differently (README:
Reproducibility). Every checkpoint keeps the environments its launches ran
under, summary.json lists them, and a resume or report under more than one
says so.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import subprocess
from typing import Any, Optional, Sequence

import jax


# The packages whose releases can change a run's digits (XLA's rounding,
# the optimizer's arithmetic, how arrays are stored), and the JAX settings
# that can (set by environment variables, or by code before the run).
ENVIRONMENT_PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint',
                        'numpy')
JAX_SETTINGS = ('jax_enable_x64', 'jax_default_matmul_precision',
                'jax_threefry_partitionable', 'jax_disable_most_optimizations')


def _package_version(name: str) -> Optional[str]:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def _git(root: str, *args: str) -> Optional[str]:
  """git's output in `root`, or None where git is missing or fails."""
  try:
    return subprocess.run(['git', '-C', root, *args], capture_output=True,
                          text=True, timeout=10, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def code_version() -> str:
  """bass_jax's release, and where it runs from a git checkout its commit,
  `+modified` when the checkout's tracked files differ from it (the
  library's, or a launch or benchmark script's): '0.1.0 (git
  1a2b3c4d5e6f)'."""
  version = _package_version('bass_jax') or 'unknown'
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  # Only the checkout the package itself lives in, not a repository that
  # happens to hold an installed copy (a venv inside one's project).
  if not os.path.exists(os.path.join(root, '.git')):
    return version
  commit = _git(root, 'rev-parse', '--short=12', 'HEAD')
  if not commit:
    return version
  changed = _git(root, 'status', '--porcelain', '--untracked-files=no')
  return f'{version} (git {commit}{"+modified" if changed else ""})'


# Vector extensions, widest first: XLA:CPU compiles for the host's, and
# kernels of other widths sum in other orders.
_VECTOR_EXTENSIONS = ('avx512f', 'avx2', 'avx', 'sve', 'asimd')


def host_cpu() -> Optional[str]:
  """The host CPU's model and widest vector extension ('AMD EPYC, avx2'),
  from /proc/cpuinfo; `platform.processor()` (or None) without it.

  Recorded because the same program rounds differently on another CPU: an
  MNIST run of 10 seeds, same code and packages, differed from iteration 0
  on two 2-core machines and ended 0.8 points apart (README:
  Reproducibility).
  """
  try:
    with open('/proc/cpuinfo', encoding='utf-8', errors='replace') as f:
      text = f.read()
  except OSError:
    return platform.processor() or None
  model = re.search(r'^(?:model name|Model|CPU part)\s*:\s*(.+)$', text,
                    re.M)
  flags = re.search(r'^(?:flags|Features)\s*:\s*(.*)$', text, re.M)
  have = set(flags.group(1).split()) if flags else set()
  widest = next((e for e in _VECTOR_EXTENSIONS if e in have), None)
  parts = [model.group(1).strip() if model else platform.machine(), widest]
  return ', '.join(p for p in parts if p) or None


def environment() -> dict[str, Any]:
  """What a run's digits depend on besides its config and data: the code,
  the packages, the devices and host CPU, JAX's settings and XLA's flags
  (see the README's Reproducibility); JSON types only.

  It asks JAX for its devices: call it after `experiment.start_backends`.
  """
  devices = jax.devices()
  env = {'python': platform.python_version(), 'bass_jax': code_version(),
         **{name: _package_version(name) for name in ENVIRONMENT_PACKAGES},
         'platform': devices[0].platform,
         'device_kind': devices[0].device_kind,
         'devices': len(devices), 'processes': jax.process_count(),
         'cpu': host_cpu(),
         'xla_flags': os.environ.get('XLA_FLAGS') or None}
  for name in JAX_SETTINGS:  # A setting a later jax drops reads None.
    value = jax.config.values.get(name)
    env[name] = value if value is None or isinstance(value, (bool, int)) else (
        str(value))
  return env


def changes(before: dict[str, Any], now: dict[str, Any]) -> str:
  """The fields in which `now` differs from `before`, as text: 'jax 0.12.1
  (was 0.10.2), devices 2 (was 1)'; '' where they agree."""
  keys = list(before) + [k for k in now if k not in before]
  return ', '.join(f'{k} {now.get(k)} (was {before.get(k)})' for k in keys
                   if before.get(k) != now.get(k))


def with_environment(environments: list, env: dict[str, Any]) -> list:
  """The environments a run was computed under, oldest first, with `env`
  (this launch's) appended unless it equals the newest: one entry per
  change, not per launch."""
  return environments if environments and environments[-1] == env else [
      *environments, env]


def report_notes(labels: Sequence[str],
                 environments: Sequence[Optional[Sequence]]) -> list[str]:
  """Lines under a report's table: each run computed under more than one
  environment (resumed under another, or --merge_seeds parts from several),
  then each field of the environment in which runs differ (by their newest
  environment): numbers that may differ by it alone; [] where all agree.

  Args:
    labels: the runs' labels.
    environments: per run, summary.json's `environments` (None or [] where
      unknown: an unfinished run, or one from before they were recorded).
  """
  lines, newest = [], {}
  for label, envs in zip(labels, environments):
    envs = [e for e in envs or () if e]
    if len(envs) > 1:
      steps = '; then '.join(changes(a, b) for a, b in zip(envs, envs[1:]))
      lines.append(f'{label}: computed under more than one environment '
                   f'({steps}).')
    if envs:
      newest[label] = envs[-1]
  for key in sorted({k for env in newest.values() for k in env}):
    groups: dict[str, list[str]] = {}
    for label, env in newest.items():
      groups.setdefault(json.dumps(env.get(key), sort_keys=True),
                        []).append(label)
    if len(groups) > 1:
      parts = '; '.join(f'{json.loads(value)} for {", ".join(names)}'
                        for value, names in groups.items())
      lines.append(f'Runs computed under different {key}: {parts}.')
  return lines
