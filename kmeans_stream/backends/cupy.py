"""GPU kernels: the `kmeans_stream.backends.base.Kernels` contract on an NVIDIA GPU, through CuPy.

Every kernel gives the numpy reference's results (`kmeans_stream.backends.numpy`): the same
labels on rows without near-ties, losses within rounding, and exactly the same seeding indices
from the same uniforms. CuPy is imported only when a method runs, so this module imports
without it; `gpu_available` says why the backend cannot run here.

Paths (the CUDA sources are in `kmeans_stream.backends._cupy_kernels`, the launches in
`kmeans_stream.backends._cupy_launch`, the host side in `kmeans_stream.backends._cupy_host`):

- Assignment. Small d * K: centers in shared memory, no n x K matrix; several rows a lane
  (`assign_rows`) when the rows fill the device, else one or several lanes a row
  (`assign_fused`). Larger: cuBLAS scores of a tile of rows (TF32 tensor cores when
  ``precision="tf32"``) and a warp-per-row argmin. Either way the squared distance of the chosen
  center is then computed directly (differences, squares summed in float64).
- Streaming. The fast path is a persistent kernel: the whole pass in one cooperative launch,
  one device-wide barrier per mini-batch, no host synchronisation. The reference path, kept for
  shapes the fast one does not take and as its fallback, launches per batch: assign, add the
  rows to per-center float64 sums (atomics), update.
- Data. CuPy arrays stay on the device. numpy arrays stream through pinned host buffers in
  double-buffered chunks on two streams, so the copy of one chunk overlaps the work on the one
  before; a numpy array in pinned memory is copied from directly. Arrays larger than the device
  work, a chunk at a time.
- Seeding and the final Lloyd run where they are fastest for their size: small problems on
  the host through the numba backend's kernels (the numpy reference where numba is missing),
  larger ones on the device; `Tuning` holds the thresholds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _cupy_kernels as _ck
from ._cupy_host import (
    Workspace,
    check_centers,
    check_order,
    check_out,
    check_uniforms,
    check_vector,
    check_X,
    chunk_rows,
    cupy,
    decays,
    host_kernels,
    is_device,
    plain_lazy,
    set_indices,
    to_host,
    too_few_points,
)
from ._cupy_launch import NUMPY_HOST_MAX, DeviceRefresh, Launcher, Tuning
from .base import PLAIN_PROPOSALS, each_trial

__all__ = ["CupyKernels", "Tuning", "gpu_available"]


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


class CupyKernels:
    """The kernels of `kmeans_stream.backends.base.Kernels` on a CUDA GPU.

    Parameters
    ----------
    precision : {"fp32", "tf32"}
        "tf32" lets the matrix-product path (large K, float32 data) use TF32 tensor cores for
        the scores that rank the centers; distances and sums stay float32/float64 either way.
    persistent : bool
        Whether streaming may use a persistent kernel (False: per-batch launches only, the
        reference path; tests and benchmarks compare the two).
    tuning : Tuning, optional
        The choices only measurement settles (grids, rows per lane, where small problems run);
        the defaults are the best measured.
    """

    name = "cupy"
    device = True  # takes data that lives on the GPU

    def __init__(self, precision: str = "fp32", *, persistent: bool = True,
                 tuning: Tuning | None = None) -> None:
        if precision not in ("fp32", "tf32"):
            raise ValueError(f"precision must be 'fp32' or 'tf32'; got {precision!r}.")
        reason = gpu_available()
        if reason is not None:
            raise RuntimeError(f"backend='cupy' needs a CUDA GPU and CuPy: {reason}.")
        self.precision = precision
        self.persistent = persistent
        self.tuning = tuning or Tuning()
        self._dev = Launcher(precision, self.tuning)

    # ---------------------------------------------------------------- arrays and workspace
    def asarray(self, A: Any, dtype: Any = None) -> Any:
        """`A` as a C-contiguous CuPy array (the same object where it already is one)."""
        cp = cupy()
        return cp.ascontiguousarray(cp.asarray(A, dtype=dtype))

    def to_numpy(self, A: Any) -> np.ndarray:
        """A numpy array holding `A` (the same object for a numpy array)."""
        return cupy().asnumpy(A) if is_device(A) else np.asarray(A)

    def empty(self, shape: tuple[int, ...], dtype: Any, like: Any) -> Any:
        """An uninitialised array on the side `like` lives: CuPy for a CuPy `like`."""
        return cupy().empty(shape, dtype=dtype) if is_device(like) else np.empty(shape, dtype)

    def workspace(self, dtype: Any, n_centers: int, n_features: int, max_rows: int) -> Workspace:
        """Device scratch for calls on `dtype` data of `n_features` features (see
        `Kernels.workspace`); its buffers are made on first use and reused."""
        ws = Workspace(dtype, int(n_features))
        self._dev.plan(ws, int(n_centers))
        return ws

    # ---------------------------------------------------------------- kernels
    def assign(self, X: Any, centers: Any, labels: Any, sq_dist: Any,
               workspace: Any = None) -> float:
        """Nearest center of each row (see `Kernels.assign`).

        X (n_samples, n_features) IN, numpy or CuPy; centers (n_centers, n_features) IN;
        labels (n_samples,) int32 or int64 OUT; sq_dist (n_samples,) float64 OUT or None.
        Returns the sum of the squared distances: not finite iff a row of X is not.
        """
        X = check_X(X)
        n, d = X.shape
        C = self._centers_in(centers, X.dtype, d)
        check_out("labels", labels, (n,), (np.int32, np.int64))
        if sq_dist is not None:
            check_out("sq_dist", sq_dist, (n,), (np.float64,))
        ws = self._workspace_for(workspace, X.dtype, d)
        total = ws.zeroed("total", (1,))
        if n == 0:
            return 0.0
        if is_device(X):
            self._assign_outputs(X, C, labels, sq_dist, ws, total)
        else:
            self._assign_host(X, C, labels, sq_dist, ws, total)
        return float(total.get()[0])

    def transform(self, X: Any, centers: Any, out: Any) -> None:
        """out (n_samples, n_centers) OUT, X's dtype: Euclidean distance to each center."""
        cp = cupy()
        X = check_X(X)
        n, d = X.shape
        C = self._centers_in(centers, X.dtype, d)
        K = len(C)
        check_out("out", out, (n, K), (X.dtype,))
        kern = _ck.kernel("generic", f"transform_direct<{_ck.ctype(X.dtype)}>", X.dtype)
        step = max(16, self.tuning.chunk_bytes // ((K + d) * X.dtype.itemsize))
        for p0 in range(0, n, step):
            p1 = min(n, p0 + step)
            rows = X[p0:p1] if is_device(X) else cp.asarray(X[p0:p1])
            dest = out[p0:p1] if is_device(out) else cp.empty((p1 - p0, K), dtype=X.dtype)
            kern(((p1 - p0 + 15) // 16, (K + 15) // 16), (16, 16),
                 (rows, np.int64(p1 - p0), np.int32(d), C, np.int32(K), dest))
            if not is_device(out):
                dest.get(out=out[p0:p1])

    def stream_batches(self, X: Any, weights: Any, order: Any, batch_size: int, centers: Any,
                       counts: Any, half_life: float, workspace: Any = None) -> None:
        """SageMaker's streaming update over X in mini-batches (see `Kernels.stream_batches`).

        X IN (numpy or CuPy); weights (n_samples,) float64 IN or None; order (n_visits,) IN or
        None: the rows to visit, in that order (None: every row in X's order); centers
        (n_centers, n_features) X's dtype INOUT; counts (n_centers,) float64 INOUT (numpy or
        CuPy, updated in place).
        """
        cp = cupy()
        X = check_X(X)
        n, d = X.shape
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        check_centers(centers, X.dtype, d)
        check_out("counts", counts, (len(centers),), (np.float64,))
        weights = check_vector("weights", weights, n, np.float64)
        order = check_order(order, n)
        n_visits = n if order is None else len(order)
        if n_visits == 0:
            return
        ws = self._workspace_for(workspace, X.dtype, d)
        C = centers if is_device(centers) else cp.asarray(centers)
        N = counts if is_device(counts) else cp.asarray(counts)
        if is_device(X):
            w = None if weights is None else cp.asarray(weights)
            o = None if order is None else cp.asarray(order)
            factors = decays(w, o, n_visits, batch_size, half_life)
            self._stream_rows(X, o, w, n_visits, batch_size, factors, C, N, ws)
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

        Small problems run on the host (`Tuning.host_lloyd_max`), larger ones on the device.
        Returns (weighted sum of squared distances to the returned centers, iterations).
        """
        cp = cupy()
        X = check_X(X)
        n, d = X.shape
        check_centers(centers, X.dtype, d)
        weights = check_vector("weights", weights, n, np.float64)
        host = self._host_for("lloyd", n * len(centers) * d)
        if host is not None:
            C = self.to_numpy(centers).copy() if is_device(centers) else centers
            result = host.lloyd(self.to_numpy(X), to_host(weights), C, int(max_iter),
                                float(tol))
        else:
            ws = self._workspace_for(workspace, X.dtype, d)
            w = None if weights is None else cp.asarray(weights)
            C = centers if is_device(centers) else cp.asarray(centers)
            result = self._dev.lloyd(cp.asarray(X), w, C, int(max_iter), float(tol), ws)
        if C is not centers:
            centers[...] = cp.asarray(C) if is_device(centers) else cp.asnumpy(C)
        return result

    def refine(self, X: Any, weights: Any, centers: Any, labels: Any, max_moves: int,
               tol: float, workspace: Any = None) -> tuple[float, int]:
        """Lloyd on the data, stopping when moving the centers would gain little (see
        `Kernels.refine`): one pass (assign, sums) per move, host rows streamed each pass.

        X IN; weights (n_samples,) float64 IN or None; centers INOUT; labels (n_samples,) int32
        or int64 OUT, those of the returned centers. Returns (weighted loss, moves).
        """
        cp = cupy()
        X = check_X(X)
        n, d = X.shape
        check_centers(centers, X.dtype, d)
        check_out("labels", labels, (n,), (np.int32, np.int64))
        weights = check_vector("weights", weights, n, np.float64)
        ws = self._workspace_for(workspace, X.dtype, d)
        C = centers if is_device(centers) else cp.asarray(centers)
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
        if is_device(labels):
            labels[...] = found
        else:
            labels[...] = found.get()
        return loss, moves

    def kmeanspp(self, X: Any, weights: Any, uniforms: np.ndarray, indices: np.ndarray) -> None:
        """Greedy weighted k-means++ (see `Kernels.kmeanspp`): indices (n_centers,) OUT, the
        rows the numpy reference picks from the same uniforms (n_centers, n_candidates) IN.
        Small problems run on the host (`Tuning.host_seed_max`), larger ones on the device."""
        cp = cupy()
        X = check_X(X)
        n_centers = len(indices)
        uniforms = np.asarray(self.to_numpy(uniforms), dtype=np.float64)
        check_uniforms(uniforms, (n_centers, max(1, uniforms.shape[-1])))
        weights = check_vector("weights", weights, X.shape[0], np.float64)
        picked = np.empty(n_centers, dtype=np.intp)
        host = self._host_for("seed", X.shape[0] * X.shape[1] * n_centers)
        if host is not None:
            host.kmeanspp(self.to_numpy(X), to_host(weights), uniforms, picked)
        else:
            X64 = cp.ascontiguousarray(cp.asarray(X, dtype=np.float64))
            w = None if weights is None else cp.asarray(weights)
            picked, totals = self._dev.kmeanspp(X64, w, uniforms, n_centers)
            bad = np.flatnonzero(totals[1:] <= 0.0)
            if bad.size:
                raise too_few_points(int(bad[0]) + 1, n_centers)
        set_indices(indices, picked)

    def kmeanspp_trials(self, X: Any, weights: Any, uniforms: np.ndarray,
                        indices: np.ndarray) -> None:
        """One `kmeanspp` per trial (see `Kernels.kmeanspp_trials`)."""
        each_trial(self, X, weights, uniforms, indices)

    def kmeanspp_plain(self, X: Any, weights: Any, uniforms: np.ndarray,
                       indices: np.ndarray) -> None:
        """Plain weighted k-means++ drawn lazily (see `Kernels.kmeanspp_plain`). Small inputs
        run on the host (`Tuning.host_plain_max`); larger ones follow the numpy reference's
        rules on the host with the refreshes (a pass over X per group of centers) on the
        device, distances summed in numpy's order, so the picks are the reference's exactly."""
        X = check_X(X)
        n_centers = len(indices)
        uniforms = np.asarray(self.to_numpy(uniforms), dtype=np.float64)
        check_uniforms(uniforms, (n_centers, 2 * PLAIN_PROPOSALS))
        weights = check_vector("weights", weights, X.shape[0], np.float64)
        picked = np.empty(n_centers, dtype=np.intp)
        host = self._host_for("plain", X.shape[0] * X.shape[1])
        if host is not None:
            host.kmeanspp_plain(self.to_numpy(X), to_host(weights), uniforms, picked)
        else:
            X64 = np.ascontiguousarray(self.to_numpy(X), dtype=np.float64)
            w = np.ones(len(X64)) if weights is None else to_host(weights)
            plain_lazy(X64, w, uniforms, picked, DeviceRefresh(X64))
        set_indices(indices, picked)

    # ---------------------------------------------------------------- helpers
    def _host_for(self, kind: str, work: int) -> Any:
        """The host kernels where a `kind` problem of `work` runs on the host, else None."""
        host = host_kernels(self.tuning.host)
        limit = getattr(self.tuning, f"host_{kind}_max")
        if host.name != "numba":
            limit = min(limit, NUMPY_HOST_MAX[kind])
        return host if work <= limit else None

    def _workspace_for(self, workspace: Any, dtype: np.dtype, d: int) -> Workspace:
        if workspace is None:
            return Workspace(dtype, d)
        if not isinstance(workspace, Workspace):
            raise TypeError(f"workspace must come from CupyKernels.workspace; got "
                            f"{type(workspace).__name__}.")
        if workspace.dtype != dtype or workspace.n_features != d:
            raise ValueError(
                f"the workspace was made for {workspace.dtype} data of {workspace.n_features} "
                f"features; this call has {dtype} data of {d} features."
            )
        return workspace

    def _centers_in(self, centers: Any, dtype: np.dtype, d: int) -> Any:
        cp = cupy()
        C = cp.ascontiguousarray(cp.asarray(centers, dtype=dtype))
        if C.ndim != 2 or C.shape[1] != d or C.shape[0] < 1:
            raise ValueError(f"centers must have shape (n_centers >= 1, {d}); got "
                             f"{tuple(C.shape)}.")
        return C

    def _assign_host(self, X: np.ndarray, C: Any, labels: Any, sq_dist: Any, ws: Workspace,
                     total: Any) -> None:
        cp = cupy()

        def compute(rows: Any, p0: int, p1: int) -> list:
            back = []
            lab = labels[p0:p1] if is_device(labels) else cp.empty(p1 - p0, labels.dtype)
            if not is_device(labels):
                back.append((lab, labels[p0:p1]))
            sq = None
            if sq_dist is not None:
                sq = sq_dist[p0:p1] if is_device(sq_dist) else cp.empty(p1 - p0, np.float64)
                if not is_device(sq_dist):
                    back.append((sq, sq_dist[p0:p1]))
            self._dev.assign(rows, None, None, C, lab, sq, ws, total)
            return back

        rows = chunk_rows(X, 1, X.shape[0], self.tuning.chunk_bytes)
        ws.pipeline().run(X, None, rows, compute)

    def _assign_outputs(self, X: Any, C: Any, labels: Any, sq_dist: Any, ws: Workspace,
                        total: Any) -> None:
        """Device rows; outputs on either side (host ones filled through device buffers)."""
        n = X.shape[0]
        lab = labels if is_device(labels) else ws.buffer("labels_out", (n,), labels.dtype)
        sq = None
        if sq_dist is not None:
            sq = sq_dist if is_device(sq_dist) else ws.buffer("sq_out", (n,), np.float64)
        self._dev.assign(X, None, None, C, lab, sq, ws, total)
        if lab is not labels:
            lab.get(out=labels)
        if sq is not None and sq is not sq_dist:
            sq.get(out=sq_dist)

    def _stream_host(self, X: np.ndarray, weights: np.ndarray | None, order: np.ndarray | None,
                     batch_size: int, half_life: float, C: Any, N: Any, ws: Workspace) -> None:
        """Host rows through the pipeline, whole batches per chunk; the weights, in visit
        order, go to the device once."""
        cp = cupy()
        n = X.shape[0] if order is None else len(order)
        visit_w = None if weights is None else (weights if order is None else weights[order])
        factors = decays(visit_w, None, n, batch_size, half_life)
        w_dev = None if visit_w is None else cp.asarray(visit_w)

        def compute(rows: Any, p0: int, p1: int) -> list:
            w = None if w_dev is None else w_dev[p0:p1]
            b0 = p0 // batch_size
            f = factors if factors is None or b0 == 0 else factors[b0:]
            self._stream_rows(rows, None, w, p1 - p0, batch_size, f, C, N, ws)
            return []

        chunk = chunk_rows(X, batch_size, n, self.tuning.chunk_bytes)
        ws.pipeline().run(X, order, chunk, compute)

    def _stream_rows(self, X: Any, order: Any, weights: Any, n: int, batch_size: int,
                     factors: Any, C: Any, N: Any, ws: Workspace) -> None:
        if not self._dev.stream(X, order, weights, n, batch_size, factors, C, N, ws,
                                self.persistent):
            self.persistent = False

    def _refine_pass(self, X: Any, w: Any, C: Any, found: Any,
                     ws: Workspace) -> tuple[float, Any, Any]:
        """One pass: OUT found (int32 labels); returns the weighted loss, the float64 sums and
        mass of each cluster."""
        K, d = C.shape
        sums, mass = ws.zeroed("refine_sums", (K, d)), ws.zeroed("refine_mass", (K,))
        total = ws.zeroed("total", (1,))

        def compute(rows: Any, p0: int, p1: int) -> list:
            wt = None if w is None else w[p0:p1]
            self._dev.assign(rows, None, wt, C, found[p0:p1], None, ws, total)
            self._dev.accumulate(rows, None, wt, found[p0:p1], sums, mass, p1 - p0)
            return []

        if is_device(X):
            compute(X, 0, X.shape[0])
        else:
            rows = chunk_rows(X, 1, X.shape[0], self.tuning.chunk_bytes)
            ws.pipeline().run(X, None, rows, compute)
        return float(total.get()[0]), sums, mass
