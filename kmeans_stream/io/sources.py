"""Where `KMeans.fit` reads its rows from: one generator of equal batches for every kind of source.

In memory: a numpy array or a list of rows, a pandas DataFrame, a scipy.sparse matrix, or an
iterable of 2-D batches of any size. On disk or in S3: a file (CSV, RecordIO-protobuf, ``.npy``,
any of them gzip-compressed, told apart by their first bytes), a folder read as a SageMaker
channel, the SDK's ``.amazon.manifest`` or any ``*.manifest``, and ``s3://`` keys, prefixes and
manifests. Files are read a block at a time, so a fit holds about one batch plus one read chunk
whatever the size of the data.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..exceptions import DataFormatError
from .locations import iter_location_chunks
from .s3 import is_s3_uri
from .streams import Tagged, buffered, float_dtype, iter_stream_chunks

__all__ = ["describe_source", "is_batch_iterable", "is_reiterable", "iter_batches", "rebatch"]


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
        array's own type for float32 and float64 arrays, float64 for other numbers.

    Raises
    ------
    DataFormatError
        When reading reaches malformed data (a ragged CSV row, a cell that is not a number, a
        file or batch with another number of columns than the first); the message names the
        file and the line, record or byte offset.
    TypeError
        If `source` is none of the kinds above.
    """
    batch_size = _check_batch_size(batch_size)
    if isinstance(source, (str, os.PathLike)):
        tagged = iter_location_chunks(source, batch_size, skip_header=skip_header)
        return rebatch(_same_width(tagged), batch_size)
    if hasattr(source, "read"):
        return rebatch(_iter_file_object(source, batch_size, skip_header), batch_size)
    if _is_frame(source):
        return _iter_frame(source, batch_size)
    if _is_sparse(source):
        return _iter_sparse(source, batch_size)
    if is_batch_iterable(source):
        tagged = _iter_chunks(source, describe_source(source))
        return rebatch(_same_width(tagged), batch_size)
    if isinstance(source, (np.ndarray, list, tuple)) or hasattr(source, "__array__"):
        return _iter_array(np.asarray(source), batch_size)
    raise TypeError(
        f"cannot read training data from a {type(source).__name__}: expected an array, a "
        "DataFrame, a scipy.sparse matrix, an iterable of 2-D batches, a path or an s3:// URI"
    )


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
    return np.ascontiguousarray(parts[0]) if len(parts) == 1 else np.concatenate(parts)


def is_reiterable(source: Any) -> bool:
    """Whether `source` can be read again from its start, as epochs > 1 need.

    Arrays, DataFrames, sparse matrices, lists, paths and URIs can; an iterator or a generator
    is used up by one pass and cannot.

    Parameters
    ----------
    source : object
        Anything `iter_batches` accepts.

    Returns
    -------
    bool
    """
    if isinstance(source, (str, os.PathLike, np.ndarray)) or _is_frame(source):
        return True
    if _is_sparse(source):
        return True
    if isinstance(source, Iterator):
        return False
    return isinstance(source, Iterable) or hasattr(source, "__array__")


def describe_source(source: Any) -> str:
    """A short description of a source for messages, such as ``"folder 'data/train'"``.

    Parameters
    ----------
    source : object
        Anything `iter_batches` accepts.

    Returns
    -------
    str
    """
    if isinstance(source, (str, os.PathLike)):
        return _describe_location(os.fspath(source))
    if isinstance(source, np.ndarray) or _is_frame(source) or _is_sparse(source):
        kind = "array" if isinstance(source, np.ndarray) else type(source).__name__
        return f"{kind} of shape {tuple(source.shape)} and dtype {_dtype_name(source)}"
    if hasattr(source, "read"):
        return f"stream {_stream_name(source)!r}"
    if isinstance(source, (list, tuple)):
        what = "batches" if is_batch_iterable(source) else "rows"
        return f"{type(source).__name__} of {len(source)} {what}"
    if hasattr(source, "gi_code"):
        return f"generator {source.__name__!r}"
    return f"{type(source).__name__} object"


def _describe_location(text: str) -> str:
    if text.endswith(".manifest"):
        return f"manifest {text!r}"
    if is_s3_uri(text):
        return f"S3 location {text!r}"
    return f"{'folder' if os.path.isdir(text) else 'file'} {text!r}"


def _dtype_name(source: Any) -> str:
    if _is_frame(source):
        kinds = sorted({str(t) for t in source.dtypes})
        return kinds[0] if len(kinds) == 1 else f"mixed ({', '.join(kinds)})"
    return str(source.dtype)


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be an int; got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    return int(batch_size)


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


def _iter_file_object(stream: Any, batch_size: int, skip_header: bool) -> Iterator[np.ndarray]:
    if isinstance(stream, io.TextIOBase):
        raise TypeError("a text stream was given: open the file in binary mode ('rb')")
    name = _stream_name(stream)
    reader = buffered(stream, name)
    for X, _ in iter_stream_chunks(reader, name, batch_size, skip_header=skip_header):
        yield X


def _stream_name(stream: Any) -> str:
    name = getattr(stream, "name", None)
    return name if isinstance(name, str) else "<stream>"


# ---------------------------------------------------------------- in-memory sources


def _iter_array(X: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    if X.ndim != 2:
        raise ValueError(
            f"expected 2-D data (n_samples, n_features); got an array of shape {X.shape}"
        )
    dtype = _numeric_dtype(X.dtype, "the array")
    return (
        np.ascontiguousarray(X[start : start + batch_size], dtype=dtype)
        for start in range(0, X.shape[0], batch_size)
    )


def _iter_frame(frame: Any, batch_size: int) -> Iterator[np.ndarray]:
    from pandas.api.types import is_numeric_dtype

    bad = [str(name) for name, dtype in frame.dtypes.items() if not is_numeric_dtype(dtype)]
    if bad:
        raise DataFormatError(f"DataFrame columns {bad[:5]} are not numeric")
    same = len(set(frame.dtypes)) == 1 and frame.dtypes.iloc[0] == np.float32
    dtype = np.float32 if same else np.float64
    return (
        np.ascontiguousarray(
            frame.iloc[start : start + batch_size].to_numpy(dtype=dtype, na_value=np.nan)
        )
        for start in range(0, len(frame), batch_size)
    )


def _iter_sparse(matrix: Any, batch_size: int) -> Iterator[np.ndarray]:
    csr = matrix.tocsr()
    dtype = _numeric_dtype(csr.dtype, "the sparse matrix")
    return (
        np.ascontiguousarray(csr[start : start + batch_size].toarray(), dtype=dtype)
        for start in range(0, csr.shape[0], batch_size)
    )


def _iter_chunks(chunks: Iterable[Any], name: str) -> Iterator[Tagged]:
    row = 0
    for i, chunk in enumerate(chunks, start=1):
        where = f"{name}, batch {i} (row {row + 1})"
        X = _dense_chunk(chunk, where)
        yield X, where
        row += len(X)


def _dense_chunk(chunk: Any, where: str) -> np.ndarray:
    if _is_sparse(chunk):
        chunk = chunk.toarray()
    elif _is_frame(chunk):
        chunk = chunk.to_numpy(na_value=np.nan)
    X = np.asarray(chunk)
    if X.ndim != 2:
        raise DataFormatError(f"{where}: a batch must be 2-D; got shape {X.shape}")
    return X.astype(_numeric_dtype(X.dtype, where), copy=False)


def _numeric_dtype(dtype: np.dtype, what: str) -> np.dtype:
    if dtype.kind not in "fiub":
        raise DataFormatError(f"{what} has dtype {dtype}; training data must be numbers")
    return float_dtype(dtype)


def is_batch_iterable(source: Any) -> bool:
    """Whether `source` is an iterable of batches rather than an array or a list of rows.

    A list or tuple is a list of batches when its first item is 2-D (an array, a DataFrame,
    a sparse matrix or a nested list), else a list of rows. `KMeans.fit` asks this too, so
    the estimator and the reader never disagree on what a list holds.
    """
    if isinstance(source, (list, tuple)):
        first = source[0] if source else None
        return _is_sparse(first) or _is_frame(first) or np.ndim(first) == 2
    return isinstance(source, Iterable) and not hasattr(source, "__array__")


def _is_frame(source: Any) -> bool:
    # pandas and scipy are never imported here: an object of theirs means they are loaded
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(source, pandas.DataFrame)


def _is_sparse(source: Any) -> bool:
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(source)
