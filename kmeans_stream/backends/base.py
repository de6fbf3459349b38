"""The backend contract: what a compute backend provides, and what a trainer does.

Two small interfaces, not one full of NotImplementedError:

- `Kernels`, a compute backend (numpy, numba, cupy): steps on arrays. The algorithm
  (`kmeans_stream.algorithm`) is written once against it and drives it; the local trainer there
  wraps any `Kernels` into a `Trainer`.
- `Trainer`, a backend that runs a whole fit (the local algorithm, a SageMaker training job, a
  Dask cluster): ``fit(source, params, rng) -> FitResult``.

Arrays
------
``X`` is a C-contiguous float32 or float64 ``(n_samples, n_features)`` array, either a numpy
array or, for a backend with its own memory (a GPU), one of that backend's arrays; the backend
moves host data itself. ``centers`` has X's dtype; ``counts``, ``weights``, squared distances
and losses are float64. ``weights`` may be None, meaning 1 for every row (no array of ones is
ever made for it). ``labels`` are int32 or intp.

Buffer ownership (one rule)
---------------------------
The caller allocates every output (``labels``, ``sq_dist``, ``out``, ``indices``) and every
INOUT array (``centers``, ``counts``). Scratch space comes from a workspace, made by
`Kernels.workspace` once per fit (or per predict call) and passed to every kernel call of that
fit: never one per mini-batch. The seeding kernels, which run once per fit or per reduction
trial, keep their scratch to themselves. Arguments are marked IN, OUT or INOUT.

Random numbers are drawn by the algorithm on the host and handed in as uniforms, so every
backend consumes the same stream and the same seed gives the same initial centers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

# Plain (lazy) k-means++: proposals per step, the last one after a refresh, so always taken; the
# uniforms per step are two per proposal (draw, accept).
PLAIN_PROPOSALS = 4
# Centers chosen since the last refresh, at most (and at most an eighth of the rows).
PLAIN_MAX_PENDING = 1024


def plain_max_pending(n_samples: int) -> int:
    """Centers pending between refreshes of plain k-means++: PLAIN_MAX_PENDING, at most n/8."""
    return max(1, min(PLAIN_MAX_PENDING, n_samples // 8))


def decay_factor(batch_weight: float, half_life: float) -> float:
    """The factor every count is multiplied by before a batch of `batch_weight` points is added:
    2 ** (-batch_weight / half_life), or 1 when half_life is 0 (spec section 0)."""
    return 2.0 ** (-batch_weight / half_life) if half_life > 0 else 1.0


@runtime_checkable
class Kernels(Protocol):
    """A compute backend: the kernels the algorithm runs, with one contract for all of them.

    The numpy reference (`kmeans_stream.backends.numpy.NumpyKernels`) is the executable
    specification: every other backend is tested equal to it on fresh random inputs.
    """

    name: str

    def asarray(self, A: Any, dtype: Any = None) -> Any:
        """`A` as this backend's array (the same object where it already is one)."""

    def to_numpy(self, A: Any) -> np.ndarray:
        """A numpy array holding `A` (the same object for a host backend)."""

    def empty(self, shape: tuple[int, ...], dtype: Any, like: Any) -> Any:
        """An uninitialised output array on the side `like` lives (host or device)."""

    def workspace(self, dtype: Any, n_centers: int, n_features: int, max_rows: int) -> Any:
        """Scratch for `assign`, `stream_batches` and `lloyd` on data of `dtype`, with
        `n_centers` centers of `n_features` features and calls of at most `max_rows` rows
        (for `stream_batches`, rows per mini-batch). Made once, reused by every call."""

    def assign(self, X: Any, centers: Any, labels: Any, sq_dist: Any, workspace: Any) -> float:
        """Nearest center of each row.

        X (n_samples, n_features) IN; centers (n_centers, n_features) IN;
        labels (n_samples,) int32 or intp OUT; sq_dist (n_samples,) float64 OUT, or None when
        only the labels are wanted. Returns the sum of the squared distances (with sq_dist) or
        of the ranking scores (without): not finite if and only if a row of X is not finite.
        """

    def transform(self, X: Any, centers: Any, out: Any) -> None:
        """out (n_samples, n_centers) OUT, X's dtype: Euclidean distance to each center."""

    def stream_batches(
        self, X: Any, weights: Any, order: Any, batch_size: int, centers: Any, counts: Any,
        half_life: float, workspace: Any,
    ) -> None:
        """SageMaker's streaming update over X cut into mini-batches of `batch_size` rows.

        X IN; weights (n_samples,) float64 IN or None; order (n_visits,) intp IN or None: the
        rows of X to visit, in that order (batch b is rows order[b*batch_size:(b+1)*batch_size];
        n_visits may be fewer than n_samples), None for every row in X's own order; centers
        INOUT; counts (n_centers,) float64 INOUT.

        Per batch, m_j the (weighted) number of its rows nearest center j and mean_j their
        (weighted) mean, M the batch's total weight: n_j <- decay n_j; p_j = m_j / (n_j + m_j);
        c_j <- (1 - p_j) c_j + p_j mean_j; n_j <- n_j + m_j, decay = `decay_factor(M,
        half_life)`: the exact running (decayed) mean of what each center received.
        """

    def lloyd(
        self, X: Any, weights: Any, centers: Any, max_iter: int, tol: float, workspace: Any,
    ) -> tuple[float, int]:
        """Weighted Lloyd from centers (INOUT) until the weighted loss changes by at most tol
        (relative) or max_iter iterations; an empty cluster keeps its center.

        Returns (weighted sum of squared distances to the returned centers, iterations).
        """

    def refine(
        self, X: Any, weights: Any, centers: Any, labels: Any, max_moves: int, tol: float,
        workspace: Any,
    ) -> tuple[float, int]:
        """Lloyd on the data itself, that costs one pass where the centers are already a
        fixed point.

        Each pass assigns every row (labels (n_samples,) int32 or intp OUT) and accumulates
        each cluster's (weighted) sum and mass; then the weighted loss L of the centers and the
        exact drop D = sum_j m_j ||c_j - mean_j||^2 that moving every center to its mean gives
        (before any row changes cluster) are known. It stops when D <= tol * L, when D is
        rounding (at most 1e-12 x sum_j m_j ||mean_j||^2) or after max_moves moves, else moves
        the centers (INOUT; an empty cluster keeps its center) and
        passes again. Returns (L, moves): labels and L are those of the returned centers.
        """

    def kmeanspp(self, X: Any, weights: Any, uniforms: np.ndarray, indices: np.ndarray) -> None:
        """Greedy weighted k-means++: indices (n_centers,) intp OUT, rows of X.

        uniforms (n_centers, n_candidates) float64 in [0, 1) IN, host. Step s draws
        n_candidates rows with probability proportional to weight x squared distance to the
        nearest chosen center (the first: to weight) by searchsorted of uniforms[s, c] x total
        in the running sums, and keeps the one that lowers the weighted potential most (the
        first among equals). Raises ValueError "k-means++ found only {s} distinct weighted
        points for {n_centers} centers" when the potential reaches 0.
        """

    def kmeanspp_trials(
        self, X: Any, weights: Any, uniforms: np.ndarray, indices: np.ndarray
    ) -> None:
        """`kmeanspp` for several independent trials at once: uniforms (n_trials, n_centers,
        n_candidates) IN, host; indices (n_trials, n_centers) intp OUT, trial t's the rows
        `kmeanspp` picks from uniforms[t]. A backend may share work between the trials (the
        numba one computes the distances between the rows once); `each_trial` is the plain
        loop."""

    def kmeanspp_plain(
        self, X: Any, weights: Any, uniforms: np.ndarray, indices: np.ndarray
    ) -> None:
        """Plain weighted k-means++ drawn lazily: indices OUT; uniforms (n_centers,
        2 * PLAIN_PROPOSALS) IN. The rules of the draws, refreshes and acceptances are those
        of `kmeans_stream.backends.numpy.NumpyKernels.kmeanspp_plain`, so that every backend
        picks the same rows from the same uniforms."""


def each_trial(kernels: Kernels, X: Any, weights: Any, uniforms: np.ndarray,
               indices: np.ndarray) -> None:
    """`Kernels.kmeanspp_trials` as one `Kernels.kmeanspp` call per trial."""
    if uniforms.ndim != 3 or indices.shape != uniforms.shape[:2]:
        raise ValueError(f"uniforms of shape {uniforms.shape} do not fit indices of shape "
                         f"{indices.shape}: (n_trials, n_centers, n_candidates) and (n_trials, "
                         "n_centers).")
    for trial in range(len(indices)):
        kernels.kmeanspp(X, weights, uniforms[trial], indices[trial])


@dataclass
class StreamState:
    """The K streaming centers and their (decayed) counts: SageMaker's model state.

    ``centers`` and ``counts`` are arrays of the backend that streams them (device arrays on a
    GPU); a trainer hands them back as numpy arrays in `FitResult`.
    """

    centers: Any  # (K, n_features), the data's dtype
    counts: Any  # (K,), float64
    n_seen: int = 0  # rows streamed, every epoch counted
    n_steps: int = 0  # mini-batches streamed
    weight_seen: float = 0.0  # total sample weight streamed


@dataclass
class Reduction:
    """The k final centers, their weights, and SageMaker's train:msd."""

    centers: np.ndarray  # (k, n_features), float64
    weights: np.ndarray  # (k,), float64
    train_msd: float
    n_iter: int  # Lloyd iterations of the best reduction trial


@dataclass
class FitResult:
    """What a whole fit produces, as numpy arrays on the host."""

    reduction: Reduction
    state: StreamState | None  # None where the state is opaque (a SageMaker artifact)
    n_features: int
    dtype: np.dtype
    n_epochs: int = 1
    metrics: dict[str, float] = field(default_factory=dict)
    labels: Any = None  # (n_samples,) int32 of the training rows, where the fit made them
    inertia: float | None = None  # their (weighted) sum of squared distances
    attributes: dict[str, Any] = field(default_factory=dict)  # fitted attributes a trainer
    # adds, such as a SageMaker job's ``training_job_name_`` and ``model_data_``


@runtime_checkable
class Trainer(Protocol):
    """A backend that runs a whole fit: the local algorithm, a SageMaker job, a Dask cluster.

    ``source`` is the `kmeans_stream.io.sources.Source` record the estimator made at its door;
    ``params`` the typed `kmeans_stream.algorithm.Params`; ``rng`` the fit's numpy Generator;
    ``test`` an evaluation set's Source or None (SageMaker's test channel).
    """

    def fit(self, source: Any, params: Any, rng: np.random.Generator,
            test: Any = None) -> FitResult:
        """Fit on `source`; raise with a clear message and leave nothing half-written.

        A trainer that evaluates `test` itself (a SageMaker job) puts ``test:msd`` and
        ``test:ssd`` into `FitResult.metrics`; for one that ignores it, the estimator computes
        them from the fitted centers."""
