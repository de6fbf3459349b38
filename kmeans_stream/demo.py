"""The SageMaker K-Means exercise, run locally end to end on an embedded default.

5000 x 10 blobs (5 centers, std 1.5, seed 42) are written as a SageMaker-style CSV (no header,
features only), fitted from that file with the exercise's hyperparameters, evaluated, plotted
and saved as a model.tar.gz that SageMaker's own K-Means image can serve.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .estimator import KMeans
from .metrics import silhouette_score

EXERCISE = dict(
    k=5, feature_dim=10, mini_batch_size=500, epochs=10, init_method="random",
    extra_center_factor=2,
)


def make_blobs(
    n_samples: int, n_features: int, n_centers: int, std: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian blobs around centers drawn uniformly from the box [-10, 10]."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10.0, 10.0, size=(n_centers, n_features))
    labels = np.arange(n_samples) % n_centers
    rng.shuffle(labels)
    X = centers[labels] + rng.normal(scale=std, size=(n_samples, n_features))
    return X.astype(np.float32), labels


def run(out: Path, *, seed: int = 42, backend: str = "auto") -> dict[str, Path]:
    """Run the exercise, writing its outputs under `out`; returns what went where."""
    out.mkdir(parents=True, exist_ok=True)
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
    outputs.update(_plots(out, X, truth, labels, distance, model.cluster_centers_))
    outputs["model"] = model.save(out / "model.tar.gz")
    for what, path in outputs.items():
        print(f"{what:>10}: {path}")
    return outputs


def _plots(out: Path, X, truth, labels, distance, centers) -> dict[str, Path]:
    from ._optional import require

    require("matplotlib", "the demo's plots")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = X.mean(axis=0)
    _, _, components = np.linalg.svd(X - mean, full_matrices=False)
    project = components[:2].T
    points, center_points = (X - mean) @ project, (centers - mean) @ project

    # Colour each predicted cluster as the true blob most of its rows come from, so that the
    # two panels can be compared by eye whatever order the clusters came out in.
    majority = np.array([
        np.bincount(truth[labels == j], minlength=1).argmax() if (labels == j).any() else j
        for j in range(len(centers))
    ])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True, sharey=True)
    panels = ((axes[0], truth, "true blobs"), (axes[1], majority[labels], "predicted"))
    for ax, colour, title in panels:
        ax.scatter(points[:, 0], points[:, 1], c=colour, s=4, cmap="tab10", vmin=0, vmax=9)
        ax.set_title(title)
        ax.set_xlabel("principal component 1")
    axes[1].scatter(center_points[:, 0], center_points[:, 1], c="black", marker="x", s=80)
    axes[0].set_ylabel("principal component 2")
    scatter = out / "scatter_true_vs_predicted.png"
    fig.savefig(scatter, dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(distance, bins=60, color="steelblue")
    ax.set_xlabel("distance_to_cluster")
    ax.set_ylabel("rows")
    ax.set_title("distance of each row to its closest center")
    histogram = out / "distance_histogram.png"
    fig.savefig(histogram, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return {"scatter": scatter, "histogram": histogram}
