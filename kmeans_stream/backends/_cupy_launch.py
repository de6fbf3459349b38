"""The device side of the cupy backend: which kernel of `kmeans_stream.backends._cupy_kernels`
runs a call, with what grid, and the launches themselves.

`Tuning` holds the choices only measurement settles (rows per lane, grids, tile sizes, where
small seeding and Lloyd problems run); `benchmarks/gpu.py` times the alternatives side by side.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _cupy_kernels as _ck
from ._cupy_host import Workspace, aligned, arg, cupy, label_ctype

# Most K * D (padded width) for the fused assignment; above it the matrix product is faster
# (TF32 tensor cores lower the crossover).
FUSED_MAX_WORK = {"fp32": 12288, "tf32": 4096}
# Most K * (d + 1) for the persistent streaming kernels: every block re-reads the K (d + 1)
# sums of each batch, which beyond this costs more than the per-batch launches it saves.
PERSISTENT_MAX_KD = 8192


@dataclass(frozen=True)
class Tuning:
    """Choices of the cupy backend that only measurement settles.

    Attributes
    ----------
    assign_rows : int
        Rows per lane of the fused assignment (1, 2 or 4), where compiled for the width
        (`_cupy_kernels.ASSIGN_ROWS`); 1, or a call with too few rows to fill the device, takes
        `assign_fused`.
    wide_distances : bool
        float32 data: the nearest center's differences taken in float64 too (else in float32,
        squares summed in float64 either way).
    tile_bytes : int
        Bytes of one tile of matrix-product scores (the large-K assignment).
    assign_mma, mma_m_tiles
        precision "tf32", float32 data, d <= 128: the large-K assignment by `assign_mma`
        (TF32 tensor cores, argmin fused, no score matrix) instead of cuBLAS and an argmin;
        with 16-row tiles a warp (1 or 2, where compiled for the width).
    stream_kernel : {"v2", "v1", "per_batch"}
        The streaming pass: the second persistent kernel, the first one, or per-batch launches.
    stream_threads, stream_blocks_per_sm, stream_sm_share
        The persistent grid: threads a block, blocks a multiprocessor (at most what fits), and
        the share of the multiprocessors used.
    stream_prefetch, stream_backoff, stream_block_sums : bool
        v2: load each lane's next row before working on the current one; sleep between polls
        of the device-wide barrier; add a block's rows in shared memory first (one global
        atomic per center and feature a block touched, not one per row), where it fits.
    stream_probe : int
        v2 timing probes (2: no assignment, 4: no update; benchmarks only, the centers come
        out wrong).
    chunk_bytes : int
        Bytes of one chunk of host rows in flight to the device (two are).
    host : {"numba", "numpy"}
        The host kernels of small seeding and Lloyd problems (numpy where numba is missing).
    host_plain_max, host_seed_max, host_lloyd_max : float
        Largest problems run on the host with numba: rows x features for kmeanspp_plain, rows
        x features x centers for kmeanspp and lloyd. With numpy, at most `NUMPY_HOST_MAX`.

    The defaults are the device paths that passed every test on an H200 (2026-11-30:
    `assign_fused`, the first persistent streaming kernel, 32 MB score tiles); the variants
    written after that run (``assign_rows`` 2 and 4, ``stream_kernel="v2"`` and its options,
    larger tiles, ``assign_mma``) are opt-in until `benchmarks/gpu_check.sh` has tested and
    timed them on a GPU. Small seeding and Lloyd problems run on the host with numba (CPU
    kernels tested equal to the numpy reference).
    """

    assign_rows: int = 1
    wide_distances: bool = False
    tile_bytes: int = 32 << 20
    assign_mma: bool = False
    mma_m_tiles: int = 2
    stream_kernel: str = "v1"
    stream_threads: int = 512
    stream_blocks_per_sm: int = 1
    stream_sm_share: float = 1.0
    stream_prefetch: bool = True
    stream_backoff: bool = False
    stream_block_sums: bool = False
    stream_probe: int = 0
    chunk_bytes: int = 64 << 20
    host: str = "numba"
    host_plain_max: float = math.inf
    host_seed_max: float = 1e9
    host_lloyd_max: float = 5e7


# The numpy reference on the host beats launching device work only below these (units as the
# Tuning thresholds').
NUMPY_HOST_MAX = {"plain": 2e4, "seed": 2e5, "lloyd": 2e6}


@dataclass(frozen=True)
class Plan:
    """How calls with K centers of d features of one dtype run."""

    dtype: np.dtype
    n_centers: int
    n_features: int
    width: int  # padded width D of the fused kernels, 0 for the matrix-product path
    rows: tuple[int, ...]  # rows per lane `assign_rows` takes at this width and K
    persistent: bool  # whether the persistent streaming kernels take this shape

    @property
    def fused(self) -> bool:
        return self.width > 0


def make_plan(dtype: np.dtype, K: int, d: int, precision: str) -> Plan:
    precision = precision if dtype == np.float32 else "fp32"
    width = next((w for w in _ck.FUSED_WIDTHS[dtype] if w >= d), 0)
    if width and K * width > FUSED_MAX_WORK[precision]:
        width = 0
    plan = Plan(dtype, K, d, width, (), False)
    if width and fused_smem(plan, 2) > _ck.SHARED_BYTES:
        return Plan(dtype, K, d, 0, (), False)
    rows = tuple(r for r in _ck.ASSIGN_ROWS[dtype].get(width, ())
                 if rows_smem(dtype, K, width) <= _ck.SHARED_BYTES)
    persistent = (width > 0 and K * (d + 1) <= PERSISTENT_MAX_KD
                  and persistent_smem(plan, 2) <= _ck.SHARED_BYTES)
    return Plan(dtype, K, d, width, rows, persistent)


def rows_smem(dtype: np.dtype, K: int, width: int) -> int:
    """Shared memory of `assign_rows`: K rows of width + 16 bytes, and K half norms."""
    return K * (width + 16 // dtype.itemsize + 1) * dtype.itemsize


def fused_smem(plan: Plan, G: int) -> int:
    stride = plan.width if G == 1 else plan.width | 1
    return plan.n_centers * (stride + 1) * plan.dtype.itemsize


def persistent_smem(plan: Plan, G: int) -> int:
    return (3 * plan.n_centers * 8 + 15) // 16 * 16 + fused_smem(plan, G)


def v2_smem(plan: Plan, G: int, block_sums: bool) -> int:
    """Shared memory of `stream_persistent_v2`: the first kernel's, then the block's sums."""
    base = persistent_smem(plan, G)
    if not block_sums:
        return base
    K, d = plan.n_centers, plan.n_features
    return (base + 15) // 16 * 16 + K * 8 + K * d * plan.dtype.itemsize


def v2_form(plan: Plan, prefetch: bool, threads: int, per_sm: int) -> tuple:
    """The compiled form (prefetch, launch bounds) of `stream_persistent_v2` that suits a grid
    of `threads` a block and `per_sm` blocks a multiprocessor: the one wanted, else without
    prefetching, else with the bounds 512 x 1 (always compiled, up to 128 registers)."""
    bounds = (1024, 1) if threads > 512 else (512, 2 if per_sm >= 2 else 1)
    forms = _ck.v2_forms(plan.dtype, plan.width)
    for form in ((prefetch, bounds), (False, bounds), (prefetch, (512, 1))):
        if form in forms:
            return form
    return False, (512, 1)


def group_size(rows: int, K: int, capacity: int) -> int:
    """Lanes per row: 1 when the rows fill the device, more (up to a warp) for few rows, so a
    small batch still has enough threads (at most K: each lane needs a center)."""
    G = 1
    while G < 32 and rows * G * 2 <= capacity and G * 2 <= K:
        G *= 2
    return G


class Launcher:
    """The device paths of one `CupyKernels`: its multiprocessor count, precision, tuning, and
    what it learnt (resident blocks per kernel, kernels that failed to launch)."""

    def __init__(self, precision: str, tuning: Tuning) -> None:
        self.precision = precision
        self.tuning = tuning
        self.sm_count = cupy().cuda.Device().attributes["MultiProcessorCount"]
        self._resident: dict[tuple[int, int, int], int] = {}
        self.mma_failed = False  # assign_mma could not be compiled or launched here

    def plan(self, ws: Workspace, K: int) -> Plan:
        plan = ws.plans.get(K)
        if plan is None:
            plan = ws.plans[K] = make_plan(ws.dtype, K, ws.n_features, self.precision)
        return plan

    def resident_blocks(self, kern: Any, threads: int, smem: int) -> int:
        """Blocks of `kern` the whole device holds at once (a grid-stride grid's size)."""
        return max(1, self.per_sm(kern, threads, smem)) * self.sm_count

    def per_sm(self, kern: Any, threads: int, smem: int) -> int:
        key = (kern.kernel.ptr, threads, smem)
        blocks = self._resident.get(key)
        if blocks is None:
            from cupy_backends.cuda.api import driver

            blocks = self._resident[key] = driver.occupancyMaxActiveBlocksPerMultiprocessor(
                key[0], threads, smem)
        return blocks

    # ------------------------------------------------------------ assignment
    def assign(self, X: Any, order: Any, weights: Any, C: Any, labels: Any, sq: Any,
               ws: Workspace, total: Any) -> None:
        """Enqueue the assignment of rows p < len(labels) (X[order[p]] or X[p]): OUT labels,
        sq (or None); INOUT total += sum of weight x squared distance."""
        plan = self.plan(ws, len(C))
        if not plan.fused:
            self._assign_gemm(X, order, weights, C, labels, sq, ws, total)
            return
        n, R = len(labels), self.tuning.assign_rows
        G = group_size(n, plan.n_centers, self.sm_count * 2048)
        if G == 1 and R in plan.rows:
            self._assign_rows(X, order, weights, C, labels, sq, plan, R, total)
        else:
            self._assign_fused(X, order, weights, C, labels, sq, plan, G, total)

    def _assign_fused(self, X: Any, order: Any, weights: Any, C: Any, labels: Any, sq: Any,
                      plan: Plan, G: int, total: Any) -> None:
        n, K, d = len(labels), plan.n_centers, plan.n_features
        threads = _ck.FUSED_THREADS
        name = f"assign_fused<{_ck.ctype(plan.dtype)}, {label_ctype(labels)}, {plan.width}>"
        kern = _ck.kernel("fused", name, plan.dtype)
        smem = fused_smem(plan, G)
        blocks = max(1, min(-(-n * G // threads), self.resident_blocks(kern, threads, smem)))
        kern((blocks,), (threads,),
             (X, arg(order), arg(weights), np.int64(n), np.int32(d), np.int32(aligned(X)), C,
              np.int32(K), np.int32(G), labels, arg(sq), total),
             shared_mem=smem)

    def _assign_rows(self, X: Any, order: Any, weights: Any, C: Any, labels: Any, sq: Any,
                     plan: Plan, R: int, total: Any) -> None:
        n, K, d = len(labels), plan.n_centers, plan.n_features
        threads = _ck.FUSED_THREADS
        kern = _ck.kernel("fused", _ck.rows_name(plan.dtype, label_ctype(labels), plan.width, R),
                          plan.dtype)
        smem = rows_smem(plan.dtype, K, plan.width)
        blocks = max(1, min(-(-n // (threads * R)), self.resident_blocks(kern, threads, smem)))
        kern((blocks,), (threads,),
             (X, arg(order), arg(weights), np.int64(n), np.int32(d), np.int32(aligned(X)), C,
              np.int32(K), np.int32(self.tuning.wide_distances), labels, arg(sq), total),
             shared_mem=smem)

    def _assign_gemm(self, X: Any, order: Any, weights: Any, C: Any, labels: Any, sq: Any,
                     ws: Workspace, total: Any) -> None:
        cp = cupy()
        n, (K, d), t = len(labels), C.shape, _ck.ctype(C.dtype)
        hn = ws.buffer("half_norms", (K,), C.dtype)
        _ck.kernel("generic", f"half_sq_norms<{t}>", C.dtype)(
            (max(1, min(-(-K // 256), 1024)),), (256,), (C, np.int32(K), np.int32(d), hn))
        mma = self._mma_kernel(C, labels)
        if mma is not None:
            tile = n if order is None else max(256, self.tuning.tile_bytes // (d * 4))
        else:
            argmin = _ck.kernel("generic", f"argmin_scores<{t}, {label_ctype(labels)}>",
                                C.dtype)
            tile = max(256, min(n, self.tuning.tile_bytes // (K * C.dtype.itemsize)))
            scores = ws.buffer("scores", (tile, K), C.dtype)
        for p0 in range(0, n, tile):
            p1 = min(n, p0 + tile)
            if order is None:
                rows, w = X[p0:p1], None if weights is None else weights[p0:p1]
            else:
                rows = ws.buffer("gathered", (p1 - p0, d), C.dtype)
                cp.take(X, order[p0:p1], axis=0, out=rows)
                w = None if weights is None else cp.take(weights, order[p0:p1])
            out = (labels[p0:p1], arg(None if sq is None else sq[p0:p1]), total)
            if mma is not None:
                kern, rows_per_block = mma
                blocks = min(-(-(p1 - p0) // rows_per_block),
                             self.resident_blocks(kern, 128, 0))
                kern((max(1, blocks),), (128,),
                     (rows, arg(w), np.int64(p1 - p0), np.int32(d), C, hn, np.int32(K), *out))
                continue
            S = scores[:p1 - p0]
            self.gemm_scores(rows, C, S)
            argmin((max(1, min(-(-(p1 - p0) // 8), self.sm_count * 16)),), (256,),
                   (S, hn, np.int32(K), np.int64(p1 - p0), rows, arg(w), np.int32(d), C, *out))

    def _mma_kernel(self, C: Any, labels: Any) -> tuple[Any, int] | None:
        """`assign_mma` for these centers and its rows a block, where the Tuning asks for it
        and it applies (TF32, float32, d <= 128); None for cuBLAS and an argmin."""
        tune, d = self.tuning, C.shape[1]
        if (not tune.assign_mma or self.mma_failed or self.precision != "tf32"
                or C.dtype != np.float32 or d > 128):
            return None
        k_steps = next(ks for ks in sorted(_ck.MMA_FORMS) if 8 * ks >= d)
        m_tiles = tune.mma_m_tiles if tune.mma_m_tiles in _ck.MMA_FORMS[k_steps] else 1
        try:
            kern = _ck.kernel("mma", _ck.mma_name(label_ctype(labels), k_steps, m_tiles),
                              np.float32)
            kern.kernel  # noqa: B018 (compiles the module here, inside the try)
        except Exception as exc:  # a compiler or driver that cannot build it: cuBLAS instead
            warnings.warn(f"backend='cupy': the TF32 fused assignment could not be built "
                          f"({type(exc).__name__}: {exc}); using cuBLAS instead.",
                          RuntimeWarning, stacklevel=5)
            self.mma_failed = True
            return None
        return kern, 4 * 16 * m_tiles

    def gemm_scores(self, rows: Any, C: Any, out: Any) -> None:
        """OUT out (m, K) = rows (m, d) @ C.T with cuBLAS; TF32 tensor cores for float32 under
        precision='tf32'. Row-major out is the column-major (K, m) product C @ rows.T."""
        cp = cupy()
        from cupy_backends.cuda.libs import cublas

        m, d = rows.shape
        K = C.shape[0]
        if C.dtype == np.float32:
            data_type = cp.cuda.runtime.CUDA_R_32F
            compute = (cublas.CUBLAS_COMPUTE_32F_FAST_TF32 if self.precision == "tf32"
                       else cublas.CUBLAS_COMPUTE_32F)
        else:
            data_type, compute = cp.cuda.runtime.CUDA_R_64F, cublas.CUBLAS_COMPUTE_64F
        one, zero = np.ones(1, dtype=C.dtype), np.zeros(1, dtype=C.dtype)
        handle = cp.cuda.device.get_cublas_handle()
        cublas.setStream(handle, cp.cuda.get_current_stream().ptr)
        mode = cublas.getPointerMode(handle)
        cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
        try:
            cublas.gemmEx(handle, cublas.CUBLAS_OP_T, cublas.CUBLAS_OP_N, K, m, d,
                          one.ctypes.data, C.data.ptr, data_type, d, rows.data.ptr, data_type,
                          d, zero.ctypes.data, out.data.ptr, data_type, K, compute,
                          cublas.CUBLAS_GEMM_DEFAULT)
        finally:
            cublas.setPointerMode(handle, mode)

    # ------------------------------------------------------------ streaming
    def stream(self, X: Any, order: Any, weights: Any, n: int, batch_size: int, decays: Any,
               C: Any, N: Any, ws: Workspace, persistent: bool) -> bool:
        """Stream the rows at positions [0, n) in batches; INOUT C, N on the device. Returns
        False where a persistent kernel failed to launch (this call then streamed per batch,
        and the caller should not try the persistent kernels again)."""
        plan = self.plan(ws, len(C))
        kind = self.tuning.stream_kernel if persistent and plan.persistent else "per_batch"
        if kind == "per_batch":
            self._stream_per_batch(X, order, weights, n, batch_size, decays, C, N, ws)
            return True
        try:
            launch = self._stream_v2 if kind == "v2" else self._stream_v1
            launch(X, order, weights, n, batch_size, decays, C, N, plan, ws)
        except Exception as exc:  # CUDA errors, a failed compile, a grid that does not fit
            warnings.warn(f"backend='cupy': the persistent streaming kernel ({kind}) could not "
                          f"be launched ({type(exc).__name__}: {exc}); streaming per batch "
                          f"instead.", RuntimeWarning, stacklevel=4)
            self._stream_per_batch(X, order, weights, n, batch_size, decays, C, N, ws)
            return False
        return True

    def _stream_v2(self, X: Any, order: Any, weights: Any, n: int, batch_size: int,
                   decays: Any, C: Any, N: Any, plan: Plan, ws: Workspace) -> None:
        tune, (K, d) = self.tuning, C.shape
        prefetch, bounds = v2_form(plan, tune.stream_prefetch, tune.stream_threads,
                                   tune.stream_blocks_per_sm)
        threads = min(tune.stream_threads, bounds[0])
        kern = _ck.kernel("persistent", _ck.v2_name(plan.dtype, plan.width, prefetch, bounds),
                          plan.dtype)
        block_sums = tune.stream_block_sums and v2_smem(plan, 2, True) <= _ck.SHARED_BYTES
        per_sm = min(tune.stream_blocks_per_sm,
                     self.per_sm(kern, threads, v2_smem(plan, 2, block_sums)))
        if per_sm < 1:
            raise RuntimeError("the persistent kernel does not fit on a multiprocessor")
        grid = max(1, round(self.sm_count * tune.stream_sm_share)) * per_sm
        G = group_size(min(batch_size, n), K, grid * threads)
        flags = (1 if tune.stream_backoff else 0) | (8 if block_sums else 0) | tune.stream_probe
        sums = ws.buffer("sums_v2", (3, K * (d + 1)), np.float64)
        barrier = ws.zeroed("barrier", (1,), np.uint64)
        kern((grid,), (threads,),
             (X, arg(order), arg(weights), np.int64(n), np.int32(d), np.int32(aligned(X)),
              np.int64(batch_size), arg(decays), C, N, np.int32(K), np.int32(G),
              np.int32(flags), sums, barrier),
             shared_mem=v2_smem(plan, G, block_sums))

    def _stream_v1(self, X: Any, order: Any, weights: Any, n: int, batch_size: int,
                   decays: Any, C: Any, N: Any, plan: Plan, ws: Workspace) -> None:
        threads, (K, d) = _ck.PERSISTENT_THREADS, C.shape
        kern = _ck.kernel("persistent", f"stream_persistent<{_ck.ctype(plan.dtype)}, "
                          f"{plan.width}>", plan.dtype)
        per_sm = min(2, self.per_sm(kern, threads, persistent_smem(plan, 2)))
        if per_sm < 1:
            raise RuntimeError("the persistent kernel does not fit on a multiprocessor")
        grid = self.sm_count * per_sm
        G = group_size(min(batch_size, n), K, grid * threads)
        sums = ws.buffer("sums3", (3, K, d), np.float64)
        mass = ws.buffer("mass3", (3, K), np.float64)
        barrier = ws.zeroed("barrier", (1,), np.uint64)
        kern((grid,), (threads,),
             (X, arg(order), arg(weights), np.int64(n), np.int32(d), np.int32(aligned(X)),
              np.int64(batch_size), arg(decays), C, N, np.int32(K), np.int32(G), sums, mass,
              barrier),
             shared_mem=persistent_smem(plan, G))

    def _stream_per_batch(self, X: Any, order: Any, weights: Any, n: int, batch_size: int,
                          decays: Any, C: Any, N: Any, ws: Workspace) -> None:
        """The reference path: per batch, assign, add the rows to the sums, update."""
        K, d = C.shape
        update = _ck.kernel("generic", f"update_centers<{_ck.ctype(C.dtype)}>", C.dtype)
        sums = ws.zeroed("sums", (K, d))
        mass = ws.zeroed("mass", (K,))
        scratch = ws.buffer("scratch_total", (1,), np.float64)
        labels = ws.buffer("batch_labels", (min(batch_size, n),), np.int32)
        update_blocks = max(1, min(-(-K // 128), 4 * self.sm_count))
        for b, p0 in enumerate(range(0, n, batch_size)):
            m = min(batch_size, n - p0)
            if order is None:
                rows, o = X[p0:p0 + m], None
                w = None if weights is None else weights[p0:p0 + m]
            else:
                rows, o, w = X, order[p0:p0 + m], weights
            self.assign(rows, o, None, C, labels[:m], None, ws, scratch)
            self.accumulate(rows, o, w, labels, sums, mass, m)
            update((update_blocks,), (128,),
                   (C, N, sums, mass, np.int32(K), np.int32(d), arg(decays), np.int64(b)))

    def accumulate(self, X: Any, order: Any, weights: Any, labels: Any, sums: Any, mass: Any,
                   m: int) -> None:
        """INOUT sums, mass += the (weighted) rows p < m of the given int32 labels."""
        kern = _ck.kernel("generic", f"accumulate_labelled<{_ck.ctype(X.dtype)}>", X.dtype)
        kern((max(1, min(-(-m // 8), self.sm_count * 16)),), (256,),
             (X, arg(order), arg(weights), np.int64(m), np.int32(X.shape[1]), labels, sums,
              mass))

    # ------------------------------------------------------------ Lloyd and seeding
    def lloyd(self, X: Any, w: Any, C: Any, max_iter: int, tol: float,
              ws: Workspace) -> tuple[float, int]:
        """Weighted Lloyd on device arrays; INOUT C. Returns (loss, iterations)."""
        (n, d), K, t = X.shape, len(C), _ck.ctype(X.dtype)
        update = _ck.kernel("generic", f"lloyd_update<{t}>", X.dtype)
        labels = ws.buffer("lloyd_labels", (n,), np.int32)
        sums, mass = ws.zeroed("sums", (K, d)), ws.zeroed("mass", (K,))

        def loss_now() -> float:
            total = ws.zeroed("total", (1,))
            self.assign(X, None, w, C, labels, None, ws, total)
            return float(total.get()[0])

        loss, n_iter = loss_now(), 0
        for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is returned)
            self.accumulate(X, None, w, labels, sums, mass, n)
            update((max(1, min(-(-K // 128), 4 * self.sm_count)),), (128,),
                   (C, sums, mass, np.int32(K), np.int32(d)))
            previous, loss = loss, loss_now()
            if previous - loss <= tol * previous:
                break
        return loss, n_iter

    def kmeanspp(self, X64: Any, w: Any, uniforms: np.ndarray, n_centers: int) -> tuple:
        """Greedy k-means++ on the device (float64 rows), three launches a step and no host
        synchronisation until the end; the draws and the choice follow the numpy reference.
        Returns (picked rows, the potential before each step) as numpy arrays."""
        cp = cupy()
        n, d = X64.shape
        n_cols = uniforms.shape[1]
        kern = {name: _ck.kernel("generic", name, np.float64) for name in
                ("row_sq_norms", "scan_and_draw", "candidate_potentials", "choose_and_update")}
        parts = max(1, min(-(-n // 256), 2 * self.sm_count))
        xn = cp.empty(n)
        kern["row_sq_norms"]((parts,), (256,), (X64, np.int64(n), np.int32(d), xn))
        closest = cp.full(n, np.inf)
        wc = cp.ones(n) if w is None else w.copy()
        cum, totals, picked = cp.empty(n), cp.empty(n_centers), cp.empty(n_centers, np.int64)
        cands, partials = cp.empty(n_cols, np.int64), cp.empty(n_cols * parts)
        u = cp.asarray(uniforms)
        for step in range(n_centers):
            n_cand = np.int32(1 if step == 0 else n_cols)
            kern["scan_and_draw"]((1,), (1024,), (wc, np.int64(n), u, np.int32(step),
                                                  np.int32(n_cols), n_cand, cum, totals, cands))
            if step > 0:
                kern["candidate_potentials"]((parts,), (256,), (
                    X64, xn, arg(w), np.int64(n), np.int32(d), cands, n_cand, closest,
                    partials))
            kern["choose_and_update"]((parts,), (256,), (
                X64, xn, arg(w), np.int64(n), np.int32(d), cands, n_cand, partials,
                np.int32(parts), closest, wc, picked, np.int32(step)))
        return picked.get().astype(np.intp), totals.get()


class DeviceRefresh:
    """The refresh of plain k-means++ on the device: closest = min(closest, distances to the
    pending centers), summed in numpy's pairwise order (bit-equal to the reference)."""

    def __init__(self, X64: np.ndarray) -> None:
        cp = cupy()
        self.X = cp.asarray(X64)
        self.closest = cp.full(len(X64), np.inf)
        self.kernel = _ck.kernel("generic", "plain_refresh", np.float64)
        self.blocks = max(1, min(-(-len(X64) // 128), 1024))

    def __call__(self, pending: list[int]) -> np.ndarray:
        rows = cupy().asarray(np.asarray(pending, dtype=np.int64))
        n, d = self.X.shape
        self.kernel((self.blocks,), (128,), (self.X, np.int64(n), np.int32(d), rows,
                                             np.int32(len(pending)), self.closest))
        return self.closest.get()

