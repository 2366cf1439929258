"""Summing a `jax.profiler` trace: the device's time per HLO operation.

Pure functions over the trace's events (`trace_events`) and the compiled
program's HLO text (`op_kinds`), used by benchmarks/profile_iteration.py.
A trace names the threads of every process; the device's work is on a
GPU's streams (a TPU's 'XLA Ops' line), or on a CPU on the XLA runtime's
worker threads, where ops nest in loops and a line's own (self) time is
its span less that of the ops inside it.
"""

import collections
import glob
import gzip
import json
import os
import re
from typing import Any, Iterable


# `%name = TYPE opcode(`; TYPE may be a tuple with spaces inside.
_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*.*?\s([a-z][\w\-]*)\(')
_TARGET = re.compile(r'custom_call_target="([^"]+)"')
_FUSION_KIND = re.compile(r'\bkind=(k\w+)')
# A GPU trace's device threads: kernels and copies run on CUDA/ROCm streams;
# a TPU's ops are on its 'XLA Ops' line. On a CPU, XLA's runtime threads.
_STREAM = re.compile(r'^Stream\b')
_XLA_OPS = re.compile(r'^XLA Ops$')
_CPU_RUNTIME = re.compile(r'^tf_XLAEigen\b')
# CPU trace events that mark, not run, something: an op's end, a pool's
# bookkeeping.
_MARKER = re.compile(r'^(end: |ThreadpoolListener::)')


def op_kinds(hlo_text: str) -> dict[str, str]:
  """{instruction name: kind} of an optimized HLO module's text.

  The kind is what a trace's op name does not say: a library call's target
  ('custom-call:__cudnn$convForward'), a fusion's kind ('fusion:kLoop'),
  else the opcode ('while', 'dot', 'copy').
  """
  kinds = {}
  for line in hlo_text.splitlines():
    match = _INSTRUCTION.match(line)
    if not match:
      continue
    name, opcode = match.groups()
    target, fusion = _TARGET.search(line), _FUSION_KIND.search(line)
    if target:
      opcode += ':' + target.group(1)
    elif opcode == 'fusion' and fusion:
      opcode += ':' + fusion.group(1)
    kinds[name] = opcode
  return kinds


def trace_events(trace_dir: str) -> list[dict[str, Any]]:
  """The events of the newest trace `jax.profiler.trace(trace_dir)` wrote."""
  paths = sorted(glob.glob(os.path.join(trace_dir, 'plugins', 'profile', '*',
                                        '*.trace.json.gz')))
  if not paths:
    raise FileNotFoundError(f'no *.trace.json.gz under {trace_dir}')
  with gzip.open(paths[-1], 'rt') as f:
    return json.load(f)['traceEvents']


def device_threads(events: list[dict[str, Any]]
                   ) -> dict[tuple[int, int], str]:
  """{(pid, tid): 'process / thread'} of the threads that run the device's
  work: a GPU's streams (or a TPU's 'XLA Ops' line) where the trace has a
  /device: process, else the CPU runtime's worker threads."""
  processes, threads = {}, {}
  for e in events:
    if e.get('ph') == 'M' and e.get('name') == 'process_name':
      processes[e['pid']] = e['args']['name']
    elif e.get('ph') == 'M' and e.get('name') == 'thread_name':
      threads[(e['pid'], e['tid'])] = e['args']['name']
  named = {k: f'{processes.get(k[0], k[0])} / {t}' for k, t in threads.items()}
  devices = {k: n for k, n in named.items()
             if str(processes.get(k[0], '')).startswith('/device:')}
  for pattern in (_STREAM, _XLA_OPS):
    found = {k: n for k, n in devices.items()
             if pattern.match(threads[k])}
    if found:
      return found
  return {k: n for k, n in named.items() if _CPU_RUNTIME.match(threads[k])}


def self_times(events: Iterable[dict[str, Any]]
               ) -> list[tuple[dict[str, Any], float]]:
  """[(event, self microseconds)] of complete ('X') events of one thread:
  its duration less that of the events nested in it (a loop's line less its
  body's ops)."""
  spans = sorted((e for e in events if e.get('ph') == 'X'),
                 key=lambda e: (e['ts'], -e.get('dur', 0)))
  out, stack = [], []  # stack: [event, self time so far] of open events.
  for e in spans:
    while stack and _end(stack[-1][0]) <= e['ts']:
      out.append(tuple(stack.pop()))
    if stack:  # Nested in the innermost open event: not that one's own.
      stack[-1][1] -= min(e.get('dur', 0), _end(stack[-1][0]) - e['ts'])
    stack.append([e, e.get('dur', 0)])
  out.extend(tuple(s) for s in stack)
  return out


def _end(event: dict[str, Any]) -> float:
  return event['ts'] + event.get('dur', 0)


def busy_us(events: Iterable[dict[str, Any]]) -> float:
  """Microseconds in which at least one of `events` runs (their union)."""
  spans = sorted((e['ts'], _end(e)) for e in events if e.get('ph') == 'X')
  total, end = 0.0, None
  for start, stop in spans:
    if end is None or start > end:
      total += stop - start
      end = stop
    elif stop > end:
      total += stop - end
      end = stop
  return total


def op_name(event: dict[str, Any]) -> str:
  """The HLO instruction an event ran: a GPU kernel names it in its
  'hlo_op' argument, a CPU runtime event by its own name."""
  return str(event.get('args', {}).get('hlo_op') or event['name'])


def op_table(events: list[dict[str, Any]],
             threads: dict[tuple[int, int], str], kinds: dict[str, str],
             iterations: int) -> tuple[list[dict[str, Any]], float]:
  """(one row per op, largest first; busy microseconds per iteration) of the
  device threads' events, per traced iteration."""
  by_thread = collections.defaultdict(list)
  for e in events:
    key = (e.get('pid'), e.get('tid'))
    if (key in threads and e.get('ph') == 'X' and
        not _MARKER.match(e.get('name', ''))):
      by_thread[key].append(e)
  total_us = collections.Counter()
  calls = collections.Counter()
  for thread_events in by_thread.values():
    for e, us in self_times(thread_events):
      total_us[op_name(e)] += us
      calls[op_name(e)] += 1
  # Streams and worker threads overlap: busy is the union over all of them.
  busy = busy_us(e for es in by_thread.values() for e in es)
  device_us = sum(total_us.values()) or 1.0
  rows = []
  for name, us in total_us.most_common():
    base = re.sub(r'\.\d+$', '', name)
    # A GPU kernel without an 'hlo_op' argument is named after its fusion,
    # '_' for '.': loop_add_fusion_2 for loop_add_fusion.2.
    dotted = re.sub(r'_(\d+)$', r'.\1', name)
    rows.append({
        'op': name,
        # Not an instruction of the program: the runtime's own work (a
        # CPU executor's time outside traced ops, a GPU's memcpy).
        'op_kind': (kinds.get(name) or kinds.get(dotted) or kinds.get(base)
                    or f'not in the HLO: {base}'),
        'calls_per_iteration': calls[name] / iterations,
        'ms_per_iteration': us / iterations / 1e3,
        'share': us / device_us,
        'us_per_call': us / calls[name]})
  return rows, busy / iterations


def kind_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """op_table's rows summed per op_kind, largest first."""
  ms, share, calls = (collections.Counter() for _ in range(3))
  for r in rows:
    ms[r['op_kind']] += r['ms_per_iteration']
    share[r['op_kind']] += r['share']
    calls[r['op_kind']] += r['calls_per_iteration']
  return [{'op_kind': k, 'ms_per_iteration': v, 'share': share[k],
           'calls_per_iteration': calls[k]} for k, v in ms.most_common()]
