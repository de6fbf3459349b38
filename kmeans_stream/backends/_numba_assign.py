"""The assigning @njit kernels behind `kmeans_stream.backends.numba.NumbaKernels`.

Every parallel kernel cuts its rows into one contiguous chunk per worker (``prange`` over the
first axis of a per-worker workspace), so each worker owns its slice of the workspace and its
partial sums; a serial reduce follows. No worker ever writes a center row.

The assignment ranks centers by ``||c||^2 - 2 x.c`` (``||x||^2`` does not change the argmin) and
then computes the winner's true squared distance directly, ``sum (x - c)^2`` in float64, since
the expanded form loses digits to cancellation in float32. Two ways to get the scores, neither
of which ever holds an ``n_samples x K`` matrix:

- small ``K * d`` (`BLOCKED_MAX_WORK`): the blocked kernel. A tile of rows is transposed to
  ``(d, rows)`` so that each score update is one vector FMA across rows (broadcast ``-2 c[j, f]``),
  four features per pass over the tile's accumulators, and the argmin over centers is a
  vectorised select across rows. A BLAS product with inner dimension 16 reaches ~20 GFLOP/s.
- larger ``K * d``: a matrix product per tile of rows (numba's ``np.dot`` calls one
  single-threaded BLAS sgemm/dgemm per tile), then the same argmin over the tile.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# stumpy's flag set: no nnan/ninf, since argmins start at +inf.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Up to this many multiply-adds per row (K * d) the blocked kernel is used, beyond it the matrix
# product. Measured (2 threads, float32, quiet machine): 1M x 4, K=8: 4.2 ms against 5.7 ms;
# 1M x 16, K=16: 15.3 against 14.7 ms; from K * d = 512 on the matrix product wins by 20-45%.
BLOCKED_MAX_WORK = 128
# Rows per transposed tile of the blocked kernel, and the features per pass over its scores.
BLOCK_ROWS = 256
FEATURE_STEP = 4
# A worker's (K, tile) block of dot products holds about this many elements (half of a 1 MiB L2
# in float32); tiles are kept between 128 and 512 rows (measured on K = 16 .. 1024).
TILE_ELEMENTS = 2**17
# Below this many multiply-adds a kernel runs on one thread: waking the workers costs more.
# Measured on the quiet machine (omp launch ~2 us): a 5000-row batch of 1M x 16, K=16 (1.3M
# multiply-adds) streams 30% faster in parallel (26 -> 18 ms a pass); 2**16 gained nothing more
# on the benchmark shapes and would wake the workers for tiny predicts under load.
PARALLEL_MIN_WORK = 2**18


def tile_rows(n_centers):
    """Rows of X per matrix-product tile for n_centers centers."""
    return min(512, max(128, TILE_ELEMENTS // max(n_centers, 1)))


def padded_features(n_features):
    """Columns of the blocked kernel's centers: n_features rounded up to FEATURE_STEP."""
    return -(-n_features // FEATURE_STEP) * FEATURE_STEP


def jit(parallel=False):
    """The one decorator of every kernel: cached, fastmath without nnan/ninf, nogil."""
    return njit(cache=True, fastmath=_FASTMATH, parallel=parallel, nogil=True)



@jit()
def sq_norms(A, out):
    """OUT out[j] = ||A[j]||^2 in A's dtype."""
    for j in range(A.shape[0]):
        s = A.dtype.type(0.0)
        for f in range(A.shape[1]):
            s += A[j, f] * A[j, f]
        out[j] = s


@jit()
def _exact_sq(X, i, C, j):
    s = 0.0
    for f in range(X.shape[1]):
        diff = np.float64(X[i, f]) - np.float64(C[j, f])
        s += diff * diff
    return s


@jit()
def prepare_centers(C, c_norms, cm2):
    """OUT c_norms = ||C[j]||^2; cm2 = -2 C zero-padded to its columns (blocked kernel only)."""
    sq_norms(C, c_norms)
    if cm2.shape[0] > 0:
        cm2[:] = 0.0
        for j in range(C.shape[0]):
            for f in range(C.shape[1]):
                cm2[j, f] = -2.0 * C[j, f]


@jit()
def _assign_blocked(X, start, stop, base, C, c_norms, cm2, scratch, best, labels, sq_dist):
    n_centers, dp = cm2.shape
    d = X.shape[1]
    rows = best.shape[0]
    xt = scratch[: dp * rows].reshape((dp, rows))
    acc = scratch[dp * rows : (dp + 1) * rows]
    xt[d:] = 0.0  # padded features: zero times the zero padding of cm2
    for t0 in range(start, stop, rows):
        m = min(stop, t0 + rows) - t0
        for r in range(m):
            for f in range(d):
                xt[f, r] = X[t0 + r, f]
        lab = labels[t0 - base : t0 - base + m]
        for r in range(m):
            best[r] = np.inf
            lab[r] = 0
        for j in range(n_centers):
            cn = c_norms[j]
            for r in range(m):
                acc[r] = cn
            # Four features per pass: one load and store of acc per four FMAs, since a pass
            # is bound by the stores of acc, which numba cannot keep in registers.
            for f in range(0, dp, FEATURE_STEP):
                a0, a1, a2, a3 = cm2[j, f], cm2[j, f + 1], cm2[j, f + 2], cm2[j, f + 3]
                x0, x1, x2, x3 = xt[f], xt[f + 1], xt[f + 2], xt[f + 3]
                for r in range(m):
                    acc[r] += a0 * x0[r] + a1 * x1[r] + a2 * x2[r] + a3 * x3[r]
            for r in range(m):
                closer = acc[r] < best[r]
                best[r] = acc[r] if closer else best[r]
                lab[r] = j if closer else lab[r]
        for r in range(m):
            sq_dist[t0 - base + r] = _exact_sq(X, t0 + r, C, lab[r])


@jit()
def _assign_gemm(X, start, stop, base, C, c_norms, dots, best, labels, sq_dist):
    n_centers = C.shape[0]
    two = X.dtype.type(2.0)
    for t0 in range(start, stop, best.shape[0]):
        t1 = min(stop, t0 + best.shape[0])
        m = t1 - t0
        # Centers by rows of the tile, so the argmin below runs along contiguous rows and
        # vectorises as elementwise selects (a float min-reduction would need nnan).
        D = dots[: n_centers * m].reshape((n_centers, m))
        np.dot(C, X[t0:t1].T, D)
        lab = labels[t0 - base : t1 - base]
        for r in range(m):
            best[r] = np.inf
            lab[r] = 0
        for j in range(n_centers):
            cn = c_norms[j]
            for r in range(m):
                score = cn - two * D[j, r]
                closer = score < best[r]
                best[r] = score if closer else best[r]
                lab[r] = j if closer else lab[r]
        for r in range(m):
            sq_dist[t0 - base + r] = _exact_sq(X, t0 + r, C, lab[r])


@jit()
def _assign_range(X, start, stop, base, C, c_norms, cm2, dots, best, labels, sq_dist):
    """Rows start:stop of X; their labels and sq_dist go to index row - base.

    cm2 with rows selects the blocked kernel (dots is then its transposed tile), else the
    matrix product (dots is the tile of dot products).
    """
    if cm2.shape[0] > 0:
        _assign_blocked(X, start, stop, base, C, c_norms, cm2, dots, best, labels, sq_dist)
    else:
        _assign_gemm(X, start, stop, base, C, c_norms, dots, best, labels, sq_dist)


@jit()
def _parallel(n_rows, C):
    """Whether the work is worth waking the workers for."""
    return n_rows * C.shape[0] * C.shape[1] >= PARALLEL_MIN_WORK


@jit()
def _chunk(start, stop, n_chunks, t):
    size = (stop - start + n_chunks - 1) // n_chunks
    lo = min(stop, start + t * size)
    return lo, min(stop, lo + size)


@jit(parallel=True)
def _assign_labels_par(X, C, c_norms, cm2, dots, best, labels, sq_dist):
    n_chunks = dots.shape[0]
    for t in prange(n_chunks):
        lo, hi = _chunk(0, X.shape[0], n_chunks, t)
        _assign_range(X, lo, hi, 0, C, c_norms, cm2, dots[t], best[t], labels, sq_dist)


@jit()
def assign_labels(X, C, c_norms, cm2, dots, best, labels, sq_dist):
    """OUT labels, sq_dist: nearest center of each row; dots[t], best[t] are worker t's tile."""
    prepare_centers(C, c_norms, cm2)
    if _parallel(X.shape[0], C):
        _assign_labels_par(X, C, c_norms, cm2, dots, best, labels, sq_dist)
    else:
        _assign_range(X, 0, X.shape[0], 0, C, c_norms, cm2, dots[0], best[0], labels, sq_dist)


@jit(parallel=True)
def transform(X, C, out):
    """OUT out[i, j] = ||X[i] - C[j]||, computed directly (no cancellation) in X's dtype."""
    n_centers, d = C.shape
    for i in prange(X.shape[0]):
        for j in range(n_centers):
            s = X.dtype.type(0.0)
            for f in range(d):
                diff = X[i, f] - C[j, f]
                s += diff * diff
            out[i, j] = np.sqrt(s)


@jit()
def _accumulate(X, lo, hi, base, weights, labels, sq_dist, sums, mass):
    """sums[j] = sum w_i x_i, mass[j] = sum w_i over rows lo:hi; returns sum w_i sq_dist_i."""
    sums[:] = 0.0
    mass[:] = 0.0
    loss = 0.0
    for i in range(lo, hi):
        j = labels[i - base]
        w = weights[i] if weights.shape[0] > 0 else 1.0
        for f in range(X.shape[1]):
            sums[j, f] += w * X[i, f]
        mass[j] += w
        loss += w * sq_dist[i - base]
    return loss


@jit(parallel=True)
def _assign_accumulate_par(X, start, stop, weights, C, c_norms, cm2, dots, best, labels, sq_dist,
                           sums, mass, losses):
    n_chunks = dots.shape[0]
    for t in prange(n_chunks):
        lo, hi = _chunk(start, stop, n_chunks, t)
        _assign_range(X, lo, hi, start, C, c_norms, cm2, dots[t], best[t], labels, sq_dist)
        losses[t] = _accumulate(X, lo, hi, start, weights, labels, sq_dist, sums[t], mass[t])


@jit()
def _assign_accumulate(X, start, stop, weights, C, c_norms, cm2, dots, best, labels, sq_dist,
                       sums, mass, losses):
    """Rows start:stop: labels, then each worker's partial weighted sums (sums[t], mass[t]).

    Returns the number of workers whose partial sums are to be reduced.
    """
    prepare_centers(C, c_norms, cm2)
    if _parallel(stop - start, C):
        _assign_accumulate_par(X, start, stop, weights, C, c_norms, cm2, dots, best, labels,
                               sq_dist, sums, mass, losses)
        return dots.shape[0]
    _assign_range(X, start, stop, start, C, c_norms, cm2, dots[0], best[0], labels, sq_dist)
    losses[0] = _accumulate(X, start, stop, start, weights, labels, sq_dist, sums[0], mass[0])
    return 1


@jit()
def stream_batches(X, batch_size, C, counts, half_life, c_norms, cm2, dots, best, labels,
                   sq_dist, sums, mass, losses):
    """SageMaker's running-mean update per mini-batch; INOUT C (X's dtype) and counts."""
    n_samples, d = X.shape
    no_weights = np.empty(0, dtype=np.float64)
    for b0 in range(0, n_samples, batch_size):
        b1 = min(n_samples, b0 + batch_size)
        used = _assign_accumulate(X, b0, b1, no_weights, C, c_norms, cm2, dots, best, labels,
                                  sq_dist, sums, mass, losses)
        decay = 2.0 ** (-(b1 - b0) / half_life) if half_life > 0 else 1.0
        for j in range(C.shape[0]):
            counts[j] *= decay
            m = 0.0
            for t in range(used):
                m += mass[t, j]
            if m > 0.0:
                share = m / (counts[j] + m)
                for f in range(d):
                    s = 0.0
                    for t in range(used):
                        s += sums[t, j, f]
                    C[j, f] = (1.0 - share) * C[j, f] + share * (s / m)
                counts[j] += m


@jit()
def lloyd(X, weights, C, max_iter, tol, c_norms, cm2, dots, best, labels, sq_dist, sums, mass,
          losses):
    """Weighted Lloyd from C (INOUT) until the relative loss change is <= tol; (loss, n_iter)."""
    n_samples, d = X.shape
    used = _assign_accumulate(X, 0, n_samples, weights, C, c_norms, cm2, dots, best, labels,
                              sq_dist, sums, mass, losses)
    loss = losses[:used].sum()
    n_iter = 0
    for it in range(1, max_iter + 1):
        n_iter = it
        for j in range(C.shape[0]):
            m = 0.0
            for t in range(used):
                m += mass[t, j]
            if m > 0.0:  # an empty cluster keeps its center
                for f in range(d):
                    s = 0.0
                    for t in range(used):
                        s += sums[t, j, f]
                    C[j, f] = s / m
        used = _assign_accumulate(X, 0, n_samples, weights, C, c_norms, cm2, dots, best, labels,
                                  sq_dist, sums, mass, losses)
        previous = loss
        loss = losses[:used].sum()
        if previous - loss <= tol * previous:
            break
    return loss, n_iter
