"""The k-means++ @njit kernels behind `kmeans_stream.backends.numba.NumbaKernels`.

Two forms. `kmeanspp_plain` (the init: one candidate per step) draws lazily, by rejection from
the distances of the last refresh, and refreshes them for a group of new centers with one
assignment pass (`_numba_assign.assign_labels`); its rules are the numpy reference's, see
`kmeans_stream.backends.numpy.NumpyKernels.kmeanspp_plain`. `kmeanspp` (the greedy form of the
reduction, several candidates per step) needs every row's current distance at every step to
score the candidates, and is described below.

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
from numba import prange

from ._numba_assign import (
    BLOCKED_MAX_WORK,
    _chunk,
    _exact_sq,
    assign_labels,
    jit,
    scratch_size,
)

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


@jit()
def _block_sum(weights, closest, b):
    s = 0.0
    for i in range(b * PP_BLOCK, min(closest.shape[0], (b + 1) * PP_BLOCK)):
        s += weights[i] * closest[i]
    return s


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
            block_sums[b] = _block_sum(weights, closest, b)


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
    closest[:] = 1.0
    for b in range(block_sums.shape[0]):
        block_sums[b] = _block_sum(weights, closest, b)
    first = _draw(weights, closest, block_sums, uniforms[0, 0] * block_sums.sum())
    indices[0] = first
    Ct[:, 0] = X[first]
    _pp_add(X, weights, first, 0, cc[0], skip[0], closest, owner, block_sums, max_sq,
            worker_max)
    for step in range(1, n_centers):
        total = block_sums.sum()
        if total <= 0.0:
            return step
        for c in range(n_cand):
            cands[c] = _draw(weights, closest, block_sums, uniforms[step, c] * total)
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
