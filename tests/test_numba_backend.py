"""The numba kernels against the numpy reference, kernel by kernel and end to end."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from kmeans_stream import KMeans  # noqa: E402
from kmeans_stream.backends import _numba_assign, get_kernels, resolve_backend  # noqa: E402
from kmeans_stream.backends.numba import NumbaKernels  # noqa: E402
from kmeans_stream.backends.numpy import PLAIN_PROPOSALS, NumpyKernels  # noqa: E402

NB, NP = NumbaKernels(), NumpyKernels()

# (n_samples, n_features, n_centers): d = 1, K = 1, fewer rows than workers x tile, the
# blocked path at each width (d equal to it and padded up to it; K * width at the limit and
# below it; serial and parallel) and the matrix-product path (K * width just above the limit,
# d wider than the widest block, large K), odd sizes.
SHAPES = [(1, 1, 1), (7, 1, 3), (50, 3, 1), (300, 5, 7), (1500, 8, 16), (1500, 9, 16),
          (40001, 7, 18), (40000, 8, 17), (1031, 16, 16), (20000, 16, 8), (3000, 20, 5),
          (2000, 32, 128), (700, 17, 129), (2500, 33, 70), (777, 64, 256)]


def test_shapes_cover_both_assignment_paths():
    widths = [_numba_assign.blocked_width(k, d) for _, d, k in SHAPES]
    limit = _numba_assign.BLOCKED_MAX_WORK
    assert set(_numba_assign.BLOCKED_WIDTHS) <= set(widths)
    assert any(w and w == d for (_, d, _), w in zip(SHAPES, widths, strict=True))
    assert any(w and k * w == limit for (_, _, k), w in zip(SHAPES, widths, strict=True))
    assert any(not w and d <= 32 and k * d < 2 * limit
               for (_, d, k), w in zip(SHAPES, widths, strict=True))
    assert any(not w and d > max(_numba_assign.BLOCKED_WIDTHS)
               for (_, d, _), w in zip(SHAPES, widths, strict=True))
    assert any(n * k * d >= _numba_assign.PARALLEL_MIN_WORK and w
               for (n, d, k), w in zip(SHAPES, widths, strict=True))


DTYPES = [np.float32, np.float64]


def _data(n, d, k, dtype, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    centers = X[rng.choice(n, size=k, replace=n < k)].copy()
    return rng, X, centers


def _clear_rows(X, centers, rtol):
    """Rows whose two nearest centers differ by more than rounding could swap."""
    sq = ((X[:, None, :].astype(np.float64) - centers[None].astype(np.float64)) ** 2).sum(-1)
    if sq.shape[1] == 1:
        return np.ones(len(X), dtype=bool)
    two = np.sort(sq, axis=1)[:, :2]
    return two[:, 1] - two[:, 0] > rtol * (1.0 + two[:, 1] + (X.astype(np.float64) ** 2).sum(1))


def _rtol(dtype):
    return 1e-4 if dtype == np.float32 else 1e-10


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_assign_labels_matches_numpy(shape, dtype):
    _, X, centers = _data(*shape, dtype, seed=sum(shape))
    labels, sq_dist = NB.assign_labels(X, centers)
    ref_labels, ref_sq = NP.assign_labels(X, centers)
    assert labels.dtype == np.intp and sq_dist.dtype == np.float64
    clear = _clear_rows(X, centers, _rtol(dtype))
    np.testing.assert_array_equal(labels[clear], ref_labels[clear])
    np.testing.assert_allclose(sq_dist, ref_sq, rtol=_rtol(dtype), atol=1e-5)


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_nearest_matches_numpy(shape, dtype, label_dtype):
    _, X, centers = _data(*shape, dtype, seed=sum(shape) + 2)
    labels = np.full(shape[0], -1, dtype=label_dtype)
    assert NB.nearest(X, centers, labels) is True
    ref = np.empty(shape[0], dtype=label_dtype)
    assert NP.nearest(X, centers, ref) is True
    clear = _clear_rows(X, centers, _rtol(dtype))
    np.testing.assert_array_equal(labels[clear], ref[clear])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("shape", [(300, 5, 7), (40000, 8, 17), (2500, 33, 70)])
def test_nearest_reports_rows_that_are_not_finite(shape, bad):
    _, X, centers = _data(*shape, np.float32, seed=3)
    X[shape[0] // 2, shape[1] - 1] = bad
    labels = np.empty(shape[0], dtype=np.int32)
    with np.errstate(invalid="ignore", over="ignore"):
        assert NB.nearest(X, centers, labels) is False
        assert NP.nearest(X, centers, labels.copy()) is False


def test_nearest_rejects_a_wrong_labels_array():
    X = np.zeros((10, 3), dtype=np.float32)
    for labels in (np.empty(9, np.int32), np.empty(10, np.float32), np.empty(20, np.int32)[::2]):
        with pytest.raises(ValueError, match="labels"):
            NB.nearest(X, X[:2], labels)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_transform_matches_numpy(shape, dtype):
    _, X, centers = _data(*shape, dtype, seed=sum(shape) + 1)
    out = NB.transform(X, centers)
    assert out.dtype == dtype and out.shape == (shape[0], shape[2])
    np.testing.assert_allclose(out, NP.transform(X, centers), rtol=_rtol(dtype), atol=1e-5)


@pytest.mark.parametrize("half_life", [0, 700])
@pytest.mark.parametrize("batch_size", [1, 64, 5000])
@pytest.mark.parametrize("shape", [(1031, 16, 16), (777, 64, 256), (300, 1, 3)])
def test_stream_batches_matches_numpy(shape, batch_size, half_life):
    _, X, start = _data(*shape, np.float64, seed=batch_size + half_life)
    centers, counts = start.copy(), np.zeros(len(start))
    ref_centers, ref_counts = start.copy(), np.zeros(len(start))
    NB.stream_batches(X, batch_size, centers, counts, half_life)
    NP.stream_batches(X, batch_size, ref_centers, ref_counts, half_life)
    np.testing.assert_allclose(centers, ref_centers, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(counts, ref_counts, rtol=1e-12)


def test_stream_batches_float32_keeps_dtype_and_agrees():
    # One start per blob, so that no row sits near a tie that float32 rounding could flip.
    X, truth = _blobs(6000, 8, 12, np.float32)
    start = X[[np.flatnonzero(truth == j)[0] for j in range(12)]]
    centers, counts = start.copy(), np.zeros(12)
    ref_centers, ref_counts = start.copy(), np.zeros(12)
    NB.stream_batches(X, 1000, centers, counts, 0)
    NP.stream_batches(X, 1000, ref_centers, ref_counts, 0)
    assert centers.dtype == np.float32
    np.testing.assert_allclose(centers, ref_centers, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(counts, ref_counts)


def test_no_decay_is_the_plain_running_mean():
    _, X, _ = _data(1003, 5, 1, np.float64, seed=3)
    centers, counts = X[:1].copy(), np.zeros(1)
    NB.stream_batches(X, 100, centers, counts, 0)
    np.testing.assert_allclose(centers[0], X.mean(axis=0), rtol=1e-10)
    assert counts[0] == len(X)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_candidates", [1, 4])
@pytest.mark.parametrize("shape", [(1, 1, 1), (300, 5, 7), (2500, 33, 70), (3000, 2, 40)])
def test_kmeanspp_matches_numpy(shape, n_candidates, dtype):
    rng, X, _ = _data(*shape, dtype, seed=shape[0] + n_candidates)
    weights = rng.random(shape[0]) + 0.1
    uniforms = rng.random((shape[2], n_candidates))
    picked = NB.kmeanspp(X, weights, shape[2], uniforms)
    np.testing.assert_array_equal(picked, NP.kmeanspp(X, weights, shape[2], uniforms))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_candidates", [1, 3])
def test_kmeanspp_with_cluster_skips_matches_numpy(n_candidates, dtype):
    # Well separated blobs, more rows than the parallel threshold: whole centers' rows are
    # skipped by the cluster-level bound, single rows by the row-level one.
    X, _ = _blobs(60_000, 8, 30, dtype, seed=n_candidates)
    rng = np.random.default_rng(9)
    weights = rng.random(len(X)) + 0.1
    uniforms = rng.random((40, n_candidates))
    picked = NB.kmeanspp(X, weights, 40, uniforms)
    np.testing.assert_array_equal(picked, NP.kmeanspp(X, weights, 40, uniforms))


def test_kmeanspp_too_few_distinct_points():
    X = np.repeat(np.arange(3.0)[:, None], 4, axis=0)
    with pytest.raises(ValueError, match="only 3 distinct weighted points"):
        NB.kmeanspp(X, np.ones(len(X)), 4, np.full((4, 2), 0.5))


# Plain lazy k-means++: one center, few rows (a refresh per center), pending groups refreshed by
# the acceptance rule and by the cap (K near n), the blocked and the matrix-product refresh,
# parallel refreshes, one feature.
PLAIN_SHAPES = [(1, 1, 1), (50, 3, 5), (300, 5, 7), (400, 6, 380), (2500, 33, 70),
                (3000, 2, 40), (5000, 16, 400), (60_000, 1, 30)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", PLAIN_SHAPES)
def test_kmeanspp_plain_matches_numpy(shape, dtype):
    rng, X, _ = _data(*shape, dtype, seed=shape[0] + 7)
    weights = rng.random(shape[0]) + 0.1
    uniforms = rng.random((shape[2], 2 * PLAIN_PROPOSALS))
    picked = NB.kmeanspp_plain(X, weights, shape[2], uniforms)
    assert len(np.unique(picked)) == shape[2]
    np.testing.assert_array_equal(picked, NP.kmeanspp_plain(X, weights, shape[2], uniforms))


@pytest.mark.parametrize("dtype", DTYPES)
def test_kmeanspp_plain_on_separated_blobs_matches_numpy(dtype):
    X, _ = _blobs(60_000, 8, 30, dtype, seed=4)
    rng = np.random.default_rng(10)
    uniforms = rng.random((60, 2 * PLAIN_PROPOSALS))
    weights = rng.random(len(X)) + 0.1
    picked = NB.kmeanspp_plain(X, weights, 60, uniforms)
    np.testing.assert_array_equal(picked, NP.kmeanspp_plain(X, weights, 60, uniforms))


def test_seeding_rejects_uniforms_of_the_wrong_shape():
    X = np.random.default_rng(0).standard_normal((50, 3))
    with pytest.raises(ValueError, match="uniforms must have shape"):
        NB.kmeanspp_plain(X, np.ones(50), 5, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="uniforms must have shape"):
        NB.kmeanspp(X, np.ones(50), 5, np.zeros((4, 3)))


@pytest.mark.parametrize("kernels", [NB, NP], ids=["numba", "numpy"])
def test_kmeanspp_plain_too_few_distinct_points(kernels):
    X = np.repeat(np.arange(3.0)[:, None], 40, axis=0)
    uniforms = np.random.default_rng(0).random((4, 2 * PLAIN_PROPOSALS))
    with pytest.raises(ValueError, match="only 3 distinct weighted points"):
        kernels.kmeanspp_plain(X, np.ones(len(X)), 4, uniforms)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (300, 5, 7), (2500, 33, 70), (777, 64, 256)])
def test_lloyd_matches_numpy(shape, dtype):
    rng, X, start = _data(*shape, dtype, seed=shape[1])
    weights = rng.random(shape[0]) + 0.5
    centers, loss, n_iter = NB.lloyd(X, weights, start, 30, 1e-4)
    ref_centers, ref_loss, ref_n_iter = NP.lloyd(X, weights, start, 30, 1e-4)
    if dtype == np.float64:
        assert n_iter == ref_n_iter
        np.testing.assert_allclose(centers, ref_centers, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-3 if dtype == np.float32 else 1e-9)


def test_lloyd_loss_never_rises():
    rng, X, start = _data(4000, 6, 25, np.float32, seed=11)
    weights = rng.random(len(X))
    losses = [NB.lloyd(X, weights, start, it, 0.0)[1] for it in range(8)]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(losses, losses[1:], strict=False))


def test_lloyd_does_not_modify_its_start():
    _, X, start = _data(200, 4, 5, np.float64, seed=2)
    before = start.copy()
    NB.lloyd(X, np.ones(len(X)), start, 10, 0.0)
    np.testing.assert_array_equal(start, before)


def test_non_contiguous_inputs_are_handled_or_rejected():
    _, X, centers = _data(500, 8, 6, np.float64, seed=5)
    wide = np.asfortranarray(np.hstack([X, X]))[:, ::2]
    np.testing.assert_array_equal(NB.assign_labels(wide, centers)[0],
                                  NB.assign_labels(np.ascontiguousarray(wide), centers)[0])
    np.testing.assert_allclose(NB.transform(X[::2], centers), NP.transform(X[::2], centers),
                               atol=1e-6)
    strided = np.zeros((6, 16))[:, ::2]
    strided[:] = centers
    with pytest.raises(ValueError, match="C-contiguous"):
        NB.stream_batches(X, 100, strided, np.zeros(6), 0)
    with pytest.raises(ValueError, match="float64"):
        NB.stream_batches(X, 100, centers.copy(), np.zeros(6, dtype=np.float32), 0)
    with pytest.raises(ValueError, match="float32"):
        NB.stream_batches(X.astype(np.float32), 100, centers.copy(), np.zeros(6), 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        NB.assign_labels(X.astype(np.int64), centers)


def _blobs(n, d, k, dtype, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.uniform(-100, 100, size=(k, d))
    truth = rng.integers(k, size=n)
    return (means[truth] + rng.standard_normal((n, d))).astype(dtype), truth


def test_predict_from_four_python_threads_at_once():
    from concurrent.futures import ThreadPoolExecutor

    X, _ = _blobs(200_000, 16, 16, np.float32, seed=6)
    model = KMeans(k=16, backend="numba", random_state=0).fit(X[:20_000])
    expected = model.predict(X)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: model.predict(X), range(8)))
    for labels in results:
        np.testing.assert_array_equal(labels, expected)


def test_auto_is_numba():
    assert resolve_backend("auto") == "numba"
    assert isinstance(get_kernels("auto"), NumbaKernels)


@pytest.mark.parametrize("dtype", DTYPES)
def test_estimator_numba_equals_numpy(dtype):
    X, _ = _blobs(12_000, 10, 5, dtype, seed=4)
    params = dict(k=5, mini_batch_size=1000, random_state=7, init_method="kmeans++")
    fast = KMeans(backend="numba", **params).fit(X)
    ref = KMeans(backend="numpy", **params).fit(X)
    np.testing.assert_array_equal(fast.labels_, ref.labels_)
    assert fast.cluster_centers_.dtype == dtype
    if dtype == np.float64:
        assert fast.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)
        np.testing.assert_allclose(fast.cluster_centers_, ref.cluster_centers_, rtol=1e-6)
    np.testing.assert_array_equal(fast.predict(X[:100]), ref.predict(X[:100]))
    np.testing.assert_allclose(fast.transform(X[:100]), ref.transform(X[:100]), rtol=1e-4)


def _blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    return sorted((i["filepath"], i["num_threads"]) for i in threadpoolctl.threadpool_info()
                  if i["user_api"] == "blas")


def test_blas_is_single_threaded_inside_and_restored_after_a_matrix_product_kernel():
    from kmeans_stream.backends.numba import _single_threaded_blas

    _, X, centers = _data(777, 64, 256, np.float32, seed=5)
    NB.assign_labels(X, centers)  # loads the BLAS the kernels call
    before = _blas_threads()
    with _single_threaded_blas():
        assert {n for _, n in _blas_threads()} == {1}
        with _single_threaded_blas():  # a second caller at once shares the limit
            pass
        assert {n for _, n in _blas_threads()} == {1}
    NB.lloyd(X, np.ones(len(X)), centers, 2, 0.0)
    assert _blas_threads() == before


def test_more_centers_than_float32_labels_can_hold_is_refused():
    from kmeans_stream.backends.numba import _Workspace

    with pytest.raises(ValueError, match="at most 16777216 centers"):
        _Workspace(np.float32, 2**24 + 1, 1, 0, accumulate=False, distances=False)
