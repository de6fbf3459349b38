"""The cupy backend on one GPU, side by side with flash-kmeans 0.3.1 and plain CuPy Lloyd.

For each shape of the GPU issue (10M x 16 k=16, 2M x 64 k=256, 1M x 128 k=1024,
4M x 128 k=4096), data resident on the device, float32:

- assignment: ours (fp32, and tf32 where the matrix-product path runs) against the memory
  roofline (X read once, int32 labels written, at the measured device copy bandwidth) and against
  flash-kmeans' assignment kernel;
- one Lloyd iteration of flash-kmeans and of plain CuPy (matrix product + argmin + scatter-add);
- one streaming pass (mini_batch_size 5000 and 100000, K = min(10 k, batch)) against one
  flash-kmeans iteration;
- end to end: our fit composed from the kernels (plain k-means++ on the first batch, one
  streaming pass, 10 trials of weighted k-means++ and Lloyd on the K centers) against
  flash-kmeans run to its defaults (25 iterations), with the ratio of their SSE on the data;
- streaming and assigning from pinned host memory against the measured pinned bandwidth.

Every stage is guarded (a failure is reported and the next stage runs) and time-boxed; the
whole run stays under about five minutes on an H200. A short table is printed last and a
markdown section written to --out.

    python3 benchmarks/gpu.py --out gpu.md [--shapes 0,1,2,3] [--budget 270]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = [(10_000_000, 16, 16), (2_000_000, 64, 256), (1_000_000, 128, 1024),
          (4_000_000, 128, 4096)]
SHAPE_SECONDS = 60  # a shape's stages after this are skipped
TRIALS = 10  # reduction trials of the end-to-end fit, as SageMaker's default


class Run:
    """Deadlines, the collected figures and the log of failures."""

    def __init__(self, budget: float) -> None:
        self.start = time.perf_counter()
        self.budget = budget
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.shape_deadline = math.inf

    def left(self) -> float:
        return min(self.budget - (time.perf_counter() - self.start),
                   self.shape_deadline - time.perf_counter())

    def stage(self, name: str, fn, *args):
        """Run one stage; None (and a note) when it fails or time is up."""
        if self.left() <= 0:
            self.notes.append(f"{name}: skipped (time box)")
            print(f"[skip] {name}: time box", flush=True)
            return None
        t0 = time.perf_counter()
        try:
            out = fn(*args)
        except Exception as exc:  # report and go on to the next stage
            self.notes.append(f"{name}: FAILED {type(exc).__name__}: {str(exc)[:200]}")
            print(f"[fail] {name}: {type(exc).__name__}: {exc}", flush=True)
            traceback.print_exc(limit=4)
            return None
        print(f"[ok]   {name} ({time.perf_counter() - t0:.1f} s)", flush=True)
        return out


def sync() -> None:
    import cupy as cp

    cp.cuda.runtime.deviceSynchronize()


def seconds(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of fn() with the device synchronised around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ------------------------------------------------------------------------- ceilings
def ceilings() -> dict:
    """Device copy bandwidth (read + write) and pinned host->device bandwidth, bytes/s."""
    import cupy as cp

    n = 1 << 28  # 1 GiB of float32
    src, dst = cp.ones(n, np.float32), cp.empty(n, np.float32)
    copy = seconds(lambda: cp.copyto(dst, src), repeat=5)
    pinned_mem = cp.cuda.alloc_pinned_memory(src.nbytes)
    host = np.frombuffer(pinned_mem, np.float32, n)
    upload = seconds(lambda: dst.set(host), repeat=3)
    return {"copy_bw": 2 * n * 4 / copy, "pinned_bw": n * 4 / upload,
            "device": cp.cuda.runtime.getDeviceProperties(0)["name"].decode()}


# ------------------------------------------------------------------------- data and peers
def make_data(n: int, d: int, k: int, seed: int = 0):
    """Points around k means on the device (float32), and k starting centers drawn from them."""
    import cupy as cp

    rng = cp.random.default_rng(seed)
    means = rng.standard_normal((k, d), dtype=np.float32) * 4.0
    which = rng.integers(0, k, n)
    X = means[which]
    X += rng.standard_normal((n, d), dtype=np.float32)
    del which
    start = X[cp.asarray(np.random.default_rng(seed).choice(n, k, replace=False))].copy()
    return X, start


def flash_module():
    import flash_kmeans  # noqa: F401 (raises where the wheel is missing)
    from flash_kmeans import FlashKMeans, batch_kmeans_Euclid
    from flash_kmeans.assign_euclid_triton import euclid_assign_triton

    return FlashKMeans, batch_kmeans_Euclid, euclid_assign_triton


def flash_assign(X, C):
    import torch

    _, _, assign = flash_module()
    x = torch.from_dlpack(X).unsqueeze(0)
    c = torch.from_dlpack(C).unsqueeze(0)
    x_sq = (x * x).sum(-1)  # flash-kmeans computes this once per fit
    out = torch.empty(x.shape[:2], dtype=torch.int32, device=x.device)
    return seconds(lambda: assign(x, c, x_sq, out=out))


def flash_lloyd_iteration(X, C):
    import torch

    _, lloyd, _ = flash_module()
    x = torch.from_dlpack(X).unsqueeze(0)
    c = torch.from_dlpack(C).unsqueeze(0)
    lloyd(x, c.shape[1], max_iters=1, tol=0.0, init_centroids=c.clone())  # compile
    return seconds(lambda: lloyd(x, c.shape[1], max_iters=10, tol=0.0,
                                 init_centroids=c.clone()), repeat=3, warmup=0) / 10


def flash_fit(X, k: int):
    """flash-kmeans to its defaults (FlashKMeans(d, k): 25 iterations, random init)."""
    import cupy as cp
    import torch

    fit_class, _, _ = flash_module()
    x = torch.from_dlpack(X)
    fit_class(d=X.shape[1], k=k, niter=1).fit(x[:100_000])  # compile at this shape's d, k
    sync()
    t0 = time.perf_counter()
    km = fit_class(d=X.shape[1], k=k).fit(x)
    sync()
    elapsed = time.perf_counter() - t0
    return elapsed, cp.from_dlpack(km.centroids_b[0].contiguous()).astype(np.float32)


def cupy_lloyd_iteration(X, C):
    """One plain CuPy Lloyd iteration: tiled matrix product, argmin, scatter-add."""
    import cupy as cp
    import cupyx

    n, k = X.shape[0], C.shape[0]
    labels = cp.empty(n, np.int64)
    tile = max(1024, (1 << 26) // k)

    def iteration():
        c_norm = (C * C).sum(1)
        for s in range(0, n, tile):
            labels[s:s + tile] = cp.argmin(c_norm - 2.0 * (X[s:s + tile] @ C.T), axis=1)
        sums = cp.zeros(C.shape, np.float32)
        cupyx.scatter_add(sums, labels, X)
        counts = cp.bincount(labels, minlength=k)
        return sums / cp.maximum(counts, 1)[:, None].astype(np.float32)

    return seconds(iteration, repeat=3)


# ------------------------------------------------------------------------- ours
def ours_assign(kern, X, C):
    import cupy as cp

    ws = kern.workspace(np.float32, C.shape[0], X.shape[1], X.shape[0])
    labels = cp.empty(X.shape[0], np.int32)
    return seconds(lambda: kern.assign(X, C, labels, None, ws))


def ours_stream(kern, X, K: int, batch: int) -> float:
    """One streaming pass over X from K centers drawn from its rows, seconds."""
    import cupy as cp

    C = X[cp.asarray(np.random.default_rng(batch).choice(len(X), K, replace=False))].copy()
    ws = kern.workspace(np.float32, C.shape[0], X.shape[1], batch)
    centers, counts = C.copy(), cp.zeros(C.shape[0])
    kern.stream_batches(X[:2 * batch], None, None, batch, centers, counts, 0, ws)  # compile
    centers, counts = C.copy(), cp.zeros(C.shape[0])
    sync()
    t0 = time.perf_counter()
    kern.stream_batches(X, None, None, batch, centers, counts, 0, ws)
    sync()
    return time.perf_counter() - t0


def ours_fit(kern, X, k: int, batch: int = 5000, seed: int = 0):
    """Our whole fit from the kernels: (seconds, k centers float32, seconds by step)."""
    import cupy as cp

    from kmeans_stream.backends.base import PLAIN_PROPOSALS

    rng = np.random.default_rng(seed)
    steps = {}
    sync()
    t0 = time.perf_counter()
    first = X[:batch].get()
    K = max(k, min(10 * k, len(np.unique(first, axis=0))))
    picked = np.empty(K, np.intp)
    kern.kmeanspp_plain(first, None, rng.random((K, 2 * PLAIN_PROPOSALS)), picked)
    centers, counts = cp.asarray(first[picked]), cp.zeros(K)
    steps["init"] = time.perf_counter() - t0
    ws = kern.workspace(np.float32, K, X.shape[1], batch)
    kern.stream_batches(X, None, None, batch, centers, counts, 0, ws)
    sync()
    steps["stream"] = time.perf_counter() - t0 - steps["init"]
    best = reduce_centers(kern, centers, counts, k, rng)
    sync()
    elapsed = time.perf_counter() - t0
    steps["reduce"] = elapsed - steps["init"] - steps["stream"]
    return elapsed, cp.asarray(best, dtype=np.float32), steps


def reduce_centers(kern, centers, counts, k: int, rng) -> np.ndarray:
    """SageMaker's reduction: weighted k-means++ and Lloyd on the K centers, best of TRIALS."""
    import cupy as cp

    live = counts > 0
    points = cp.ascontiguousarray(centers[live].astype(np.float64))
    weights = cp.ascontiguousarray(counts[live])
    ws = kern.workspace(np.float64, k, points.shape[1], len(points))
    best_loss, best = math.inf, None
    picked = np.empty(k, np.intp)
    for _ in range(TRIALS):
        kern.kmeanspp(points, weights, rng.random((k, 2 + int(math.log(k)))), picked)
        trial = cp.ascontiguousarray(points[cp.asarray(picked)])
        loss, _ = kern.lloyd(points, weights, trial, 300, 1e-4, ws)
        if loss < best_loss:
            best_loss, best = loss, trial
    return best.get()


def sse(kern, X, C) -> float:
    """SSE of X against C by one evaluator (exact float64 distances of the nearest center)."""
    import cupy as cp

    return kern.assign(X, C, cp.empty(X.shape[0], np.int32), None, None)


def pinned_rows(X):
    """A numpy copy of device X in pinned host memory."""
    import cupy as cp

    memory = cp.cuda.alloc_pinned_memory(X.nbytes)
    host = np.frombuffer(memory, X.dtype, X.size).reshape(X.shape)
    X.get(out=host)
    return host


def from_host(kern, Xh, K: int, batch: int) -> dict:
    """Streaming pass and assignment from pinned host rows (K centers): bytes/s of X."""
    import cupy as cp

    C = cp.asarray(Xh[:K])
    ws = kern.workspace(np.float32, C.shape[0], Xh.shape[1], batch)
    centers, counts = C.copy(), cp.zeros(C.shape[0])
    kern.stream_batches(Xh[:4 * batch], None, None, batch, centers, counts, 0, ws)
    sync()
    t0 = time.perf_counter()
    kern.stream_batches(Xh, None, None, batch, centers, counts, 0, ws)
    sync()
    stream = time.perf_counter() - t0
    labels = np.empty(Xh.shape[0], np.int32)
    assign = seconds(lambda: kern.assign(Xh, C, labels, None, ws), repeat=3)
    return {"stream_bw": Xh.nbytes / stream, "assign_bw": Xh.nbytes / assign}


# ------------------------------------------------------------------------- one shape
def bench_shape(run: Run, shape: tuple, ceil: dict, kerns: dict) -> dict:
    import cupy as cp

    n, d, k = shape
    row = {"shape": f"{n / 10**6:g}M x {d}, k={k}", "n": n}
    data = run.stage(f"{row['shape']}: data", make_data, n, d, k)
    if data is None:
        return row
    X, C = data
    roof = (X.nbytes + 4 * n) / ceil["copy_bw"] if ceil else math.nan
    row["roof_ms"] = roof * 1e3
    row["ours_assign_ms"] = _ms(run.stage("ours assign fp32", ours_assign, kerns["fp32"], X, C))
    if d * k > 4096:
        row["ours_assign_tf32_ms"] = _ms(
            run.stage("ours assign tf32", ours_assign, kerns["tf32"], X, C))
    row["flash_assign_ms"] = _ms(run.stage("flash-kmeans assign", flash_assign, X, C))
    row["flash_iter_ms"] = _ms(run.stage("flash-kmeans Lloyd iteration", flash_lloyd_iteration,
                                         X, C))
    row["cupy_iter_ms"] = _ms(run.stage("plain cupy Lloyd iteration", cupy_lloyd_iteration, X, C))
    for batch in (5000, 100_000):
        K = min(10 * k, batch, n)
        row[f"K_{batch}"] = K
        row[f"stream_{batch}_ms"] = _ms(run.stage(f"ours stream pass batch={batch} K={K}",
                                                  ours_stream, kerns["fp32"], X, K, batch))
    if (d, k) == SHAPES[0][1:]:
        row["stream_5000_per_batch_ms"] = _ms(run.stage(
            "ours stream pass batch=5000, per-batch launches", ours_stream, kerns["per_batch"],
            X, min(10 * k, n), 5000))
    _end_to_end(run, row, kerns["fp32"], X, k)
    if 10 * k <= 256 and ceil:
        Xh = run.stage("pinned host copy", pinned_rows, X)
        if Xh is not None:
            host = run.stage("ours from pinned host", from_host, kerns["fp32"], Xh, 10 * k, 5000)
            if host:
                row["host_stream_frac"] = host["stream_bw"] / ceil["pinned_bw"]
                row["host_assign_frac"] = host["assign_bw"] / ceil["pinned_bw"]
            del Xh
    del X, C
    cp.get_default_memory_pool().free_all_blocks()
    _free_torch()
    return row


def _end_to_end(run: Run, row: dict, kern, X, k: int) -> None:
    ours = run.stage("ours end-to-end fit", ours_fit, kern, X, k)
    flash = run.stage("flash-kmeans fit (defaults)", flash_fit, X, k)
    if ours:
        row["ours_fit_s"], row["ours_steps"] = ours[0], ours[2]
        row["ours_sse"] = run.stage("SSE of ours", sse, kern, X, ours[1])
    if flash:
        row["flash_fit_s"] = flash[0]
        row["flash_sse"] = run.stage("SSE of flash-kmeans", sse, kern, X, flash[1])


def _free_torch() -> None:
    try:
        import torch

        torch.cuda.empty_cache()
    except Exception:  # torch is optional here
        pass


def _ms(s):
    return None if s is None else s * 1e3


# ------------------------------------------------------------------------- report
def _f(v, fmt="{:.3g}"):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def _ratio(a, b):
    return None if a is None or b is None or not b else a / b


def table(rows: list[dict], ceil: dict) -> list[str]:
    """The markdown table: one line per shape."""
    head = ("| shape | assign ms (ours fp32 / tf32 / flash) | % roofline | vs flash assign "
            "| 1 it ms (flash / cupy) | pass ms b=5000 (K) / b=1e5 (K) | pass / flash it "
            "| fit s (ours / flash) | speed-up | SSE ratio |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        best = min(x for x in (r.get("ours_assign_ms"), r.get("ours_assign_tf32_ms"),
                               math.inf) if x is not None)
        best = None if best == math.inf else best
        lines.append(
            f"| {r['shape']} | {_f(r.get('ours_assign_ms'))} / {_f(r.get('ours_assign_tf32_ms'))}"
            f" / {_f(r.get('flash_assign_ms'))} | {_f(_ratio(r.get('roof_ms'), r.get('ours_assign_ms')), '{:.0%}')}"  # noqa: E501
            f" | {_f(_ratio(r.get('flash_assign_ms'), best), '{:.2f}x')}"
            f" | {_f(r.get('flash_iter_ms'))} / {_f(r.get('cupy_iter_ms'))}"
            f" | {_f(r.get('stream_5000_ms'))} ({r.get('K_5000', '—')}) / "
            f"{_f(r.get('stream_100000_ms'))} ({r.get('K_100000', '—')})"
            f" | {_f(_ratio(r.get('stream_5000_ms'), r.get('flash_iter_ms')), '{:.2f}x')} / "
            f"{_f(_ratio(r.get('stream_100000_ms'), r.get('flash_iter_ms')), '{:.2f}x')}"
            f" | {_f(r.get('ours_fit_s'))} / {_f(r.get('flash_fit_s'))}"
            f" | {_f(_ratio(r.get('flash_fit_s'), r.get('ours_fit_s')), '{:.2f}x')}"
            f" | {_f(_ratio(r.get('ours_sse'), r.get('flash_sse')), '{:.4f}')} |")
    return lines


def details(rows: list[dict], ceil: dict) -> list[str]:
    out = []
    for r in rows:
        if "ours_steps" in r:
            steps = ", ".join(f"{k} {v:.3f} s" for k, v in r["ours_steps"].items())
            out.append(f"- {r['shape']}: ours fit by step: {steps}")
        if "stream_5000_ms" in r and r.get("stream_5000_ms"):
            per = r["stream_5000_ms"] * 1e3 / math.ceil(r["n"] / 5000)
            out.append(f"- {r['shape']}: {per:.2f} us per 5000-row batch (persistent path)")
        if r.get("stream_5000_per_batch_ms"):
            out.append(f"- {r['shape']}: per-batch launches (reference path): "
                       f"{r['stream_5000_per_batch_ms']:.1f} ms a pass")
        if "host_stream_frac" in r:
            out.append(f"- {r['shape']}: from pinned host memory: streaming pass "
                       f"{r['host_stream_frac']:.0%}, assignment {r['host_assign_frac']:.0%} "
                       f"of the pinned host->device bandwidth")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--shapes", default="0,1,2,3")
    parser.add_argument("--budget", type=float, default=270.0, help="seconds for all stages")
    parser.add_argument("--scale", type=int, default=1, help="divide every n by this (smoke runs)")
    parser.add_argument("--no-persistent", action="store_true",
                        help="stream with per-batch launches only (if the persistent kernel hangs)")
    args = parser.parse_args()
    run = Run(args.budget)
    from kmeans_stream.backends.cupy import CupyKernels, gpu_available

    reason = gpu_available()
    if reason:
        print(f"no GPU: {reason}")
        return 1
    t0 = time.perf_counter()
    persistent = not args.no_persistent
    kerns = {"fp32": CupyKernels(persistent=persistent),
             "tf32": CupyKernels("tf32", persistent=persistent),
             "per_batch": CupyKernels(persistent=False)}
    ceil = run.stage("ceilings", ceilings) or {}
    cold = run.stage("cold start (compile or load every kernel module)", _cold_start)
    rows = []
    for i in (int(s) for s in args.shapes.split(",")):
        run.shape_deadline = time.perf_counter() + SHAPE_SECONDS
        n, d, k = SHAPES[i]
        rows.append(bench_shape(run, (n // args.scale, d, k), ceil, kerns))
        run.shape_deadline = math.inf
        text = report(rows, ceil, cold, run, time.perf_counter() - t0)
        if args.out:  # after every shape, so a run stopped by a time limit still leaves results
            args.out.write_text(text)
    print("\n" + text)
    return 0


def report(rows: list[dict], ceil: dict, cold, run: Run, elapsed: float) -> str:
    """The markdown section: the machine's ceilings, the table, the details, what failed."""
    md = [f"## GPU: {ceil.get('device', '?')}, {time.strftime('%Y-%m-%d')}",
          "", f"Command: `python3 benchmarks/gpu.py` ({elapsed:.0f} s). "
          f"Device copy {_f(ceil.get('copy_bw', 0) / 1e9, '{:.0f}')} GB/s (read + write), "
          f"pinned host->device {_f(ceil.get('pinned_bw', 0) / 1e9, '{:.1f}')} GB/s; "
          f"cold start {_f(cold, '{:.1f}')} s. float32, data on the device; times are "
          "medians of synchronised wall times.", "", *table(rows, ceil), "", *details(rows, ceil)]
    if run.notes:
        md += ["", "Stages that did not complete:", *[f"- {n}" for n in run.notes]]
    return "\n".join(md) + "\n"


def _cold_start() -> float:
    """Seconds to compile (or load from CuPy's cache) every kernel module."""
    from kmeans_stream.backends import _cupy_kernels as ck

    t0 = time.perf_counter()
    for dtype in (np.float32, np.float64):
        for kind, names in ck.MODULES.items():
            for name in names(dtype):
                ck.kernel(kind, name, dtype).kernel  # noqa: B018 (loads the module)
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
