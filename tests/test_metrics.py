import numpy as np
import pytest

from kmeans_stream.metrics import silhouette_score, sum_squared_distances

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", [0, 1])
def test_silhouette_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2500, 5))
    labels = rng.integers(0, 6, size=len(X))
    labels[0] = 9  # a cluster of one scores 0
    expected = sklearn_metrics.silhouette_score(X, labels)
    assert silhouette_score(X, labels) == pytest.approx(expected, rel=1e-9)


def test_silhouette_needs_two_clusters():
    with pytest.raises(ValueError, match="Number of labels is 1"):
        silhouette_score(np.ones((5, 2)), np.zeros(5))


def test_sum_squared_distances_by_hand():
    X = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    centers = np.array([[0.0, 0.0], [10.0, 1.0]])
    assert sum_squared_distances(X, centers) == pytest.approx(0.0 + 25.0 + 1.0)
