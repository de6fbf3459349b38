import subprocess
import sys

import numpy as np
import pytest

from kmeans_stream import InvalidHyperparameterError, KMeans, NotFittedError


def blobs(n=600, d=3, k=4, seed=0, std=0.3):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, size=(k, d))
    labels = np.arange(n) % k
    return centers[labels] + rng.normal(scale=std, size=(n, d)), labels


def model(**params):
    return KMeans(**{"k": 4, "backend": "numpy", "random_state": 0, **params})


def test_fitted_attributes():
    X, _ = blobs()
    km = model(mini_batch_size=100).fit(X)
    assert km.cluster_centers_.shape == (4, 3)
    assert km.cluster_centers_.dtype == np.float64
    assert km.counts_.sum() == pytest.approx(len(X))
    assert km.labels_.shape == (len(X),) and km.labels_.dtype.kind == "i"
    assert km.inertia_ == pytest.approx(-km.score(X))
    assert km.n_features_in_ == 3
    assert km.n_samples_seen_ == len(X)
    assert km.n_streaming_centers_ == 40
    assert km.train_msd_ >= 0.0
    np.testing.assert_array_equal(km.predict(X), km.labels_)


def test_float32_is_kept():
    X, _ = blobs()
    km = model().fit(X.astype(np.float32))
    assert km.cluster_centers_.dtype == np.float32
    assert km.transform(X.astype(np.float32)).dtype == np.float32


def test_predict_with_distance_is_plain_euclidean():
    X, _ = blobs()
    km = model().fit(X)
    labels, distance = km.predict_with_distance(X[:10])
    expected = np.linalg.norm(X[:10] - km.cluster_centers_[labels], axis=1)
    np.testing.assert_allclose(distance, expected, rtol=1e-9)
    np.testing.assert_allclose(km.transform(X[:10]).min(axis=1), expected, rtol=1e-9)


def test_evaluate_reports_the_eval_metrics():
    X, _ = blobs()
    km = model(eval_metrics='["msd", "ssd"]').fit(X)
    metrics = km.evaluate(X)
    assert metrics["test:ssd"] == pytest.approx(km.inertia_)
    assert metrics["test:msd"] == pytest.approx(km.inertia_ / len(X))


def test_same_seed_same_centers_other_seed_other_start():
    X, _ = blobs(n=3000, k=8, std=2.0)
    a = model(k=8, shuffle=True, epochs=2, mini_batch_size=256).fit(X).cluster_centers_
    b = model(k=8, shuffle=True, epochs=2, mini_batch_size=256).fit(X).cluster_centers_
    c = model(k=8, shuffle=True, epochs=2, mini_batch_size=256, random_state=1).fit(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c.cluster_centers_)


def test_a_stream_of_odd_chunks_equals_the_array():
    X, _ = blobs(n=1000)
    whole = model(mini_batch_size=128, shuffle=False, reassignment_ratio=0).fit(X)
    chunks = (X[i:i + 77] for i in range(0, len(X), 77))
    streamed = model(mini_batch_size=128, shuffle=False, reassignment_ratio=0).fit(chunks)
    np.testing.assert_allclose(streamed.cluster_centers_, whole.cluster_centers_, rtol=1e-12)
    assert not hasattr(streamed, "labels_")


def test_a_list_of_batches_can_be_read_for_several_epochs():
    X, _ = blobs(n=400)
    km = model(epochs=3, mini_batch_size=100).fit([X[:150], X[150:]])
    assert km.n_samples_seen_ == 3 * len(X)


def test_one_shot_iterator_with_epochs_is_an_error():
    X, _ = blobs(n=200)
    with pytest.raises(ValueError, match="epochs=2 needs a source that can be read again"):
        model(epochs=2).fit(iter([X]))


def test_dataframe_keeps_feature_names():
    pd = pytest.importorskip("pandas")
    X, _ = blobs()
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    km = model().fit(frame)
    assert list(km.feature_names_in_) == ["a", "b", "c"]
    np.testing.assert_array_equal(km.predict(frame), km.labels_)


def test_sparse_input_is_densified_batch_by_batch():
    sparse = pytest.importorskip("scipy.sparse")
    X, _ = blobs()
    km_dense = model(mini_batch_size=100).fit(X)
    km_sparse = model(mini_batch_size=100).fit(sparse.csr_matrix(X))
    # The same streaming state; only dense data end refined on the data (sparse is not
    # densified whole), which separated blobs leave where they are.
    np.testing.assert_allclose(km_sparse._fitted.state.centers, km_dense._fitted.state.centers)
    np.testing.assert_allclose(km_sparse.cluster_centers_, km_dense.cluster_centers_,
                               rtol=1e-3)
    np.testing.assert_array_equal(km_sparse.predict(sparse.csr_matrix(X)), km_dense.labels_)


def test_partial_fit_streams_and_matches_fit_on_the_same_batches():
    X, _ = blobs(n=800)
    km = model(mini_batch_size=200, shuffle=False, reassignment_ratio=0)
    for start in range(0, len(X), 200):
        km.partial_fit(X[start:start + 200])
    whole = model(mini_batch_size=200, shuffle=False, reassignment_ratio=0).fit(X)
    np.testing.assert_allclose(km._fitted.state.centers, whole._fitted.state.centers)
    np.testing.assert_allclose(km.cluster_centers_, whole.cluster_centers_)
    assert km.n_samples_seen_ == len(X)


def test_partial_fit_after_a_bad_batch_continues_as_if_it_never_came():
    X, _ = blobs(n=600)
    bad = X[:50].copy()
    bad[7, 1] = np.nan
    clean = model(mini_batch_size=200).partial_fit(X[:300]).partial_fit(X[300:])
    dirty = model(mini_batch_size=200).partial_fit(X[:300])
    before = dirty.cluster_centers_.copy()
    with pytest.raises(ValueError, match=r"NaN \(first at row 7, column 1\)"):
        dirty.partial_fit(bad)
    np.testing.assert_array_equal(dirty.cluster_centers_, before)
    with pytest.raises(ValueError, match="X has 2 features, but KMeans is expecting 3"):
        dirty.partial_fit(X[:10, :2])
    dirty.partial_fit(X[300:])
    np.testing.assert_array_equal(dirty.cluster_centers_, clean.cluster_centers_)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.array([[0.0, 1.0], [np.inf, 2.0], [3.0, 4.0]]), r"infinity.*row 1, column 0"),
        (np.array([[0.0, np.nan]]), r"NaN \(first at row 0, column 1\)"),
        (np.arange(5.0), "Expected 2D array, got 1D array"),
        (np.empty((0, 3)), r"0 sample\(s\)"),
        (np.empty((3, 0)), r"0 feature\(s\)"),
        (np.ones((50, 2)), "1 distinct row"),
    ],
)
def test_bad_input_is_named_and_changes_nothing(data, message):
    X, _ = blobs()
    km = model().fit(X)
    before = km.cluster_centers_.copy()
    with pytest.raises(ValueError, match=message):
        km.fit(data)
    np.testing.assert_array_equal(km.cluster_centers_, before)
    np.testing.assert_array_equal(km.labels_, model().fit(X).labels_)


def test_fewer_distinct_rows_than_K_at_initialisation():
    X = np.repeat(np.arange(20.0).reshape(10, 2), 10, axis=0)  # 100 rows, 10 distinct
    with pytest.raises(ValueError, match="only 10 distinct rows, fewer than the K=20"):
        model(k=4, extra_center_factor=5).fit(X)
    assert model(k=4).fit(X).n_streaming_centers_ == 10  # 'auto' lowers K instead


def test_a_batch_whose_feature_count_differs():
    X, _ = blobs()
    message = r"batch 2 \(row 101\): 2 columns, but the data before had 3"
    with pytest.raises(ValueError, match=message):
        model(mini_batch_size=100).fit([X[:100], X[100:200, :2]])


def test_feature_dim_must_match_the_data():
    X, _ = blobs()
    with pytest.raises(ValueError, match="feature_dim=5 but the data has 3 features"):
        model(feature_dim=5).fit(X)


def test_predict_before_fit():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        model().predict(np.ones((2, 3)))


def test_predict_checks_the_feature_count():
    X, _ = blobs()
    km = model().fit(X)
    with pytest.raises(ValueError, match="X has 4 features, but KMeans is expecting 3"):
        km.predict(np.ones((2, 4)))


def test_malformed_hyperparameters_fail_at_fit_and_change_nothing():
    X, _ = blobs()
    km = model().fit(X)
    km.set_params(init_method="kmeans||")
    with pytest.raises(InvalidHyperparameterError, match="'init_method' parameter"):
        km.fit(X)
    assert km.n_samples_seen_ == len(X)
    with pytest.raises(InvalidHyperparameterError, match="Invalid parameter 'n_clusters'"):
        km.set_params(n_clusters=3)


def test_k_equal_to_one_and_factor_one():
    X, _ = blobs()
    one = model(k=1).fit(X)
    np.testing.assert_allclose(one.cluster_centers_[0], X.mean(axis=0), rtol=1e-9)
    flat = model(extra_center_factor=1).fit(X)
    assert flat.n_streaming_centers_ == 4 and flat.train_msd_ == 0.0


def test_import_is_numpy_only_and_fit_needs_nothing_else():
    code = (
        "import sys, numpy as np\n"
        "from kmeans_stream import KMeans\n"
        "KMeans(k=2, backend='numpy', random_state=0).fit(np.random.rand(100, 3))\n"
        "heavy = {'numba', 'cupy', 'boto3', 'dask', 'matplotlib', 'sklearn', 'scipy', "
        "'pandas', 'pyarrow', 'tqdm'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_verbose_shows_epochs_and_reduction_trials(capsys):
    X, _ = blobs()
    model(verbose=True, epochs=2, local_lloyd_num_trials=3).fit(X)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err
    assert "shrinking 40 centers into 4" in err
    assert "local kmeans attempt #2" in err
    model().fit(X)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_predict_names_a_bad_value_far_into_the_data(backend, value):
    if backend == "numba":
        pytest.importorskip("numba")
    X, _ = blobs(n=200_000, std=1.0)
    km = model(backend=backend).fit(X[:1000])
    X[150_001, 2] = value
    for method in (km.predict, km.score, km.predict_with_distance, km.transform):
        with pytest.raises(ValueError, match=r"(NaN|infinity).*\(first at row 150001, column 2\)"):
            method(X)


def test_a_list_of_nested_list_batches_streams_like_the_array():
    X, _ = blobs(n=400)
    parity = dict(mini_batch_size=100, shuffle=False, reassignment_ratio=0)
    whole = model(**parity).fit(X)
    batches = [X[:150].tolist(), X[150:].tolist()]
    streamed = model(**parity).fit(batches)
    np.testing.assert_allclose(streamed.cluster_centers_, whole.cluster_centers_, rtol=1e-12)
    rows = model(**parity).fit(X.tolist())  # a list of rows is one table
    np.testing.assert_array_equal(rows.labels_, whole.labels_)


def test_partial_fit_only_streams_and_the_reduction_runs_once_when_needed():
    X, _ = blobs(n=1000)
    km = model(mini_batch_size=100)
    for start in range(0, 1000, 100):
        km.partial_fit(X[start:start + 100])
        assert km._fitted.reduction is None  # no reduction yet
    centers = km.cluster_centers_
    reduction = km._fitted.reduction
    assert reduction is not None
    np.testing.assert_array_equal(km.cluster_centers_, centers)
    assert km._fitted.reduction is reduction  # computed once
    assert km.n_steps_ == 10 and km.n_samples_seen_ == 1000
    assert not hasattr(km, "n_iter_")  # partial_fit makes no pass over a whole data set


def test_partial_fit_labels_the_chunk_it_was_given():
    X, _ = blobs(n=600)
    km = model(mini_batch_size=100).partial_fit(X[:300])
    chunk = X[300:450].copy()
    km.partial_fit(chunk)
    chunk[:] = 0.0  # a reused buffer: labels_ must describe what was given
    np.testing.assert_array_equal(km.labels_, km.predict(X[300:450]))
    assert km.inertia_ == pytest.approx(-km.score(X[300:450]))


def test_partial_fit_keeps_the_first_dtype():
    X, _ = blobs(n=400)
    km = model(mini_batch_size=100).partial_fit(X[:200].astype(np.float32))
    km.partial_fit(X[200:])  # float64, cast to float32
    assert km.cluster_centers_.dtype == np.float32


def test_n_iter_counts_passes_and_the_reduction_has_its_own():
    X, _ = blobs()
    km = model(epochs=3, mini_batch_size=100).fit(X)
    assert km.n_iter_ == 3  # passes over the data, as scikit-learn's MiniBatchKMeans
    assert km.n_steps_ == 3 * 6  # mini-batches
    assert 1 <= km.reduction_n_iter_ <= 300  # Lloyd iterations of the best reduction trial


def test_the_docstring_is_the_class_s_own_and_methods_have_numpydoc_sections():
    import inspect

    source = inspect.getsource(KMeans)
    assert source.split("\n", 2)[1].strip().startswith('"""SageMaker')
    for name in ("fit", "partial_fit", "predict", "predict_with_distance", "transform",
                 "fit_predict", "fit_transform", "score", "evaluate", "save",
                 "to_sagemaker_hyperparameters", "from_sagemaker_hyperparameters",
                 "get_feature_names_out"):
        doc = inspect.getdoc(getattr(KMeans, name))
        assert "Returns\n-------" in doc, name
        if inspect.signature(getattr(KMeans, name)).parameters.keys() - {"self", "y"}:
            assert "Parameters\n----------" in doc, name


def test_set_params_backend_after_fit_changes_where_predictions_run():
    pytest.importorskip("numba")
    X, _ = blobs()
    km = model(backend="numba").fit(X)
    fast = km.predict(X)
    km.set_params(backend="numpy")
    np.testing.assert_array_equal(km.predict(X), fast)
    km.set_params(backend="nope")
    with pytest.raises(ValueError, match="'backend' parameter"):
        km.predict(X)


def test_a_file_with_another_width_is_refused_by_predict_and_evaluate(tmp_path):
    X = np.random.default_rng(0).normal(size=(60, 3))
    model = KMeans(k=2, random_state=0, backend="numpy").fit(X)
    path = tmp_path / "wide.csv"
    path.write_text("\n".join("1,2,3,4" for _ in range(5)) + "\n")
    for call in (model.predict, model.evaluate, model.score):
        with pytest.raises(ValueError, match="X has 4 features, but KMeans is expecting 3"):
            call(str(path))


def test_fit_skips_a_csv_header_when_asked(tmp_path):
    X = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)
    path = tmp_path / "with_header.csv"
    np.savetxt(path, X, delimiter=",", header="a,b,c", comments="")
    params = {"k": 2, "random_state": 0, "backend": "numpy", "shuffle": False,
              "reassignment_ratio": 0}
    with pytest.raises(ValueError, match="header"):
        KMeans(**params).fit(str(path))
    skipped = KMeans(**params).fit(str(path), skip_header=True)
    np.testing.assert_allclose(skipped.cluster_centers_,
                               KMeans(**params).fit(X).cluster_centers_, rtol=1e-6)
    assert KMeans(**params).partial_fit(str(path), skip_header=True).n_samples_seen_ == 40


def test_compute_labels_false_skips_the_labels_as_scikit_learn():
    X = np.random.default_rng(2).normal(size=(300, 3))
    params = {"k": 3, "random_state": 0, "backend": "numpy"}
    for extra in ({}, {"shuffle": False, "reassignment_ratio": 0}):  # refined, and parity
        model = KMeans(compute_labels=False, **params, **extra).fit(X)
        assert not hasattr(model, "labels_") and not hasattr(model, "inertia_")
        full = KMeans(**params, **extra).fit(X)
        np.testing.assert_array_equal(model.cluster_centers_, full.cluster_centers_)
        np.testing.assert_array_equal(model.fit_predict(X), full.labels_)
    chunked = KMeans(compute_labels=False, **params).partial_fit(X)
    assert not hasattr(chunked, "labels_")
