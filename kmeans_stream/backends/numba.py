"""JIT kernels for the CPU: `kmeans_stream.backends.base.Kernels`, compiled with numba.

The compiled functions all live in `kmeans_stream.backends._numba_kernels` (one module, so that
numba's on-disk cache can never mix an edited kernel with a stale caller), ``cache=True``, so a
new process loads them from disk instead of compiling. This class checks its arguments and owns
the workspace; the kernels fill. ``X`` keeps its dtype (float32 or float64) throughout; counts,
weights and losses are float64. An IN array that is not C-contiguous, or centers of another
dtype, are copied once; an OUT or INOUT array must already have the right dtype and be
C-contiguous, since it is written in place.

The matrix-product tiles call BLAS from inside the parallel loop, so BLAS itself is held to one
thread while a kernel runs (threadpoolctl): the parallelism is numba's, one tile per worker.

The module leaves numba's threading layer to numba and to the user (``NUMBA_THREADING_LAYER``):
with the default layer (omp here) a parallel launch costs ~2 us on the quiet 2-core benchmark
machine, and the omp and tbb layers may be entered from several Python threads at once, which
``workqueue`` may not.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext

import numba
import numpy as np

from . import _numba_kernels as _k
from .base import PLAIN_PROPOSALS, each_trial, plain_max_pending
from .numpy import too_few_points

_BLAS_LOCK = threading.Lock()
_BLAS_STATE: dict = {"libraries": None, "users": 0, "saved": []}


@contextmanager
def _single_threaded_blas():
    """BLAS held to one thread while any kernel that calls it inside prange runs.

    numba's ``np.dot`` calls SciPy's BLAS (``scipy.linalg.cython_blas``, its own OpenBLAS), which
    is loaded only when a kernel first runs; it is imported before threadpoolctl takes its
    inventory, or the limit would miss the very library the kernels call. The BLAS libraries'
    controllers are kept from that inventory and set directly (about 3 us a call, where
    threadpoolctl's ``limit`` takes about 40 us, which a small predict would notice). The limit
    is shared by concurrent callers and undone by the last one out: separate limit/restore pairs
    from several Python threads would restore out of order and leave the user's BLAS at one
    thread. (SciPy's OpenBLAS here ignores a raise of its thread count made from a thread other
    than the main one, so a last caller on a worker thread still leaves BLAS at one thread.)
    """
    with _BLAS_LOCK:
        if _BLAS_STATE["libraries"] is None:
            import scipy.linalg.cython_blas  # noqa: F401 (loads the BLAS numba calls)
            from threadpoolctl import ThreadpoolController

            controller = ThreadpoolController().select(user_api="blas")
            _BLAS_STATE["libraries"] = list(controller.lib_controllers)
        if _BLAS_STATE["users"] == 0:
            _BLAS_STATE["saved"] = [lib.num_threads for lib in _BLAS_STATE["libraries"]]
            for lib in _BLAS_STATE["libraries"]:
                lib.set_num_threads(1)
        _BLAS_STATE["users"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["users"] -= 1
            if _BLAS_STATE["users"] == 0:
                for lib, n_threads in zip(_BLAS_STATE["libraries"], _BLAS_STATE["saved"],
                                          strict=True):
                    lib.set_num_threads(n_threads)


_NONE = np.empty(0, dtype=np.float64)  # "no weights" / "no distances" for the kernels
_NO_ORDER = np.empty(0, dtype=np.intp)
# Rows per tile of `refine`: its distances are kept a tile at a time, never n float64.
REFINE_TILE = 4096
# Greedy k-means++ trials on at most this many rows read one table of bounds of their squared
# distances (16 bits an entry, 128 MiB at this size); beyond, each trial computes the
# distances it needs.
PP_TABLE_MAX_ROWS = 8192


def _check_X(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64) or X.ndim != 2:
        raise TypeError(
            f"backend='numba' kernels take a 2-D float32 or float64 X; got {X.dtype} with "
            f"shape {X.shape}."
        )
    return np.ascontiguousarray(X)


def _check_out(name: str, array: np.ndarray, dtypes: tuple, shape: tuple) -> None:
    """An OUT or INOUT array is written in place: right dtype and shape, C-contiguous."""
    if (array.dtype not in dtypes or array.shape != shape or not array.flags.c_contiguous
            or not array.flags.writeable):
        wanted = " or ".join(str(np.dtype(t)) for t in dtypes)
        raise ValueError(
            f"{name} is written in place and must be a writeable C-contiguous {wanted} array "
            f"of shape {shape}; got {array.dtype} {array.shape}, "
            f"C-contiguous={array.flags.c_contiguous}."
        )


def _weights(weights: np.ndarray | None, n_rows: int) -> np.ndarray:
    if weights is None:
        return _NONE
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if weights.shape != (n_rows,):
        raise ValueError(f"weights must have shape ({n_rows},); got {weights.shape}.")
    return weights


def _check_uniforms(uniforms: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The seeding kernels read uniforms unchecked: its shape is checked here."""
    uniforms = np.ascontiguousarray(uniforms, dtype=np.float64)
    if uniforms.shape != shape:
        raise ValueError(f"uniforms must have shape {shape}; got {uniforms.shape}.")
    return uniforms


class _Workspace:
    """Scratch for one shape of work: one tile and one set of partial sums per worker.

    Made once per fit (or predict call) by `NumbaKernels.workspace` and reused by every call:
    labels and distances for up to `rows` rows, a tile of copied rows per worker for the
    matrix-product path of rows visited in an order, and (on first use) the tile distances of
    `refine`.
    """

    def __init__(self, dtype: np.dtype, n_centers: int, n_features: int, rows: int) -> None:
        n_workers = numba.get_num_threads()
        dtype = np.dtype(dtype)
        most = 2 ** (np.finfo(dtype).nmant + 1)  # labels travel as float codes, exact up to it
        if n_centers > most:
            raise ValueError(f"backend='numba' takes at most {most} centers for {dtype} data; "
                             f"got {n_centers}.")
        self.key = (dtype, n_centers, n_features)
        self.rows = rows
        width = _k.blocked_width(n_centers, n_features)
        self.gemm = width == 0
        # The blocked kernel's width travels as a tuple's length: a compile-time constant.
        self.width = (0,) * width
        self.c_norms = np.empty(n_centers, dtype=dtype)
        self.cm2 = np.empty((n_centers if width else 0, width), dtype=dtype)
        self.scratch = np.empty(
            (n_workers, _k.scratch_size(n_centers, width, dtype.itemsize)), dtype=dtype
        )
        self.labels = np.empty(rows, dtype=np.intp)
        self.sq_dist = np.empty(rows, dtype=np.float64)
        self.sums = np.empty((n_workers, n_centers, n_features), dtype=np.float64)
        self.mass = np.empty((n_workers, n_centers), dtype=np.float64)
        self.losses = np.empty(n_workers, dtype=np.float64)
        # The matrix-product path copies a tile's visited rows here (rows of an order).
        self.gathered = np.empty((n_workers, 0 if width else 512, n_features), dtype=dtype)
        self._tile_distances: np.ndarray | None = None
        self._bounds: tuple | None = None

    def check(self, X: np.ndarray, centers: np.ndarray, rows: int) -> None:
        """The workspace was made for this dtype, these centers and at least `rows` rows."""
        key = (X.dtype, centers.shape[0], X.shape[1])
        if key != self.key or rows > self.rows:
            raise ValueError(
                f"this workspace was made for (dtype, n_centers, n_features) = {self.key} and "
                f"{self.rows} rows; the call has {key} and {rows} rows."
            )

    def tile_distances(self) -> np.ndarray:
        """(n_workers, REFINE_TILE) float64: each worker's distances of one tile of rows."""
        if self._tile_distances is None:
            self._tile_distances = np.empty((self.scratch.shape[0], REFINE_TILE))
        return self._tile_distances

    def bounds(self) -> tuple:
        """Lloyd's skips (`_k.lloyd`): half gaps (n_centers,), kept flags, visited rows, their
        labels and distances (rows,); made on first use."""
        if self._bounds is None:
            rows = self.rows
            self._bounds = (np.empty(self.key[1]), np.empty(rows, dtype=np.bool_),
                            np.empty(rows, dtype=np.intp), np.empty(rows, dtype=np.intp),
                            np.empty(rows))
        return self._bounds

    def buffers(self) -> tuple:
        """The arguments every assigning kernel takes after the centers, up to the labels."""
        return self.c_norms, self.cm2, self.scratch, self.width

    def blas_context(self):
        return _single_threaded_blas() if self.gemm else nullcontext()


class NumbaKernels:
    """`kmeans_stream.backends.base.Kernels`, JIT-compiled for the CPU."""

    name = "numba"

    def asarray(self, A, dtype=None) -> np.ndarray:
        """`A` as a C-contiguous numpy array (no copy where it already is one)."""
        return np.ascontiguousarray(A, dtype=dtype)

    def to_numpy(self, A) -> np.ndarray:
        """`A` itself: the CPU backend's arrays are numpy arrays."""
        return np.asarray(A)

    def empty(self, shape, dtype, like) -> np.ndarray:
        """An uninitialised numpy array."""
        return np.empty(shape, dtype=dtype)

    def workspace(self, dtype, n_centers: int, n_features: int, max_rows: int) -> _Workspace:
        """Per-worker tiles, partial sums and label buffers, made once and reused."""
        return _Workspace(np.dtype(dtype), int(n_centers), int(n_features), int(max_rows))

    def _workspace_for(self, workspace, X, centers, rows) -> _Workspace:
        if workspace is None:
            return self.workspace(X.dtype, centers.shape[0], X.shape[1], rows)
        workspace.check(X, centers, rows)
        return workspace

    def assign(self, X, centers, labels, sq_dist, workspace=None) -> float:
        """OUT labels (int32 or intp) and sq_dist (float64, or None): nearest center of each
        row. Returns the sum of sq_dist, or of the ranking scores without it (not finite iff a
        row of X is not). A workspace of None makes one for this call."""
        X = _check_X(X)
        n = X.shape[0]
        _check_out("labels", labels, (np.int32, np.intp), (n,))
        if sq_dist is None:
            sq_dist = _NONE
        else:
            _check_out("sq_dist", sq_dist, (np.float64,), (n,))
        centers = np.ascontiguousarray(centers, dtype=X.dtype)
        ws = self._workspace_for(workspace, X, centers, 0)
        with ws.blas_context():
            total = _k.assign_labels(X, centers, *ws.buffers(), labels, sq_dist, ws.losses)
        return float(total)

    def transform(self, X, centers, out) -> None:
        """OUT out (n_samples, n_centers), X's dtype: Euclidean distance to each center."""
        X = _check_X(X)
        centers = np.ascontiguousarray(centers, dtype=X.dtype)
        _check_out("out", out, (X.dtype,), (X.shape[0], centers.shape[0]))
        _k.transform(X, centers, out)

    def stream_batches(self, X, weights, order, batch_size, centers, counts, half_life,
                       workspace=None) -> None:
        """SageMaker's streaming update over X in mini-batches; INOUT centers and counts."""
        X = _check_X(X)
        n, d = X.shape
        _check_out("centers", centers, (X.dtype,), (centers.shape[0], d))
        _check_out("counts", counts, (np.float64,), (centers.shape[0],))
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        weights = _weights(weights, n)
        ws = self._workspace_for(workspace, X, centers, min(batch_size, n))
        if order is None:
            order = _NO_ORDER
        else:
            order = np.ascontiguousarray(order, dtype=np.intp)
            if order.ndim != 1 or not len(order) or not 0 <= order.min() <= order.max() < n:
                raise ValueError(f"order must list row indices of X (0 to {n - 1}); got "
                                 f"shape {order.shape}.")
        c_norms, cm2, scratch, width = ws.buffers()
        with ws.blas_context():
            _k.stream_batches(
                X, weights, order, batch_size, centers, counts, float(half_life), c_norms, cm2,
                scratch, ws.gathered, width, ws.labels, ws.sums, ws.mass, ws.losses,
            )

    def lloyd(self, X, weights, centers, max_iter: int, tol: float,
              workspace=None) -> tuple[float, int]:
        """Weighted Lloyd from centers (INOUT): (weighted loss, iterations)."""
        X = _check_X(X)
        _check_out("centers", centers, (X.dtype,), (centers.shape[0], X.shape[1]))
        weights = _weights(weights, X.shape[0])
        ws = self._workspace_for(workspace, X, centers, X.shape[0])
        c_norms, cm2, scratch, width = ws.buffers()
        # Rounding allowances of the skips: a sum of d squares in X's dtype; float64 gaps.
        margin = 1.0 + 4.0 * (X.shape[1] + 2) * np.finfo(X.dtype).eps
        slack = 4.0 * (X.shape[1] + 2) * np.finfo(np.float64).eps
        with _single_threaded_blas():  # the gaps between centers are BLAS products
            loss, n_iter = _k.lloyd(
                X, weights, centers, int(max_iter), float(tol), c_norms, cm2, scratch,
                ws.gathered, width, ws.labels, ws.sq_dist, ws.sums, ws.mass, ws.losses,
                *ws.bounds(), margin, slack,
            )
        return float(loss), int(n_iter)

    def refine(self, X, weights, centers, labels, max_moves: int, tol: float,
               workspace=None) -> tuple[float, int]:
        """Lloyd on the data that stops when moving the centers would gain little; INOUT
        centers, OUT labels (int32 or intp): (weighted loss, moves)."""
        X = _check_X(X)
        n = X.shape[0]
        _check_out("centers", centers, (X.dtype,), (centers.shape[0], X.shape[1]))
        _check_out("labels", labels, (np.int32, np.intp), (n,))
        weights = _weights(weights, n)
        ws = self._workspace_for(workspace, X, centers, 0)
        with ws.blas_context():
            loss, moves = _k.refine(
                X, weights, centers, labels, int(max_moves), float(tol), *ws.buffers(),
                ws.tile_distances(), ws.sums, ws.mass, ws.losses,
            )
        return float(loss), int(moves)

    def kmeanspp(self, X, weights, uniforms, indices) -> None:
        """Greedy weighted k-means++ seeding in X's dtype; OUT indices (intp)."""
        X = _check_X(X)
        n_centers = len(indices)
        _check_out("indices", indices, (np.intp,), (n_centers,))
        weights = _unit(_weights(weights, X.shape[0]), X.shape[0])
        uniforms = _check_uniforms(uniforms, (n_centers, max(1, np.shape(uniforms)[-1])))
        n = X.shape[0]
        n_cand = uniforms.shape[1]
        n_workers = numba.get_num_threads()
        done = _k.kmeanspp(
            X, weights, uniforms, indices,
            np.empty((X.shape[1], n_centers), dtype=X.dtype),
            np.empty(n, dtype=np.float64),
            np.empty(n, dtype=np.int32),
            np.empty(-(-n // _k.PP_BLOCK), dtype=np.float64),
            np.empty((n_cand, n_centers), dtype=X.dtype),
            np.empty((n_cand + 1, n_centers), dtype=np.bool_),
            np.empty(n_centers, dtype=np.float64),
            np.empty((n_workers, n_cand), dtype=np.float64),
            np.empty((n_workers, n_centers), dtype=np.float64),
        )
        if done < n_centers:
            raise too_few_points(done, n_centers)

    def kmeanspp_trials(self, X, weights, uniforms, indices) -> None:
        """Greedy weighted k-means++ trials (see `Kernels.kmeanspp_trials`): with at most
        `PP_TABLE_MAX_ROWS` rows, with one table of lower bounds of the squared distances
        between them (16 bits an entry, made by one matrix product and shared by the trials,
        which run in parallel and compute exactly the distances the bounds cannot rule out);
        else trial by trial."""
        X = _check_X(X)
        n_trials, n_centers = indices.shape
        _check_out("indices", indices, (np.intp,), (n_trials, n_centers))
        n = X.shape[0]
        if n > PP_TABLE_MAX_ROWS:
            each_trial(self, X, weights, uniforms, indices)
            return
        weights = _unit(_weights(weights, n), n)
        uniforms = _check_uniforms(uniforms, (n_trials, n_centers, max(1, np.shape(uniforms)[-1])))
        codes = np.empty((n, n), dtype=np.uint16)
        with _single_threaded_blas():
            _k.pp_table(X.astype(np.float64) - X.mean(axis=0, dtype=np.float64), codes,
                        min(numba.get_num_threads(), -(-n // _k.PP_TABLE_BLOCK)))
        done = np.empty(n_trials, dtype=np.intp)
        _k.kmeanspp_table(X, codes, weights, uniforms, indices, np.empty((n_trials, n)),
                          np.empty((n_trials, n), dtype=np.uint16),
                          np.empty((n_trials, -(-n // 8) * 8), dtype=np.uint8),
                          np.empty((n_trials, -(-n // _k.PP_TABLE_DRAW_BLOCK))), done)
        if (steps := int(done.min())) < n_centers:
            raise too_few_points(steps, n_centers)

    def kmeanspp_plain(self, X, weights, uniforms, indices) -> None:
        """Plain weighted k-means++ drawn lazily, by NumpyKernels.kmeanspp_plain's rules."""
        X = _check_X(X)
        n_centers = len(indices)
        _check_out("indices", indices, (np.intp,), (n_centers,))
        weights = _unit(_weights(weights, X.shape[0]), X.shape[0])
        uniforms = _check_uniforms(uniforms, (n_centers, 2 * PLAIN_PROPOSALS))
        n, d = X.shape
        max_pending = plain_max_pending(n)
        width = _k.feature_width(d)
        blocked = min(max_pending, _k.BLOCKED_MAX_WORK // width) if width else 0
        n_workers = numba.get_num_threads()
        # A matrix-product refresh of m centers takes (m + 2) rows of at most tile_rows(m) + 2
        # lines, not monotonically in m; m x tile_rows(m) <= max(TILE_ELEMENTS, 128 m) and
        # tile_rows(m) <= 512 bound it for every m up to max_pending.
        pad = 2 * 64 // X.itemsize
        gemm = max(_k.TILE_ELEMENTS, 128 * max_pending) + 2 * 512 + (max_pending + 2) * pad
        scratch = n_workers * max(
            _k.scratch_size(blocked, width, X.itemsize) if width else 0, gemm
        )
        with _single_threaded_blas():
            done = _k.kmeanspp_plain(
                X, weights, uniforms, indices, PLAIN_PROPOSALS, max_pending,
                np.empty(n, dtype=np.float64), np.empty(n, dtype=np.float64),
                np.empty((max_pending, d), dtype=X.dtype), np.empty(max_pending, dtype=X.dtype),
                np.empty((blocked, width), dtype=X.dtype), np.empty(scratch, dtype=X.dtype),
                (0,) * width, np.empty(n, dtype=np.intp), np.empty(n, dtype=np.float64),
                np.empty(n_workers, dtype=np.float64),
            )
        if done < n_centers:
            raise too_few_points(done, n_centers)


def _unit(weights: np.ndarray, n_rows: int) -> np.ndarray:
    """The seeding kernels read a weight per row: ones where none were given."""
    return np.ones(n_rows) if weights.shape[0] == 0 else weights
