import numpy as np
import pytest

from kmeans_stream import algorithm
from kmeans_stream.backends.numpy import PLAIN_PROPOSALS, NumpyKernels, plain_max_pending
from kmeans_stream.hyperparameters import validate_all

KERNELS = NumpyKernels()


def hp(**overrides):
    return validate_all({"k": 2, "backend": "numpy", **overrides})


def test_update_rule_is_the_exact_running_mean_by_hand():
    state = algorithm.StreamState(np.array([[0.0], [10.0]]), np.zeros(2))
    # Batch 1: 1, 3 -> center 0; 9 -> center 1. Counts start at 0, so each hit center
    # becomes its batch mean.
    state.update(np.array([[1.0], [3.0], [9.0]]), hp(mini_batch_size=3), KERNELS)
    np.testing.assert_allclose(state.centers.ravel(), [2.0, 9.0])
    np.testing.assert_allclose(state.counts, [2.0, 1.0])
    # Batch 2: 4 -> center 0 (p = 1/3); 11, 13 -> center 1 (p = 2/3).
    state.update(np.array([[4.0], [11.0], [13.0]]), hp(mini_batch_size=3), KERNELS)
    np.testing.assert_allclose(state.centers.ravel(), [8.0 / 3.0, 11.0])
    np.testing.assert_allclose(state.counts, [3.0, 3.0])
    assert state.n_seen == 6


def test_update_rule_with_half_life_decay_by_hand():
    # h = 3 and batches of 3 points: every count is halved before each batch is added.
    params = hp(mini_batch_size=3, half_life_time_size=3)
    state = algorithm.StreamState(np.array([[0.0], [10.0]]), np.zeros(2))
    X = np.array([[1.0], [3.0], [9.0], [4.0], [11.0], [13.0]])
    state.update(X, params, KERNELS)  # two mini-batches in one call
    # After batch 1: centers (2, 9), counts (2, 1). Batch 2: counts -> (1, 0.5);
    # p0 = 1 / 2 -> 0.5 * 2 + 0.5 * 4 = 3; p1 = 2 / 2.5 -> 0.2 * 9 + 0.8 * 12 = 11.4.
    np.testing.assert_allclose(state.centers.ravel(), [3.0, 11.4])
    np.testing.assert_allclose(state.counts, [2.0, 2.5])


def test_a_center_no_point_reaches_keeps_its_place_and_decays():
    state = algorithm.StreamState(np.array([[0.0], [100.0]]), np.array([4.0, 2.0]))
    state.update(np.array([[1.0], [2.0]]), hp(mini_batch_size=2, half_life_time_size=2), KERNELS)
    np.testing.assert_allclose(state.centers.ravel(), [(2.0 * 0.0 + 3.0) / 4.0, 100.0])
    np.testing.assert_allclose(state.counts, [4.0, 1.0])


def test_float32_state_stays_float32():
    state = algorithm.StreamState(np.array([[0.0], [10.0]], np.float32), np.zeros(2))
    state.update(np.array([[1.0], [9.0]], np.float32), hp(mini_batch_size=2), KERNELS)
    assert state.centers.dtype == np.float32 and state.counts.dtype == np.float64


def test_weighted_reduction_by_hand():
    state = algorithm.StreamState(
        np.array([[0.0], [1.0], [10.0], [11.0], [50.0]]), np.array([1.0, 3.0, 2.0, 2.0, 0.0])
    )
    reduction = algorithm.reduce_centers(state, hp(), KERNELS, np.random.default_rng(0))
    order = np.argsort(reduction.centers.ravel())
    np.testing.assert_allclose(reduction.centers.ravel()[order], [0.75, 10.5])
    np.testing.assert_allclose(reduction.weights[order], [4.0, 4.0])
    # Weighted loss 1 * 0.75^2 + 3 * 0.25^2 + 4 * 0.5^2 = 1.75 over a weight of 8; the
    # zero-weight center at 50 takes no part.
    assert reduction.train_msd == pytest.approx(1.75 / 8.0)


@pytest.mark.parametrize("method", ["kmeans++", "random"])
def test_reduction_keeps_the_best_trial(method):
    rng = np.random.default_rng(1)
    points = rng.normal(size=(60, 3)) + np.repeat(rng.normal(scale=8, size=(6, 3)), 10, axis=0)
    state = algorithm.StreamState(points, rng.uniform(1, 5, size=60))
    params = hp(k=6, local_lloyd_init_method=method, local_lloyd_num_trials=8)
    best = algorithm.reduce_centers(state, params, KERNELS, np.random.default_rng(2))
    for seed in range(5):
        one = algorithm.reduce_centers(
            state, {**params, "local_lloyd_num_trials": 1}, KERNELS, np.random.default_rng(seed)
        )
        assert best.train_msd <= one.train_msd + 1e-12


def test_no_reduction_when_there_are_k_weighted_centers():
    state = algorithm.StreamState(np.array([[0.0], [5.0]]), np.array([3.0, 1.0]))
    reduction = algorithm.reduce_centers(state, hp(), KERNELS, np.random.default_rng(0))
    np.testing.assert_array_equal(reduction.centers.ravel(), [0.0, 5.0])
    assert reduction.train_msd == 0.0


def test_fewer_weighted_centers_than_k_is_an_error():
    state = algorithm.StreamState(np.array([[0.0], [5.0], [9.0]]), np.array([3.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="fewer than k=2"):
        algorithm.reduce_centers(state, hp(), KERNELS, np.random.default_rng(0))


def test_n_initial_centers_auto_and_explicit():
    assert algorithm.n_initial_centers(8, "auto", 5000, 5000) == 80
    assert algorithm.n_initial_centers(8, "auto", 50, 30) == 30
    assert algorithm.n_initial_centers(8, 1, 50, 50) == 8
    with pytest.warns(algorithm.InitializationWarning, match="lowered to 50"):
        assert algorithm.n_initial_centers(8, 10, 50, 50) == 50
    with pytest.raises(ValueError, match="only 40 distinct rows, fewer than the K=80"):
        algorithm.n_initial_centers(8, 10, 100, 40)
    with pytest.raises(ValueError, match="fewer than k=8"):
        algorithm.n_initial_centers(8, "auto", 100, 7)


@pytest.mark.parametrize("method", ["random", "kmeans++"])
def test_initial_centers_are_distinct_rows_of_the_first_batch(method):
    rng = np.random.default_rng(0)
    X = np.repeat(rng.normal(size=(40, 2)), 3, axis=0)  # every row three times
    state = algorithm.initialize(X, hp(k=4, init_method=method), KERNELS, rng)
    assert len(state.centers) == 40  # auto: min(k * 10, distinct rows)
    assert len(np.unique(state.centers, axis=0)) == 40
    assert all((X == c).all(axis=1).any() for c in state.centers)
    assert (state.counts == 0).all()


def test_distinct_first_rows_keeps_order_and_first_occurrence():
    X = np.array([[1.0], [2.0], [1.0], [3.0], [2.0]])
    order = np.array([4, 2, 0, 3, 1])
    np.testing.assert_array_equal(algorithm.distinct_first_rows(X, order), [4, 2, 3])


def _plain_kmeanspp_third_center_law(X, w):
    """Exact probability of each row being plain k-means++'s third center, by enumeration."""
    sq = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    law = np.zeros(len(X))
    for a in range(len(X)):
        p_a = w[a] / w.sum()
        for b in range(len(X)):
            p_b = w[b] * sq[a, b] / (w * sq[a]).sum()
            D = np.minimum(sq[a], sq[b])
            if p_b > 0:
                law += p_a * p_b * w * D / (w * D).sum()
    return law


def test_lazy_plain_kmeanspp_draws_exactly_the_kmeanspp_law():
    # 24 rows: two centers stay pending between refreshes, so the third is drawn by rejection
    # from stale distances. Its frequencies over 6000 seeds against the exact law (chi-square,
    # 23 degrees of freedom: mean 23, sd 6.8; the bound is beyond the 99.99th percentile).
    rng = np.random.default_rng(2)
    X = rng.standard_normal((24, 2))
    X[:8] += 5.0
    w = rng.random(24) + 0.5
    assert plain_max_pending(len(X)) >= 2
    runs = 6000
    third = [KERNELS.kmeanspp_plain(X, w, 3, rng.random((3, 2 * PLAIN_PROPOSALS)))[2]
             for _ in range(runs)]
    seen = np.bincount(third, minlength=len(X))
    expected = runs * _plain_kmeanspp_third_center_law(X, w)
    assert ((seen - expected) ** 2 / expected).sum() < 60
