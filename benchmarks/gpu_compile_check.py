"""Compile every kernel of the cupy backend with NVRTC for sm_90, without a GPU.

Needs CuPy and NVRTC (``pip install 'cupy-cuda13x[ctk]'``), not a device: the modules of
`kmeans_stream.backends._cupy_kernels` are compiled exactly as the backend names them, and the
registers, spills and stack of each kernel are printed from ptxas. Exit status 1 on any error.

With ``--numba``, instead compile (or load from numba's on-disk cache) every signature of the
numba kernels the cupy backend runs small seeding and Lloyd problems with (kmeanspp_plain,
kmeanspp, lloyd; float32 and float64; every feature width numba specialises on), so that tests
and benchmarks that follow find them cached. ``--part i/n`` takes every n-th of them from the
i-th, for n processes side by side.

    python benchmarks/gpu_compile_check.py [--arch 90] [--verbose]
    python benchmarks/gpu_compile_check.py --numba [--part 0/4]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kmeans_stream.backends import _cupy_kernels as ck  # noqa: E402


def compile_module(code: str, names: list[str], arch: str) -> tuple[str, float]:
    """NVRTC-compile the backend's source for `names`; returns (ptxas log, seconds)."""
    from cupy_backends.cuda.libs import nvrtc

    options = [*ck.OPTIONS, f"-arch=sm_{arch}", "--device-as-default-execution-space",
               "-ftz=true", "-Xptxas=-v"]
    prog = nvrtc.createProgram(code, "kmeans_stream_cupy.cu", [], [])
    for name in names:
        nvrtc.addNameExpression(prog, name)
    start = time.perf_counter()
    try:
        nvrtc.compileProgram(prog, options)
    except Exception as exc:
        raise RuntimeError(f"{exc}\n{nvrtc.getProgramLog(prog)}") from exc
    seconds = time.perf_counter() - start
    for name in names:
        nvrtc.getLoweredName(prog, name)  # raises if a name expression did not instantiate
    if not nvrtc.getCUBIN(prog):
        raise RuntimeError("no cubin produced")
    return nvrtc.getProgramLog(prog), seconds


def summarize(log: str) -> list[str]:
    """One line per kernel: registers, spills, stack, from ptxas' verbose log."""
    lines, current = [], None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            current = m.group(1)
        m = re.search(r"Used (\d+) registers", line)
        if m and current:
            lines.append(f"  {current[:70]:70s} regs={m.group(1)}")
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores", line)
        if m and current and (int(m.group(1)) or int(m.group(2))):
            lines.append(f"  {current[:70]:70s} stack={m.group(1)} spill={m.group(2)}")
    return lines


def warm_numba(part: int, parts: int) -> int:
    """Compile or load the numba signatures the cupy backend's host path takes; exit status."""
    from kmeans_stream.backends.base import PLAIN_PROPOSALS
    from kmeans_stream.backends.numba import NumbaKernels

    kernels, rng = NumbaKernels(), np.random.default_rng(0)
    # numba specialises on the dtype and on the padded feature width (4, 8, 16, 32, or 0 for
    # the matrix product): d = 3, 8, 16, 32, 64 take each once (with 4 centers for Lloyd).
    jobs = [(kind, dtype, d) for kind in ("plain", "lloyd") for d in (16, 64, 3, 8, 32)
            for dtype in (np.float32, np.float64)]
    jobs += [("seed", dtype, 16) for dtype in (np.float32, np.float64)]
    for i, (kind, dtype, d) in enumerate(jobs):
        if i % parts != part:
            continue
        X = rng.standard_normal((64, d)).astype(dtype)
        w = rng.random(64) + 0.5
        start = time.perf_counter()
        if kind == "plain":
            kernels.kmeanspp_plain(X, w, rng.random((4, 2 * PLAIN_PROPOSALS)),
                                   np.empty(4, np.intp))
        elif kind == "seed":
            kernels.kmeanspp(X, w, rng.random((4, 3)), np.empty(4, np.intp))
        else:
            kernels.lloyd(X, w, X[:4].copy(), 5, 1e-4)
        print(f"numba {kind:6s} {np.dtype(dtype).name:8s} d={d:3d} "
              f"{time.perf_counter() - start:6.1f} s", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="90")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--numba", action="store_true",
                        help="compile the numba kernels of the host path instead")
    parser.add_argument("--part", default="0/1", help="i/n: this process's share (--numba)")
    args = parser.parse_args()
    if args.numba:
        part, parts = (int(v) for v in args.part.split("/"))
        return warm_numba(part, parts)
    failures = 0
    for dtype in (np.float32, np.float64):
        for kind, names_of in ck.MODULES.items():
            names = names_of(dtype)
            try:
                log, seconds = compile_module(ck.source(kind, dtype), names, args.arch)
            except Exception as exc:  # report every module, then fail
                failures += 1
                print(f"FAIL {kind} {np.dtype(dtype).name}: {exc}")
                continue
            print(f"ok   {kind:10s} {np.dtype(dtype).name:8s} {len(names):2d} kernels "
                  f"{seconds:5.1f} s")
            warnings = [ln for ln in log.splitlines() if "warning" in ln.lower()]
            for line in warnings[:10]:
                print("     ", line)
            if args.verbose:
                print("\n".join(summarize(log)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
