"""The cupy backend on one GPU, side by side with flash-kmeans 0.3.1, and the alternatives of its
`Tuning` side by side, so that the next defaults come from data.

For each shape of the GPU issue (10M x 16 k=16, 2M x 64 k=256, 1M x 128 k=1024,
4M x 128 k=4096), data resident on the device, float32:

- assignment: every variant that applies (rows per lane and float32/float64 differences for the
  fused kernels; tile sizes and fp32/tf32 for the matrix-product path) against the memory
  roofline (X read once, int32 labels written, at the measured device copy bandwidth) and
  against flash-kmeans' assignment kernel;
- one Lloyd iteration of flash-kmeans;
- one streaming pass (mini_batch_size 5000 and 100000, K = min(10 k, batch)) against one
  flash-kmeans iteration; where a persistent kernel takes the shape, every kernel, grid and
  option, and timing probes that leave the assignment or the update out (what a batch costs);
- end to end: our fit composed from the kernels (plain k-means++ on the first batch, one
  streaming pass, 10 trials of weighted k-means++ and Lloyd on the K centers) against
  flash-kmeans run to its defaults (25 iterations), with the ratio of their SSE on the data;
- the seeding and Lloyd steps of that fit at its sizes, on the host (numba, and numpy where
  small) and on the device, with the Tuning thresholds they suggest;
- streaming and assigning from pinned host memory against the measured pinned bandwidth.

Every stage is guarded (a failure is reported and the next stage runs) and time-boxed. Short
tables are printed last, a markdown section written to --out and every figure to --json.

    python3 benchmarks/gpu.py --out gpu.md --json gpu.json [--shapes 0,1,2,3] [--budget 200]
"""

from __future__ import annotations

import argparse
import json
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
SHAPE_SECONDS = 90  # a shape's stages after this are skipped
TRIALS = 10  # reduction trials of the end-to-end fit, as SageMaker's default
BATCH = 5000  # SageMaker's default mini_batch_size

# Assignment variants: Tuning fields (and the precision) for the fused kernels and for the
# matrix-product path.
FUSED_VARIANTS = {
    "rows1 (assign_fused)": {"assign_rows": 1},
    "rows2": {"assign_rows": 2},
    "rows4": {"assign_rows": 4},
    "rows2 wide": {"assign_rows": 2, "wide_distances": True},
    "rows4 wide": {"assign_rows": 4, "wide_distances": True},
}
GEMM_VARIANTS = {
    **{f"{p} cuBLAS tile {mb} MB": (p, {"tile_bytes": mb << 20})
       for p in ("fp32", "tf32") for mb in (32, 256, 1024)},
    "tf32 fused mma, 1 tile a warp": ("tf32", {"assign_mma": True, "mma_m_tiles": 1}),
    "tf32 fused mma, 2 tiles a warp": ("tf32", {"assign_mma": True, "mma_m_tiles": 2}),
}
# Streaming variants where a persistent kernel takes the shape (grid: threads x blocks a
# multiprocessor, x share of the multiprocessors), each spelt out in full so that the table
# keeps its meaning when the defaults change. DEFAULT_V2 is the Tuning defaults' form.
_G512x1 = {"stream_threads": 512, "stream_blocks_per_sm": 1}
_G512x2 = {"stream_threads": 512, "stream_blocks_per_sm": 2}
_G1024x1 = {"stream_threads": 1024, "stream_blocks_per_sm": 1}
STREAM_VARIANTS = {
    "v1 512x2": {"stream_kernel": "v1"},
    "v2 512x1": _G512x1,
    "v2 512x1 no prefetch": {**_G512x1, "stream_prefetch": False},
    "v2 512x1 backoff": {**_G512x1, "stream_backoff": True},
    "v2 512x1 block sums": {**_G512x1, "stream_block_sums": True},
    "v2 512x2": _G512x2,
    "v2 512x2 no prefetch": {**_G512x2, "stream_prefetch": False},
    "v2 256x4": {"stream_threads": 256, "stream_blocks_per_sm": 4},
    "v2 1024x1": _G1024x1,
    "v2 1024x1 no prefetch": {**_G1024x1, "stream_prefetch": False},
    "v2 1024x1 block sums": {**_G1024x1, "stream_block_sums": True},
    "v2 512x1 1/2 SMs": {**_G512x1, "stream_sm_share": 0.5},
    "v2 512x1 1/2 SMs block sums": {**_G512x1, "stream_sm_share": 0.5,
                                    "stream_block_sums": True},
    "v2 1024x1 1/2 SMs": {**_G1024x1, "stream_sm_share": 0.5},
    "v2 1024x1 1/4 SMs": {**_G1024x1, "stream_sm_share": 0.25},
    "per batch": {"stream_kernel": "per_batch"},
}
DEFAULT_V2 = "v2 512x1"
# Timing probes of the v2 kernel (flags): what a batch costs without the assignment (update and
# barrier), without the update (assignment, atomics and barrier), with neither (barrier).
PROBES = {"no assignment": 2, "no update": 4, "barrier only": 6}


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


def kernels(precision: str = "fp32", persistent: bool = True, **tuning):
    """A CupyKernels with these Tuning fields over the defaults (module kernels are shared)."""
    from kmeans_stream.backends.cupy import CupyKernels, Tuning

    return CupyKernels(precision, persistent=persistent, tuning=Tuning(**tuning))


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


def cold_start() -> dict:
    """Seconds to compile (or load from CuPy's cache) every kernel module, and to load the
    numba host kernels (from numba's cache where the warm-up filled it)."""
    from kmeans_stream.backends import _cupy_kernels as ck
    from kmeans_stream.backends._cupy_host import host_kernels
    from kmeans_stream.backends.base import PLAIN_PROPOSALS

    t0 = time.perf_counter()
    for dtype in (np.float32, np.float64):
        for kind, names in ck.MODULES.items():
            for name in names(dtype):
                ck.kernel(kind, name, dtype).kernel  # noqa: B018 (loads the module)
    t1 = time.perf_counter()
    host = host_kernels("numba")
    rng = np.random.default_rng(0)
    for dtype, d in ((np.float32, 16), (np.float64, 16), (np.float32, 64), (np.float64, 128)):
        X = rng.standard_normal((64, d)).astype(dtype)
        host.kmeanspp_plain(X, None, rng.random((4, 2 * PLAIN_PROPOSALS)), np.empty(4, np.intp))
        host.kmeanspp(X, rng.random(64), rng.random((4, 3)), np.empty(4, np.intp))
        host.lloyd(X, rng.random(64), X[:4].copy(), 3, 1e-4)
    return {"cuda_s": t1 - t0, "host_s": time.perf_counter() - t1, "host": host.name}


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


# ------------------------------------------------------------------------- ours
def ours_assign(kern, X, C):
    import cupy as cp

    ws = kern.workspace(np.float32, C.shape[0], X.shape[1], X.shape[0])
    labels = cp.empty(X.shape[0], np.int32)
    return seconds(lambda: kern.assign(X, C, labels, None, ws))


def ours_stream(kern, X, K: int, batch: int, repeat: int = 1) -> float:
    """One streaming pass over X from K centers drawn from its rows, seconds (the median of
    `repeat` passes, or of one where a pass takes over half a second)."""
    import cupy as cp

    C = X[cp.asarray(np.random.default_rng(batch).choice(len(X), K, replace=False))].copy()
    ws = kern.workspace(np.float32, C.shape[0], X.shape[1], batch)
    centers, counts = C.copy(), cp.zeros(C.shape[0])
    kern.stream_batches(X[:2 * batch], None, None, batch, centers, counts, 0, ws)  # compile
    times = []
    while len(times) < repeat and sum(times) < 0.5:
        centers, counts = C.copy(), cp.zeros(C.shape[0])
        sync()
        t0 = time.perf_counter()
        kern.stream_batches(X, None, None, batch, centers, counts, 0, ws)
        sync()
        times.append(time.perf_counter() - t0)
    if not kern.persistent:
        raise RuntimeError("the persistent kernel failed to launch (streamed per batch)")
    return statistics.median(times)


def n_centers(first: np.ndarray, k: int) -> int:
    from kmeans_stream.algorithm import n_distinct_rows, n_initial_centers

    return n_initial_centers(k, None, len(first), n_distinct_rows(first))


def ours_fit(kern, X, k: int, seed: int = 0):
    """Our whole fit from the kernels: (seconds, k centers float32, seconds by step, the
    streamed centers and counts)."""
    import cupy as cp

    from kmeans_stream.backends.base import PLAIN_PROPOSALS

    rng = np.random.default_rng(seed)
    steps = {}
    sync()
    t0 = time.perf_counter()
    first = X[:BATCH].get()
    K = n_centers(first, k)
    picked = np.empty(K, np.intp)
    kern.kmeanspp_plain(first, None, rng.random((K, 2 * PLAIN_PROPOSALS)), picked)
    centers, counts = cp.asarray(first[picked]), cp.zeros(K)
    steps["init"] = time.perf_counter() - t0
    ws = kern.workspace(np.float32, K, X.shape[1], BATCH)
    kern.stream_batches(X, None, None, BATCH, centers, counts, 0, ws)
    sync()
    steps["stream"] = time.perf_counter() - t0 - steps["init"]
    best = reduce_centers(kern, centers, counts, k, rng)
    sync()
    elapsed = time.perf_counter() - t0
    steps["reduce"] = elapsed - steps["init"] - steps["stream"]
    return elapsed, cp.asarray(best, dtype=np.float32), steps, (centers, counts)


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


def sse(X, C) -> float:
    """SSE of X against C by one evaluator: the first fused kernel or cuBLAS fp32 and an argmin
    (the paths measured on the H200 before the variants), distances summed in float64."""
    import cupy as cp

    return kernels(assign_rows=1).assign(X, C, cp.empty(X.shape[0], np.int32), None, None)


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


# ------------------------------------------------------------------------- sweeps
def assign_sweep(run: Run, row: dict, X, C) -> None:
    """Every assignment variant that applies to this shape: ms under row['assign']."""
    from kmeans_stream.backends._cupy_launch import make_plan

    plan = make_plan(np.dtype(np.float32), C.shape[0], X.shape[1], "fp32")
    out = row.setdefault("assign", {})
    if plan.fused:
        variants = {name: ("fp32", tuning) for name, tuning in FUSED_VARIANTS.items()
                    if tuning["assign_rows"] == 1 or tuning["assign_rows"] in plan.rows}
    else:
        variants = GEMM_VARIANTS
    for name, (precision, tuning) in variants.items():
        kern = kernels(precision, **tuning)
        out[name] = _ms(run.stage(f"ours assign {name}", ours_assign, kern, X, C))
        if kern._dev.mma_failed:  # it fell back to cuBLAS: not the variant's figure
            run.notes.append(f"ours assign {name}: assign_mma failed, cuBLAS measured instead")
            out[name] = None


def stream_sweep(run: Run, row: dict, X, k: int, with_v2: bool) -> None:
    """Streaming passes at batch 5000 and 100000 where a persistent kernel takes the shape:
    every variant, and the probes of the default v2 (no v2 variant where `with_v2` is False:
    the smoke check found it failing)."""
    from kmeans_stream.backends._cupy_launch import make_plan

    n, d = X.shape
    for batch in (BATCH, 100_000):
        K = min(10 * k, batch, n)
        if not make_plan(np.dtype(np.float32), K, d, "fp32").persistent:
            continue
        variants = STREAM_VARIANTS
        found = row.setdefault("stream", {}).setdefault(str(batch), {"K": K, "ms": {}})
        for name, tuning in variants.items():
            if (name == "per batch" and batch != BATCH) or (name[:2] == "v2" and not with_v2):
                continue
            found["ms"][name] = _ms(run.stage(f"ours stream b={batch} K={K} {name}",
                                              ours_stream, kernels(**tuning), X, K, batch, 3))
        if with_v2:
            probes = found.setdefault("probes", {})
            for name, flags in PROBES.items():
                probes[name] = _ms(run.stage(f"ours stream b={batch} probe {name}", ours_stream,
                                             kernels(stream_probe=flags), X, K, batch, 3))


def host_device_sweep(run: Run, row: dict, X, k: int, state) -> None:
    """The fit's seeding and Lloyd at this shape's sizes on the host (numba; numpy where
    small) and on the device: ms under row['host_device']."""
    import cupy as cp

    from kmeans_stream.backends._cupy_host import host_kernels
    from kmeans_stream.backends.base import PLAIN_PROPOSALS
    from kmeans_stream.backends.numpy import NumpyKernels

    out = row.setdefault("host_device", {})
    rng = np.random.default_rng(1)
    first = X[:BATCH].get()
    d, K = first.shape[1], n_centers(first, k)
    sides = {"numba": kernels(host_plain_max=math.inf, host_seed_max=math.inf,
                              host_lloyd_max=math.inf),
             "numpy": NumpyKernels(),
             "device": kernels(host_plain_max=-1, host_seed_max=-1, host_lloyd_max=-1)}
    if host_kernels("numba").name != "numba":
        del sides["numba"]
    uniforms = rng.random((K, 2 * PLAIN_PROPOSALS))
    plain = out.setdefault("kmeanspp_plain", {"size": [BATCH, d, K], "work": BATCH * d})
    for side, kern in sides.items():
        if side == "numpy" and K > 400:
            continue
        plain[side] = _ms(run.stage(
            f"kmeanspp_plain {BATCH}x{d} K={K} on {side}", _time_once,
            lambda kern=kern: kern.kmeanspp_plain(first, None, uniforms, np.empty(K, np.intp))))
    if state is not None:
        centers, counts = state
        live = counts > 0
        points = cp.ascontiguousarray(centers[live].astype(np.float64)).get()
        weights = cp.ascontiguousarray(counts[live]).get()
    else:  # the fit failed: the first batch's rows, unit weights
        points, weights = first[:K].astype(np.float64), np.ones(K)
    n_points = len(points)
    cand = rng.random((k, 2 + int(math.log(k))))
    seed = out.setdefault("kmeanspp", {"size": [n_points, d, k], "work": n_points * d * k})
    lloyd = out.setdefault("lloyd", {"size": [n_points, d, k], "work": n_points * d * k})
    picked = np.empty(k, np.intp)
    for side, kern in sides.items():
        if side == "numpy" and n_points * d * k > 5e7:
            continue
        seed[side] = _ms(run.stage(
            f"kmeanspp {n_points}x{d} k={k} on {side}", _time_once,
            lambda kern=kern: kern.kmeanspp(points, weights, cand, picked)))
        start = points[picked].copy()
        result = run.stage(f"lloyd {n_points}x{d} k={k} on {side}", _lloyd_once, kern, points,
                           weights, start)
        if result is not None:
            lloyd[side], lloyd[f"{side}_iterations"] = result


def _time_once(fn) -> float:
    """Wall time of fn() after one warm-up call (compiles, loads, allocations)."""
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def _lloyd_once(kern, points, weights, start) -> tuple[float, int]:
    ws = kern.workspace(np.float64, len(start), points.shape[1], len(points))
    kern.lloyd(points, weights, start.copy(), 2, 1e-4, ws)  # warm
    centers = start.copy()
    sync()
    t0 = time.perf_counter()
    _, n_iter = kern.lloyd(points, weights, centers, 300, 1e-4, ws)
    sync()
    return (time.perf_counter() - t0) * 1e3, n_iter


# ------------------------------------------------------------------------- one shape
def bench_shape(run: Run, shape: tuple, ceil: dict, args) -> dict:
    import cupy as cp

    n, d, k = shape
    row = {"shape": f"{n / 10**6:g}M x {d}, k={k}", "n": n, "d": d, "k": k}
    data = run.stage(f"{row['shape']}: data", make_data, n, d, k)
    if data is None:
        return row
    X, C = data
    roof = (X.nbytes + 4 * n) / ceil["copy_bw"] if ceil else math.nan
    row["roof_ms"] = roof * 1e3
    base = kernels(**args.tuning)
    row["ours_assign_ms"] = _ms(run.stage("ours assign (defaults)", ours_assign, base, X, C))
    if d * k > 4096:
        row["ours_assign_tf32_ms"] = _ms(run.stage("ours assign tf32 (defaults)", ours_assign,
                                                   kernels("tf32", **args.tuning), X, C))
    assign_sweep(run, row, X, C)
    row["flash_assign_ms"] = _ms(run.stage("flash-kmeans assign", flash_assign, X, C))
    row["flash_iter_ms"] = _ms(run.stage("flash-kmeans Lloyd iteration", flash_lloyd_iteration,
                                         X, C))
    for batch in (BATCH, 100_000):
        K = min(10 * k, batch, n)
        row[f"K_{batch}"] = K
        row[f"stream_{batch}_ms"] = _ms(run.stage(f"ours stream pass batch={batch} K={K}",
                                                  ours_stream, base, X, K, batch, 3))
    if args.sweep:
        stream_sweep(run, row, X, k, args.stream_kernel == "v2")
    state = _end_to_end(run, row, base, X, k)
    if args.sweep:
        host_device_sweep(run, row, X, k, state)
    if 10 * k <= 256 and ceil:
        Xh = run.stage("pinned host copy", pinned_rows, X)
        if Xh is not None:
            host = run.stage("ours from pinned host", from_host, base, Xh, 10 * k, BATCH)
            if host:
                row["host_stream_frac"] = host["stream_bw"] / ceil["pinned_bw"]
                row["host_assign_frac"] = host["assign_bw"] / ceil["pinned_bw"]
            del Xh
    del X, C, state
    cp.get_default_memory_pool().free_all_blocks()
    _free_torch()
    return row


def _end_to_end(run: Run, row: dict, kern, X, k: int):
    ours = run.stage("ours end-to-end fit", ours_fit, kern, X, k)
    flash = run.stage("flash-kmeans fit (defaults)", flash_fit, X, k)
    state = None
    if ours:
        row["ours_fit_s"], row["ours_steps"], state = ours[0], ours[2], ours[3]
        row["ours_sse"] = run.stage("SSE of ours", sse, X, ours[1])
    if flash:
        row["flash_fit_s"] = flash[0]
        row["flash_sse"] = run.stage("SSE of flash-kmeans", sse, X, flash[1])
    return state


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


def _fastest(times: dict) -> tuple[str, float] | None:
    found = [(v, name) for name, v in times.items() if isinstance(v, (int, float)) and v]
    return (min(found)[1], min(found)[0]) if found else None


def table(rows: list[dict]) -> list[str]:
    """The markdown table: one line per shape, ours with the defaults (and the fastest
    assignment variant measured)."""
    head = ("| shape | assign ms (ours / best variant / flash) | % roofline (best) "
            "| vs flash assign | 1 it ms flash | pass ms b=5000 (K) / b=1e5 (K) "
            "| pass / flash it | fit s (ours / flash) | speed-up | SSE ratio |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        best = _fastest({**r.get("assign", {}), "defaults": r.get("ours_assign_ms"),
                         "tf32 defaults": r.get("ours_assign_tf32_ms")})
        best_ms = best[1] if best else None
        lines.append(
            f"| {r['shape']} | {_f(r.get('ours_assign_ms'))} / {_f(best_ms)}"
            f"{f' ({best[0]})' if best else ''} / {_f(r.get('flash_assign_ms'))}"
            f" | {_f(_ratio(r.get('roof_ms'), best_ms), '{:.0%}')}"
            f" | {_f(_ratio(r.get('flash_assign_ms'), best_ms), '{:.2f}x')}"
            f" | {_f(r.get('flash_iter_ms'))}"
            f" | {_f(r.get('stream_5000_ms'))} ({r.get('K_5000', '—')}) / "
            f"{_f(r.get('stream_100000_ms'))} ({r.get('K_100000', '—')})"
            f" | {_f(_ratio(r.get('stream_5000_ms'), r.get('flash_iter_ms')), '{:.2f}x')} / "
            f"{_f(_ratio(r.get('stream_100000_ms'), r.get('flash_iter_ms')), '{:.2f}x')}"
            f" | {_f(r.get('ours_fit_s'))} / {_f(r.get('flash_fit_s'))}"
            f" | {_f(_ratio(r.get('flash_fit_s'), r.get('ours_fit_s')), '{:.2f}x')}"
            f" | {_f(_ratio(r.get('ours_sse'), r.get('flash_sse')), '{:.4f}')} |")
    return lines


def details(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if "ours_steps" in r:
            steps = ", ".join(f"{k} {v:.3f} s" for k, v in r["ours_steps"].items())
            out.append(f"- {r['shape']}: ours fit by step: {steps}")
        if r.get("stream_5000_ms"):
            per = r["stream_5000_ms"] * 1e3 / math.ceil(r["n"] / BATCH)
            out.append(f"- {r['shape']}: {per:.2f} us per {BATCH}-row batch (defaults)")
        if "host_stream_frac" in r:
            out.append(f"- {r['shape']}: from pinned host memory: streaming pass "
                       f"{r['host_stream_frac']:.0%}, assignment {r['host_assign_frac']:.0%} "
                       f"of the pinned host->device bandwidth")
    return out


def sweep_tables(rows: list[dict]) -> list[str]:
    """The sweeps: assignment and streaming variants, probes, host against device."""
    md = ["", "### Assignment variants (ms; % of the memory roofline)", "",
          "| shape | variant | ms | % roofline | vs flash |", "|---|---|---|---|---|"]
    for r in rows:
        for name, ms in r.get("assign", {}).items():
            md.append(f"| {r['shape']} | {name} | {_f(ms)} | "
                      f"{_f(_ratio(r.get('roof_ms'), ms), '{:.0%}')} | "
                      f"{_f(_ratio(r.get('flash_assign_ms'), ms), '{:.2f}x')} |")
    md += [""] + [f"- fastest assignment, {r['shape']}: {b[0]} ({b[1]:.3g} ms)"
                  for r in rows if (b := _fastest(r.get("assign", {})))]
    md += ["", "### Streaming pass variants (pass ms; us per batch)", "",
           "| shape | batch (K) | variant | pass ms | us / batch | / flash it |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        for batch, found in r.get("stream", {}).items():
            n_batches = math.ceil(r["n"] / int(batch))
            for name, ms in found["ms"].items():
                md.append(f"| {r['shape']} | {batch} ({found['K']}) | {name} | {_f(ms)} | "
                          f"{_f(None if ms is None else ms * 1e3 / n_batches)} | "
                          f"{_f(_ratio(ms, r.get('flash_iter_ms')), '{:.2f}x')} |")
    md.append("")
    for r in rows:
        for batch, found in r.get("stream", {}).items():
            best = _fastest({k: v for k, v in found["ms"].items() if k != "per batch"})
            if best:
                md.append(f"- fastest stream, {r['shape']}, batch {batch}: {best[0]} "
                          f"({best[1]:.3g} ms)")
            md += probe_lines(r, batch, found)
    md += ["", "### Seeding and Lloyd of the fit: host against device (ms)", "",
           "| shape | step | rows x features -> centers | work | numba | numpy | device "
           "| fastest |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for step, found in r.get("host_device", {}).items():
            times = {s: found.get(s) for s in ("numba", "numpy", "device")}
            best = _fastest(times)
            its = [f"{s} {found[f'{s}_iterations']}" for s in ("numba", "numpy", "device")
                   if f"{s}_iterations" in found]
            label = f"{step} ({', '.join(its)} it)" if its else step
            n_rows, d, c = found["size"]
            md.append(f"| {r['shape']} | {label} | {n_rows} x {d} -> {c} | {found['work']:.3g} | "
                      f"{_f(times['numba'])} | {_f(times['numpy'])} | {_f(times['device'])} "
                      f"| {best[0] if best else '—'} |")
    md += [""] + thresholds(rows)
    return md


def probe_lines(r: dict, batch: str, found: dict) -> list[str]:
    """What a batch of the default v2 costs, from the probes (us per batch): the probes run
    with the defaults, DEFAULT_V2."""
    probes, full = found.get("probes", {}), found["ms"].get(DEFAULT_V2)
    if not probes or full is None or None in probes.values():
        return []
    per = 1e3 / math.ceil(r["n"] / int(batch))
    barrier = probes["barrier only"] * per
    update = (probes["no assignment"] - probes["barrier only"]) * per
    assign = (probes["no update"] - probes["barrier only"]) * per
    return [f"- probes, {r['shape']}, batch {batch}, {DEFAULT_V2} ({full * per:.2f} us a batch): "
            f"barrier and zeroing {barrier:.2f} us, update {update:.2f} us, assignment and "
            f"atomics {assign:.2f} us"]


def thresholds(rows: list[dict]) -> list[str]:
    """Tuning thresholds the host/device figures suggest: the host up to the largest work it
    won at, the device from the smallest work it won at."""
    out = []
    for step, field in (("kmeanspp_plain", "host_plain_max"), ("kmeanspp", "host_seed_max"),
                        ("lloyd", "host_lloyd_max")):
        host_wins, device_wins = [], []
        for r in rows:
            found = r.get("host_device", {}).get(step)
            if not found or found.get("numba") is None or found.get("device") is None:
                continue
            (host_wins if found["numba"] <= found["device"] else device_wins).append(
                found["work"])
        if host_wins or device_wins:
            out.append(f"- {field}: numba won up to work {_f(max(host_wins, default=None))}, "
                       f"the device from {_f(min(device_wins, default=None))}")
    return out


def report(rows: list[dict], ceil: dict, cold, run: Run, elapsed: float) -> str:
    """The markdown section: the machine's ceilings, the tables, the details, what failed."""
    cold = cold or {}
    md = [f"## GPU: {ceil.get('device', '?')}, {time.strftime('%Y-%m-%d')}",
          "", f"Command: `python3 benchmarks/gpu.py` ({elapsed:.0f} s). "
          f"Device copy {_f(ceil.get('copy_bw', 0) / 1e9, '{:.0f}')} GB/s (read + write), "
          f"pinned host->device {_f(ceil.get('pinned_bw', 0) / 1e9, '{:.1f}')} GB/s; "
          f"cold start: CUDA modules {_f(cold.get('cuda_s'), '{:.1f}')} s, host kernels "
          f"({cold.get('host', '?')}) {_f(cold.get('host_s'), '{:.1f}')} s. float32, data on "
          "the device; times are medians of synchronised wall times; ours with the default "
          "Tuning.", "", *table(rows), "", *details(rows), *sweep_tables(rows)]
    if run.notes:
        md += ["", "Stages that did not complete:", *[f"- {n}" for n in run.notes]]
    return "\n".join(md) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--shapes", default="0,1,2,3")
    parser.add_argument("--budget", type=float, default=200.0, help="seconds for all stages")
    parser.add_argument("--scale", type=int, default=1, help="divide every n by this (smoke runs)")
    parser.add_argument("--stream-kernel", default="v2", choices=("v2", "v1", "per_batch"),
                        help="the streaming path of the defaults (v1 or per_batch if v2 fails)")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false",
                        help="the defaults only: no variants, no host/device comparison")
    args = parser.parse_args()
    args.tuning = {} if args.stream_kernel == "v2" else {"stream_kernel": args.stream_kernel}
    run = Run(args.budget)
    from kmeans_stream.backends.cupy import gpu_available

    reason = gpu_available()
    if reason:
        print(f"no GPU: {reason}")
        return 1
    t0 = time.perf_counter()
    ceil = run.stage("ceilings", ceilings) or {}
    cold = run.stage("cold start (CUDA modules, host kernels)", cold_start)
    rows = []
    for i in (int(s) for s in args.shapes.split(",")):
        run.shape_deadline = time.perf_counter() + SHAPE_SECONDS
        n, d, k = SHAPES[i]
        rows.append(bench_shape(run, (n // args.scale, d, k), ceil, args))
        run.shape_deadline = math.inf
        text = report(rows, ceil, cold, run, time.perf_counter() - t0)
        if args.out:  # after every shape, so a run stopped by a time limit still leaves results
            args.out.write_text(text)
        if args.json:
            args.json.write_text(json.dumps({"ceilings": ceil, "cold": cold, "rows": rows,
                                             "notes": run.notes}, indent=1, default=str))
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
