"""The @njit kernels behind `kmeans_stream.backends.numba.NumbaKernels`.

Every parallel kernel cuts its rows into one contiguous chunk per worker (``prange`` over the
first axis of a per-worker workspace), so each worker owns its slice of the workspace and its
partial sums; a serial reduce follows. No worker ever writes a center row.

The assignment ranks centers by ``||c||^2 - 2 x.c`` (``||x||^2`` does not change the argmin) and
then computes the winner's true squared distance directly, ``sum (x - c)^2`` in float64, since
the expanded form loses digits to cancellation in float32. Small ``d * K`` is done row by row
with the center block in registers; large ``K`` as a matrix product per tile of rows (numba's
``np.dot`` calls one single-threaded BLAS sgemm/dgemm per tile) followed by an argmin over the
tile, so no ``n_samples x K`` matrix ever exists.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# stumpy's flag set: no nnan/ninf, since argmins start at +inf.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# From this many multiply-adds per row (K * d) the assignment goes through the matrix product;
# measured faster from K = d = 16 on (1M, 16) data.
GEMM_MIN_WORK = 128
# A worker's (K, tile) block of dot products holds about this many elements (half of a 1 MiB L2
# in float32); tiles are kept between 128 and 512 rows (measured on K = 16 .. 1024).
TILE_ELEMENTS = 2**17


def tile_rows(n_centers):
    """Rows of X per matrix-product tile for n_centers centers."""
    return min(512, max(128, TILE_ELEMENTS // max(n_centers, 1)))
# Rows per block sum in k-means++ sampling.
PP_BLOCK = 1024
# Below this many multiply-adds a kernel runs on one thread: waking the workers costs more,
# and on a busy machine a parallel region can wait a whole scheduler time slice.
PARALLEL_MIN_WORK = 2**22
# Relative safety margin of the triangle-inequality skip in k-means++.
PP_MARGIN = 1.0001


def _jit(parallel=False):
    return njit(cache=True, fastmath=_FASTMATH, parallel=parallel, nogil=True)


@_jit()
def sq_norms(A, out):
    """OUT out[j] = ||A[j]||^2 in A's dtype."""
    for j in range(A.shape[0]):
        s = A.dtype.type(0.0)
        for f in range(A.shape[1]):
            s += A[j, f] * A[j, f]
        out[j] = s


@_jit()
def _exact_sq(X, i, C, j):
    s = 0.0
    for f in range(X.shape[1]):
        diff = np.float64(X[i, f]) - np.float64(C[j, f])
        s += diff * diff
    return s


@_jit()
def _assign_direct(X, start, stop, base, C, c_norms, labels, sq_dist):
    n_centers, d = C.shape
    two = X.dtype.type(2.0)
    for i in range(start, stop):
        best = np.inf
        arg = 0
        for j in range(n_centers):
            dot = X.dtype.type(0.0)
            for f in range(d):
                dot += X[i, f] * C[j, f]
            score = c_norms[j] - two * dot
            if score < best:
                best = score
                arg = j
        labels[i - base] = arg
        sq_dist[i - base] = _exact_sq(X, i, C, arg)


@_jit()
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


@_jit()
def _assign_range(X, start, stop, base, C, c_norms, dots, best, labels, sq_dist):
    """Rows start:stop of X; their labels and sq_dist go to index row - base."""
    if dots.shape[0] > 0:
        _assign_gemm(X, start, stop, base, C, c_norms, dots, best, labels, sq_dist)
    else:
        _assign_direct(X, start, stop, base, C, c_norms, labels, sq_dist)


@_jit()
def _parallel(n_rows, C):
    """Whether the work is worth waking the workers for."""
    return n_rows * C.shape[0] * C.shape[1] >= PARALLEL_MIN_WORK


@_jit()
def _chunk(start, stop, n_chunks, t):
    size = (stop - start + n_chunks - 1) // n_chunks
    lo = min(stop, start + t * size)
    return lo, min(stop, lo + size)


@_jit(parallel=True)
def _assign_labels_par(X, C, c_norms, dots, best, labels, sq_dist):
    n_chunks = dots.shape[0]
    for t in prange(n_chunks):
        lo, hi = _chunk(0, X.shape[0], n_chunks, t)
        _assign_range(X, lo, hi, 0, C, c_norms, dots[t], best[t], labels, sq_dist)


@_jit()
def assign_labels(X, C, c_norms, dots, best, labels, sq_dist):
    """OUT labels, sq_dist: nearest center of each row; dots[t], best[t] are worker t's tile."""
    sq_norms(C, c_norms)
    if _parallel(X.shape[0], C):
        _assign_labels_par(X, C, c_norms, dots, best, labels, sq_dist)
    else:
        _assign_range(X, 0, X.shape[0], 0, C, c_norms, dots[0], best[0], labels, sq_dist)


@_jit(parallel=True)
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


@_jit()
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


@_jit(parallel=True)
def _assign_accumulate_par(X, start, stop, weights, C, c_norms, dots, best, labels, sq_dist, sums,
                           mass, losses):
    n_chunks = dots.shape[0]
    for t in prange(n_chunks):
        lo, hi = _chunk(start, stop, n_chunks, t)
        _assign_range(X, lo, hi, start, C, c_norms, dots[t], best[t], labels, sq_dist)
        losses[t] = _accumulate(X, lo, hi, start, weights, labels, sq_dist, sums[t], mass[t])


@_jit()
def _assign_accumulate(X, start, stop, weights, C, c_norms, dots, best, labels, sq_dist, sums,
                       mass, losses):
    """Rows start:stop: labels, then each worker's partial weighted sums (sums[t], mass[t]).

    Returns the number of workers whose partial sums are to be reduced.
    """
    sq_norms(C, c_norms)
    if _parallel(stop - start, C):
        _assign_accumulate_par(X, start, stop, weights, C, c_norms, dots, best, labels, sq_dist,
                               sums, mass, losses)
        return dots.shape[0]
    _assign_range(X, start, stop, start, C, c_norms, dots[0], best[0], labels, sq_dist)
    losses[0] = _accumulate(X, start, stop, start, weights, labels, sq_dist, sums[0], mass[0])
    return 1


@_jit()
def stream_batches(X, batch_size, C, counts, half_life, c_norms, dots, best, labels, sq_dist,
                   sums, mass, losses):
    """SageMaker's running-mean update per mini-batch; INOUT C (X's dtype) and counts."""
    n_samples, d = X.shape
    no_weights = np.empty(0, dtype=np.float64)
    for b0 in range(0, n_samples, batch_size):
        b1 = min(n_samples, b0 + batch_size)
        used = _assign_accumulate(X, b0, b1, no_weights, C, c_norms, dots, best, labels,
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


@_jit()
def lloyd(X, weights, C, max_iter, tol, c_norms, dots, best, labels, sq_dist, sums, mass, losses):
    """Weighted Lloyd from C (INOUT) until the relative loss change is <= tol; (loss, n_iter)."""
    n_samples, d = X.shape
    used = _assign_accumulate(X, 0, n_samples, weights, C, c_norms, dots, best, labels, sq_dist,
                              sums, mass, losses)
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
        used = _assign_accumulate(X, 0, n_samples, weights, C, c_norms, dots, best, labels,
                                  sq_dist, sums, mass, losses)
        previous = loss
        loss = losses[:used].sum()
        if previous - loss <= tol * previous:
            break
    return loss, n_iter


@_jit()
def _sq_to(X, i, C, j):
    s = X.dtype.type(0.0)
    for f in range(X.shape[1]):
        diff = X[i, f] - C[j, f]
        s += diff * diff
    return np.float64(s)


@_jit()
def _draw(weights, closest, block_sums, target):
    """First row whose running sum of weight * closest exceeds target (numpy's searchsorted)."""
    n = closest.shape[0]
    acc = 0.0
    b = 0
    while b < block_sums.shape[0] - 1 and acc + block_sums[b] <= target:
        acc += block_sums[b]
        b += 1
    for i in range(b * PP_BLOCK, n):
        acc += weights[i] * closest[i]
        if acc > target:
            return i
    return n - 1


@_jit()
def _block_sum(weights, closest, b):
    s = 0.0
    for i in range(b * PP_BLOCK, min(closest.shape[0], (b + 1) * PP_BLOCK)):
        s += weights[i] * closest[i]
    return s


@_jit()
def _pp_gains_range(X, weights, cands, cc, closest, owner, lo, hi, gains):
    """gains[c] += the drop of the weighted potential over rows lo:hi if candidate c were added."""
    for i in range(lo, hi):
        limit = 4.0 * PP_MARGIN * closest[i]
        for c in range(cands.shape[0]):
            # Triangle inequality: ||c - c_owner|| >= 2 ||x - c_owner|| cannot get closer.
            if cc[c, owner[i]] > limit:
                continue
            dist = _sq_to(X, i, X, cands[c])
            if dist < closest[i]:
                gains[c] += weights[i] * (closest[i] - dist)


@_jit(parallel=True)
def _pp_gains_par(X, weights, cands, cc, closest, owner, gains):
    n_chunks = gains.shape[0]
    for t in prange(n_chunks):
        lo, hi = _chunk(0, X.shape[0], n_chunks, t)
        _pp_gains_range(X, weights, cands, cc, closest, owner, lo, hi, gains[t])


@_jit()
def _pp_add_range(X, weights, new, step, cc, closest, owner, block_sums, b_lo, b_hi):
    """Make row `new` the center of index `step` for blocks b_lo:b_hi of rows."""
    for b in range(b_lo, b_hi):
        changed = step == 0
        for i in range(b * PP_BLOCK, min(X.shape[0], (b + 1) * PP_BLOCK)):
            if step > 0 and cc[owner[i]] > 4.0 * PP_MARGIN * closest[i]:
                continue
            dist = _sq_to(X, i, X, new)
            if step == 0 or dist < closest[i]:
                closest[i] = dist
                owner[i] = step
                changed = True
        if changed:
            block_sums[b] = _block_sum(weights, closest, b)


@_jit(parallel=True)
def _pp_add_par(X, weights, new, step, cc, closest, owner, block_sums, n_chunks):
    for t in prange(n_chunks):
        b_lo, b_hi = _chunk(0, block_sums.shape[0], n_chunks, t)
        _pp_add_range(X, weights, new, step, cc, closest, owner, block_sums, b_lo, b_hi)


@_jit()
def _pp_add(X, weights, new, step, cc, closest, owner, block_sums, n_workers):
    """Make row `new` the center of index `step`: update closest, owner and the block sums."""
    if X.shape[0] * X.shape[1] >= PARALLEL_MIN_WORK:
        _pp_add_par(X, weights, new, step, cc, closest, owner, block_sums, n_workers)
    else:
        _pp_add_range(X, weights, new, step, cc, closest, owner, block_sums, 0,
                      block_sums.shape[0])


@_jit()
def _center_gaps(X, cands, C, n_chosen, cc):
    for c in range(cands.shape[0]):
        for s in range(n_chosen):
            cc[c, s] = _sq_to(X, cands[c], C, s)


@_jit()
def kmeanspp(X, weights, uniforms, indices, C, closest, owner, block_sums, cc, gains):
    """Greedy weighted k-means++; OUT indices, C (the chosen rows). Returns the steps done.

    Fewer steps than indices.shape[0] means the weighted potential reached 0 at that step.
    Each step reads only ``closest`` and ``owner`` for rows that the triangle inequality rules
    out, and one row of X for the others: no n_samples x K matrix, no copy of X.
    """
    n_centers = indices.shape[0]
    n_cand = uniforms.shape[1]
    cands = np.empty(n_cand, dtype=np.intp)
    closest[:] = 1.0
    for b in range(block_sums.shape[0]):
        block_sums[b] = _block_sum(weights, closest, b)
    first = _draw(weights, closest, block_sums, uniforms[0, 0] * block_sums.sum())
    indices[0] = first
    C[0] = X[first]
    n_workers = gains.shape[0]
    _pp_add(X, weights, first, 0, cc[0], closest, owner, block_sums, n_workers)
    for step in range(1, n_centers):
        total = block_sums.sum()
        if total <= 0.0:
            return step
        for c in range(n_cand):
            cands[c] = _draw(weights, closest, block_sums, uniforms[step, c] * total)
        _center_gaps(X, cands, C, step, cc)
        best = 0
        if n_cand > 1:
            gains[:] = 0.0
            if X.shape[0] * X.shape[1] * n_cand >= PARALLEL_MIN_WORK:
                _pp_gains_par(X, weights, cands, cc, closest, owner, gains)
            else:
                _pp_gains_range(X, weights, cands, cc, closest, owner, 0, X.shape[0], gains[0])
            gain = gains.sum(axis=0)
            for c in range(1, n_cand):
                if gain[c] > gain[best]:
                    best = c
        indices[step] = cands[best]
        C[step] = X[cands[best]]
        _pp_add(X, weights, cands[best], step, cc[best], closest, owner, block_sums, n_workers)
    return n_centers
