import contextlib
import io

import numpy as np
import pytest

import kmeans_stream
from kmeans_stream.demo import make_blobs, run

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo run once: what it returned and what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        outputs = run(tmp_path_factory.mktemp("demo"), backend="numpy")
    return outputs, printed.getvalue()


def test_the_demo_writes_every_output_and_a_loadable_model(demo):
    outputs, printed = demo
    for word in ("cluster sizes", "silhouette", "inertia", "mean distance to centroid"):
        assert word in printed
    for what in ("data", "scatter", "histograms", "model", "select_k"):
        assert outputs[what].is_file()
        assert str(outputs[what]) in printed
    for picture in (outputs["scatter"], outputs["histograms"], outputs["select_k"]):
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = kmeans_stream.load(outputs["model"])
    X, _ = make_blobs(5000, 10, 5, 1.5, 42)
    sizes = np.bincount(model.predict(X), minlength=5)
    assert sorted(sizes.tolist()) == [1000] * 5


def test_the_demo_says_how_its_data_relates_to_the_exercise(demo):
    printed = " ".join(demo[1].split())
    assert printed.startswith("data: 5000 x 10 float32 Gaussian blobs")
    assert "make_blobs(n_samples=5000, n_features=10, centers=5, cluster_std=1.5, " \
           "random_state=42)" in printed
    assert "default_rng(42)" in printed and "not its numbers" in printed


def test_the_demo_ends_with_the_choice_of_k(demo):
    printed = demo[1]
    table = printed[printed.index("choosing k"):]
    rows = [line.split()[0] for line in table.splitlines()[2:10]]
    assert rows == [str(k) for k in range(3, 11)]
    assert "* suggested: elbow k=5, silhouette k=5, gap k=5" in table


def test_make_blobs_follows_the_recipe_of_scikit_learns():
    X, labels = make_blobs(5003, 4, 5, 1.5, 0)
    assert X.shape == (5003, 4) and X.dtype == np.float32
    assert np.bincount(labels).tolist() == [1001, 1001, 1001, 1000, 1000]
    spread = [X[labels == j].std(axis=0) for j in range(5)]
    np.testing.assert_allclose(spread, 1.5, rtol=0.1)
