"""Progress bars: shown inside a verbose call only, of the rows or bytes a call reads."""

import logging

import numpy as np
import pytest

from kmeans_stream import KMeans, _progress
from kmeans_stream.io import convert, iter_batches


def blobs(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)) + rng.integers(0, 3, size=(n, 1)) * 8.0


def model(**params):
    return KMeans(k=3, backend="numpy", random_state=0, mini_batch_size=500, **params)


def test_no_bar_outside_a_verbose_call(capsys):
    bar = _progress.bar(10, "rows", "fit")
    bar.update(10)
    bar.close()
    model().fit(blobs())
    assert capsys.readouterr().err == ""


def test_an_in_memory_fit_counts_rows_times_epochs(capsys):
    model(verbose=1, epochs=3).fit(blobs())
    err = capsys.readouterr().err
    assert "fit: 100%|" in err and "6.00k/6.00k" in err


def test_a_local_file_is_counted_in_bytes_with_its_total_from_the_start(capsys, tmp_path):
    np.save(tmp_path / "rows.npy", blobs())
    model(verbose=1, epochs=2).fit(tmp_path / "rows.npy")
    err = capsys.readouterr().err
    size = (tmp_path / "rows.npy").stat().st_size  # 64,128 bytes: 62.6 KiB
    assert f"fit:   0%|          | 0.00/{2 * size / 1024:.0f}k" in err
    assert "fit: 100%|" in err and "B/s]" in err


def test_a_stream_is_counted_then_given_its_total_after_the_first_pass(capsys):
    batches = [blobs()[i:i + 500] for i in range(0, 2000, 500)]
    model(verbose=1, epochs=2).fit(batches)
    err = capsys.readouterr().err
    assert "fit: 0.00 rows [" in err  # a stream's rows are not known before they are read
    assert "fit:  50%|" in err and "2.00k/4.00k" in err  # but they are after one epoch
    assert "fit: 100%|" in err and "4.00k/4.00k" in err


def test_a_log_line_is_written_above_the_bar_not_through_it(capsys):
    model(verbose=1, epochs=2).fit(blobs())
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert "[kmeans_stream] epoch 2/2: array of shape (2000, 4) and dtype float64" in lines


def test_partial_fit_ends_its_bar_at_the_rows_it_streamed(capsys):
    model(verbose=1, epochs=3).partial_fit(blobs())
    err = capsys.readouterr().err
    assert "fit: 100%|" in err and "2.00k/2.00k" in err


def test_a_source_failing_at_its_start_shows_its_error_only(capsys, tmp_path):
    with pytest.raises(FileNotFoundError):
        model(verbose=1).fit(tmp_path / "missing.csv")
    assert "fit:" not in capsys.readouterr().err


def test_nested_verbose_calls_add_one_handler_and_a_quiet_one_keeps_the_bars(capsys):
    logger = logging.getLogger("kmeans_stream")
    handlers = list(logger.handlers)
    with _progress.verbose_logging(1):
        with _progress.verbose_logging(2):
            assert len(logger.handlers) == len(handlers) + 1
        model(verbose=0).fit(blobs())
    assert logger.handlers == handlers
    _progress.bar(5, "rows", "after").update(5)
    err = capsys.readouterr().err
    assert "fit: 100%|" in err and "after" not in err


def test_reading_a_local_file_is_a_bar_in_bytes(capsys, tmp_path):
    X = blobs(100_000).astype(np.float32)
    np.save(tmp_path / "rows.npy", X)
    size = (tmp_path / "rows.npy").stat().st_size
    with _progress.verbose_logging(1), _progress.reading(tmp_path / "rows.npy", "read") as (
            data, count):
        rows = sum(len(batch) for batch in count(iter_batches(data, 30_000)))
    assert rows == 100_000
    err = capsys.readouterr().err
    assert "read: 100%|" in err and f"{size / 2**20:.2f}M/{size / 2**20:.2f}M" in err


def test_reading_anything_else_counts_rows(capsys):
    with _progress.verbose_logging(1), _progress.reading(blobs(), "read", rows=2000) as (
            data, count):
        assert sum(len(batch) for batch in count(iter_batches(data, 500))) == 2000
    assert "read: 100%|" in capsys.readouterr().err


def test_convert_shows_a_bar_only_when_verbose(capsys, tmp_path):
    X = blobs()
    assert convert(X, tmp_path / "a.npy") == 2000
    assert capsys.readouterr().err == ""
    assert convert(X, tmp_path / "b.npy", verbose=True) == 2000
    assert "convert: 100%|" in capsys.readouterr().err
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), X)


def test_a_list_of_local_files_is_counted_in_bytes_too(capsys, tmp_path):
    paths = []
    for i, part in enumerate((blobs()[:1000], blobs()[1000:])):
        np.save(tmp_path / f"part{i}.npy", part)
        paths.append(str(tmp_path / f"part{i}.npy"))
    model(verbose=1).fit(paths)
    err = capsys.readouterr().err
    size = sum((tmp_path / f"part{i}.npy").stat().st_size for i in range(2))
    assert f"| 0.00/{size / 1024:.1f}k" in err and "fit: 100%|" in err
