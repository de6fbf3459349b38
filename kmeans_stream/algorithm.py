"""SageMaker's streaming K-Means, written once against the kernels a compute backend provides.

Three steps (spec section 2 and the decisions of section 0):

1. ``initialize``: K = k * extra_center_factor centers drawn from the first mini-batch
   (random rows or k-means++), each starting with count 0.
2. ``StreamState.update``: the exact running (decayed) mean update per mini-batch.
3. ``reduce_centers``: K weighted centers reduced to k by weighted k-means++ / random seeding and
   weighted Lloyd, ``local_lloyd_num_trials`` times, the lowest weighted loss kept.

This module never imports a backend by name: the estimator hands it a kernels object.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends.numpy import PLAIN_PROPOSALS
from .hyperparameters import DEFAULT_EXTRA_CENTER_FACTOR, DEFAULT_NUM_TRIALS

logger = logging.getLogger(__name__)


class InitializationWarning(UserWarning):
    """The first mini-batch is smaller than K: K is lowered to the rows available, as SageMaker."""


@dataclass
class StreamState:
    """The K streaming centers and their (decayed) counts: SageMaker's model state."""

    centers: np.ndarray  # (K, n_features), the data's dtype
    counts: np.ndarray  # (K,), float64
    n_seen: int = 0

    def update(self, X: np.ndarray, hp: dict[str, Any], kernels: Any) -> None:
        """Stream `X` (C-contiguous, the centers' dtype) through in mini-batches."""
        kernels.stream_batches(
            X, hp["mini_batch_size"], self.centers, self.counts, hp["half_life_time_size"]
        )
        self.n_seen += X.shape[0]


@dataclass
class Reduction:
    """The k final centers, their weights, and SageMaker's train:msd."""

    centers: np.ndarray  # (k, n_features), float64
    weights: np.ndarray  # (k,), float64
    train_msd: float
    n_iter: int


def n_initial_centers(k: int, factor: int | str, n_rows: int, n_distinct: int) -> int:
    """K for a first mini-batch of `n_rows` rows of which `n_distinct` differ.

    'auto' is 10, lowered so that K never exceeds the distinct rows (never below k). An explicit
    factor larger than the batch warns and lowers K to the rows, as SageMaker does; distinct rows
    fewer than K are then an error, since K distinct starting centers cannot be drawn.
    """
    if n_distinct < k:
        raise ValueError(
            f"The first mini-batch holds {n_distinct} distinct row(s) (n_samples={n_rows}), "
            f"fewer than k={k}: K-Means needs at least k distinct points to initialise."
        )
    if factor == "auto":
        return max(k, min(k * DEFAULT_EXTRA_CENTER_FACTOR, n_distinct))
    wanted = k * int(factor)
    if wanted > n_rows:
        warnings.warn(
            f"K={wanted} initial centers (k={k} x extra_center_factor={factor}) is more than "
            f"the {n_rows} rows of the first mini-batch; K is lowered to {n_rows}.",
            InitializationWarning,
            stacklevel=3,
        )
        wanted = n_rows
    if wanted > n_distinct:
        raise ValueError(
            f"The first mini-batch holds only {n_distinct} distinct rows, fewer than the "
            f"K={wanted} initial centers (k={k} x extra_center_factor={factor}); lower "
            "extra_center_factor or use 'auto'."
        )
    return wanted


def distinct_first_rows(X: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Row indices of `order`, keeping only the first occurrence of each distinct row."""
    _, inverse = np.unique(X, axis=0, return_inverse=True)
    _, first = np.unique(inverse.ravel()[order], return_index=True)
    return order[np.sort(first)]


def initialize(
    X: np.ndarray, hp: dict[str, Any], kernels: Any, rng: np.random.Generator
) -> StreamState:
    """Draw the K starting centers from the first mini-batch `X`; every count starts at 0."""
    k = hp["k"]
    n_distinct = len(np.unique(X, axis=0))
    n_centers = n_initial_centers(k, hp["extra_center_factor"], len(X), n_distinct)
    if hp["init_method"] == "random":
        indices = distinct_first_rows(X, rng.permutation(len(X)))[:n_centers]
    else:
        # Plain k-means++ (one candidate per step), as SageMaker's docs describe the init,
        # drawn lazily (exact draws, about one pass over the batch per halving of its potential).
        uniforms = rng.random((n_centers, 2 * PLAIN_PROPOSALS))
        indices = kernels.kmeanspp_plain(X, np.ones(len(X)), n_centers, uniforms)
    centers = np.ascontiguousarray(X[indices])
    logger.debug("initialised %d centers from a first batch of %d rows", n_centers, len(X))
    return StreamState(centers=centers, counts=np.zeros(n_centers, dtype=np.float64))


def n_local_trials(k: int) -> int:
    """Candidates per greedy k-means++ step: 2 + floor(ln k), as scikit-learn."""
    return 2 + int(math.log(k))


def reduce_centers(
    state: StreamState, hp: dict[str, Any], kernels: Any, rng: np.random.Generator
) -> Reduction:
    """Reduce the K streaming centers to k: weighted seeding plus weighted Lloyd, best trial kept.

    Centers that never received a point take no part. With as many weighted centers as k (an
    extra_center_factor of 1 among them) there is nothing to reduce and train:msd is 0.
    """
    k = hp["k"]
    live = state.counts > 0
    points = state.centers[live].astype(np.float64)
    weights = state.counts[live]
    if len(points) < k:
        raise ValueError(
            f"Only {len(points)} of the K={len(state.counts)} streaming centers received data, "
            f"fewer than k={k}: the data holds fewer than k distinct points."
        )
    if len(points) == k:
        logger.info("No shrinking is required as there are k weighted centers.")
        return Reduction(points, weights.copy(), 0.0, 0)
    trials = hp["local_lloyd_num_trials"]
    trials = DEFAULT_NUM_TRIALS if trials == "auto" else trials
    logger.info("shrinking %d centers into %d", len(points), k)
    best: tuple[float, np.ndarray, int] | None = None
    for trial in range(trials):
        seeds = _seed_reduction(points, weights, k, hp["local_lloyd_init_method"], kernels, rng)
        centers, loss, n_iter = kernels.lloyd(
            points, weights, points[seeds], hp["local_lloyd_max_iter"], hp["local_lloyd_tol"]
        )
        logger.info(
            "local kmeans attempt #%d. Current mean square distance %.6g",
            trial, loss / weights.sum(),
        )
        if best is None or loss < best[0]:
            best = (loss, centers, n_iter)
    loss, centers, n_iter = best
    labels, _ = kernels.assign_labels(points, centers)
    final_weights = np.bincount(labels, weights=weights, minlength=k)
    return Reduction(centers, final_weights, loss / weights.sum(), n_iter)


def _seed_reduction(
    points: np.ndarray,
    weights: np.ndarray,
    k: int,
    method: str,
    kernels: Any,
    rng: np.random.Generator,
) -> np.ndarray:
    if method == "random":
        return rng.choice(len(points), size=k, replace=False, p=weights / weights.sum())
    uniforms = rng.random((k, n_local_trials(k)))
    return kernels.kmeanspp(points, weights, k, uniforms)
