"""What only the numba backend has: its two assignment paths, its checks, its threads."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from kmeans_stream import KMeans, backends  # noqa: E402
from kmeans_stream.backends import _numba_kernels  # noqa: E402
from kmeans_stream.backends.numba import NumbaKernels, _single_threaded_blas  # noqa: E402
from kmeans_stream.backends.numpy import NumpyKernels  # noqa: E402

from .test_contract import SHAPES, _blobs, _data, assign  # noqa: E402

NB, NP = NumbaKernels(), NumpyKernels()


def test_contract_shapes_cover_both_assignment_paths():
    widths = [_numba_kernels.blocked_width(k, d) for _, d, k in SHAPES]
    limit = _numba_kernels.BLOCKED_MAX_WORK
    pairs = list(zip(SHAPES, widths, strict=True))
    assert set(_numba_kernels.BLOCKED_WIDTHS) <= set(widths)
    assert any(w and w == d for (_, d, _), w in pairs)
    assert any(w and k * w == limit for (_, _, k), w in pairs)
    assert any(not w and d <= 32 and k * d < 2 * limit for (_, d, k), w in pairs)
    assert any(not w and d > max(_numba_kernels.BLOCKED_WIDTHS) for (_, d, _), w in pairs)
    assert any(n * k * d >= _numba_kernels.PARALLEL_MIN_WORK and w for (n, d, k), w in pairs)


def test_auto_is_numba_where_it_is_installed():
    assert backends.auto_name() == "numba"
    assert isinstance(backends.load("auto"), NumbaKernels)


def test_outputs_of_the_wrong_kind_are_rejected():
    X = np.zeros((10, 3), dtype=np.float32)
    for labels in (np.empty(9, np.int32), np.empty(10, np.float32), np.empty(20, np.int32)[::2]):
        with pytest.raises(ValueError, match="labels is written in place"):
            NB.assign(X, X[:2], labels, None)
    with pytest.raises(ValueError, match="sq_dist is written in place"):
        NB.assign(X, X[:2], np.empty(10, np.int32), np.empty(10, np.float32))


def test_non_contiguous_inputs_are_handled_or_rejected():
    _, X, centers = _data(500, 8, 6, np.float64, seed=5)
    wide = np.asfortranarray(np.hstack([X, X]))[:, ::2]
    np.testing.assert_array_equal(assign(NB, wide, centers)[0],
                                  assign(NB, np.ascontiguousarray(wide), centers)[0])
    strided = np.zeros((6, 16))[:, ::2]
    strided[:] = centers
    with pytest.raises(ValueError, match="C-contiguous"):
        NB.stream_batches(X, None, None, 100, strided, np.zeros(6), 0)
    with pytest.raises(ValueError, match="float64"):
        NB.stream_batches(X, None, None, 100, centers.copy(), np.zeros(6, np.float32), 0)
    with pytest.raises(ValueError, match="float32"):
        NB.stream_batches(X.astype(np.float32), None, None, 100, centers.copy(), np.zeros(6), 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        NB.assign(X.astype(np.int64), centers, np.empty(500, np.intp), None)
    with pytest.raises(ValueError, match=r"order must list row indices of X \(0 to 499\)"):
        NB.stream_batches(X, None, np.arange(1, 501), 100, centers.copy(), np.zeros(6), 0)


def test_a_workspace_made_for_other_work_is_refused():
    _, X, centers = _data(500, 8, 6, np.float64, seed=5)
    ws = NB.workspace(np.float32, 6, 8, 100)
    with pytest.raises(ValueError, match="this workspace was made for"):
        NB.stream_batches(X, None, None, 100, centers.copy(), np.zeros(6), 0, ws)
    ws = NB.workspace(np.float64, 6, 8, 50)
    with pytest.raises(ValueError, match="50 rows; the call has .* 100 rows"):
        NB.stream_batches(X, None, None, 100, centers.copy(), np.zeros(6), 0, ws)


def test_predict_from_four_python_threads_at_once():
    from concurrent.futures import ThreadPoolExecutor

    X, _ = _blobs(200_000, 16, 16, np.float32, seed=6)
    model = KMeans(k=16, backend="numba", random_state=0).fit(X[:20_000])
    expected = model.predict(X)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: model.predict(X), range(8)))
    for labels in results:
        np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
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
    _, X, centers = _data(777, 64, 256, np.float32, seed=5)
    assign(NB, X, centers)  # loads the BLAS the kernels call
    before = _blas_threads()
    with _single_threaded_blas():
        assert {n for _, n in _blas_threads()} == {1}
        with _single_threaded_blas():  # a second caller at once shares the limit
            pass
        assert {n for _, n in _blas_threads()} == {1}
    NB.lloyd(X, np.ones(len(X)), centers.copy(), 2, 0.0)
    assert _blas_threads() == before


def test_more_centers_than_float32_labels_can_hold_is_refused():
    with pytest.raises(ValueError, match="at most 16777216 centers"):
        NB.workspace(np.float32, 2**24 + 1, 1, 0)


def test_the_compiled_call_graph_lives_in_one_module():
    # numba's disk cache keys a function by its own file: a compiled function that called one
    # of another module would not see that module change (stale code, new buffer sizes).
    import ast
    import pathlib

    folder = pathlib.Path(_numba_kernels.__file__).parent
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        jitted = any(isinstance(d, ast.Call) and getattr(d.func, "id", "") in ("njit", "jit")
                     or getattr(d, "id", "") == "njit"
                     for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                     for d in node.decorator_list)
        if not jitted:
            continue
        assert path.name == "_numba_kernels.py", f"{path.name} compiles kernels of its own"
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
        assert not imports, f"{path.name} imports from the package: {ast.dump(imports[0])}"
