"""Walk a RecordIO stream chunk by chunk and decode its records into blocks of rows.

Records are checked and decoded as a block wherever consecutive records share one `Layout`
(every dense float file the SDK writes); anything else (sparse rows, int32 tensors, multi-part
records, odd field orders) goes through the protobuf decoder one record at a time. Every
problem is a DataFormatError naming the file and the byte offset of the record.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
from collections.abc import Iterator

import numpy as np

from ..exceptions import DataFormatError
from ._layout import Block, Layout
from .protobuf import BYTES_VALUE, TENSOR_DTYPES, Record, Tensor, WireError, decode_record

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_MASK = (1 << 29) - 1
CHUNK_BYTES = 4 << 20
# A sparse record is densified to prod(shape) values; a larger shape is taken as corrupt.
MAX_FEATURES = 1 << 26
_MAX_READ = 64 << 20
_SLOW_BLOCK_ROWS = 4096


class _BadRecord(Exception):
    """A record that decodes but breaks a rule; the scanner adds the file and offset."""


def frame_length(framed: bytes) -> int:
    """The payload length of the framed record (or record part) at the start of `framed`."""
    return struct.unpack_from("<I", framed, 4)[0] & LENGTH_MASK


@contextlib.contextmanager
def open_scanner(path_or_file) -> Iterator[Scanner]:
    """A `Scanner` over a path (opened and closed here) or an open binary file."""
    if hasattr(path_or_file, "read"):
        name = getattr(path_or_file, "name", None)
        yield Scanner(path_or_file, name if isinstance(name, str) else "<stream>")
        return
    with open(path_or_file, "rb") as stream:
        yield Scanner(stream, os.fspath(path_or_file))


class Scanner:
    """Walk the records of a RecordIO stream, yielding `Block` of decoded rows."""

    def __init__(self, stream, name: str):
        self.stream, self.name = stream, name
        self.base, self.size = _start_and_size(stream)
        self.data, self.pos, self.eof = b"", 0, False
        self.layout: Layout | None = None
        self.width: int | None = None
        self.label_keys: frozenset[str] = frozenset()

    def blocks(self) -> Iterator[Block]:
        """Yield the rows of the stream, block by block, until its end."""
        pending: list[tuple[np.ndarray, dict]] = []
        while self._fill(1):
            block = self._fast_block()
            if block is None:
                pending.append(self._slow_row())
            if pending and (block is not None or len(pending) >= _SLOW_BLOCK_ROWS):
                yield _stack(pending)
                pending = []
            if block is not None:
                yield block
        if pending:
            yield _stack(pending)

    def error(self, problem: str, offset: int) -> DataFormatError:
        """A DataFormatError naming the file and the byte offset."""
        return DataFormatError(f"{self.name}, byte offset {offset}: {problem}")

    def _fill(self, n: int) -> bool:
        have = len(self.data) - self.pos
        if have >= n or self.eof:
            return have >= n
        parts = [self.data[self.pos :]]
        self.base += self.pos
        self.pos = 0
        while have < n:
            piece = self.stream.read(min(max(CHUNK_BYTES, n - have), _MAX_READ))
            if not piece:
                self.eof = True
                break
            parts.append(piece)
            have += len(piece)
        self.data = b"".join(parts)
        return have >= n

    def _fast_block(self) -> Block | None:
        layout = self.layout
        if layout is None or not self._fill(layout.size):
            return None
        m = (len(self.data) - self.pos) // layout.size
        rows = np.frombuffer(self.data, np.uint8, m * layout.size, self.pos)
        rows = rows.reshape(m, layout.size)
        if not layout.count_matching(rows[:1]):
            return None
        k = layout.count_matching(rows)
        block = layout.decode(rows[:k])
        self._check_same(block.X.shape[1], frozenset(block.labels), self.base + self.pos)
        self.pos += k * layout.size
        return block

    def _slow_row(self) -> tuple[np.ndarray, dict]:
        at = self.base + self.pos
        data, single = self._read_record()
        payload = data if single else MAGIC_BYTES.join(data)
        start, stop = (8, 8 + frame_length(data)) if single else (0, len(payload))
        try:
            record = decode_record(payload, start, stop)
            row, labels = _row(record)
        except WireError as exc:
            # Offsets inside a re-joined multi-part record are not file offsets.
            where = at + exc.offset if single else at
            raise self.error(f"malformed protobuf Record: {exc}", where) from None
        except _BadRecord as exc:
            raise self.error(str(exc), at) from None
        self.layout = Layout.of(payload, record) if single else None
        self._check_same(row.size, frozenset(labels), at)
        return row, labels

    def _read_record(self) -> tuple:
        """Read one record; return (framed bytes, True) or, for a multi-part one, (parts, False)."""
        at = self.base + self.pos
        cflag, framed = self._read_frame()
        if cflag == 0:
            return framed, True
        if cflag != 1:
            raise self.error(f"a record part with cflag {cflag} follows no start part", at)
        parts = [framed[8 : 8 + frame_length(framed)]]
        while cflag != 3:
            part_at = self.base + self.pos
            if not self._fill(1):
                raise self.error(f"the multi-part record at byte offset {at} has no end", part_at)
            cflag, framed = self._read_frame()
            if cflag not in (2, 3):
                raise self.error(f"cflag {cflag} inside the multi-part record at {at}", part_at)
            parts.append(framed[8 : 8 + frame_length(framed)])
        return parts, False

    def _read_frame(self) -> tuple[int, bytes]:
        at = self.base + self.pos
        if not self._fill(8):
            raise self.error("the file ends inside a record header (truncated)", at)
        magic, word = struct.unpack_from("<II", self.data, self.pos)
        if magic != MAGIC:
            raise self.error(f"bad magic 0x{magic:08X}; a record starts with 0x{MAGIC:08X}", at)
        length = word & LENGTH_MASK
        if self.size is not None and at + 8 + length > self.size:
            problem = f"the length word says {length} bytes, past the end of the file"
            raise self.error(f"{problem} ({self.size} bytes)", at)
        padded = 8 + length + (-length % 4)
        if not self._fill(padded):
            raise self.error(f"the file ends inside a record of {length} bytes (truncated)", at)
        framed = self.data[self.pos : self.pos + padded]
        self.pos += padded
        return word >> 29, framed

    def _check_same(self, width: int, label_keys: frozenset, at: int) -> None:
        if self.width is None:
            self.width, self.label_keys = width, label_keys
        elif width != self.width:
            raise self.error(f"a record of {width} features; the first had {self.width}", at)
        elif label_keys != self.label_keys:
            problem = f"a record with labels {sorted(label_keys)}"
            raise self.error(f"{problem}; the first had {sorted(self.label_keys)}", at)


def _start_and_size(stream) -> tuple[int, int | None]:
    try:
        info = os.fstat(stream.fileno())
        start = stream.tell()
    except (AttributeError, OSError, ValueError):
        return 0, None
    return start, info.st_size if stat.S_ISREG(info.st_mode) else None


def _stack(rows: list[tuple[np.ndarray, dict]]) -> Block:
    X = np.stack([row for row, _ in rows])
    keys = rows[0][1].keys()
    return Block(X, {key: np.array([labels[key] for _, labels in rows]) for key in keys})


def _row(record: Record) -> tuple[np.ndarray, dict]:
    tensor = record.features.get("values")
    row = np.zeros(0, dtype=np.float32) if tensor is None else _dense_row(tensor)
    labels = {}
    for key, label in record.label.items():
        values = _dense_row(label)
        if values.size != 1:
            raise _BadRecord(f"label {key!r} holds {values.size} values; a label holds one")
        labels[key] = values[0]
    return row, labels


def _dense_row(tensor: Tensor) -> np.ndarray:
    if tensor.kind == BYTES_VALUE:
        raise _BadRecord("a bytes Value where a tensor was expected")
    if tensor.kind not in TENSOR_DTYPES and tensor.kind != 0:
        raise _BadRecord(f"unknown tensor type (Value field {tensor.kind})")
    values = tensor.values.astype(tensor.values.dtype.newbyteorder("="), copy=False)
    if not tensor.shape.size:
        if tensor.keys.size:
            raise _BadRecord("a sparse tensor (with keys) without a shape")
        return values
    width = _width(tensor.shape)
    if not tensor.keys.size and values.size == width:
        return values
    if tensor.keys.size != values.size:
        raise _BadRecord(f"{tensor.keys.size} keys for {values.size} values")
    if tensor.keys.size and tensor.keys.max() >= width:
        raise _BadRecord(f"key {tensor.keys.max()} beyond the declared shape {width}")
    row = np.zeros(width, dtype=values.dtype)
    row[tensor.keys.astype(np.intp)] = values
    return row


def _width(shape: np.ndarray) -> int:
    width = 1
    for dim in shape.tolist():
        width *= dim
    if width > MAX_FEATURES:
        raise _BadRecord(f"shape {shape.tolist()} has more than {MAX_FEATURES} values")
    return width
