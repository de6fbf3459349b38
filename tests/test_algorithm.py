import numpy as np
import pytest

from kmeans_stream import algorithm
from kmeans_stream.algorithm import Params
from kmeans_stream.backends.base import PLAIN_PROPOSALS, StreamState, plain_max_pending
from kmeans_stream.backends.numpy import NumpyKernels
from kmeans_stream.hyperparameters import validate_all

KERNELS = NumpyKernels()


def hp(**overrides):
    return Params.from_hyperparameters(validate_all({"k": 2, "backend": "numpy", **overrides}))


def test_params_resolve_auto_and_are_frozen():
    params = hp(k=3, extra_center_factor="auto", local_lloyd_num_trials="auto")
    assert params.extra_center_factor is None and params.local_lloyd_num_trials == 10
    assert hp(extra_center_factor="4").extra_center_factor == 4
    with pytest.raises(AttributeError):
        params.k = 4


def test_weighted_reduction_by_hand():
    state = StreamState(
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
    state = StreamState(points, rng.uniform(1, 5, size=60))
    params = hp(k=6, local_lloyd_init_method=method, local_lloyd_num_trials=8)
    best = algorithm.reduce_centers(state, params, KERNELS, np.random.default_rng(2))
    for seed in range(5):
        one = algorithm.reduce_centers(
            state, hp(k=6, local_lloyd_init_method=method, local_lloyd_num_trials=1), KERNELS,
            np.random.default_rng(seed),
        )
        assert best.train_msd <= one.train_msd + 1e-12


def test_no_reduction_when_there_are_k_weighted_centers():
    state = StreamState(np.array([[0.0], [5.0]]), np.array([3.0, 1.0]))
    reduction = algorithm.reduce_centers(state, hp(), KERNELS, np.random.default_rng(0))
    np.testing.assert_array_equal(reduction.centers.ravel(), [0.0, 5.0])
    assert reduction.train_msd == 0.0


def test_fewer_weighted_centers_than_k_is_an_error():
    state = StreamState(np.array([[0.0], [5.0], [9.0]]), np.array([3.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="fewer than k=2"):
        algorithm.reduce_centers(state, hp(), KERNELS, np.random.default_rng(0))


def test_n_initial_centers_auto_and_explicit():
    assert algorithm.n_initial_centers(8, None, 5000, 5000) == 80
    assert algorithm.n_initial_centers(8, None, 50, 30) == 30
    assert algorithm.n_initial_centers(8, 1, 50, 50) == 8
    with pytest.warns(algorithm.InitializationWarning, match="lowered to 50"):
        assert algorithm.n_initial_centers(8, 10, 50, 50) == 50
    with pytest.raises(ValueError, match="only 40 distinct rows, fewer than the K=80"):
        algorithm.n_initial_centers(8, 10, 100, 40)
    with pytest.raises(ValueError, match="fewer than k=8"):
        algorithm.n_initial_centers(8, None, 100, 7)


@pytest.mark.parametrize("method", ["random", "kmeans++"])
def test_initial_centers_are_distinct_rows_of_the_first_batch(method):
    rng = np.random.default_rng(0)
    X = np.repeat(rng.normal(size=(40, 2)), 3, axis=0)  # every row three times
    state = algorithm.initialize(X, None, hp(k=4, init_method=method), KERNELS, rng)
    assert len(state.centers) == 40  # auto: min(k * 10, distinct rows)
    assert len(np.unique(state.centers, axis=0)) == 40
    assert all((X == c).all(axis=1).any() for c in state.centers)
    assert (state.counts == 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_n_distinct_rows_counts_equal_numbers_once(dtype):
    X = np.array([[0.0, 1.0], [-0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, -0.0], [2.5, 1.0]],
                 dtype=dtype)
    assert algorithm.n_distinct_rows(X) == 3
    assert algorithm.n_distinct_rows(X[:, ::-1]) == 3  # a strided view
    rows = np.random.default_rng(0).integers(0, 3, size=(500, 4)).astype(dtype)
    assert algorithm.n_distinct_rows(rows) == len(np.unique(rows, axis=0))


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
    third = [_plain(X, w, rng.random((3, 2 * PLAIN_PROPOSALS)))[2] for _ in range(runs)]
    seen = np.bincount(third, minlength=len(X))
    expected = runs * _plain_kmeanspp_third_center_law(X, w)
    assert ((seen - expected) ** 2 / expected).sum() < 60


def _plain(X, w, uniforms):
    indices = np.empty(len(uniforms), dtype=np.intp)
    KERNELS.kmeanspp_plain(X, w, uniforms, indices)
    return indices


def test_random_init_never_draws_a_row_of_weight_zero():
    X = np.arange(40.0).reshape(20, 2)
    weights = np.where(np.arange(20) % 2 == 0, 0.0, 1.0)
    for seed in range(5):
        for method in ("random", "kmeans++"):
            state = algorithm.initialize(X, weights, hp(k=2, init_method=method), KERNELS,
                                         np.random.default_rng(seed))
            rows = (state.centers[:, 0] // 2).astype(int)
            assert len(rows) == 10 and (rows % 2 == 1).all()


def test_weighted_random_init_follows_the_weights():
    # Two rows, one of weight 9 and one of weight 1, and K = 1: the heavy row comes first 90%
    # of the time (draws without replacement proportional to weight).
    X = np.array([[0.0], [1.0]])
    weights = np.array([9.0, 1.0])
    params = hp(k=1, extra_center_factor=1)
    rng = np.random.default_rng(0)
    heavy = sum(algorithm.initialize(X, weights, params, KERNELS, rng).centers[0, 0] == 0.0
                for _ in range(2000))
    assert 0.88 < heavy / 2000 < 0.92


def test_the_reduction_does_not_advance_the_stream_rng():
    state = StreamState(np.arange(12.0).reshape(6, 2), np.ones(6))
    rng = np.random.default_rng(3)
    before = rng.bit_generator.state
    trainer = algorithm.LocalTrainer(KERNELS)
    first = trainer.reduce(state, hp(k=2), rng)
    assert rng.bit_generator.state == before
    np.testing.assert_array_equal(trainer.reduce(state, hp(k=2), rng).centers, first.centers)
