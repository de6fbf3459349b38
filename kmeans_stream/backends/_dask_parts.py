"""What the workers of a Dask fit run on one partition (a block of a dask collection, or one
file), and how their small results merge. Every function here returns a state of K or k rows,
never rows of data, except the starting sample (at most ``n`` rows however many partitions).

Each function reads its partition through the library's own sources (`kmeans_stream.io`), and
computes with ``kmeans_stream.backends.load("auto")`` on the worker: numba where it is
installed there, else numpy. dask itself is not imported here: these are plain functions that
dask calls.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..io.sources import Source, as_source, block_rows
from ..streaming import StreamingPass
from .base import StreamState, decay_factor

__all__ = [
    "Reader", "compute_kernels", "contribution", "head_rows", "lloyd_part",
    "merge_samples", "merge_states", "merge_stats", "partition_params", "sample_part",
    "stream_part",
]

# Rows read at a time where a partition is scanned (sampling, Lloyd passes): bounds a worker's
# scratch whatever the partition's size.
SCAN_ROWS = 65536
# A count left on a center once the base's (decayed) share is taken away is the partition's
# own only above this fraction of the center's count: below, it is the rounding of the decay.
_RESIDUE = 1e-9


@functools.cache
def compute_kernels(name: str = "auto", options: tuple[tuple[str, Any], ...] = ()) -> Any:
    """The kernels of compute backend `name` (by default the fastest installed on this
    worker), made once per process."""
    from . import load

    return load(name, **dict(options))


@dataclass(frozen=True)
class Reader:
    """How a worker turns a partition into a `Source`: a computed block (a numpy array or a
    pandas DataFrame) cast to `dtype`, or a path read as a file (CSV header rule
    `skip_header`)."""

    dtype: np.dtype | None = None
    skip_header: bool = False

    def source(self, part: Any, where: str) -> Source | None:
        """The partition as a Source; None for a block without rows."""
        if isinstance(part, str):
            return as_source(part, skip_header=self.skip_header)
        with named(where):
            rows = block_rows(part, self.dtype)
            return as_source(rows) if len(rows) else None


@contextmanager
def named(where: str) -> Iterator[None]:
    """Re-raise a ValueError (a bad value, a NaN) naming the partition it came from."""
    try:
        yield
    except ValueError as exc:
        if str(exc).startswith(where):
            raise
        raise type(exc)(f"{where}: {exc}") from exc


def partition_params(params: Any) -> Any:
    """The Params a partition streams with: no reassignment (a center moved in one partition
    would no longer match its namesakes in the others), and no hyperparameter record (every
    task carries its Params)."""
    return replace(params, reassignment_ratio=0.0, hyperparameters=())


# --------------------------------------------------------------------------- states


def merge_states(states: Sequence[StreamState]) -> StreamState:
    """Merge streaming states of the same K centers: each center the count-weighted mean of
    its namesakes, counts and tallies added.

    Exact and free of order, up to the rounding of float64 sums: any grouping of merges gives
    sum_p n_pj c_pj / sum_p n_pj for every center j. A center that no state counted keeps the
    first state's position. Centers come back as float64.
    """
    first = states[0]
    counts = np.zeros(len(first.counts))
    sums = np.zeros(np.shape(first.centers))
    for state in states:
        counts += state.counts
        sums += state.counts[:, None] * np.asarray(state.centers, dtype=np.float64)
    centers = np.array(first.centers, dtype=np.float64)
    live = counts > 0
    centers[live] = sums[live] / counts[live, None]
    return StreamState(centers, counts, sum(s.n_seen for s in states),
                       sum(s.n_steps for s in states), sum(s.weight_seen for s in states))


def contribution(base: StreamState, final: StreamState, half_life: float) -> StreamState:
    """What a partition added to `base`: the mean and (decayed) count of its own rows per
    center, float64. `final` is the state after streaming the partition from `base`.

    The base's counts are still in the final ones, decayed by the partition's own rows; where
    the base count was 0 (the first epoch) the final center is the partition's mean as it is.
    """
    kept = base.counts * decay_factor(final.weight_seen, half_life)
    own = final.counts - kept
    live = own > _RESIDUE * final.counts
    centers = np.array(base.centers, dtype=np.float64)
    after = np.asarray(final.centers, dtype=np.float64)
    fresh, mixed = live & (kept == 0), live & (kept > 0)
    centers[fresh] = after[fresh]
    centers[mixed] = (final.counts[mixed, None] * after[mixed]
                      - kept[mixed, None] * centers[mixed]) / own[mixed, None]
    return StreamState(centers, np.where(live, own, 0.0), final.n_seen, final.n_steps,
                       final.weight_seen)


def stream_part(part: Any, where: str, reader: Reader, base: StreamState, params: Any,
                seed: int | None) -> StreamState:
    """Stream one partition from `base` (its rows in a random order drawn from `seed` when
    params.shuffle), and return its `contribution`."""
    source = reader.source(part, where)
    if source is None:
        return StreamState(np.array(base.centers, dtype=np.float64), np.zeros(len(base.counts)))
    start = StreamState(base.centers, base.counts)
    with named(where):
        pass_ = StreamingPass(compute_kernels(), params, np.random.default_rng(seed), None, start)
        pass_.run(source)
    return contribution(base, pass_.host_state(source.description), params.half_life_time_size)


# --------------------------------------------------------------------------- starting rows


def head_rows(part: Any, where: str, reader: Reader, n: int) -> np.ndarray | None:
    """The first `n` rows of a partition (fewer if it has fewer; None if none)."""
    source = reader.source(part, where)
    if source is None:
        return None
    with named(where):
        return next(iter(source.batches(n)), (None, None))[0]


Sample = tuple[np.ndarray, "np.ndarray | None"]


def sample_part(part: Any, where: str, reader: Reader, n: int, seed: int) -> Sample:
    """A uniform sample of at most `n` rows of the partition, with their random keys: each row
    draws a key in [0, 1) and the `n` smallest stay. The `n` smallest keys across every
    partition's sample are a uniform sample of the whole data (`merge_samples`)."""
    source = reader.source(part, where)
    if source is None:
        return np.empty(0), None
    rng = np.random.default_rng(seed)
    with named(where):
        if source.kind == "dense":  # a block: every key at once, the rows gathered once
            X = source.dense()
            keys = rng.random(len(X))
            keep = _smallest_rows(keys, n)
            return keys[keep], X[keep]
        keys, rows = np.empty(0), None
        for X, _ in source.batches(SCAN_ROWS):
            keys = np.concatenate([keys, rng.random(len(X))])
            rows = X if rows is None else np.concatenate([rows, X])
            keep = _smallest_rows(keys, n)
            keys, rows = keys[keep], rows[keep]
    return keys, rows


def merge_samples(samples: Sequence[Sample], n: int) -> Sample:
    """The `n` rows of smallest key among the samples, in the order of their keys."""
    found = [(keys, rows) for keys, rows in samples if rows is not None]
    if not found:
        return np.empty(0), None
    keys = np.concatenate([k for k, _ in found])
    rows = np.concatenate([r.astype(found[0][1].dtype, copy=False) for _, r in found])
    keep = _smallest_rows(keys, n)
    keep = keep[np.argsort(keys[keep], kind="stable")]
    return keys[keep], rows[keep]


def _smallest_rows(keys: np.ndarray, n: int) -> np.ndarray:
    """Positions of the `n` smallest keys (all of them where there are fewer)."""
    if len(keys) <= n:
        return np.arange(len(keys))
    return np.argpartition(keys, n - 1)[:n]


# --------------------------------------------------------------------------- Lloyd passes

Stats = tuple[np.ndarray, np.ndarray, float]  # per-cluster sums (k, d), masses (k,), loss


def lloyd_part(part: Any, where: str, reader: Reader, centers: np.ndarray) -> Stats:
    """One Lloyd pass over a partition: each cluster's sum of rows and count, and the sum of
    squared distances to the nearest of `centers`.

    The sums come from the streaming update of one mini-batch from counts of 0, which by the
    kernels' contract leaves each center at the mean of the rows nearest it and its count at
    their number: one kernel call and no allocation per batch (dask's workers return freed
    memory to the system at once, so that every large allocation costs page faults anew).
    """
    k, n_features = centers.shape
    sums, mass, loss = np.zeros((k, n_features)), np.zeros(k), 0.0
    source = reader.source(part, where)
    if source is None:
        return sums, mass, loss
    kernels = compute_kernels()
    workspace = kernels.workspace(centers.dtype, k, n_features, SCAN_ROWS)
    labels = np.empty(SCAN_ROWS, dtype=np.int32)
    sq_dist = np.empty(SCAN_ROWS, dtype=np.float64)
    means, counts = np.empty_like(centers), np.empty(k)
    with named(where):
        for X, _ in source.batches(SCAN_ROWS):
            X = X.astype(centers.dtype, copy=False)
            n = len(X)
            loss += kernels.assign(X, centers, labels[:n], sq_dist[:n], workspace)
            means[:], counts[:] = centers, 0.0
            kernels.stream_batches(X, None, None, n, means, counts, 0.0, workspace)
            sums += counts[:, None] * means
            mass += counts
    return sums, mass, loss


def merge_stats(parts: Sequence[Stats]) -> Stats:
    """Sums, masses and losses added."""
    sums, mass, loss = parts[0]
    sums, mass = sums.copy(), mass.copy()
    for more_sums, more_mass, more_loss in parts[1:]:
        sums += more_sums
        mass += more_mass
        loss += more_loss
    return sums, mass, loss


def batches_of(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """`items` cut into runs of `size`."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
