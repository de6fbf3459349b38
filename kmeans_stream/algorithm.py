"""SageMaker's streaming K-Means, written once against the kernels of a compute backend.

Three steps (spec section 2 and the decisions of section 0):

1. `initialize`: K = k * extra_center_factor centers drawn from the first mini-batch
   (random rows or k-means++), each starting with count 0.
2. The streaming update of every mini-batch, epoch after epoch: the exact running (decayed)
   mean, in the kernels' ``stream_batches``.
3. `reduce_centers`: K weighted centers reduced to k by weighted k-means++ / random seeding and
   weighted Lloyd, ``local_lloyd_num_trials`` times, the lowest weighted loss kept.

`LocalTrainer` runs them on this machine with any `kmeans_stream.backends.base.Kernels`; this
module never names a backend. Parameters arrive as the typed, frozen `Params`.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import check_feature_dim
from .backends.base import PLAIN_PROPOSALS, FitResult, Kernels, Reduction, StreamState
from .hyperparameters import DEFAULT_EXTRA_CENTER_FACTOR, DEFAULT_NUM_TRIALS
from .streaming import DENSE_KINDS, StreamingPass

logger = logging.getLogger(__name__)


class InitializationWarning(UserWarning):
    """The first mini-batch is smaller than K: K is lowered to the rows available, as SageMaker."""


@dataclass(frozen=True)
class Params:
    """The hyperparameters the algorithm reads, typed, with every 'auto' resolved."""

    k: int
    mini_batch_size: int = 5000
    epochs: int = 1
    init_method: str = "random"
    extra_center_factor: int | None = None  # None: 'auto'
    half_life_time_size: int = 0
    local_lloyd_init_method: str = "kmeans++"
    local_lloyd_max_iter: int = 300
    local_lloyd_num_trials: int = DEFAULT_NUM_TRIALS
    local_lloyd_tol: float = 1e-4
    shuffle: bool = False  # 'auto' resolved: True unless half_life_time_size is set
    reassignment_ratio: float = 0.0
    shuffle_buffer: int | str = "64MiB"  # rows, or a size such as '64MiB'
    feature_dim: int | None = None
    eval_metrics: tuple[str, ...] = ("msd",)
    # Every validated hyperparameter value as given ('auto' unresolved), for a trainer that
    # hands the fit to another program (a SageMaker job is sent them as strings).
    hyperparameters: tuple[tuple[str, Any], ...] = ()

    @property
    def parity(self) -> bool:
        """SageMaker's algorithm exactly: the source's order and no reassignment."""
        return not self.shuffle and self.reassignment_ratio == 0

    @classmethod
    def from_hyperparameters(cls, values: Mapping[str, Any]) -> Params:
        """From validated hyperparameter values (`kmeans_stream.hyperparameters.validate_all`)."""
        factor = values["extra_center_factor"]
        trials = values["local_lloyd_num_trials"]
        return cls(
            k=values["k"],
            mini_batch_size=values["mini_batch_size"],
            epochs=values["epochs"],
            init_method=values["init_method"],
            extra_center_factor=None if factor == "auto" else int(factor),
            half_life_time_size=values["half_life_time_size"],
            local_lloyd_init_method=values["local_lloyd_init_method"],
            local_lloyd_max_iter=values["local_lloyd_max_iter"],
            local_lloyd_num_trials=DEFAULT_NUM_TRIALS if trials == "auto" else int(trials),
            local_lloyd_tol=float(values["local_lloyd_tol"]),
            shuffle=_shuffles(values["shuffle"], values["half_life_time_size"]),
            reassignment_ratio=float(values["reassignment_ratio"]),
            shuffle_buffer=values["shuffle_buffer"],
            feature_dim=values["feature_dim"],
            eval_metrics=tuple(values["eval_metrics"]),
            hyperparameters=tuple(values.items()),
        )


def _shuffles(shuffle: bool | str, half_life: int) -> bool:
    """'auto' shuffles unless decay is on: with a half-life, recent rows are meant to weigh
    more, which has a meaning only in the source's own order."""
    return half_life == 0 if shuffle == "auto" else bool(shuffle)


class LocalTrainer:
    """The whole fit on this machine, on the kernels of one compute backend."""

    def __init__(self, kernels: Kernels) -> None:
        self.kernels = kernels

    def fit(self, source: Any, params: Params, rng: np.random.Generator,
            test: Any = None) -> FitResult:
        """`params.epochs` streaming passes over `source`, then the reduction from K to k and,
        for in-memory data outside parity mode, the refinement on the data (`_solve`). `test`
        is not read here: the estimator scores it.

        With more than one epoch, the solution after the first is kept when the last is worse
        on the data: more epochs never end worse than one.
        """
        if params.epochs > 1 and not source.reiterable:
            raise ValueError(
                f"epochs={params.epochs} needs a source that can be read again, but "
                f"{source.description} is a one-shot iterator; pass a list, an array, a path "
                "or a URI, or set epochs=1."
            )
        pass_ = self._pass(params, rng)
        first = None
        for epoch in range(params.epochs):
            logger.info("epoch %d/%d: %s", epoch + 1, params.epochs, source.description)
            pass_.run(source)
            if epoch == 0 < params.epochs - 1 and refines(source, params):
                first = self._solve(pass_, source, params, rng)
        result = self._solve(pass_, source, params, rng)
        if first is not None and first.inertia < result.inertia:
            logger.info("the first epoch's solution is better on the data: kept")
            first.state, first.n_epochs = result.state, result.n_epochs
            return first
        return result

    def partial_fit(self, source: Any, params: Params, rng: np.random.Generator,
                    state: StreamState | None) -> StreamState:
        """One pass over `source` continuing `state` (None: initialise from its first rows).

        `state` is not modified; the new state is returned, on the host. Its data are cast to
        the dtype of `state`, fixed by the first call.
        """
        pass_ = self._pass(params, rng, state)
        pass_.run(source)
        return pass_.host_state(source.description)

    def reduce(self, state: StreamState, params: Params, rng: np.random.Generator) -> Reduction:
        """The reduction from K to k of a streaming state (`rng` is not advanced)."""
        return reduce_centers(state, params, self.kernels, copy.deepcopy(rng))

    def _pass(self, params: Params, rng: np.random.Generator,
              state: StreamState | None = None) -> StreamingPass:
        def start(first: np.ndarray, weights: np.ndarray | None) -> StreamState:
            return initialize(first, weights, params, self.kernels, rng)

        return StreamingPass(self.kernels, params, rng, start, state)

    def _solve(self, pass_: StreamingPass, source: Any, params: Params,
               rng: np.random.Generator) -> FitResult:
        """The k centers of the state so far; refined on in-memory data outside parity mode."""
        state = pass_.host_state(source.description)
        reduction = reduce_centers(state, params, self.kernels, copy.deepcopy(rng))
        result = FitResult(reduction, state, state.centers.shape[1], state.centers.dtype,
                           params.epochs)
        if refines(source, params):
            self._refine(result, pass_.dense, source.sample_weight, params)
        return result

    def _refine(self, result: FitResult, X: Any, weights: np.ndarray | None,
                params: Params) -> None:
        """Lloyd on the data from the reduced centers, until a move would lower the loss by
        at most local_lloyd_tol (relative): one pass when the stream already found a fixed
        point, the labels of the training rows coming with it."""
        kernels, reduction = self.kernels, result.reduction
        centers = kernels.asarray(reduction.centers.astype(result.dtype))
        labels = kernels.empty(X.shape[0], np.int32, like=X)
        workspace = kernels.workspace(result.dtype, len(reduction.centers), X.shape[1], 0)
        loss, moves = kernels.refine(X, weights, centers, labels, params.local_lloyd_max_iter,
                                     params.local_lloyd_tol, workspace)
        logger.info("refined on the data: %d move(s), mean square distance %.6g", moves,
                    loss / (X.shape[0] if weights is None else weights.sum()))
        refined = kernels.to_numpy(centers).astype(np.float64)
        state = result.state
        live = state.counts > 0  # counts_ keep their meaning: the streamed weight, re-binned
        result.reduction = Reduction(
            refined, binned_weights(state.centers[live], state.counts[live], refined, kernels),
            reduction.train_msd, reduction.n_iter,
        )
        result.labels, result.inertia = labels, loss


def refines(source: Any, params: Params) -> bool:
    """Whether the fit ends with Lloyd on the data: in-memory dense data, no decay (which
    weighs recent rows more), and not SageMaker's exact algorithm (parity mode)."""
    return (source.kind in DENSE_KINDS and params.half_life_time_size == 0
            and not params.parity)


def n_initial_centers(k: int, factor: int | None, n_rows: int, n_distinct: int) -> int:
    """K for a first mini-batch of `n_rows` rows of which `n_distinct` differ.

    'auto' (None) is 10, lowered so that K never exceeds the distinct rows (never below k). An
    explicit factor larger than the batch warns and lowers K to the rows, as SageMaker does;
    distinct rows fewer than K are then an error, since K distinct starting centers cannot be
    drawn.
    """
    if n_distinct < k:
        raise ValueError(
            f"The first mini-batch holds {n_distinct} distinct row(s) (n_samples={n_rows}), "
            f"fewer than k={k}: K-Means needs at least k distinct points to initialise."
        )
    if factor is None:
        return max(k, min(k * DEFAULT_EXTRA_CENTER_FACTOR, n_distinct))
    wanted = k * factor
    if wanted > n_rows:
        warnings.warn(
            f"K={wanted} initial centers (k={k} x extra_center_factor={factor}) is more than "
            f"the {n_rows} rows of the first mini-batch; K is lowered to {n_rows}.",
            InitializationWarning,
            stacklevel=4,
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
    _, inverse = np.unique(_row_bytes(X), return_inverse=True)
    _, first = np.unique(inverse.ravel()[order], return_index=True)
    return order[np.sort(first)]


def n_distinct_rows(X: np.ndarray) -> int:
    """How many rows of X differ (as numbers: -0.0 and 0.0 are one)."""
    return len(np.unique(_row_bytes(X)))


def _row_bytes(X: np.ndarray) -> np.ndarray:
    """Each row of X as one opaque value, equal where the rows are equal numbers: a sort of
    these is a sort of bytes, several times faster than ``np.unique(X, axis=0)``'s."""
    X = np.ascontiguousarray(X)
    X = X + X.dtype.type(0)  # -0.0 + 0.0 is 0.0: the one pair of equal numbers of other bytes
    return X.view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()


def initialize(first: np.ndarray, weights: np.ndarray | None, params: Params,
               kernels: Kernels, rng: np.random.Generator) -> StreamState:
    """Draw the K starting centers from the first mini-batch (host rows); counts start at 0.

    Rows of weight 0 are never drawn; 'random' draws distinct rows with probability
    proportional to weight, without replacement.
    """
    check_feature_dim(params.feature_dim, first.shape[1])
    live = first if weights is None else first[weights > 0]
    n_distinct = n_distinct_rows(live)
    n_centers = n_initial_centers(params.k, params.extra_center_factor, len(live), n_distinct)
    if params.init_method == "random":
        order = rng.permutation(len(first)) if weights is None else _weighted_order(weights, rng)
        indices = distinct_first_rows(first, order)[:n_centers]
    else:
        # Plain k-means++ (one candidate per step), as SageMaker's docs describe the init,
        # drawn lazily (exact draws, about one pass over the batch per halving of its potential).
        uniforms = rng.random((n_centers, 2 * PLAIN_PROPOSALS))
        indices = np.empty(n_centers, dtype=np.intp)
        kernels.kmeanspp_plain(first, weights, uniforms, indices)
    logger.debug("initialised %d centers from a first batch of %d rows", n_centers, len(first))
    return StreamState(kernels.asarray(first[indices]),
                       kernels.asarray(np.zeros(n_centers, dtype=np.float64)))


def _weighted_order(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The rows of positive weight in a random order drawn without replacement with probability
    proportional to weight (Efraimidis and Spirakis: largest log(u) / w first)."""
    uniforms = rng.random(len(weights))
    rows = np.flatnonzero(weights > 0)
    keys = np.log(uniforms[rows]) / weights[rows]
    return rows[np.argsort(-keys, kind="stable")]


def n_local_trials(k: int) -> int:
    """Candidates per greedy k-means++ step: 2 + floor(ln k), as scikit-learn."""
    return 2 + int(math.log(k))


def reduce_centers(state: StreamState, params: Params, kernels: Kernels,
                   rng: np.random.Generator) -> Reduction:
    """Reduce the K streaming centers (host arrays) to k: weighted seeding plus weighted Lloyd,
    the best trial kept.

    Centers that never received a point take no part. With as many weighted centers as k (an
    extra_center_factor of 1 among them) there is nothing to reduce and train:msd is 0.
    """
    k = params.k
    live = state.counts > 0
    points = np.ascontiguousarray(state.centers[live], dtype=np.float64)
    weights = np.ascontiguousarray(state.counts[live])
    if len(points) < k:
        raise ValueError(
            f"Only {len(points)} of the K={len(state.counts)} streaming centers received data, "
            f"fewer than k={k}: the data holds fewer than k distinct points."
        )
    if len(points) == k:
        logger.info("No shrinking is required as there are k weighted centers.")
        return Reduction(points, weights.copy(), 0.0, 0)
    logger.info("shrinking %d centers into %d", len(points), k)
    workspace = kernels.workspace(points.dtype, k, points.shape[1], len(points))
    best: tuple[float, np.ndarray, int] | None = None
    for trial, seeds in enumerate(_seed_reduction(points, weights, params, kernels, rng)):
        centers = points[seeds]
        loss, n_iter = kernels.lloyd(points, weights, centers, params.local_lloyd_max_iter,
                                     params.local_lloyd_tol, workspace)
        logger.info("local kmeans attempt #%d. Current mean square distance %.6g",
                    trial, loss / weights.sum())
        if best is None or loss < best[0]:
            best = (loss, centers, n_iter)
    loss, centers, n_iter = best
    final_weights = binned_weights(points, weights, centers, kernels, workspace)
    return Reduction(centers, final_weights, loss / weights.sum(), n_iter)


def binned_weights(points: np.ndarray, weights: np.ndarray, centers: np.ndarray,
                   kernels: Kernels, workspace: Any = None) -> np.ndarray:
    """The weight of the weighted points nearest each center (float64, (n_centers,))."""
    points = np.ascontiguousarray(points, dtype=centers.dtype)
    labels = np.empty(len(points), dtype=np.intp)
    kernels.assign(points, centers, labels, None, workspace)
    return np.bincount(labels, weights=weights, minlength=len(centers))


def _seed_reduction(points: np.ndarray, weights: np.ndarray, params: Params, kernels: Kernels,
                    rng: np.random.Generator) -> np.ndarray:
    """The starting rows of every trial, (local_lloyd_num_trials, k): drawn trial after trial
    from `rng`, as if each trial drew its own just before its Lloyd."""
    k, n_trials = params.k, params.local_lloyd_num_trials
    if params.local_lloyd_init_method == "random":
        p = weights / weights.sum()
        return np.array([rng.choice(len(points), size=k, replace=False, p=p)
                         for _ in range(n_trials)], dtype=np.intp).reshape(n_trials, k)
    indices = np.empty((n_trials, k), dtype=np.intp)
    kernels.kmeanspp_trials(points, weights, rng.random((n_trials, k, n_local_trials(k))),
                            indices)
    return indices
