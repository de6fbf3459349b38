"""Every @njit kernel behind `kmeans_stream.backends.numba.NumbaKernels`, in one module.

One module on purpose: numba caches each function on disk keyed by its own source file, and a
cached function that calls a compiled function (or reads a constant) of another module does not
see that module change, so an edit there could run stale code with buffers sized by the new
constants. With the whole compiled call graph here, any edit invalidates all of it. (This makes
the module longer than the house's ~400 lines; the rule that keeps it correct wins.)

Assignment
----------
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

k-means++
---------
Two forms. `kmeanspp_plain` (the init: one candidate per step) draws lazily, by rejection from
the distances of the last refresh, and refreshes them for a group of new centers with one
assignment pass (`assign_labels`); its rules are the numpy reference's, see
`kmeans_stream.backends.numpy.NumpyKernels.kmeanspp_plain`. `kmeanspp` (the greedy form of the
reduction, several candidates per step) needs every row's current distance at every step to
score the candidates, and is described below. The reduction's trials run it on a few thousand
weighted points at most, all of them on the same points: `kmeanspp_table` runs them in
parallel, sharing one table of 16-bit lower bounds of the squared distances between the points
(`pp_table`), and computes exactly only the distances the bounds cannot rule out.

k-means++ takes k dependent steps; each step draws from weight x D(x) (D: squared distance to
the nearest chosen center) and then lowers D wherever the new center is closer. The state per
row is D (float64, the dtype numpy's reference draws with, so both backends pick the same rows)
and the index of that nearest center (int32); nothing of size n_samples x k exists.

A step reads as little as the triangle inequality allows. A new center c cannot be closer to a
row x of center j than c_j is when ||c - c_j|| >= 2 sqrt(D(x)), so:

- per center j the step keeps an upper bound of D over its rows (``max_sq``); when
  ||c - c_j||^2 > 4 max_sq[j], every row of j is skipped after reading its owner (4 bytes);
- otherwise the same test per row on D(x) skips reading the row of X.

Sampling keeps one sum of weight x D per block of `PP_BLOCK` rows, refreshed only for the
blocks whose rows changed, so a draw costs O(n_samples / PP_BLOCK + PP_BLOCK).
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
# From this many additions (centers x features x workers) a batch's running-mean update splits
# its centers among the workers rather than reducing the workers' partial sums on one thread.
MIX_PARALLEL_MIN_WORK = 2**16


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
def _row(visits, i):
    """The row of X that visit i reads: visits[i], or i itself where visits is empty."""
    return visits[i] if visits.shape[0] > 0 else i


@jit()
def _transpose(X, visits, t0, m, xt, width):
    """xt[f, r] = the row of visit t0 + r, feature f; with d == width the feature loop has a
    constant trip count. The test for visits stays outside the loops, which then vectorise."""
    if visits.shape[0] > 0:
        if X.shape[1] == len(width):
            for r in range(m):
                i = visits[t0 + r]
                for f in range(len(width)):
                    xt[f, r] = X[i, f]
        else:
            for r in range(m):
                i = visits[t0 + r]
                for f in range(X.shape[1]):
                    xt[f, r] = X[i, f]
    elif X.shape[1] == len(width):
        for r in range(m):
            for f in range(len(width)):
                xt[f, r] = X[t0 + r, f]
    else:
        for r in range(m):
            for f in range(X.shape[1]):
                xt[f, r] = X[t0 + r, f]


@jit()
def _gemm_scores(X, visits, t0, m, C, c_norms, dots, gathered, best, codes):
    """best, codes OUT: min over centers of ||c||^2 - 2 x.c for visits t0:t0+m, by
    sgemm/dgemm. Visited rows are first copied into `gathered` (the tile's rows only)."""
    D = dots.reshape(dots.size)[: C.shape[0] * m].reshape((C.shape[0], m))
    tile = X[t0 : t0 + m]
    if visits.shape[0] > 0:
        for r in range(m):
            gathered[r] = X[visits[t0 + r]]
        tile = gathered[:m]
    # Centers by rows of the tile, so the argmin below runs along contiguous rows and
    # vectorises as elementwise selects (a float min-reduction would need nnan).
    np.dot(C, tile.T, D)
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
def _assign_range(X, visits, start, stop, base, C, c_norms, cm2, scratch, gathered, width,
                  labels, sq_dist):
    """Visits start:stop (rows of X, or the rows `visits` lists); their labels (and sq_dist,
    unless empty) go to index visit - base.

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
            _transpose(X, visits, t0, m, tile, width)
            _blocked_scores(tile, m, cm2, c_norms, best, codes, width)
        else:
            _gemm_scores(X, visits, t0, m, C, c_norms, tile, gathered, best, codes)
        for r in range(m):
            labels[t0 - base + r] = np.intp(codes[r])
        if exact:
            for r in range(m):
                d2 = _exact_sq(X, _row(visits, t0 + r), C, np.intp(codes[r]))
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
    no_visits = np.empty(0, dtype=np.intp)
    no_rows = np.empty((0, X.shape[1]), dtype=X.dtype)
    for t in prange(n_chunks):
        lo, hi = _chunk(0, X.shape[0], n_chunks, t)
        totals[t] = _assign_range(X, no_visits, lo, hi, 0, C, c_norms, cm2, scratch[t],
                                  no_rows, width, labels, sq_dist)


@jit()
def assign_labels(X, C, c_norms, cm2, scratch, width, labels, sq_dist, totals):
    """OUT labels and sq_dist (unless empty): nearest center of each row. Returns the sum of
    sq_dist, or without it the sum of the ranking scores (not finite iff a row is not)."""
    prepare_centers(C, c_norms, cm2)
    if _parallel(X.shape[0], C):
        _assign_labels_par(X, C, c_norms, cm2, scratch, width, labels, sq_dist, totals)
        return totals.sum()
    return _assign_range(X, np.empty(0, dtype=np.intp), 0, X.shape[0], 0, C, c_norms, cm2,
                         scratch[0], np.empty((0, X.shape[1]), dtype=X.dtype), width, labels,
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
def _accumulate(X, visits, lo, hi, base, weights, labels, sq_dist, sums, mass):
    """sums[j] = sum w_i x_i, mass[j] = sum w_i over visits lo:hi; returns sum w_i sq_dist_i
    (0 when sq_dist is empty)."""
    sums[:] = 0.0
    mass[:] = 0.0
    loss = 0.0
    for i in range(lo, hi):
        j = labels[i - base]
        row = _row(visits, i)
        w = weights[row] if weights.shape[0] > 0 else 1.0
        for f in range(X.shape[1]):
            sums[j, f] += w * X[row, f]
        mass[j] += w
        if sq_dist.shape[0] > 0:
            loss += w * sq_dist[i - base]
    return loss


@jit(parallel=True)
def _assign_accumulate_par(X, visits, start, stop, weights, C, c_norms, cm2, scratch,
                           gathered, width, labels, sq_dist, sums, mass, losses):
    n_chunks = scratch.shape[0]
    for t in prange(n_chunks):
        lo, hi = _chunk(start, stop, n_chunks, t)
        _assign_range(X, visits, lo, hi, start, C, c_norms, cm2, scratch[t], gathered[t],
                      width, labels, sq_dist)
        losses[t] = _accumulate(X, visits, lo, hi, start, weights, labels, sq_dist, sums[t],
                                mass[t])


@jit()
def _assign_accumulate(X, visits, start, stop, weights, C, c_norms, cm2, scratch, gathered,
                       width, labels, sq_dist, sums, mass, losses):
    """Visits start:stop: labels, then each worker's partial weighted sums (sums[t], mass[t]).

    Returns the number of workers whose partial sums are to be reduced.
    """
    prepare_centers(C, c_norms, cm2)
    return _assign_accumulate_prepared(X, visits, start, stop, weights, C, c_norms, cm2,
                                       scratch, gathered, width, labels, sq_dist, sums, mass,
                                       losses)


@jit()
def _assign_accumulate_prepared(X, visits, start, stop, weights, C, c_norms, cm2, scratch,
                                gathered, width, labels, sq_dist, sums, mass, losses):
    """`_assign_accumulate` with c_norms and cm2 already prepared for C."""
    if _parallel(stop - start, C):
        _assign_accumulate_par(X, visits, start, stop, weights, C, c_norms, cm2, scratch,
                               gathered, width, labels, sq_dist, sums, mass, losses)
        return scratch.shape[0]
    _assign_range(X, visits, start, stop, start, C, c_norms, cm2, scratch[0], gathered[0],
                  width, labels, sq_dist)
    losses[0] = _accumulate(X, visits, start, stop, start, weights, labels, sq_dist, sums[0],
                            mass[0])
    return 1


@jit()
def _mix_batch(C, counts, half_life, sums, mass, used, c_norms, cm2):
    """The running-mean rule of spec section 0 from the workers' partial sums; INOUT C, counts;
    c_norms and cm2 prepared again for the new C.

    The batch's total weight, which sets the decay, is the sum of what its centers received.
    With much to reduce (centers x features x workers), the centers are split among the
    workers: each reduces and moves its own, so no worker waits on a serial reduce of all.
    """
    decay = 1.0
    if half_life > 0:
        total = 0.0
        for j in range(C.shape[0]):
            for t in range(used):
                total += mass[t, j]
        decay = 2.0 ** (-total / half_life)
    if C.shape[0] * C.shape[1] * used >= MIX_PARALLEL_MIN_WORK:
        _mix_par(C, counts, decay, sums, mass, used, c_norms, cm2)
    else:
        _mix_range(C, counts, decay, sums, mass, used, 0, C.shape[0])
        prepare_centers(C, c_norms, cm2)


@jit(parallel=True)
def _mix_par(C, counts, decay, sums, mass, used, c_norms, cm2):
    n_chunks = sums.shape[0]
    for t in prange(n_chunks):
        lo, hi = _chunk(0, C.shape[0], n_chunks, t)
        _mix_range(C, counts, decay, sums, mass, used, lo, hi)
        prepare_centers(C[lo:hi], c_norms[lo:hi], cm2[lo:hi])


@jit()
def _mix_range(C, counts, decay, sums, mass, used, lo, hi):
    """The centers lo:hi of `_mix_batch`."""
    for j in range(lo, hi):
        counts[j] *= decay
        m = 0.0
        for t in range(used):
            m += mass[t, j]
        if m > 0.0:
            share = m / (counts[j] + m)
            for f in range(C.shape[1]):
                s = 0.0
                for t in range(used):
                    s += sums[t, j, f]
                C[j, f] = (1.0 - share) * C[j, f] + share * (s / m)
            counts[j] += m


@jit()
def stream_batches(X, weights, order, batch_size, C, counts, half_life, c_norms, cm2, scratch,
                   gathered, width, labels, sums, mass, losses):
    """SageMaker's running-mean update per mini-batch; INOUT C (X's dtype) and counts.

    weights and order may be empty (unit weights; every row in X's own order). With an order,
    the rows it lists are visited, read in place (the matrix-product path copies a tile's
    rows into gathered, (n_workers, rows, d) scratch).
    """
    n_visits = order.shape[0] if order.shape[0] > 0 else X.shape[0]
    no_distances = np.empty(0, dtype=np.float64)
    prepare_centers(C, c_norms, cm2)
    for b0 in range(0, n_visits, batch_size):
        b1 = min(n_visits, b0 + batch_size)
        used = _assign_accumulate_prepared(X, order, b0, b1, weights, C, c_norms, cm2, scratch,
                                           gathered, width, labels, no_distances, sums, mass,
                                           losses)
        _mix_batch(C, counts, half_life, sums, mass, used, c_norms, cm2)


@jit()
def _move_to_means(C, sums, mass, used):
    """C[j] = the mean of its rows, from the partial sums of `used` workers; an empty cluster
    keeps its center."""
    for j in range(C.shape[0]):
        m = 0.0
        for t in range(used):
            m += mass[t, j]
        if m > 0.0:
            for f in range(C.shape[1]):
                s = 0.0
                for t in range(used):
                    s += sums[t, j, f]
                C[j, f] = s / m


# Centers per block of the products between centers in `_half_gaps`.
GAPS_BLOCK = 256


@jit()
def _half_gaps(C, half, slack):
    """half[j] OUT: a lower bound of half the distance from center j to its nearest other center
    (inf for a lone center). The gaps come from float64 products of the centers, less `slack`
    times ||a||^2 + ||b||^2 for their rounding; blocks of GAPS_BLOCK centers run in parallel
    when there is more than one."""
    C64 = C.astype(np.float64)
    norms = np.empty(C.shape[0], dtype=np.float64)
    sq_norms(C64, norms)
    if C.shape[0] > GAPS_BLOCK:
        _half_gaps_par(C64, norms, half, slack)
    else:
        _half_gaps_range(C64, norms, 0, C.shape[0], half, slack)


@jit(parallel=True)
def _half_gaps_par(C64, norms, half, slack):
    k = C64.shape[0]
    for blk in prange(-(-k // GAPS_BLOCK)):
        _half_gaps_range(C64, norms, blk * GAPS_BLOCK, min(k, (blk + 1) * GAPS_BLOCK), half,
                         slack)


@jit()
def _half_gaps_range(C64, norms, lo, hi, half, slack):
    """`_half_gaps` of the centers lo:hi."""
    k = C64.shape[0]
    dots = np.dot(C64[lo:hi], C64.T)
    for a in range(lo, hi):
        nearest = np.inf
        for b in range(k):
            if b != a:
                scale = norms[a] + norms[b]
                nearest = min(nearest, scale - 2.0 * dots[a - lo, b] - slack * scale)
        half[a] = 0.5 * np.sqrt(max(nearest, 0.0))


@jit()
def _kept_rows(X, C, labels, sq_dist, half, margin, kept, n_workers):
    """kept[i] OUT: row i's center is still its nearest, for certain: its distance to it is at
    most half the gap to the center's nearest other center (triangle inequality), by `margin`
    for rounding. sq_dist[i] OUT where kept: the distance, computed directly. In parallel when
    the rows are many."""
    if _parallel(X.shape[0], C[:1]):
        _kept_rows_par(X, C, labels, sq_dist, half, margin, kept, n_workers)
    else:
        _kept_range(X, C, labels, sq_dist, half, margin, kept, 0, X.shape[0])


@jit(parallel=True)
def _kept_rows_par(X, C, labels, sq_dist, half, margin, kept, n_chunks):
    for t in prange(n_chunks):
        lo, hi = _chunk(0, X.shape[0], n_chunks, t)
        _kept_range(X, C, labels, sq_dist, half, margin, kept, lo, hi)


@jit()
def _kept_range(X, C, labels, sq_dist, half, margin, kept, lo, hi):
    """`_kept_rows` of the rows lo:hi."""
    for i in range(lo, hi):
        j = labels[i]
        dist = _sq_to(X, i, C, j)
        kept[i] = dist * margin <= half[j] * half[j]
        if kept[i]:
            sq_dist[i] = dist


@jit()
def _bounded_pass(X, weights, C, c_norms, cm2, scratch, gathered, width, labels, sq_dist, sums,
                  mass, losses, half, kept, visits, visit_labels, visit_sq, margin, slack):
    """One assignment pass that computes every distance only for the rows `_kept_rows` cannot
    settle, then the weighted sums of every row; returns the workers whose sums count (1)."""
    n = X.shape[0]
    _half_gaps(C, half, slack)
    _kept_rows(X, C, labels, sq_dist, half, margin, kept, scratch.shape[0])
    m = 0
    for i in range(n):
        if not kept[i]:
            visits[m] = i
            m += 1
    if m > 0:
        _assign_accumulate(X, visits[:m], 0, m, weights, C, c_norms, cm2, scratch, gathered,
                           width, visit_labels, visit_sq, sums, mass, losses)
        for p in range(m):
            labels[visits[p]] = visit_labels[p]
            sq_dist[visits[p]] = visit_sq[p]
    losses[0] = _accumulate(X, visits[:0], 0, n, 0, weights, labels, sq_dist, sums[0],
                            mass[0])
    return 1


@jit()
def lloyd(X, weights, C, max_iter, tol, c_norms, cm2, scratch, gathered, width, labels, sq_dist,
          sums, mass, losses, half, kept, visits, visit_labels, visit_sq, margin, slack):
    """Weighted Lloyd from C (INOUT) until the relative loss change is <= tol; (loss, n_iter).

    The first pass computes every distance; the next ones only those of rows whose center may
    have lost them (`_bounded_pass`), the same labels at a fraction of the work once the
    centers settle. Scratch after sq_dist: half (k,), kept (n,) bool, visits, visit_labels
    (n,) intp, visit_sq (n,) float64; margin and slack: the rounding allowances of the skips.
    """
    n_samples = X.shape[0]
    no_visits = np.empty(0, dtype=np.intp)
    used = _assign_accumulate(X, no_visits, 0, n_samples, weights, C, c_norms, cm2, scratch,
                              gathered, width, labels, sq_dist, sums, mass, losses)
    loss = losses[:used].sum()
    n_iter = 0
    for it in range(1, max_iter + 1):
        n_iter = it
        _move_to_means(C, sums, mass, used)
        used = _bounded_pass(X, weights, C, c_norms, cm2, scratch, gathered, width, labels,
                             sq_dist, sums, mass, losses, half, kept, visits, visit_labels,
                             visit_sq, margin, slack)
        previous = loss
        loss = losses[:used].sum()
        if previous - loss <= tol * previous:
            break
    return loss, n_iter


# Relative rounding of a loss: a drop below this share of sum m ||mean||^2 is noise.
REFINE_NOISE = 1e-12


@jit()
def _refine_range(X, lo, hi, weights, C, c_norms, cm2, scratch, width, labels, sq, sums, mass):
    """Rows lo:hi, a tile of sq.shape[0] rows at a time: labels OUT (global rows), and their
    weighted sums and mass added to sums, mass (zeroed first); returns their weighted loss."""
    sums[:] = 0.0
    mass[:] = 0.0
    loss = 0.0
    tile = sq.shape[0]
    for s0 in range(lo, hi, tile):
        s1 = min(hi, s0 + tile)
        _assign_range(X, np.empty(0, dtype=np.intp), s0, s1, s0, C, c_norms, cm2, scratch,
                      np.empty((0, X.shape[1]), dtype=X.dtype), width, labels[s0:s1], sq)
        for i in range(s0, s1):
            j = labels[i]
            w = weights[i] if weights.shape[0] > 0 else 1.0
            for f in range(X.shape[1]):
                sums[j, f] += w * X[i, f]
            mass[j] += w
            loss += w * sq[i - s0]
    return loss


@jit(parallel=True)
def _refine_par(X, weights, C, c_norms, cm2, scratch, width, labels, sq, sums, mass, losses):
    n_chunks = scratch.shape[0]
    for t in prange(n_chunks):
        lo, hi = _chunk(0, X.shape[0], n_chunks, t)
        losses[t] = _refine_range(X, lo, hi, weights, C, c_norms, cm2, scratch[t], width,
                                  labels, sq[t], sums[t], mass[t])


@jit()
def refine(X, weights, C, labels, max_moves, tol, c_norms, cm2, scratch, width, sq, sums, mass,
           losses):
    """Lloyd on the data from C (INOUT), labels OUT: a pass, then stop when moving the centers
    to their means would lower the loss by at most tol (relative) or after max_moves moves.
    sq is (n_workers, tile) scratch for the distances of a tile. Returns (loss, moves)."""
    d = C.shape[1]
    moves = 0
    while True:
        prepare_centers(C, c_norms, cm2)
        used = 1
        if _parallel(X.shape[0], C):
            _refine_par(X, weights, C, c_norms, cm2, scratch, width, labels, sq, sums, mass,
                        losses)
            used = scratch.shape[0]
        else:
            losses[0] = _refine_range(X, 0, X.shape[0], weights, C, c_norms, cm2, scratch[0],
                                      width, labels, sq[0], sums[0], mass[0])
        loss = losses[:used].sum()
        drop = 0.0
        scale = 0.0  # sum of m ||mean||^2: a drop below its rounding is no drop
        for j in range(C.shape[0]):
            m = 0.0
            for t in range(used):
                m += mass[t, j]
            if m > 0.0:
                for f in range(d):
                    s = 0.0
                    for t in range(used):
                        s += sums[t, j, f]
                    diff = C[j, f] - s / m
                    drop += m * diff * diff
                    scale += s * s / m
        if moves >= max_moves or drop <= tol * loss or drop <= REFINE_NOISE * scale:
            return loss, moves
        _move_to_means(C, sums, mass, used)
        moves += 1


# ---------------------------------------------------------------------- k-means++

# Rows per block sum in k-means++ sampling.
PP_BLOCK = 1024
# From this many multiply-adds per step (rows x features x candidates) a step runs on all
# workers: a step is short and there are k of them, but with numba's default (omp) layer a
# parallel region costs ~2 us here; measured on 5,000 x 16..128 rows.
PP_PARALLEL_MIN_WORK = 2**16
# Relative safety margin of the triangle-inequality skips (rounding of D and of center gaps).
PP_MARGIN = 1.0001


@jit()
def _sq_to(X, i, C, j):
    s = X.dtype.type(0.0)
    for f in range(X.shape[1]):
        diff = X[i, f] - C[j, f]
        s += diff * diff
    return np.float64(s)


@jit()
def _draw(weights, closest, block_sums, block, target):
    """First row whose running sum of weight * closest exceeds target (numpy's searchsorted);
    block_sums[b] sums the rows b * block to (b + 1) * block."""
    n = closest.shape[0]
    acc = 0.0
    b = 0
    while b < block_sums.shape[0] - 1 and acc + block_sums[b] <= target:
        acc += block_sums[b]
        b += 1
    for i in range(b * block, n):
        acc += weights[i] * closest[i]
        if acc > target:
            return i
    return n - 1


@jit()
def _block_sum(weights, closest, b, block):
    s = 0.0
    for i in range(b * block, min(closest.shape[0], (b + 1) * block)):
        s += weights[i] * closest[i]
    return s


@jit()
def _first_draw(weights, closest, block_sums, block, uniform):
    """The first center of greedy k-means++, drawn by weight alone; closest and block_sums
    start from it (1 for every row)."""
    closest[:] = 1.0
    for b in range(block_sums.shape[0]):
        block_sums[b] = _block_sum(weights, closest, b, block)
    return _draw(weights, closest, block_sums, block, uniform * block_sums.sum())


@jit()
def _pp_gains_range(X, weights, cands, cc, skip, closest, owner, lo, hi, gains):
    """gains[c] += the drop of the weighted potential over rows lo:hi if candidate c were added."""
    n_cand = cands.shape[0]
    for i in range(lo, hi):
        j = owner[i]
        if skip[n_cand, j]:
            continue
        limit = 4.0 * PP_MARGIN * closest[i]
        for c in range(n_cand):
            if skip[c, j] or cc[c, j] > limit:
                continue
            dist = _sq_to(X, i, X, cands[c])
            if dist < closest[i]:
                gains[c] += weights[i] * (closest[i] - dist)


@jit(parallel=True)
def _pp_gains_par(X, weights, cands, cc, skip, closest, owner, gains):
    n_chunks = gains.shape[0]
    for t in prange(n_chunks):
        lo, hi = _chunk(0, X.shape[0], n_chunks, t)
        _pp_gains_range(X, weights, cands, cc, skip, closest, owner, lo, hi, gains[t])


@jit()
def _pp_add_range(X, weights, new, step, cc, skip, closest, owner, block_sums, b_lo, b_hi,
                  max_sq):
    """Make row `new` center `step` for blocks b_lo:b_hi; max_sq[j] OUT: max D seen in j."""
    for b in range(b_lo, b_hi):
        changed = step == 0
        for i in range(b * PP_BLOCK, min(X.shape[0], (b + 1) * PP_BLOCK)):
            j = step
            if step > 0:
                j = owner[i]
                if skip[j]:
                    continue
                if cc[j] > 4.0 * PP_MARGIN * closest[i]:
                    max_sq[j] = max(max_sq[j], closest[i])
                    continue
            dist = _sq_to(X, i, X, new)
            if step == 0 or dist < closest[i]:
                closest[i] = dist
                owner[i] = step
                j = step
                changed = True
            max_sq[j] = max(max_sq[j], closest[i])
        if changed:
            block_sums[b] = _block_sum(weights, closest, b, PP_BLOCK)


@jit(parallel=True)
def _pp_add_par(X, weights, new, step, cc, skip, closest, owner, block_sums, worker_max):
    n_chunks = worker_max.shape[0]
    for t in prange(n_chunks):
        b_lo, b_hi = _chunk(0, block_sums.shape[0], n_chunks, t)
        worker_max[t, : step + 1] = 0.0
        _pp_add_range(X, weights, new, step, cc, skip, closest, owner, block_sums, b_lo, b_hi,
                      worker_max[t])


@jit()
def _pp_add(X, weights, new, step, cc, skip, closest, owner, block_sums, max_sq, worker_max):
    """Make row `new` center `step`: update closest, owner, block sums and max_sq."""
    used = 1
    if X.shape[0] * X.shape[1] >= PP_PARALLEL_MIN_WORK:
        _pp_add_par(X, weights, new, step, cc, skip, closest, owner, block_sums, worker_max)
        used = worker_max.shape[0]
    else:
        worker_max[0, : step + 1] = 0.0
        _pp_add_range(X, weights, new, step, cc, skip, closest, owner, block_sums, 0,
                      block_sums.shape[0], worker_max[0])
    # A skipped center lost no rows and keeps its bound; a scanned one gets its exact maximum.
    for j in range(step + 1):
        if j == step or not skip[j]:
            m = 0.0
            for t in range(used):
                m = max(m, worker_max[t, j])
            max_sq[j] = m


@jit()
def _center_gaps(X, cands, Ct, n_chosen, max_sq, cc, skip):
    """cc[c, s] = ||cand c - center s||^2; skip[c, s]: center s's rows are out of cand c's reach.

    skip[n_cand, s]: out of reach of every candidate. The centers are stored transposed (Ct is
    (d, k)) so that the gaps vectorise across centers: k steps x k gaps x d is the largest term
    when k approaches n_samples (K = 10 k centers drawn from one mini-batch).
    """
    n_cand = cands.shape[0]
    for c in range(n_cand):
        gaps = cc[c, :n_chosen]
        gaps[:] = 0.0
        for f in range(X.shape[1]):
            xf = X[cands[c], f]
            col = Ct[f, :n_chosen]
            for s in range(n_chosen):
                diff = col[s] - xf
                gaps[s] += diff * diff
    for s in range(n_chosen):
        skip[n_cand, s] = True
        limit = 4.0 * PP_MARGIN * max_sq[s]
        for c in range(n_cand):
            skip[c, s] = cc[c, s] > limit
            skip[n_cand, s] &= skip[c, s]


@jit()
def kmeanspp(X, weights, uniforms, indices, Ct, closest, owner, block_sums, cc, skip, max_sq,
             gains, worker_max):
    """Greedy weighted k-means++; OUT indices, Ct (the chosen rows as columns). Returns the steps.

    Fewer steps than indices.shape[0] means the weighted potential reached 0 at that step.
    Scratch: closest, owner (n_samples,); block_sums; cc (n_cand, k) in X's dtype;
    skip (n_cand + 1, k) bool; max_sq (k,); gains (n_workers, n_cand); worker_max (n_workers, k).
    """
    n_centers = indices.shape[0]
    n_cand = uniforms.shape[1]
    cands = np.empty(n_cand, dtype=np.intp)
    first = _first_draw(weights, closest, block_sums, PP_BLOCK, uniforms[0, 0])
    indices[0] = first
    Ct[:, 0] = X[first]
    _pp_add(X, weights, first, 0, cc[0], skip[0], closest, owner, block_sums, max_sq,
            worker_max)
    for step in range(1, n_centers):
        total = block_sums.sum()
        if total <= 0.0:
            return step
        for c in range(n_cand):
            cands[c] = _draw(weights, closest, block_sums, PP_BLOCK,
                             uniforms[step, c] * total)
        _center_gaps(X, cands, Ct, step, max_sq, cc, skip)
        best = 0
        if n_cand > 1:
            gains[:] = 0.0
            if X.shape[0] * X.shape[1] * n_cand >= PP_PARALLEL_MIN_WORK:
                _pp_gains_par(X, weights, cands, cc, skip, closest, owner, gains)
            else:
                _pp_gains_range(X, weights, cands, cc, skip, closest, owner, 0, X.shape[0],
                                 gains[0])
            gain = gains.sum(axis=0)
            for c in range(1, n_cand):
                if gain[c] > gain[best]:
                    best = c
        indices[step] = cands[best]
        Ct[:, step] = X[cands[best]]
        _pp_add(X, weights, cands[best], step, cc[best], skip[best], closest, owner,
                block_sums, max_sq, worker_max)
    return n_centers


# Greedy k-means++ trials on a table of lower bounds of every squared distance between the
# rows: the reduction's K weighted centers are few, and its trials all draw from them, so the
# table is made once (one matrix product) and shared. A step reads the table's rows of its
# candidates to find the few rows each could move closer, and computes exactly those distances
# (float64 differences, as the reference's float64 rows): the picks are the exact algorithm's.
# Each bound is kept in 16 bits, the top half of a float32 (a "bfloat16", 8 bits of exponent,
# 7 of mantissa) rounded down, a quarter of a float64 table: non-negative floats order as their
# bit patterns do, so a step compares integers.

# Relative error bound, per feature + 2, of ||a||^2 + ||b||^2 - 2 a.b (rows centered in float64)
# against the exact squared distance, in units of ||a||^2 + ||b||^2 and float64's epsilon;
# it covers the centering's rounding as well.
PP_TABLE_SLACK = 4.0
# Every bound is shrunk by this factor before it is rounded to float32, so that the rounding
# (2^-24) and the exact distances' own (n_features x 2^-53) never lift it above them.
PP_TABLE_SHRINK = 1.0 - 2.0**-20

# Rows of the table per matrix product (one block at a time per worker).
PP_TABLE_BLOCK = 64
# Rows per block sum of the trials' draws: K is small, so a draw's walk through a block is
# the longer part, and every block is summed again after every step anyway.
PP_TABLE_DRAW_BLOCK = 64


@jit(parallel=True)
def pp_table(centered, codes, n_workers):
    """OUT codes (K, K) uint16: codes[a, b] bounds ||X[a] - X[b]||^2 from below, as the top 16
    bits of a float32 (see above), from `centered` (X in float64 minus its mean).

    The bound is ||a||^2 + ||b||^2 - 2 a.b of the centered rows less its error bound
    (`PP_TABLE_SLACK`), clamped at 0, shrunk (`PP_TABLE_SHRINK`), then rounded down to 16 bits.
    The products are BLAS calls, one block of rows at a time per worker (BLAS held to one
    thread), the blocks dealt out in turn.
    """
    n, d = centered.shape
    norms = np.empty(n, dtype=np.float64)
    sq_norms(centered, norms)
    slack = PP_TABLE_SLACK * (d + 2) * np.finfo(np.float64).eps
    n_blocks = -(-n // PP_TABLE_BLOCK)
    for t in prange(n_workers):
        dots = np.empty((PP_TABLE_BLOCK, n), dtype=np.float64)
        row = np.empty(n, dtype=np.float32)
        for blk in range(t, n_blocks, n_workers):
            lo = blk * PP_TABLE_BLOCK
            hi = min(n, lo + PP_TABLE_BLOCK)
            np.dot(centered[lo:hi], centered.T, dots[: hi - lo])
            for a in range(lo, hi):
                _pp_table_row(dots[a - lo], norms, norms[a], slack, row, codes[a])


@jit()
def _pp_table_row(dots, norms, norm, slack, row, codes):
    """OUT codes: the 16-bit bounds of one row of the table from its products (`pp_table`); row
    is float32 scratch."""
    for b in range(dots.shape[0]):
        scale = norm + norms[b]
        value = (scale - 2.0 * dots[b] - slack * scale) * PP_TABLE_SHRINK
        row[b] = max(value, 0.0)  # above float32's range: inf, which a row's bound then is too
    bits = row.view(np.uint32)
    for b in range(dots.shape[0]):
        codes[b] = bits[b] >> 16


@jit()
def _code_above(value, f32, u32):
    """The least 16-bit code (see `pp_table`) whose float is >= value (value >= 0); f32 is a
    float32 array of length 1 and u32 its uint32 view."""
    f32[0] = np.float32(value)
    bits = np.int64(u32[0])
    if np.float64(f32[0]) < value:
        bits += 1
    return (bits + 0xFFFF) >> 16


@jit()
def _mark_below(row, bounds, flags):
    """flags[i] = row[i] <= bounds[i]: the rows a center with this table row may move closer
    (a loop without a branch, which vectorizes). flags' tail past the rows stays 0."""
    for i in range(row.shape[0]):
        flags[i] = row[i] <= bounds[i]


@jit()
def _flagged(flags, n, rows):
    """rows[:m] OUT: the rows i < n whose flag `_mark_below` set, in order; returns m. The
    flags are read 8 at a time, as one uint64."""
    words = flags.view(np.uint64)
    m = 0
    for j in range(words.shape[0]):
        if words[j] != 0:
            for i in range(8 * j, min(n, 8 * j + 8)):
                if flags[i]:
                    rows[m] = i
                    m += 1
    return m


@jit()
def _pp_table_gain(X, cand, rows, closest, weights):
    """Weighted drop of the potential were cand a center, from the exact distances of `rows`."""
    gain = 0.0
    for i in rows:
        drop = closest[i] - _exact_sq(X, cand, X, i)
        if drop > 0.0:
            gain += weights[i] * drop
    return gain


@jit()
def _pp_table_add(X, new, rows, closest, bounds, f32, u32):
    """Lower closest to the exact distance to the new center on `rows`, and their bounds with
    it."""
    for i in rows:
        dist = _exact_sq(X, new, X, i)
        if dist < closest[i]:
            closest[i] = dist
            bounds[i] = _code_above(dist, f32, u32)


@jit()
def _pp_table_trial(X, codes, weights, uniforms, indices, closest, bounds, flags, block_sums):
    """One greedy k-means++ trial with the table of bounds (`pp_table`); OUT indices. closest
    holds each row's exact squared distance to its nearest chosen center, bounds its code from
    above; flags (K rounded up to 8, uint8) is scratch. Returns the steps done (fewer than
    indices.shape[0]: the potential reached 0)."""
    n = closest.shape[0]
    n_centers = indices.shape[0]
    n_cand = uniforms.shape[1]
    cands = np.empty(n_cand, dtype=np.intp)
    rows = np.empty(n, dtype=np.intp)
    f32 = np.empty(1, dtype=np.float32)
    u32 = f32.view(np.uint32)
    chosen = _first_draw(weights, closest, block_sums, PP_TABLE_DRAW_BLOCK, uniforms[0, 0])
    indices[0] = chosen
    closest[:] = np.inf  # the first step computes every row's distance
    flags[:] = 1
    flags[n:] = 0
    for step in range(n_centers):
        if step > 0:
            total = block_sums.sum()
            if total <= 0.0:
                return step
            for c in range(n_cand):
                cands[c] = _draw(weights, closest, block_sums, PP_TABLE_DRAW_BLOCK,
                                 uniforms[step, c] * total)
            best = 0
            best_gain = 0.0
            for c in range(n_cand if n_cand > 1 else 0):
                _mark_below(codes[cands[c]], bounds, flags)
                m = _flagged(flags, n, rows)
                gain = _pp_table_gain(X, cands[c], rows[:m], closest, weights)
                if c == 0 or gain > best_gain:
                    best, best_gain = c, gain
            chosen = cands[best]
            indices[step] = chosen
            _mark_below(codes[chosen], bounds, flags)
        m = _flagged(flags, n, rows)
        _pp_table_add(X, chosen, rows[:m], closest, bounds, f32, u32)
        for b in range(block_sums.shape[0]):
            block_sums[b] = _block_sum(weights, closest, b, PP_TABLE_DRAW_BLOCK)
    return n_centers


@jit(parallel=True)
def kmeanspp_table(X, codes, weights, uniforms, indices, closest, bounds, flags, block_sums,
                   done):
    """Greedy weighted k-means++ trials with a table of bounds (`pp_table`): trial t draws with
    uniforms[t] (n_centers, n_cand) into indices[t]; done[t] OUT, its steps. Trials run in
    parallel, each on its own: the results do not depend on the thread count. Scratch: closest
    (n_trials, K) float64, bounds (n_trials, K) uint16, flags (n_trials, K rounded up to 8)
    uint8, block_sums (n_trials, ceil(K / PP_TABLE_DRAW_BLOCK))."""
    for t in prange(indices.shape[0]):
        done[t] = _pp_table_trial(X, codes, weights, uniforms[t], indices[t], closest[t],
                                  bounds[t], flags[t], block_sums[t])


# Plain (lazy) k-means++: see `kmeans_stream.backends.numpy.NumpyKernels.kmeanspp_plain`, whose
# rules this follows step for step (the same constants, from there).


@jit()
def _refresh(X, weights, pending, n_pending, closest, cumulative, C, c_norms, cm2, scratch,
             width, labels, sq_dist, totals):
    """closest = min(closest, D to the pending centers) in one assignment pass; cumulative sums
    of weight x closest for the draws."""
    m = n_pending
    for p in range(m):
        C[p] = X[pending[p]]
    n_workers = totals.shape[0]
    itemsize = X.itemsize
    if len(width) > 0 and m * len(width) <= BLOCKED_MAX_WORK:
        size = scratch_size(m, len(width), itemsize)
        work = scratch[: n_workers * size].reshape((n_workers, size))
        assign_labels(X, C[:m], c_norms[:m], cm2[:m], work, width, labels, sq_dist, totals)
    else:
        size = scratch_size(m, 0, itemsize)
        work = scratch[: n_workers * size].reshape((n_workers, size))
        assign_labels(X, C[:m], c_norms[:m], cm2[:0, :0], work, (), labels, sq_dist, totals)
    acc = 0.0
    for i in range(X.shape[0]):
        if sq_dist[i] < closest[i]:
            closest[i] = sq_dist[i]
        acc += weights[i] * closest[i]
        cumulative[i] = acc


@jit()
def _search(cumulative, target):
    """First row whose cumulative sum exceeds target (numpy's searchsorted, side='right')."""
    return min(np.searchsorted(cumulative, target, side="right"), cumulative.shape[0] - 1)


@jit()
def kmeanspp_plain(X, weights, uniforms, indices, proposals, max_pending, closest, cumulative,
                   C, c_norms, cm2, scratch, width, labels, sq_dist, totals):
    """Plain weighted k-means++ drawn lazily; OUT indices. Returns the steps done (fewer than
    indices.shape[0] when the weighted potential reached 0). C (max_pending, d) holds the
    pending centers; the rest is the scratch of an assignment pass over X."""
    n_centers = indices.shape[0]
    acc = 0.0
    for i in range(X.shape[0]):
        acc += weights[i]
        cumulative[i] = acc
        closest[i] = np.inf
    indices[0] = _search(cumulative, uniforms[0, 0] * cumulative[-1])
    pending = np.empty(max_pending, dtype=np.intp)
    pending[0] = indices[0]
    n_pending = 1
    tried = 0
    taken = 0
    for step in range(1, n_centers):
        for r in range(proposals):
            if n_pending > 0 and (n_pending >= max_pending or tried - taken > taken
                                  or r == proposals - 1 or step == 1):
                _refresh(X, weights, pending, n_pending, closest, cumulative, C, c_norms, cm2,
                         scratch, width, labels, sq_dist, totals)
                n_pending = 0
                tried = 0
                taken = 0
            if cumulative[-1] <= 0.0:
                return step
            i = _search(cumulative, uniforms[step, 2 * r] * cumulative[-1])
            now = closest[i]
            for p in range(n_pending):
                now = min(now, _exact_sq(X, i, X, pending[p]))
            tried += 1
            if uniforms[step, 2 * r + 1] * closest[i] < now:
                indices[step] = i
                pending[n_pending] = i
                n_pending += 1
                taken += 1
                break
    return n_centers
