"""KMeans: SageMaker K-Means' hyperparameters and semantics behind scikit-learn's surface.

The estimator validates, picks a backend, feeds the algorithm batches and keeps the fitted state.
Nothing is assigned to the estimator until a fit has succeeded, so a bad batch never leaves a
half-fitted model behind.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import algorithm
from ._params import ParamsMixin
from ._progress import verbose_logging
from ._validation import (
    check_array,
    check_batch,
    check_feature_dim,
    check_finite,
    check_n_features,
    check_shape,
    feature_names,
    is_sparse,
)
from .backends import get_kernels, resolve_backend
from .exceptions import not_fitted_error
from .hyperparameters import from_strings, numpydoc_parameters, to_strings, validate_all

logger = logging.getLogger(__name__)

# Rows assigned (and, for a sparse matrix, densified) at a time when predicting: the only
# temporaries beyond the answer are one tile's labels and distances.
_PREDICT_ROWS = 65536


@dataclass
class _Fit:
    """Everything one successful fit produces, committed to the estimator in one step."""

    state: algorithm.StreamState | None  # None for a SageMaker model: its state is opaque
    reduction: algorithm.Reduction
    rng: np.random.Generator
    n_features: int
    backend: str
    feature_names: np.ndarray | None = None


class KMeans(ParamsMixin):
    def __init__(
        self,
        k=None,
        *,
        feature_dim=None,
        mini_batch_size=5000,
        epochs=1,
        init_method="random",
        extra_center_factor="auto",
        half_life_time_size=0,
        local_lloyd_init_method="kmeans++",
        local_lloyd_max_iter=300,
        local_lloyd_num_trials="auto",
        local_lloyd_tol=0.0001,
        eval_metrics=("msd",),
        force_dense=None,
        backend="auto",
        random_state=None,
        shuffle=False,
        verbose=False,
    ):
        self.k = k
        self.feature_dim = feature_dim
        self.mini_batch_size = mini_batch_size
        self.epochs = epochs
        self.init_method = init_method
        self.extra_center_factor = extra_center_factor
        self.half_life_time_size = half_life_time_size
        self.local_lloyd_init_method = local_lloyd_init_method
        self.local_lloyd_max_iter = local_lloyd_max_iter
        self.local_lloyd_num_trials = local_lloyd_num_trials
        self.local_lloyd_tol = local_lloyd_tol
        self.eval_metrics = eval_metrics
        self.force_dense = force_dense
        self.backend = backend
        self.random_state = random_state
        self.shuffle = shuffle
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any = None) -> KMeans:
        """Fit on in-memory data or a stream of batches.

        Parameters
        ----------
        X : array-like, DataFrame, scipy.sparse matrix, iterable of 2-D batches, path or URI
            In-memory data is checked whole first; a stream is checked batch by batch, and an
            error names the row where it applies. Paths and ``s3://`` URIs are read by
            `kmeans_stream.io.iter_batches`.
        y : ignored

        Returns
        -------
        self
        """
        hp = validate_all(self.get_params())
        kernels = get_kernels(hp["backend"])
        rng = _make_rng(hp["random_state"])
        with verbose_logging(hp["verbose"]):
            if _is_in_memory(X):
                names = feature_names(X)
                X = check_array(X)
                fitted = self._fit_array(X, hp, kernels, rng)
                fitted.feature_names = names
            else:
                fitted = self._fit_stream(X, hp, kernels, rng)
        self._commit(fitted)
        if isinstance(X, np.ndarray) or is_sparse(X):
            self._set_labels(X)
        return self

    def partial_fit(self, X: Any, y: Any = None) -> KMeans:
        """Stream one more chunk of data through the streaming centers, then reduce to k.

        The first call initialises the K streaming centers from its first mini-batch. A call
        that fails leaves the estimator as it was, so the next call continues as if the bad
        chunk never came. The reduction to k runs after every call.
        """
        hp = validate_all(self.get_params())
        X = check_array(X.toarray() if is_sparse(X) else X)
        previous = getattr(self, "_fit", None)
        if previous is not None:
            check_n_features(X.shape[1], previous.n_features)
            if previous.state is None:
                raise ValueError(
                    "This model was loaded from a SageMaker artifact, whose streaming state is "
                    "opaque; partial_fit cannot continue it. Fit a new model instead."
                )
        check_feature_dim(hp["feature_dim"], X.shape[1])
        kernels = get_kernels(hp["backend"])
        if previous is None:
            rng = _make_rng(hp["random_state"])
            state = algorithm.initialize(X[: hp["mini_batch_size"]], hp, kernels, rng)
        else:
            rng = copy.deepcopy(previous.rng)
            state = copy.deepcopy(previous.state)
        state.update(X, hp, kernels)
        reduction = algorithm.reduce_centers(state, hp, kernels, rng)
        self._commit(_Fit(state, reduction, rng, X.shape[1], resolve_backend(hp["backend"])))
        for stale in ("labels_", "inertia_"):
            self.__dict__.pop(stale, None)
        return self

    def _fit_array(self, X: np.ndarray, hp: dict, kernels: Any, rng: np.random.Generator) -> _Fit:
        check_feature_dim(hp["feature_dim"], X.shape[1])
        batch = hp["mini_batch_size"]
        state = None
        for epoch in range(hp["epochs"]):
            logger.info("epoch %d/%d: %d rows", epoch + 1, hp["epochs"], len(X))
            order = rng.permutation(len(X)) if hp["shuffle"] else None
            first = X[:batch] if order is None else X[np.sort(order[:batch])]
            if state is None:
                state = algorithm.initialize(first, hp, kernels, rng)
            if order is None:
                state.update(X, hp, kernels)
            else:
                for start in range(0, len(X), batch):
                    state.update(X[order[start:start + batch]], hp, kernels)
        reduction = algorithm.reduce_centers(state, hp, kernels, rng)
        return _Fit(state, reduction, rng, X.shape[1], resolve_backend(hp["backend"]))

    def _fit_stream(self, source: Any, hp: dict, kernels: Any, rng: np.random.Generator) -> _Fit:
        from .io.sources import describe_source, is_reiterable, iter_batches

        if hp["epochs"] > 1 and not is_reiterable(source):
            raise ValueError(
                f"epochs={hp['epochs']} needs a source that can be read again, but "
                f"{describe_source(source)} is a one-shot iterator; pass a list, an array, "
                "a path or a URI, or set epochs=1."
            )
        state, n_features = None, None
        for epoch in range(hp["epochs"]):
            logger.info("epoch %d/%d: reading %s", epoch + 1, hp["epochs"],
                        describe_source(source))
            offset = 0
            for raw in iter_batches(source, hp["mini_batch_size"]):
                batch = check_batch(raw, offset)
                if n_features is None:
                    check_feature_dim(hp["feature_dim"], batch.shape[1])
                n_features = batch.shape[1]
                if state is None:
                    state = algorithm.initialize(batch, hp, kernels, rng)
                state.update(batch, hp, kernels)
                offset += len(batch)
        if state is None:
            raise ValueError(
                f"Found 0 sample(s) in {describe_source(source)} while a minimum of 1 is "
                "required by KMeans."
            )
        reduction = algorithm.reduce_centers(state, hp, kernels, rng)
        return _Fit(state, reduction, rng, n_features, resolve_backend(hp["backend"]))

    def _commit(self, fitted: _Fit) -> None:
        self._fit = fitted
        source = fitted.reduction if fitted.state is None else fitted.state
        dtype = source.centers.dtype
        self.cluster_centers_ = fitted.reduction.centers.astype(dtype)
        self.counts_ = fitted.reduction.weights
        self.train_msd_ = fitted.reduction.train_msd
        self.n_iter_ = fitted.reduction.n_iter
        self.n_features_in_ = fitted.n_features
        if fitted.state is not None:
            self.n_samples_seen_ = fitted.state.n_seen
            self.n_streaming_centers_ = len(fitted.state.counts)
        if fitted.feature_names is not None:
            self.feature_names_in_ = fitted.feature_names
        else:
            self.__dict__.pop("feature_names_in_", None)

    def _set_labels(self, X: Any) -> None:
        self.labels_, _, self.inertia_ = self._assign(X, keep_sq_dist=False)

    # ------------------------------------------------------------------ using the model

    def predict(self, X: Any) -> np.ndarray:
        """Index of the closest of the k centers for each row (SageMaker's closest_cluster)."""
        self._check_fitted()
        kernels = get_kernels(self._fit.backend)
        n_rows, tiles = self._tiles(X, finite=False, whole=True)
        labels = np.empty(n_rows, dtype=np.int32)
        for start, tile in tiles:
            with np.errstate(invalid="ignore", over="ignore"):  # bad values are named below
                finite = kernels.nearest(tile, self._centers_for(tile),
                                         labels[start:start + len(tile)])
            if not finite:  # as in _assign: X is scanned only when its scores were not finite
                check_finite(tile, row_offset=start)
        return labels

    def predict_with_distance(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """SageMaker's endpoint answer: (closest_cluster, distance_to_cluster).

        distance_to_cluster is the plain Euclidean distance, not squared (spec section 0).
        """
        labels, sq_dist, _ = self._assign(X)
        return labels, np.sqrt(sq_dist)

    def transform(self, X: Any) -> np.ndarray:
        """Euclidean distance of each row to each of the k centers, shape (n_samples, k)."""
        self._check_fitted()
        kernels = get_kernels(self._fit.backend)
        n_rows, tiles = self._tiles(X)
        out = None
        for start, tile in tiles:
            distances = kernels.transform(tile, self._centers_for(tile))
            if out is None:
                out = np.empty((n_rows, distances.shape[1]), dtype=distances.dtype)
            out[start:start + len(tile)] = distances
        return out

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit on in-memory data and return `labels_`."""
        return self.fit(X).labels_

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit, then the distances of X to the k centers."""
        return self.fit(X).transform(X)

    def score(self, X: Any, y: Any = None) -> float:
        """Negative sum of squared distances to the closest center (scikit-learn's convention)."""
        return -self._assign(X, keep_sq_dist=False)[2]

    def evaluate(self, X: Any) -> dict[str, float]:
        """The `eval_metrics` SageMaker reports on a test channel: 'test:msd' and/or 'test:ssd'."""
        labels, _, total = self._assign(X, keep_sq_dist=False)
        metrics = validate_all(self.get_params())["eval_metrics"]
        values = {"msd": total / len(labels), "ssd": total}
        return {f"test:{name}": values[name] for name in metrics}

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the transform's columns: kmeans0, kmeans1, ..."""
        self._check_fitted()
        return np.asarray([f"kmeans{i}" for i in range(len(self.cluster_centers_))], dtype=object)

    def _assign(self, X: Any, keep_sq_dist: bool = True) -> tuple[np.ndarray, np.ndarray | None,
                                                                 float]:
        """Labels (int32), squared distances (float64, when kept) and their sum, tile by tile,
        so the only extra memory beyond the answer is one tile."""
        self._check_fitted()
        kernels = get_kernels(self._fit.backend)
        # NaN or infinity in a row makes its distance NaN or infinite, so the sum the answer
        # needs anyway tells whether to look; only then is X scanned, to name the place. This
        # saves a whole pass over X on every predict.
        n_rows, tiles = self._tiles(X, finite=False)
        labels = np.empty(n_rows, dtype=np.int32)
        sq_dist = np.empty(n_rows, dtype=np.float64) if keep_sq_dist else None
        total = 0.0
        for start, tile in tiles:
            with np.errstate(invalid="ignore", over="ignore"):  # bad values are named below
                lab, sq = kernels.assign_labels(tile, self._centers_for(tile))
            tile_total = float(sq.sum())
            if not np.isfinite(tile_total):
                check_finite(tile, row_offset=start)
            labels[start:start + len(tile)] = lab
            if sq_dist is not None:
                sq_dist[start:start + len(tile)] = sq
            total += tile_total
        return labels, sq_dist, total

    def _tiles(self, X: Any, finite: bool = True, whole: bool = False) -> tuple[int, Any]:
        """X checked against the fitted model: its row count and its (start, rows) tiles.

        whole: a dense X is one tile (for kernels that write straight into the answer).
        """
        if is_sparse(X):
            X = X.tocsr()
            check_shape(X)
            check_n_features(X.shape[1], self.n_features_in_)
            return X.shape[0], (
                (start, check_batch(X[start:start + _PREDICT_ROWS].toarray(), start))
                for start in range(0, X.shape[0], _PREDICT_ROWS)
            )
        X = check_array(X, finite=finite)
        check_n_features(X.shape[1], self.n_features_in_)
        step = len(X) if whole else _PREDICT_ROWS
        return len(X), ((start, X[start:start + step]) for start in range(0, len(X), step))

    def _centers_for(self, X: np.ndarray) -> np.ndarray:
        centers = self.cluster_centers_
        return centers if centers.dtype == X.dtype else centers.astype(X.dtype)

    def _check_fitted(self) -> None:
        if not hasattr(self, "_fit"):
            raise not_fitted_error(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    # ------------------------------------------------------------------ SageMaker

    def save(self, path: str | os.PathLike) -> Path:
        """Write a model.tar.gz that SageMaker's K-Means image serves and `load` reads back.

        ``model_algo-1`` holds the (k, feature_dim) float32 centers; ``kmeans_stream.json``
        holds the hyperparameters and the fitted state. Written to a temporary name, then
        renamed, so a crash never leaves a half-written model.
        """
        from .persistence import save

        return save(self, path)

    def to_sagemaker_hyperparameters(self, feature_dim: int | None = None) -> dict[str, str]:
        """The string map a CreateTrainingJob call sends for this estimator.

        Unset optional values are left out and local-only knobs (backend, random_state, shuffle,
        verbose) are never sent. feature_dim comes from the argument, else the parameter, else
        the fitted data.
        """
        values = validate_all(self.get_params())
        dim = feature_dim or values["feature_dim"] or getattr(self, "n_features_in_", None)
        if dim is None:
            raise ValueError(
                "feature_dim is unknown: pass feature_dim=, set the parameter, or fit first."
            )
        values["feature_dim"] = validate_all({**self.get_params(), "feature_dim": dim})[
            "feature_dim"
        ]
        return to_strings(values)

    @classmethod
    def from_sagemaker_hyperparameters(cls, hyperparameters: dict[str, str]) -> KMeans:
        """A KMeans from SageMaker's string map (hyperparameters.json, a DescribeTrainingJob).

        force_dense and the container's internal '_*' keys are accepted and ignored.
        """
        return cls(**from_strings(hyperparameters))


KMeans.__doc__ = f"""SageMaker's streaming mini-batch K-Means, run locally.

A streaming pass keeps K = k * extra_center_factor centers, each the exact running (decayed)
mean of the points it received, starting from the first mini-batch; a weighted Lloyd then
reduces them to k. Hyperparameters are SageMaker's, by the same names, as Python values or as
the strings SageMaker sends; they are validated at fit time.

Parameters
----------
{numpydoc_parameters()}

Attributes
----------
cluster_centers_ : ndarray of shape (k, n_features)
counts_ : ndarray of shape (k,)
    The (decayed) number of points behind each final center.
labels_ : ndarray of shape (n_samples,)
    Set when fitted on in-memory data.
inertia_ : float
    Sum of squared distances of the training rows to their closest center (in-memory data).
train_msd_ : float
    SageMaker's train:msd: the best reduction trial's weighted mean squared distance of the K
    streaming centers to the k final centers.
n_features_in_ : int
n_iter_ : int
    Lloyd iterations of the best reduction trial.
n_samples_seen_ : int
n_streaming_centers_ : int
    K, after the first mini-batch lowered it where needed.
"""


def _is_in_memory(X: Any) -> bool:
    """One dense table (an array, a DataFrame, a list of rows) rather than a source to stream."""
    from .io.sources import is_batch_iterable

    if is_sparse(X) or isinstance(X, (str, os.PathLike)) or hasattr(X, "read"):
        return False
    if isinstance(X, np.ndarray) or hasattr(X, "__array__"):
        return True
    return isinstance(X, (list, tuple)) and not is_batch_iterable(X)


def _make_rng(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    return np.random.default_rng(random_state)


__all__ = ["KMeans"]
