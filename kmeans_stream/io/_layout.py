"""The byte layout shared by a run of RecordIO records, for reading and writing them as a block.

An SDK file of dense float rows repeats one record layout: the framing, the protobuf tags and
lengths and the padding are the same bytes in every record, and only the float payloads (and
float labels) differ. A `Layout` keeps one record as a template plus where its variable fields
lie. Records whose other bytes equal the template's parse exactly as the template does, so a
whole chunk can be checked with one vectorised comparison and decoded with strided views.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .protobuf import FLOAT32_TENSOR, FLOAT64_TENSOR, INT32_TENSOR, Record, Tensor


@dataclass
class Block:
    """Decoded rows: `X` of shape (n_rows, n_features) and one array per label key."""

    X: np.ndarray
    labels: dict[str, np.ndarray]


@dataclass(frozen=True)
class Layout:
    """One framed record as a template, and the fields that vary between records.

    Attributes
    ----------
    template : numpy.ndarray
        The bytes (uint8) of one framed record, padding included.
    fields : tuple
        ``(key, start, stop, dtype)`` sorted by `start`: `key` is None for the feature vector
        and the label's key otherwise; ``template[start:stop]`` holds its value.
    """

    # A one-byte varint: an int32 label from 0 to 127.
    VARINT1 = np.dtype("u1")

    template: np.ndarray
    fields: tuple[tuple[str | None, int, int, np.dtype], ...]

    @property
    def size(self) -> int:
        """The length of one framed record, in bytes."""
        return self.template.size

    @classmethod
    def of(cls, framed: bytes, record: Record) -> Layout | None:
        """The layout of `framed`, decoded as `record` (spans relative to `framed`), or None.

        None means the record has a variable-length part (a sparse tensor, an int32 feature
        vector, a label longer than one byte) and records like it must be decoded one by one.
        """
        fields = []
        if record.features:
            tensor = record.features.get("values")
            if len(record.features) != 1 or tensor is None or not _is_fixed(tensor):
                return None
            fields.append((None, *tensor.span, tensor.values.dtype))
        for key, tensor in record.label.items():
            if tensor.values.size != 1:
                return None
            if tensor.kind == INT32_TENSOR and _is_plain(tensor) and _span_len(tensor) == 1:
                fields.append((key, *tensor.span, cls.VARINT1))
            elif _is_fixed(tensor):
                fields.append((key, *tensor.span, tensor.values.dtype))
            else:
                return None
        template = np.frombuffer(framed, dtype=np.uint8).copy()
        return cls(template, tuple(sorted(fields, key=lambda field: field[1])))

    def count_matching(self, rows: np.ndarray) -> int:
        """How many leading rows of `rows` (shape (m, size), uint8) have this layout."""
        ok = np.ones(rows.shape[0], dtype=bool)
        prev = 0
        for _, start, stop, dtype in (*self.fields, (None, self.size, self.size, None)):
            if start > prev:
                ok &= (rows[:, prev:start] == self.template[prev:start]).all(axis=1)
            if dtype is self.VARINT1:
                ok &= rows[:, start] < 0x80
            prev = stop
        bad = np.flatnonzero(~ok)
        return int(bad[0]) if bad.size else rows.shape[0]

    def decode(self, rows: np.ndarray) -> Block:
        """Decode rows (shape (m, size), uint8) that all have this layout."""
        X = np.zeros((rows.shape[0], 0), dtype=np.float32)
        labels = {}
        for key, start, stop, dtype in self.fields:
            if dtype is self.VARINT1:
                column = rows[:, start].astype(np.int32)
            else:
                # copy(), not ascontiguousarray: one row would stay a view of the read buffer.
                raw = rows[:, start:stop].copy().view(dtype)
                column = raw.astype(dtype.newbyteorder("="), copy=False)
            if key is None:
                X = column
            else:
                labels[key] = column.reshape(-1)
        return Block(X, labels)

    def encode(self, X: np.ndarray, labels: dict[str, np.ndarray]) -> np.ndarray:
        """Framed records (shape (m, size), uint8) holding the rows `X` and `labels`."""
        out = np.empty((X.shape[0], self.size), dtype=np.uint8)
        out[:] = self.template
        for key, start, stop, dtype in self.fields:
            column = X if key is None else labels[key]
            if dtype is self.VARINT1:
                out[:, start] = column
            else:
                raw = np.ascontiguousarray(column, dtype=dtype).reshape(X.shape[0], -1)
                out[:, start:stop] = raw.view(np.uint8)
        return out


def _is_plain(tensor: Tensor) -> bool:
    """Values in one packed field, no keys, and a shape (if any) that is just their count."""
    shape = tensor.shape.tolist()
    dense_shape = not shape or shape == [tensor.values.size]
    return tensor.span is not None and not tensor.keys.size and dense_shape


def _is_fixed(tensor: Tensor) -> bool:
    floats = tensor.kind in (FLOAT32_TENSOR, FLOAT64_TENSOR)
    return floats and tensor.values.size > 0 and _is_plain(tensor)


def _span_len(tensor: Tensor) -> int:
    return tensor.span[1] - tensor.span[0]
