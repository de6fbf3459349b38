"""The streaming CSV reader: values, headers, blank lines, and errors pinned to their line."""

import gzip
import io

import numpy as np
import pytest

from kmeans_stream.exceptions import DataFormatError
from kmeans_stream.io import csv as kcsv
from kmeans_stream.io.sources import iter_batches


def _read(path, batch_size=1000, **kw):
    batches = list(iter_batches(path, batch_size, **kw))
    return np.concatenate(batches) if batches else np.empty((0, 0))


def _write(path, data: bytes, compressed: bool = False):
    path.write_bytes(gzip.compress(data) if compressed else data)
    return path


@pytest.fixture(params=[False, True], ids=["plain", "gz"])
def compressed(request):
    return request.param


def test_values_are_float32_rows(tmp_path, compressed):
    path = _write(tmp_path / "x.csv", b"1,2.5,-3\n4e2,nan,inf\n", compressed)
    X = _read(path)
    assert X.dtype == np.float32 and X.flags.c_contiguous
    np.testing.assert_array_equal(X, [[1, 2.5, -3], [400, np.nan, np.inf]])


def test_float_text_reads_back_exactly(tmp_path):
    X = np.random.default_rng(0).normal(size=(500, 7)).astype(np.float32)
    lines = "\n".join(",".join(repr(float(v)) for v in row) for row in X)
    path = _write(tmp_path / "x.csv", lines.encode())
    np.testing.assert_array_equal(_read(path), X)


def test_no_header_by_default_so_a_header_is_an_error(tmp_path):
    path = _write(tmp_path / "x.csv", b"a,b\n1,2\n")
    with pytest.raises(DataFormatError, match=r"x\.csv, line 1: column 1: 'a' is not a number"):
        _read(path)


def test_skip_header_drops_exactly_one_line(tmp_path, compressed):
    path = _write(tmp_path / "x.csv", b"a,b\n1,2\n3,4", compressed)
    np.testing.assert_array_equal(_read(path, skip_header=True), [[1, 2], [3, 4]])


def test_header_only_file_gives_no_rows(tmp_path):
    path = _write(tmp_path / "x.csv", b"a,b")
    assert list(iter_batches(path, 10, skip_header=True)) == []


def test_blank_lines_and_crlf(tmp_path):
    path = _write(tmp_path / "x.csv", b"\r\n1,2\r\n\r\n3,4\r\n\n")
    np.testing.assert_array_equal(_read(path), [[1, 2], [3, 4]])


def test_empty_file_gives_no_rows(tmp_path):
    assert list(iter_batches(_write(tmp_path / "x.csv", b""), 10)) == []


def _big_csv(n_lines: int, bad_line: int, bad: bytes) -> bytes:
    good = b"0.25,1.5,-2.75,3\n"
    return good * (bad_line - 1) + bad + b"\n" + good * (n_lines - bad_line)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"1,2,3", "Expected 4 columns, got 3"),
        (b"1,2,3,4,5", "Expected 4 columns, got 5"),
        (b"1,2,x7,4", "column 3: 'x7' is not a number"),
        (b"1,,3,4", "column 2: '' is not a number"),
    ],
)
def test_error_names_the_line_far_beyond_the_first_block(tmp_path, compressed, bad, message):
    n_lines, bad_line = 600_000, 543_210  # about 10 MB: the bad line is in the third block
    assert bad_line * 17 > 2 * kcsv.READ_CHUNK
    path = _write(tmp_path / "big.csv", _big_csv(n_lines, bad_line, bad), compressed)
    with pytest.raises(DataFormatError) as info:
        for _ in iter_batches(path, 5000):
            pass
    assert str(info.value).startswith(f"{path}, line {bad_line}: ")
    assert message in str(info.value)


def test_line_numbers_count_header_and_blank_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(kcsv, "READ_CHUNK", 64)
    rows = [b"h1,h2"] + [b"1,2"] * 30 + [b""] * 3 + [b"3,4"] * 30 + [b"5;6"] + [b"7,8"] * 5
    path = _write(tmp_path / "x.csv", b"\n".join(rows) + b"\n")
    with pytest.raises(DataFormatError, match=r"x\.csv, line 65: Expected 2 columns, got 1"):
        _read(path, skip_header=True)


def test_first_of_two_bad_lines_in_a_block_is_reported(tmp_path):
    path = _write(tmp_path / "x.csv", b"1,2\n" * 100 + b"1,a\n" + b"1,2\n" * 50 + b"1\n")
    with pytest.raises(DataFormatError, match=r"line 101: column 2: 'a' is not a number"):
        _read(path)


def test_long_bad_row_is_cut_in_the_message(tmp_path):
    path = _write(tmp_path / "x.csv", b"1,2\n" + b",".join([b"1"] * 5000) + b"\n")
    with pytest.raises(DataFormatError) as info:
        _read(path)
    assert "line 2: Expected 2 columns, got 5000" in str(info.value)
    assert len(str(info.value)) < 300


def test_blocks_cut_on_line_ends_give_the_same_rows(monkeypatch):
    data = b"".join(b"%d,%d.5\n" % (i, i) for i in range(1000))
    monkeypatch.setattr(kcsv, "READ_CHUNK", 37)
    chunks = list(kcsv.iter_csv_chunks(io.BufferedReader(io.BytesIO(data)), "s"))
    X = np.concatenate([c for c, _ in chunks])
    assert len(chunks) > 100
    np.testing.assert_array_equal(X[:, 0], np.arange(1000))
    first_lines = [int(where.rsplit(" ", 1)[1]) for _, where in chunks]
    assert first_lines == list(np.cumsum([0] + [len(c) for c, _ in chunks[:-1]]) + 1)


def test_column_count_must_match_across_files(tmp_path):
    (tmp_path / "d").mkdir()
    _write(tmp_path / "d" / "a.csv", b"1,2,3\n4,5,6\n")
    _write(tmp_path / "d" / "b.csv", b"\n7,8\n")
    with pytest.raises(DataFormatError) as info:
        _read(tmp_path / "d")
    text = str(info.value)
    assert text.startswith(f"{tmp_path / 'd' / 'b.csv'}, line 2: 2 columns")
    assert "had 3" in text and "a.csv, line 1" in text
