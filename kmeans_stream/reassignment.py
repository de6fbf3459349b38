"""Moving streaming centers that serve too few rows to rows far from every center.

`reassignment_ratio` (local only; scikit-learn's MiniBatchKMeans name and meaning, 0 turns it
off). Every `check_interval` rows of the stream (10 K, as scikit-learn checks every 10
n_clusters rows, and at least 32 mini-batches (at most a quarter of an epoch) of data visited
in a random order, 4 of data in the source's order) the algorithm calls `reassign` with the
rows of the mini-batch just streamed. The rule, on a sample of up to `SAMPLE_ROWS` of those rows:

1. Starved centers, whose (decayed) count is below ``reassignment_ratio`` x the largest count
   (scikit-learn's rule), are moved, the lowest counts first and at most half the sample.
2. Then swaps, one at a time and at most `MAX_SWAPS`: of the `SWAP_CANDIDATES` centers with the
   lowest counts (not moved yet), the one whose merge into its nearest center costs least is
   moved when the sample shows that a center at a far row would lower the SSE per row by more
   than that merge raises it; the first swap that does not pay ends the check. The merge of
   centers i and j costs n_i n_j / (n_i + n_j) ||c_i - c_j||^2 (exact, for means); the gain
   is the drop of the sample's squared distances, leaving out the row itself. This moves a
   center that straddles two clusters' points to the cluster that needs it (an unlucky start),
   and centers to the new clusters of a stream sorted by cluster.

A center is moved to a sample row drawn with probability proportional to weight x its squared
distance to the nearest center (k-means++'s law, from `rng`), after its count and mean are
merged into its nearest remaining center: every row's weight stays counted, and every center
stays the exact mean of what it holds. The moved center starts again at count 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Rows of the latest mini-batch a check looks at.
SAMPLE_ROWS = 512
# Lowest-count centers among which a swap picks the cheapest to merge.
SWAP_CANDIDATES = 8
# Swaps in one check, at most (each one only while the sample says it pays): enough to follow
# new clusters that a stream sorted by cluster brings.
MAX_SWAPS = 8
# Mini-batches between two checks, at least. A check costs about what streaming 1/10 of a
# 5,000-row batch does: within 0.5% of a pass over data visited in a random order; eight times
# as often where the order may hold structure (measured: a CSV sorted by cluster, 8 times the
# shuffle buffer, streamed to 1.013x the in-memory SSE checking every 4 batches, 1.083x every
# 8, 1.35x every 16).
MIXED_CHECK_BATCHES = 32
ORDERED_CHECK_BATCHES = 4


def check_interval(n_centers: int, batch_size: int, epoch_rows: int | None) -> int:
    """Rows between two checks, a whole number of mini-batches: 10 K (scikit-learn's 10
    n_clusters), and at least `ORDERED_CHECK_BATCHES` mini-batches; where the whole data is
    visited in a random order (`epoch_rows` rows an epoch), at least `MIXED_CHECK_BATCHES` but
    at most a quarter of an epoch. Rows in the source's order, or mixed only within a bounded
    shuffle buffer, can bring new clusters at any time."""
    rows = max(10 * n_centers, ORDERED_CHECK_BATCHES * batch_size)
    if epoch_rows is not None:
        rows = max(rows, min(MIXED_CHECK_BATCHES * batch_size, epoch_rows // 4))
    return -(-rows // batch_size) * batch_size


def reassign(centers: np.ndarray, counts: np.ndarray, rows: np.ndarray,
             weights: np.ndarray | None, ratio: float, kernels: Any,
             rng: np.random.Generator) -> int:
    """Apply the rule of this module once; INOUT centers (K, d) and counts (K,) on the host.

    Returns the number of centers moved.
    """
    top = float(counts.max())
    if ratio <= 0 or top <= 0 or len(counts) < 2:
        return 0
    sample = np.ascontiguousarray(rows[:SAMPLE_ROWS])
    w = np.ones(len(sample)) if weights is None else weights[:SAMPLE_ROWS].astype(np.float64)
    labels = np.empty(len(sample), dtype=np.intp)
    sq_dist = np.empty(len(sample), dtype=np.float64)
    kernels.assign(sample, centers, labels, sq_dist, None)
    starved = np.flatnonzero(counts < ratio * top)
    starved = starved[np.argsort(counts[starved], kind="stable")][: len(sample) // 2]
    moved = 0
    for j in starved:
        moved += _move(j, centers, counts, sample, w, sq_dist, rng, keep=starved)
    done = list(starved)
    for _ in range(MAX_SWAPS):  # one swap at a time, while the sample says it pays
        by_count = np.argsort(counts, kind="stable")
        candidates = by_count[~np.isin(by_count, done)][:SWAP_CANDIDATES]
        if not len(candidates):
            break
        j = _swap(candidates, centers, counts, sample, w, sq_dist, rng)
        if j is None:
            break
        done.append(j)
        moved += 1
    return moved


def merge_costs(js: np.ndarray, centers: np.ndarray, counts: np.ndarray,
                exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each center j of `js`: the rise of the SSE if it joined its nearest other center
    (not one of `exclude`), and that center (-1 where there is none)."""
    C = centers.astype(np.float64, copy=False)
    norms = np.einsum("ij,ij->i", C, C)
    gaps = norms[js, None] + norms[None, :] - 2.0 * (C[js] @ C.T)
    gaps[np.arange(len(js)), js] = np.inf
    if exclude is not None:
        gaps[:, exclude] = np.inf
    nearest = np.argmin(gaps, axis=1)
    gap = np.maximum(gaps[np.arange(len(js)), nearest], 0.0)
    total = counts[nearest] + counts[js]
    with np.errstate(invalid="ignore", divide="ignore"):
        cost = np.where(total > 0, counts[nearest] * counts[js] / total * gap, 0.0)
    missing = ~np.isfinite(gaps[np.arange(len(js)), nearest])
    cost[missing], nearest[missing] = np.inf, -1
    return cost, nearest


def _merge(j: int, i: int, centers: np.ndarray, counts: np.ndarray) -> None:
    """Center j's count and mean join center i's (the mean of their union)."""
    total = counts[i] + counts[j]
    if counts[j] <= 0 or total <= 0:
        return
    mixed = (counts[i] * centers[i].astype(np.float64)
             + counts[j] * centers[j].astype(np.float64)) / total
    centers[i] = mixed
    counts[i] = total


def _draw(sq_dist: np.ndarray, w: np.ndarray, rng: np.random.Generator) -> int | None:
    """A sample row with probability proportional to weight x squared distance."""
    cumulative = np.cumsum(w * sq_dist)
    if cumulative[-1] <= 0:
        return None
    return int(min(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"),
                   len(cumulative) - 1))


def _place(j: int, row: int, centers: np.ndarray, counts: np.ndarray, sample: np.ndarray,
           sq_dist: np.ndarray) -> None:
    centers[j] = sample[row]
    counts[j] = 0.0
    np.minimum(sq_dist, ((sample - sample[row]) ** 2).sum(axis=1), out=sq_dist)


def _move(j: int, centers: np.ndarray, counts: np.ndarray, sample: np.ndarray, w: np.ndarray,
          sq_dist: np.ndarray, rng: np.random.Generator, keep: np.ndarray) -> int:
    """Move a starved center j: merged into its nearest center that is not starved itself."""
    row = _draw(sq_dist, w, rng)
    if row is None:
        return 0
    if counts[j] > 0:
        i = int(merge_costs(np.array([j]), centers, counts, exclude=keep)[1][0])
        if i < 0:  # nowhere to put its rows: it stays
            return 0
        _merge(j, i, centers, counts)
    _place(j, row, centers, counts, sample, sq_dist)
    return 1


def _swap(candidates: np.ndarray, centers: np.ndarray, counts: np.ndarray, sample: np.ndarray,
          w: np.ndarray, sq_dist: np.ndarray, rng: np.random.Generator) -> int | None:
    """The cheapest candidate moves to a far row if the sample says that gains more SSE per row
    than merging it costs; returns it, or None."""
    costs, nearest = merge_costs(candidates, centers, counts)
    best = int(np.argmin(costs))
    j, cost, i = int(candidates[best]), float(costs[best]), int(nearest[best])
    row = _draw(sq_dist, w, rng)
    if row is None or i < 0:
        return None
    to_row = ((sample - sample[row]) ** 2).sum(axis=1)
    drops = w * np.maximum(sq_dist - to_row, 0.0)
    drops[row] = 0.0  # the row itself always gains: it says nothing about its neighbours
    gain = float(drops.sum()) / float(w.sum())
    if gain <= cost / float(counts.sum()):
        return None
    _merge(j, i, centers, counts)
    _place(j, row, centers, counts, sample, sq_dist)
    return j
