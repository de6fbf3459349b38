import tarfile
from pathlib import Path

import numpy as np
import pytest

import kmeans_stream
from kmeans_stream import KMeans, ModelFormatError
from kmeans_stream.io import read_ndarrays

FIXTURES = Path(__file__).parent / "fixtures"


def fitted(**params):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(loc, 0.2, size=(200, 4)) for loc in (0.0, 4.0, 8.0)])
    model = KMeans(**{"k": 3, "backend": "numpy", "random_state": 0, "mini_batch_size": 150,
                      **params})
    return model.fit(X), X


def test_save_writes_what_sagemaker_serves(tmp_path):
    model, _ = fitted()
    path = model.save(tmp_path / "model.tar.gz")
    with tarfile.open(path) as tar:
        assert sorted(tar.getnames()) == ["kmeans_stream.json", "model_algo-1"]
        centers = read_ndarrays(tar.extractfile("model_algo-1").read())
    assert isinstance(centers, list) and len(centers) == 1
    assert centers[0].dtype == np.float32 and centers[0].shape == (3, 4)
    np.testing.assert_array_equal(centers[0], model.cluster_centers_.astype(np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["model.tar.gz"]  # no temporary left


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_predicts_the_same_and_keeps_the_state(tmp_path, dtype):
    model, X = fitted(eval_metrics=["msd", "ssd"])
    model.fit(X.astype(dtype))
    loaded = kmeans_stream.load(model.save(tmp_path / "model.tar.gz"))
    # Where a model runs is the loading machine's choice: the backend is not saved.
    assert loaded.get_params() == {**model.get_params(), "eval_metrics": ["msd", "ssd"],
                                   "backend": "auto"}
    np.testing.assert_array_equal(loaded.cluster_centers_, model.cluster_centers_)
    assert loaded.cluster_centers_.dtype == dtype
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.train_msd_ == model.train_msd_
    np.testing.assert_array_equal(loaded.counts_, model.counts_)


def test_partial_fit_goes_on_after_load_as_if_never_saved(tmp_path):
    model, X = fitted()
    loaded = kmeans_stream.load(model.save(tmp_path / "model.tar.gz"))
    loaded.set_params(backend=model.backend)
    model.partial_fit(X[:100])
    loaded.partial_fit(X[:100])
    np.testing.assert_array_equal(loaded.cluster_centers_, model.cluster_centers_)
    assert loaded.n_samples_seen_ == model.n_samples_seen_
    assert loaded.n_steps_ == model.n_steps_


def test_a_verbose_fit_does_not_reload_verbose(tmp_path, capsys):
    model, X = fitted(verbose=True)
    loaded = kmeans_stream.load(model.save(tmp_path / "model.tar.gz"))
    capsys.readouterr()
    assert loaded.verbose is False
    loaded.partial_fit(X[:100])
    assert capsys.readouterr().err == ""


def test_a_numba_model_loads_and_predicts_where_only_numpy_is(tmp_path):
    pytest.importorskip("numba")
    model, X = fitted(backend="numba")
    path = model.save(tmp_path / "model.tar.gz")
    np.save(tmp_path / "X.npy", X)
    # numba, scipy and threadpoolctl cannot be imported in the child: a numpy-only install.
    code = (
        "import sys, numpy as np\n"
        "for name in ('numba', 'scipy', 'threadpoolctl'):\n"
        "    sys.modules[name] = None\n"
        "import kmeans_stream\n"
        f"model = kmeans_stream.load({str(path)!r})\n"
        f"labels = model.predict(np.load({str(tmp_path / 'X.npy')!r}))\n"
        "print(model.backend, kmeans_stream.backends.auto_name(), labels.tolist())\n"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split(" ", 2)
    assert out[:2] == ["auto", "numpy"]
    assert out[2].strip() == str(model.predict(X).tolist())


def test_load_a_sagemaker_training_output():
    model = kmeans_stream.load(FIXTURES / "ndarray" / "model.tar.gz")
    expected = np.load(FIXTURES / "ndarray" / "centers_8x7.npy")
    np.testing.assert_array_equal(model.cluster_centers_, expected)
    assert model.k == 8 and model.n_features_in_ == 7
    labels, distance = model.predict_with_distance(expected[::-1] + 0.001)
    np.testing.assert_array_equal(labels, np.arange(8)[::-1])
    with pytest.raises(ValueError, match="streaming state is opaque"):
        model.partial_fit(expected)


def test_load_a_bare_model_algo_1():
    model = kmeans_stream.load(FIXTURES / "ndarray" / "model_algo-1_list")
    np.testing.assert_array_equal(
        model.cluster_centers_, np.load(FIXTURES / "ndarray" / "centers_8x7.npy")
    )


def test_hostile_archives_are_refused(tmp_path):
    with pytest.raises(ModelFormatError):
        kmeans_stream.load(FIXTURES / "evil" / "traversal.tar.gz")
    with pytest.raises(ModelFormatError):
        kmeans_stream.load(FIXTURES / "evil" / "truncated_ndarray")


def test_a_failed_save_leaves_nothing(tmp_path):
    model, _ = fitted()
    with pytest.raises(OSError):
        model.save(tmp_path / "missing-folder" / "model.tar.gz")
    assert list(tmp_path.iterdir()) == []


def test_save_before_fit():
    with pytest.raises(kmeans_stream.NotFittedError):
        KMeans(k=2).save("never.tar.gz")


def test_save_into_a_folder_names_the_file(tmp_path):
    model, X = fitted()
    path = model.save(tmp_path)
    assert path == tmp_path / "model.tar.gz"
    np.testing.assert_array_equal(kmeans_stream.load(path).predict(X), model.predict(X))
