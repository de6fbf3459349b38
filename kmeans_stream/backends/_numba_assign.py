"""The assigning @njit kernels behind `kmeans_stream.backends.numba.NumbaKernels`.

Every parallel kernel cuts its rows into one contiguous chunk per worker (``prange`` over the
first axis of a per-worker scratch), so each worker owns its slice of the scratch and its partial
sums; a serial reduce follows. No worker ever writes a center row.

The assignment ranks centers by ``||c||^2 - 2 x.c`` (``||x||^2`` does not change the argmin) and
then, where distances are wanted, computes the winner's true squared distance directly,
``sum (x - c)^2`` in float64, since the expanded form loses digits to cancellation in float32.
Two ways to get the scores, neither of which ever holds an ``n_samples x K`` matrix:

- d up to 32 and small ``K * d`` (`BLOCKED_MAX_WORK`): the blocked kernel. A tile of rows is
  transposed to ``(width, rows)``, features zero-padded to a `width` of `BLOCKED_WIDTHS`, so
  that a center's score for a vector of rows is ``width`` FMAs kept in one register: the width
  is the length of a tuple argument, a compile-time constant, so the feature loop unrolls and
  the loop over rows vectorises (one compiled variant per width and dtype).
- larger ``K * d``: a matrix product per tile of rows (numba's ``np.dot`` calls one
  single-threaded BLAS sgemm/dgemm per tile), then an argmin over the tile along its rows.

A worker's scratch holds its tile, then the best score and the label (as a float code) of each
row of the tile. Its rows are `row_stride` elements apart, an odd multiple of 64 bytes, so the
stores of scores never alias the tile's loads modulo 4 KiB (which stalled the blocked kernel to
half speed whenever the allocator placed them so).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# stumpy's flag set: no nnan/ninf, since argmins start at +inf.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# The blocked kernel is used while the padded multiply-adds per row (K * width) are at most
# this, else the matrix product. Measured with `nearest` (2 threads, float32, 16M elements of X,
# quiet machine): the blocked kernel is faster at every K * d up to 2048 for d <= 16 (1.3-2.4x
# for d <= 8, e.g. d=8, K=128: 31 against 66 ms), the two tie at 4096 for d=16 (78 against 79
# ms) and at 2048-4096 for d=32 (27 against 25 ms, 40 against 42 ms).
BLOCKED_MAX_WORK = 4096
# Feature widths of the blocked kernel: d is zero-padded up to the first that holds it; wider
# rows take the matrix product.
BLOCKED_WIDTHS = (4, 8, 16, 32)
# Rows per transposed tile of the blocked kernel (measured 64..256: 128 best on 1M x 16, K=16).
BLOCK_ROWS = 128
# A worker's (K, tile) block of dot products holds about this many elements (half of a 1 MiB L2
# in float32); tiles are kept between 128 and 512 rows (measured on K = 16 .. 1024).
TILE_ELEMENTS = 2**17
# Below this many multiply-adds a kernel runs on one thread: waking the workers costs more.
# Measured on the quiet machine (omp launch ~2 us): a 5000-row batch of 1M x 16, K=16 (1.3M
# multiply-adds) streams 30% faster in parallel (26 -> 18 ms a pass); 2**16 gained nothing more
# on the benchmark shapes and would wake the workers for tiny predicts under load.
PARALLEL_MIN_WORK = 2**18


def feature_width(n_features):
    """The first of BLOCKED_WIDTHS that holds n_features, or 0 (too wide for the kernel)."""
    return next((w for w in BLOCKED_WIDTHS if w >= n_features), 0)


def blocked_width(n_centers, n_features):
    """The blocked kernel's padded feature width, or 0 where the matrix product is used."""
    width = feature_width(n_features)
    return width if n_centers * width <= BLOCKED_MAX_WORK else 0


@njit(cache=True)
def tile_rows(n_centers, width):
    """Rows of X per tile: BLOCK_ROWS for the blocked kernel, else by the dot-product block."""
    if width:
        return BLOCK_ROWS
    return min(512, max(128, TILE_ELEMENTS // max(n_centers, 1)))


@njit(cache=True)
def row_stride(rows, itemsize):
    """rows rounded up to an odd multiple of 64 bytes (in elements of itemsize bytes)."""
    lines = -(-rows * itemsize // 64)
    return (lines | 1) * 64 // itemsize


@njit(cache=True)
def scratch_size(n_centers, width, itemsize):
    """Elements of one worker's scratch: tile (width rows, or K rows of dots), scores, labels."""
    rows = tile_rows(n_centers, width)
    stride = row_stride(rows, itemsize)
    return ((width if width else n_centers) + 2) * stride


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
    if cm2.shape[1] > 0:
        cm2[:] = 0.0
        for j in range(C.shape[0]):
            for f in range(C.shape[1]):
                cm2[j, f] = -2.0 * C[j, f]


@jit()
def _split(scratch, tile_height):
    """A worker's scratch as (tile (tile_height, stride), best (stride,), codes (stride,))."""
    stride = scratch.shape[0] // (tile_height + 2)
    tile = scratch[: tile_height * stride].reshape((tile_height, stride))
    best = scratch[tile_height * stride : (tile_height + 1) * stride]
    codes = scratch[(tile_height + 1) * stride : (tile_height + 2) * stride]
    return tile, best, codes


@jit()
def _blocked_scores(xt, m, cm2, c_norms, best, codes, width):
    """best, codes OUT: min over centers of ||c||^2 - 2 x.c for the m rows of xt (transposed)."""
    for r in range(m):
        best[r] = np.inf
        codes[r] = 0.0
    for j in range(cm2.shape[0]):
        cn = c_norms[j]
        code = best.dtype.type(j)
        for r in range(m):
            s = cn
            for f in range(len(width)):
                s += cm2[j, f] * xt[f, r]
            closer = s < best[r]
            best[r] = s if closer else best[r]
            codes[r] = code if closer else codes[r]


@jit()
def _transpose(X, t0, m, xt, width):
    """xt[f, r] = X[t0 + r, f]; with d == width the feature loop has a constant trip count."""
    if X.shape[1] == len(width):
        for r in range(m):
            for f in range(len(width)):
                xt[f, r] = X[t0 + r, f]
    else:
        for r in range(m):
            for f in range(X.shape[1]):
                xt[f, r] = X[t0 + r, f]


@jit()
def _gemm_scores(X, t0, m, C, c_norms, dots, best, codes):
    """best, codes OUT: min over centers of ||c||^2 - 2 x.c for rows t0:t0+m, by sgemm/dgemm."""
    D = dots.reshape(dots.size)[: C.shape[0] * m].reshape((C.shape[0], m))
    # Centers by rows of the tile, so the argmin below runs along contiguous rows and
    # vectorises as elementwise selects (a float min-reduction would need nnan).
    np.dot(C, X[t0 : t0 + m].T, D)
    two = X.dtype.type(2.0)
    for r in range(m):
        best[r] = np.inf
        codes[r] = 0.0
    n_pairs = C.shape[0] // 2
    for p in range(n_pairs):
        j = 2 * p
        cn0, cn1 = c_norms[j], c_norms[j + 1]
        code0, code1 = best.dtype.type(j), best.dtype.type(j + 1)
        for r in range(m):
            s0 = cn0 - two * D[j, r]
            s1 = cn1 - two * D[j + 1, r]
            b = best[r]
            c = codes[r]
            closer = s0 < b
            b = s0 if closer else b
            c = code0 if closer else c
            closer = s1 < b
            best[r] = s1 if closer else b
            codes[r] = code1 if closer else c
    if C.shape[0] % 2:
        j = C.shape[0] - 1
        cn = c_norms[j]
        code = best.dtype.type(j)
        for r in range(m):
            score = cn - two * D[j, r]
            closer = score < best[r]
            best[r] = score if closer else best[r]
            codes[r] = code if closer else codes[r]


@jit()
def _assign_range(X, start, stop, base, C, c_norms, cm2, scratch, width, labels, sq_dist):
    """Rows start:stop of X; their labels (and sq_dist, unless empty) go to index row - base.

    A non-empty width selects the blocked kernel, else the matrix product. Returns the sum of
    the rows' squared distances, or without sq_dist the sum of their scores (either is not
    finite when a row of X is not).
    """
    exact = sq_dist.shape[0] > 0
    rows = len(width) if len(width) > 0 else C.shape[0]
    tile, best, codes = _split(scratch, rows)
    if len(width) > 0:
        tile[X.shape[1]:] = 0.0  # padded features: zero times the zero padding of cm2
    step = tile_rows(C.shape[0], len(width))
    total = 0.0
    for t0 in range(start, stop, step):
        m = min(stop, t0 + step) - t0
        if len(width) > 0:
            _transpose(X, t0, m, tile, width)
            _blocked_scores(tile, m, cm2, c_norms, best, codes, width)
        else:
            _gemm_scores(X, t0, m, C, c_norms, tile, best, codes)
        for r in range(m):
            labels[t0 - base + r] = np.intp(codes[r])
        if exact:
            for r in range(m):
                d2 = _exact_sq(X, t0 + r, C, np.intp(codes[r]))
                sq_dist[t0 - base + r] = d2
                total += d2
        else:
            for r in range(m):
                total += best[r]
    return total


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
def _assign_labels_par(X, C, c_norms, cm2, scratch, width, labels, sq_dist, totals):
    n_chunks = scratch.shape[0]
    for t in prange(n_chunks):
        lo, hi = _chunk(0, X.shape[0], n_chunks, t)
        totals[t] = _assign_range(X, lo, hi, 0, C, c_norms, cm2, scratch[t], width, labels,
                                  sq_dist)


@jit()
def assign_labels(X, C, c_norms, cm2, scratch, width, labels, sq_dist, totals):
    """OUT labels and sq_dist (unless empty): nearest center of each row. Returns the sum of
    sq_dist, or without it the sum of the ranking scores (not finite iff a row is not)."""
    prepare_centers(C, c_norms, cm2)
    if _parallel(X.shape[0], C):
        _assign_labels_par(X, C, c_norms, cm2, scratch, width, labels, sq_dist, totals)
        return totals.sum()
    return _assign_range(X, 0, X.shape[0], 0, C, c_norms, cm2, scratch[0], width, labels,
                         sq_dist)


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
    """sums[j] = sum w_i x_i, mass[j] = sum w_i over rows lo:hi; returns sum w_i sq_dist_i
    (0 when sq_dist is empty)."""
    sums[:] = 0.0
    mass[:] = 0.0
    loss = 0.0
    for i in range(lo, hi):
        j = labels[i - base]
        w = weights[i] if weights.shape[0] > 0 else 1.0
        for f in range(X.shape[1]):
            sums[j, f] += w * X[i, f]
        mass[j] += w
        if sq_dist.shape[0] > 0:
            loss += w * sq_dist[i - base]
    return loss


@jit(parallel=True)
def _assign_accumulate_par(X, start, stop, weights, C, c_norms, cm2, scratch, width, labels,
                           sq_dist, sums, mass, losses):
    n_chunks = scratch.shape[0]
    for t in prange(n_chunks):
        lo, hi = _chunk(start, stop, n_chunks, t)
        _assign_range(X, lo, hi, start, C, c_norms, cm2, scratch[t], width, labels, sq_dist)
        losses[t] = _accumulate(X, lo, hi, start, weights, labels, sq_dist, sums[t], mass[t])


@jit()
def _assign_accumulate(X, start, stop, weights, C, c_norms, cm2, scratch, width, labels,
                       sq_dist, sums, mass, losses):
    """Rows start:stop: labels, then each worker's partial weighted sums (sums[t], mass[t]).

    Returns the number of workers whose partial sums are to be reduced.
    """
    prepare_centers(C, c_norms, cm2)
    if _parallel(stop - start, C):
        _assign_accumulate_par(X, start, stop, weights, C, c_norms, cm2, scratch, width, labels,
                               sq_dist, sums, mass, losses)
        return scratch.shape[0]
    _assign_range(X, start, stop, start, C, c_norms, cm2, scratch[0], width, labels, sq_dist)
    losses[0] = _accumulate(X, start, stop, start, weights, labels, sq_dist, sums[0], mass[0])
    return 1


@jit()
def stream_batches(X, batch_size, C, counts, half_life, c_norms, cm2, scratch, width, labels,
                   sums, mass, losses):
    """SageMaker's running-mean update per mini-batch; INOUT C (X's dtype) and counts."""
    n_samples, d = X.shape
    no_weights = np.empty(0, dtype=np.float64)
    no_distances = np.empty(0, dtype=np.float64)
    for b0 in range(0, n_samples, batch_size):
        b1 = min(n_samples, b0 + batch_size)
        used = _assign_accumulate(X, b0, b1, no_weights, C, c_norms, cm2, scratch, width,
                                  labels, no_distances, sums, mass, losses)
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
def lloyd(X, weights, C, max_iter, tol, c_norms, cm2, scratch, width, labels, sq_dist, sums,
          mass, losses):
    """Weighted Lloyd from C (INOUT) until the relative loss change is <= tol; (loss, n_iter)."""
    n_samples, d = X.shape
    used = _assign_accumulate(X, 0, n_samples, weights, C, c_norms, cm2, scratch, width,
                              labels, sq_dist, sums, mass, losses)
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
        used = _assign_accumulate(X, 0, n_samples, weights, C, c_norms, cm2, scratch, width,
                                  labels, sq_dist, sums, mass, losses)
        previous = loss
        loss = losses[:used].sum()
        if previous - loss <= tol * previous:
            break
    return loss, n_iter
