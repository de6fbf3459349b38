"""One data path: what X is is decided once at the door (`as_source`), and the defects the
issue found by trying it, each pinned."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from kmeans_stream import DataFormatError, KMeans, NotFittedError
from kmeans_stream.io import iter_batches
from kmeans_stream.io.sources import as_source

pd = pytest.importorskip("pandas")
sp = pytest.importorskip("scipy.sparse")

BACKENDS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("numba") is None, reason="numba not installed"))]


def blobs(n=600, d=3, k=3, seed=0, std=0.3):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, size=(k, d))
    return centers[np.arange(n) % k] + rng.normal(scale=std, size=(n, d))


def model(**params):
    return KMeans(**{"k": 3, "backend": "numpy", "random_state": 0, **params})


# ------------------------------------------------------------------ the record


@pytest.mark.parametrize(("make", "kind", "reiterable"), [
    (lambda X: X, "dense", True),
    (lambda X: X.tolist(), "dense", True),
    (lambda X: pd.DataFrame(X, columns=list("abc")), "frame", True),
    (lambda X: sp.csr_matrix(X), "sparse", True),
    (lambda X: [X[:10], X[10:]], "batches", True),
    (lambda X: iter([X]), "batches", False),
])
def test_the_door_classifies_once(make, kind, reiterable):
    source = as_source(make(blobs(20)))
    assert (source.kind, source.reiterable) == (kind, reiterable)
    if source.in_memory:
        assert (source.n_samples, source.n_features, source.dtype) == (20, 3, np.float64)
    assert (source.feature_names is not None) == (kind == "frame")


def test_a_path_is_a_location_and_a_stream_is_read_once(tmp_path):
    path = tmp_path / "x.csv"
    np.savetxt(path, blobs(20), delimiter=",")
    assert as_source(str(path)).kind == "location" and as_source(path).reiterable
    with open(path, "rb") as stream:
        source = as_source(stream)
        assert source.kind == "stream" and not source.reiterable


# ------------------------------------------------------------------ the defects


def test_predicting_on_reordered_columns_is_refused_as_scikit_learn_does():
    X = blobs()
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    km = model().fit(frame)
    with pytest.raises(ValueError, match="Feature names must be in the same order"):
        km.predict(frame[["c", "a", "b"]])
    with pytest.raises(ValueError, match="Feature names unseen at fit time:\n- x\n"):
        km.predict(frame.rename(columns={"a": "x"}))
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        km.predict(X)
    with pytest.raises(ValueError, match="Feature names must be in the same order"):
        km.partial_fit(frame[["c", "a", "b"]])


def test_scikit_learn_s_own_column_name_check():
    checks = pytest.importorskip("sklearn.utils.estimator_checks")
    checks.check_dataframe_column_names_consistency("KMeans", model())


def test_fit_predict_on_a_path_labels_every_row(tmp_path):
    X = blobs()
    path = tmp_path / "train.csv"
    np.savetxt(path, X, delimiter=",")
    km = model(mini_batch_size=100)
    labels = km.fit_predict(str(path))
    assert labels.shape == (len(X),) and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, km.predict(X.astype(np.float32)))
    np.testing.assert_array_equal(km.labels_, labels)
    with pytest.raises(ValueError, match="fit_predict labels every row .* one-shot"):
        model().fit_predict(iter([X]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_folder_of_float32_csv_and_float64_npy_streams_in_the_first_dtype(tmp_path, backend):
    X = blobs(400)
    np.savetxt(tmp_path / "a.csv", X[:200], delimiter=",")  # CSV reads as float32
    np.save(tmp_path / "b.npy", X[200:])  # float64
    km = model(backend=backend, mini_batch_size=150).fit(str(tmp_path))
    assert km.cluster_centers_.dtype == np.float32
    assert km.n_samples_seen_ == 400
    batches = list(iter_batches(str(tmp_path), 150))
    assert {b.dtype for b in batches} == {np.dtype(np.float32)}


def test_a_dataframe_holding_pd_na_fails_the_same_way_everywhere():
    frame = pd.DataFrame(blobs(50), columns=list("abc")).astype({"b": "Float64"})
    frame.loc[7, "b"] = pd.NA
    message = r"NaN \(first at row 7, column 1\)"
    with pytest.raises(ValueError, match=message):
        model().fit(frame)
    with pytest.raises(ValueError, match=message):
        model().fit([frame])  # as a batch of a stream
    assert np.isnan(np.concatenate(list(iter_batches(frame, 20)))[7, 1])  # readers read


def test_a_text_column_is_named():
    frame = pd.DataFrame(blobs(50), columns=list("abc")).assign(city="Paris")
    with pytest.raises(DataFormatError, match=r"column\(s\) 'city' \((object|str)\)"):
        model().fit(frame)


def test_shuffle_applies_to_sparse_input_as_to_dense():
    X = blobs(900)
    params = dict(mini_batch_size=100, shuffle=True, epochs=2, local_lloyd_num_trials=2)
    dense = model(**params).fit(X)
    sparse = model(**params).fit(sp.csr_matrix(X))
    unshuffled = model(**{**params, "shuffle": False}).fit(sp.csr_matrix(X))
    np.testing.assert_allclose(sparse._fitted.state.centers, dense._fitted.state.centers,
                               rtol=1e-12)
    assert not np.allclose(unshuffled._fitted.state.centers, dense._fitted.state.centers)


def test_the_not_fitted_error_pickles_once_scikit_learn_is_loaded():
    sklearn_exceptions = pytest.importorskip("sklearn.exceptions")
    with pytest.raises(NotFittedError) as caught:
        model().predict(blobs(5))
    error = caught.value
    assert isinstance(error, sklearn_exceptions.NotFittedError)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and again.args == error.args
    assert isinstance(again, sklearn_exceptions.NotFittedError)


def test_a_gpu_array_with_a_cpu_backend_is_a_clear_error():
    class DeviceArray:  # what a CuPy array shows of itself, without a GPU
        __cuda_array_interface__ = {}
        shape, dtype = (10, 3), np.dtype(np.float32)

    with pytest.raises(ValueError, match="lives on a GPU, but backend='numpy' computes on"):
        model().fit(DeviceArray())


# ------------------------------------------------------------------ sample_weight


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_weights_give_the_centers_of_repeated_rows(backend):
    rng = np.random.default_rng(3)
    X = blobs(30, std=0.5)  # 30 distinct rows in 3 blobs: K = 30, every row a start
    weights = rng.integers(1, 4, size=30)
    params = dict(backend=backend, mini_batch_size=200, local_lloyd_num_trials=3)
    weighted = model(**params).fit(X, sample_weight=weights)
    repeated = model(**params).fit(np.repeat(X, weights, axis=0))
    order_w, order_r = (np.argsort(m.cluster_centers_[:, 0]) for m in (weighted, repeated))
    np.testing.assert_allclose(weighted.cluster_centers_[order_w],
                               repeated.cluster_centers_[order_r], rtol=1e-10)
    np.testing.assert_allclose(weighted.counts_[order_w], repeated.counts_[order_r])
    assert weighted.inertia_ == pytest.approx(repeated.inertia_, rel=1e-9)
    assert weighted.score(X, sample_weight=weights) == pytest.approx(
        repeated.score(np.repeat(X, weights, axis=0)), rel=1e-9)


def test_weights_stream_with_a_path_and_partial_fit(tmp_path):
    X = blobs(300)
    weights = np.random.default_rng(0).random(300) + 0.5
    path = tmp_path / "x.npy"
    np.save(path, X)
    parity = dict(mini_batch_size=100, shuffle=False, reassignment_ratio=0)
    from_path = model(**parity).fit(str(path), sample_weight=weights)
    in_memory = model(**parity).fit(X, sample_weight=weights)
    np.testing.assert_allclose(from_path.cluster_centers_, in_memory.cluster_centers_)
    partial = model(**parity)
    for start in range(0, 300, 100):
        partial.partial_fit(X[start:start + 100], sample_weight=weights[start:start + 100])
    np.testing.assert_allclose(partial._fitted.state.centers, in_memory._fitted.state.centers)


@pytest.mark.parametrize(("weights", "message"), [
    (np.ones(5), r"sample_weight.shape == \(5,\), expected \(600,\)"),
    (-np.ones(600), r"finite and non-negative; sample_weight\[0\] = -1.0"),
    (np.zeros(600), "at least one non-zero"),
    (np.ones((600, 1)), "must be 1-D"),
])
def test_bad_weights_are_named(weights, message):
    with pytest.raises(ValueError, match=message):
        model().fit(blobs(), sample_weight=weights)


def test_rows_of_weight_zero_do_not_move_the_centers():
    X = blobs(600)
    weights = np.ones(600)
    weights[::2] = 0.0
    noisy = X.copy()
    noisy[::2] += 1000.0  # far away, but weightless
    a = model(mini_batch_size=50).fit(noisy, sample_weight=weights)
    b = model(mini_batch_size=50).fit(X, sample_weight=weights)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_)
