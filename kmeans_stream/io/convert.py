"""Convert training data between CSV, RecordIO-protobuf and ``.npy``, a batch at a time.

The source is anything `iter_batches` reads (a file of any of the three formats, a folder, a
manifest, an ``s3://`` location, an array); the destination is a local file whose extension
names the format. The output is written to a hidden temporary file beside the destination and
renamed onto it at the end, so a failure half-way (a malformed line, a full disk) leaves the
destination as it was and no partial file behind. With `verbose`, a progress bar on stderr
follows the reading: in bytes of a local file's size, else in rows.
"""

from __future__ import annotations

import gzip
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import numpy as np

from .. import _progress
from .._optional import require
from ._atomic import atomic_write
from .sources import as_source, iter_batches

__all__ = ["DEFAULT_BATCH_SIZE", "convert", "output_format"]

#: Rows read and written per step.
DEFAULT_BATCH_SIZE = 65_536

_FORMATS = {
    ".csv": "csv",
    ".pbr": "recordio",
    ".rec": "recordio",
    ".recordio": "recordio",
    ".protobuf": "recordio",
    ".npy": "npy",
}


def convert(
    src: Any,
    dst: str | os.PathLike,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    skip_header: bool = False,
    verbose: bool | int = False,
) -> int:
    """Stream the rows of `src` into the file `dst`, in the format its extension names.

    Parameters
    ----------
    src : path, URI, array-like or iterable of batches
        Anything `kmeans_stream.io.sources.iter_batches` reads.
    dst : str or os.PathLike
        ``.csv`` (SageMaker's CSV: no header, shortest float text that reads back exactly),
        ``.pbr``, ``.rec``, ``.recordio`` or ``.protobuf`` (RecordIO-protobuf as the SageMaker
        SDK writes it: one dense record per row) or ``.npy``. ``.csv.gz`` and ``.pbr.gz`` (and
        the other RecordIO names) are written gzip-compressed.
    batch_size : int, default DEFAULT_BATCH_SIZE
        Rows held in memory at a time.
    skip_header : bool, default False
        Drop the first line of each CSV file read.
    verbose : bool or int, default False
        Show a progress bar on stderr.

    Returns
    -------
    int
        The number of rows written.

    Raises
    ------
    ValueError
        If the extension of `dst` names no format this writes.
    DataFormatError
        If the source is malformed; `dst` is then left untouched.
    """
    fmt, compressed = output_format(dst)
    rows = as_source(src).n_samples
    with _progress.verbose_logging(verbose), _progress.reading(src, "convert", rows) as (
            data, count):
        batches = count(iter_batches(data, batch_size, skip_header=skip_header))
        with atomic_write(dst) as out:
            if compressed:
                with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as zipped:
                    return _WRITERS[fmt](zipped, batches)
            return _WRITERS[fmt](out, batches)


def output_format(dst: str | os.PathLike) -> tuple[str, bool]:
    """The format (``"csv"``, ``"recordio"`` or ``"npy"``) and compression a name asks for.

    Parameters
    ----------
    dst : str or os.PathLike

    Returns
    -------
    fmt : str
    compressed : bool
        Whether the name ends in ``.gz``.
    """
    stem, ext = os.path.splitext(os.fspath(dst).lower())
    compressed = ext == ".gz"
    if compressed:
        stem, ext = os.path.splitext(stem)
    fmt = _FORMATS.get(ext)
    if fmt is None or (compressed and fmt == "npy"):
        names = ", ".join(sorted(_FORMATS))
        raise ValueError(
            f"cannot tell the output format from {os.fspath(dst)!r}: use one of {names} "
            "(.gz after .csv or a RecordIO extension compresses it)"
        )
    return fmt, compressed


def _write_csv(out: BinaryIO, batches: Iterator[np.ndarray]) -> int:
    pa = require("pyarrow", "writing CSV")
    pacsv = require("pyarrow.csv", "writing CSV")
    options = pacsv.WriteOptions(include_header=False)
    rows = 0
    for X in batches:
        names = [f"f{j}" for j in range(X.shape[1])]
        table = pa.Table.from_arrays([pa.array(X[:, j]) for j in range(X.shape[1])], names)
        pacsv.write_csv(table, out, write_options=options)
        rows += len(X)
    return rows


def _write_recordio(out: BinaryIO, batches: Iterator[np.ndarray]) -> int:
    from .recordio import write_recordio

    rows = 0
    for X in batches:
        write_recordio(out, X)
        rows += len(X)
    return rows


def _write_npy(out: BinaryIO, batches: Iterator[np.ndarray]) -> int:
    """Write the header for 0 rows, the rows, then the header again with the real count.

    numpy pads a header with room for the row count to grow to 21 digits, so that it can be
    rewritten in place; the second write is checked to end where the first did.
    """
    first = next(batches, None)
    dtype = np.dtype(np.float32) if first is None else first.dtype
    n_features = 0 if first is None else first.shape[1]
    _write_npy_header(out, dtype, (0, n_features))
    data_start = out.tell()
    rows = 0
    for X in itertools.chain([] if first is None else [first], batches):
        out.write(np.ascontiguousarray(X, dtype=dtype).data)
        rows += len(X)
    end = out.tell()
    out.seek(0)
    _write_npy_header(out, dtype, (rows, n_features))
    if out.tell() != data_start:
        raise RuntimeError(".npy header changed size when rewritten; the output is not valid")
    out.seek(end)
    return rows


def _write_npy_header(out: BinaryIO, dtype: np.dtype, shape: tuple[int, int]) -> None:
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": shape,
    }
    np.lib.format.write_array_header_1_0(out, header)


_WRITERS: dict[str, Callable[[BinaryIO, Iterator[np.ndarray]], int]] = {
    "csv": _write_csv,
    "recordio": _write_recordio,
    "npy": _write_npy,
}
