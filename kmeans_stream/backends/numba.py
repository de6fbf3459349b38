"""JIT kernels for the CPU: the interface of `kmeans_stream.backends.numpy`, compiled with numba.

The compiled functions live in `kmeans_stream.backends._numba_assign` (assignment, streaming,
Lloyd) and `kmeans_stream.backends._numba_seed` (k-means++), all ``cache=True``, so a new process
loads them from disk instead of compiling. This class checks and allocates; the kernels fill.
``X`` keeps its dtype (float32 or float64) throughout; counts, weights and losses are float64.
An IN array that is not C-contiguous, or centers of another dtype, are copied once; an INOUT
array (``centers``, ``counts`` of `stream_batches`) must already have the right dtype and be
C-contiguous, since the update happens in place.

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

from . import _numba_assign as _k
from . import _numba_seed as _seed
from .numpy import PLAIN_PROPOSALS, plain_max_pending

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


def _check_X(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64) or X.ndim != 2:
        raise TypeError(
            f"backend='numba' kernels take a 2-D float32 or float64 X; got {X.dtype} with "
            f"shape {X.shape}."
        )
    return np.ascontiguousarray(X)


def _check_inout(name: str, array: np.ndarray, dtype: np.dtype) -> None:
    if array.dtype != dtype or not array.flags.c_contiguous or not array.flags.writeable:
        raise ValueError(
            f"{name} is updated in place and must be a writeable C-contiguous {np.dtype(dtype)} "
            f"array; got {array.dtype}, C-contiguous={array.flags.c_contiguous}."
        )


def _check_uniforms(uniforms: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The seeding kernels read uniforms unchecked: its shape is checked here."""
    uniforms = np.ascontiguousarray(uniforms, dtype=np.float64)
    if uniforms.shape != shape:
        raise ValueError(f"uniforms must have shape {shape}; got {uniforms.shape}.")
    return uniforms


def _all_seeded(indices: np.ndarray, done: int) -> np.ndarray:
    """The indices, once a seeding kernel's `done` steps are all of them."""
    if done < len(indices):
        raise ValueError(
            f"k-means++ found only {done} distinct weighted points for {len(indices)} centers"
        )
    return indices


class _Workspace:
    """Per-call scratch: one tile and one set of partial sums per worker, allocated once."""

    def __init__(self, dtype: np.dtype, n_centers: int, n_features: int, rows: int,
                 accumulate: bool = True, distances: bool = True) -> None:
        n_workers = numba.get_num_threads()
        dtype = np.dtype(dtype)
        most = 2 ** (np.finfo(dtype).nmant + 1)  # labels travel as float codes, exact up to it
        if n_centers > most:
            raise ValueError(f"backend='numba' takes at most {most} centers for {dtype} data; "
                             f"got {n_centers}.")
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
        self.sq_dist = np.empty(rows if distances else 0, dtype=np.float64)
        shape = (n_workers, n_centers) if accumulate else (0, 0)
        self.sums = np.empty((*shape, n_features), dtype=np.float64)
        self.mass = np.empty(shape, dtype=np.float64)
        self.losses = np.empty(n_workers, dtype=np.float64)

    def buffers(self) -> tuple:
        """The arguments every assigning kernel takes after the centers, up to the labels."""
        return self.c_norms, self.cm2, self.scratch, self.width

    def blas_context(self):
        return _single_threaded_blas() if self.gemm else nullcontext()


class NumbaKernels:
    """The kernel interface of `kmeans_stream.backends.numpy.NumpyKernels`, JIT-compiled."""

    name = "numba"

    def assign_labels(self, X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest center of each row: (labels intp, squared distance float64)."""
        X = _check_X(X)
        centers = np.ascontiguousarray(centers, dtype=X.dtype)
        ws = _Workspace(X.dtype, centers.shape[0], X.shape[1], X.shape[0], accumulate=False)
        with ws.blas_context():
            _k.assign_labels(X, centers, *ws.buffers(), ws.labels, ws.sq_dist, ws.losses)
        return ws.labels, ws.sq_dist

    def nearest(self, X: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> bool:
        """OUT labels: nearest center of each row, without distances; False if a row of X is
        not finite (its scores were not)."""
        X = _check_X(X)
        if labels.shape != (X.shape[0],) or labels.dtype not in (np.int32, np.int64):
            raise ValueError(f"labels must be int32 or int64 of shape ({X.shape[0]},); got "
                             f"{labels.dtype} {labels.shape}.")
        _check_inout("labels", labels, labels.dtype)
        centers = np.ascontiguousarray(centers, dtype=X.dtype)
        ws = _Workspace(X.dtype, centers.shape[0], X.shape[1], 0, accumulate=False,
                        distances=False)
        with ws.blas_context():
            total = _k.assign_labels(X, centers, *ws.buffers(), labels, ws.sq_dist, ws.losses)
        return bool(np.isfinite(total))

    def transform(self, X: np.ndarray, centers: np.ndarray) -> np.ndarray:
        """Euclidean distance of each row to each center: (n_samples, n_centers), X's dtype."""
        X = _check_X(X)
        centers = np.ascontiguousarray(centers, dtype=X.dtype)
        out = np.empty((X.shape[0], centers.shape[0]), dtype=X.dtype)
        _k.transform(X, centers, out)
        return out

    def stream_batches(
        self,
        X: np.ndarray,
        batch_size: int,
        centers: np.ndarray,
        counts: np.ndarray,
        half_life: int,
    ) -> None:
        """SageMaker's streaming update over `X` in mini-batches; INOUT centers and counts."""
        X = _check_X(X)
        _check_inout("centers", centers, X.dtype)
        _check_inout("counts", counts, np.float64)
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        ws = _Workspace(X.dtype, centers.shape[0], X.shape[1], min(batch_size, X.shape[0]),
                        distances=False)
        with ws.blas_context():
            _k.stream_batches(
                X, batch_size, centers, counts, float(half_life), *ws.buffers(), ws.labels,
                ws.sums, ws.mass, ws.losses,
            )

    def kmeanspp(
        self, X: np.ndarray, weights: np.ndarray, n_centers: int, uniforms: np.ndarray
    ) -> np.ndarray:
        """Greedy weighted k-means++ seeding in X's dtype; the row indices of the chosen centers."""
        X = _check_X(X)
        weights = np.ascontiguousarray(weights, dtype=np.float64)
        uniforms = _check_uniforms(uniforms, (n_centers, max(1, np.shape(uniforms)[-1])))
        n = X.shape[0]
        n_cand = uniforms.shape[1]
        n_workers = numba.get_num_threads()
        indices = np.empty(n_centers, dtype=np.intp)
        done = _seed.kmeanspp(
            X, weights, uniforms, indices,
            np.empty((X.shape[1], n_centers), dtype=X.dtype),
            np.empty(n, dtype=np.float64),
            np.empty(n, dtype=np.int32),
            np.empty(-(-n // _seed.PP_BLOCK), dtype=np.float64),
            np.empty((n_cand, n_centers), dtype=X.dtype),
            np.empty((n_cand + 1, n_centers), dtype=np.bool_),
            np.empty(n_centers, dtype=np.float64),
            np.empty((n_workers, n_cand), dtype=np.float64),
            np.empty((n_workers, n_centers), dtype=np.float64),
        )
        return _all_seeded(indices, done)

    def kmeanspp_plain(
        self, X: np.ndarray, weights: np.ndarray, n_centers: int, uniforms: np.ndarray
    ) -> np.ndarray:
        """Plain weighted k-means++ drawn lazily, by NumpyKernels.kmeanspp_plain's rules."""
        X = _check_X(X)
        weights = np.ascontiguousarray(weights, dtype=np.float64)
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
        indices = np.empty(n_centers, dtype=np.intp)
        with _single_threaded_blas():
            done = _seed.kmeanspp_plain(
                X, weights, uniforms, indices, PLAIN_PROPOSALS, max_pending,
                np.empty(n, dtype=np.float64), np.empty(n, dtype=np.float64),
                np.empty((max_pending, d), dtype=X.dtype), np.empty(max_pending, dtype=X.dtype),
                np.empty((blocked, width), dtype=X.dtype), np.empty(scratch, dtype=X.dtype),
                (0,) * width, np.empty(n, dtype=np.intp), np.empty(n, dtype=np.float64),
                np.empty(n_workers, dtype=np.float64),
            )
        return _all_seeded(indices, done)

    def lloyd(
        self,
        X: np.ndarray,
        weights: np.ndarray,
        centers: np.ndarray,
        max_iter: int,
        tol: float,
    ) -> tuple[np.ndarray, float, int]:
        """Weighted Lloyd from `centers` (not modified): (centers, weighted loss, n_iter)."""
        X = _check_X(X)
        weights = np.ascontiguousarray(weights, dtype=np.float64)
        centers = np.array(centers, dtype=X.dtype, order="C")
        ws = _Workspace(X.dtype, centers.shape[0], X.shape[1], X.shape[0])
        with ws.blas_context():
            loss, n_iter = _k.lloyd(
                X, weights, centers, int(max_iter), float(tol), *ws.buffers(), ws.labels,
                ws.sq_dist, ws.sums, ws.mass, ws.losses,
            )
        return centers, float(loss), int(n_iter)
