"""The door every piece of data comes through: `as_source` decides once what X is, and the
`Source` record it makes is all that the estimator, the algorithm and the trainers look at.

In memory: a numpy array or a list of rows, a pandas DataFrame, a scipy.sparse matrix, a GPU
array, or an iterable of 2-D batches of any size. On disk or in S3: a file (CSV,
RecordIO-protobuf, ``.npy``, any of them gzip-compressed, told apart by their first bytes), a
folder read as a SageMaker channel, the SDK's ``.amazon.manifest`` or any ``*.manifest``, and
``s3://`` keys, prefixes and manifests, or a list of any of those; a binary stream. On a Dask
cluster: a dask array or dask DataFrame (kind "dask"), known by its class without importing
dask; a local backend reads it a block at a time, the dask backend where its blocks live.
Files are read a block at a time, so a fit holds about one batch plus one read chunk whatever
the size of the data.

The dtype of streamed data is fixed by its first batch (float32 or float64); later batches are
cast to it, so a folder of a float32 CSV and a float64 ``.npy`` streams as float32.
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_finite, check_shape
from ..exceptions import DataFormatError
from .locations import iter_location_chunks
from .memory import (
    dense_dtype,
    frame_dtype,
    frame_rows,
    is_batch_iterable,
    is_device_array,
    is_frame,
    is_sparse,
    numeric_array,
)
from .s3 import is_s3_uri
from .shuffle import shuffle_batches
from .streams import Tagged, buffered, iter_stream_chunks

__all__ = [
    "Source", "as_source", "block_rows", "dask_blocks", "describe_source", "is_batch_iterable",
    "is_reiterable", "iter_batches", "rebatch",
]

# The kinds of source: rows addressable by index, or read front to back.
IN_MEMORY = ("dense", "frame", "sparse", "device")
STREAMED = ("batches", "location", "stream", "dask")

Batch = tuple[np.ndarray, "np.ndarray | None"]
"""A batch of rows (C-contiguous float32 or float64) and their sample weights (or None)."""


@dataclass(frozen=True)
class Source:
    """What X is, decided once at the door.

    Attributes
    ----------
    data : object
        The data itself: a numpy array (kind "dense"), a DataFrame ("frame"), a CSR matrix
        ("sparse"), a GPU array ("device"), an iterable of batches ("batches"), a path or URI
        or a tuple of them ("location"), a binary stream ("stream"), or a dask array (with
        one chunk of columns) or dask DataFrame ("dask").
    kind : str
    description : str
        For messages, such as ``"folder 'data/train'"``.
    reiterable : bool
        Whether it can be read again from its start (epochs > 1, labels after a fit).
    n_samples, n_features : int or None
        Known for in-memory data; for a dask collection, its features (and its rows where
        its chunks say).
    dtype : numpy dtype or None
        float32 or float64 for in-memory data and dask collections; None for a stream, whose
        first batch fixes it.
    feature_names : ndarray of object or None
        A DataFrame's column names, when they are all strings.
    sample_weight : ndarray of float64 or None
        One non-negative finite weight per row, in row order.
    skip_header : bool
        Drop the first line of each CSV file.
    """

    data: Any
    kind: str
    description: str
    reiterable: bool
    n_samples: int | None = None
    n_features: int | None = None
    dtype: np.dtype | None = None
    feature_names: np.ndarray | None = None
    sample_weight: np.ndarray | None = None
    skip_header: bool = False

    @property
    def in_memory(self) -> bool:
        """Rows are addressable by index (so they can be visited in any order)."""
        return self.kind in IN_MEMORY

    def dense(self, *, finite: bool = True) -> Any:
        """The whole data as one C-contiguous float array (no copy where it already is one).

        For kinds "dense", "frame" and "device". `finite` checks for NaN and infinity (one
        pass), naming the first bad row and column.
        """
        if self.kind == "dense":
            X = np.ascontiguousarray(self.data, dtype=self.dtype)
        elif self.kind == "frame":
            X = frame_rows(self.data, slice(None), self.dtype)
        elif self.kind == "device":
            X = _device_dense(self.data, self.dtype)
        else:
            raise TypeError(f"{self.description} is not one dense table")
        if finite:
            _check_finite_any(X)
        return X

    def batches(self, batch_size: int, order: np.ndarray | None = None, *,
                finite: bool = True, rng: np.random.Generator | None = None,
                buffer: int | str | None = None) -> Iterator[Batch]:
        """The rows as (X, weights) batches of `batch_size` rows (the last may be fewer), in
        the fixed dtype.

        `order` (in-memory kinds only) visits the rows in that order. For a stream, `rng`
        shuffles the order of the files of a folder, manifest or prefix (unless sample weights,
        which follow the source's row order, are given), and `buffer` (rows, or a size such as
        '64MiB') passes the rows through a shuffle buffer drawn from `rng`
        (`kmeans_stream.io.shuffle`). `finite` checks every batch for NaN and infinity,
        naming the row (counted from the start of the data) and the column; a reader that
        only moves data leaves them be.
        """
        batch_size = _check_batch_size(batch_size)
        if order is not None and not self.in_memory:
            raise TypeError(f"{self.description} is read front to back; it has no row order")
        if self.kind == "device":
            raise TypeError(f"{self.description} lives on a GPU; stream it with its backend")
        if self.in_memory:
            return self._memory_batches(batch_size, order, finite)
        batches = self._streamed_batches(batch_size, finite, rng)
        if rng is not None and buffer is not None:
            batches = shuffle_batches(batches, buffer, batch_size, rng)
        return batches

    def _rows(self, rows: Any) -> np.ndarray:
        if self.kind == "frame":
            return frame_rows(self.data, rows, self.dtype)
        if self.kind == "sparse":
            return np.ascontiguousarray(self.data[rows].toarray(), dtype=self.dtype)
        return np.ascontiguousarray(self.data[rows], dtype=self.dtype)

    def _memory_batches(self, batch_size: int, order: np.ndarray | None,
                        finite: bool) -> Iterator[Batch]:
        weights = self.sample_weight
        for start in range(0, self.n_samples, batch_size):
            rows = slice(start, start + batch_size) if order is None else \
                order[start:start + batch_size]
            X = self._rows(rows)
            if finite and order is None:
                check_finite(X, row_offset=start)
            elif finite:
                _check_finite_rows(X, rows)
            yield X, None if weights is None else weights[rows]

    def _streamed_batches(self, batch_size: int, finite: bool,
                          rng: np.random.Generator | None) -> Iterator[Batch]:
        parts_order = rng if self.sample_weight is None else None
        if self.kind == "location":
            tagged = self._location_chunks(batch_size, parts_order)
        elif self.kind == "dask":
            tagged = _iter_dask_blocks(self.data, self.description, self.dtype, parts_order)
        elif self.kind == "stream":
            tagged = _iter_file_object(self.data, batch_size, self.skip_header)
        else:
            tagged = _iter_chunks(self.data, self.description)
        dtype, offset = None, 0
        for X in rebatch(_same_width(tagged), batch_size):
            dtype = X.dtype if dtype is None else dtype
            X = np.ascontiguousarray(X, dtype=dtype)
            if finite:
                check_finite(X, row_offset=offset)
            yield X, self._weights_for(offset, len(X))
            offset += len(X)
        if self.sample_weight is not None and offset != len(self.sample_weight):
            raise ValueError(
                f"sample_weight has {len(self.sample_weight)} weights but {self.description} "
                f"holds {offset} rows."
            )

    def _location_chunks(self, batch_size: int,
                         rng: np.random.Generator | None) -> Iterator[Tagged]:
        """The files of each path, the paths of a list in a random order drawn from `rng` (and
        the files of each path too, as for one path)."""
        entries = self.data if isinstance(self.data, tuple) else (self.data,)
        if rng is not None and len(entries) > 1:
            entries = tuple(entries[i] for i in rng.permutation(len(entries)))
        for entry in entries:
            yield from iter_location_chunks(entry, batch_size, skip_header=self.skip_header,
                                            rng=rng)

    def _weights_for(self, offset: int, n_rows: int) -> np.ndarray | None:
        if self.sample_weight is None:
            return None
        weights = self.sample_weight[offset:offset + n_rows]
        if len(weights) < n_rows:
            raise ValueError(
                f"sample_weight has {len(self.sample_weight)} weights but {self.description} "
                f"holds more rows (at least {offset + n_rows})."
            )
        return weights


def as_source(X: Any, sample_weight: Any = None, *, skip_header: bool = False) -> Source:
    """Decide once what `X` is: the `Source` record everything downstream takes.

    Parameters
    ----------
    X : array-like, DataFrame, sparse matrix, GPU array, iterable of batches, path, URI (or a
        list of them), stream, dask array or dask DataFrame
        See the module's docstring.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative finite weights, one per row, in row order (scikit-learn's meaning: a row
        of weight 2 counts as two rows).
    skip_header : bool, default False
        Drop the first line of each CSV file.

    Raises
    ------
    DataFormatError
        For data that are not numbers (a text column is named).
    ValueError
        For arrays that are not 2-D, empty, or weights that do not fit.
    TypeError
        For an object that is none of the kinds above.
    """
    if isinstance(X, Source):
        return X
    source = _classify(X, skip_header)
    if sample_weight is None:
        return source
    return _with_weights(source, sample_weight)


def _classify(X: Any, skip_header: bool) -> Source:
    if isinstance(X, (str, os.PathLike)):
        return Source(os.fspath(X), "location", _describe_location(os.fspath(X)), True,
                      skip_header=skip_header)
    if _is_location_list(X):
        paths = tuple(os.fspath(x) for x in X)
        return Source(paths, "location", f"list of {len(paths)} locations ({paths[0]!r}, ...)",
                      True, skip_header=skip_header)
    if hasattr(X, "__dask_graph__"):
        return _dask_source(X)
    if hasattr(X, "read"):
        if isinstance(X, io.TextIOBase):
            raise TypeError("a text stream was given: open the file in binary mode ('rb')")
        return Source(X, "stream", f"stream {_stream_name(X)!r}", False, skip_header=skip_header)
    if is_frame(X):
        return _table(X, "frame", frame_dtype(X), _feature_names(X))
    if is_sparse(X):
        csr = X.tocsr()
        return _table(csr, "sparse", dense_dtype(csr.dtype, "the sparse matrix"))
    if is_device_array(X):
        return _table(X, "device", dense_dtype(np.dtype(X.dtype), "the GPU array"))
    if is_batch_iterable(X):
        return Source(X, "batches", _describe_batches(X), not isinstance(X, Iterator))
    if isinstance(X, (np.ndarray, list, tuple)) or hasattr(X, "__array__"):
        array = numeric_array(X)
        return _table(array, "dense", dense_dtype(array.dtype, "X"))
    raise TypeError(
        f"cannot read data from an object of type {type(X).__name__}: expected an array, a "
        "DataFrame, a "
        "scipy.sparse matrix, an iterable of 2-D batches, a path or an s3:// URI"
    )


def _table(data: Any, kind: str, dtype: np.dtype, names: np.ndarray | None = None) -> Source:
    if len(data.shape) != 2:
        raise ValueError(
            f"Expected 2D array, got {len(data.shape)}D array instead: X.shape={data.shape}. "
            "Reshape your data either using array.reshape(-1, 1) if your data has a single "
            "feature or array.reshape(1, -1) if it contains a single sample."
        )
    check_shape(data)
    n_samples, n_features = data.shape
    what = {"dense": "array", "frame": "DataFrame", "sparse": "sparse matrix",
            "device": "GPU array"}[kind]
    description = f"{what} of shape {tuple(data.shape)} and dtype {_dtype_name(data)}"
    return Source(data, kind, description, True, int(n_samples), int(n_features),
                  np.dtype(dtype), names)


def _with_weights(source: Source, sample_weight: Any) -> Source:
    weights = np.asarray(sample_weight)
    if weights.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D; got shape {weights.shape}.")
    if weights.dtype.kind not in "fiub":
        raise ValueError(f"sample_weight must hold numbers; got dtype {weights.dtype}.")
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if source.n_samples is not None and len(weights) != source.n_samples:
        raise ValueError(
            f"sample_weight.shape == {weights.shape}, expected ({source.n_samples},)!"
        )
    if weights.size and not weights.any():
        raise ValueError("Sample weights must contain at least one non-zero number.")
    if not np.isfinite(weights).all() or (weights < 0).any():
        bad = int(np.flatnonzero(~np.isfinite(weights) | (weights < 0))[0])
        raise ValueError(
            f"sample_weight must be finite and non-negative; sample_weight[{bad}] = "
            f"{weights[bad]}."
        )
    return Source(source.data, source.kind, source.description, source.reiterable,
                  source.n_samples, source.n_features, source.dtype, source.feature_names,
                  weights, source.skip_header)


def iter_batches(
    source: Any, batch_size: int, *, skip_header: bool = False
) -> Iterator[np.ndarray]:
    """Read a source as 2-D float batches of exactly `batch_size` rows (the last may be fewer).

    Parameters
    ----------
    source : array-like, DataFrame, sparse matrix, iterable of batches, path, URI or stream
        A path may name a file, a folder (every file in it, recursively, in S3 key order,
        hidden ones left out) or a manifest; ``s3://bucket/key-or-prefix`` reads objects the
        same way. A binary stream (``sys.stdin.buffer``, a pipe) is read to its end as one
        file. A C-contiguous float32 or float64 array is sliced without copying.
    batch_size : int
        Rows per batch, at least 1.
    skip_header : bool, default False
        Drop the first line of each CSV file. SageMaker's CSV has no header, so by default
        every line is data.

    Returns
    -------
    iterator of ndarray of shape (batch_size, n_features)
        C-contiguous float32 or float64 arrays: float32 from CSV and float32 records, the
        array's own type for float32 and float64 arrays, float64 for other numbers; a stream
        keeps the type of its first batch.

    Raises
    ------
    DataFormatError
        When reading reaches malformed data (a ragged CSV row, a cell that is not a number, a
        file or batch with another number of columns than the first); the message names the
        file and the line, record or byte offset.
    TypeError
        If `source` is none of the kinds above.
    """
    batches = as_source(source, skip_header=skip_header).batches(batch_size, finite=False)
    return (X for X, _ in batches)


def rebatch(chunks: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Cut and join 2-D chunks of any sizes into batches of exactly `batch_size` rows.

    A part of one chunk is passed on as a view; rows from several chunks are joined into a new
    array. Only the last batch may be shorter; empty chunks are skipped.

    Parameters
    ----------
    chunks : iterable of ndarray of shape (n_rows, n_features)
        Chunks with the same number of columns.
    batch_size : int
        Rows per batch, at least 1.

    Returns
    -------
    iterator of ndarray of shape (batch_size, n_features)
        C-contiguous batches, in the order of the rows.
    """
    return _rebatch(chunks, _check_batch_size(batch_size))


def _rebatch(chunks: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    pending: list[np.ndarray] = []
    count = 0
    for chunk in chunks:
        start, n_rows = 0, len(chunk)
        while start < n_rows:
            take = min(batch_size - count, n_rows - start)
            pending.append(chunk[start : start + take])
            count += take
            start += take
            if count == batch_size:
                yield _join(pending)
                pending, count = [], 0
    if pending:
        yield _join(pending)


def _join(parts: list[np.ndarray]) -> np.ndarray:
    if len(parts) == 1:
        return np.ascontiguousarray(parts[0])
    dtype = parts[0].dtype
    return np.concatenate([p.astype(dtype, copy=False) for p in parts])


def is_reiterable(source: Any) -> bool:
    """Whether `source` can be read again from its start, as epochs > 1 need.

    Arrays, DataFrames, sparse matrices, lists, paths and URIs can; an iterator, a generator or
    a stream is used up by one pass and cannot.
    """
    return as_source(source).reiterable


def describe_source(source: Any) -> str:
    """A short description of a source for messages, such as ``"folder 'data/train'"``."""
    return as_source(source).description


def _is_location_list(X: Any) -> bool:
    """A non-empty list or tuple of paths and URIs (rows of data hold no strings)."""
    return isinstance(X, (list, tuple)) and bool(X) and \
        all(isinstance(x, (str, os.PathLike)) for x in X)


def _dask_source(X: Any) -> Source:
    """A dask array or dask DataFrame, classified from its metadata: nothing is computed.

    The number of columns must be known (the rows of a block need not be); an array chunked
    along its columns is rechunked (lazily) into blocks of whole rows.
    """
    array, frame = sys.modules.get("dask.array"), sys.modules.get("dask.dataframe")
    if array is not None and isinstance(X, array.Array):
        if X.ndim != 2:
            raise ValueError(f"Expected a 2D dask array, got {X.ndim}D array instead: "
                             f"X.shape={X.shape}.")
        if math.isnan(X.shape[1]):
            raise ValueError(
                f"X is a dask array with unknown chunk widths (chunks along the columns: "
                f"{X.chunks[1]}): its number of features must be known. Call "
                "X.compute_chunk_sizes() first, or give the chunks when making it."
            )
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        dtype = dense_dtype(np.dtype(X.dtype), "the dask array")
        n_samples = None if math.isnan(X.shape[0]) else int(X.shape[0])
        what = f"dask array of shape {X.shape} and dtype {X.dtype} in {X.numblocks[0]} blocks"
        return Source(X, "dask", what, True, n_samples, int(X.shape[1]), dtype)
    if frame is not None and isinstance(X, frame.DataFrame):
        meta = X._meta  # the empty pandas DataFrame that stands for every partition
        what = f"dask DataFrame of {len(meta.columns)} columns in {X.npartitions} partitions"
        return Source(X, "dask", what, True, None, len(meta.columns), frame_dtype(meta),
                      _feature_names(meta))
    raise TypeError(
        f"cannot read data from a dask collection of type {type(X).__name__}: expected a "
        "2-D dask array or a dask DataFrame (for a Series: series.to_frame())"
    )


def dask_blocks(X: Any) -> list[Any]:
    """The blocks of rows of a dask source's data (its partitions), as dask Delayed objects."""
    return list(X.to_delayed()) if hasattr(X, "columns") else list(X.to_delayed().ravel())


def block_rows(block: Any, dtype: np.dtype) -> np.ndarray:
    """One computed block (a numpy array, or a DataFrame partition) as rows of `dtype`."""
    if is_frame(block):
        return frame_rows(block, slice(None), dtype)
    return np.ascontiguousarray(block, dtype=dtype)


def _iter_dask_blocks(X: Any, name: str, dtype: np.dtype,
                      rng: np.random.Generator | None) -> Iterator[Tagged]:
    """The blocks of a dask collection computed one at a time where dask computes (its
    default scheduler, or the active distributed client): only one is held here at once. In
    a random order drawn from `rng` when one is given."""
    blocks = dask_blocks(X)
    for i in rng.permutation(len(blocks)) if rng is not None else range(len(blocks)):
        yield block_rows(blocks[i].compute(), dtype), f"{name}, block {i}"


def _describe_location(text: str) -> str:
    if text.endswith(".manifest"):
        return f"manifest {text!r}"
    if is_s3_uri(text):
        return f"S3 location {text!r}"
    return f"{'folder' if os.path.isdir(text) else 'file'} {text!r}"


def _describe_batches(X: Any) -> str:
    if isinstance(X, (list, tuple)):
        return f"{type(X).__name__} of {len(X)} batches"
    if hasattr(X, "gi_code"):
        return f"generator {X.__name__!r}"
    return f"{type(X).__name__} object"


def _dtype_name(data: Any) -> str:
    if is_frame(data):
        kinds = sorted({str(t) for t in data.dtypes})
        return kinds[0] if len(kinds) == 1 else f"mixed ({', '.join(kinds)})"
    return str(data.dtype)


def _feature_names(frame: Any) -> np.ndarray | None:
    """A DataFrame's column names when they are all strings, as scikit-learn keeps them."""
    columns = frame.columns
    if len(columns) and all(isinstance(c, str) for c in columns):
        return np.asarray(list(columns), dtype=object)
    return None


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be an int; got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    return int(batch_size)


def _check_finite_rows(X: np.ndarray, rows: np.ndarray) -> None:
    """check_finite for gathered rows, naming the row's place in the data."""
    try:
        check_finite(X)
    except ValueError:
        bad = int(np.argwhere(~np.isfinite(X))[0][0])
        check_finite(X[bad:bad + 1], row_offset=int(rows[bad]))


def _check_finite_any(X: Any) -> None:
    if isinstance(X, np.ndarray):
        check_finite(X)
    elif not np.isfinite(float(X.sum())):
        check_finite(np.asarray(X.get()))  # a GPU array: copied to name the place


def _device_dense(X: Any, dtype: np.dtype) -> Any:
    if X.dtype != dtype:
        X = X.astype(dtype)
    return X if X.flags.c_contiguous else X.copy(order="C")


def _same_width(tagged: Iterable[Tagged]) -> Iterator[np.ndarray]:
    """The arrays of `tagged`, checked to have the columns of the first."""
    width, first = None, None
    for X, where in tagged:
        if width is None:
            width, first = X.shape[1], where
        elif X.shape[1] != width:
            raise DataFormatError(
                f"{where}: {X.shape[1]} columns, but the data before had {width} (from {first})"
            )
        yield X


def _iter_file_object(stream: Any, batch_size: int, skip_header: bool) -> Iterator[Tagged]:
    name = _stream_name(stream)
    reader = buffered(stream, name)
    yield from iter_stream_chunks(reader, name, batch_size, skip_header=skip_header)


def _stream_name(stream: Any) -> str:
    name = getattr(stream, "name", None)
    return name if isinstance(name, str) else "<stream>"


def _iter_chunks(chunks: Iterable[Any], name: str) -> Iterator[Tagged]:
    row = 0
    for i, chunk in enumerate(chunks, start=1):
        where = f"{name}, batch {i} (row {row + 1})"
        X = _dense_chunk(chunk, where)
        yield X, where
        row += len(X)


def _dense_chunk(chunk: Any, where: str) -> np.ndarray:
    if is_sparse(chunk):
        chunk = chunk.tocsr()
        return chunk.toarray().astype(dense_dtype(chunk.dtype, where), copy=False)
    if is_frame(chunk):
        return frame_rows(chunk, slice(None), frame_dtype(chunk))
    X = numeric_array(chunk, where)
    if X.ndim != 2:
        raise DataFormatError(f"{where}: a batch must be 2-D; got shape {X.shape}")
    return X.astype(dense_dtype(X.dtype, where), copy=False)
