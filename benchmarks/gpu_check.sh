#!/usr/bin/env bash
# The one command the GPU machine runs, from the repository root:
#
#     bash benchmarks/gpu_check.sh          (carry .whl: the flash-kmeans wheel)
#
# Installs the carried wheels, prints the card, compiles every kernel, runs the gpu tests of the
# cupy backend, then benchmarks/gpu.py. Each stage has its own time limit, and a stage that fails
# or times out is reported and the next one runs. Everything goes to $OUT/log.txt; the benchmark's
# markdown section to $OUT/gpu.md. About 5 to 6 minutes; the stage limits add up to about 9.
set -u
OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
START=$SECONDS

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
  stage "install carried wheels" 120 python3 -m pip install -q --no-index --no-deps \
    --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
else
  echo "no .whl/ folder: flash-kmeans will be missing from the benchmark"
fi
export PYTHONPATH="/tmp/site:$PWD"

stage "nvidia-smi" 30 nvidia-smi
stage "versions" 60 python3 -c "
import sys, numpy, cupy
print('python', sys.version.split()[0], '| numpy', numpy.__version__, '| cupy', cupy.__version__)
print('CUDA runtime', cupy.cuda.runtime.runtimeGetVersion(), '| driver',
      cupy.cuda.runtime.driverGetVersion())
from kmeans_stream.backends.cupy import gpu_available
print('gpu_available:', gpu_available() or 'yes')
try:
    import flash_kmeans, torch, triton
    print('flash-kmeans', flash_kmeans.__version__, '| torch', torch.__version__,
          '| triton', triton.__version__)
except Exception as exc:
    print('flash-kmeans/torch/triton:', type(exc).__name__, exc)
"
stage "compile every kernel (NVRTC, sm_90, registers and spills)" 60 \
  python3 benchmarks/gpu_compile_check.py --verbose
# The streaming tests apart: a hang of the persistent kernel then costs only them.
stage "gpu tests, all but streaming" 130 python3 -m pytest -p no:cacheprovider -q -m gpu \
  -o addopts="" --durations=5 -k "not stream" tests/test_cupy_backend.py \
  tests/backends/test_contract.py
stage "gpu tests, streaming" 80 python3 -m pytest -p no:cacheprovider -q -m gpu \
  -o addopts="" --durations=5 -k "stream" tests/test_cupy_backend.py

# A small persistent pass against the per-batch one; if it fails or hangs, the benchmark streams
# per batch only, so that its other figures still come.
BENCH_FLAGS=""
stage "persistent kernel smoke" 40 python3 -c "
import cupy as cp, numpy as np
from kmeans_stream.backends.cupy import CupyKernels
rng = cp.random.default_rng(0)
means = rng.standard_normal((160, 16), dtype=np.float32) * 50
X = means[cp.arange(200_000) % 160] + rng.standard_normal((200_000, 16), dtype=np.float32)
fast, slow = CupyKernels(), CupyKernels(persistent=False)
out = []
for kern in (fast, slow):
    C, N = X[:160].copy(), cp.zeros(160)
    kern.stream_batches(X, None, None, 5000, C, N, 0, None)
    out.append((C.get(), N.get()))
assert fast.persistent, 'the persistent kernel failed to launch'
np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-4, atol=1e-4)
np.testing.assert_array_equal(out[0][1], out[1][1])
print('persistent pass agrees with the per-batch pass')
" || BENCH_FLAGS="--no-persistent"
stage "KMeans(backend='cupy') end to end" 60 python3 benchmarks/gpu_estimator_check.py
stage "benchmark $BENCH_FLAGS" 190 python3 benchmarks/gpu.py --budget 150 $BENCH_FLAGS \
  --out "$OUT/gpu.md"

echo
echo "=== done in $((SECONDS - START))s; log in $OUT/log.txt, results in $OUT/gpu.md"
