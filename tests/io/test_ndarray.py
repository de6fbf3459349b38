"""MXNet NDArray list files against MXNet 1.9.1's bytes, older layouts and hostile files."""

import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kmeans_stream.exceptions import ModelFormatError
from kmeans_stream.io import read_ndarrays, write_ndarrays
from kmeans_stream.io.ndarray import V1_MAGIC, V2_MAGIC, V3_MAGIC

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODEL = FIXTURES / "ndarray" / "model_algo-1_list"


def _centers() -> np.ndarray:
    return np.load(FIXTURES / "ndarray" / "centers_8x7.npy")


def _to_bytes(arrays) -> bytes:
    out = io.BytesIO()
    write_ndarrays(out, arrays)
    return out.getvalue()


def _list(*records: bytes, names: list[bytes] | None = None) -> bytes:
    head = struct.pack("<QQQ", 0x112, 0, len(records))
    tail = struct.pack("<Q", len(names or []))
    tail += b"".join(struct.pack("<Q", len(n)) + n for n in names or [])
    return head + b"".join(records) + tail


def _v2(shape, flag=0, data=b"", stype=0, device=1, magic=V2_MAGIC) -> bytes:
    head = struct.pack(f"<Iii{len(shape)}q", magic, stype, len(shape), *shape)
    return head + struct.pack("<iii", device, 0, flag) + data


def test_the_fixture_reads_as_one_float32_array():
    arrays = read_ndarrays(MODEL)
    assert isinstance(arrays, list) and len(arrays) == 1
    assert arrays[0].dtype == np.float32 and arrays[0].shape == (8, 7)
    np.testing.assert_array_equal(arrays[0], _centers())
    np.testing.assert_array_equal(read_ndarrays(MODEL.read_bytes())[0], _centers())


def test_the_fixture_is_written_byte_identical(tmp_path):
    assert _to_bytes([_centers()]) == MODEL.read_bytes()
    assert len(MODEL.read_bytes()) == 296
    write_ndarrays(tmp_path / "model_algo-1", [_centers()])
    assert (tmp_path / "model_algo-1").read_bytes() == MODEL.read_bytes()
    assert os.listdir(tmp_path) == ["model_algo-1"]


def test_non_contiguous_and_big_endian_arrays_write_the_same_bytes():
    centers = _centers()
    assert _to_bytes([np.asfortranarray(centers)]) == MODEL.read_bytes()
    assert _to_bytes([centers.astype(">f4")]) == MODEL.read_bytes()


def test_a_dict_saves_names_and_reads_back_as_a_dict():
    arrays = {"weight": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.ones(3)}
    data = _to_bytes(arrays)
    assert data.endswith(struct.pack("<Q", 2) + b"\x06\0\0\0\0\0\0\0weight\x04\0\0\0\0\0\0\0bias")
    got = read_ndarrays(data)
    assert list(got) == ["weight", "bias"]
    for key, value in arrays.items():
        np.testing.assert_array_equal(got[key], value)
        assert got[key].dtype == value.dtype


@pytest.mark.parametrize(
    "dtype", [np.float32, np.float64, np.float16, np.uint8, np.int32, np.int8, np.int64]
)
@pytest.mark.parametrize("shape", [(5,), (2, 3), (2, 1, 3), (0, 7)])
def test_every_type_flag_round_trips(dtype, shape):
    array = np.arange(np.prod(shape)).reshape(shape).astype(dtype)
    (got,) = read_ndarrays(_to_bytes([array]))
    assert got.dtype == dtype and got.shape == shape
    np.testing.assert_array_equal(got, array)


def test_older_and_newer_record_layouts():
    data = struct.pack("<4f", 1, 2, 3, 4)
    v1 = struct.pack("<Ii2q", V1_MAGIC, 2, 2, 2) + struct.pack("<iii", 1, 0, 0) + data
    legacy = struct.pack("<I2I", 2, 2, 2) + struct.pack("<iii", 2, 0, 0) + data
    v3 = _v2((2, 2), data=data, magic=V3_MAGIC)
    v3_scalar = _v2((), flag=6, data=struct.pack("<q", -5), magic=V3_MAGIC)
    got = read_ndarrays(_list(v1, legacy, v3, v3_scalar))
    for array in got[:3]:
        np.testing.assert_array_equal(array, [[1, 2], [3, 4]])
    assert got[3].shape == () and got[3] == -5


def test_none_arrays_read_as_empty():
    none_v2 = struct.pack("<Iii", V2_MAGIC, 0, 0)
    none_v3 = struct.pack("<Iii", V3_MAGIC, 0, -1)
    none_legacy = struct.pack("<I", 0)
    got = read_ndarrays(_list(none_v2, none_v3, none_legacy, _v2((1,), data=b"\0" * 4)))
    assert [a.shape for a in got] == [(0,), (0,), (0,), (1,)]


def _offset(exc_info) -> int:
    return int(str(exc_info.value).split("byte offset ")[1].split(":")[0])


def test_the_truncated_fixture_is_refused_with_its_offset():
    path = FIXTURES / "evil" / "truncated_ndarray"
    with pytest.raises(ModelFormatError, match="truncated") as exc_info:
        read_ndarrays(path)
    assert str(path) in str(exc_info.value) and _offset(exc_info) == 52


def test_every_truncation_of_the_fixture_is_refused():
    data = MODEL.read_bytes()
    for cut in range(len(data)):
        with pytest.raises(ModelFormatError):
            read_ndarrays(data[:cut])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x13\x01" + MODEL.read_bytes()[2:], "bad list magic 0x113"),
        (struct.pack("<QQQ", 0x112, 0, 1 << 60), "cannot fit"),
        (_list(_v2((1 << 40, 1 << 20))), "needs 4611686018427387904 bytes"),
        (_list(_v2((2, -3))), "negative dimensions"),
        (_list(struct.pack("<Iii", V2_MAGIC, 0, 1000)), "ndim 1000"),
        (_list(struct.pack("<Iii", V2_MAGIC, 0, -2)), "ndim -2"),
        (_list(struct.pack("<I", 7777)), "ndim 7777"),
        (_list(_v2((2,), stype=1)), "storage type row_sparse is not supported"),
        (_list(_v2((2,), stype=2)), "storage type csr is not supported"),
        (_list(_v2((2,), stype=9)), "storage type unknown \\(9\\)"),
        (_list(_v2((1,), flag=12, data=b"\0" * 4)), "unknown type flag 12"),
        (_list(_v2((1,), device=7, data=b"\0" * 4)), "unknown device type 7"),
        (_list(_v2((1,), data=b"\0" * 4)) + b"junk", "4 unexpected bytes"),
        (_list(_v2((1,), data=b"\0" * 4), names=[b"a", b"b"]), "2 names for 1 arrays"),
        (_list(*[_v2((1,), data=b"\0" * 4)] * 2, names=[b"a", b"a"]), "not unique"),
        (_list(_v2((1,), data=b"\0" * 4), names=[b"\xff"]), "not UTF-8"),
        (_list(_v2((1,), data=b"\0" * 4))[:-8] + struct.pack("<QQ", 1, 1 << 50), "a name of"),
    ],
)
def test_hostile_files_are_refused(data, message):
    with pytest.raises(ModelFormatError, match=message):
        read_ndarrays(data)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ([np.float32(1.0)], "1 to 32 dimensions"),
        ([np.ones(2, np.complex64)], "dtype complex64"),
        ({"flags": np.ones(2, bool)}, "dtype bool of array 'flags'"),
    ],
)
def test_unsavable_arrays_are_a_value_error(arrays, message):
    with pytest.raises(ValueError, match=message):
        _to_bytes(arrays)


@settings(max_examples=60, deadline=None)
@given(
    arrays=st.lists(
        hnp.arrays(
            st.sampled_from([np.float32, np.float64, np.float16, np.uint8, np.int8, np.int64]),
            hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
        ),
        max_size=4,
    ),
    named=st.booleans(),
)
def test_round_trip(arrays, named):
    saved = {f"a{i}": a for i, a in enumerate(arrays)} if named and arrays else arrays
    got = read_ndarrays(_to_bytes(saved))
    got_arrays = list(got.values()) if isinstance(got, dict) else got
    assert isinstance(got, dict) == (named and bool(arrays))
    for array, back in zip(arrays, got_arrays, strict=True):
        assert back.dtype == array.dtype and back.shape == array.shape
        np.testing.assert_array_equal(back, array)
