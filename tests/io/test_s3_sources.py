"""s3:// sources against a real S3 API server on loopback (moto), through boto3."""

import gzip
import io
import json
import uuid

import numpy as np
import pytest

from kmeans_stream.exceptions import DataFormatError
from kmeans_stream.io.convert import convert
from kmeans_stream.io.recordio import write_recordio
from kmeans_stream.io.sources import iter_batches

boto3 = pytest.importorskip("boto3")


def _rows(n: int, start: int = 0, d: int = 3) -> np.ndarray:
    return np.arange(start * d, (start + n) * d, dtype=np.float32).reshape(n, d)


def _csv(X) -> bytes:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in X).encode()


def _pbr(X) -> bytes:
    out = io.BytesIO()
    write_recordio(out, X)
    return out.getvalue()


def _npy(X) -> bytes:
    out = io.BytesIO()
    np.save(out, X)
    return out.getvalue()


@pytest.fixture
def bucket(s3_server):
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    name = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)

    def put(key, body):
        client.put_object(Bucket=name, Key=key, Body=body)

    return name, put


def _read(uri, batch_size=4, **kw):
    batches = list(iter_batches(uri, batch_size, **kw))
    assert all(len(b) == batch_size for b in batches[:-1])
    return np.concatenate(batches)


@pytest.fixture
def channel(bucket):
    """train/ holding CSV, RecordIO, gzip and .npy objects, a folder key and the SDK manifest."""
    name, put = bucket
    put("train/", b"")
    put("train/part-0.csv", _csv(_rows(5, 0)))
    put("train/part-1.pbr", _pbr(_rows(6, 5)))
    put("train/sub/", b"")
    put("train/sub/part-2.csv.gz", gzip.compress(_csv(_rows(3, 11))))
    put("train/sub/part-3", _npy(_rows(4, 14)))
    put("train/.amazon.manifest", json.dumps([{"prefix": f"s3://{name}/train/"}, "part-1.pbr"]))
    put("trainer/part-9.csv", _csv(_rows(2, 18)))
    return name, put


def test_prefix_is_read_in_key_order_across_formats(channel):
    name, _ = channel
    for batch_size in (1, 4, 7):
        np.testing.assert_array_equal(_read(f"s3://{name}/train/", batch_size), _rows(18))


def test_a_prefix_without_slash_matches_keys_as_sagemaker_does(channel):
    name, _ = channel
    np.testing.assert_array_equal(_read(f"s3://{name}/train"), _rows(20))


def test_an_exact_key_is_one_object(channel):
    name, put = channel
    put("train/part-0.csv.bak", _csv(_rows(1, 99)))
    np.testing.assert_array_equal(_read(f"s3://{name}/train/part-0.csv"), _rows(5))
    np.testing.assert_array_equal(_read(f"s3://{name}/train/part-1.pbr"), _rows(6, 5))


def test_manifest_object_is_followed(channel):
    name, put = channel
    np.testing.assert_array_equal(_read(f"s3://{name}/train/.amazon.manifest"), _rows(6, 5))
    put(
        "lists/all.manifest",
        json.dumps(
            [
                {"prefix": f"s3://{name}/train"},
                "/sub/part-3",
                "/part-0.csv",
                f"s3://{name}/trainer/part-9.csv",
            ]
        ),
    )
    expected = np.concatenate([_rows(4, 14), _rows(5), _rows(2, 18)])
    np.testing.assert_array_equal(_read(f"s3://{name}/lists/all.manifest"), expected)


def test_local_manifest_pointing_at_s3(channel, tmp_path):
    name, _ = channel
    manifest = tmp_path / "train.manifest"
    manifest.write_text(json.dumps([{"prefix": f"s3://{name}/train/"}, "part-0.csv", "sub/part-3"]))
    np.testing.assert_array_equal(_read(manifest), np.concatenate([_rows(5), _rows(4, 14)]))


def test_skip_header_in_each_object(bucket):
    name, put = bucket
    put("h/a.csv", b"x,y\n1,2\n")
    put("h/b.csv", b"x,y\n3,4\n5,6\n")
    np.testing.assert_array_equal(
        _read(f"s3://{name}/h/", skip_header=True), [[1, 2], [3, 4], [5, 6]]
    )


def test_csv_error_names_the_object_and_line(bucket):
    name, put = bucket
    put("bad/a.csv", _csv(_rows(3)))
    put("bad/b.csv", b"1,2,3\n" * 300_000 + b"1,2\n")
    with pytest.raises(
        DataFormatError, match=rf"s3://{name}/bad/b\.csv, line 300001: Expected 3 columns, got 2"
    ):
        _read(f"s3://{name}/bad/")


def test_width_mismatch_between_objects(bucket):
    name, put = bucket
    put("w/a.csv", b"1,2,3\n")
    put("w/b.pbr", _pbr(np.ones((2, 4), dtype=np.float32)))
    with pytest.raises(DataFormatError, match=rf"s3://{name}/w/b\.pbr, record 1: 4 columns"):
        _read(f"s3://{name}/w/")


def test_missing_prefix(bucket):
    name, _ = bucket
    with pytest.raises(FileNotFoundError, match="no S3 objects under"):
        _read(f"s3://{name}/nothing/")


def test_convert_from_s3(channel, tmp_path):
    name, _ = channel
    assert convert(f"s3://{name}/train/", tmp_path / "train.npy", batch_size=5) == 18
    np.testing.assert_array_equal(np.load(tmp_path / "train.npy"), _rows(18))
