"""MXNet NDArray list files (``mx.nd.save`` / ``mx.nd.load``), the format of ``model_algo-1``.

The layout is in spec 4.2: a uint64 list magic 0x112, a reserved uint64, the array count, the
arrays, then the names (none for a list, one per array for a dict). Arrays are read in the V2
(0xF993FAC9), V3 (0xF993FACA, numpy shape semantics), V1 (0xF993FAC8) and legacy (no magic)
record layouts, dense storage only, and written as MXNet 1.x writes them: V2, dense, cpu(0).
Every size is checked against the bytes that remain before anything is allocated, since a
model artifact may come from anywhere.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from ..exceptions import ModelFormatError
from ._atomic import atomic_write

__all__ = ["read_ndarrays", "write_ndarrays"]

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
# MXNet's type flags (mshadow) and the numpy dtypes they store.
TYPE_FLAGS = {
    0: np.dtype("<f4"),
    1: np.dtype("<f8"),
    2: np.dtype("<f2"),
    3: np.dtype("u1"),
    4: np.dtype("<i4"),
    5: np.dtype("i1"),
    6: np.dtype("<i8"),
}
_FLAG_OF = {dtype.newbyteorder("="): flag for flag, dtype in TYPE_FLAGS.items()}
_STORAGE = {0: "default", 1: "row_sparse", 2: "csr"}
_DEVICES = {1: "cpu", 2: "gpu", 3: "cpu_pinned", 5: "cpu_shared"}
MAX_NDIM = 32
# The smallest array record: a legacy one of ndim 0 (a "none" array) is a single uint32.
_MIN_RECORD = 4


def read_ndarrays(path_or_bytes, name: str | None = None) -> list | dict:
    """Read an MXNet NDArray list file, as ``mx.nd.load`` does.

    Parameters
    ----------
    path_or_bytes : str, os.PathLike, bytes, bytearray or memoryview
        The file, or its contents.
    name : str, optional
        What to call the file in error messages; by default its path, or ``"<bytes>"``.

    Returns
    -------
    list of numpy.ndarray, or dict of str to numpy.ndarray
        A list when the file stores no names (``mx.nd.save(path, [a, b])``), a dict when it
        does. A "none" array (ndim 0 in V2) is read as an empty float32 array.

    Raises
    ------
    ModelFormatError
        If the file is malformed, truncated, uses sparse storage or claims more data than it
        holds; the message names the file and the byte offset.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        reader = _Reader(bytes(path_or_bytes), name or "<bytes>")
    else:
        with open(path_or_bytes, "rb") as stream:
            reader = _Reader(stream.read(), name or os.fspath(path_or_bytes))
    return reader.read_list()


def write_ndarrays(path_or_file, arrays) -> None:
    """Write arrays as ``mx.nd.save`` (MXNet 1.x) does, byte for byte.

    Parameters
    ----------
    path_or_file : str, os.PathLike or binary file
        Where to write. A path is written through a temporary file renamed into place.
    arrays : sequence of array-like, or dict of str to array-like
        A sequence is saved without names, as ``mx.nd.save(path, [a, b])``; a dict with its
        keys as names, as ``mx.nd.save(path, {"a": a})``. Each array needs at least one
        dimension and a dtype among float32, float64, float16, uint8, int32, int8 and int64.

    Raises
    ------
    ValueError
        If an array has no dimension or an unsupported dtype.
    """
    data = _encode_list(arrays)
    if hasattr(path_or_file, "write"):
        path_or_file.write(data)
        return
    with atomic_write(path_or_file) as out:
        out.write(data)


def _encode_list(arrays) -> bytes:
    named = isinstance(arrays, dict)
    items = list(arrays.items()) if named else [(None, a) for a in arrays]
    out = [struct.pack("<QQQ", LIST_MAGIC, 0, len(items))]
    out.extend(_encode_array(np.asarray(array), key) for key, array in items)
    out.append(struct.pack("<Q", len(items) if named else 0))
    for key, _ in items if named else []:
        name = str(key).encode("utf-8")
        out.append(struct.pack("<Q", len(name)) + name)
    return b"".join(out)


def _encode_array(array: np.ndarray, key) -> bytes:
    what = "array" if key is None else f"array {key!r}"
    flag = _FLAG_OF.get(array.dtype.newbyteorder("="))
    if flag is None:
        raise ValueError(f"MXNet cannot store the dtype {array.dtype} of {what}")
    if not 1 <= array.ndim <= MAX_NDIM:
        raise ValueError(f"{what} needs 1 to {MAX_NDIM} dimensions; it has {array.ndim}")
    header = struct.pack(f"<IiI{array.ndim}q", V2_MAGIC, 0, array.ndim, *array.shape)
    device = struct.pack("<iii", 1, 0, flag)
    return header + device + np.ascontiguousarray(array, dtype=TYPE_FLAGS[flag]).tobytes()


class _Reader:
    """A cursor over the bytes of one file that refuses to read past their end."""

    def __init__(self, data: bytes, name: str):
        self.data, self.name, self.pos = data, name, 0

    def error(self, problem: str, offset: int | None = None) -> ModelFormatError:
        offset = self.pos if offset is None else offset
        return ModelFormatError(f"{self.name}, byte offset {offset}: {problem}")

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def unpack(self, fmt: str, what: str) -> tuple:
        size = struct.calcsize(fmt)
        if size > self.remaining():
            problem = f"the file ends inside {what} ({size} bytes needed, {self.remaining()} left)"
            raise self.error(f"{problem}: truncated")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def read_list(self) -> list[np.ndarray] | dict[str, np.ndarray]:
        (magic, _reserved, count) = self.unpack("<QQQ", "the list header")
        if magic != LIST_MAGIC:
            raise self.error(f"bad list magic 0x{magic:X}; an NDArray list starts with 0x112", 0)
        if count > self.remaining() // _MIN_RECORD:
            raise self.error(f"{count} arrays cannot fit in the {self.remaining()} bytes left", 16)
        arrays = [self.read_array() for _ in range(count)]
        names = self.read_names(count)
        if self.remaining():
            raise self.error(f"{self.remaining()} unexpected bytes after the names")
        if not names:
            return arrays
        if len(set(names)) != len(names):
            raise self.error("the names are not unique", 0)
        return dict(zip(names, arrays, strict=True))

    def read_names(self, count: int) -> list[str]:
        at = self.pos
        (n_names,) = self.unpack("<Q", "the name count")
        if n_names not in (0, count):
            raise self.error(f"{n_names} names for {count} arrays; expected 0 or {count}", at)
        names = []
        for _ in range(n_names):
            at = self.pos
            (size,) = self.unpack("<Q", "a name length")
            if size > self.remaining():
                raise self.error(f"a name of {size} bytes, past the end of the file", at)
            raw = self.data[self.pos : self.pos + size]
            self.pos += size
            try:
                names.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise self.error("a name that is not UTF-8", at) from None
        return names

    def read_array(self) -> np.ndarray:
        at = self.pos
        (magic,) = self.unpack("<I", "an array header")
        shape = self.read_shape(magic, at)
        if shape is None:
            return np.zeros(0, dtype=np.float32)
        dtype = self.read_device_and_type()
        count = 1
        for dim in shape:
            count *= dim
        nbytes = count * dtype.itemsize
        if nbytes > self.remaining():
            problem = f"an array of shape {shape} needs {nbytes} bytes; {self.remaining()} left"
            raise self.error(f"{problem}: truncated or corrupt", at)
        array = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += nbytes
        return array.reshape(shape).astype(dtype.newbyteorder("="))

    def read_shape(self, magic: int, at: int) -> tuple[int, ...] | None:
        """The array's shape, or None for a "none" array (which stores nothing more)."""
        if magic in (V2_MAGIC, V3_MAGIC):
            (stype,) = self.unpack("<i", "the storage type")
            if stype != 0:
                kind = _STORAGE.get(stype, f"unknown ({stype})")
                raise self.error(f"storage type {kind} is not supported (dense only)", at)
        if magic in (V1_MAGIC, V2_MAGIC, V3_MAGIC):
            (ndim,) = self.unpack("<i", "the number of dimensions")
            if magic == V3_MAGIC and ndim == -1:
                return None
            shape = self.read_dims(ndim, "q", at)
            if magic == V3_MAGIC and min(shape, default=0) < 0:
                return None  # numpy shape semantics: an unknown dimension marks a none array
        else:
            # Legacy: no magic, the first uint32 is ndim and the dims are uint32.
            shape = self.read_dims(magic, "I", at)
        if any(dim < 0 for dim in shape):
            raise self.error(f"negative dimensions in the shape {shape}", at)
        return None if not shape and magic != V3_MAGIC else shape

    def read_dims(self, ndim: int, code: str, at: int) -> tuple[int, ...]:
        if not 0 <= ndim <= MAX_NDIM:
            raise self.error(f"an array header with ndim {ndim} (at most {MAX_NDIM})", at)
        return self.unpack(f"<{ndim}{code}", "the shape")

    def read_device_and_type(self) -> np.dtype:
        at = self.pos
        (device, _device_id, flag) = self.unpack("<iii", "the context and type flag")
        if device not in _DEVICES:
            raise self.error(f"unknown device type {device} in the array context", at)
        if flag not in TYPE_FLAGS:
            raise self.error(f"unknown type flag {flag}", at + 8)
        return TYPE_FLAGS[flag]
