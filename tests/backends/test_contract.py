"""Every installed compute backend against the contract of `kmeans_stream.backends.base`:
the spec's hand-computed running-mean cases exactly, and the numpy reference on fresh random
inputs, kernel by kernel."""

from __future__ import annotations

import numpy as np
import pytest

from kmeans_stream import backends
from kmeans_stream.backends.base import PLAIN_PROPOSALS, Kernels
from kmeans_stream.backends.numpy import NumpyKernels


def _installed(reference=True):
    found = []
    for name, backend in backends.REGISTRY.items():
        if backend.kind != "compute" or (name == "numpy" and not reference):
            continue
        marks = [pytest.mark.gpu] if "cupy" in backend.requires else []
        found.append(pytest.param(name, marks=marks, id=name))
    return found


def _load(name):
    try:
        return backends.load(name)
    except (ImportError, RuntimeError) as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=_installed())
def kernels(request) -> Kernels:
    """Every installed compute backend, the reference too (for the cases by hand)."""
    return _load(request.param)


@pytest.fixture(params=_installed(reference=False))
def fast(request) -> Kernels:
    """Every installed compute backend but the reference it is compared with."""
    return _load(request.param)


NP = NumpyKernels()
DTYPES = [np.float32, np.float64]


def _host(kernels, A):
    return kernels.to_numpy(A)


def stream(kernels, X, centers, counts, batch_size, half_life=0, weights=None, order=None):
    """stream_batches on the backend's own arrays; returns host centers and counts."""
    c, n = kernels.asarray(np.array(centers)), kernels.asarray(np.array(counts, dtype=float))
    ws = kernels.workspace(X.dtype, len(centers), X.shape[1], min(batch_size, len(X)))
    kernels.stream_batches(X, weights, order, batch_size, c, n, half_life, ws)
    return _host(kernels, c), _host(kernels, n)


def assign(kernels, X, centers, distances=True, label_dtype=np.intp):
    labels = kernels.empty(len(X), label_dtype, like=X)
    sq_dist = kernels.empty(len(X), np.float64, like=X) if distances else None
    total = kernels.assign(X, centers, labels, sq_dist, None)
    return _host(kernels, labels), None if sq_dist is None else _host(kernels, sq_dist), total


def seed(method, X, weights, uniforms):
    indices = np.empty(len(uniforms), dtype=np.intp)
    method(X, weights, uniforms, indices)
    return indices


# --------------------------------------------------------------- the spec's cases, by hand


def test_the_running_mean_by_hand(kernels):
    X = np.array([[1.0], [3.0], [9.0], [4.0], [11.0], [13.0]])
    # Batch 1: 1, 3 -> center 0; 9 -> center 1. Counts start at 0, so each hit center becomes
    # its batch mean. Batch 2: 4 -> center 0 (p = 1/3); 11, 13 -> center 1 (p = 2/3).
    centers, counts = stream(kernels, X[:3], [[0.0], [10.0]], [0, 0], 3)
    np.testing.assert_allclose(centers.ravel(), [2.0, 9.0])
    np.testing.assert_allclose(counts, [2.0, 1.0])
    centers, counts = stream(kernels, X, [[0.0], [10.0]], [0, 0], 3)
    np.testing.assert_allclose(centers.ravel(), [8.0 / 3.0, 11.0])
    np.testing.assert_allclose(counts, [3.0, 3.0])


def test_the_running_mean_with_half_life_decay_by_hand(kernels):
    # h = 3 and batches of 3 points: every count is halved before each batch is added.
    # After batch 1: centers (2, 9), counts (2, 1). Batch 2: counts -> (1, 0.5);
    # p0 = 1 / 2 -> 0.5 * 2 + 0.5 * 4 = 3; p1 = 2 / 2.5 -> 0.2 * 9 + 0.8 * 12 = 11.4.
    X = np.array([[1.0], [3.0], [9.0], [4.0], [11.0], [13.0]])
    centers, counts = stream(kernels, X, [[0.0], [10.0]], [0, 0], 3, half_life=3)
    np.testing.assert_allclose(centers.ravel(), [3.0, 11.4])
    np.testing.assert_allclose(counts, [2.0, 2.5])


def test_a_center_no_point_reaches_keeps_its_place_and_decays(kernels):
    X = np.array([[1.0], [2.0]])
    centers, counts = stream(kernels, X, [[0.0], [100.0]], [4.0, 2.0], 2, half_life=2)
    np.testing.assert_allclose(centers.ravel(), [(2.0 * 0.0 + 3.0) / 4.0, 100.0])
    np.testing.assert_allclose(counts, [4.0, 1.0])


def test_weighted_rows_by_hand(kernels):
    # Weights 1, 3 on center 0's rows: mean (1*1 + 3*3) / 4 = 2.5 with count 4; the batch's
    # weight 5 (not its 3 rows) sets the decay with h = 5: counts (8, 2) -> (4, 1).
    X = np.array([[1.0], [3.0], [9.0]])
    centers, counts = stream(kernels, X, [[0.0], [10.0]], [8.0, 2.0], 3, half_life=5,
                             weights=np.array([1.0, 3.0, 1.0]))
    np.testing.assert_allclose(centers.ravel(), [(4.0 * 0.0 + 4.0 * 2.5) / 8.0,
                                                 (1.0 * 10.0 + 9.0) / 2.0])
    np.testing.assert_allclose(counts, [8.0, 2.0])


def test_integer_weights_are_repeated_rows(kernels):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4))
    weights = rng.integers(0, 4, size=300).astype(float)
    start = X[:12].copy()
    weighted = stream(kernels, X, start, np.zeros(12), 300, half_life=500, weights=weights)
    repeated = np.repeat(X, weights.astype(int), axis=0)
    plain = stream(kernels, repeated, start, np.zeros(12), len(repeated), half_life=500)
    np.testing.assert_allclose(weighted[0], plain[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weighted[1], plain[1], rtol=1e-12)


@pytest.mark.parametrize("n_visits", [1000, 333])
def test_an_order_visits_the_rows_in_that_order(kernels, n_visits):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((1000, 3))
    weights = rng.random(1000)
    order = rng.permutation(1000)[:n_visits]
    start = X[:7].copy()
    visited = stream(kernels, X, start, np.zeros(7), 64, 300, weights, order)
    copied = stream(kernels, X[order], start, np.zeros(7), 64, 300, weights[order])
    np.testing.assert_allclose(visited[0], copied[0], rtol=1e-12)
    np.testing.assert_allclose(visited[1], copied[1], rtol=1e-12)


def test_float32_state_stays_float32(kernels):
    X = np.array([[1.0], [9.0]], np.float32)
    centers, counts = stream(kernels, X, np.array([[0.0], [10.0]], np.float32), [0, 0], 2)
    assert centers.dtype == np.float32 and counts.dtype == np.float64


def test_no_decay_is_the_plain_running_mean(kernels):
    X = np.random.default_rng(3).standard_normal((1003, 5))
    centers, counts = stream(kernels, X, X[:1], [0], 100)
    np.testing.assert_allclose(centers[0], X.mean(axis=0), rtol=1e-10)
    assert counts[0] == len(X)


# --------------------------------------------------------------- against the numpy reference

# (n_samples, n_features, n_centers): d = 1, K = 1, odd sizes, several widths, large K.
SHAPES = [(1, 1, 1), (7, 1, 3), (50, 3, 1), (300, 5, 7), (1500, 8, 16), (1500, 9, 16),
          (40001, 7, 18), (40000, 8, 17), (1031, 16, 16), (20000, 16, 8), (3000, 20, 5),
          (2000, 32, 128), (700, 17, 129), (2500, 33, 70), (777, 64, 256)]


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
def test_assign_matches_numpy(fast, shape, dtype):
    _, X, centers = _data(*shape, dtype, seed=sum(shape))
    labels, sq_dist, total = assign(fast, X, centers)
    ref_labels, ref_sq, ref_total = assign(NP, X, centers)
    clear = _clear_rows(X, centers, _rtol(dtype))
    np.testing.assert_array_equal(labels[clear], ref_labels[clear])
    np.testing.assert_allclose(sq_dist, ref_sq, rtol=_rtol(dtype), atol=1e-5)
    assert total == pytest.approx(ref_total, rel=_rtol(dtype), abs=1e-4)


@pytest.mark.parametrize("label_dtype", [np.int32, np.intp])
@pytest.mark.parametrize("shape", SHAPES[::3])
def test_labels_alone_match_numpy(fast, shape, label_dtype):
    _, X, centers = _data(*shape, np.float32, seed=sum(shape) + 2)
    labels, _, total = assign(fast, X, centers, distances=False, label_dtype=label_dtype)
    ref, _, _ = assign(NP, X, centers, distances=False, label_dtype=label_dtype)
    clear = _clear_rows(X, centers, 1e-4)
    assert labels.dtype == label_dtype and np.isfinite(total)
    np.testing.assert_array_equal(labels[clear], ref[clear])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("shape", [(300, 5, 7), (40000, 8, 17), (2500, 33, 70)])
@pytest.mark.parametrize("distances", [False, True])
def test_a_row_that_is_not_finite_makes_the_total_not_finite(kernels, shape, bad, distances):
    _, X, centers = _data(*shape, np.float32, seed=3)
    X[shape[0] // 2, shape[1] - 1] = bad
    with np.errstate(invalid="ignore", over="ignore"):
        assert not np.isfinite(assign(kernels, X, centers, distances)[2])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES[::2])
def test_transform_matches_numpy(fast, shape, dtype):
    _, X, centers = _data(*shape, dtype, seed=sum(shape) + 1)
    out = fast.empty((shape[0], shape[2]), dtype, like=X)
    fast.transform(X, centers, out)
    ref = np.empty((shape[0], shape[2]), dtype)
    NP.transform(X, centers, ref)
    np.testing.assert_allclose(_host(fast, out), ref, rtol=_rtol(dtype), atol=1e-5)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("half_life", [0, 700])
@pytest.mark.parametrize("batch_size", [1, 64, 5000])
@pytest.mark.parametrize("shape", [(1031, 16, 16), (777, 64, 256), (300, 1, 3)])
def test_stream_batches_matches_numpy(fast, shape, batch_size, half_life, weighted):
    rng, X, start = _data(*shape, np.float64, seed=batch_size + half_life)
    weights = rng.random(len(X)) * 3 if weighted else None
    got = stream(fast, X, start, np.zeros(len(start)), batch_size, half_life, weights)
    ref = stream(NP, X, start, np.zeros(len(start)), batch_size, half_life, weights)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-12)


def test_stream_batches_with_many_centers_matches_numpy(fast):
    # K x d = 65,536: numba splits each batch's running-mean update over its centers.
    rng, X, start = _data(2000, 64, 1024, np.float64, seed=11)
    weights = rng.random(len(X)) * 3
    got = stream(fast, X, start, np.zeros(len(start)), 500, 700, weights)
    ref = stream(NP, X, start, np.zeros(len(start)), 500, 700, weights)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-12)


def test_stream_batches_float32_agrees_with_numpy(fast):
    # One start per blob, so that no row sits near a tie that float32 rounding could flip.
    X, truth = _blobs(6000, 8, 12, np.float32)
    start = X[[np.flatnonzero(truth == j)[0] for j in range(12)]]
    got = stream(fast, X, start, np.zeros(12), 1000)
    ref = stream(NP, X, start, np.zeros(12), 1000)
    assert got[0].dtype == np.float32
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got[1], ref[1])


def test_a_workspace_is_reused_for_every_batch(kernels):
    rng, X, start = _data(5000, 6, 9, np.float64, seed=4)
    ws = kernels.workspace(X.dtype, 9, 6, 500)
    c, n = kernels.asarray(start.copy()), kernels.asarray(np.zeros(9))
    for b0 in range(0, 5000, 500):
        kernels.stream_batches(X[b0:b0 + 500], None, None, 500, c, n, 0, ws)
    whole = stream(kernels, X, start, np.zeros(9), 500)
    np.testing.assert_allclose(_host(kernels, c), whole[0], rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_candidates", [1, 4])
@pytest.mark.parametrize("shape", [(1, 1, 1), (300, 5, 7), (2500, 33, 70), (3000, 2, 40)])
def test_kmeanspp_matches_numpy(fast, shape, n_candidates, dtype):
    rng, X, _ = _data(*shape, dtype, seed=shape[0] + n_candidates)
    weights = rng.random(shape[0]) + 0.1
    uniforms = rng.random((shape[2], n_candidates))
    np.testing.assert_array_equal(seed(fast.kmeanspp, X, weights, uniforms),
                                  seed(NP.kmeanspp, X, weights, uniforms))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_candidates", [1, 3])
def test_kmeanspp_on_separated_blobs_matches_numpy(fast, n_candidates, dtype):
    X, _ = _blobs(60_000, 8, 30, dtype, seed=n_candidates)
    rng = np.random.default_rng(9)
    weights = rng.random(len(X)) + 0.1
    uniforms = rng.random((40, n_candidates))
    np.testing.assert_array_equal(seed(fast.kmeanspp, X, weights, uniforms),
                                  seed(NP.kmeanspp, X, weights, uniforms))


def _trials(kernels, X, weights, uniforms):
    indices = np.empty(uniforms.shape[:2], dtype=np.intp)
    kernels.kmeanspp_trials(X, weights, uniforms, indices)
    return indices


# One row; weighted rows; a streaming state's shape (K weighted centers, ~5 per cluster) with
# rows far from the origin (the distances between rows lose digits in ||a||^2 + ||b||^2 - 2ab).
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (300, 5, 7, 3), (1200, 40, 240, 2)])
def test_kmeanspp_trials_match_the_reference_trial_by_trial(fast, shape, dtype):
    n, d, k, n_cand = shape
    X, _ = _blobs(n, d, max(1, n // 5), np.float64, seed=n)
    X = (X + 1e4).astype(dtype)
    rng = np.random.default_rng(n + d)
    weights = rng.integers(1, 500, size=n).astype(np.float64)
    uniforms = rng.random((4, k, n_cand))
    expected = np.array([seed(NP.kmeanspp, X, weights, u) for u in uniforms])
    np.testing.assert_array_equal(_trials(fast, X, weights, uniforms), expected)


@pytest.mark.parametrize("scale", [1e-30, 1e20])
def test_kmeanspp_trials_at_scales_beyond_float32(fast, scale):
    """The numba table keeps its bounds as 16-bit floats (float32's exponent): squared
    distances below float32's smallest or above its largest must rule nothing out wrongly."""
    X, _ = _blobs(300, 5, 30, np.float64, seed=3)
    X = X * scale
    uniforms = np.random.default_rng(4).random((3, 20, 4))
    expected = np.array([seed(NP.kmeanspp, X, None, u) for u in uniforms])
    np.testing.assert_array_equal(_trials(fast, X, None, uniforms), expected)


def test_kmeanspp_trials_beyond_the_table_size_go_trial_by_trial(monkeypatch):
    numba_backend = pytest.importorskip("kmeans_stream.backends.numba")
    X, _ = _blobs(500, 6, 40, np.float64, seed=5)
    uniforms = np.random.default_rng(1).random((3, 30, 4))
    on_table = _trials(numba_backend.NumbaKernels(), X, None, uniforms)
    monkeypatch.setattr(numba_backend, "PP_TABLE_MAX_ROWS", 100)
    np.testing.assert_array_equal(_trials(numba_backend.NumbaKernels(), X, None, uniforms),
                                  on_table)
    np.testing.assert_array_equal(on_table, [seed(NP.kmeanspp, X, None, u) for u in uniforms])


def test_kmeanspp_trials_too_few_distinct_points(kernels):
    X = np.repeat(np.arange(3.0)[:, None] * 1e6, 4, axis=0) + 5e8  # exact zeros needed
    with pytest.raises(ValueError, match="only 3 distinct weighted points"):
        _trials(kernels, X, np.ones(len(X)), np.full((2, 4, 2), 0.5))


def test_kmeanspp_trials_shapes_must_agree(kernels):
    X = np.arange(10.0).reshape(5, 2)
    with pytest.raises(ValueError, match="shape"):
        kernels.kmeanspp_trials(X, None, np.full((2, 2, 2), 0.5), np.empty((2, 3), np.intp))


def test_kmeanspp_too_few_distinct_points(kernels):
    X = np.repeat(np.arange(3.0)[:, None], 4, axis=0)
    with pytest.raises(ValueError, match="only 3 distinct weighted points"):
        seed(kernels.kmeanspp, X, np.ones(len(X)), np.full((4, 2), 0.5))


# Plain lazy k-means++: one center, few rows (a refresh per center), pending groups refreshed by
# the acceptance rule and by the cap (K near n), several refresh paths, one feature.
PLAIN_SHAPES = [(1, 1, 1), (50, 3, 5), (300, 5, 7), (400, 6, 380), (2500, 33, 70),
                (3000, 2, 40), (5000, 16, 400), (60_000, 1, 30)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", PLAIN_SHAPES)
def test_kmeanspp_plain_matches_numpy(fast, shape, dtype):
    rng, X, _ = _data(*shape, dtype, seed=shape[0] + 7)
    weights = rng.random(shape[0]) + 0.1
    uniforms = rng.random((shape[2], 2 * PLAIN_PROPOSALS))
    picked = seed(fast.kmeanspp_plain, X, weights, uniforms)
    assert len(np.unique(picked)) == shape[2]
    np.testing.assert_array_equal(picked, seed(NP.kmeanspp_plain, X, weights, uniforms))


def test_kmeanspp_plain_with_unit_weights_as_none(fast):
    rng, X, _ = _data(3000, 4, 30, np.float64, seed=12)
    uniforms = rng.random((30, 2 * PLAIN_PROPOSALS))
    np.testing.assert_array_equal(seed(fast.kmeanspp_plain, X, None, uniforms),
                                  seed(NP.kmeanspp_plain, X, np.ones(len(X)), uniforms))


def test_kmeanspp_plain_too_few_distinct_points(kernels):
    X = np.repeat(np.arange(3.0)[:, None], 40, axis=0)
    uniforms = np.random.default_rng(0).random((4, 2 * PLAIN_PROPOSALS))
    with pytest.raises(ValueError, match="only 3 distinct weighted points"):
        seed(kernels.kmeanspp_plain, X, np.ones(len(X)), uniforms)


def test_seeding_rejects_uniforms_of_the_wrong_shape(kernels):
    X = np.random.default_rng(0).standard_normal((50, 3))
    with pytest.raises(ValueError, match="uniforms must have shape"):
        seed(kernels.kmeanspp_plain, X, np.ones(50), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="uniforms must have shape"):
        indices = np.empty(5, dtype=np.intp)
        kernels.kmeanspp(X, np.ones(50), np.zeros((4, 3)), indices)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (300, 5, 7), (2500, 33, 70), (777, 64, 256)])
def test_lloyd_matches_numpy(fast, shape, dtype):
    rng, X, start = _data(*shape, dtype, seed=shape[1])
    weights = rng.random(shape[0]) + 0.5
    centers, ref_centers = start.copy(), start.copy()
    ws = fast.workspace(dtype, shape[2], shape[1], shape[0])
    loss, n_iter = fast.lloyd(X, weights, centers, 30, 1e-4, ws)
    ref_loss, ref_n_iter = NP.lloyd(X, weights, ref_centers, 30, 1e-4, None)
    if dtype == np.float64:
        assert n_iter == ref_n_iter
        np.testing.assert_allclose(centers, ref_centers, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-3 if dtype == np.float32 else 1e-9)


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_lloyd_matches_numpy_pass_after_pass(fast, offset):
    """The reduction's shape (about five weighted points a cluster, more centers than one block
    of center gaps): after the first pass most rows keep their center without the distances to
    the others; every pass must still give the reference's centers."""
    X, _ = _blobs(1500, 12, 300, np.float64, seed=3)
    X += offset
    weights = np.random.default_rng(4).integers(1, 100, size=len(X)).astype(np.float64)
    start = X[np.random.default_rng(5).choice(len(X), 300, replace=False)]
    for max_iter in range(6):
        centers, ref_centers = start.copy(), start.copy()
        loss, _ = fast.lloyd(X, weights, centers, max_iter, 0.0, None)
        ref_loss, _ = NP.lloyd(X, weights, ref_centers, max_iter, 0.0, None)
        np.testing.assert_allclose(centers, ref_centers, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-9)


def test_lloyd_loss_never_rises(kernels):
    rng, X, start = _data(4000, 6, 25, np.float32, seed=11)
    weights = rng.random(len(X))
    losses = []
    for it in range(8):
        centers = start.copy()
        losses.append(kernels.lloyd(X, weights, centers, it, 0.0, None)[0])
    assert all(b <= a * (1 + 1e-6) for a, b in zip(losses, losses[1:], strict=False))


def refine(kernels, X, weights, start, max_moves, tol):
    centers = kernels.asarray(np.array(start))
    labels = kernels.empty(len(X), np.int32, like=X)
    ws = kernels.workspace(X.dtype, len(start), X.shape[1], 0)
    loss, moves = kernels.refine(X, weights, centers, labels, max_moves, tol, ws)
    return _host(kernels, centers), _host(kernels, labels), loss, moves


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (300, 5, 7), (20000, 16, 8), (2500, 33, 70)])
def test_refine_matches_numpy(fast, shape, dtype, weighted):
    rng, X, start = _data(*shape, dtype, seed=shape[0] + 5)
    weights = rng.random(shape[0]) + 0.5 if weighted else None
    centers, labels, loss, moves = refine(fast, X, weights, start, 20, 1e-4)
    ref_centers, ref_labels, ref_loss, ref_moves = refine(NP, X, weights, start, 20, 1e-4)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-3 if dtype == np.float32 else 1e-9,
                               atol=1e-12)
    if dtype == np.float64:
        assert moves == ref_moves
        np.testing.assert_allclose(centers, ref_centers, rtol=1e-8, atol=1e-10)
        np.testing.assert_array_equal(labels, ref_labels)


def test_refine_is_one_pass_at_a_fixed_point_and_its_labels_are_the_centers(kernels):
    X, truth = _blobs(5000, 4, 6, np.float64, seed=8)
    means = np.array([X[truth == j].mean(axis=0) for j in range(6)])
    centers, labels, loss, moves = refine(kernels, X, None, means, 50, 1e-9)
    assert moves == 0  # the means of their own rows: nothing to move
    np.testing.assert_array_equal(labels, truth)
    assert loss == pytest.approx(((X - means[truth]) ** 2).sum(), rel=1e-9)
    start = means + 3.0
    centers, labels, loss, moves = refine(kernels, X, None, start, 50, 0.0)
    assert moves >= 1
    np.testing.assert_allclose(centers, means, rtol=1e-9)
    np.testing.assert_array_equal(labels, truth)
    one = refine(kernels, X, None, start, 1, 0.0)
    assert one[3] == 1  # max_moves bounds the moves


def _blobs(n, d, k, dtype, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.uniform(-100, 100, size=(k, d))
    truth = rng.integers(k, size=n)
    return (means[truth] + rng.standard_normal((n, d))).astype(dtype), truth


def test_the_reference_follows_the_protocol():
    assert isinstance(NP, Kernels)
