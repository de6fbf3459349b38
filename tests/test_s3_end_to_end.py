"""A fit read from an s3:// prefix and a model loaded from s3://, against moto's real S3 server."""

import io

import numpy as np
import pytest

import kmeans_stream
from kmeans_stream import KMeans
from kmeans_stream.io import write_recordio

boto3 = pytest.importorskip("boto3")


@pytest.fixture
def bucket(s3_server):
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket="e2e")
    return client


def blobs():
    rng = np.random.default_rng(3)
    return np.concatenate(
        [rng.normal(loc, 0.2, size=(300, 4)) for loc in (0.0, 5.0, 10.0)]
    ).astype(np.float32)


def test_fit_from_a_prefix_of_recordio_shards_equals_the_array(bucket):
    X = blobs()
    for i, start in enumerate(range(0, len(X), 250)):  # the SDK's record_set shards
        buffer = io.BytesIO()
        write_recordio(buffer, X[start:start + 250])
        bucket.put_object(Bucket="e2e", Key=f"train/matrix_{i}.pbr", Body=buffer.getvalue())
    # SageMaker's algorithm on both sides: the same rows in the same batches.
    params = {"k": 3, "backend": "numpy", "random_state": 0, "mini_batch_size": 200, "epochs": 2,
              "shuffle": False, "reassignment_ratio": 0}
    from_s3 = KMeans(**params).fit("s3://e2e/train/")
    in_memory = KMeans(**params).fit(X)
    np.testing.assert_array_equal(from_s3.cluster_centers_, in_memory.cluster_centers_)
    assert from_s3.n_samples_seen_ == 2 * len(X)


def test_load_a_model_from_s3(bucket, tmp_path):
    model = KMeans(k=3, backend="numpy", random_state=0).fit(blobs())
    path = model.save(tmp_path / "model.tar.gz")
    bucket.put_object(Bucket="e2e", Key="job/output/model.tar.gz", Body=path.read_bytes())
    loaded = kmeans_stream.load("s3://e2e/job/output/model.tar.gz")
    np.testing.assert_array_equal(loaded.cluster_centers_, model.cluster_centers_)
