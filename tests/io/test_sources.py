"""iter_batches over every kind of source, rebatch, is_reiterable and describe_source."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from kmeans_stream.exceptions import DataFormatError
from kmeans_stream.io.recordio import write_recordio
from kmeans_stream.io.sources import describe_source, is_reiterable, iter_batches, rebatch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recordio"


def _rows(n: int, d: int = 3, dtype=np.float32) -> np.ndarray:
    return np.arange(n * d, dtype=dtype).reshape(n, d)


def _collect(source, batch_size, **kw):
    batches = list(iter_batches(source, batch_size, **kw))
    for b in batches:
        assert b.ndim == 2 and b.flags.c_contiguous and b.dtype.kind == "f"
    assert all(len(b) == batch_size for b in batches[:-1])
    assert not batches or 0 < len(batches[-1]) <= batch_size
    return np.concatenate(batches) if batches else None


def _csv_bytes(X) -> bytes:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in X).encode()


# ---------------------------------------------------------------- rebatch


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), max_size=25),
    batch_size=st.integers(1, 50),
)
def test_rebatch_keeps_rows_and_order(sizes, batch_size):
    total = sum(sizes)
    X = _rows(total, 2)
    bounds = np.cumsum([0] + sizes)
    chunks = [X[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    batches = list(rebatch(iter(chunks), batch_size))
    assert [len(b) for b in batches] == [batch_size] * (total // batch_size) + (
        [total % batch_size] if total % batch_size else []
    )
    assert all(b.flags.c_contiguous for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches) if batches else X, X)


def test_rebatch_passes_parts_of_one_chunk_as_views():
    X = _rows(10)
    batches = list(rebatch([X], 4))
    assert all(np.shares_memory(b, X) for b in batches)


def test_rebatch_rejects_a_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        rebatch([], 0)
    with pytest.raises(TypeError):
        rebatch([], 2.5)


# ---------------------------------------------------------------- in memory


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contiguous_float_array_is_sliced_without_copy(dtype):
    X = _rows(10, dtype=dtype)
    batches = list(iter_batches(X, 4))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert all(b.dtype == dtype and np.shares_memory(b, X) for b in batches)


def test_fortran_and_integer_arrays_become_contiguous_floats():
    X = np.asfortranarray(_rows(7, dtype=np.float32))
    np.testing.assert_array_equal(_collect(X, 3), X)
    ints = _collect(_rows(5, dtype=np.int64), 2)
    assert ints.dtype == np.float64


def test_list_of_rows():
    np.testing.assert_array_equal(_collect([[1, 2], [3, 4], [5, 6]], 2), [[1, 2], [3, 4], [5, 6]])


def test_array_must_be_2d_and_numeric():
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        iter_batches(np.zeros(5), 2)
    with pytest.raises(DataFormatError, match="numbers"):
        iter_batches(np.array([["a", "b"]]), 2)
    with pytest.raises(TypeError, match="cannot read data from an object of type int"):
        iter_batches(42, 2)


def test_dataframe():
    X = _rows(9)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    out = _collect(frame, 4)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, X)
    mixed = frame.astype({"a": "int64", "b": "Float64"})
    mixed.loc[2, "b"] = pd.NA
    out = _collect(mixed, 4)
    assert out.dtype == np.float64 and np.isnan(out[2, 1])
    with pytest.raises(DataFormatError, match=r"column\(s\) 's' \((object|str)\) are not numeric"):
        iter_batches(frame.assign(s="x"), 4)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_matrix_is_densified_a_batch_at_a_time(fmt):
    S = sp.random(23, 6, density=0.3, format=fmt, dtype=np.float32, random_state=0)
    out = _collect(S, 5)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, S.toarray())


def test_iterable_of_batches_is_rebatched():
    chunks = [_rows(3), _rows(0), _rows(7), sp.csr_matrix(_rows(2)), pd.DataFrame(_rows(4))]
    np.testing.assert_array_equal(
        _collect(iter(chunks), 5), np.concatenate([_rows(n) for n in (3, 7, 2, 4)])
    )
    np.testing.assert_array_equal(_collect(chunks, 16), _collect(iter(chunks), 16))


def test_batches_of_another_width_are_refused():
    chunks = (X for X in [_rows(3), _rows(2), _rows(2, d=4)])
    with pytest.raises(
        DataFormatError, match=r"batch 3 \(row 6\): 4 columns, but the data before had 3"
    ):
        list(iter_batches(chunks, 2))


def test_a_1d_batch_is_refused():
    with pytest.raises(DataFormatError, match="batch 2 .*must be 2-D"):
        list(iter_batches(iter([_rows(2), np.zeros(3)]), 2))


def test_is_reiterable():
    generator = (b for b in [_rows(2)])
    assert not is_reiterable(generator)
    assert not is_reiterable(iter([_rows(2)]))
    for source in ([_rows(2)], _rows(2), [[1.0]], "x.csv", Path("x"), "s3://b/p"):
        assert is_reiterable(source)
    assert is_reiterable(pd.DataFrame(_rows(2))) and is_reiterable(sp.csr_matrix(_rows(2)))


def test_describe_source(tmp_path):
    def batches():
        yield _rows(2)

    assert describe_source(_rows(4)) == "array of shape (4, 3) and dtype float32"
    assert describe_source(batches()) == "generator 'batches'"
    assert describe_source(str(tmp_path)) == f"folder {str(tmp_path)!r}"
    assert describe_source(tmp_path / "a.csv") == f"file {str(tmp_path / 'a.csv')!r}"
    assert describe_source("s3://b/train/") == "S3 location 's3://b/train/'"
    assert describe_source("s3://b/x/.amazon.manifest").startswith("manifest")
    assert describe_source([_rows(2), _rows(3)]) == "list of 2 batches"
    assert describe_source(pd.DataFrame(_rows(2))) == "DataFrame of shape (2, 3) and dtype float32"
    assert describe_source(iter([])) == "list_iterator object"


# ---------------------------------------------------------------- files


def test_recordio_is_detected_by_its_magic_whatever_the_name(tmp_path):
    data = (FIXTURES / "dense_f32.pbr").read_bytes()
    (tmp_path / "part-0.csv").write_bytes(data)
    np.testing.assert_array_equal(
        _collect(tmp_path / "part-0.csv", 3), np.load(FIXTURES / "dense_f32.npy")
    )
    (tmp_path / "sparse").write_bytes((FIXTURES / "sparse_f32.pbr").read_bytes())
    np.testing.assert_array_equal(
        _collect(tmp_path / "sparse", 4), np.load(FIXTURES / "sparse_f32.dense.npy")
    )


def test_gzip_compressed_recordio_and_npy(tmp_path):
    (tmp_path / "a.gz").write_bytes(gzip.compress((FIXTURES / "dense_f32.pbr").read_bytes()))
    np.testing.assert_array_equal(
        _collect(tmp_path / "a.gz", 2), np.load(FIXTURES / "dense_f32.npy")
    )
    X = _rows(11, dtype=np.float64)
    np.save(tmp_path / "b.npy", X)
    (tmp_path / "b.npy.gz").write_bytes(gzip.compress((tmp_path / "b.npy").read_bytes()))
    np.testing.assert_array_equal(_collect(tmp_path / "b.npy.gz", 4), X)


def test_npy_file_is_read_in_batches(tmp_path):
    X = np.random.default_rng(0).normal(size=(101, 4))
    np.save(tmp_path / "x.npy", X)
    batches = list(iter_batches(tmp_path / "x.npy", 25))
    assert [len(b) for b in batches] == [25, 25, 25, 25, 1] and batches[0].dtype == np.float64
    np.testing.assert_array_equal(np.concatenate(batches), X)


@pytest.mark.parametrize(
    ("dtype", "out"), [(">f4", np.float32), ("<i2", np.float64), ("?", np.float64)]
)
def test_npy_of_other_types(tmp_path, dtype, out):
    X = (np.arange(12).reshape(6, 2) % 2).astype(dtype)
    np.save(tmp_path / "x.npy", X)
    got = _collect(tmp_path / "x.npy", 4)
    assert got.dtype == out and got.dtype.isnative
    np.testing.assert_array_equal(got, X.astype(out))


def test_npy_errors(tmp_path):
    np.save(tmp_path / "f.npy", np.asfortranarray(_rows(4)))
    with pytest.raises(DataFormatError, match="Fortran-order"):
        list(iter_batches(tmp_path / "f.npy", 2))
    np.save(tmp_path / "v.npy", np.zeros(4))
    with pytest.raises(DataFormatError, match="must be 2-D"):
        list(iter_batches(tmp_path / "v.npy", 2))
    np.save(tmp_path / "t.npy", _rows(10))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[: len(data) - 14])
    with pytest.raises(
        DataFormatError, match=r"t\.npy: the \.npy header says 10 rows .*byte offset \d+, in row 9"
    ):
        list(iter_batches(tmp_path / "t.npy", 4))


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(iter_batches(tmp_path / "nope.csv", 2))


def _channel(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A folder of mixed files; returns it and the rows in S3 key order."""
    root = tmp_path / "train"
    (root / "a" / "deep").mkdir(parents=True)
    (root / ".cache").mkdir()
    parts = {
        name: _rows(n) + 1000 * i
        for i, (name, n) in enumerate(
            [("a-1.csv", 3), ("a.pbr", 5), ("a/deep/z.csv", 4), ("a/y.npy", 2), ("b.csv.gz", 6)]
        )
    }
    (root / "a-1.csv").write_bytes(_csv_bytes(parts["a-1.csv"]))
    write_recordio(root / "a.pbr", parts["a.pbr"])
    (root / "a" / "deep" / "z.csv").write_bytes(_csv_bytes(parts["a/deep/z.csv"]))
    np.save(root / "a" / "y.npy", parts["a/y.npy"])
    (root / "b.csv.gz").write_bytes(gzip.compress(_csv_bytes(parts["b.csv.gz"])))
    (root / ".hidden.csv").write_bytes(b"not,data\n")
    (root / ".cache" / "c.csv").write_bytes(b"not,data\n")
    (root / "x.manifest").write_text('[{"prefix": "nowhere/"}, "x"]')
    # S3 key order compares "/"-joined paths: "a-1.csv" < "a.pbr" < "a/deep/z.csv" < "a/y.npy"
    return root, np.concatenate(list(parts.values()))


def test_folder_is_read_as_a_channel_in_s3_key_order(tmp_path):
    root, expected = _channel(tmp_path)
    for batch_size in (1, 4, 7, 100):
        np.testing.assert_array_equal(_collect(root, batch_size), expected)
    assert [len(b) for b in iter_batches(root, 7)] == [7, 7, 6]


def test_skip_header_applies_to_each_csv_file(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"x,y\n1,2\n")
    (tmp_path / "b.csv").write_bytes(b"x,y\n3,4\n")
    np.testing.assert_array_equal(_collect(tmp_path, 5, skip_header=True), [[1, 2], [3, 4]])


@pytest.mark.parametrize("prefix", ["absolute", "relative", "none"])
def test_local_manifest(tmp_path, prefix):
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "m0.npy", _rows(3))
    write_recordio(data / "matrix_1.pbr", _rows(4) + 100)
    np.save(data / "unlisted.npy", _rows(9))
    head = {"absolute": [{"prefix": f"{data}/"}], "relative": [{"prefix": "data/"}], "none": []}
    entries = (
        ["m0.npy", "matrix_1.pbr"] if prefix != "none" else ["data/m0.npy", "data/matrix_1.pbr"]
    )
    (tmp_path / ".amazon.manifest").write_text(json.dumps(head[prefix] + entries))
    np.testing.assert_array_equal(
        _collect(tmp_path / ".amazon.manifest", 5), np.concatenate([_rows(3), _rows(4) + 100])
    )


def test_malformed_manifest(tmp_path):
    (tmp_path / "bad.manifest").write_text('[{"prefix": "x/"},\n "a", ]')
    with pytest.raises(DataFormatError, match=r"bad\.manifest, line 2: not a valid JSON"):
        list(iter_batches(tmp_path / "bad.manifest", 2))
    (tmp_path / "odd.manifest").write_text('{"prefix": "x/"}')
    with pytest.raises(DataFormatError, match="must be a JSON list"):
        list(iter_batches(tmp_path / "odd.manifest", 2))


def test_csv_and_recordio_widths_must_agree(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"1,2\n")
    write_recordio(tmp_path / "b.pbr", _rows(2))
    with pytest.raises(
        DataFormatError, match=r"b\.pbr, record 1: 3 columns, but the data before had 2"
    ):
        list(iter_batches(tmp_path, 2))


# ---------------------------------------------------------------- streams and imports


class _Pipe:
    """A read-only byte source with nothing but ``read(n)``, as a socket file or a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, n: int = -1) -> bytes:
        n = len(self._data) - self._pos if n < 0 else min(n, 7)  # short reads, as a pipe gives
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk


def test_binary_streams_are_read_once(tmp_path):
    X = _rows(9)
    np.testing.assert_array_equal(_collect(_Pipe(_csv_bytes(X)), 4), X)
    np.testing.assert_array_equal(
        _collect(_Pipe((FIXTURES / "dense_f32.pbr").read_bytes()), 4),
        np.load(FIXTURES / "dense_f32.npy"),
    )
    (tmp_path / "x.csv").write_bytes(_csv_bytes(X))
    with open(tmp_path / "x.csv", "rb") as file:
        assert not is_reiterable(file)
        assert describe_source(file) == f"stream {str(tmp_path / 'x.csv')!r}"
        np.testing.assert_array_equal(_collect(file, 5), X)
    with open(tmp_path / "x.csv") as text, pytest.raises(TypeError, match="binary mode"):
        list(iter_batches(text, 5))


def test_reading_arrays_and_files_imports_nothing_heavy(tmp_path):
    np.save(tmp_path / "x.npy", _rows(4))
    code = (
        "import sys, numpy as np\n"
        "from kmeans_stream.io.sources import iter_batches\n"
        "list(iter_batches(np.ones((10, 2)), 3))\n"
        f"list(iter_batches({str(tmp_path / 'x.npy')!r}, 3))\n"
        "heavy = {'pyarrow', 'boto3', 'botocore', 'scipy', 'pandas'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
