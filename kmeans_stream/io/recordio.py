"""RecordIO-protobuf, the binary data format of SageMaker's built-in algorithms (spec 3.3, 3.4).

Each record is framed as dmlc RecordIO frames it: the uint32 magic 0xCED7230A, a uint32 length
word whose top three bits are the multi-part flag, the serialized ``aialgs.data.Record`` and
zero padding to a multiple of four bytes. The writer produces the bytes of the SageMaker
Python SDK 2.x (``write_numpy_to_dense_tensor``, ``write_spmatrix_to_sparse_tensor``). The
reader also takes dmlc's multi-part records, any map-entry order and fields it does not know.

Reading is fast where files are regular: when consecutive records share one byte layout apart
from their float payloads (every SDK dense float file does), a whole chunk of records is
checked and decoded at once with numpy; other records go through the protobuf decoder one by one.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator

import numpy as np

from ..exceptions import DataFormatError
from ._atomic import atomic_write
from ._layout import Layout
from ._scan import CHUNK_BYTES, MAGIC_BYTES, frame_length, open_scanner
from .protobuf import (
    FLOAT32_TENSOR,
    FLOAT64_TENSOR,
    INT32_TENSOR,
    decode_record,
    encode_record,
    encode_value,
)

__all__ = [
    "iter_recordio",
    "read_predictions_recordio",
    "read_recordio",
    "write_predictions_recordio",
    "write_recordio",
]

# Records encoded one by one are joined into writes of this many.
_RECORDS_PER_WRITE = 4096
_INT32 = np.iinfo(np.int32)


def write_recordio(path_or_file, X, labels=None) -> None:
    """Write rows as RecordIO-protobuf records, byte for byte as the SageMaker SDK 2.x does.

    Parameters
    ----------
    path_or_file : str, os.PathLike or binary file
        Where to write. A path is written through a temporary file renamed into place.
    X : array-like or scipy.sparse matrix of shape (n_samples, n_features)
        float32 rows become ``float32_tensor`` values, float64 ``float64_tensor`` and integers
        (which must fit in int32) ``int32_tensor``. A sparse matrix is written row by row as
        CSR: ``values``, ``keys`` (uint64 column indices) and ``shape = [n_features]``.
    labels : array-like of shape (n_samples,), optional
        One label per row, written to ``label["values"]`` as a one-value tensor.

    Raises
    ------
    ValueError
        If `X` is not 2-D, `labels` is not 1-D or its length is not the number of rows, or a
        dtype is not float32, float64 or an integer type that fits in int32. (The SDK also
        accepts labels as long as the number of columns; that is refused here.)
    """
    sparse = _is_sparse(X)
    X = X if sparse else np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (a matrix); got {X.ndim} dimension(s)")
    kind = _tensor_kind(X.dtype, "X", None if sparse else X)
    label_cols = {} if labels is None else {"values": _label_column(labels, X.shape[0])}
    chunks = _sparse_chunks(X, kind, label_cols) if sparse else _dense_chunks(X, kind, label_cols)
    _write_chunks(path_or_file, chunks)


def read_recordio(path_or_file) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a whole RecordIO-protobuf file into a dense matrix.

    Parameters
    ----------
    path_or_file : str, os.PathLike or binary file

    Returns
    -------
    X : numpy.ndarray of shape (n_samples, n_features)
        float32, float64 or int32 as the records' tensors are; sparse records are densified
        with their ``shape``. An empty file gives an array of shape (0, 0).
    labels : numpy.ndarray of shape (n_samples,) or None
        ``label["values"]`` of each record, or None when the records carry no such label.

    Raises
    ------
    DataFormatError
        If the file is malformed; the message names the file and the byte offset.
    """
    with open_scanner(path_or_file) as scanner:
        blocks = list(scanner.blocks())
    if not blocks:
        return np.zeros((0, 0), dtype=np.float32), None
    X = np.concatenate([b.X for b in blocks]) if len(blocks) > 1 else blocks[0].X
    if "values" not in scanner.label_keys:
        return X, None
    return X, np.concatenate([b.labels["values"] for b in blocks])


def iter_recordio(path_or_file, batch_size: int) -> Iterator[np.ndarray]:
    """Yield the rows of a RecordIO-protobuf file in batches, reading it a chunk at a time.

    Parameters
    ----------
    path_or_file : str, os.PathLike or binary file
    batch_size : int
        Rows per batch; the last batch holds the rest.

    Yields
    ------
    numpy.ndarray of shape (batch_size, n_features)
        float32 for float32 records, float64 for float64 and int32 records.

    Raises
    ------
    DataFormatError
        If the file is malformed; rows before the fault have been yielded already.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be an int; got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    with open_scanner(path_or_file) as scanner:
        yield from _rebatch((_as_float(b.X) for b in scanner.blocks()), int(batch_size))


def write_predictions_recordio(path_or_file, closest_cluster, distance_to_cluster) -> None:
    """Write K-Means inference responses as RecordIO-protobuf (spec 5.2).

    Each record has empty ``features`` and the labels ``closest_cluster`` and
    ``distance_to_cluster`` as one-value float32 tensors. The entries are written in the order
    distance_to_cluster, closest_cluster, the order the SDK's protobuf runtime gave, so the
    output matches its bytes.

    Parameters
    ----------
    path_or_file : str, os.PathLike or binary file
    closest_cluster, distance_to_cluster : array-like of shape (n_samples,)
    """
    closest = _label_column(closest_cluster, None, np.float32)
    n_rows = closest[1].size
    distance = _label_column(distance_to_cluster, n_rows, np.float32)
    cols = {"distance_to_cluster": distance, "closest_cluster": closest}
    _write_chunks(path_or_file, _dense_chunks(np.zeros((n_rows, 0)), None, cols))


def read_predictions_recordio(path_or_file) -> tuple[np.ndarray, np.ndarray]:
    """Read K-Means inference responses written as RecordIO-protobuf (spec 5.2).

    Returns
    -------
    closest_cluster, distance_to_cluster : numpy.ndarray of shape (n_samples,), float32
    """
    with open_scanner(path_or_file) as scanner:
        blocks = list(scanner.blocks())
    missing = {"closest_cluster", "distance_to_cluster"} - scanner.label_keys
    if blocks and missing:
        raise DataFormatError(f"{scanner.name}: the records have no label {sorted(missing)}")
    return tuple(
        np.concatenate([b.labels[key] for b in blocks] or [np.zeros(0)]).astype(np.float32)
        for key in ("closest_cluster", "distance_to_cluster")
    )


def _is_sparse(X) -> bool:
    # scipy is imported lazily: a matrix from scipy.sparse means scipy is loaded already.
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X)


def _tensor_kind(dtype: np.dtype, what: str, values: np.ndarray | None) -> int:
    dtype = dtype.newbyteorder("=")
    if dtype == np.float32:
        return FLOAT32_TENSOR
    if dtype == np.float64:
        return FLOAT64_TENSOR
    if np.issubdtype(dtype, np.integer):
        if values is not None and values.size:
            low, high = values.min(), values.max()
            if low < _INT32.min or high > _INT32.max:
                raise ValueError(f"{what} holds integers outside int32: [{low}, {high}]")
        return INT32_TENSOR
    raise ValueError(
        f"Unsupported dtype {dtype} on {what}: use float32, float64 or an integer type"
    )


def _label_column(labels, n_rows: int | None, dtype=None) -> tuple[int, np.ndarray]:
    column = np.asarray(labels) if dtype is None else np.asarray(labels, dtype=dtype)
    if column.ndim != 1:
        raise ValueError(f"labels must be a 1-D array (a vector); got shape {column.shape}")
    if n_rows is not None and column.shape[0] != n_rows:
        raise ValueError(f"{column.shape[0]} labels for {n_rows} rows: give one label per row")
    return _tensor_kind(column.dtype, "labels", column), column


def _dense_chunks(X: np.ndarray, kind: int | None, label_cols: dict) -> Iterator[bytes]:
    n_rows = X.shape[0]
    if n_rows == 0:
        return
    layout = _layout_for(X, kind, label_cols)
    if layout is not None:
        step = max(1, CHUNK_BYTES // layout.size)
        for start in range(0, n_rows, step):
            part = {key: col[start : start + step] for key, (_, col) in label_cols.items()}
            yield layout.encode(X[start : start + step], part).tobytes()
        return
    for start in range(0, n_rows, _RECORDS_PER_WRITE):
        stop = min(start + _RECORDS_PER_WRITE, n_rows)
        yield b"".join(_frame(_dense_payload(X, kind, label_cols, i)) for i in range(start, stop))


def _layout_for(X: np.ndarray, kind: int | None, label_cols: dict) -> Layout | None:
    framed = _frame(_dense_payload(X, kind, label_cols, 0))
    layout = Layout.of(framed, decode_record(framed, 8, 8 + frame_length(framed)))
    if layout is None:
        return None
    for key, _start, _stop, dtype in layout.fields:
        # A one-byte int label keeps records one size only while every label is 0 to 127.
        column = label_cols[key][1] if dtype is Layout.VARINT1 else None
        if column is not None and (column.min() < 0 or column.max() > 0x7F):
            return None
    return layout


def _dense_payload(X: np.ndarray, kind: int | None, label_cols: dict, i: int) -> bytes:
    features = {} if kind is None else {"values": encode_value(kind, X[i])}
    label = {key: encode_value(k, col[i : i + 1]) for key, (k, col) in label_cols.items()}
    return encode_record(features, label)


def _sparse_chunks(X, kind: int, label_cols: dict) -> Iterator[bytes]:
    csr = X.tocsr()
    n_rows, n_cols = csr.shape
    ptr, data = csr.indptr, csr.data
    keys = csr.indices.astype(np.uint64)
    if kind == INT32_TENSOR:
        _tensor_kind(data.dtype, "X", data)
    for start in range(0, n_rows, _RECORDS_PER_WRITE):
        records = []
        for i in range(start, min(start + _RECORDS_PER_WRITE, n_rows)):
            row = slice(ptr[i], ptr[i + 1])
            features = {"values": encode_value(kind, data[row], keys[row], [n_cols])}
            label = {key: encode_value(k, col[i : i + 1]) for key, (k, col) in label_cols.items()}
            records.append(_frame(encode_record(features, label)))
        yield b"".join(records)


def _frame(payload: bytes) -> bytes:
    pad = -len(payload) % 4
    return MAGIC_BYTES + struct.pack("<I", len(payload)) + payload + b"\0" * pad


def _write_chunks(path_or_file, chunks: Iterator[bytes]) -> None:
    if hasattr(path_or_file, "write"):
        for chunk in chunks:
            path_or_file.write(chunk)
        return
    with atomic_write(path_or_file) as out:
        for chunk in chunks:
            out.write(chunk)


def _as_float(X: np.ndarray) -> np.ndarray:
    return X if X.dtype.kind == "f" else X.astype(np.float64)


def _rebatch(blocks: Iterator[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    pending: list[np.ndarray] = []
    count = 0
    for X in blocks:
        while X.shape[0]:
            take = min(batch_size - count, X.shape[0])
            pending.append(X[:take])
            count += take
            X = X[take:]
            if count == batch_size:
                yield pending[0] if len(pending) == 1 else np.concatenate(pending)
                pending, count = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)
