"""A hand-written protobuf wire codec for SageMaker's ``aialgs.data.Record`` (spec 3.3).

Only the fields K-Means uses are decoded: ``features`` and ``label`` (maps from a string to a
``Value``) and, inside a ``Value``, the float32, float64 and int32 tensors with their ``values``,
``keys`` and ``shape``. Every other field is skipped by its wire type, as protobuf requires of
an unknown field. The encoder writes fields in field-number order, map entries with key then
value, and leaves empty repeated fields out, which is what the SDK's protobuf runtime does, so
its output is byte-identical to ``Record.SerializeToString()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Field numbers of the tensors in the ``Value`` oneof, with the dtype of their ``values``.
FLOAT32_TENSOR = 2
FLOAT64_TENSOR = 3
INT32_TENSOR = 7
BYTES_VALUE = 9
TENSOR_DTYPES = {
    FLOAT32_TENSOR: np.dtype("<f4"),
    FLOAT64_TENSOR: np.dtype("<f8"),
    INT32_TENSOR: np.dtype("<i4"),
}
_UINT64_MASK = (1 << 64) - 1
_EMPTY_KEYS = np.zeros(0, dtype=np.uint64)
# Up to this many values (or bytes) a Python loop beats numpy's per-call overhead.
_SMALL = 64


class WireError(ValueError):
    """Malformed protobuf bytes; `offset` counts from the start of the decoded buffer."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


@dataclass
class Tensor:
    """One decoded ``Value``.

    Attributes
    ----------
    kind : int
        The ``Value`` field that held the tensor (`FLOAT32_TENSOR`, `FLOAT64_TENSOR`,
        `INT32_TENSOR`, `BYTES_VALUE` or an unknown field number); 0 for an empty ``Value``.
    values, keys, shape : numpy.ndarray
        The repeated fields; `keys` and `shape` are uint64.
    span : tuple of int or None
        ``(start, stop)`` of the packed ``values`` bytes in the decoded buffer when they came in
        one packed field, which lets a reader decode records of one layout as a block.
    """

    kind: int
    values: np.ndarray
    keys: np.ndarray
    shape: np.ndarray
    span: tuple[int, int] | None = None


@dataclass
class Record:
    """The two maps of a decoded ``Record``; ``uid``, ``metadata`` and the rest are skipped."""

    features: dict[str, Tensor]
    label: dict[str, Tensor]


def encode_varint(value: int) -> bytes:
    """Encode a non-negative int (or a negative one, as its 64-bit two's complement)."""
    value &= _UINT64_MASK
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode the varint at `pos`; return it (as an unsigned 64-bit int) and the next position."""
    result = 0
    shift = 0
    while pos < end:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _UINT64_MASK, pos
        shift += 7
        if shift >= 70:
            raise WireError("a varint is longer than 10 bytes", pos)
    raise WireError("a varint runs past the end of its message", pos)


def encode_packed_varints(values: np.ndarray) -> bytes:
    """Encode integers as the body of a packed varint field, vectorised.

    Negative values are written as their 64-bit two's complement (ten bytes), as protobuf
    writes a negative int32.
    """
    vals = np.asarray(values).astype(np.int64).view(np.uint64)
    if vals.size <= _SMALL:
        return b"".join(encode_varint(v) for v in vals.tolist())
    nbytes = np.ones(vals.shape, dtype=np.intp)
    for group in range(1, 10):
        nbytes += (vals >> np.uint64(7 * group)) != 0
    starts = np.cumsum(nbytes) - nbytes
    out = np.zeros(int(nbytes.sum()), dtype=np.uint8)
    for group in range(int(nbytes.max(initial=0))):
        sel = nbytes > group
        seven = (vals[sel] >> np.uint64(7 * group)) & np.uint64(0x7F)
        more = np.where(nbytes[sel] > group + 1, 0x80, 0)
        out[starts[sel] + group] = seven.astype(np.uint8) | more
    return out.tobytes()


def decode_packed_varints(buf: bytes, start: int, stop: int) -> np.ndarray:
    """Decode the body of a packed varint field as uint64, vectorised."""
    if stop - start <= _SMALL:
        out, pos = [], start
        while pos < stop:
            value, pos = decode_varint(buf, pos, stop)
            out.append(value)
        return np.array(out, dtype=np.uint64)
    raw = np.frombuffer(buf, dtype=np.uint8, count=stop - start, offset=start)
    ends = np.flatnonzero(raw < 0x80)
    if raw.size and (ends.size == 0 or ends[-1] != raw.size - 1):
        raise WireError("a packed varint field ends inside a varint", stop)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.size and lengths.max() > 10:
        raise WireError("a varint is longer than 10 bytes", start + int(starts[lengths.argmax()]))
    out = np.zeros(ends.size, dtype=np.uint64)
    for group in range(int(lengths.max(initial=0))):
        sel = lengths > group
        seven = (raw[starts[sel] + group] & 0x7F).astype(np.uint64)
        out[sel] |= seven << np.uint64(7 * group)
    return out


def iter_fields(buf: bytes, pos: int, end: int):
    """Yield ``(number, wire_type, value, offset)`` for each field of a message.

    `value` is the int of a varint, the position of a fixed32/fixed64, ``(start, stop)`` of a
    length-delimited field, or None for a group (skipped whole) and an end-group tag (wire
    type 4, which only `_skip_group` accepts).
    """
    while pos < end:
        at = pos
        tag, pos = decode_varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise WireError("field number 0", at)
        if wire == 0:
            value, pos = decode_varint(buf, pos, end)
        elif wire == 1 or wire == 5:
            value, pos = pos, pos + (8 if wire == 1 else 4)
        elif wire == 2:
            size, pos = decode_varint(buf, pos, end)
            value, pos = (pos, pos + size), pos + size
        elif wire == 3:
            value, pos = None, _skip_group(buf, pos, end, number)
        elif wire == 4:
            value = None
        else:
            raise WireError(f"wire type {wire} of field {number} is not valid here", at)
        if pos > end:
            raise WireError(f"field {number} runs past the end of its message", at)
        yield number, wire, value, at


def _skip_group(buf: bytes, pos: int, end: int, number: int) -> int:
    for inner, wire, _, at in iter_fields(buf, pos, end):
        if wire == 4:
            if inner != number:
                raise WireError("a group ends with the wrong field number", at)
            return at + len(encode_varint(inner << 3 | 4))
    raise WireError(f"group {number} has no end", end)


def _check_end_group(wire: int, at: int) -> None:
    if wire == 4:
        raise WireError("an end-group tag outside a group", at)


def decode_record(buf: bytes, start: int = 0, stop: int | None = None) -> Record:
    """Decode a serialized ``Record`` held in ``buf[start:stop]``."""
    stop = len(buf) if stop is None else stop
    maps: dict[int, dict[str, Tensor]] = {1: {}, 2: {}}
    for number, wire, value, at in iter_fields(buf, start, stop):
        _check_end_group(wire, at)
        if number in maps and wire == 2:
            key, tensor = _decode_entry(buf, *value)
            maps[number][key] = tensor
    return Record(features=maps[1], label=maps[2])


def _decode_entry(buf: bytes, start: int, stop: int) -> tuple[str, Tensor]:
    key = ""
    tensor = _empty_tensor(0)
    for number, wire, value, at in iter_fields(buf, start, stop):
        _check_end_group(wire, at)
        if number == 1 and wire == 2:
            try:
                key = bytes(buf[value[0] : value[1]]).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise WireError("a map key is not UTF-8", at) from exc
        elif number == 2 and wire == 2:
            tensor = _decode_value(buf, *value)
    return key, tensor


def _decode_value(buf: bytes, start: int, stop: int) -> Tensor:
    tensor = _empty_tensor(0)
    unknown = 0
    for number, wire, value, at in iter_fields(buf, start, stop):
        _check_end_group(wire, at)
        if number in TENSOR_DTYPES and wire == 2:
            # A oneof member seen again merges into the first; another member replaces it.
            merge_into = tensor if tensor.kind == number else _empty_tensor(number)
            tensor = _decode_tensor(buf, *value, merge_into)
        elif number == BYTES_VALUE:
            tensor = _empty_tensor(BYTES_VALUE)
        elif number not in TENSOR_DTYPES:
            unknown = unknown or number
    # A field this codec does not know, alone in a Value, is a tensor type it cannot read.
    return _empty_tensor(unknown) if tensor.kind == 0 and unknown else tensor


def _empty_tensor(kind: int) -> Tensor:
    dtype = TENSOR_DTYPES.get(kind, np.dtype("<f4"))
    return Tensor(kind, np.zeros(0, dtype=dtype), _EMPTY_KEYS, _EMPTY_KEYS)


def _decode_tensor(buf: bytes, start: int, stop: int, tensor: Tensor) -> Tensor:
    old = {1: tensor.values, 2: tensor.keys, 3: tensor.shape}
    parts = {number: [array] if array.size else [] for number, array in old.items()}
    spans = []
    for number, wire, value, at in iter_fields(buf, start, stop):
        _check_end_group(wire, at)
        if number == 1:
            decoded = _decode_scalars(buf, wire, value, tensor.kind, at)
            spans.append(value if wire == 2 else None)
        elif number in (2, 3):
            decoded = _decode_uints(buf, wire, value)
        else:
            continue
        if decoded is not None:
            parts[number].append(decoded)
    joined = [_join(parts[number], array) for number, array in old.items()]
    span = spans[0] if len(spans) == 1 and not tensor.values.size else None
    return Tensor(tensor.kind, joined[0], joined[1], joined[2], span)


def _join(parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    if not parts:
        return empty
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _decode_scalars(buf: bytes, wire: int, value, kind: int, at: int) -> np.ndarray | None:
    dtype = TENSOR_DTYPES[kind]
    if kind == INT32_TENSOR:
        raw = _decode_uints(buf, wire, value)
        # protobuf reads an int32 varint as the low 32 bits of its 64-bit value.
        return None if raw is None else raw.astype(np.uint32).view(np.int32)
    if wire == 2:
        start, stop = value
        if (stop - start) % dtype.itemsize:
            raise WireError(f"packed values of {stop - start} bytes are not whole numbers", at)
        return np.frombuffer(buf, dtype=dtype, count=(stop - start) // dtype.itemsize, offset=start)
    if wire == (5 if dtype.itemsize == 4 else 1):
        return np.frombuffer(buf, dtype=dtype, count=1, offset=value)
    return None


def _decode_uints(buf: bytes, wire: int, value) -> np.ndarray | None:
    if wire == 2:
        return decode_packed_varints(buf, *value)
    if wire == 0:
        return np.array([value], dtype=np.uint64)
    return None


def _len_field(number: int, payload: bytes) -> bytes:
    return encode_varint(number << 3 | 2) + encode_varint(len(payload)) + payload


def encode_value(kind: int, values: np.ndarray, keys=None, shape=None) -> bytes:
    """Serialize a ``Value`` holding one tensor of `kind`; empty repeated fields are left out."""
    values = np.asarray(values)
    if kind == INT32_TENSOR:
        body = encode_packed_varints(values) if values.size else b""
    else:
        body = values.astype(TENSOR_DTYPES[kind], copy=False).tobytes()
    tensor = _len_field(1, body) if body else b""
    if keys is not None and len(keys):
        tensor += _len_field(2, encode_packed_varints(np.asarray(keys, dtype=np.uint64)))
    if shape is not None and len(shape):
        tensor += _len_field(3, encode_packed_varints(np.asarray(shape, dtype=np.uint64)))
    return _len_field(kind, tensor)


def encode_record(features: dict[str, bytes], label: dict[str, bytes]) -> bytes:
    """Serialize a ``Record`` from already-serialized ``Value`` messages, map entries in order."""
    out = []
    for number, entries in ((1, features), (2, label)):
        for key, value in entries.items():
            entry = _len_field(1, key.encode("utf-8")) + _len_field(2, value)
            out.append(_len_field(number, entry))
    return b"".join(out)
