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


def test_bottom_k_gives_the_same_sample_from_an_array_and_from_its_batches():
    from kmeans_stream._sampling import BottomK

    X = np.random.default_rng(0).normal(size=(1000, 3))
    whole, parts = BottomK(50, np.random.default_rng(7)), BottomK(50, np.random.default_rng(7))
    whole.add(np.arange(1000), X)
    for start in range(0, 1000, 64):
        parts.add(np.arange(start, min(start + 64, 1000)), X[start:start + 64])
    np.testing.assert_array_equal(whole.columns[0], parts.columns[0])
    assert len(whole.columns[0]) == 50 and np.all(np.diff(whole.columns[0]) > 0)
    np.testing.assert_array_equal(parts.columns[1], X[parts.columns[0]])


def test_silhouette_or_nan_where_it_is_undefined():
    from kmeans_stream.metrics import silhouette_or_nan

    X = np.arange(8.0)[:, None]
    assert np.isnan(silhouette_or_nan(X, np.zeros(8, int)))
    assert np.isnan(silhouette_or_nan(X, np.arange(8)))
    assert silhouette_or_nan(X, np.arange(8) // 4) == silhouette_score(X, np.arange(8) // 4)
