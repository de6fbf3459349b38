"""Compile every kernel of the cupy backend with NVRTC for sm_90, without a GPU.

Needs CuPy and NVRTC (``pip install 'cupy-cuda13x[ctk]'``), not a device: the modules of
`kmeans_stream.backends._cupy_kernels` are compiled exactly as the backend names them, and the
registers, spills and stack of each kernel are printed from ptxas. Exit status 1 on any error.

    python benchmarks/gpu_compile_check.py [--arch 90] [--verbose]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="90")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
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
