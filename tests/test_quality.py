"""Quality against the true labels and against scikit-learn, with fixed seeds."""

import numpy as np
import pytest

from kmeans_stream import KMeans
from kmeans_stream.demo import EXERCISE, make_blobs
from kmeans_stream.metrics import sum_squared_distances

sklearn = pytest.importorskip("sklearn")
from sklearn.cluster import KMeans as SKLearnKMeans  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.datasets import make_blobs as sk_make_blobs  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402


def test_the_exercise_recovers_the_blobs():
    X, truth = make_blobs(5000, 10, 5, 1.5, 42)
    for seed in range(3):
        km = KMeans(**EXERCISE, backend="numpy", random_state=seed).fit(X)
        assert adjusted_rand_score(truth, km.labels_) >= 0.99


def _reference_sse(X, k):
    reference = SKLearnKMeans(k, n_init=10, random_state=0).fit(X)
    return sum_squared_distances(X, reference.cluster_centers_)


def _ratios(X, k, epochs, seeds, best):
    return [
        sum_squared_distances(
            X, KMeans(k=k, epochs=epochs, backend="numpy", random_state=s).fit(X).cluster_centers_
        ) / best
        for s in seeds
    ]


@pytest.fixture(scope="module")
def digits():
    X = load_digits().data
    return X, _reference_sse(X, 10)


@pytest.fixture(scope="module")
def large_blobs():
    X, _ = sk_make_blobs(200_000, 32, centers=64, cluster_std=2.0, random_state=0)
    X = X.astype(np.float32)
    return X, _reference_sse(X, 64)


# SageMaker's defaults (1 epoch) within 4% of scikit-learn's best of 10; with 5 epochs, 2%.
@pytest.mark.parametrize(("epochs", "bound"), [(1, 1.04), (5, 1.02)])
def test_digits_against_scikit_learn(digits, epochs, bound):
    X, best = digits
    assert max(_ratios(X, 10, epochs, range(3), best)) <= bound


@pytest.mark.parametrize(("epochs", "bound"), [(1, 1.04), (5, 1.02)])
def test_large_blobs_against_scikit_learn(large_blobs, epochs, bound):
    X, best = large_blobs
    assert max(_ratios(X, 64, epochs, range(2), best)) <= bound
