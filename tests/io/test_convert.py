"""convert: streaming between CSV, RecordIO-protobuf and .npy, written atomically."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from kmeans_stream.exceptions import DataFormatError
from kmeans_stream.io.convert import convert, output_format
from kmeans_stream.io.recordio import read_recordio
from kmeans_stream.io.sources import iter_batches

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recordio"


@pytest.fixture
def X():
    return np.random.default_rng(3).normal(size=(1234, 6)).astype(np.float32)


def _read_all(path):
    return np.concatenate(list(iter_batches(path, 500)))


def test_round_trip_through_every_format_is_exact(tmp_path, X):
    steps = ["a.csv", "b.pbr", "c.npy", "d.recordio", "e.csv.gz", "f.rec.gz", "g.npy"]
    source = X
    for name in steps:
        assert convert(source, tmp_path / name, batch_size=100) == len(X)
        source = tmp_path / name
    final = np.load(tmp_path / "g.npy")
    assert final.dtype == np.float32
    np.testing.assert_array_equal(final, X)
    np.testing.assert_array_equal(read_recordio(tmp_path / "b.pbr")[0], X)
    assert gzip.decompress((tmp_path / "e.csv.gz").read_bytes()).count(b"\n") == len(X)


def test_csv_output_is_sagemaker_csv(tmp_path):
    convert(np.array([[1.0, 0.1], [2.5, -3.0]], dtype=np.float32), tmp_path / "x.csv")
    assert (tmp_path / "x.csv").read_bytes() == b"1,0.1\n2.5,-3\n"


def test_recordio_output_has_the_sdk_bytes(tmp_path):
    for batch_size in (1, 3, 100):
        convert(FIXTURES / "dense_f32.npy", tmp_path / "x.pbr", batch_size=batch_size)
        assert (tmp_path / "x.pbr").read_bytes() == (FIXTURES / "dense_f32.pbr").read_bytes()


def test_npy_output_from_a_one_shot_stream(tmp_path):
    parts = [np.full((n, 3), n, dtype=np.float64) for n in (7, 0, 993, 1)]
    assert convert(iter(parts), tmp_path / "x.npy", batch_size=64) == 1001
    loaded = np.load(tmp_path / "x.npy")
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded, np.concatenate(parts))
    assert np.load(tmp_path / "x.npy", mmap_mode="r").shape == (1001, 3)


def test_empty_source(tmp_path):
    assert convert(iter([]), tmp_path / "x.npy") == 0
    assert np.load(tmp_path / "x.npy").shape == (0, 0)
    assert convert(iter([]), tmp_path / "x.csv") == 0
    assert (tmp_path / "x.csv").read_bytes() == b""


def test_skip_header(tmp_path):
    (tmp_path / "in.csv").write_bytes(b"a,b\n1,2\n")
    convert(tmp_path / "in.csv", tmp_path / "out.npy", skip_header=True)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), [[1, 2]])


@pytest.mark.parametrize("name", ["x.txt", "x.npy.gz", "x", "x.gz"])
def test_unknown_output_format(tmp_path, name):
    with pytest.raises(ValueError, match="cannot tell the output format"):
        convert(np.zeros((2, 2)), tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_output_format():
    assert output_format("a/B.PBR") == ("recordio", False)
    assert output_format("x.protobuf.gz") == ("recordio", True)
    assert output_format(Path("x.csv.gz")) == ("csv", True)


@pytest.mark.parametrize("name", ["out.csv", "out.pbr", "out.npy"])
def test_a_failure_leaves_nothing_half_written(tmp_path, name):
    src = tmp_path / "src"
    src.mkdir()
    (src / "in.csv").write_bytes(b"1,2\n" * 50_000 + b"1,oops\n")
    with pytest.raises(DataFormatError, match="line 50001"):
        convert(src / "in.csv", tmp_path / name, batch_size=1000)
    assert sorted(os.listdir(tmp_path)) == ["src"]
    (tmp_path / name).write_bytes(b"old")
    with pytest.raises(DataFormatError):
        convert(src / "in.csv", tmp_path / name, batch_size=1000)
    assert (tmp_path / name).read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == sorted(["src", name])


def test_folder_source(tmp_path, X):
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "a.npy", X[:500])
    convert(X[500:], tmp_path / "in" / "b.csv")
    convert(tmp_path / "in", tmp_path / "all.npy", batch_size=333)
    np.testing.assert_array_equal(np.load(tmp_path / "all.npy"), X)
    np.testing.assert_array_equal(_read_all(tmp_path / "all.npy"), X)
