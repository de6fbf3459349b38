"""The distributed fit: ``backend="dask"``, SageMaker's mergeable state on a Dask cluster.

``KMeans(k=16, backend="dask").fit(X)`` takes a dask array, a dask DataFrame, or files (a
path, a folder, a manifest, an ``s3://`` prefix, or a list of them). One task per block,
partition or file reads its rows where it runs, through the library's own sources, and
computes with ``kmeans_stream.backends.load("auto")`` there (numba where installed, else numpy).
What travels is state, never rows: K centers and counts per task (spec section 2.4: the state
as a compact summary of the data seen, which states of other machines can be combined with),
merged in a tree on the workers, so the client holds one state and the network carries
K x n_features floats per partition whatever the size of the data.

The fit, step by step:

1. The K starting centers are drawn once, on the client, from ``init_rows`` rows: the first
   rows of the data in parity mode or with ``shuffle=False`` (SageMaker's first mini-batch),
   else a uniform sample across every partition (each row draws a random key; the smallest
   keys win, merged like the states), and sent to every task.
2. Each epoch maps `_dask_parts.stream_part` over the partitions: the streaming update from
   the epoch's starting state, the partition's rows in a random order of their own when
   shuffling (in their order otherwise), returning what the partition added to each center
   (its mean and count). The states merge by the count-weighted mean of matching centers
   (`merge_states`): exact and free of order, so the order in which partitions are visited
   or finish changes nothing. With a half-life, counts decay within each partition's stream,
   and the starting state's by all of the epoch's rows.
3. ``reassignment_ratio`` acts between epochs, on the merged state and the starting rows:
   inside a partition a moved center would no longer match its namesakes elsewhere.
4. The reduction from K to k runs once, at the end, on the client (`reduce_centers`).
5. On a dask collection, outside parity mode and without decay, Lloyd passes over the data
   refine the k centers as a local fit refines in-memory data: each task returns per-cluster
   sums and counts. Files are streamed, as a local fit streams them: no refinement.

Parity mode (``shuffle=False, reassignment_ratio=0``) is SageMaker's algorithm on each
partition: what a SageMaker job with instance_count equal to the number of partitions does if,
as the spec presumes (section 2.4, UNCONFIRMED), its hosts each stream one shard from the same
first mini-batch and their states merge by count-weighted means.
With one partition it is the local parity fit with the same seed (bit for bit in one epoch; in
more, up to the rounding of taking the starting state away again); with several it is not
SageMaker's single-stream algorithm (each partition starts from the same centers, not from the
centers the previous partition left).

The cluster: ``scheduler_address`` names a running scheduler; else the active
``distributed.Client`` (``distributed.get_client()``) is used where there is one; else a
``LocalCluster`` of one single-threaded worker process per core (``NUMBA_NUM_THREADS=1``) is
started for the fit and closed after (a script that fits this way needs the
``if __name__ == "__main__":`` guard that process workers need). Workers must have
kmeans_stream installed. dask is imported here (and distributed only when a fit connects).
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import dask
import dask.array as da
import numpy as np

from .._validation import check_finite
from ..algorithm import Params, binned_weights, initialize, reduce_centers
from ..io.locations import expand
from ..io.sources import Source, block_rows, dask_blocks
from ..reassignment import reassign
from ..streaming import StreamingPass
from . import _dask_parts as parts
from ._dask_parts import merge_states
from .base import FitResult, Reduction, StreamState, decay_factor

__all__ = ["DaskTrainer", "connect", "lazy_assign", "merge_states"]

logger = logging.getLogger(__name__)

# Results merged per task of the merge tree: the client receives one.
FAN_IN = 8
# The environment of the workers of a LocalCluster started for a fit: one thread each.
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


class DaskTrainer:
    """The fit on a Dask cluster (`kmeans_stream.backends.base.Trainer`); see the module's
    docstring.

    Parameters
    ----------
    scheduler_address : str or None
        The estimator's parameter of the same name.
    """

    def __init__(self, scheduler_address: str | None = None) -> None:
        self.scheduler_address = scheduler_address

    def fit(self, source: Any, params: Params, rng: np.random.Generator,
            test: Any = None) -> FitResult:
        """Fit on the partitions of `source`; `test` is left to the estimator."""
        found = partitions(source)
        with connect(self.scheduler_address) as client:
            return _Fit(client, found, params, rng).run()


@dataclass(frozen=True)
class Partitions:
    """The tasks' inputs: computed blocks (dask Delayed) or file paths, named for messages."""

    items: list[Any]
    names: list[str]
    reader: parts.Reader
    collection: bool  # a dask array or DataFrame (else files)
    description: str


def partitions(source: Source) -> Partitions:
    """The partitions of a dask collection, or the files of a location, checked."""
    if source.sample_weight is not None:
        raise ValueError(
            "backend='dask' takes no sample_weight: weights held here would have to travel "
            "to the workers beside X's blocks. Fit without them, or with a local backend."
        )
    if source.kind == "dask":
        blocks = dask_blocks(source.data)
        names = [f"block {i} of {source.description}" for i in range(len(blocks))]
        return Partitions(blocks, names, parts.Reader(source.dtype), True, source.description)
    if source.kind == "location":
        entries = source.data if isinstance(source.data, tuple) else (source.data,)
        files = [path for entry in entries for path in expand(entry)]
        if not files:
            raise ValueError(f"{source.description} holds no files")
        return Partitions(files, files, parts.Reader(None, source.skip_header), False,
                          source.description)
    raise ValueError(
        f"backend='dask' fits a dask array, a dask DataFrame, or files (a path, a folder, a "
        f"manifest, an s3:// prefix, or a list of them); X is {source.description}. Make it "
        "a dask array (dask.array.from_array(X, chunks=...)) or fit with a local backend."
    )


@contextmanager
def connect(address: str | None) -> Iterator[Any]:
    """A distributed Client: to `address`, else the active one, else to a LocalCluster
    started here and closed after."""
    import distributed

    if address is not None:
        with distributed.Client(address, set_as_default=False) as client:
            yield client
        return
    try:
        active = distributed.get_client()
    except ValueError:  # no client has been made in this process
        active = None
    if active is not None:
        yield active
        return
    # On loopback, the dashboard (or its health routes) on a free port: never 8787 taken.
    with distributed.LocalCluster(processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0", env=WORKER_ENV) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        logger.info("started a LocalCluster for the fit: %d workers, dashboard %s",
                    len(cluster.workers), cluster.dashboard_link)
        yield client


class _Fit:
    """One distributed fit: the client, the partitions, the parameters and the random state."""

    def __init__(self, client: Any, found: Partitions, params: Params,
                 rng: np.random.Generator) -> None:
        self.client, self.found, self.params, self.rng = client, found, params, rng
        self.kernels = parts.compute_kernels()
        self.part_params = parts.partition_params(params)
        self.refines = (found.collection and params.half_life_time_size == 0
                        and not params.parity)

    def run(self) -> FitResult:
        params = self.params
        first = self._starting_rows()
        start = initialize(first, None, params, self.kernels, self.rng)
        state = StreamState(self.kernels.to_numpy(start.centers),
                            self.kernels.to_numpy(start.counts))
        kept = None
        for epoch in range(params.epochs):
            logger.info("epoch %d/%d: %d partitions of %s", epoch + 1, params.epochs,
                        len(self.found.items), self.found.description)
            state = self._epoch(state)
            if epoch == params.epochs - 1:
                break
            if epoch == 0 and self.refines:
                kept = self._solve(state)
            if params.reassignment_ratio > 0:
                reassign(state.centers, state.counts, first, None, params.reassignment_ratio,
                         self.kernels, self.rng)
        result = self._solve(state)
        if kept is not None and kept.inertia < result.inertia:
            logger.info("the first epoch's solution is better on the data: kept")
            kept.state = result.state
            return kept
        return result

    def _map_merge(self, task: Callable, merge: Callable, shared: Sequence[Any],
                   per_part: Sequence[tuple] | None = None, **merge_options: Any) -> Any:
        """`task` on every partition, its results merged in a tree on the workers; returns
        the one merged result. `shared` values go into the graph once, not once per task."""
        literals = [dask.delayed(v, traverse=False) for v in (self.found.reader, *shared)]
        per_part = per_part or [()] * len(self.found.items)
        tasks = [dask.delayed(task)(item, name, *literals, *own) for item, name, own
                 in zip(self.found.items, self.found.names, per_part, strict=True)]
        while True:  # merged at least once: a merge also puts a lone result in order
            tasks = [dask.delayed(merge)(group, **merge_options)
                     for group in parts.batches_of(tasks, FAN_IN)]
            if len(tasks) == 1:
                return self.client.compute(tasks[0]).result()

    def _seeds(self) -> list[tuple]:
        """One seed per partition for its random visiting order; none in the source's order,
        so that parity mode draws what the local parity fit draws."""
        if not self.params.shuffle:
            return [(None,)] * len(self.found.items)
        return [(int(s),) for s in self.rng.integers(2**63, size=len(self.found.items))]

    def _starting_rows(self) -> np.ndarray:
        """The rows the K starting centers are drawn from (see the module's docstring)."""
        n = StreamingPass(self.kernels, self.params, self.rng, None).init_rows()
        if self.params.shuffle:
            _, rows = self._map_merge(parts.sample_part, parts.merge_samples, (n,),
                                      self._seeds(), n=n)
        else:
            rows = self._head(n)
        if rows is None:
            raise ValueError(f"Found 0 sample(s) in {self.found.description} while a minimum "
                             "of 1 is required by KMeans.")
        return rows

    def _head(self, n: int) -> np.ndarray | None:
        """The first `n` rows of the data, reading partitions in order until there are."""
        found: list[np.ndarray] = []
        have = 0
        for item, name in zip(self.found.items, self.found.names, strict=True):
            task = dask.delayed(parts.head_rows)(item, name, self.found.reader, n - have)
            rows = self.client.compute(task).result()
            if rows is not None:
                found.append(rows.astype(found[0].dtype if found else rows.dtype, copy=False))
                have += len(rows)
            if have >= n:
                break
        return np.concatenate(found) if found else None

    def _epoch(self, base: StreamState) -> StreamState:
        """One map and merge from `base` (centers in the data's dtype)."""
        added = self._map_merge(parts.stream_part, merge_states, (base, self.part_params),
                                self._seeds())
        decay = decay_factor(added.weight_seen, self.params.half_life_time_size)
        merged = merge_states([replace(base, counts=base.counts * decay), added])
        return replace(merged, centers=merged.centers.astype(base.centers.dtype))

    def _solve(self, state: StreamState) -> FitResult:
        """The k centers of a state; refined on the data where `refines`."""
        reduction = reduce_centers(state, self.params, self.kernels, copy.deepcopy(self.rng))
        result = FitResult(reduction, state, state.centers.shape[1], state.centers.dtype,
                           self.params.epochs)
        if self.refines:
            self._refine(result)
        return result

    def _refine(self, result: FitResult) -> None:
        """Lloyd passes over the partitions from the reduced centers, with the local rule of
        `Kernels.refine`: stop when a move would lower the loss by at most local_lloyd_tol
        (relative), or by rounding, or after local_lloyd_max_iter moves."""
        params, state = self.params, result.state
        centers = result.reduction.centers.astype(result.dtype)
        for moves in itertools.count():
            sums, mass, loss = self._map_merge(parts.lloyd_part, parts.merge_stats, (centers,))
            means = np.where(mass[:, None] > 0, sums / np.maximum(mass, 1.0)[:, None], centers)
            drop = float(mass @ ((centers - means) ** 2).sum(axis=1))
            if (drop <= params.local_lloyd_tol * loss or moves == params.local_lloyd_max_iter
                    or drop <= 1e-12 * float(mass @ (means ** 2).sum(axis=1))):
                break
            centers = means.astype(result.dtype)
        logger.info("refined on the data: %d move(s), mean square distance %.6g", moves,
                    loss / max(mass.sum(), 1.0))
        refined = centers.astype(np.float64)
        live = state.counts > 0
        result.reduction = Reduction(
            refined, binned_weights(state.centers[live], state.counts[live], refined,
                                    self.kernels),
            result.reduction.train_msd, result.reduction.n_iter,
        )
        result.inertia = loss


# --------------------------------------------------------------------------- predicting


def lazy_assign(source: Source, centers: np.ndarray, what: str, backend: str,
                options: dict[str, Any]) -> Any:
    """Predictions on a dask collection as dask arrays, computed where its blocks are.

    `what` is "predict" (labels, int32), "transform" (distances to each center, X's dtype) or
    "distance" (labels and the distance to their center, float64). `backend` and `options`
    name the compute kernels each block loads.
    """
    X = _rows_array(source)
    kernels = {"centers": centers, "backend": backend, "options": tuple(sorted(options.items()))}
    if what == "transform":
        return X.map_blocks(_transform_block, chunks=(X.chunks[0], (len(centers),)),
                            dtype=X.dtype, meta=np.empty((0, 0), X.dtype), **kernels)
    if what == "predict":
        return X.map_blocks(_nearest_block, drop_axis=1, dtype=np.int32,
                            meta=np.empty(0, np.int32), **kernels)
    nearest = X.map_blocks(_nearest_block, distances=True, chunks=(X.chunks[0], (2,)),
                           dtype=np.float64, meta=np.empty((0, 0)), **kernels)
    return nearest[:, 0].astype(np.int32), nearest[:, 1]


def _rows_array(source: Source) -> Any:
    """A dask source as a dask array of its dtype, blocks of whole rows (a DataFrame's
    partitions converted as the fit converts them)."""
    X = source.data
    if not hasattr(X, "columns"):
        return X.astype(source.dtype)
    return da.concatenate([
        da.from_delayed(dask.delayed(block_rows)(part, source.dtype),
                        shape=(np.nan, source.n_features), dtype=source.dtype)
        for part in X.to_delayed()
    ])


def _nearest_block(X: np.ndarray, centers: np.ndarray, backend: str, options: tuple,
                   distances: bool = False, block_info: dict | None = None) -> np.ndarray:
    kernels = parts.compute_kernels(backend, options)
    X = np.ascontiguousarray(X)
    labels = np.empty(len(X), dtype=np.int32)
    sq_dist = np.empty(len(X), dtype=np.float64) if distances else None
    if not np.isfinite(kernels.assign(X, centers, labels, sq_dist, None)):
        _check_block(X, block_info)
    if not distances:
        return labels
    return np.column_stack([labels, np.sqrt(sq_dist)])


def _transform_block(X: np.ndarray, centers: np.ndarray, backend: str, options: tuple,
                     block_info: dict | None = None) -> np.ndarray:
    kernels = parts.compute_kernels(backend, options)
    X = np.ascontiguousarray(X)
    out = np.empty((len(X), len(centers)), dtype=X.dtype)
    kernels.transform(X, centers, out)
    if not np.isfinite(float(out.sum())):
        _check_block(X, block_info)
    return out


def _check_block(X: np.ndarray, block_info: dict | None) -> None:
    """Name the first NaN or infinity of a block: its row in the whole array where the chunks
    say where the block starts, else the block and its row in it."""
    info = (block_info or {}).get(0, {})
    start = info.get("array-location", [(0, 0)])[0][0]
    if start is not None and not math.isnan(start):
        check_finite(X, row_offset=int(start))
    check_finite(X, name=f"X (block {info.get('chunk-location', (0,))[0]})")
