"""GPU kernels: the `kmeans_stream.backends.base.Kernels` contract on an NVIDIA GPU, through CuPy.

Every kernel gives the numpy reference's results (`kmeans_stream.backends.numpy`): the same
labels on rows without near-ties, losses within rounding, and exactly the same seeding indices
from the same uniforms. CuPy is imported only when a method runs, so this module imports
without it; `gpu_available` says why the backend cannot run here.

Paths (the CUDA sources are in `kmeans_stream.backends._cupy_kernels`):

- Assignment. Small d * K: `assign_fused`, centers in shared memory, one or several lanes a row,
  no n x K matrix. Larger: cuBLAS scores of a tile of rows (TF32 tensor cores when
  ``precision="tf32"``) and a warp-per-row argmin. Either way the squared distance of the chosen
  center is then computed exactly, in float64.
- Streaming. The fast path is `stream_persistent`: the whole pass in one cooperative launch, one
  device-wide barrier per mini-batch, no host synchronisation. The reference path, kept for
  shapes the fast one does not take and as its fallback, launches per batch: assign, add the
  rows to per-center float64 sums (atomics), update (`update_centers`).
- Data. CuPy arrays stay on the device. numpy arrays stream through pinned host buffers in
  double-buffered chunks on two streams, so the copy of one chunk overlaps the work on the one
  before; a numpy array in pinned memory is copied from directly. Arrays larger than the device
  work, a chunk at a time.
- Seeding and the final Lloyd run where they are fastest for their size: small inputs on the
  host by the numpy reference itself, larger ones on the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _cupy_kernels as _ck
from .base import PLAIN_PROPOSALS, decay_factor, plain_max_pending

# Most K * D (padded width) for the fused assignment; above it the matrix product is faster
# (TF32 tensor cores lower the crossover).
_FUSED_MAX_WORK = {"fp32": 12288, "tf32": 4096}
# Most K * (d + 1) for the persistent streaming kernel: every block re-reads the K (d + 1) sums
# of each batch, which beyond this costs more than the per-batch launches it saves.
_PERSISTENT_MAX_KD = 8192
# Bytes of one host->device chunk (two in flight) and of one tile of matrix-product scores.
_CHUNK_BYTES = 64 << 20
_TILE_BYTES = 32 << 20
# Below these sizes the numpy reference on the host beats launching device work.
_HOST_LLOYD_MAX_WORK = 2_000_000  # n * k * d
_HOST_SEED_MAX_WORK = 50_000  # n * (d + 10) * candidates, per k-means++ step
_HOST_PLAIN_MAX_WORK = 20_000  # n * d
_NULL = np.uint64(0)  # a null pointer argument


def gpu_available() -> str | None:
    """None when CuPy is installed and a CUDA device is usable, else a one-line reason."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CuPy whose CUDA libraries fail to load
        return f"CuPy is not installed or failed to import ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"no usable CUDA device ({type(exc).__name__}: {exc})"
    return None if count > 0 else "no CUDA device found"


def _cupy() -> Any:
    import cupy

    return cupy


def _is_device(A: Any) -> bool:
    cp = _cupy()
    return isinstance(A, cp.ndarray)


def _arg(A: Any) -> Any:
    """A kernel argument: the array, or a null pointer for None."""
    return _NULL if A is None else A


def _too_few_points(found: int, n_centers: int) -> ValueError:
    return ValueError(
        f"k-means++ found only {found} distinct weighted points for {n_centers} centers"
    )


def _draw(cumulative: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Indices drawn with probability proportional to the increments of `cumulative` (the
    numpy reference's rule)."""
    picks = np.searchsorted(cumulative, uniforms * cumulative[-1], side="right")
    return np.minimum(picks, len(cumulative) - 1)


@dataclass(frozen=True)
class _Plan:
    """How calls with K centers of d features of one dtype run."""

    dtype: np.dtype
    n_centers: int
    n_features: int
    width: int  # padded width D of the fused kernels, 0 for the matrix-product path
    persistent: bool  # whether stream_persistent takes this shape

    @property
    def fused(self) -> bool:
        return self.width > 0


def _fused_smem(plan: _Plan, G: int) -> int:
    stride = plan.width if G == 1 else plan.width | 1
    return plan.n_centers * (stride + 1) * plan.dtype.itemsize


def _persistent_smem(plan: _Plan, G: int) -> int:
    return (3 * plan.n_centers * 8 + 15) // 16 * 16 + _fused_smem(plan, G)


class _Workspace:
    """Device scratch of one fit (or predict call), made once and reused by every call.

    Buffers are made on first use and kept, grown only if a later call needs more; the host
    pipeline (pinned buffers, a copy stream) is made on the first call with host rows.
    """

    def __init__(self, dtype: Any, n_features: int) -> None:
        self.dtype = np.dtype(dtype)
        self.n_features = n_features
        self.plans: dict[int, _Plan] = {}
        self._buffers: dict[str, Any] = {}
        self._pipeline: _Pipeline | None = None

    def buffer(self, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """A device array of `shape` (a view of a buffer kept under `name`)."""
        cp = _cupy()
        size = math.prod(shape)
        have = self._buffers.get(name)
        if have is None or have.size < size or have.dtype != np.dtype(dtype):
            have = cp.empty(max(size, 1), dtype=dtype)
            self._buffers[name] = have
        return have[:size].reshape(shape)

    def zeroed(self, name: str, shape: tuple[int, ...], dtype: Any = np.float64) -> Any:
        out = self.buffer(name, shape, dtype)
        out.fill(0)
        return out

    def pipeline(self) -> _Pipeline:
        if self._pipeline is None:
            self._pipeline = _Pipeline()
        return self._pipeline


class _Pipeline:
    """Host rows to the device in double-buffered chunks on a copy stream: while chunk i is
    worked on (the current stream), chunk i + 1 is staged into pinned memory and copied."""

    def __init__(self) -> None:
        cp = _cupy()
        self.copy_stream = cp.cuda.Stream(non_blocking=True)
        self.uploaded = [cp.cuda.Event(disable_timing=True) for _ in range(2)]
        self.computed = [cp.cuda.Event(disable_timing=True) for _ in range(2)]
        self._pinned: dict[Any, np.ndarray] = {}
        self._device: dict[Any, Any] = {}

    def pinned(self, key: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A host array of `shape` in pinned memory, kept under `key`."""
        cp = _cupy()
        size = math.prod(shape)
        have = self._pinned.get(key)
        if have is None or have.size < size or have.dtype != np.dtype(dtype):
            memory = cp.cuda.alloc_pinned_memory(max(size, 1) * np.dtype(dtype).itemsize)
            have = np.frombuffer(memory, dtype=dtype, count=max(size, 1))
            self._pinned[key] = have
        return have[:size].reshape(shape)

    def device(self, key: Any, shape: tuple[int, ...], dtype: Any) -> Any:
        cp = _cupy()
        size = math.prod(shape)
        have = self._device.get(key)
        if have is None or have.size < size or have.dtype != np.dtype(dtype):
            have = cp.empty(max(size, 1), dtype=dtype)
            self._device[key] = have
        return have[:size].reshape(shape)

    def run(self, X: np.ndarray, order: np.ndarray | None, chunk_rows: int, compute: Any) -> None:
        """Call ``compute(X_chunk_on_device, p0, p1)`` for the visit positions [p0, p1) of each
        chunk (rows ``X[order[p0:p1]]``, or ``X[p0:p1]``), on the current stream. It returns
        pairs (device array, host array) to copy back once the chunk is done."""
        cp = _cupy()
        stream = cp.cuda.get_current_stream()
        n = X.shape[0] if order is None else len(order)
        direct = order is None and cp.cuda.pinned_memory.is_memory_pinned(X.ctypes.data)
        pending: list[list[tuple[np.ndarray, np.ndarray]]] = [[], []]
        for i, p0 in enumerate(range(0, n, chunk_rows)):
            slot, p1 = i % 2, min(n, p0 + chunk_rows)
            self._finish(slot, pending[slot])
            source = X[p0:p1] if direct else self._stage(X, order, p0, p1, chunk_rows, slot)
            rows = self.device(("rows", slot), (chunk_rows, X.shape[1]), X.dtype)[:p1 - p0]
            self.copy_stream.wait_event(self.computed[slot])  # chunk i - 2 is done with it
            rows.data.copy_from_host_async(source.ctypes.data, source.nbytes, self.copy_stream)
            self.uploaded[slot].record(self.copy_stream)
            stream.wait_event(self.uploaded[slot])
            for j, (dev, host) in enumerate(compute(rows, p0, p1)):
                staged = self.pinned(("out", slot, j), dev.shape, dev.dtype)
                dev.get(stream=stream, out=staged, blocking=False)
                pending[slot].append((staged, host))
            self.computed[slot].record(stream)
        for slot in range(2):
            self._finish(slot, pending[slot])

    def _stage(self, X: np.ndarray, order: np.ndarray | None, p0: int, p1: int,
               chunk_rows: int, slot: int) -> np.ndarray:
        self.uploaded[slot].synchronize()  # the copy out of this pinned slot is done
        staged = self.pinned(("rows", slot), (chunk_rows, X.shape[1]), X.dtype)[:p1 - p0]
        if order is None:
            np.copyto(staged, X[p0:p1])
        else:
            np.take(X, order[p0:p1], axis=0, out=staged)
        return staged

    def _finish(self, slot: int, pending: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.computed[slot].synchronize()
        for staged, host in pending:
            np.copyto(host, staged)
        pending.clear()


class CupyKernels:
    """The kernels of `kmeans_stream.backends.base.Kernels` on a CUDA GPU.

    Parameters
    ----------
    precision : {"fp32", "tf32"}
        "tf32" lets the matrix-product path (large K, float32 data) use TF32 tensor cores for
        the scores that rank the centers; distances and sums stay float32/float64 either way.
    persistent : bool
        Whether streaming may use the persistent kernel (False: per-batch launches only, the
        reference path; tests and benchmarks compare the two).
    """

    name = "cupy"
    device = True  # takes data that lives on the GPU

    def __init__(self, precision: str = "fp32", *, persistent: bool = True) -> None:
        if precision not in ("fp32", "tf32"):
            raise ValueError(f"precision must be 'fp32' or 'tf32'; got {precision!r}.")
        reason = gpu_available()
        if reason is not None:
            raise RuntimeError(f"backend='cupy' needs a CUDA GPU and CuPy: {reason}.")
        self.precision = precision
        self.persistent = persistent
        cp = _cupy()
        self._sm_count = cp.cuda.Device().attributes["MultiProcessorCount"]
        self._resident: dict[tuple[int, int, int], int] = {}

    # ---------------------------------------------------------------- arrays and workspace
    def asarray(self, A: Any, dtype: Any = None) -> Any:
        """`A` as a C-contiguous CuPy array (the same object where it already is one)."""
        cp = _cupy()
        return cp.ascontiguousarray(cp.asarray(A, dtype=dtype))

    def to_numpy(self, A: Any) -> np.ndarray:
        """A numpy array holding `A` (the same object for a numpy array)."""
        return _cupy().asnumpy(A) if _is_device(A) else np.asarray(A)

    def empty(self, shape: tuple[int, ...], dtype: Any, like: Any) -> Any:
        """An uninitialised array on the side `like` lives: CuPy for a CuPy `like`."""
        return _cupy().empty(shape, dtype=dtype) if _is_device(like) else np.empty(shape, dtype)

    def workspace(self, dtype: Any, n_centers: int, n_features: int, max_rows: int) -> _Workspace:
        """Device scratch for calls on `dtype` data of `n_features` features (see
        `Kernels.workspace`); its buffers are made on first use and reused."""
        ws = _Workspace(dtype, int(n_features))
        self._plan(ws, int(n_centers))
        return ws

    # ---------------------------------------------------------------- kernels
    def assign(self, X: Any, centers: Any, labels: Any, sq_dist: Any,
               workspace: Any = None) -> float:
        """Nearest center of each row (see `Kernels.assign`).

        X (n_samples, n_features) IN, numpy or CuPy; centers (n_centers, n_features) IN;
        labels (n_samples,) int32 or int64 OUT; sq_dist (n_samples,) float64 OUT or None.
        Returns the sum of the squared distances: not finite iff a row of X is not.
        """
        X = _check_X(X)
        n, d = X.shape
        C = self._centers_in(centers, X.dtype, d)
        _check_out("labels", labels, (n,), (np.int32, np.int64))
        if sq_dist is not None:
            _check_out("sq_dist", sq_dist, (n,), (np.float64,))
        ws = self._workspace_for(workspace, X.dtype, d)
        total = ws.zeroed("total", (1,))
        if n == 0:
            return 0.0
        if _is_device(X):
            self._assign_outputs(X, C, labels, sq_dist, ws, total)
        else:
            self._assign_host(X, C, labels, sq_dist, ws, total)
        return float(total.get()[0])

    def transform(self, X: Any, centers: Any, out: Any) -> None:
        """out (n_samples, n_centers) OUT, X's dtype: Euclidean distance to each center."""
        cp = _cupy()
        X = _check_X(X)
        n, d = X.shape
        C = self._centers_in(centers, X.dtype, d)
        K = len(C)
        _check_out("out", out, (n, K), (X.dtype,))
        kern = _ck.kernel("generic", f"transform_direct<{_ck.ctype(X.dtype)}>", X.dtype)
        step = max(16, _CHUNK_BYTES // ((K + d) * X.dtype.itemsize))
        for p0 in range(0, n, step):
            p1 = min(n, p0 + step)
            rows = X[p0:p1] if _is_device(X) else cp.asarray(X[p0:p1])
            dest = out[p0:p1] if _is_device(out) else cp.empty((p1 - p0, K), dtype=X.dtype)
            kern(((p1 - p0 + 15) // 16, (K + 15) // 16), (16, 16),
                 (rows, np.int64(p1 - p0), np.int32(d), C, np.int32(K), dest))
            if not _is_device(out):
                dest.get(out=out[p0:p1])

    def stream_batches(self, X: Any, weights: Any, order: Any, batch_size: int, centers: Any,
                       counts: Any, half_life: float, workspace: Any = None) -> None:
        """SageMaker's streaming update over X in mini-batches (see `Kernels.stream_batches`).

        X IN (numpy or CuPy); weights (n_samples,) float64 IN or None; order (n_visits,) IN or
        None: the rows to visit, in that order (None: every row in X's order); centers
        (n_centers, n_features) X's dtype INOUT; counts (n_centers,) float64 INOUT (numpy or
        CuPy, updated in place).
        """
        cp = _cupy()
        X = _check_X(X)
        n, d = X.shape
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        _check_centers(centers, X.dtype, d)
        _check_out("counts", counts, (len(centers),), (np.float64,))
        weights = _check_vector("weights", weights, n, np.float64)
        order = _check_order(order, n)
        n_visits = n if order is None else len(order)
        if n_visits == 0:
            return
        ws = self._workspace_for(workspace, X.dtype, d)
        C = centers if _is_device(centers) else cp.asarray(centers)
        N = counts if _is_device(counts) else cp.asarray(counts)
        if _is_device(X):
            w = None if weights is None else cp.asarray(weights)
            o = None if order is None else cp.asarray(order)
            decays = _decays(w, o, n_visits, batch_size, half_life)
            self._stream_rows(X, o, w, n_visits, batch_size, 0, decays, C, N, ws)
        else:
            self._stream_host(X, weights, order, batch_size, half_life, C, N, ws)
        if C is not centers:
            C.get(out=centers)
        if N is not counts:
            N.get(out=counts)

    def lloyd(self, X: Any, weights: Any, centers: Any, max_iter: int, tol: float,
              workspace: Any = None) -> tuple[float, int]:
        """Weighted Lloyd from centers (INOUT) until the weighted loss changes by at most tol
        (relative) or max_iter iterations; an empty cluster keeps its center.

        Small problems run on the host through the numpy reference, larger ones on the device.
        Returns (weighted sum of squared distances to the returned centers, iterations).
        """
        X = _check_X(X)
        n, d = X.shape
        _check_centers(centers, X.dtype, d)
        weights = _check_vector("weights", weights, n, np.float64)
        if n * len(centers) * d <= _HOST_LLOYD_MAX_WORK:
            return self._lloyd_host(X, weights, centers, int(max_iter), float(tol))
        ws = self._workspace_for(workspace, X.dtype, d)
        return self._lloyd_device(X, weights, centers, int(max_iter), float(tol), ws)

    def refine(self, X: Any, weights: Any, centers: Any, labels: Any, max_moves: int,
               tol: float, workspace: Any = None) -> tuple[float, int]:
        """Lloyd on the data, stopping when moving the centers would gain little (see
        `Kernels.refine`): one pass (assign, sums) per move, host rows streamed each pass.

        X IN; weights (n_samples,) float64 IN or None; centers INOUT; labels (n_samples,) int32
        or int64 OUT, those of the returned centers. Returns (weighted loss, moves).
        """
        cp = _cupy()
        X = _check_X(X)
        n, d = X.shape
        _check_centers(centers, X.dtype, d)
        _check_out("labels", labels, (n,), (np.int32, np.int64))
        weights = _check_vector("weights", weights, n, np.float64)
        ws = self._workspace_for(workspace, X.dtype, d)
        C = centers if _is_device(centers) else cp.asarray(centers)
        w = None if weights is None else cp.asarray(weights)
        found = ws.buffer("refine_labels", (n,), np.int32)
        moves = 0
        while True:
            loss, sums, mass = self._refine_pass(X, w, C, found, ws)
            filled = mass > 0
            means = sums[filled] / mass[filled, None]
            gap = (C[filled].astype(np.float64) - means) ** 2
            drop = float((mass[filled] * gap.sum(axis=1)).sum())
            if moves >= max_moves or drop <= tol * loss:
                break
            C[filled] = means.astype(C.dtype)
            moves += 1
        if C is not centers:
            C.get(out=centers)
        if _is_device(labels):
            labels[...] = found
        else:
            labels[...] = found.get()
        return loss, moves

    def _refine_pass(self, X: Any, w: Any, C: Any, found: Any,
                     ws: _Workspace) -> tuple[float, Any, Any]:
        """One pass: OUT found (int32 labels); returns the weighted loss, the float64 sums and
        mass of each cluster."""
        (K, d), t = C.shape, _ck.ctype(C.dtype)
        accumulate = _ck.kernel("generic", f"accumulate_labelled<{t}>", C.dtype)
        sums, mass = ws.zeroed("refine_sums", (K, d)), ws.zeroed("refine_mass", (K,))
        total = ws.zeroed("total", (1,))

        def compute(rows: Any, p0: int, p1: int) -> list:
            wt = None if w is None else w[p0:p1]
            self._assign_rows(rows, None, wt, C, found[p0:p1], None, ws, total)
            accumulate((max(1, min(-(-(p1 - p0) // 8), self._sm_count * 16)),), (256,),
                       (rows, _NULL, _arg(wt), np.int64(p1 - p0), np.int32(d), found[p0:p1],
                        sums, mass))
            return []

        if _is_device(X):
            compute(X, 0, X.shape[0])
        else:
            ws.pipeline().run(X, None, _chunk_rows(X, 1, X.shape[0]), compute)
        return float(total.get()[0]), sums, mass

    def kmeanspp(self, X: Any, weights: Any, uniforms: np.ndarray, indices: np.ndarray) -> None:
        """Greedy weighted k-means++ (see `Kernels.kmeanspp`): indices (n_centers,) OUT, the
        rows the numpy reference picks from the same uniforms (n_centers, n_candidates) IN."""
        X = _check_X(X)
        n_centers = len(indices)
        uniforms = np.asarray(self.to_numpy(uniforms), dtype=np.float64)
        _check_uniforms(uniforms, (n_centers, max(1, uniforms.shape[-1])))
        weights = _check_vector("weights", weights, X.shape[0], np.float64)
        work = X.shape[0] * (X.shape[1] + 10) * uniforms.shape[1]
        if work <= _HOST_SEED_MAX_WORK:
            from .numpy import NumpyKernels

            picked = np.empty(n_centers, dtype=np.intp)
            NumpyKernels().kmeanspp(self.to_numpy(X), _host(weights), uniforms, picked)
        else:
            picked = self._kmeanspp_device(X, weights, uniforms, n_centers)
        _set_indices(indices, picked)

    def kmeanspp_plain(self, X: Any, weights: Any, uniforms: np.ndarray,
                       indices: np.ndarray) -> None:
        """Plain weighted k-means++ drawn lazily (see `Kernels.kmeanspp_plain`): the numpy
        reference's rules on the host, its refreshes (a pass over X per group of centers) on
        the device for larger inputs, with distances summed in numpy's order, so the picks are
        the reference's exactly."""
        X = _check_X(X)
        n_centers = len(indices)
        uniforms = np.asarray(self.to_numpy(uniforms), dtype=np.float64)
        _check_uniforms(uniforms, (n_centers, 2 * PLAIN_PROPOSALS))
        weights = _check_vector("weights", weights, X.shape[0], np.float64)
        X64 = np.ascontiguousarray(self.to_numpy(X), dtype=np.float64)
        w = np.ones(len(X64)) if weights is None else _host(weights)
        picked = np.empty(n_centers, dtype=np.intp)
        if X64.size <= _HOST_PLAIN_MAX_WORK:
            from .numpy import NumpyKernels

            NumpyKernels().kmeanspp_plain(X64, w, uniforms, picked)
        else:
            _plain_lazy(X64, w, uniforms, picked, _DeviceRefresh(X64))
        _set_indices(indices, picked)

    # ---------------------------------------------------------------- plans
    def _plan(self, ws: _Workspace, K: int) -> _Plan:
        plan = ws.plans.get(K)
        if plan is None:
            plan = self._make_plan(ws.dtype, K, ws.n_features)
            ws.plans[K] = plan
        return plan

    def _make_plan(self, dtype: np.dtype, K: int, d: int) -> _Plan:
        precision = self.precision if dtype == np.float32 else "fp32"
        width = next((w for w in _ck.FUSED_WIDTHS[dtype] if w >= d), 0)
        if width and K * width > _FUSED_MAX_WORK[precision]:
            width = 0
        plan = _Plan(dtype, K, d, width, False)
        if width and _fused_smem(plan, 2) > _ck.SHARED_BYTES:
            return _Plan(dtype, K, d, 0, False)
        persistent = (width > 0 and K * (d + 1) <= _PERSISTENT_MAX_KD
                      and _persistent_smem(plan, 2) <= _ck.SHARED_BYTES)
        return _Plan(dtype, K, d, width, persistent)

    def _workspace_for(self, workspace: Any, dtype: np.dtype, d: int) -> _Workspace:
        if workspace is None:
            return _Workspace(dtype, d)
        if not isinstance(workspace, _Workspace):
            raise TypeError(f"workspace must come from CupyKernels.workspace; got "
                            f"{type(workspace).__name__}.")
        if workspace.dtype != dtype or workspace.n_features != d:
            raise ValueError(
                f"the workspace was made for {workspace.dtype} data of {workspace.n_features} "
                f"features; this call has {dtype} data of {d} features."
            )
        return workspace

    def _group_size(self, rows: int, K: int, capacity: int) -> int:
        """Lanes per row: 1 when the rows fill the device, more (up to a warp) for few rows,
        so a small batch still has enough threads (at most K: each lane needs a center)."""
        G = 1
        while G < 32 and rows * G * 2 <= capacity and G * 2 <= K:
            G *= 2
        return G

    def _centers_in(self, centers: Any, dtype: np.dtype, d: int) -> Any:
        cp = _cupy()
        C = cp.ascontiguousarray(cp.asarray(centers, dtype=dtype))
        if C.ndim != 2 or C.shape[1] != d or C.shape[0] < 1:
            raise ValueError(f"centers must have shape (n_centers >= 1, {d}); got "
                             f"{tuple(C.shape)}.")
        return C

    # ---------------------------------------------------------------- assignment
    def _assign_host(self, X: np.ndarray, C: Any, labels: Any, sq_dist: Any, ws: _Workspace,
                     total: Any) -> None:
        cp = _cupy()
        pipe = ws.pipeline()

        def compute(rows: Any, p0: int, p1: int) -> list:
            back = []
            lab = labels[p0:p1] if _is_device(labels) else cp.empty(p1 - p0, labels.dtype)
            if not _is_device(labels):
                back.append((lab, labels[p0:p1]))
            sq = None
            if sq_dist is not None:
                sq = sq_dist[p0:p1] if _is_device(sq_dist) else cp.empty(p1 - p0, np.float64)
                if not _is_device(sq_dist):
                    back.append((sq, sq_dist[p0:p1]))
            self._assign_rows(rows, None, None, C, lab, sq, ws, total)
            return back

        pipe.run(X, None, _chunk_rows(X, 1, X.shape[0]), compute)

    def _assign_outputs(self, X: Any, C: Any, labels: Any, sq_dist: Any, ws: _Workspace,
                        total: Any) -> None:
        """Device rows; outputs on either side (host ones filled through device buffers)."""
        n = X.shape[0]
        lab = labels if _is_device(labels) else ws.buffer("labels_out", (n,), labels.dtype)
        sq = None
        if sq_dist is not None:
            sq = sq_dist if _is_device(sq_dist) else ws.buffer("sq_out", (n,), np.float64)
        self._assign_rows(X, None, None, C, lab, sq, ws, total)
        if lab is not labels:
            lab.get(out=labels)
        if sq is not None and sq is not sq_dist:
            sq.get(out=sq_dist)

    def _assign_rows(self, X: Any, order: Any, weights: Any, C: Any, labels: Any, sq: Any,
                     ws: _Workspace, total: Any) -> None:
        """Enqueue the assignment of rows p < len(labels) (X[order[p]] or X[p]): OUT labels,
        sq (or None); INOUT total += sum of weight x squared distance."""
        plan = self._plan(ws, len(C))
        if plan.fused:
            self._assign_fused(X, order, weights, C, labels, sq, plan, total)
        else:
            self._assign_gemm(X, order, weights, C, labels, sq, ws, total)

    def _assign_fused(self, X: Any, order: Any, weights: Any, C: Any, labels: Any, sq: Any,
                      plan: _Plan, total: Any) -> None:
        n, K, d = len(labels), plan.n_centers, plan.n_features
        threads = _ck.FUSED_THREADS
        G = self._group_size(n, K, self._sm_count * 2048)
        name = f"assign_fused<{_ck.ctype(plan.dtype)}, {_label_ctype(labels)}, {plan.width}>"
        kern = _ck.kernel("fused", name, plan.dtype)
        smem = _fused_smem(plan, G)
        blocks = max(1, min(-(-n * G // threads), self._resident_blocks(kern, threads, smem)))
        kern((blocks,), (threads,),
             (X, _arg(order), _arg(weights), np.int64(n), np.int32(d), np.int32(_aligned(X)), C,
              np.int32(K), np.int32(G), labels, _arg(sq), total),
             shared_mem=smem)

    def _resident_blocks(self, kern: Any, threads: int, smem: int) -> int:
        """Blocks of `kern` the whole device holds at once (a grid-stride grid's size)."""
        key = (kern.kernel.ptr, threads, smem)
        blocks = self._resident.get(key)
        if blocks is None:
            from cupy_backends.cuda.api import driver

            per_sm = driver.occupancyMaxActiveBlocksPerMultiprocessor(key[0], threads, smem)
            blocks = self._resident[key] = max(1, per_sm) * self._sm_count
        return blocks

    def _assign_gemm(self, X: Any, order: Any, weights: Any, C: Any, labels: Any, sq: Any,
                     ws: _Workspace, total: Any) -> None:
        cp = _cupy()
        n, (K, d), t = len(labels), C.shape, _ck.ctype(C.dtype)
        hn = ws.buffer("half_norms", (K,), C.dtype)
        _ck.kernel("generic", f"half_sq_norms<{t}>", C.dtype)(
            (max(1, min(-(-K // 256), 1024)),), (256,), (C, np.int32(K), np.int32(d), hn))
        argmin = _ck.kernel("generic", f"argmin_scores<{t}, {_label_ctype(labels)}>", C.dtype)
        tile = max(256, min(n, _TILE_BYTES // (K * C.dtype.itemsize)))
        scores = ws.buffer("scores", (tile, K), C.dtype)
        for p0 in range(0, n, tile):
            p1 = min(n, p0 + tile)
            if order is None:
                rows, w = X[p0:p1], None if weights is None else weights[p0:p1]
            else:
                rows = ws.buffer("gathered", (p1 - p0, d), C.dtype)
                cp.take(X, order[p0:p1], axis=0, out=rows)
                w = None if weights is None else cp.take(weights, order[p0:p1])
            S = scores[:p1 - p0]
            self._gemm_scores(rows, C, S)
            argmin((max(1, min(-(-(p1 - p0) // 8), self._sm_count * 16)),), (256,),
                   (S, hn, np.int32(K), np.int64(p1 - p0), rows, _arg(w), np.int32(d), C,
                    labels[p0:p1], _arg(None if sq is None else sq[p0:p1]), total))

    def _gemm_scores(self, rows: Any, C: Any, out: Any) -> None:
        """OUT out (m, K) = rows (m, d) @ C.T with cuBLAS; TF32 tensor cores for float32 under
        precision='tf32'. Row-major out is the column-major (K, m) product C @ rows.T."""
        cp = _cupy()
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

    # ---------------------------------------------------------------- streaming
    def _stream_host(self, X: np.ndarray, weights: np.ndarray | None, order: np.ndarray | None,
                     batch_size: int, half_life: float, C: Any, N: Any, ws: _Workspace) -> None:
        """Host rows through the pipeline, whole batches per chunk; the weights, in visit
        order, go to the device once."""
        cp = _cupy()
        n = X.shape[0] if order is None else len(order)
        visit_w = None if weights is None else (weights if order is None else weights[order])
        decays = _decays(visit_w, None, n, batch_size, half_life)
        w_dev = None if visit_w is None else cp.asarray(visit_w)
        chunk = _chunk_rows(X, batch_size, n)

        def compute(rows: Any, p0: int, p1: int) -> list:
            w = None if w_dev is None else w_dev[p0:p1]
            self._stream_rows(rows, None, w, p1 - p0, batch_size, p0 // batch_size, decays, C,
                              N, ws)
            return []

        ws.pipeline().run(X, order, chunk, compute)

    def _stream_rows(self, X: Any, order: Any, weights: Any, n: int, batch_size: int,
                     batch0: int, decays: Any, C: Any, N: Any, ws: _Workspace) -> None:
        """Stream the rows at positions [0, n) in batches (batch b is global batch batch0 + b,
        whose decay is decays[batch0 + b]); INOUT C, N on the device."""
        plan = self._plan(ws, len(C))
        d = decays if decays is None or batch0 == 0 else decays[batch0:]
        if self.persistent and plan.persistent and self._stream_persistent(
                X, order, weights, n, batch_size, d, C, N, plan, ws):
            return
        self._stream_per_batch(X, order, weights, n, batch_size, d, C, N, ws)

    def _stream_persistent(self, X: Any, order: Any, weights: Any, n: int, batch_size: int,
                           decays: Any, C: Any, N: Any, plan: _Plan, ws: _Workspace) -> bool:
        """The whole pass in one cooperative launch; False where it cannot be launched here
        (then the per-batch path runs instead, and this one is not tried again)."""
        cp = _cupy()
        from cupy.cuda.compiler import CompileException
        from cupy_backends.cuda.api import driver

        threads, (K, d) = _ck.PERSISTENT_THREADS, C.shape
        name = f"stream_persistent<{_ck.ctype(plan.dtype)}, {plan.width}>"
        try:
            kern = _ck.kernel("persistent", name, plan.dtype)
            per_sm = driver.occupancyMaxActiveBlocksPerMultiprocessor(
                kern.kernel.ptr, threads, _persistent_smem(plan, 2))
            grid = self._sm_count * min(per_sm, 2)
            if grid == 0:
                raise RuntimeError("the persistent kernel does not fit on a multiprocessor")
            G = self._group_size(min(batch_size, n), K, grid * threads)
            sums = ws.buffer("sums3", (3, K, d), np.float64)
            mass = ws.buffer("mass3", (3, K), np.float64)
            barrier = ws.zeroed("barrier", (1,), np.uint64)
            kern((grid,), (threads,),
                 (X, _arg(order), _arg(weights), np.int64(n), np.int32(d),
                  np.int32(_aligned(X)), np.int64(batch_size), _arg(decays), C, N, np.int32(K),
                  np.int32(G), sums, mass, barrier),
                 shared_mem=_persistent_smem(plan, G))
        except (cp.cuda.driver.CUDADriverError, cp.cuda.runtime.CUDARuntimeError,
                CompileException, RuntimeError) as exc:
            import warnings

            warnings.warn(f"backend='cupy': the persistent streaming kernel could not be "
                          f"launched ({exc}); streaming per batch instead.", RuntimeWarning,
                          stacklevel=4)
            self.persistent = False
            return False
        return True

    def _stream_per_batch(self, X: Any, order: Any, weights: Any, n: int, batch_size: int,
                          decays: Any, C: Any, N: Any, ws: _Workspace) -> None:
        """The reference path: per batch, assign, add the rows to the sums, update."""
        K, d = C.shape
        t = _ck.ctype(C.dtype)
        accumulate = _ck.kernel("generic", f"accumulate_labelled<{t}>", C.dtype)
        update = _ck.kernel("generic", f"update_centers<{t}>", C.dtype)
        sums = ws.zeroed("sums", (K, d))
        mass = ws.zeroed("mass", (K,))
        scratch = ws.buffer("scratch_total", (1,), np.float64)
        labels = ws.buffer("batch_labels", (min(batch_size, n),), np.int32)
        update_blocks = max(1, min(-(-K // 128), 4 * self._sm_count))
        for b, p0 in enumerate(range(0, n, batch_size)):
            m = min(batch_size, n - p0)
            if order is None:
                rows, o = X[p0:p0 + m], None
                w = None if weights is None else weights[p0:p0 + m]
            else:
                rows, o, w = X, order[p0:p0 + m], weights
            self._assign_rows(rows, o, None, C, labels[:m], None, ws, scratch)
            accumulate((max(1, min(-(-m // 8), self._sm_count * 16)),), (256,),
                       (rows, _arg(o), _arg(w), np.int64(m), np.int32(d), labels, sums, mass))
            update((update_blocks,), (128,),
                   (C, N, sums, mass, np.int32(K), np.int32(d), _arg(decays), np.int64(b)))

    # ---------------------------------------------------------------- Lloyd
    def _lloyd_host(self, X: Any, weights: Any, centers: Any, max_iter: int,
                    tol: float) -> tuple[float, int]:
        from .numpy import NumpyKernels

        host = self.to_numpy(centers).copy() if _is_device(centers) else centers
        result = NumpyKernels().lloyd(self.to_numpy(X), _host(weights), host, max_iter, tol)
        if host is not centers:
            centers[...] = _cupy().asarray(host)
        return result

    def _lloyd_device(self, X: Any, weights: Any, centers: Any, max_iter: int, tol: float,
                      ws: _Workspace) -> tuple[float, int]:
        cp = _cupy()
        Xd = cp.asarray(X)
        w = None if weights is None else cp.asarray(weights)
        C = centers if _is_device(centers) else cp.asarray(centers)
        (n, d), K, t = Xd.shape, len(C), _ck.ctype(Xd.dtype)
        accumulate = _ck.kernel("generic", f"accumulate_labelled<{t}>", Xd.dtype)
        update = _ck.kernel("generic", f"lloyd_update<{t}>", Xd.dtype)
        labels = ws.buffer("lloyd_labels", (n,), np.int32)
        sums, mass = ws.zeroed("sums", (K, d)), ws.zeroed("mass", (K,))

        def loss_now() -> float:
            total = ws.zeroed("total", (1,))
            self._assign_rows(Xd, None, w, C, labels, None, ws, total)
            return float(total.get()[0])

        loss, n_iter = loss_now(), 0
        for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is returned)
            accumulate((max(1, min(-(-n // 8), self._sm_count * 16)),), (256,),
                       (Xd, _NULL, _arg(w), np.int64(n), np.int32(d), labels, sums, mass))
            update((max(1, min(-(-K // 128), 4 * self._sm_count)),), (128,),
                   (C, sums, mass, np.int32(K), np.int32(d)))
            previous, loss = loss, loss_now()
            if previous - loss <= tol * previous:
                break
        if C is not centers:
            C.get(out=centers)
        return loss, n_iter

    # ---------------------------------------------------------------- seeding
    def _kmeanspp_device(self, X: Any, weights: Any, uniforms: np.ndarray,
                         n_centers: int) -> np.ndarray:
        """Greedy k-means++ on the device, three launches a step and no host synchronisation
        until the end; the draws and the choice follow the numpy reference."""
        cp = _cupy()
        X64 = cp.ascontiguousarray(cp.asarray(X, dtype=np.float64))
        n, d = X64.shape
        n_cols = uniforms.shape[1]
        w = None if weights is None else cp.asarray(weights)
        kern = {name: _ck.kernel("generic", name, np.float64) for name in
                ("row_sq_norms", "scan_and_draw", "candidate_potentials", "choose_and_update")}
        parts = max(1, min(-(-n // 256), 2 * self._sm_count))
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
                    X64, xn, _arg(w), np.int64(n), np.int32(d), cands, n_cand, closest,
                    partials))
            kern["choose_and_update"]((parts,), (256,), (
                X64, xn, _arg(w), np.int64(n), np.int32(d), cands, n_cand, partials,
                np.int32(parts), closest, wc, picked, np.int32(step)))
        bad = np.flatnonzero(totals.get()[1:] <= 0.0)
        if bad.size:
            raise _too_few_points(int(bad[0]) + 1, n_centers)
        return picked.get().astype(np.intp)


class _DeviceRefresh:
    """The refresh of plain k-means++ on the device: closest = min(closest, distances to the
    pending centers), summed in numpy's pairwise order (bit-equal to the reference)."""

    def __init__(self, X64: np.ndarray) -> None:
        cp = _cupy()
        self.X = cp.asarray(X64)
        self.closest = cp.full(len(X64), np.inf)
        self.kernel = _ck.kernel("generic", "plain_refresh", np.float64)
        self.blocks = max(1, min(-(-len(X64) // 128), 1024))

    def __call__(self, pending: list[int]) -> np.ndarray:
        cp = _cupy()
        rows = cp.asarray(np.asarray(pending, dtype=np.int64))
        n, d = self.X.shape
        self.kernel((self.blocks,), (128,), (self.X, np.int64(n), np.int32(d), rows,
                                             np.int32(len(pending)), self.closest))
        return self.closest.get()


def _plain_lazy(X64: np.ndarray, w: np.ndarray, uniforms: np.ndarray, indices: np.ndarray,
                refresh: Any) -> None:
    """The numpy reference's lazy plain k-means++, step for step, with `refresh(pending)`
    returning the refreshed distances (the one pass over X per group of centers) and the
    distances to the pending centers taken for all of them at once (the same sums)."""
    n_centers = len(indices)
    max_pending = plain_max_pending(len(X64))
    indices[0] = _draw(np.cumsum(w), uniforms[0, :1])[0]
    pending = [int(indices[0])]
    tried = taken = 0
    closest = cumulative = None
    for step in range(1, n_centers):
        for r in range(PLAIN_PROPOSALS):
            if pending and (len(pending) >= max_pending or tried - taken > taken
                            or r == PLAIN_PROPOSALS - 1 or step == 1):
                closest = refresh(pending)
                cumulative = np.cumsum(w * closest)
                pending, tried, taken = [], 0, 0
            if cumulative[-1] <= 0.0:
                raise _too_few_points(step, n_centers)
            i = int(_draw(cumulative, uniforms[step, 2 * r:2 * r + 1])[0])
            now = closest[i]
            if pending:
                now = min(now, float(((X64[pending] - X64[i]) ** 2).sum(axis=1).min()))
            tried += 1
            if uniforms[step, 2 * r + 1] * closest[i] < now:
                indices[step] = i
                pending.append(i)
                taken += 1
                break


# -------------------------------------------------------------------- checks and helpers
def _check_X(X: Any) -> Any:
    """X as a C-contiguous 2-D float32/float64 array on its own side (numpy or CuPy)."""
    if _is_device(X):
        cp = _cupy()
        ok = X.ndim == 2 and X.dtype in (np.float32, np.float64)
        out = cp.ascontiguousarray(X) if ok else X
    else:
        X = np.asarray(X)
        ok = X.ndim == 2 and X.dtype in (np.float32, np.float64)
        out = np.ascontiguousarray(X) if ok else X
    if not ok:
        raise TypeError(f"backend='cupy' kernels take a 2-D float32 or float64 X; got "
                        f"{X.dtype} with shape {tuple(X.shape)}.")
    return out


def _check_out(name: str, A: Any, shape: tuple[int, ...], dtypes: tuple) -> None:
    if (not hasattr(A, "shape") or tuple(A.shape) != shape
            or np.dtype(A.dtype) not in [np.dtype(t) for t in dtypes]
            or not A.flags.c_contiguous or (isinstance(A, np.ndarray) and not A.flags.writeable)):
        kinds = " or ".join(np.dtype(t).name for t in dtypes)
        got = (f"{A.dtype} {tuple(A.shape)}" if hasattr(A, "shape") else type(A).__name__)
        raise ValueError(f"{name} must be a writeable C-contiguous {kinds} array of shape "
                         f"{shape}; got {got}.")


def _check_centers(centers: Any, dtype: Any, d: int) -> None:
    """INOUT centers: a writeable C-contiguous (n_centers >= 1, d) array of X's dtype."""
    n_centers = centers.shape[0] if getattr(centers, "ndim", 0) == 2 else 0
    _check_out("centers", centers, (max(1, n_centers), d), (dtype,))


def _check_vector(name: str, v: Any, n: int, dtype: Any) -> Any:
    """None, or v as a (n,) array of `dtype` on its own side."""
    if v is None:
        return None
    if _is_device(v):
        v = _cupy().ascontiguousarray(v, dtype=dtype)
    else:
        v = np.ascontiguousarray(v, dtype=dtype)
    if v.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},); got {tuple(v.shape)}.")
    return v


def _check_order(order: Any, n: int) -> Any:
    """None, or order as int64 row indices (any number of them), every one in [0, n)."""
    if order is None:
        return None
    if _is_device(order):
        cp = _cupy()
        kind, order = order.dtype.kind, cp.ascontiguousarray(order)
    else:
        kind, order = np.asarray(order).dtype.kind, np.ascontiguousarray(order)
    if kind not in "iu" or order.ndim != 1:
        raise ValueError(f"order must be a 1-D integer array of row indices; got "
                         f"{order.dtype} with shape {tuple(order.shape)}.")
    order = order.astype(np.int64, copy=False)
    if len(order) and (int(order.min()) < 0 or int(order.max()) >= n):
        raise ValueError(f"order holds row indices outside [0, {n}).")
    return order


def _check_uniforms(uniforms: np.ndarray, shape: tuple[int, int]) -> None:
    if uniforms.shape != shape:
        raise ValueError(f"uniforms must have shape {shape}; got {uniforms.shape}.")


def _host(v: Any) -> Any:
    return None if v is None else (_cupy().asnumpy(v) if _is_device(v) else v)


def _set_indices(indices: Any, picked: np.ndarray) -> None:
    if _is_device(indices):
        indices[...] = _cupy().asarray(picked)
    else:
        indices[...] = picked


def _label_ctype(labels: Any) -> str:
    return "int" if labels.dtype == np.int32 else "long long"


def _aligned(X: Any) -> bool:
    """Whether every row of X starts on 16 bytes (the kernels' vector loads)."""
    per_vector = 16 // X.dtype.itemsize
    return X.data.ptr % 16 == 0 and X.shape[1] % per_vector == 0


def _chunk_rows(X: np.ndarray, batch_size: int, n_visits: int) -> int:
    """Rows of one host chunk: whole batches, about _CHUNK_BYTES (at least one batch)."""
    row_bytes = max(1, X.shape[1] * X.dtype.itemsize)
    batches = max(1, _CHUNK_BYTES // (row_bytes * batch_size))
    return min(batches * batch_size, max(1, n_visits))


def _decays(weights: Any, order: Any, n: int, batch_size: int, half_life: float) -> Any:
    """The decay factor of each batch (device float64), or None when half_life is 0.

    A batch's weight is its number of rows, or the sum of its weights in visit order, summed
    as the numpy reference sums them (where the batches are long enough for that to differ).
    """
    if not half_life > 0:
        return None
    cp = _cupy()
    n_batches = -(-n // batch_size)
    if weights is None:
        out = np.full(n_batches, decay_factor(float(batch_size), half_life))
        out[-1] = decay_factor(float(n - (n_batches - 1) * batch_size), half_life)
        return cp.asarray(out)
    if _is_device(weights):
        visit = weights if order is None else weights[order]
        padded = cp.zeros(n_batches * batch_size)
        padded[:n] = visit
        return cp.power(2.0, -padded.reshape(n_batches, batch_size).sum(axis=1) / half_life)
    visit = weights if order is None else weights[order]
    starts = range(0, n, batch_size)
    if batch_size >= 8:  # numpy's pairwise sum; below 8 terms it is the running sum
        totals = np.array([visit[s:s + batch_size].sum() for s in starts])
    else:
        totals = np.add.reduceat(visit, np.arange(0, n, batch_size))
    return cp.asarray(2.0 ** (-totals / half_life))
