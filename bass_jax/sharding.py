"""The device mesh of a run and where its arrays live on it.

One mesh with two named axes, always both, so every `PartitionSpec` below is
valid on any machine:

  'seed'  the leading seed axis of the `LoopState` is split over it: each
          device group trains its own seeds (no communication between seeds).
  'data'  the pool and the test set are split along N over it; the MC sweep
          runs on each device's own shard and training batches are split too,
          XLA inserting the gradient all-reduce.

`config.mesh_shape` names the axis sizes, e.g. 'data:-1' (all devices on
'data'), 'seed:4' or 'data:2,seed:2'; a missing axis has size 1 and one
size may be -1 ("the rest"). The mesh must use every device. 'auto' (the
default, `auto_axis_sizes`) gives 'seed' as many devices as divide the
seeds evenly and the rest to 'data'. One CPU is the 1 x 1 mesh: the same
code path, with no-op collectives.

Divisibility (checked in `check_divisible`, with the field to change named):
num_seeds by the 'seed' size; the pool size and the test size by the 'data'
size. Nothing is padded: padded pool samples would need masking in every
acquisition, pseudo-label and mean, so an uneven split is refused instead.
"""

from __future__ import annotations

import collections
import hashlib
import os
import uuid

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bass_jax.errors import ConfigError

SEED = 'seed'
DATA = 'data'
# Seeds outermost: the frequent data-parallel collectives then stay within
# neighbouring devices (one host, one slice) and seeds span hosts.
AXES = (SEED, DATA)
AUTO = 'auto'  # The mesh_shape that `auto_axis_sizes` resolves.


def parse_mesh_shape(text: str) -> dict[str, int]:
  """Axis sizes of a `mesh_shape` string, -1 kept as given.

  Args:
    text: comma-separated 'axis:size' pairs, axis in AXES, size a positive
      int or -1 (at most once); e.g. 'data:-1', 'data:2,seed:2'.

  Returns:
    {'seed': s, 'data': d}: every axis, size 1 where not named.

  Raises:
    ConfigError: naming config.mesh_shape and what is wrong.
  """
  def bad(why: str) -> ConfigError:
    return ConfigError(f'config.mesh_shape={text!r}: {why}; expected '
                       f"'{AUTO}' or 'axis:size[,axis:size]' with axis in "
                       f"{list(AXES)} and size > 0 or -1, e.g. 'data:-1' "
                       "or 'data:2,seed:2'")

  sizes = {}
  for part in str(text).replace(' ', '').split(','):
    name, colon, size = part.partition(':')
    if not colon or name not in AXES:
      raise bad(f'{part!r} is not axis:size')
    if name in sizes:
      raise bad(f'axis {name!r} is named twice')
    try:
      sizes[name] = int(size)
    except ValueError:
      raise bad(f'size {size!r} of axis {name!r} is not an integer') from None
    if sizes[name] == 0 or sizes[name] < -1:
      raise bad(f'size {sizes[name]} of axis {name!r}')
  if list(sizes.values()).count(-1) > 1:
    raise bad('only one axis may have size -1')
  return {a: sizes.get(a, 1) for a in AXES}


def auto_axis_sizes(num_devices: int, num_seeds: int,
                    data_splits: Sequence[int],
                    one_axis: bool = False) -> dict[str, int]:
  """The mesh of `mesh_shape='auto'`: seeds over devices first, data after.

  Seeds on separate devices need no communication at all, and a CNN whose
  seeds are vmapped over a 'data' split has XLA gather its activations
  across the devices (its convolutions become grouped convolutions), so
  'seed' gets the largest count that divides both `num_seeds` and
  `num_devices` (and leaves a 'data' size that divides `data_splits`), and
  'data' the rest: 1 seed on 8 devices is data:8, 10 seeds seed:2,data:4,
  16 seeds seed:8.

  Args:
    num_devices: devices of the mesh.
    num_seeds: config.num_seeds.
    data_splits: sizes the 'data' axis must divide (pool, test set, batch).
    one_axis: at most one axis above 1 (seeds mapped, not vmapped).

  Returns:
    {'seed': s, 'data': d}; all devices on 'data' where no split fits, so
    that `check_divisible` names what to change.
  """
  for seeds in range(min(num_devices, num_seeds), 0, -1):
    data = num_devices // seeds
    if (num_devices % seeds or num_seeds % seeds or
        any(n % data for n in data_splits) or
        (one_axis and seeds > 1 and data > 1)):
      continue
    return {SEED: seeds, DATA: data}
  return {SEED: 1, DATA: num_devices}


def axis_sizes(text: str, num_devices: int) -> dict[str, int]:
  """`parse_mesh_shape` with -1 resolved so the mesh uses all `num_devices`.

  Raises:
    ConfigError: the sizes do not multiply to the device count.
  """
  sizes = parse_mesh_shape(text)
  known = int(np.prod([s for s in sizes.values() if s != -1]))
  if -1 in sizes.values() and num_devices % known == 0:
    sizes = {a: num_devices // known if s == -1 else s
             for a, s in sizes.items()}
  if int(np.prod(list(sizes.values()))) != num_devices:
    hint = (f'{known} does not divide {num_devices}' if -1 in sizes.values()
            else "use -1 for one axis, e.g. 'data:-1'")
    raise ConfigError(
        f'config.mesh_shape={text!r} does not fit the {num_devices} '
        f'device(s) here: the axis sizes must multiply to {num_devices} '
        f'({hint})')
  return sizes


def check_divisible(sizes: dict[str, int], num_seeds: int, pool_size: int,
                    test_size: int, batch_size: Optional[int] = None,
                    cpu_devices: int = 0) -> None:
  """Checks that seeds, pool, test set and batches split evenly over the
  mesh.

  Args:
    sizes: resolved axis sizes (see `axis_sizes`).
    num_seeds: config.num_seeds.
    pool_size: N, the pool's size after config.pool_size.
    test_size: M, the test set's size after config.test_size.
    batch_size: config.batch_size (None: not checked).
    cpu_devices: config.cpu_devices; one that does not divide num_seeds is
      named as a way out too.

  Raises:
    ConfigError: naming every field to change and the sizes that would work,
      and that a workdir resumes under another mesh, not other sizes.
  """
  seeds, data = sizes[SEED], sizes[DATA]
  # Every problem in one message: fixing one at a time would cost a launch
  # (and its imports) per field.
  problems = []
  if num_seeds % seeds:
    problems.append(
        f'config.num_seeds={num_seeds} is not divisible by the mesh\'s '
        f"'seed' axis size {seeds}; use a multiple of {seeds} seeds")
  for what, field, n in (('pool', 'pool_size', pool_size),
                         ('test set', 'test_size', test_size)):
    if n % data:
      trim = (f'; set config.{field}={n - n % data} (a multiple of {data})'
              if n > data else '')
      problems.append(f'the {what} has {n} samples, not divisible by the '
                      f"mesh's 'data' axis size {data}{trim}")
  if batch_size is not None and batch_size % data:
    problems.append(
        f'config.batch_size={batch_size} is not divisible by the {data} '
        "devices of the mesh's 'data' axis; use a multiple of "
        f'{data}')
  if problems:
    devices = ''
    if cpu_devices and num_seeds % cpu_devices:
      divisor = max(k for k in range(1, cpu_devices + 1) if num_seeds % k == 0)
      devices = (f', or config.cpu_devices to a divisor of the {num_seeds} '
                 f'seeds, such as {divisor}')
    raise ConfigError('; and '.join(problems) + ' (or change config.mesh_shape'
                      f'{devices}: a workdir resumes under another mesh, not '
                      'under other sizes)')


def make_mesh(mesh_shape: str | dict[str, int],
              devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """The ('seed', 'data') mesh over `devices` (default: all).

  `mesh_shape` is a config string (not 'auto') or resolved axis sizes.
  Auto axes: shardings propagate through the jitted step, constraints and
  `shard_map` mark where they must hold.
  """
  devices = list(jax.devices() if devices is None else devices)
  sizes = (mesh_shape if isinstance(mesh_shape, dict) else
           axis_sizes(mesh_shape, len(devices)))
  return jax.make_mesh(tuple(sizes[a] for a in AXES), AXES,
                       axis_types=(AxisType.Auto,) * len(AXES),
                       devices=devices)


def mesh_sizes(mesh: Mesh) -> dict[str, int]:
  """{'seed': s, 'data': d} of a mesh."""
  return dict(mesh.shape)


def seed_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis split over 'seed', the rest replicated (the LoopState)."""
  return NamedSharding(mesh, P(SEED))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis split over 'data' (pool, test set, training batches)."""
  return NamedSharding(mesh, P(DATA))


def seed_data_sharding(mesh: Mesh) -> NamedSharding:
  """[S, N, ...] split over 'seed' and 'data' (a pool of every seed's own)."""
  return NamedSharding(mesh, P(SEED, DATA))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device (metrics: every host can read them)."""
  return NamedSharding(mesh, P())


def gather_rows(mesh: Optional[Mesh], x: jax.Array,
                idx: jax.Array) -> jax.Array:
  """x[idx] for a pool x [N, ...] split over 'data'; replicated [B, ...].

  A plain `x[idx]` on a split x makes XLA all-gather the whole pool onto
  every device; here each device takes the rows it holds (zeros elsewhere)
  and one all-reduce of the [B, ...] rows assembles them. Exact: every
  entry is a sum of itself and zeros.

  Args:
    mesh: the run's mesh; None: plain indexing.
    x: [N, ...] array split along N over 'data'.
    idx: [B] int32 indices in [0, N), the same on every 'data' device.
  """
  if mesh is None:
    return x[idx]

  def local(x, idx):
    n = x.shape[0]
    pos = idx - jax.lax.axis_index(DATA) * n
    mine = (pos >= 0) & (pos < n)
    rows = x[jnp.clip(pos, 0, n - 1)]
    mask = mine.reshape(mine.shape + (1,) * (rows.ndim - 1))
    return jax.lax.psum(jnp.where(mask, rows, jnp.zeros_like(rows)), DATA)

  # check_vma off: see mc_dropout._CHECK_VMA (the seed vmap around this).
  return jax.shard_map(local, mesh=mesh, in_specs=(P(DATA), P()),
                       out_specs=P(), check_vma=False)(x, idx)


def put(tree: Any, sharding: NamedSharding) -> Any:
  """Every leaf of `tree` (host or device arrays) as a global sharded array.

  Built shard by shard from a host copy, so it also works across hosts:
  each process fills only its own devices (every process holds the same
  full arrays, since data and initial states are deterministic).
  """
  def one(leaf):
    host = np.asarray(jax.device_get(leaf))
    return jax.make_array_from_callback(host.shape, sharding,
                                        lambda index: host[index])
  return jax.tree_util.tree_map(one, tree)


def is_writer() -> bool:
  """True on the one process that writes the workdir (process 0)."""
  return jax.process_index() == 0


def host_tree(tree: Any) -> Any:
  """Every leaf of `tree` as a whole numpy array, on every process.

  With several processes the leaves are global arrays of which each process
  holds only its devices' shards, so this is a collective (every process
  must call it); the loop state is small (parameters and [S, N] masks).
  """
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def sync(name: str) -> None:
  """Waits until every process got here (no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def check_processes_agree(what: str, text: str) -> None:
  """Refuses, on every process, a cluster whose processes hold different
  `text` (a config, what they read of the workdir).

  Processes started with different configs once met in collectives of
  different programs (a gloo abort, or one process refusing the workdir
  while the others waited 30 s and failed with a traceback). A collective
  itself, so every process must call it, in the same order.

  Raises:
    ConfigError: naming the processes whose `what` differs from process 0's.
  """
  if jax.process_count() == 1:
    return
  # The gather below needs as many devices in every process; every process
  # sees every device, so each refuses a mismatch alike, without a
  # collective (the gather failed with a reshape's traceback).
  per_process = collections.Counter(d.process_index for d in jax.devices())
  if len(set(per_process.values())) > 1:
    counts = ', '.join(f'process {p}: {n}'
                       for p, n in sorted(per_process.items()))
    raise ConfigError(f'the processes have different numbers of devices '
                      f'({counts}); start each with as many (the same '
                      'config.cpu_devices, XLA_FLAGS or visible GPUs)')
  digest = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], np.int32)
  every = np.asarray(multihost_utils.process_allgather(digest))  # [P, 2]
  others = [p for p in range(len(every)) if not (every[p] == every[0]).all()]
  if others:
    raise ConfigError(f'process(es) {others} have another {what} than '
                      'process 0; start every process with the same command')


def check_shared_folder(folder: str) -> None:
  """Refuses, on every process, a workdir that is not one folder for all:
  process 0 writes a token there that every process must read back (the
  other hosts once computed the whole run, then failed on a missing file,
  or hung on resume). A collective, as `check_processes_agree`.

  Raises:
    ConfigError: naming the processes that do not see process 0's file.
  """
  if jax.process_count() == 1:
    return
  path = os.path.join(folder, '.bass_jax_shared_check')
  if is_writer():
    os.makedirs(folder, exist_ok=True)
    with open(path, 'w') as f:
      f.write(uuid.uuid4().hex)
  sync('shared folder token written')
  try:
    with open(path) as f:
      seen = f.read()
  except OSError:
    seen = ''
  try:
    check_processes_agree(f'view of the workdir {folder} (not a folder every '
                          'host shares?)', seen)
  finally:
    sync('shared folder token read')
    if is_writer():
      os.remove(path)


def _cluster_from_env() -> dict[str, Any]:
  """initialize() arguments from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES
  and JAX_PROCESS_ID when all three are set (a hand-started cluster);
  otherwise none, and jax detects SLURM, Open MPI or a TPU pod itself."""
  names = ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID')
  values = [os.environ.get(n) for n in names]
  if not all(values):
    return {}
  return {'coordinator_address': values[0], 'num_processes': int(values[1]),
          'process_id': int(values[2])}


def set_cpu_devices(count: int) -> None:
  """Splits the CPU into `count` JAX devices (0: leave JAX's default).

  It must run before JAX starts its backends (the first computation or
  device query); on an accelerator host it only shapes the unused CPU
  backend. Several CPU devices run their programs concurrently, one per
  core, which `loop.over_seeds` uses to run seeds in parallel.

  Raises:
    ConfigError: JAX already started with a different CPU device count.
  """
  if count <= 0:
    return
  try:
    jax.config.update('jax_num_cpu_devices', count)
  except RuntimeError:  # Backends already up: fine if they agree.
    have = len(jax.devices('cpu'))
    if have != count:
      raise ConfigError(
          f'config.cpu_devices={count}, but JAX already started with {have} '
          'CPU device(s); set it before any JAX computation in this process '
          '(launch/train.py does)') from None


# XLA:GPU's deterministic kernels, autotuning off (a superset of
# --xla_gpu_exclude_nondeterministic_ops); other backends ignore it.
DETERMINISTIC_OPS_FLAG = '--xla_gpu_deterministic_ops=true'


def _backends_started() -> bool:
  """Whether JAX has started its backends (internal API; True if unknown)."""
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    return xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):
    return True


def set_deterministic_ops(on: bool) -> None:
  """Makes XLA:GPU compile deterministic kernels, without autotuning.

  Why: XLA picks convolution and matmul algorithms by timing them when it
  compiles, and some GPU kernels (scatter, atomic reductions) add in a
  varying order, so two runs of one seed can differ in the last bits,
  which training amplifies into different trajectories. The flag goes into
  XLA_FLAGS, which XLA reads once, when the first backend starts: this
  must run before any computation. CPU runs are bit-reproducible anyway
  (the flag changes nothing there, so a started CPU backend is fine).

  Raises:
    ConfigError: JAX already started a GPU backend without the flag.
  """
  flags = os.environ.get('XLA_FLAGS', '')
  if not on or DETERMINISTIC_OPS_FLAG in flags.split():
    return
  if _backends_started():
    if jax.default_backend() != 'gpu':
      return
    raise ConfigError(
        'config.deterministic_ops=True, but JAX already started; set it '
        'before any JAX computation in this process (launch/train.py does) '
        f'or start Python with XLA_FLAGS={DETERMINISTIC_OPS_FLAG}')
  os.environ['XLA_FLAGS'] = f'{flags} {DETERMINISTIC_OPS_FLAG}'.strip()


def initialize_distributed(distributed: bool) -> None:
  """`jax.distributed.initialize()` when asked, once, before any computation.

  It reads the cluster from the environment: SLURM, Open MPI, TPU pod
  metadata, or JAX_COORDINATOR_ADDRESS + JAX_NUM_PROCESSES + JAX_PROCESS_ID
  (see `_cluster_from_env`).

  Raises:
    ConfigError: the cluster could not be joined.
  """
  if not distributed or jax.distributed.is_initialized():
    return
  try:
    jax.distributed.initialize(**_cluster_from_env())
  except (RuntimeError, ValueError) as e:
    raise ConfigError(
        'config.distributed=True but jax.distributed.initialize() failed '
        f'({str(e).splitlines()[0] if str(e) else type(e).__name__}); run '
        'under a cluster launcher (SLURM, mpirun, a TPU pod), or set '
        'JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID for '
        'each process, or set config.distributed=False') from None
