"""Cluster quality measures in numpy: the sum of squared distances and the silhouette."""

from __future__ import annotations

import numpy as np

_ROWS = 1024  # rows of the pairwise-distance tile


def sum_squared_distances(X: np.ndarray, centers: np.ndarray) -> float:
    """Sum over rows of the squared Euclidean distance to the closest center, in float64."""
    X64 = np.asarray(X, dtype=np.float64)
    c64 = np.asarray(centers, dtype=np.float64)
    c_norms = np.einsum("ij,ij->i", c64, c64)
    total = 0.0
    for start in range(0, len(X64), _ROWS * 4):
        tile = X64[start:start + _ROWS * 4]
        sq = np.einsum("ij,ij->i", tile, tile)[:, None] - 2.0 * tile @ c64.T + c_norms
        total += float(np.maximum(sq.min(axis=1), 0.0).sum())
    return total


def silhouette_score(X: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient over all rows (Rousseeuw 1987), as scikit-learn defines it.

    A row alone in its cluster scores 0. Memory stays at a (1024, n_samples) tile.
    """
    X64 = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    clusters, codes = np.unique(labels, return_inverse=True)
    if not 2 <= len(clusters) <= len(X64) - 1:
        raise ValueError(
            f"Number of labels is {len(clusters)}. Valid values are 2 to n_samples - 1 "
            "(inclusive)"
        )
    sizes = np.bincount(codes).astype(np.float64)
    one_hot = np.zeros((len(X64), len(clusters)))
    one_hot[np.arange(len(X64)), codes] = 1.0
    norms = np.einsum("ij,ij->i", X64, X64)
    scores = np.empty(len(X64))
    for start in range(0, len(X64), _ROWS):
        tile = X64[start:start + _ROWS]
        sq = norms[start:start + _ROWS, None] - 2.0 * tile @ X64.T + norms[None, :]
        sums = np.sqrt(np.maximum(sq, 0.0)) @ one_hot  # (rows, n_clusters)
        own = codes[start:start + _ROWS]
        rows = np.arange(len(tile))
        own_size = sizes[own]
        a = sums[rows, own] / np.maximum(own_size - 1.0, 1.0)
        means = sums / sizes
        means[rows, own] = np.inf
        b = means.min(axis=1)
        s = (b - a) / np.maximum(a, b)
        scores[start:start + _ROWS] = np.where(own_size > 1, np.nan_to_num(s), 0.0)
    return float(scores.mean())


def silhouette_or_nan(X: np.ndarray, labels: np.ndarray) -> float:
    """`silhouette_score`, or NaN where it is undefined: fewer than 2 clusters among the rows,
    or as many clusters as rows (a sample of a clustering can be either)."""
    if not 2 <= len(np.unique(labels)) <= len(X) - 1:
        return float("nan")
    return silhouette_score(X, labels)
