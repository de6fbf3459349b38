"""The host side of the cupy backend: argument checks, the workspace, the pipeline that streams
host rows to the device, and the host kernels that small seeding and Lloyd problems run on.

CuPy is imported only inside functions, so this module imports without it.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .base import PLAIN_PROPOSALS, decay_factor, plain_max_pending

NULL = np.uint64(0)  # a null pointer kernel argument


def cupy() -> Any:
    import cupy

    return cupy


def is_device(A: Any) -> bool:
    return isinstance(A, cupy().ndarray)


def arg(A: Any) -> Any:
    """A kernel argument: the array, or a null pointer for None."""
    return NULL if A is None else A


def to_host(v: Any) -> Any:
    """None, or v as a numpy array (a copy from the device where it lives there)."""
    return None if v is None else (cupy().asnumpy(v) if is_device(v) else v)


# -------------------------------------------------------------------- host kernels
@functools.cache
def host_kernels(prefer: str = "numba") -> Any:
    """The kernels small problems run on the host: numba's (`prefer` "numba", where numba
    imports and its kernels load), else the numpy reference."""
    if prefer == "numba":
        try:
            from .numba import NumbaKernels

            return NumbaKernels()
        except Exception:  # numba missing, or one that fails to import here
            pass
    from .numpy import NumpyKernels

    return NumpyKernels()


def too_few_points(found: int, n_centers: int) -> ValueError:
    return ValueError(
        f"k-means++ found only {found} distinct weighted points for {n_centers} centers"
    )


def draw(cumulative: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Indices drawn with probability proportional to the increments of `cumulative` (the
    numpy reference's rule)."""
    picks = np.searchsorted(cumulative, uniforms * cumulative[-1], side="right")
    return np.minimum(picks, len(cumulative) - 1)


def plain_lazy(X64: np.ndarray, w: np.ndarray, uniforms: np.ndarray, indices: np.ndarray,
               refresh: Any) -> None:
    """The numpy reference's lazy plain k-means++, step for step, with `refresh(pending)`
    returning the refreshed distances (the one pass over X per group of centers) and the
    distances to the pending centers taken for all of them at once (the same sums)."""
    n_centers = len(indices)
    max_pending = plain_max_pending(len(X64))
    indices[0] = draw(np.cumsum(w), uniforms[0, :1])[0]
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
                raise too_few_points(step, n_centers)
            i = int(draw(cumulative, uniforms[step, 2 * r:2 * r + 1])[0])
            now = closest[i]
            if pending:
                now = min(now, float(((X64[pending] - X64[i]) ** 2).sum(axis=1).min()))
            tried += 1
            if uniforms[step, 2 * r + 1] * closest[i] < now:
                indices[step] = i
                pending.append(i)
                taken += 1
                break


# -------------------------------------------------------------------- workspace and pipeline
class Workspace:
    """Device scratch of one fit (or predict call), made once and reused by every call.

    Buffers are made on first use and kept, grown only if a later call needs more; the host
    pipeline (pinned buffers, a copy stream) is made on the first call with host rows.
    """

    def __init__(self, dtype: Any, n_features: int) -> None:
        self.dtype = np.dtype(dtype)
        self.n_features = n_features
        self.plans: dict[int, Any] = {}
        self._buffers: dict[str, Any] = {}
        self._pipeline: Pipeline | None = None

    def buffer(self, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """A device array of `shape` (a view of a buffer kept under `name`)."""
        size = math.prod(shape)
        have = self._buffers.get(name)
        if have is None or have.size < size or have.dtype != np.dtype(dtype):
            have = cupy().empty(max(size, 1), dtype=dtype)
            self._buffers[name] = have
        return have[:size].reshape(shape)

    def zeroed(self, name: str, shape: tuple[int, ...], dtype: Any = np.float64) -> Any:
        out = self.buffer(name, shape, dtype)
        out.fill(0)
        return out

    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            self._pipeline = Pipeline()
        return self._pipeline


class Pipeline:
    """Host rows to the device in double-buffered chunks on a copy stream: while chunk i is
    worked on (the current stream), chunk i + 1 is staged into pinned memory and copied."""

    def __init__(self) -> None:
        cp = cupy()
        self.copy_stream = cp.cuda.Stream(non_blocking=True)
        self.uploaded = [cp.cuda.Event(disable_timing=True) for _ in range(2)]
        self.computed = [cp.cuda.Event(disable_timing=True) for _ in range(2)]
        self._pinned: dict[Any, np.ndarray] = {}
        self._device: dict[Any, Any] = {}

    def pinned(self, key: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A host array of `shape` in pinned memory, kept under `key`."""
        size = math.prod(shape)
        have = self._pinned.get(key)
        if have is None or have.size < size or have.dtype != np.dtype(dtype):
            memory = cupy().cuda.alloc_pinned_memory(max(size, 1) * np.dtype(dtype).itemsize)
            have = np.frombuffer(memory, dtype=dtype, count=max(size, 1))
            self._pinned[key] = have
        return have[:size].reshape(shape)

    def device(self, key: Any, shape: tuple[int, ...], dtype: Any) -> Any:
        size = math.prod(shape)
        have = self._device.get(key)
        if have is None or have.size < size or have.dtype != np.dtype(dtype):
            have = cupy().empty(max(size, 1), dtype=dtype)
            self._device[key] = have
        return have[:size].reshape(shape)

    def run(self, X: np.ndarray, order: np.ndarray | None, chunk_rows: int, compute: Any) -> None:
        """Call ``compute(X_chunk_on_device, p0, p1)`` for the visit positions [p0, p1) of each
        chunk (rows ``X[order[p0:p1]]``, or ``X[p0:p1]``), on the current stream. It returns
        pairs (device array, host array) to copy back once the chunk is done."""
        cp = cupy()
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


def chunk_rows(X: np.ndarray, batch_size: int, n_visits: int, chunk_bytes: int) -> int:
    """Rows of one host chunk: whole batches, about `chunk_bytes` (at least one batch)."""
    row_bytes = max(1, X.shape[1] * X.dtype.itemsize)
    batches = max(1, chunk_bytes // (row_bytes * batch_size))
    return min(batches * batch_size, max(1, n_visits))


def decays(weights: Any, order: Any, n: int, batch_size: int, half_life: float) -> Any:
    """The decay factor of each batch (device float64), or None when half_life is 0.

    A batch's weight is its number of rows, or the sum of its weights in visit order, summed
    as the numpy reference sums them (where the batches are long enough for that to differ).
    """
    if not half_life > 0:
        return None
    cp = cupy()
    n_batches = -(-n // batch_size)
    if weights is None:
        out = np.full(n_batches, decay_factor(float(batch_size), half_life))
        out[-1] = decay_factor(float(n - (n_batches - 1) * batch_size), half_life)
        return cp.asarray(out)
    if is_device(weights):
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


# -------------------------------------------------------------------- checks
def check_X(X: Any) -> Any:
    """X as a C-contiguous 2-D float32/float64 array on its own side (numpy or CuPy)."""
    if is_device(X):
        ok = X.ndim == 2 and X.dtype in (np.float32, np.float64)
        out = cupy().ascontiguousarray(X) if ok else X
    else:
        X = np.asarray(X)
        ok = X.ndim == 2 and X.dtype in (np.float32, np.float64)
        out = np.ascontiguousarray(X) if ok else X
    if not ok:
        raise TypeError(f"backend='cupy' kernels take a 2-D float32 or float64 X; got "
                        f"{X.dtype} with shape {tuple(X.shape)}.")
    return out


def check_out(name: str, A: Any, shape: tuple[int, ...], dtypes: tuple) -> None:
    if (not hasattr(A, "shape") or tuple(A.shape) != shape
            or np.dtype(A.dtype) not in [np.dtype(t) for t in dtypes]
            or not A.flags.c_contiguous or (isinstance(A, np.ndarray) and not A.flags.writeable)):
        kinds = " or ".join(np.dtype(t).name for t in dtypes)
        got = (f"{A.dtype} {tuple(A.shape)}" if hasattr(A, "shape") else type(A).__name__)
        raise ValueError(f"{name} must be a writeable C-contiguous {kinds} array of shape "
                         f"{shape}; got {got}.")


def check_centers(centers: Any, dtype: Any, d: int) -> None:
    """INOUT centers: a writeable C-contiguous (n_centers >= 1, d) array of X's dtype."""
    n_centers = centers.shape[0] if getattr(centers, "ndim", 0) == 2 else 0
    check_out("centers", centers, (max(1, n_centers), d), (dtype,))


def check_vector(name: str, v: Any, n: int, dtype: Any) -> Any:
    """None, or v as a (n,) array of `dtype` on its own side."""
    if v is None:
        return None
    if is_device(v):
        v = cupy().ascontiguousarray(v, dtype=dtype)
    else:
        v = np.ascontiguousarray(v, dtype=dtype)
    if v.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},); got {tuple(v.shape)}.")
    return v


def check_order(order: Any, n: int) -> Any:
    """None, or order as int64 row indices (any number of them), every one in [0, n)."""
    if order is None:
        return None
    if is_device(order):
        kind, order = order.dtype.kind, cupy().ascontiguousarray(order)
    else:
        kind, order = np.asarray(order).dtype.kind, np.ascontiguousarray(order)
    if kind not in "iu" or order.ndim != 1:
        raise ValueError(f"order must be a 1-D integer array of row indices; got "
                         f"{order.dtype} with shape {tuple(order.shape)}.")
    order = order.astype(np.int64, copy=False)
    if len(order) and (int(order.min()) < 0 or int(order.max()) >= n):
        raise ValueError(f"order holds row indices outside [0, {n}).")
    return order


def check_uniforms(uniforms: np.ndarray, shape: tuple[int, int]) -> None:
    if uniforms.shape != shape:
        raise ValueError(f"uniforms must have shape {shape}; got {uniforms.shape}.")


def set_indices(indices: Any, picked: np.ndarray) -> None:
    if is_device(indices):
        indices[...] = cupy().asarray(picked)
    else:
        indices[...] = picked


def label_ctype(labels: Any) -> str:
    return "int" if labels.dtype == np.int32 else "long long"


def aligned(X: Any) -> bool:
    """Whether every row of X starts on 16 bytes (the kernels' vector loads)."""
    per_vector = 16 // X.dtype.itemsize
    return X.data.ptr % 16 == 0 and X.shape[1] % per_vector == 0
