"""The streaming passes of one fit: where the rows come from, in which order, and when the
reassignment rule looks at the centers. The K centers and counts live on the backend.

In-memory dense data take one kernel call per span of mini-batches (the whole pass where
nothing is reassigned), visiting the rows in a fresh random permutation each epoch when
shuffling, without copying X. Other sources come a mini-batch at a time (streams through the
shuffle buffer of `kmeans_stream.io.sources`). Written against `Kernels`; names no backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from . import _progress
from ._validation import check_n_features
from .backends.base import Kernels, StreamState
from .io.locations import local_bytes
from .reassignment import SAMPLE_ROWS, check_interval, reassign

DENSE_KINDS = ("dense", "frame", "device")
_UNMADE = object()


class StreamingPass:
    """Streaming passes of one fit (or of one partial_fit call)."""

    def __init__(self, kernels: Kernels, params: Any, rng: np.random.Generator,
                 initialize: Any, state: StreamState | None = None) -> None:
        self.kernels, self.params, self.rng = kernels, params, rng
        self.initialize = initialize  # (first rows, their weights) -> StreamState
        self.state = None
        self.workspace = _UNMADE
        self.dense = None  # in-memory dense data, converted and checked once per fit
        self.streamed = False  # batches of up to mini_batch_size rows, one call each
        self.mixed_rows = None  # rows of an epoch when the whole data is visited in random order
        self.until_check = 0
        # Rows streamed over every epoch; the bar is drawn from the first rows streamed, so
        # that a source failing at its start shows only its error.
        self.progress: _progress.Bar | None = None
        self.expected: int | None = None
        self.file_bytes: int | None = None  # of local files: the bar counts bytes read
        self.passes = 0
        if state is not None:  # a copy: the caller's state stays as it was if this fails
            self.state = StreamState(kernels.asarray(np.array(state.centers)),
                                     kernels.asarray(np.array(state.counts)), state.n_seen,
                                     state.n_steps, state.weight_seen)
            self._start_checks()

    def init_rows(self) -> int:
        """Rows the K starting centers are drawn from: SageMaker's first mini-batch in parity
        mode, else at least 3 k rows (scikit-learn's init_size), so that a mini-batch smaller
        than K does not stop a source that has more rows."""
        params = self.params
        if params.parity:
            return params.mini_batch_size
        return max(params.mini_batch_size, 3 * params.k)

    def run(self, source: Any) -> None:
        """One pass over `source`, shown on a progress bar inside a verbose call: of its bytes
        for local files, else of its rows."""
        if self.passes == 0:
            if source.n_samples is not None:
                self.expected = source.n_samples * self.params.epochs
            if source.kind == "location":
                self.file_bytes = local_bytes(source.data)
        before = self._n_seen()
        with _progress.counting_bytes(self._read_bytes if self.file_bytes else None):
            self._pass(source)
        self.passes += 1
        if self.progress is None:
            return
        if self.passes == self.params.epochs:
            self.progress.close()
        elif self.expected is None and not self.file_bytes:  # rows known after a pass
            self.expected = (self._n_seen() - before) * self.params.epochs
            self.progress.expect(self.expected)

    def _read_bytes(self, n: int) -> None:
        if self.progress is None:
            self.progress = _progress.bar(self.file_bytes * self.params.epochs, "B", "fit")
        self.progress.update(n)

    def _n_seen(self) -> int:
        return 0 if self.state is None else self.state.n_seen

    def _pass(self, source: Any) -> None:
        params = self.params
        order = None
        if params.shuffle and source.in_memory:
            self.mixed_rows = source.n_samples
            order = visiting_order(source.n_samples, params.mini_batch_size, self.rng)
        if source.kind in DENSE_KINDS:
            if self.dense is None:
                self.dense = source.dense()
            X, weights = self.dense, source.sample_weight
            if self.state is None:
                self._start(*self._rows(X, weights, self._init_sample(source.n_samples)))
            self._stream(X, weights, order)
            return
        if self.state is None and source.in_memory:  # sparse: the sample's rows densified
            index = self._init_sample(source.n_samples)
            first = next(source.batches(self.init_rows(), np.arange(source.n_samples)[index]))
            self._start(*first)
        self.streamed = True
        batches = source.batches(params.mini_batch_size, order,
                                 rng=self.rng if params.shuffle else None,
                                 buffer=params.shuffle_buffer if params.shuffle else None)
        if self.state is None:
            batches = self._start_from(batches)
        for X, weights in batches:
            self._stream(X, weights, None)

    def _init_sample(self, n_samples: int) -> slice | np.ndarray:
        """The rows of in-memory data the starting centers come from: the first rows in
        parity mode (SageMaker's first mini-batch) or without shuffling, else rows drawn
        uniformly across the data."""
        rows = self.init_rows()
        if self.params.parity or not self.params.shuffle or rows >= n_samples:
            return slice(0, rows)
        return np.sort(self.rng.choice(n_samples, size=rows, replace=False))

    def host_state(self, description: str) -> StreamState:
        """The state after the passes, as numpy arrays."""
        if self.state is None:
            raise ValueError(
                f"Found 0 sample(s) in {description} while a minimum of 1 is required by KMeans."
            )
        state = self.state
        return StreamState(self.kernels.to_numpy(state.centers),
                           self.kernels.to_numpy(state.counts), state.n_seen, state.n_steps,
                           state.weight_seen)

    # ---------------------------------------------------------------- starting

    def _start(self, first: np.ndarray, weights: np.ndarray | None) -> None:
        self.state = self.initialize(first, weights)
        self._start_checks()

    def _start_checks(self) -> None:
        self.until_check = check_interval(len(self.state.counts), self.params.mini_batch_size,
                                          self.mixed_rows)

    def _start_from(self, batches: Iterator) -> Iterator:
        """Draw the starting centers from the first `init_rows` rows of a stream, then give
        back every batch read for that."""
        held, rows = [], 0
        for batch in batches:
            held.append(batch)
            rows += len(batch[0])
            if rows >= self.init_rows():
                break
        if held:
            first = np.concatenate([X for X, _ in held])[: self.init_rows()]
            weights = None if held[0][1] is None else \
                np.concatenate([w for _, w in held])[: self.init_rows()]
            self._start(first, weights)
        yield from held
        yield from batches

    # ---------------------------------------------------------------- streaming

    def _stream(self, X: Any, weights: np.ndarray | None, order: np.ndarray | None) -> None:
        """Stream X (the rows `order` lists, or all), a span of mini-batches per kernel call,
        with a reassignment check wherever one falls due."""
        state, params = self.state, self.params
        check_n_features(X.shape[1], state.centers.shape[1])
        if X.dtype != state.centers.dtype:  # cast where X lives: a backend moves it itself
            X = X.astype(state.centers.dtype)
        n_visits = X.shape[0] if order is None else len(order)
        batch = params.mini_batch_size
        start = 0
        while start < n_visits:
            span = n_visits - start
            if params.reassignment_ratio > 0:
                span = min(span, self.until_check)
            self._stream_span(X, weights, order, start, start + span)
            start += span
            self.until_check -= span
            if params.reassignment_ratio > 0 and self.until_check <= 0:
                last = slice(max(0, start - batch), min(start, start - batch + SAMPLE_ROWS))
                self._reassign(*self._rows(X, weights, last if order is None else order[last]))
                self._start_checks()

    def _stream_span(self, X: Any, weights: np.ndarray | None, order: np.ndarray | None,
                     start: int, stop: int) -> None:
        """One kernel call over visits start:stop (rows of X, or of `order`)."""
        kernels, params, state = self.kernels, self.params, self.state
        batch = params.mini_batch_size
        if order is not None:
            order = order[start:stop]
            seen = stop - start if weights is None else float(weights[order].sum())
        else:
            if (start, stop) != (0, X.shape[0]):
                X = X[start:stop]
                weights = None if weights is None else weights[start:stop]
            seen = stop - start if weights is None else float(weights.sum())
        if self.progress is None and not self.file_bytes:
            self.progress = _progress.bar(self.expected, "rows", "fit")
        if self.workspace is _UNMADE:  # a backend's workspace may itself be None
            rows = batch if self.streamed else min(batch, max(1, stop - start))
            self.workspace = kernels.workspace(X.dtype, len(state.counts), X.shape[1], rows)
        kernels.stream_batches(X, weights, order, batch, state.centers, state.counts,
                               params.half_life_time_size, self.workspace)
        state.n_seen += stop - start
        if not self.file_bytes:
            self.progress.update(stop - start)
        state.n_steps += -(-(stop - start) // batch)
        state.weight_seen += seen

    def _reassign(self, rows: np.ndarray, weights: np.ndarray | None) -> None:
        """The reassignment rule on the host copies of the centers and counts."""
        kernels, state = self.kernels, self.state
        centers, counts = kernels.to_numpy(state.centers), kernels.to_numpy(state.counts)
        moved = reassign(centers, counts, rows, weights, self.params.reassignment_ratio,
                         kernels, self.rng)
        if moved and centers is not state.centers:  # a device backend: send them back
            state.centers, state.counts = kernels.asarray(centers), kernels.asarray(counts)

    def _rows(self, X: Any, weights: np.ndarray | None,
              index: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows of X (a slice or row indices) as a host array, with their weights."""
        where = index if isinstance(index, slice) or isinstance(X, np.ndarray) else \
            self.kernels.asarray(index)
        rows = np.ascontiguousarray(self.kernels.to_numpy(X[where]))
        return rows, None if weights is None else weights[index]


# A mini-batch holds at least this many runs of consecutive rows from across the data.
RUNS_PER_BATCH = 32
# Rows are shuffled in runs of at most this many consecutive rows.
MAX_RUN = 128


def visiting_order(n_samples: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """A random order of the rows for one epoch, in runs of consecutive rows.

    Runs of min(MAX_RUN, batch_size // RUNS_PER_BATCH) rows (at least 1), in a random order:
    each mini-batch still gathers at least RUNS_PER_BATCH places spread across the data, while
    drawing the order and reading the rows cost a fraction of a row-by-row shuffle (1M rows:
    about 2 ms against 25 ms to draw; the kernels read runs of rows, not scattered rows).
    """
    run = max(1, min(MAX_RUN, batch_size // RUNS_PER_BATCH))
    n_runs = n_samples // run
    order = np.empty(n_samples, dtype=np.intp)
    runs = order[: n_runs * run].reshape(n_runs, run)
    np.add((rng.permutation(n_runs) * run)[:, None], np.arange(run), out=runs)
    order[n_runs * run:] = np.arange(n_runs * run, n_samples)  # a short last run comes last
    return order
