#!/bin/bash
# GPU measurements in as few device calls as possible: the hot-path
# benchmarks and the paper's full MNIST protocol (all data + max entropy,
# 60,000-image pool, 200 iterations) for 1 seed and for 10 seeds vmapped.
#
# Prepare on the development machine, in the repo root (once per session):
#   echo /.whl/ >> .git/info/exclude; echo /.data/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl \
#       ml-collections==1.1.0
#   mkdir -p .data/mnist && cp ../shared/data/mnist/*.gz .data/mnist/
# Then, with the device tool: command "bash benchmarks/gpu_session.sh
# STAGE[:SECONDS] ...", carry [".whl", ".data"]. Stages run in the order
# given, each under its own time limit (SECONDS; default none), and a stage
# that fails or runs out of time does not stop the next one (a stopped
# protocol run still hands back its metrics so far):
#   bench       benchmarks/hot_path.py (GPU defaults, rooflines, the PyTorch
#               baseline where torch is installed) + nvidia-smi
#   acquisition benchmarks/acquisition_cost.py on a 60,000-image pool
#   protocol1   the full protocol, 1 seed
#   protocol10  the full protocol, 10 seeds vmapped
#   precision   benchmarks/mc_precision.py: MNIST `small`, 10 seeds, the MC
#               sweeps at float32 / TF32 / bfloat16 (accuracy effect)
#   cudagraph   hot_path.py --only train,iteration with XLA's command buffers
#               (CUDA graphs) extended to while loops and conditionals, so an
#               epoch's loop test stays on the device: compare its
#               train_epoch_batches lines with a bench stage's
#   protocol1cg the full protocol, 1 seed, with those command buffers
#   anatomy     benchmarks/step_anatomy.py: a training step's forward /
#               gradient / optimizer parts and its HLO operation count, and
#               the 10-seed MC sweep vmapped vs mapped, per conv_impl
#   warm1       the full protocol, 1 seed, twice with one fresh compilation
#               cache (each run under half the stage's limit): the second
#               run's wall is what a rerun costs once its programs are cached
#   profile     benchmarks/profile_iteration.py on the full protocol, 1 seed
#               then 10 seeds (each under half the stage's limit): the
#               device's busy fraction and its time per HLO op and op kind;
#               the 1-seed trace comes back too where it is under 20 MB
#   determinism the 1-seed protocol shortened to 20 iterations, four runs
#               (each under a quarter of the stage's limit): twice plain,
#               twice with config.deterministic_ops, compilation cache off;
#               are the twins bit-identical, and what does it cost
# Everything lands in $OUT; copy it to benchmarks/results/ with the command.
# EXTRA="--config.x=y ..." adds flags to the protocol runs (smoke tests);
# BENCH="..." adds flags to hot_path.py.
set -uo pipefail
[ $# -gt 0 ] || { echo "usage: gpu_session.sh STAGE[:SECONDS] ..." >&2; exit 2; }
for spec in "$@"; do  # Before anything runs: a limit is whole seconds.
  [[ "$spec" != *:* || "${spec#*:}" =~ ^[0-9]+$ ]] || {
    echo "gpu_session.sh: $spec: the limit must be whole seconds" >&2; exit 2; }
done
out="${OUT:-/tmp/gpu_session_out}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
if [ -d .data/mnist ]; then export BASS_DATA_DIR="$PWD/.data"; fi
python3 -c 'import jax, flax, optax; print("devices:", jax.devices(), "jax",
jax.__version__, "flax", flax.__version__, "optax", optax.__version__)' \
    | tee "$out/devices.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
    --format=csv >> "$out/devices.txt" 2>&1 || true

# The stage's program under its time limit ($limit; 0 = none). SIGTERM first
# so the logs are flushed; what a stopped run wrote is still copied.
limited() { timeout --signal=TERM --kill-after=10 "$limit" "$@"; }

# The stage's limit split among $1 runs (at least 1 s each; 0 = none).
share_of_limit() { echo $(( limit > 0 ? (limit / $1 > 0 ? limit / $1 : 1) : 0 )); }

# XLA:GPU command buffers (CUDA graphs) for while loops and conditionals too.
CMDBUF="--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL"

protocol() {  # $1 = number of seeds, $2 = an optional name suffix
  local name="$1${2:+_$2}"
  local wd="/tmp/protocol_$name"
  rm -rf "$wd"
  limited python3 launch/train.py \
      --config=configs/mnist.py:alldata_maxent --config.num_seeds="$1" \
      --config.log_every=20 --workdir="$wd" ${EXTRA:-} \
      2>&1 | tee "$out/protocol_$name.log"
  local rc=${PIPESTATUS[0]}
  cp "$wd/summary.json" "$out/protocol_${name}_summary.json" 2>/dev/null
  cp "$wd/metrics.jsonl" "$out/protocol_${name}_metrics.jsonl" 2>/dev/null
  return $rc
}

determinism() {  # Twin 20-iteration 1-seed runs, default and deterministic_ops.
  local limit="$(share_of_limit 4)"  # Each of the four runs.
  local run rc=0
  for run in default_a default_b det_a det_b; do
    local flag=""
    [ "${run%_*}" = det ] && flag="--config.deterministic_ops=true"
    rm -rf "/tmp/determinism_$run"
    echo "== $run $flag" >> "$out/determinism.log"
    # No compilation cache: a twin must compile (and autotune) afresh.
    limited python3 launch/train.py \
        --config=configs/mnist.py:alldata_maxent --config.num_seeds=1 \
        --config.num_iterations=20 --config.log_every=5 \
        --config.compilation_cache=off --workdir="/tmp/determinism_$run" \
        $flag ${EXTRA:-} >> "$out/determinism.log" 2>&1 || rc=$?
  done
  # A run stopped early is compared on the rows it wrote.
  python3 - <<'PY' 2>&1 | tee -a "$out/determinism.log"
import json
def run(name):
  d = f'/tmp/determinism_{name}'
  try:
    rows = [json.loads(l) for l in open(f'{d}/metrics.jsonl')]
  except (OSError, ValueError) as e:
    return None, f'no metrics ({e})'
  try:
    wall = json.load(open(f'{d}/summary.json'))['wall_s']
  except (OSError, ValueError, KeyError):
    wall = 'unfinished'
  return rows, wall
for kind in ('default', 'det'):
  (a, wall_a), (b, wall_b) = run(f'{kind}_a'), run(f'{kind}_b')
  if a is None or b is None:
    print(f'{kind}: {wall_a} / {wall_b}'); continue
  differ = [(r['iteration'], k) for r, q in zip(a, b) for k in r
            if r[k] != q.get(k)]
  first = differ[0] if differ else None
  print(f'{kind}: twins identical={not differ and len(a) == len(b)} '
        f'rows={len(a)}/{len(b)} first_difference={first} '
        f'val_acc={a[-1]["val_acc"]}/{b[-1]["val_acc"]} wall_s={wall_a}/{wall_b}')
PY
  return $rc
}

profile() {  # Where an iteration's device time goes: 1 seed, then 10.
  local limit="$(share_of_limit 2)"  # Each of the two runs.
  local seeds rc=0
  for seeds in 1 10; do
    rm -rf "/tmp/profile_trace_$seeds"
    limited python3 benchmarks/profile_iteration.py \
        --config=configs/mnist.py:alldata_maxent --config.num_seeds=$seeds \
        --trace_dir="/tmp/profile_trace_$seeds" --out="$out/profile.jsonl" \
        ${EXTRA:-} 2>&1 | tee -a "$out/profile.log" || rc=$?
  done
  find /tmp/profile_trace_1 -name '*.trace.json.gz' -size -20M \
      -exec cp {} "$out/profile_trace_1seed.trace.json.gz" \; 2>/dev/null
  return $rc
}

warm() {  # The 1-seed protocol twice, sharing a fresh compilation cache.
  local limit="$(share_of_limit 2)"  # Each of the two runs.
  local cache=/tmp/warm_cache rc=0 run
  rm -rf "$cache"
  for run in cold warm; do
    EXTRA="${EXTRA:-} --config.compilation_cache=$cache" protocol 1 "$run" \
        || rc=$?
  done
  return $rc
}

run_stage() {  # $1 = stage name
  case "$1" in
    bench)
      limited python3 benchmarks/hot_path.py --out="$out/hot_path.jsonl" ${BENCH:-} \
          2>&1 | tee "$out/hot_path.log" ;;
    acquisition)
      limited python3 benchmarks/acquisition_cost.py --pool_size=60000 \
          --out="$out/acquisition_cost.jsonl" 2>&1 \
          | tee "$out/acquisition_cost.log" ;;
    protocol1) protocol 1 ;;
    protocol1cg)
      XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }$CMDBUF" protocol 1 cg ;;
    cudagraph)
      XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }$CMDBUF" limited python3 benchmarks/hot_path.py \
          --only train,iteration --skip_torch --out="$out/hot_path_cudagraph.jsonl" \
          ${BENCH:-} 2>&1 | tee "$out/hot_path_cudagraph.log" ;;
    protocol10) protocol 10 ;;
    anatomy)
      limited python3 benchmarks/step_anatomy.py --out="$out/step_anatomy.jsonl" \
          2>&1 | tee "$out/step_anatomy.log" ;;
    determinism) determinism ;;
    profile) profile ;;
    warm1) warm ;;
    precision)
      limited python3 benchmarks/mc_precision.py \
          --config=configs/mnist.py:alldata_maxent,small --num_seeds=10 \
          --precisions=float32,tensorfloat32,bfloat16 \
          --out="$out/mc_precision.jsonl" 2>&1 | tee "$out/mc_precision.log" ;;
    *) echo "unknown stage $1" >&2; return 2 ;;
  esac
}

status=0
for spec in "$@"; do
  stage="${spec%%:*}"; limit="${spec#*:}"; [ "$limit" = "$spec" ] && limit=0
  t0=$(date +%s)
  run_stage "$stage"
  rc=$?
  t1=$(date +%s)
  line="stage $stage rc=$rc wall_s=$((t1 - t0)) limit_s=$limit"
  echo "$line" | tee -a "$out/stages.txt"
  [ $rc -eq 0 ] || status=$rc
done
exit $status
