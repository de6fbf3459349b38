"""backend='sagemaker' on a real AWS account: a training job on SageMaker's own K-Means image
and an endpoint. Marked ``aws`` (deselected by default; ``pytest -m aws`` runs them) and skipped
without credentials or without ``KMEANS_STREAM_TEST_ROLE`` (a SageMaker execution role);
``KMEANS_STREAM_TEST_BUCKET`` names the bucket (default: SageMaker's default bucket). They cost
a few cents: two ml.m5.large/ml.c5.xlarge minutes and an endpoint that is deleted at the end."""

import os

import numpy as np
import pytest

from kmeans_stream import KMeans

pytestmark = pytest.mark.aws
boto3 = pytest.importorskip("boto3")
ROLE = os.environ.get("KMEANS_STREAM_TEST_ROLE")


@pytest.fixture(scope="module")
def options():
    if boto3.Session().get_credentials() is None:
        pytest.skip("no AWS credentials")
    if not ROLE:
        pytest.skip("KMEANS_STREAM_TEST_ROLE is not set")
    bucket = os.environ.get("KMEANS_STREAM_TEST_BUCKET")
    return {"bucket": bucket} if bucket else {}


def blobs():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(c, 0.2, size=(500, 5)) for c in (0, 3, 6)]).astype(
        np.float32)


def test_a_real_job_finds_the_clusters_and_a_real_endpoint_serves_them(options):
    X = blobs()
    model = KMeans(k=3, backend="sagemaker", role=ROLE, instance_type="ml.c5.xlarge",
                   sagemaker_options=options).fit(X, test=X)
    local = KMeans(k=3, random_state=0).fit(X)
    assert model.metrics_["test:msd"] <= 1.05 * local.evaluate(X)["test:msd"]
    predictor = model.deploy(instance_type="ml.m5.large")
    try:
        closest, distance = predictor.predict(X[:10])
        np.testing.assert_array_equal(closest, model.predict(X[:10]))
        np.testing.assert_allclose(distance, model.predict_with_distance(X[:10])[1], rtol=1e-4)
    finally:
        predictor.delete_endpoint()
