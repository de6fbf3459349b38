"""One byte stream to arrays, whatever its format: told apart by the first bytes, not the name.

SageMaker names nothing by extension (the SDK's ``matrix_0.pbr`` and a CSV called ``part-0``
both occur), so a file or an S3 object is RecordIO-protobuf when it starts with the RecordIO
magic, a ``.npy`` file when it starts with numpy's magic, gzip-compressed when it starts with
gzip's (and then told apart again inside), and CSV otherwise.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from ..exceptions import DataFormatError
from .csv import iter_csv_chunks

RECORDIO_MAGIC = b"\x0a\x23\xd7\xce"
NPY_MAGIC = b"\x93NUMPY"
GZIP_MAGIC = b"\x1f\x8b"
_BUFFER = 1 << 20

Tagged = tuple[np.ndarray, str]
"""An array of rows and where its first row comes from (``"data.csv, line 7"``)."""


def iter_stream_chunks(
    stream: BinaryIO, name: str, batch_size: int, *, skip_header: bool = False
) -> Iterator[Tagged]:
    """Arrays of rows from one file or object, its format detected from its first bytes.

    Parameters
    ----------
    stream : binary file-like with ``peek`` (``io.BufferedReader``, ``gzip.GzipFile``)
        Read forwards only.
    name : str
        The file's path or URI, for messages.
    batch_size : int
        Rows per array for the formats that can choose (RecordIO, ``.npy``); a CSV gives one
        array per block of text.
    skip_header : bool, default False
        Drop the first line of a CSV file; ignored for the binary formats.

    Yields
    ------
    Tagged
        A 2-D array and where its first row is.
    """
    head = stream.peek(8)[:8]
    if head.startswith(GZIP_MAGIC):
        with io.BufferedReader(_Gunzip(stream, name), _BUFFER) as inner:
            yield from iter_stream_chunks(inner, name, batch_size, skip_header=skip_header)
    elif head.startswith(RECORDIO_MAGIC):
        yield from _iter_recordio_chunks(stream, name, batch_size)
    elif head.startswith(NPY_MAGIC):
        yield from iter_npy_chunks(stream, name, batch_size)
    else:
        yield from iter_csv_chunks(stream, name, skip_header=skip_header)


def _iter_recordio_chunks(stream: BinaryIO, name: str, batch_size: int) -> Iterator[Tagged]:
    from .recordio import iter_recordio

    row = 0
    for X in iter_recordio(stream, batch_size):
        yield X, f"{name}, record {row + 1}"
        row += len(X)


def iter_npy_chunks(stream: BinaryIO, name: str, batch_size: int) -> Iterator[Tagged]:
    """Rows of a C-order ``.npy`` stream, `batch_size` at a time, read with plain reads.

    Reads rather than ``np.load(mmap_mode='r')``: the pages of a memory map stay in the
    process's resident set once touched, so its peak RSS would grow with the file, which a
    streaming fit must not do.

    Parameters
    ----------
    stream : binary file-like
        Positioned at the magic string.
    name : str
        For messages.
    batch_size : int
        Rows per array.

    Yields
    ------
    Tagged
        Float32 or float64 rows (other numeric types become float64) and ``"<name>, row <i>"``.
    """
    n_rows, n_features, dtype = _read_npy_header(stream, name)
    out_dtype = float_dtype(dtype)
    offset = stream.tell() if stream.seekable() else None
    row_bytes = n_features * dtype.itemsize
    for start in range(0, n_rows, batch_size):
        X = np.empty((min(batch_size, n_rows - start), n_features), dtype=dtype)
        got = _read_into(stream, memoryview(X).cast("B"))
        if got != X.nbytes:
            end = start * row_bytes + got
            at = "" if offset is None else f" at byte offset {offset + end}"
            raise DataFormatError(
                f"{name}: the .npy header says {n_rows} rows but the data ends{at}, "
                f"in row {end // row_bytes + 1}"
            )
        yield X.astype(out_dtype, copy=False), f"{name}, row {start + 1}"


def _read_into(stream: BinaryIO, view: memoryview) -> int:
    """Fill `view` from `stream`; fewer bytes only at the end of the stream."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _read_npy_header(stream: BinaryIO, name: str) -> tuple[int, int, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream)
    except ValueError as exc:
        raise DataFormatError(f"{name}: not a readable .npy header ({exc})") from None
    if len(shape) != 2:
        raise DataFormatError(
            f"{name}: a .npy of shape {shape}; training data must be 2-D (n_samples, n_features)"
        )
    if dtype.kind not in "fiub" or dtype.hasobject:
        raise DataFormatError(f"{name}: a .npy of dtype {dtype}, not numbers")
    if fortran_order and shape[0] > 1 and shape[1] > 1:
        raise DataFormatError(
            f"{name}: a Fortran-order .npy cannot be read row by row; save it with "
            "np.save(path, np.ascontiguousarray(X))"
        )
    return shape[0], shape[1], dtype


def float_dtype(dtype: np.dtype) -> np.dtype:
    """The float type that numbers of `dtype` are read as.

    float32 and float64 stay (in native byte order); other numbers (integers, booleans,
    float16) become float64.
    """
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        return dtype.newbyteorder("=")
    return np.dtype(np.float64)


def buffered(stream: Any, name: str, *, owned: bool = False) -> BinaryIO:
    """`stream` itself if it can ``peek``, else a buffered reader over its ``read(n)``.

    Parameters
    ----------
    stream : object with ``read(n)`` returning bytes
        A file, a socket file, botocore's StreamingBody.
    name : str
        Given to the reader as its ``name``, for messages.
    owned : bool, default False
        Whether closing the reader closes `stream`.
    """
    if hasattr(stream, "peek"):
        return stream
    return io.BufferedReader(_ReadAdapter(stream, name, owned), _BUFFER)


class _ReadAdapter(io.RawIOBase):
    """Anything with ``read(n)`` as a raw stream, so that io.BufferedReader can wrap it."""

    def __init__(self, stream: Any, name: str, owned: bool) -> None:
        super().__init__()
        self._stream, self._owned = stream, owned
        self.name = name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._owned and not self.closed:
            self._stream.close()
        super().close()


class _Gunzip(io.RawIOBase):
    """The decompressed bytes of a gzip stream, without ``fileno``.

    ``gzip.GzipFile.fileno`` gives the compressed file's descriptor, and the RecordIO reader
    would take that file's size for the size of the data it reads.
    """

    def __init__(self, stream: BinaryIO, name: str) -> None:
        super().__init__()
        self._gzip = gzip.GzipFile(fileobj=stream, mode="rb")
        self.name = name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._gzip.readinto(buffer)

    def close(self) -> None:
        self._gzip.close()
        super().close()
