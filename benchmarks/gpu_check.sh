#!/usr/bin/env bash
# The one command the GPU machine runs, from the repository root:
#
#     bash benchmarks/gpu_check.sh          (carry .whl: the flash-kmeans wheel)
#
# Installs the carried wheels; compiles the numba host kernels in the background (8 processes,
# into numba's on-disk cache) while it prints the card and compiles every CUDA kernel; runs the
# gpu tests of the cupy backend; checks that each persistent streaming kernel agrees with the
# per-batch path (v2, else v1, else per batch only for the benchmark); checks KMeans end to end;
# then benchmarks/gpu.py with what time is left before DEADLINE. Each stage has its own time
# limit, and a stage that fails or times out is reported and the next one runs. Everything goes
# to $OUT/log.txt; the benchmark's markdown to $OUT/gpu.md and its figures to $OUT/gpu.json.
# About 5 minutes; at most about 7 (DEADLINE plus the last stage's grace).
set -u
OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
START=$SECONDS
DEADLINE=390  # seconds after the start by which the benchmark should have ended

stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, report how it ended; its status
  local name=$1 limit=$2
  shift 2
  echo
  echo "=== $name (limit ${limit}s, at $((SECONDS - START))s)"
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "=== $name: ok"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "=== $name: TIMED OUT after ${limit}s"
  else
    echo "=== $name: FAILED (exit $rc)"
  fi
  return "$rc"
}

if compgen -G ".whl/*.whl" > /dev/null; then
  stage "install carried wheels" 60 python3 -m pip install -q --no-index --no-deps \
    --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
else
  echo "no .whl/ folder: flash-kmeans will be missing from the benchmark"
fi
export PYTHONPATH="/tmp/site:$PWD"

# The numba kernels of the host path (small seeding and Lloyd problems) compile once into
# numba's cache; the tests and the benchmark then load them.
NUMBA_LOGS=/tmp/gpu_check_numba
mkdir -p "$NUMBA_LOGS"
NUMBA_PIDS=()
for part in 0 1 2 3 4 5 6 7; do
  timeout --kill-after=5 150 python3 benchmarks/gpu_compile_check.py --numba --part "$part/8" \
    > "$NUMBA_LOGS/part$part.txt" 2>&1 &
  NUMBA_PIDS+=($!)
done

stage "nvidia-smi" 20 nvidia-smi
stage "versions" 40 python3 -c "
import sys, numpy, cupy
print('python', sys.version.split()[0], '| numpy', numpy.__version__, '| cupy', cupy.__version__)
print('CUDA runtime', cupy.cuda.runtime.runtimeGetVersion(), '| driver',
      cupy.cuda.runtime.driverGetVersion())
from kmeans_stream.backends.cupy import gpu_available
print('gpu_available:', gpu_available() or 'yes')
try:
    import numba
    print('numba', numba.__version__, '| threads', numba.get_num_threads())
except Exception as exc:
    print('numba:', type(exc).__name__, exc)
try:
    import flash_kmeans, torch, triton
    print('flash-kmeans', flash_kmeans.__version__, '| torch', torch.__version__,
          '| triton', triton.__version__)
except Exception as exc:
    print('flash-kmeans/torch/triton:', type(exc).__name__, exc)
"
stage "compile every kernel (NVRTC, sm_90, registers and spills)" 60 \
  python3 benchmarks/gpu_compile_check.py --verbose

echo
echo "=== numba host kernels (background since the start; at $((SECONDS - START))s)"
NUMBA_FAILED=0
for pid in "${NUMBA_PIDS[@]}"; do wait "$pid" || NUMBA_FAILED=$((NUMBA_FAILED + 1)); done
cat "$NUMBA_LOGS"/part*.txt
echo "=== numba host kernels: $NUMBA_FAILED of 8 parts failed (at $((SECONDS - START))s)"

# Everything that streams (the contract's cases stream with the default persistent kernel) in
# a stage of its own, one line a test: a hang of a persistent kernel then costs only that stage,
# and the log names the test it hung in (with its stack, after 45 s).
stage "gpu tests, all but streaming" 110 python3 -m pytest -p no:cacheprovider -q -m gpu \
  -o addopts="" --durations=5 -k "not stream" tests/test_cupy_backend.py
stage "gpu tests, streaming and the backend contract" 90 python3 -m pytest -p no:cacheprovider \
  -v -m gpu -o addopts="" -o faulthandler_timeout=45 --durations=5 \
  -k "stream or test_contract" tests/test_cupy_backend.py tests/backends/test_contract.py

# A small pass of a persistent kernel against the per-batch one. The benchmark's defaults
# stream with the first kernel that agrees (v2, else v1, else per batch), and it sweeps the v2
# variants only if v2 agrees.
smoke() {
  stage "persistent kernel $1 smoke" 30 python3 -c "
import cupy as cp, numpy as np
from kmeans_stream.backends.cupy import CupyKernels, Tuning
rng = cp.random.default_rng(0)
means = rng.standard_normal((160, 16), dtype=np.float32) * 50
X = means[cp.arange(200_000) % 160] + rng.standard_normal((200_000, 16), dtype=np.float32)
fast = CupyKernels(tuning=Tuning(stream_kernel='$1'))
slow = CupyKernels(tuning=Tuning(stream_kernel='per_batch'))
out = []
for kern in (fast, slow):
    C, N = X[:160].copy(), cp.zeros(160)
    kern.stream_batches(X, None, None, 5000, C, N, 0, None)
    out.append((C.get(), N.get()))
assert fast.persistent, 'the persistent kernel failed to launch'
np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-4, atol=1e-4)
np.testing.assert_array_equal(out[0][1], out[1][1])
print('persistent $1 pass agrees with the per-batch pass')
"
}
STREAM_KERNEL=per_batch
if smoke v2; then STREAM_KERNEL=v2; elif smoke v1; then STREAM_KERNEL=v1; fi

stage "KMeans(backend='cupy') end to end" 50 python3 benchmarks/gpu_estimator_check.py

LEFT=$((DEADLINE - (SECONDS - START)))
BUDGET=$((LEFT > 80 ? LEFT - 20 : 60))
stage "benchmark (defaults stream with $STREAM_KERNEL)" $((BUDGET + 30)) python3 benchmarks/gpu.py \
  --budget "$BUDGET" --stream-kernel "$STREAM_KERNEL" --out "$OUT/gpu.md" --json "$OUT/gpu.json"

echo
echo "=== done in $((SECONDS - START))s; log in $OUT/log.txt, results in $OUT/gpu.md, $OUT/gpu.json"
