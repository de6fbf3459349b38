"""Pictures of a clustering, each written to one PNG: predicted clusters beside the truth, the
distances to the centers per cluster, and the curves of `select_k`.

matplotlib (``pip install 'kmeans-stream[plot]'``) is imported inside each function. Figures
are drawn on their own Agg canvas, not through pyplot, so no global backend is switched (a
notebook's stays as it was) and no figure is left open.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["distance_histograms", "k_selection", "scatter_true_vs_predicted"]

_DPI = 100


def scatter_true_vs_predicted(X: Any, truth: Any, labels: Any, centers: Any,
                              path: str | os.PathLike) -> Path:
    """Two scatter panels side by side: the rows coloured by their true group, and by their
    predicted cluster with the centers marked.

    Each predicted cluster takes the colour of the true group most of its rows belong to, so the
    panels compare by eye whatever order the clusters came out in. Data of more than two
    features is drawn on its first two principal axes.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    truth, labels : ndarray of shape (n_samples,), int
    centers : ndarray of shape (n_clusters, n_features)
    path : str or os.PathLike
        The PNG to write.

    Returns
    -------
    path : pathlib.Path
    """
    X = np.asarray(X, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    truth, labels = np.asarray(truth), np.asarray(labels)
    points, center_points, axis_names = _plane(X, centers)
    majority = np.array([
        np.bincount(truth[labels == j]).argmax() if (labels == j).any() else j
        for j in range(len(centers))
    ])
    fig, axes = _figure(1, 2, (11, 4.5), sharex=True, sharey=True)
    panels = ((axes[0], truth, "true groups"), (axes[1], majority[labels], "predicted"))
    for ax, colour, title in panels:
        ax.scatter(points[:, 0], points[:, 1], c=colour % 10, s=4, cmap="tab10", vmin=0, vmax=9)
        ax.set_title(title)
        ax.set_xlabel(axis_names[0])
    axes[1].scatter(center_points[:, 0], center_points[:, 1], c="black", marker="x", s=80)
    axes[0].set_ylabel(axis_names[1])
    return _save(fig, path)


def _plane(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Rows and centers in two dimensions: the features themselves for two or fewer, else the
    first two principal components of X."""
    if X.shape[1] <= 2:
        pad = [(0, 0), (0, 2 - X.shape[1])]
        return np.pad(X, pad), np.pad(centers, pad), ("feature 0", "feature 1")
    mean = X.mean(axis=0)
    _, _, components = np.linalg.svd(X - mean, full_matrices=False)
    project = components[:2].T
    return ((X - mean) @ project, (centers - mean) @ project,
            ("principal component 1", "principal component 2"))


def distance_histograms(distance: Any, labels: Any, path: str | os.PathLike) -> Path:
    """One histogram per cluster of each row's distance to its center, as small multiples on a
    shared distance axis.

    Parameters
    ----------
    distance : ndarray of shape (n_samples,)
        Distance of each row to its closest center (`KMeans.predict_with_distance`).
    labels : ndarray of shape (n_samples,), int
        The closest center of each row.
    path : str or os.PathLike
        The PNG to write.

    Returns
    -------
    path : pathlib.Path
    """
    distance, labels = np.asarray(distance, dtype=np.float64), np.asarray(labels)
    clusters = np.unique(labels)
    n_cols = min(len(clusters), 5)
    n_rows = math.ceil(len(clusters) / n_cols)
    fig, axes = _figure(n_rows, n_cols, (2.6 * n_cols, 2.2 * n_rows), sharex=True,
                        squeeze=False)
    bins = np.histogram_bin_edges(distance, bins=40)
    for ax, cluster in zip(axes.flat, clusters, strict=False):
        rows = distance[labels == cluster]
        ax.hist(rows, bins=bins, color=f"C{cluster % 10}")
        ax.set_title(f"cluster {cluster} ({len(rows)} rows)", fontsize=9)
    for ax in axes.flat[len(clusters):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("distance_to_cluster")
    for ax in axes[:, 0]:
        ax.set_ylabel("rows")
    return _save(fig, path)


def k_selection(selection: Any, path: str | os.PathLike) -> Path:
    """The curves of a `select_k` result side by side: the SSE with the elbow marked, the mean
    silhouette, and the gap with its standard errors as error bars; each method's suggested k
    is circled.

    Parameters
    ----------
    selection : kmeans_stream.selection.KSelection
    path : str or os.PathLike
        The PNG to write.

    Returns
    -------
    path : pathlib.Path
    """
    ks = np.asarray(selection.ks)
    panels = [("SSE", "elbow", selection.sse, None)]
    if "silhouette" in selection.rules:
        panels.append(("mean silhouette", "silhouette", selection.silhouette, None))
    if "gap" in selection.rules:
        panels.append(("gap", "gap", selection.gap, selection.gap_se))
    fig, axes = _figure(1, len(panels), (4 * len(panels), 3.4), squeeze=False)
    for ax, (title, method, values, errors) in zip(axes[0], panels, strict=True):
        ax.errorbar(ks, values, yerr=errors, marker="o", ms=4, capsize=3)
        chosen = selection.suggested.get(method)
        if chosen is not None:
            at = list(selection.ks).index(chosen)
            ax.plot([chosen], [values[at]], "o", ms=12, mfc="none", mec="crimson", mew=2)
            ax.axvline(chosen, color="crimson", lw=0.8, ls="--")
        if method in selection.rules:
            title += f"\n{method}: k = {chosen}"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("k")
        ax.set_xticks(ks)
    return _save(fig, path)


def _figure(n_rows: int, n_cols: int, size: tuple[float, float], **options: Any) -> tuple:
    """A figure on its own Agg canvas, and its axes."""
    from ._optional import require

    figure = require("matplotlib.figure", "kmeans_stream.plots")
    agg = require("matplotlib.backends.backend_agg", "kmeans_stream.plots")
    fig = figure.Figure(figsize=size, layout="constrained")
    agg.FigureCanvasAgg(fig)
    return fig, fig.subplots(n_rows, n_cols, **options)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=_DPI)
    return path
