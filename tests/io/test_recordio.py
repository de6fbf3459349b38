"""RecordIO-protobuf against the bytes of the SageMaker SDK, dmlc's multi-part framing and
malformed files."""

import io
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kmeans_stream.exceptions import DataFormatError
from kmeans_stream.io import _layout, _scan, iter_recordio, read_recordio, write_recordio
from kmeans_stream.io.protobuf import (
    FLOAT32_TENSOR,
    INT32_TENSOR,
    encode_record,
    encode_value,
    encode_varint,
)
from kmeans_stream.io.recordio import read_predictions_recordio, write_predictions_recordio

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recordio"
MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _sparse_fixture_matrix():
    sparse = pytest.importorskip("scipy.sparse")
    return sparse.random(6, 10, density=0.3, format="csr", dtype=np.float32, random_state=2)


def _to_bytes(X, labels=None) -> bytes:
    out = io.BytesIO()
    write_recordio(out, X, labels)
    return out.getvalue()


def _frame(payload: bytes, cflag: int = 0) -> bytes:
    """One record framed as the SDK frames it (cflag 0) or one dmlc part."""
    word = cflag << 29 | len(payload)
    return MAGIC_BYTES + struct.pack("<I", word) + payload + b"\0" * (-len(payload) % 4)


def _dmlc_frame(payload: bytes) -> bytes:
    """Frame a record as dmlc's RecordIOWriter::WriteRecord does: split at aligned magic."""
    out, start = [], 0
    for i in range(0, len(payload) - len(payload) % 4, 4):
        if payload[i : i + 4] == MAGIC_BYTES:
            word = (1 if start == 0 else 2) << 29 | (i - start)
            out.append(MAGIC_BYTES + struct.pack("<I", word) + payload[start:i])
            start = i + 4
    word = (3 if start else 0) << 29 | (len(payload) - start)
    tail = payload[start:] + b"\0" * (-len(payload) % 4)
    out.append(MAGIC_BYTES + struct.pack("<I", word) + tail)
    return b"".join(out)


def _payloads(data: bytes) -> list[bytes]:
    """The payloads of an SDK (cflag 0) file."""
    out, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from("<I", data, pos + 4)
        out.append(data[pos + 8 : pos + 8 + length])
        pos += 8 + length + (-length % 4)
    return out


def _cflags(data: bytes) -> list[int]:
    flags, pos = [], 0
    while pos < len(data):
        (word,) = struct.unpack_from("<I", data, pos + 4)
        flags.append(word >> 29)
        length = word & ((1 << 29) - 1)
        pos += 8 + length + (-length % 4)
    return flags


def _record(features=None, label=None) -> bytes:
    return encode_record(features or {}, label or {})


def _dense_value(values, kind=FLOAT32_TENSOR) -> bytes:
    return encode_value(kind, np.asarray(values))


# --- the SDK's own bytes ---------------------------------------------------------------------


def test_dense_fixture_reads_exactly():
    X, labels = read_recordio(FIXTURES / "dense_f32.pbr")
    expected = np.load(FIXTURES / "dense_f32.npy")
    assert X.dtype == np.float32 and labels is None
    np.testing.assert_array_equal(X, expected)


def test_dense_fixture_is_written_byte_identical(tmp_path):
    X = np.load(FIXTURES / "dense_f32.npy")
    assert _to_bytes(X) == _fixture("dense_f32.pbr")
    write_recordio(tmp_path / "out.pbr", X)
    assert (tmp_path / "out.pbr").read_bytes() == _fixture("dense_f32.pbr")
    assert os.listdir(tmp_path) == ["out.pbr"]


def test_sparse_fixture_reads_densified():
    X, labels = read_recordio(str(FIXTURES / "sparse_f32.pbr"))
    expected = np.load(FIXTURES / "sparse_f32.dense.npy")
    assert X.dtype == np.float32 and labels is None
    np.testing.assert_array_equal(X, expected)
    np.testing.assert_array_equal(_sparse_fixture_matrix().toarray(), expected)


def test_sparse_fixture_is_written_byte_identical():
    S = _sparse_fixture_matrix()
    assert _to_bytes(S) == _fixture("sparse_f32.pbr")
    assert _to_bytes(S.tocsc()) == _fixture("sparse_f32.pbr")


def test_sparse_fixture_needs_the_padding_it_has():
    lengths = [len(p) for p in _payloads(_fixture("sparse_f32.pbr"))]
    assert {-n % 4 for n in lengths} >= {1, 3}


def test_predictions_fixture_reads_as_the_json_says():
    expected = json.loads(_fixture("predictions.json"))["records"]
    closest, distance = read_predictions_recordio(FIXTURES / "predictions.pbr")
    assert closest.dtype == distance.dtype == np.float32
    np.testing.assert_array_equal(closest, [r["closest_cluster"][0] for r in expected])
    np.testing.assert_array_equal(distance, [r["distance_to_cluster"][0] for r in expected])


def test_predictions_are_written_byte_identical():
    closest, distance = read_predictions_recordio(FIXTURES / "predictions.pbr")
    out = io.BytesIO()
    write_predictions_recordio(out, closest, distance)
    assert out.getvalue() == _fixture("predictions.pbr")


def test_predictions_fixture_through_read_recordio_has_no_features():
    X, labels = read_recordio(FIXTURES / "predictions.pbr")
    assert X.shape == (3, 0) and labels is None


def test_predictions_in_either_map_order_read_the_same():
    closest_first = _record(
        label={"closest_cluster": _dense_value([2.0]), "distance_to_cluster": _dense_value([0.5])}
    )
    closest, distance = read_predictions_recordio(io.BytesIO(_frame(closest_first)))
    assert closest.tolist() == [2.0] and distance.tolist() == [0.5]


def test_predictions_without_their_labels_are_refused():
    with pytest.raises(DataFormatError, match="closest_cluster"):
        read_predictions_recordio(io.BytesIO(_to_bytes(np.ones((2, 3), np.float32))))


# --- what the SDK writes for each dtype and labels -------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "tag"), [(np.float32, b"\x12"), (np.float64, b"\x1a"), (np.int64, b"\x3a")]
)
def test_dtype_picks_the_tensor_type(dtype, tag):
    X = np.arange(6).reshape(2, 3).astype(dtype)
    data = _to_bytes(X)
    # features entry, key "values", then the Value whose first tag names the tensor type.
    assert _payloads(data)[0][12:13] == tag
    got, _ = read_recordio(io.BytesIO(data))
    np.testing.assert_array_equal(got, X)
    assert got.dtype == (np.int32 if dtype == np.int64 else dtype)


@pytest.mark.parametrize(
    "labels",
    [
        np.array([0.5, -1.0, 7.25], np.float32),
        np.array([0.5, -1.0, 7.25], np.float64),
        np.array([0, 5, 127]),
        np.array([-1, 300, 2**31 - 1]),
    ],
)
def test_labels_round_trip_with_their_type(labels):
    X = np.arange(9, dtype=np.float32).reshape(3, 3)
    got, got_labels = read_recordio(io.BytesIO(_to_bytes(X, labels)))
    np.testing.assert_array_equal(got, X)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_labels.dtype == (np.int32 if labels.dtype.kind == "i" else labels.dtype)


def test_label_bytes_match_the_sdk_layout():
    payload = _payloads(_to_bytes(np.ones((1, 2), np.float32), np.array([3.0], np.float32)))[0]
    features = _record({"values": _dense_value([1.0, 1.0])})
    label = b"\x12\x12\x0a\x06values\x12\x08\x12\x06\x0a\x04" + struct.pack("<f", 3.0)
    assert payload == features + label


def test_worked_example_of_the_spec():
    data = _to_bytes(np.array([[1.0, 2.0]], np.float32))
    expected = "0A 23 D7 CE 18 00 00 00 0A 16 0A 06 76 61 6C 75 65 73 12 0C 12 0A 0A 08"
    assert data.hex(" ").upper() == expected + " 00 00 80 3F 00 00 00 40"


@pytest.mark.parametrize(
    ("X", "labels", "message"),
    [
        (np.ones(3), None, "2-D"),
        (np.ones((2, 2, 2)), None, "2-D"),
        (np.ones((2, 3)), np.ones((2, 1)), "1-D"),
        (np.ones((2, 3)), np.ones(3), "2 rows"),
        (np.ones((2, 3), np.float16), None, "Unsupported dtype float16"),
        (np.ones((2, 3), bool), None, "Unsupported dtype bool"),
        (np.ones((2, 3), np.complex64), None, "Unsupported dtype complex64"),
        (np.full((2, 3), 2**31), None, "outside int32"),
        (np.ones((2, 3)), np.array(["a", "b"]), "Unsupported dtype"),
    ],
)
def test_bad_input_is_a_clear_value_error(X, labels, message):
    with pytest.raises(ValueError, match=message):
        _to_bytes(X, labels)


def test_sparse_int_data_outside_int32_is_refused():
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(ValueError, match="outside int32"):
        _to_bytes(sparse.csr_matrix(np.array([[0, 2**40]])))


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    sparse = pytest.importorskip("scipy.sparse")
    path = tmp_path / "data.pbr"
    write_recordio(path, np.ones((2, 2), np.float32))
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_recordio(path, sparse.csr_matrix(np.array([[0, 2**40]])))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["data.pbr"]


def test_empty_inputs():
    assert _to_bytes(np.zeros((0, 4), np.float32)) == b""
    X, labels = read_recordio(io.BytesIO(b""))
    assert X.shape == (0, 0) and labels is None
    assert list(iter_recordio(io.BytesIO(b""), 3)) == []


def test_zero_width_rows_round_trip():
    X, _ = read_recordio(io.BytesIO(_to_bytes(np.zeros((3, 0), np.float32))))
    assert X.shape == (3, 0)


# --- reading in chunks and batches -----------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 3, 7, 100])
def test_iter_recordio_batches(batch_size):
    expected = np.load(FIXTURES / "dense_f32.npy")
    batches = list(iter_recordio(FIXTURES / "dense_f32.pbr", batch_size))
    assert all(b.shape == (batch_size, 5) for b in batches[:-1])
    assert 1 <= batches[-1].shape[0] <= batch_size
    np.testing.assert_array_equal(np.concatenate(batches), expected)


def test_iter_recordio_gives_floats_for_int_records():
    X = np.arange(12).reshape(4, 3)
    batches = list(iter_recordio(io.BytesIO(_to_bytes(X)), 3))
    assert [b.dtype for b in batches] == [np.float64, np.float64]
    np.testing.assert_array_equal(np.concatenate(batches), X)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_iter_recordio_refuses_a_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_recordio(io.BytesIO(b""), batch_size))


class _CountingStream(io.RawIOBase):
    """A non-seekable stream that records how much has been read."""

    def __init__(self, data: bytes):
        self._data, self.consumed = data, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        piece = self._data[self.consumed : self.consumed + min(len(buffer), 1000)]
        buffer[: len(piece)] = piece
        self.consumed += len(piece)
        return len(piece)


def test_iter_recordio_reads_chunk_by_chunk(monkeypatch):
    monkeypatch.setattr(_scan, "CHUNK_BYTES", 4096)
    X = np.random.default_rng(0).normal(size=(2000, 16)).astype(np.float32)
    data = _to_bytes(X)
    stream = _CountingStream(data)
    batches = iter_recordio(stream, 10)
    np.testing.assert_array_equal(next(batches), X[:10])
    assert stream.consumed < 3 * 4096
    np.testing.assert_array_equal(np.concatenate([X[:10], *batches]), X)


@pytest.mark.parametrize("chunk", [8, 13, 64, 1000])
def test_chunk_boundaries_anywhere(monkeypatch, chunk):
    monkeypatch.setattr(_scan, "CHUNK_BYTES", chunk)
    X = np.random.default_rng(1).normal(size=(50, 7))
    labels = np.arange(50, dtype=np.float32)
    got, got_labels = read_recordio(io.BytesIO(_to_bytes(X, labels)))
    np.testing.assert_array_equal(got, X)
    np.testing.assert_array_equal(got_labels, labels)
    sparse_fixture = read_recordio(io.BytesIO(_fixture("sparse_f32.pbr")))[0]
    np.testing.assert_array_equal(sparse_fixture, np.load(FIXTURES / "sparse_f32.dense.npy"))


def test_block_decoding_equals_record_by_record(monkeypatch):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(3000, 9)).astype(np.float32)
    labels = rng.integers(0, 100, size=3000)
    data = _to_bytes(X, labels)
    fast = read_recordio(io.BytesIO(data))
    monkeypatch.setattr(_layout.Layout, "of", classmethod(lambda cls, framed, record: None))
    slow = read_recordio(io.BytesIO(data))
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    np.testing.assert_array_equal(fast[0], X)
    np.testing.assert_array_equal(fast[1], labels)


def test_read_arrays_are_writable_and_own_their_memory():
    X, _ = read_recordio(io.BytesIO(_to_bytes(np.ones((1, 3), np.float32))))
    X[0, 0] = 5.0
    assert X.flags.writeable and X.flags.c_contiguous


def test_a_file_mixing_layouts_reads_in_order():
    sparse = pytest.importorskip("scipy.sparse")
    parts = [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.arange(8, dtype=np.float64).reshape(2, 4) / 3,
        np.array([[1, -2, 3, 4]]),
    ]
    S = sparse.csr_matrix(np.array([[0, 0, 2.5, 0], [0, 0, 0, 0]], dtype=np.float32))
    data = b"".join(_to_bytes(p) for p in parts) + _to_bytes(S) + _to_bytes(parts[0])
    X, _ = read_recordio(io.BytesIO(data))
    expected = np.concatenate([*parts, S.toarray(), parts[0]])
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X, expected)


# --- dmlc's multi-part records -----------------------------------------------------------------


def _magic_float() -> float:
    return float(np.array([MAGIC], dtype=np.uint32).view(np.float32)[0])


@pytest.mark.parametrize(
    "row",
    [
        [_magic_float(), 1.0, 2.0, 3.0, 4.0],
        [_magic_float(), 1.0, _magic_float(), 2.0, 3.0],
        [1.0, 2.0, 3.0, 4.0, _magic_float()],
        [_magic_float()] * 5,
    ],
)
def test_multi_part_records_are_joined_with_the_magic(row):
    X = np.array([[9.0] * 5, row, [8.0] * 5], dtype=np.float32)
    sdk = _to_bytes(X)
    dmlc = b"".join(_dmlc_frame(p) for p in _payloads(sdk))
    assert set(_cflags(dmlc)) >= {1, 3}
    for data in (sdk, dmlc):
        got, _ = read_recordio(io.BytesIO(data))
        np.testing.assert_array_equal(got, X)


def test_multi_part_record_with_a_middle_part():
    X = np.array([[_magic_float(), 1.0, _magic_float(), 2.0, 3.0]], dtype=np.float32)
    dmlc = _dmlc_frame(_payloads(_to_bytes(X))[0])
    assert _cflags(dmlc) == [1, 2, 3]
    np.testing.assert_array_equal(read_recordio(io.BytesIO(dmlc))[0], X)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([(2, b"abcd")], "cflag 2 follows no start"),
        ([(3, b"abcd")], "cflag 3 follows no start"),
        ([(1, b"abcd")], "has no end"),
        ([(1, b"abcd"), (0, b"abcd")], "cflag 0 inside the multi-part"),
        ([(1, b"abcd"), (1, b"abcd")], "cflag 1 inside the multi-part"),
        ([(4, b"abcd")], "cflag 4 follows no start"),
    ],
)
def test_broken_multi_part_sequences(frames, message):
    data = b"".join(_frame(payload, cflag) for cflag, payload in frames)
    with pytest.raises(DataFormatError, match=message):
        read_recordio(io.BytesIO(data))


# --- the protobuf decoder: order, unknown fields, other encodings ----------------------------


def _tag(number: int, wire: int) -> bytes:
    return encode_varint(number << 3 | wire)


def _unknown_fields() -> bytes:
    return (
        _tag(20, 0)
        + encode_varint(300)
        + _tag(21, 1)
        + b"\1" * 8
        + _tag(22, 5)
        + b"\2" * 4
        + _tag(23, 2)
        + b"\3abc"
        + _tag(24, 3)
        + _tag(1, 0)
        + b"\7"
        + _tag(24, 4)
    )


def test_label_before_features_unknown_fields_and_unpacked_values():
    values = _tag(1, 5) + struct.pack("<f", 1.5) + _tag(1, 5) + struct.pack("<f", -2.0)
    tensor = values + _tag(4, 0) + b"\1" + _unknown_fields()
    value = _tag(FLOAT32_TENSOR, 2) + encode_varint(len(tensor)) + tensor
    entry = _tag(1, 2) + b"\x06values" + _tag(2, 2) + encode_varint(len(value)) + value
    entry += _unknown_fields()
    record = (
        _tag(3, 2)
        + b"\3uid"
        + _record(label={"values": _dense_value([4], INT32_TENSOR)})
        + _unknown_fields()
        + _tag(1, 2)
        + encode_varint(len(entry))
        + entry
        + _tag(4, 2)
        + b"\4meta"
    )
    X, labels = read_recordio(io.BytesIO(_frame(record) * 2))
    np.testing.assert_array_equal(X, [[1.5, -2.0], [1.5, -2.0]])
    np.testing.assert_array_equal(labels, [4, 4])


def test_unpacked_keys_and_shape():
    tensor = (
        _tag(1, 2)
        + b"\x08"
        + struct.pack("<2f", 1.0, 2.0)
        + _tag(2, 0)
        + b"\x03"
        + _tag(2, 0)
        + b"\x00"
        + _tag(3, 0)
        + b"\x05"
    )
    value = _tag(FLOAT32_TENSOR, 2) + encode_varint(len(tensor)) + tensor
    X, _ = read_recordio(io.BytesIO(_frame(_record({"values": value}))))
    np.testing.assert_array_equal(X, [[2.0, 0, 0, 1.0, 0]])


def test_negative_int32_values_round_trip():
    X = np.array([[-1, 0, -(2**31)], [2**31 - 1, 5, -300]])
    np.testing.assert_array_equal(read_recordio(io.BytesIO(_to_bytes(X)))[0], X)


def test_padding_bytes_are_skipped_whatever_they_hold():
    data = bytearray(_fixture("sparse_f32.pbr"))
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from("<I", data, pos + 4)
        end = pos + 8 + length
        pos = end + (-length % 4)
        data[end:pos] = b"\xff" * (pos - end)
    X, _ = read_recordio(io.BytesIO(bytes(data)))
    np.testing.assert_array_equal(X, np.load(FIXTURES / "sparse_f32.dense.npy"))


# --- malformed files -------------------------------------------------------------------------


def _offset(exc_info) -> int:
    return int(str(exc_info.value).split("byte offset ")[1].split(":")[0])


def test_bad_magic_names_the_file_and_offset(tmp_path):
    data = bytearray(_fixture("dense_f32.pbr"))
    data[3 * 44] ^= 0xFF
    path = tmp_path / "bad.pbr"
    path.write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match="bad magic") as exc_info:
        read_recordio(path)
    assert str(path) in str(exc_info.value) and _offset(exc_info) == 3 * 44
    with pytest.raises(DataFormatError, match=r"<stream>, byte offset 132: bad magic"):
        read_recordio(io.BytesIO(bytes(data)))


def test_bad_magic_in_iter_recordio_after_good_rows():
    data = _fixture("dense_f32.pbr") + b"\0" * 8
    batches = iter_recordio(io.BytesIO(data), 7)
    assert next(batches).shape == (7, 5)
    with pytest.raises(DataFormatError, match="byte offset 308: bad magic"):
        next(batches)


@pytest.mark.parametrize("fixture", ["dense_f32.pbr", "sparse_f32.pbr", "predictions.pbr"])
def test_truncated_files_are_refused_at_every_offset(tmp_path, fixture):
    data = _fixture(fixture)
    starts = {0}
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from("<I", data, pos + 4)
        pos += 8 + length + (-length % 4)
        starts.add(pos)
    path = tmp_path / "cut.pbr"
    for cut in range(1, len(data)):
        if cut in starts:
            continue
        record_start = max(s for s in starts if s < cut)
        for source in (io.BytesIO(data[:cut]), path):
            path.write_bytes(data[:cut])
            with pytest.raises(DataFormatError) as exc_info:
                read_recordio(source)
            assert _offset(exc_info) == record_start


def test_length_word_beyond_the_file(tmp_path):
    data = bytearray(_fixture("dense_f32.pbr"))
    struct.pack_into("<I", data, 4, (1 << 29) - 1)
    path = tmp_path / "long.pbr"
    path.write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match="past the end of the file"):
        read_recordio(path)
    with pytest.raises(DataFormatError, match="truncated"):
        read_recordio(io.BytesIO(bytes(data)))


def test_a_record_with_another_feature_count():
    first = _to_bytes(np.ones((2, 3), np.float32))
    data = first + _to_bytes(np.ones((1, 4), np.float32))
    with pytest.raises(DataFormatError, match="4 features; the first had 3") as exc_info:
        read_recordio(io.BytesIO(data))
    assert _offset(exc_info) == len(first)


def test_sparse_records_of_another_shape():
    sparse = pytest.importorskip("scipy.sparse")
    data = _to_bytes(sparse.eye(3, format="csr")) + _to_bytes(sparse.eye(2, 4, format="csr"))
    with pytest.raises(DataFormatError, match="4 features; the first had 3"):
        read_recordio(io.BytesIO(data))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (encode_value(FLOAT32_TENSOR, np.ones(2), keys=[1, 10], shape=[10]), "key 10 beyond"),
        (encode_value(FLOAT32_TENSOR, np.ones(2), keys=[1], shape=[10]), "1 keys for 2 values"),
        (encode_value(FLOAT32_TENSOR, np.ones(2), keys=[0, 1]), "without a shape"),
        (encode_value(FLOAT32_TENSOR, np.ones(3), shape=[4]), "0 keys for 3 values"),
        (encode_value(FLOAT32_TENSOR, np.ones(1), keys=[0], shape=[1 << 40]), "more than"),
        (_tag(11, 2) + b"\2\1\2", "unknown tensor type \\(Value field 11\\)"),
        (_tag(9, 2) + b"\3\x0a\1a", "bytes Value"),
    ],
)
def test_bad_tensors(value, message):
    data = _to_bytes(np.ones((1, 10), np.float32)) + _frame(_record({"values": value}))
    with pytest.raises(DataFormatError, match=message) as exc_info:
        read_recordio(io.BytesIO(data))
    assert _offset(exc_info) == 64


@pytest.mark.parametrize(
    "payload",
    [
        b"\x0a",  # a length-delimited field without its length
        b"\x0a\x05ab",  # a length past the end of the record
        b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # an 11-byte varint
        b"\x0e",  # wire type 6
        b"\x0c",  # an end-group tag outside a group
        b"\x1b\x08",  # a group without its end
        b"\x00\x00",  # field number 0
        _record({"values": encode_value(FLOAT32_TENSOR, np.ones(1))})[:-1],
    ],
)
def test_malformed_protobuf(payload):
    with pytest.raises(DataFormatError, match="malformed protobuf"):
        read_recordio(io.BytesIO(_frame(payload)))


def test_labels_must_be_single_values_and_present_in_every_record():
    two = _frame(_record({"values": _dense_value([1.0])}, {"values": _dense_value([1.0, 2.0])}))
    with pytest.raises(DataFormatError, match="holds 2 values"):
        read_recordio(io.BytesIO(two))
    mixed = _to_bytes(np.ones((2, 2)), np.ones(2)) + _to_bytes(np.ones((2, 2)))
    with pytest.raises(DataFormatError, match="labels \\[\\]; the first had \\['values'\\]"):
        read_recordio(io.BytesIO(mixed))


# --- round trips -----------------------------------------------------------------------------

_shapes = hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12)


@settings(max_examples=60, deadline=None)
@given(
    X=st.one_of(
        hnp.arrays(np.float32, _shapes),
        hnp.arrays(np.float64, _shapes),
        hnp.arrays(np.int64, _shapes, elements=st.integers(-(2**31), 2**31 - 1)),
    ),
    with_labels=st.booleans(),
)
def test_dense_round_trip(X, with_labels):
    labels = np.arange(X.shape[0], dtype=np.float64) / 4 if with_labels else None
    got, got_labels = read_recordio(io.BytesIO(_to_bytes(X, labels)))
    np.testing.assert_array_equal(got, X)
    assert got.dtype == (np.int32 if X.dtype == np.int64 else X.dtype)
    if labels is None:
        assert got_labels is None
    else:
        np.testing.assert_array_equal(got_labels, labels)


@settings(max_examples=40, deadline=None)
@given(
    dense=hnp.arrays(
        np.float32,
        _shapes,
        elements=st.one_of(st.just(0.0), st.floats(-1e6, 1e6, width=32)),
    ),
    fmt=st.sampled_from(["csr", "csc", "coo"]),
)
def test_sparse_round_trip(dense, fmt):
    sparse = pytest.importorskip("scipy.sparse")
    got, _ = read_recordio(io.BytesIO(_to_bytes(sparse.csr_matrix(dense).asformat(fmt))))
    np.testing.assert_array_equal(got, dense)
    assert got.dtype == np.float32


def test_recordio_with_dense_data_never_imports_scipy():
    import subprocess
    import sys

    code = (
        "import sys, io, numpy as np\n"
        "from kmeans_stream.io.recordio import write_recordio, read_recordio\n"
        "out = io.BytesIO(); write_recordio(out, np.ones((2, 2), np.float32))\n"
        "read_recordio(io.BytesIO(out.getvalue()))\n"
        "assert 'scipy' not in sys.modules and 'boto3' not in sys.modules\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root)


@pytest.mark.slow
def test_dense_reading_is_fast(tmp_path):
    import time

    X = np.random.default_rng(3).normal(size=(200_000, 64)).astype(np.float32)
    path = tmp_path / "big.pbr"
    write_recordio(path, X)
    read_recordio(path)
    start = time.perf_counter()
    got, _ = read_recordio(path)
    megabytes_per_s = path.stat().st_size / 1e6 / (time.perf_counter() - start)
    np.testing.assert_array_equal(got, X)
    assert megabytes_per_s >= 200, f"{megabytes_per_s:.0f} MB/s"
