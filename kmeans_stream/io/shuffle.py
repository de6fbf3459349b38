"""A bounded shuffle buffer: a stream's rows come out in a random order, holding at most a
fixed number of rows, as ``tf.data``'s ``shuffle(buffer_size)``.

The buffer fills with the first rows; then each mini-batch that goes out is drawn at random
from it and its places are taken by the next rows in; when the stream ends, what is left goes
out in a random order. A row leaves at most one buffer's worth of rows after it came in, so
data sorted over stretches longer than the buffer are only partly mixed: the buffer should hold
a good share of the data (rows x features x bytes per number; the memory it adds).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

Batch = tuple[np.ndarray, "np.ndarray | None"]


def buffer_rows(size: int | str, n_features: int, itemsize: int, batch_size: int) -> int:
    """Rows of a buffer of `size` (rows, or a size such as '64MiB'): at least one mini-batch."""
    if isinstance(size, str):
        from ..hyperparameters import to_bytes

        size = to_bytes(size) // max(1, n_features * itemsize)
    return max(int(size), batch_size)


def shuffle_batches(batches: Iterable[Batch], size: int | str, batch_size: int,
                    rng: np.random.Generator) -> Iterator[Batch]:
    """The rows of `batches` (of at most `batch_size` rows each) in a random order through a
    buffer of `size` rows or bytes, as (X, weights) batches of the incoming batches' sizes."""
    stream = iter(batches)
    first = next(stream, None)
    if first is None:
        return
    X, w = first
    capacity = buffer_rows(size, X.shape[1], X.itemsize, batch_size)
    rows = np.empty((capacity + batch_size, X.shape[1]), dtype=X.dtype)  # fills by whole batches
    slots = _as_records(rows)  # the same memory, a row per element: fancy indexing 2-3x faster
    weights = None if w is None else np.empty(capacity + batch_size)
    filled = 0
    for X, w in _chain(first, stream):
        m = len(X)
        if filled < capacity:  # still filling
            rows[filled:filled + m] = X
            if weights is not None:
                weights[filled:filled + m] = w
            filled += m
            continue
        places = rng.choice(filled, size=m, replace=False)  # a random batch out, X in its places
        yield _rows_of(slots[places], rows), None if weights is None else weights[places]
        slots[places] = _as_records(np.ascontiguousarray(X, dtype=rows.dtype))
        if weights is not None:
            weights[places] = w
    order = rng.permutation(filled)
    for start in range(0, filled, batch_size):
        places = order[start:start + batch_size]
        yield _rows_of(slots[places], rows), None if weights is None else weights[places]


def _as_records(rows: np.ndarray) -> np.ndarray:
    """A C-contiguous 2-D array seen as 1-D, one opaque record of its bytes per row."""
    return rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize))).reshape(-1)


def _rows_of(records: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Records (`_as_records`) seen as rows of `like`'s dtype and width again."""
    return records.view(like.dtype).reshape(-1, like.shape[1])


def _chain(first: Batch, rest: Iterator[Batch]) -> Iterator[Batch]:
    yield first
    yield from rest
