"""The cupy backend against the numpy reference, kernel by kernel, on fresh random inputs.

Tests marked ``gpu`` need CuPy and a CUDA device and skip themselves elsewhere (CI has none);
the rest run anywhere: the reason `gpu_available` gives, the lazy import, and the host-side rules
of the plain k-means++ the GPU path shares with the reference. Every alternative that `Tuning`
selects (rows per lane, persistent kernels and their grids, host or device seeding and Lloyd) is
checked against the reference, since the benchmark may make any of them the default.
"""

from __future__ import annotations

import functools
import itertools
import subprocess
import sys

import numpy as np
import pytest

from kmeans_stream.backends import _cupy_host, _cupy_kernels, _cupy_launch
from kmeans_stream.backends import cupy as gpu_backend
from kmeans_stream.backends.base import PLAIN_PROPOSALS
from kmeans_stream.backends.numpy import NumpyKernels

REASON = gpu_backend.gpu_available()
NP = NumpyKernels()


def gpu(test):
    """Mark a test as needing the GPU, skipped with the reason where there is none."""
    return pytest.mark.gpu(pytest.mark.skipif(REASON is not None, reason=f"{REASON}")(test))


@functools.cache
def _kernels(precision: str, persistent: bool, tuning: tuple):
    return gpu_backend.CupyKernels(precision, persistent=persistent,
                                   tuning=gpu_backend.Tuning(**dict(tuning)))


def kernels_with(precision="fp32", persistent=True, **tuning):
    """One CupyKernels per configuration, shared by the tests that use it."""
    return _kernels(precision, persistent, tuple(sorted(tuning.items())))


@pytest.fixture(scope="module")
def cp():
    return pytest.importorskip("cupy")


@pytest.fixture(scope="module")
def kern():
    return kernels_with()


@pytest.fixture(scope="module")
def kern_per_batch():
    return kernels_with(persistent=False)


def _side(A, on_device, cp):
    return cp.asarray(A) if on_device else A


def _host(A):
    return A.get() if hasattr(A, "get") and not isinstance(A, np.ndarray) else A


def _blobs(n, d, k, dtype, seed, spread=60.0):
    """Points around k separated centers (no row near a tie), their blob, a start row each."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(-spread, spread, size=(k, d)) * (k ** (1.0 / max(d, 1)))
    truth = np.arange(n) % k
    rng.shuffle(truth)
    X = (means[truth] + rng.standard_normal((n, d))).astype(dtype)
    starts = np.array([np.flatnonzero(truth == j)[0] for j in range(k)])
    return X, truth, starts


def _random(n, d, k, dtype, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    return rng, X, X[rng.choice(n, size=k, replace=False)].copy()


def _clear_rows(X, centers, rtol):
    """Rows whose two nearest centers differ by more than rounding could swap."""
    X64, C64 = X.astype(np.float64), centers.astype(np.float64)
    sq = (X64 ** 2).sum(1)[:, None] - 2 * X64 @ C64.T + (C64 ** 2).sum(1)[None]
    if sq.shape[1] == 1:
        return np.ones(len(X), dtype=bool)
    two = np.partition(sq, 1, axis=1)[:, :2]  # the nearest two, in order
    scale = 1.0 + (X64 ** 2).sum(1) + np.abs(two[:, 1])
    return two[:, 1] - two[:, 0] > rtol * scale


def _rtol(dtype, precision="fp32"):
    if precision == "tf32":
        return 1e-3
    return 1e-4 if dtype == np.float32 else 1e-10


# ----------------------------------------------------------------------- without a GPU
def test_gpu_available_says_why_not():
    if REASON is None:
        pytest.skip("a GPU is usable here")
    assert isinstance(REASON, str) and REASON and "\n" not in REASON


def test_constructor_without_gpu_fails_clearly():
    if REASON is None:
        pytest.skip("a GPU is usable here")
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        gpu_backend.CupyKernels()


def test_module_imports_without_cupy():
    code = (
        "import sys\n"
        "sys.modules['cupy'] = None\n"  # any import of cupy now fails
        "import kmeans_stream.backends.cupy as m\n"
        "reason = m.gpu_available()\n"
        "assert reason and 'CuPy' in reason, reason\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_importing_the_module_does_not_import_cupy():
    code = ("import sys, kmeans_stream.backends.cupy, kmeans_stream.backends._cupy_kernels\n"
            "print('cupy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_kernel_name_is_in_its_source():
    for dtype in (np.float32, np.float64):
        for kind, names in _cupy_kernels.MODULES.items():
            source = _cupy_kernels.source(kind, dtype)
            for name in names(dtype):
                assert f" {name.split('<')[0]}(" in source, name


def _numpy_refresh(X64):
    closest = np.full(len(X64), np.inf)

    def refresh(pending):
        for c in pending:
            np.minimum(closest, ((X64 - X64[c]) ** 2).sum(axis=1), out=closest)
        return closest.copy()

    return refresh


@pytest.mark.parametrize("shape", [(50, 3, 5), (400, 6, 380), (2500, 33, 70), (3000, 2, 40)])
def test_plain_lazy_rules_match_the_reference(shape):
    """The host side of the GPU plain k-means++ (its refreshes done here in numpy) picks the
    reference's rows: the vectorised distances to the pending centers are the same sums."""
    rng = np.random.default_rng(shape[0])
    X = rng.standard_normal(shape[:2])
    w = rng.random(shape[0]) + 0.1
    uniforms = rng.random((shape[2], 2 * PLAIN_PROPOSALS))
    picked, ref = np.empty(shape[2], np.intp), np.empty(shape[2], np.intp)
    _cupy_host.plain_lazy(X, w, uniforms, picked, _numpy_refresh(X))
    NP.kmeanspp_plain(X, w, uniforms, ref)
    np.testing.assert_array_equal(picked, ref)


def test_host_kernels_are_numba_where_it_imports_else_numpy():
    try:
        import numba  # noqa: F401
    except ImportError:
        expected = "numpy"
    else:
        expected = "numba"
    assert _cupy_host.host_kernels("numba").name == expected
    assert _cupy_host.host_kernels("numpy").name == "numpy"


def test_every_tuning_choice_names_compiled_kernels():
    """The names the launches build from a Tuning are among those each module compiles."""
    for dtype in (np.float32, np.float64):
        fused = set(_cupy_kernels.fused_names(dtype))
        for width, rows in _cupy_kernels.ASSIGN_ROWS[np.dtype(dtype)].items():
            for r in rows:
                assert _cupy_kernels.rows_name(dtype, "int", width, r) in fused
        persistent = set(_cupy_kernels.persistent_names(dtype))
        for width in _cupy_kernels.FUSED_WIDTHS[np.dtype(dtype)]:
            plan = _cupy_launch.Plan(np.dtype(dtype), 16, width, width, (), True)
            for threads, per_sm, prefetch in itertools.product((256, 512, 1024), (1, 2, 4),
                                                               (False, True)):
                form = _cupy_launch.v2_form(plan, prefetch, threads, per_sm)
                assert _cupy_kernels.v2_name(dtype, width, *form) in persistent


# ----------------------------------------------------------------------- assignment
# (n, d, K): the fused kernel at each padded width (d equal to it and below it), one lane and
# several per row (few rows), K = 1, d = 1; the matrix-product path (d above the widest fused
# width, K * d above the fused limit, K = 4096).
ASSIGN_SHAPES = [(1, 1, 1), (7, 1, 3), (50, 3, 1), (300, 5, 7), (200_000, 16, 16),
                 (1031, 16, 160), (3000, 33, 20), (20_000, 64, 100), (2000, 128, 30),
                 (777, 64, 256), (4100, 16, 4096)]


@gpu
@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", ASSIGN_SHAPES)
def test_assign_matches_numpy(shape, dtype, on_device, kern, cp):
    _, X, centers = _random(*shape, dtype, seed=sum(shape))
    label_dtype = np.int32 if shape[0] % 2 else np.int64
    labels = _side(np.full(shape[0], -1, label_dtype), on_device, cp)
    sq = _side(np.full(shape[0], -1.0), on_device, cp)
    total = kern.assign(_side(X, on_device, cp), centers, labels, sq, None)
    ref_labels, ref_sq = np.empty(shape[0], np.intp), np.empty(shape[0])
    ref_total = NP.assign(X, centers, ref_labels, ref_sq)
    clear = _clear_rows(X, centers, _rtol(dtype))
    np.testing.assert_array_equal(_host(labels)[clear], ref_labels[clear])
    np.testing.assert_allclose(_host(sq), ref_sq, rtol=_rtol(dtype), atol=1e-5)
    assert total == pytest.approx(ref_total, rel=_rtol(dtype))


# Rows enough to fill an H200 (over 132 x 2048 / 2), so that one lane takes whole rows: the
# multi-row kernel at each width it is compiled for (width 32 of float64: the one-row kernel).
ROW_SHAPES = [(300_001, 3, 5), (150_000, 8, 40), (200_000, 16, 16), (135_200, 16, 160),
              (140_000, 32, 50)]


@gpu
@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("rows", [1, 2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_assign_rows_per_lane_match_numpy(shape, dtype, rows, wide, cp):
    if wide and (rows != 2 or dtype == np.float64):
        pytest.skip("wide distances differ only for float32")
    kernels = kernels_with(assign_rows=rows, wide_distances=wide)
    _, X, centers = _random(*shape, dtype, seed=sum(shape) + rows)
    label_dtype = np.int32 if shape[0] % 2 else np.int64
    labels = cp.full(shape[0], -1, label_dtype)
    sq = cp.full(shape[0], -1.0)
    total = kernels.assign(cp.asarray(X), centers, labels, sq, None)
    ref_labels, ref_sq = np.empty(shape[0], np.intp), np.empty(shape[0])
    ref_total = NP.assign(X, centers, ref_labels, ref_sq)
    clear = _clear_rows(X, centers, _rtol(dtype))
    np.testing.assert_array_equal(labels.get()[clear], ref_labels[clear])
    np.testing.assert_allclose(sq.get(), ref_sq, rtol=_rtol(dtype), atol=1e-5)
    assert total == pytest.approx(ref_total, rel=_rtol(dtype))


@gpu
@pytest.mark.parametrize("tile_bytes", [1 << 20, 1 << 30])
@pytest.mark.parametrize("shape", [(4100, 16, 4096), (9000, 128, 300)])
def test_assign_in_matrix_product_tiles_of_any_size(shape, tile_bytes, cp):
    kernels = kernels_with(tile_bytes=tile_bytes)
    _, X, centers = _random(*shape, np.float32, seed=tile_bytes % 97)
    labels, sq = cp.empty(shape[0], np.int32), cp.empty(shape[0])
    total = kernels.assign(cp.asarray(X), centers, labels, sq, None)
    ref_labels, ref_sq = np.empty(shape[0], np.intp), np.empty(shape[0])
    ref_total = NP.assign(X, centers, ref_labels, ref_sq)
    clear = _clear_rows(X, centers, 1e-4)
    np.testing.assert_array_equal(labels.get()[clear], ref_labels[clear])
    np.testing.assert_allclose(sq.get(), ref_sq, rtol=1e-4, atol=1e-5)
    assert total == pytest.approx(ref_total, rel=1e-4)


# The TF32 large-K assignment: cuBLAS scores and an argmin, or the fused tensor-core kernel
# with one or two 16-row tiles a warp. Shapes: each k-step count (d up to 16, 32, 64, 128),
# K and n not multiples of the kernel's chunks and blocks.
TF32_PATHS = {"cublas": {}, "mma1": {"assign_mma": True, "mma_m_tiles": 1},
              "mma2": {"assign_mma": True, "mma_m_tiles": 2}}


@gpu
@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("path", list(TF32_PATHS))
@pytest.mark.parametrize("shape", [(5000, 64, 512), (3000, 128, 1024), (4100, 16, 4096),
                                   (1001, 33, 777), (777, 100, 300), (70_000, 8, 1500),
                                   (2000, 20, 300)])
def test_assign_tf32_matches_numpy(shape, path, on_device, cp):
    kern = kernels_with("tf32", **TF32_PATHS[path])
    _, X, centers = _random(*shape, np.float32, seed=5)
    label_dtype = np.int32 if shape[0] % 2 else np.int64
    labels = _side(np.full(shape[0], -1, label_dtype), on_device, cp)
    sq = _side(np.full(shape[0], -1.0), on_device, cp)
    total = kern.assign(_side(X, on_device, cp), centers, labels, sq, None)
    ref_labels, ref_sq = np.empty(shape[0], np.intp), np.empty(shape[0])
    ref_total = NP.assign(X, centers, ref_labels, ref_sq)
    clear = _clear_rows(X, centers, 1e-2)
    np.testing.assert_array_equal(_host(labels)[clear], ref_labels[clear])
    np.testing.assert_allclose(_host(sq)[clear], ref_sq[clear], rtol=1e-4, atol=1e-5)
    assert total == pytest.approx(ref_total, rel=1e-3)
    assert not kern._dev.mma_failed


@gpu
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_assign_mma_total_is_not_finite_for_a_bad_row(bad, cp):
    kern = kernels_with("tf32", assign_mma=True)
    _, X, centers = _random(900, 64, 600, np.float32, seed=3)
    X[450, 63] = bad
    for sq in (None, cp.empty(900)):
        total = kern.assign(cp.asarray(X), centers, cp.empty(900, np.int32), sq, None)
        assert not np.isfinite(total)


@gpu
def test_assign_without_distances_and_with_a_workspace(kern, cp):
    _, X, centers = _random(5000, 8, 40, np.float32, seed=11)
    ws = kern.workspace(np.float32, 40, 8, 5000)
    labels = cp.empty(5000, np.int32)
    total = kern.assign(cp.asarray(X), centers, labels, None, ws)
    ref = np.empty(5000, np.intp)
    ref_total = NP.assign(X, centers, ref, None)
    clear = _clear_rows(X, centers, 1e-4)
    np.testing.assert_array_equal(labels.get()[clear], ref[clear])
    assert total == pytest.approx(ref_total, rel=1e-4)


@gpu
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("shape", [(300, 5, 7), (40_000, 8, 17), (2500, 33, 70), (900, 64, 600),
                                   (200_000, 16, 16)])
def test_assign_total_is_not_finite_for_a_bad_row(shape, on_device, bad, kern, cp):
    _, X, centers = _random(*shape, np.float32, seed=3)
    X[shape[0] // 2, shape[1] - 1] = bad
    labels = np.empty(shape[0], np.int32)
    for sq in (None, np.empty(shape[0])):
        total = kern.assign(_side(X, on_device, cp), centers, labels, sq, None)
        assert not np.isfinite(total)


@gpu
@pytest.mark.parametrize("on_device", [False, True])
def test_assign_host_rows_in_many_chunks_and_pinned(on_device, cp):
    kern = kernels_with(chunk_bytes=4096)
    _, X, centers = _random(10_001, 12, 9, np.float32, seed=8)
    if on_device:  # here: a numpy array in pinned memory, copied from directly
        memory = cp.cuda.alloc_pinned_memory(X.nbytes)
        pinned = np.frombuffer(memory, X.dtype, X.size).reshape(X.shape)
        pinned[...] = X
        X = pinned
    labels, sq = np.empty(len(X), np.int64), np.empty(len(X))
    total = kern.assign(X, centers, labels, sq, None)
    ref_labels, ref_sq = np.empty(len(X), np.intp), np.empty(len(X))
    ref_total = NP.assign(X, centers, ref_labels, ref_sq)
    clear = _clear_rows(X, centers, 1e-4)
    np.testing.assert_array_equal(labels[clear], ref_labels[clear])
    np.testing.assert_allclose(sq, ref_sq, rtol=1e-4, atol=1e-5)
    assert total == pytest.approx(ref_total, rel=1e-4)


@gpu
@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (300, 5, 7), (1000, 33, 70), (700, 128, 300)])
def test_transform_matches_numpy(shape, dtype, on_device, kern, cp):
    _, X, centers = _random(*shape, dtype, seed=sum(shape) + 1)
    out = _side(np.full((shape[0], shape[2]), -1, dtype), on_device, cp)
    kern.transform(_side(X, on_device, cp), centers, out)
    ref = np.empty((shape[0], shape[2]), dtype)
    NP.transform(X, centers, ref)
    np.testing.assert_allclose(_host(out), ref, rtol=_rtol(dtype), atol=1e-5)


# ----------------------------------------------------------------------- streaming
# (n, d, K, batch_size, dtype, weighted, ordered, half_life): batch sizes 1, 64, 5000, 100000,
# 200000; K from 1 to 4096; d from 1 to 128; every streaming path, the fused and the
# matrix-product assignment. float32 cases are separated blobs (no label can flip on rounding).
STREAM_CASES = [
    (2000, 16, 160, 1, np.float64, False, False, 0),
    (1000, 1, 1, 64, np.float64, True, True, 100),
    (6400, 8, 16, 64, np.float32, True, True, 700),
    (20_000, 16, 160, 5000, np.float32, False, False, 0),
    (20_000, 3, 30, 5000, np.float64, True, False, 4000),
    (250_000, 4, 10, 100_000, np.float32, True, False, 30_000),
    (450_000, 8, 20, 200_000, np.float32, False, True, 0),
    (4000, 64, 256, 500, np.float64, False, True, 0),
    (5000, 20, 50, 300, np.float64, True, True, 100),
    (3000, 33, 30, 700, np.float32, True, False, 0),
    (3000, 128, 30, 1000, np.float32, False, False, 0),
    (6000, 32, 4096, 2000, np.float64, True, False, 5000),
]
# The streaming paths: the second persistent kernel (the default), the first, per batch.
PATHS = {"v2": {}, "v1": {"stream_kernel": "v1"}, "per_batch": {"stream_kernel": "per_batch"}}
# Grids and options of the second persistent kernel the benchmark compares (the default is
# 512 threads x 1 block a multiprocessor, with prefetching). Every grid takes several rows a lane
# in the 100000- and 200000-row batches; half the multiprocessors, more.
V2_CONFIGS = {
    "512x2": dict(stream_blocks_per_sm=2),
    "1024x1": dict(stream_threads=1024, stream_blocks_per_sm=1),
    "256x4": dict(stream_threads=256, stream_blocks_per_sm=4),
    "half_the_sms": dict(stream_sm_share=0.5, stream_blocks_per_sm=1),
    "no_prefetch": dict(stream_prefetch=False),
    "backoff": dict(stream_backoff=True),
    "block_sums": dict(stream_block_sums=True),
    "1024x1_block_sums": dict(stream_threads=1024, stream_blocks_per_sm=1,
                              stream_block_sums=True),
    "1024x1_no_prefetch": dict(stream_threads=1024, stream_blocks_per_sm=1,
                               stream_prefetch=False),
}
V2_CASES = [STREAM_CASES[i] for i in (0, 2, 3, 5, 6, 8, 9)]


def _case_id(case):
    return "x".join(map(str, case[:4])) + ("-f64" if case[4] == np.float64 else "")


def _stream_inputs(case):
    n, d, K, _, dtype, weighted, ordered, _ = case
    if dtype == np.float32:
        X, _, starts = _blobs(n, d, K, dtype, seed=n + K)
        rng = np.random.default_rng(d)
    else:
        rng, X, _ = _random(n, d, K, dtype, seed=n + K)
        starts = rng.choice(n, size=K, replace=False)
    weights = rng.random(n) + 0.5 if weighted else None
    order = rng.permutation(n) if ordered else None
    return X, weights, order, X[starts].copy()


def _stream_reference(case, X, weights, order, start):
    centers, counts = start.copy(), np.zeros(len(start))
    NP.stream_batches(X, weights, order, case[3], centers, counts, case[7])
    return centers, counts


def _assert_stream_equal(case, centers, counts, ref_centers, ref_counts):
    rtol = 1e-5 if case[4] == np.float32 else 1e-9
    np.testing.assert_allclose(_host(centers), ref_centers, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(_host(counts), ref_counts, rtol=1e-12)


def _stream_case(kernels, case, on_device, cp):
    X, weights, order, start = _stream_inputs(case)
    ref = _stream_reference(case, X, weights, order, start)
    centers = _side(start.copy(), on_device, cp)
    counts = _side(np.zeros(len(start)), on_device, cp)
    w = None if weights is None else _side(weights, on_device, cp)
    o = None if order is None else _side(order, on_device, cp)
    ws = kernels.workspace(X.dtype, len(start), X.shape[1], case[3])
    kernels.stream_batches(_side(X, on_device, cp), w, o, case[3], centers, counts, case[7], ws)
    assert kernels.persistent, "a persistent kernel failed to launch and was switched off"
    _assert_stream_equal(case, centers, counts, *ref)


@gpu
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("case", STREAM_CASES, ids=_case_id)
def test_stream_batches_matches_numpy(case, on_device, path, cp):
    _stream_case(kernels_with(**PATHS[path]), case, on_device, cp)


@gpu
@pytest.mark.parametrize("config", list(V2_CONFIGS))
@pytest.mark.parametrize("case", V2_CASES, ids=_case_id)
def test_stream_v2_grids_and_options_match_numpy(case, config, cp):
    _stream_case(kernels_with(**V2_CONFIGS[config]), case, True, cp)


@gpu
@pytest.mark.parametrize("on_device", [False, True])
def test_stream_per_batch_with_the_tf32_fused_assignment(on_device, cp):
    """Large K under precision='tf32' streams per batch through assign_mma, rows gathered in
    visit order (separated blobs: TF32 ranks them as float32 does)."""
    case = (4000, 96, 200, 700, np.float32, True, True, 50)
    _stream_case(kernels_with("tf32", assign_mma=True), case, on_device, cp)


@gpu
@pytest.mark.parametrize("probe", [2, 4, 6])
def test_stream_v2_probes_run_and_leave_counts_alone(probe, cp):
    """The timing probes complete; without the update (4) no count moves, without the
    assignment (2) no mass arrives, so the counts stay 0 either way."""
    X, _, _, start = _stream_inputs(STREAM_CASES[3])
    kernels = kernels_with(stream_probe=probe)
    centers, counts = cp.asarray(start), cp.zeros(len(start))
    kernels.stream_batches(cp.asarray(X), None, None, 5000, centers, counts, 0, None)
    assert kernels.persistent
    assert float(counts.sum()) == 0.0


@gpu
@pytest.mark.parametrize("path", ["v2", "v1"])
def test_stream_persistent_path_is_taken_and_agrees(path, kern_per_batch, cp):
    kern = kernels_with(**PATHS[path])
    case = (50_000, 16, 160, 5000, np.float32, False, False, 0)
    X, _, _, start = _stream_inputs(case)
    ws = kern.workspace(X.dtype, 160, 16, 5000)
    assert kern._dev.plan(ws, 160).persistent
    results = []
    for kernels in (kern, kern_per_batch):
        centers, counts = cp.asarray(start), cp.zeros(160)
        kernels.stream_batches(cp.asarray(X), None, None, 5000, centers, counts, 0, None)
        results.append((centers.get(), counts.get()))
    assert kern.persistent, "the persistent kernel failed to launch and was switched off"
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(results[0][1], results[1][1])


@gpu
def test_stream_host_rows_in_many_chunks(cp):
    kern = kernels_with(chunk_bytes=20_000)
    case = (9_999, 8, 16, 100, np.float32, True, True, 300)
    X, weights, order, start = _stream_inputs(case)
    ref = _stream_reference(case, X, weights, order, start)
    centers, counts = start.copy(), np.zeros(16)
    kern.stream_batches(X, weights, order, 100, centers, counts, 300, None)
    _assert_stream_equal(case, centers, counts, *ref)


@gpu
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("on_device", [False, True])
def test_stream_visits_some_rows_in_a_given_order(on_device, path, cp):
    """order may name fewer rows than X has, and a row more than once."""
    case = (8000, 8, 24, 500, np.float32, True, True, 900)
    X, weights, _, start = _stream_inputs(case)
    order = np.random.default_rng(4).choice(len(X), 3333)
    ref = _stream_reference(case, X, weights, order, start)
    kernels = kernels_with(**PATHS[path])
    centers, counts = _side(start.copy(), on_device, cp), _side(np.zeros(24), on_device, cp)
    kernels.stream_batches(_side(X, on_device, cp), _side(weights, on_device, cp),
                           _side(order, on_device, cp), 500, centers, counts, 900, None)
    _assert_stream_equal(case, centers, counts, *ref)


@gpu
def test_stream_no_decay_is_the_plain_running_mean(kern, cp):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1003, 5))
    centers, counts = X[:1].copy(), np.zeros(1)
    kern.stream_batches(X, None, None, 100, centers, counts, 0, None)
    np.testing.assert_allclose(centers[0], X.mean(axis=0), rtol=1e-10)
    assert counts[0] == len(X)


# ----------------------------------------------------------------------- Lloyd
# Where a seeding or Lloyd call runs: the host kernels at any size (numba's where it imports),
# the numpy reference as the host (up to its own limit, the device above), the device always.
WHERE = {"numba": "inf", "numpy": "numpy", "device": "-1"}


def _kernels_where(where, kind):
    if where == "numpy":
        return kernels_with(host="numpy")
    return kernels_with(**{f"host_{kind}_max": float(WHERE[where])})


@gpu
@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("where", list(WHERE))
@pytest.mark.parametrize("shape", [(400, 3, 12), (5000, 16, 256), (3000, 64, 600)])
def test_lloyd_matches_numpy(shape, where, on_device, cp):
    kern = _kernels_where(where, "lloyd")
    X, _, starts = _blobs(*shape, np.float64, seed=shape[2])
    weights = np.random.default_rng(1).random(len(X)) + 0.1
    centers = _side(X[starts[: shape[2]]].copy() + 0.3, on_device, cp)
    ref = X[starts[: shape[2]]].copy() + 0.3
    ws = kern.workspace(np.float64, shape[2], shape[1], shape[0])
    loss, n_iter = kern.lloyd(_side(X, on_device, cp), _side(weights, on_device, cp), centers,
                              50, 1e-4, ws)
    ref_loss, ref_iter = NP.lloyd(X, weights, ref, 50, 1e-4)
    assert loss == pytest.approx(ref_loss, rel=1e-9)
    assert abs(n_iter - ref_iter) <= 1
    np.testing.assert_allclose(_host(centers), ref, rtol=1e-9, atol=1e-9)


@gpu
@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("shape", [(3000, 8, 12), (6000, 64, 300)])
def test_refine_matches_numpy(shape, on_device, kern, cp):
    X, _, starts = _blobs(*shape, np.float32, seed=shape[2] + 1)
    weights = np.random.default_rng(2).random(len(X)) + 0.1
    start = X[starts] + np.float32(0.4)
    centers, ref = _side(start.copy(), on_device, cp), start.copy()
    labels = _side(np.full(len(X), -1, np.int64), on_device, cp)
    ref_labels = np.empty(len(X), np.intp)
    loss, moves = kern.refine(_side(X, on_device, cp), _side(weights, on_device, cp), centers,
                              labels, 10, 1e-9, None)
    ref_loss, ref_moves = NP.refine(X, weights, ref, ref_labels, 10, 1e-9)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert abs(moves - ref_moves) <= 1
    np.testing.assert_allclose(_host(centers), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(_host(labels), ref_labels)


# ----------------------------------------------------------------------- seeding
SEED_SHAPES = [(1, 1, 1), (300, 5, 7), (2500, 33, 70), (3000, 2, 40), (5000, 16, 400)]


@gpu
@pytest.mark.parametrize("where", list(WHERE))
@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_candidates", [1, 4])
@pytest.mark.parametrize("shape", SEED_SHAPES)
def test_kmeanspp_matches_numpy(shape, n_candidates, dtype, on_device, where, cp):
    kern = _kernels_where(where, "seed")
    rng, X, _ = _random(*shape, dtype, seed=shape[0] + n_candidates)
    weights = rng.random(shape[0]) + 0.1
    uniforms = rng.random((shape[2], n_candidates))
    picked, ref = np.full(shape[2], -1, np.intp), np.empty(shape[2], np.intp)
    kern.kmeanspp(_side(X, on_device, cp), _side(weights, on_device, cp), uniforms, picked)
    NP.kmeanspp(X, weights, uniforms, ref)
    np.testing.assert_array_equal(picked, ref)


@gpu
@pytest.mark.parametrize("where", list(WHERE))
def test_kmeanspp_too_few_distinct_points(where):
    kern = _kernels_where(where, "seed")
    X = np.repeat(np.arange(3.0)[:, None], 4, axis=0)
    with pytest.raises(ValueError, match="only 3 distinct weighted points for 4 centers"):
        kern.kmeanspp(X, np.ones(len(X)), np.full((4, 2), 0.5), np.empty(4, np.intp))


PLAIN_SHAPES = [(1, 1, 1), (50, 3, 5), (300, 5, 7), (400, 6, 380), (2500, 33, 70),
                (3000, 2, 40), (5000, 16, 400), (5000, 128, 160), (60_000, 1, 30)]


@gpu
@pytest.mark.parametrize("where", ["numba", "device"])
@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", PLAIN_SHAPES)
def test_kmeanspp_plain_matches_numpy(shape, dtype, on_device, where, cp):
    kern = _kernels_where(where, "plain")
    rng, X, _ = _random(*shape, dtype, seed=shape[0] + 7)
    weights = rng.random(shape[0]) + 0.1
    uniforms = rng.random((shape[2], 2 * PLAIN_PROPOSALS))
    picked, ref = np.full(shape[2], -1, np.intp), np.empty(shape[2], np.intp)
    kern.kmeanspp_plain(_side(X, on_device, cp), _side(weights, on_device, cp), uniforms, picked)
    NP.kmeanspp_plain(X, weights, uniforms, ref)
    np.testing.assert_array_equal(picked, ref)


@gpu
@pytest.mark.parametrize("where", ["numba", "device"])
def test_kmeanspp_plain_too_few_distinct_points(where):
    kern = _kernels_where(where, "plain")
    X = np.repeat(np.arange(3.0)[:, None], 4, axis=0)
    uniforms = np.random.default_rng(0).random((4, 2 * PLAIN_PROPOSALS))
    with pytest.raises(ValueError, match="only 3 distinct weighted points for 4 centers"):
        kern.kmeanspp_plain(X, None, uniforms, np.empty(4, np.intp))


# ----------------------------------------------------------------------- arrays and bad inputs
@gpu
def test_arrays_live_where_asked(kern, cp):
    A = np.arange(6.0).reshape(2, 3)
    D = kern.asarray(A, np.float32)
    assert isinstance(D, cp.ndarray) and D.dtype == np.float32 and D.flags.c_contiguous
    assert kern.asarray(D) is D
    np.testing.assert_array_equal(kern.to_numpy(D), A)
    assert kern.to_numpy(A) is A
    assert isinstance(kern.empty((4,), np.int32, D), cp.ndarray)
    assert isinstance(kern.empty((4,), np.int32, A), np.ndarray)


@gpu
@pytest.mark.parametrize("on_device", [False, True])
def test_bad_inputs_are_rejected(on_device, kern, cp):
    X = _side(np.zeros((10, 3), np.float32), on_device, cp)
    C = np.zeros((2, 3), np.float32)
    lab = np.empty(10, np.int32)
    with pytest.raises(TypeError, match="2-D float32 or float64 X"):
        kern.assign(_side(np.zeros((10, 3), np.int64), on_device, cp), C, lab, None)
    with pytest.raises(TypeError, match="2-D float32 or float64 X"):
        kern.assign(_side(np.zeros(10, np.float32), on_device, cp), C, lab, None)
    with pytest.raises(ValueError, match="centers must have shape"):
        kern.assign(X, np.zeros((2, 4), np.float32), lab, None)
    for bad in (np.empty(9, np.int32), np.empty(10, np.float32), np.empty(20, np.int32)[::2]):
        with pytest.raises(ValueError, match="labels"):
            kern.assign(X, C, bad, None)
    with pytest.raises(ValueError, match="sq_dist"):
        kern.assign(X, C, lab, np.empty(10, np.float32))
    with pytest.raises(ValueError, match="labels"):
        kern.refine(X, None, C.copy(), np.empty(10, np.float64), 3, 1e-4)
    with pytest.raises(ValueError, match="out"):
        kern.transform(X, C, np.empty((10, 3), np.float32))
    counts = np.zeros(2)
    with pytest.raises(ValueError, match="centers"):
        kern.stream_batches(X, None, None, 4, C.astype(np.float64), counts, 0)
    with pytest.raises(ValueError, match="counts"):
        kern.stream_batches(X, None, None, 4, C.copy(), np.zeros(3), 0)
    with pytest.raises(ValueError, match="batch_size"):
        kern.stream_batches(X, None, None, 0, C.copy(), counts, 0)
    with pytest.raises(ValueError, match="weights"):
        kern.stream_batches(X, np.ones(9), None, 4, C.copy(), counts, 0)
    with pytest.raises(ValueError, match="order"):
        kern.stream_batches(X, None, np.arange(9.0), 4, C.copy(), counts, 0)
    with pytest.raises(ValueError, match="order"):
        kern.stream_batches(X, None, np.arange(10) + 1, 4, C.copy(), counts, 0)
    with pytest.raises(ValueError, match="uniforms"):
        kern.kmeanspp(X, None, np.zeros((3, 2)), np.empty(2, np.intp))
    with pytest.raises(ValueError, match="uniforms"):
        kern.kmeanspp_plain(X, None, np.zeros((2, 3)), np.empty(2, np.intp))
    with pytest.raises(ValueError, match="workspace"):
        kern.assign(X, C, lab, None, kern.workspace(np.float32, 2, 4, 10))
    with pytest.raises(ValueError, match="precision"):
        gpu_backend.CupyKernels("fp16")
