import subprocess
import sys

import numpy as np
import pytest

from kmeans_stream import plots
from kmeans_stream.selection import KSelection

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def clusters(n_features, k=3, n=300, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, size=(k, n_features))
    labels = np.arange(n) % k
    return centers[labels] + rng.normal(size=(n, n_features)), labels, centers


@pytest.mark.parametrize("n_features", [1, 2, 10])
def test_scatter_true_vs_predicted_writes_a_png(n_features, tmp_path):
    X, truth, centers = clusters(n_features)
    predicted = (truth + 1) % 3  # the same clusters, numbered otherwise
    path = plots.scatter_true_vs_predicted(X, truth, predicted, centers, tmp_path / "s.png")
    assert path.read_bytes()[:8] == PNG


@pytest.mark.parametrize("k", [1, 5, 7])
def test_distance_histograms_draws_one_panel_per_cluster(k, tmp_path):
    rng = np.random.default_rng(k)
    labels = np.arange(500) % k
    path = plots.distance_histograms(rng.gamma(2.0, size=500), labels, tmp_path / "h.png")
    assert path.read_bytes()[:8] == PNG


def selection(methods):
    ks = [2, 3, 4, 5]
    nan = np.full(4, np.nan)
    return KSelection(
        ks, np.array([90.0, 40.0, 12.0, 11.0]),
        np.array([0.5, 0.6, 0.7, 0.5]) if "silhouette" in methods else nan,
        np.array([0.2, 0.5, 0.9, 0.85]) if "gap" in methods else nan,
        np.full(4, 0.02) if "gap" in methods else nan,
        {m: 4 for m in methods}, {m: "a rule" for m in methods}, {}, 1000,
    )


@pytest.mark.parametrize("methods", [("elbow", "silhouette", "gap"), ("elbow",), ()])
def test_k_selection_draws_the_curves_asked_for(methods, tmp_path):
    path = plots.k_selection(selection(methods), tmp_path / "k.png")
    assert path.read_bytes()[:8] == PNG


def test_plots_leave_pyplot_and_its_backend_alone(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from kmeans_stream import plots\n"
        f"plots.distance_histograms(np.ones(4), np.arange(4) % 2, {str(tmp_path / 'h.png')!r})\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_matplotlib_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'kmeans-stream\[plot\]'"):
        plots.distance_histograms(np.ones(4), np.arange(4) % 2, tmp_path / "h.png")
