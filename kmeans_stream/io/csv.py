"""Streaming reader for SageMaker's training CSV: no header, features only, one row per line.

The byte stream is cut into blocks of whole lines (`READ_CHUNK` bytes, about) and each block is
parsed by pyarrow into float32 columns. Cutting the blocks here rather than inside pyarrow's
own streaming reader (`pyarrow.csv.open_csv`) costs nothing in speed (both parse 250k x 32 floats
at 260-300 MB/s on the 2-vCPU development VM; `np.loadtxt` does 57 MB/s) and tells exactly which
lines a block holds, so a pyarrow error, which carries no line number, can be pinned to its line
by re-parsing only that block.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from .._optional import require
from ..exceptions import DataFormatError

#: Bytes of text read and parsed at a time.
READ_CHUNK = 4 << 20
# pyarrow splits each chunk into blocks of this size and parses them on its thread pool.
_PARSE_BLOCK = 1 << 20
_MAX_SHOWN = 120


def iter_csv_chunks(
    stream: BinaryIO, name: str, *, skip_header: bool = False
) -> Iterator[tuple[np.ndarray, str]]:
    """Parse a CSV byte stream into float32 arrays, one per block of lines.

    Parameters
    ----------
    stream : binary file-like
        Read with ``read(n)`` only, so a socket or a decompressor will do.
    name : str
        The file's name or URI, for error messages.
    skip_header : bool, default False
        Drop the first line.

    Yields
    ------
    X : ndarray of shape (n_rows, n_features), float32, C-contiguous
        The rows of one block; blocks of blank lines yield nothing.
    where : str
        ``"<name>, line <n>"``: the 1-based line the block starts at.

    Raises
    ------
    DataFormatError
        A row has another number of columns than the first row, or a cell is not a number;
        the message names the file and the 1-based line.
    """
    parser = None
    line = 1
    for block in _line_blocks(stream, READ_CHUNK):
        if skip_header and line == 1:
            cut = block.find(b"\n") + 1 or len(block)
            block, line = block[cut:], 2
        if parser is None:
            n_columns = _count_columns(block)
            parser = _BlockParser(n_columns) if n_columns else None
        if parser is not None and block.strip(b"\r\n"):
            X = parser.parse(block, name, line)
            if len(X):
                yield X, f"{name}, line {line + _leading_blank_lines(block)}"
        line += block.count(b"\n")


def _line_blocks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """Blocks of about `size` bytes, each ending at a newline (the last one may not)."""
    pending: list[bytes] = []  # the start of a line that no read so far has ended
    while True:
        data = stream.read(size)
        if not data:
            if pending:
                yield b"".join(pending)
            return
        cut = data.rfind(b"\n") + 1
        if not cut:
            pending.append(data)
            continue
        pending.append(data[:cut])
        yield b"".join(pending)
        pending = [data[cut:]] if cut < len(data) else []


def _leading_blank_lines(block: bytes) -> int:
    """How many blank lines `block` starts with (pyarrow skips them)."""
    blank = block[: len(block) - len(block.lstrip(b"\r\n"))]
    return blank.count(b"\n")


def _count_columns(block: bytes) -> int:
    """The number of comma-separated cells on the first non-blank line, or 0 if none."""
    for line in io.BytesIO(block):
        if line.strip():
            return line.count(b",") + 1
    return 0


class _BlockParser:
    """pyarrow's CSV parser set up for `n_columns` float32 columns."""

    def __init__(self, n_columns: int) -> None:
        self.n_columns = n_columns
        self._pa = require("pyarrow", "reading CSV")
        self._csv = require("pyarrow.csv", "reading CSV")
        names = [f"f{j}" for j in range(n_columns)]
        self._read_options = self._csv.ReadOptions(column_names=names, block_size=_PARSE_BLOCK)
        # One thread converts the columns of a bad line in order, so the error names its
        # first bad cell (with threads, whichever column failed first).
        self._line_options = self._csv.ReadOptions(column_names=names, use_threads=False)
        # null_values=[] so that an empty cell is an error rather than a silent NaN
        self._convert_options = self._csv.ConvertOptions(
            column_types=dict.fromkeys(names, self._pa.float32()), null_values=[]
        )

    def parse(self, block: bytes, name: str, first_line: int) -> np.ndarray:
        """The rows of `block` as a C-contiguous float32 array, or a DataFormatError."""
        try:
            table = self._read(block)
        except self._pa.ArrowInvalid as exc:
            raise self._locate(block, name, first_line, exc) from None
        return _table_to_array(table)

    def _read(self, block: bytes, options: Any = None) -> Any:
        return self._csv.read_csv(
            self._pa.py_buffer(block),
            read_options=options or self._read_options,
            convert_options=self._convert_options,
        )

    def _locate(self, block: bytes, name: str, first_line: int, exc: Exception) -> DataFormatError:
        """Find the first bad line of `block` by bisection and describe it."""
        lines = block.split(b"\n")
        lo, hi = 0, len(lines)
        # invariant: lines[:lo] parse, lines[lo:hi] hold an error; each try parses half of
        # what is left, so the search costs about one more parse of the block
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                self._read(b"\n".join(lines[lo:mid]) + b"\n")
                lo = mid
            except self._pa.ArrowInvalid:
                hi = mid
        try:
            self._read(lines[lo] + b"\n", self._line_options)
        except self._pa.ArrowInvalid as line_exc:
            return DataFormatError(f"{name}, line {first_line + lo}: {_describe(line_exc)}")
        last = first_line + block.count(b"\n")
        return DataFormatError(f"{name}, lines {first_line}-{last}: {_describe(exc)}")


def _describe(exc: Exception) -> str:
    """pyarrow's message, with its 0-based column turned 1-based and long rows cut."""
    text = str(exc).splitlines()[0]
    match = re.search(r"column #(\d+): .*invalid value '(.*)'", text)
    if match:
        value = match.group(2)[:_MAX_SHOWN]
        return f"column {int(match.group(1)) + 1}: {value!r} is not a number"
    text = re.sub(r"^Row #\d+: ", "", text.removeprefix("CSV parse error: "))
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def _table_to_array(table: Any) -> np.ndarray:
    """A pyarrow table of float32 columns as one row-major (n_rows, n_columns) array."""
    batch = table.combine_chunks().to_batches()
    if not batch:
        return np.empty((0, table.num_columns), dtype=np.float32)
    if hasattr(batch[0], "to_tensor"):
        return np.ascontiguousarray(batch[0].to_tensor(row_major=True).to_numpy())
    # pyarrow < 16 has no RecordBatch.to_tensor: fill the rows column by column
    out = np.empty((table.num_rows, table.num_columns), dtype=np.float32)
    for j, column in enumerate(batch[0].columns):
        out[:, j] = column.to_numpy()
    return out
