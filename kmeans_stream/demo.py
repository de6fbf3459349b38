"""The SageMaker K-Means exercise, run locally end to end on an embedded default.

The exercise draws its data with scikit-learn's ``make_blobs(n_samples=5000, n_features=10,
centers=5, cluster_std=1.5, random_state=42)``. The demo needs no scikit-learn, so it draws the
same recipe itself: 5 centers uniform in the box [-10, 10]^10, 1000 rows around each with
isotropic normal noise of standard deviation 1.5, shuffled. The draws come from numpy's
``default_rng(42)``, not from the legacy ``RandomState(42)`` that make_blobs uses, so the data
has the exercise's distribution but not its exact numbers (and is float32, as SageMaker reads a
CSV). It is written as a SageMaker-style CSV (no header, features only), fitted from that file
with the exercise's hyperparameters, evaluated, plotted (the rows beside the truth, and one
histogram of the distances to the center per cluster) and saved as a model.tar.gz that
SageMaker's own K-Means image can serve. Where the exercise ends by telling the user to try
k = 3..10 with the elbow and silhouette methods, the demo runs `select_k` over those k.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import numpy as np

from .estimator import KMeans
from .metrics import silhouette_score

EXERCISE = dict(
    k=5, feature_dim=10, mini_batch_size=500, epochs=10, init_method="random",
    extra_center_factor=2,
)
DATA = ("data: 5000 x 10 float32 Gaussian blobs, 5 centers uniform in [-10, 10]^10, std 1.5, "
        "drawn with numpy's default_rng(42): the distribution of the exercise's make_blobs("
        "n_samples=5000, n_features=10, centers=5, cluster_std=1.5, random_state=42), not its "
        "numbers (make_blobs draws from the legacy RandomState(42))")
# select_k over the exercise's "try k = 3..10"; a sample of 2000 rows and 5 reference sets
# keep the demo to a few seconds.
SELECT = dict(ks=range(3, 11), sample_size=2000, n_refs=5)


def make_blobs(
    n_samples: int, n_features: int, n_centers: int, std: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian blobs around centers drawn uniformly from the box [-10, 10], the
    first ``n_samples % n_centers`` blobs one row larger (scikit-learn's make_blobs recipe,
    drawn from ``numpy.random.default_rng(seed)``)."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10.0, 10.0, size=(n_centers, n_features))
    labels = np.arange(n_samples) % n_centers
    rng.shuffle(labels)
    X = centers[labels] + rng.normal(scale=std, size=(n_samples, n_features))
    return X.astype(np.float32), labels


def run(out: Path, *, seed: int = 42, backend: str = "auto") -> dict[str, Path]:
    """Run the exercise, writing its outputs under `out`; returns what went where."""
    from . import plots
    from .selection import select_k

    out.mkdir(parents=True, exist_ok=True)
    print(textwrap.fill(DATA, 100, subsequent_indent="    "))
    X, truth = make_blobs(5000, 10, 5, 1.5, seed)
    csv_path = out / "train.csv"
    np.savetxt(csv_path, X, delimiter=",", fmt="%.7g")

    started = time.perf_counter()
    model = KMeans(**EXERCISE, backend=backend, random_state=seed).fit(str(csv_path))
    seconds = time.perf_counter() - started

    labels, distance = model.predict_with_distance(X)
    sizes = np.bincount(labels, minlength=model.k)
    print(f"fitted {len(X)} rows x {X.shape[1]} features from {csv_path} in {seconds:.2f} s")
    print(f"hyperparameters sent to SageMaker: {model.to_sagemaker_hyperparameters()}")
    print(f"cluster sizes:              {sizes.tolist()}")
    print(f"silhouette:                 {silhouette_score(X, labels):.4f}")
    print(f"inertia (SSE):              {float(np.sum(distance.astype(np.float64) ** 2)):.1f}")
    print(f"mean distance to centroid:  {float(distance.mean()):.4f}")
    print(f"train:msd (SageMaker's):    {model.train_msd_:.4f}")

    outputs = {"data": csv_path}
    outputs["scatter"] = plots.scatter_true_vs_predicted(
        X, truth, labels, model.cluster_centers_, out / "scatter_true_vs_predicted.png")
    outputs["histograms"] = plots.distance_histograms(
        distance, labels, out / "distance_histograms.png")
    outputs["model"] = model.save(out / "model.tar.gz")

    started = time.perf_counter()
    hyperparameters = {n: v for n, v in EXERCISE.items() if n != "k"}
    selection = select_k(str(csv_path), **SELECT, random_state=seed, backend=backend,
                         **hyperparameters)
    print(f"\nchoosing k: select_k over k = 3..10 from {csv_path} in "
          f"{time.perf_counter() - started:.2f} s")
    print(selection.table())
    outputs["select_k"] = selection.plot(out / "select_k.png")
    print()
    for what, path in outputs.items():
        print(f"{what:>10}: {path}")
    return outputs
