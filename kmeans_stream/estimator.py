"""KMeans: SageMaker K-Means' hyperparameters and semantics behind scikit-learn's surface.

The estimator is the one place that knows everybody: it validates the hyperparameters, makes
the `Source` record at the door, hands both to a trainer (`kmeans_stream.backends.base.Trainer`)
and keeps what the trainer returns. Nothing is assigned to the estimator until a fit has
succeeded, so a bad batch never leaves a half-fitted model behind. Predictions resolve their
compute backend at each call: a model carries centers, not a backend.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import backends
from ._estimator_sagemaker import SageMakerMethods
from ._params import ParamsMixin
from ._progress import verbose_logging
from ._validation import check_finite, check_n_features
from .algorithm import LocalTrainer, Params
from .backends.base import Reduction, StreamState, Trainer
from .exceptions import not_fitted_error
from .hyperparameters import validate_all, validate_value
from .io.sources import Source, as_source

# Rows of a sparse or streamed X densified and assigned at a time when predicting.
_PREDICT_ROWS = 65536


@dataclass
class _Fitted:
    """Everything a fit or partial_fit leaves, committed to the estimator in one step."""

    state: StreamState | None  # on the host; None for a SageMaker model (its state is opaque)
    reduction: Reduction | None  # None until first needed after a partial_fit
    params: Params  # as of the last fit or partial_fit, for a reduction still to run
    rng: np.random.Generator
    dtype: np.dtype
    n_features: int
    feature_names: np.ndarray | None = None
    n_iter: int | None = None
    labelled: tuple[np.ndarray, np.ndarray | None] | None = None  # partial_fit's batch
    labels: tuple[np.ndarray, float] | None = None  # (labels_, inertia_)
    metrics: dict[str, float] = field(default_factory=dict)  # a trainer's, and test:*
    attributes: dict[str, Any] = field(default_factory=dict)  # a trainer's fitted attributes


class KMeans(ParamsMixin, SageMakerMethods):
    """SageMaker's streaming mini-batch K-Means, run locally.

    A streaming pass keeps K = k * extra_center_factor centers, each the exact running
    (decayed) mean of the points it received, starting from the first mini-batch; a weighted
    Lloyd then reduces them to k. Hyperparameters are SageMaker's, by the same names, as Python
    values or as the strings SageMaker sends; they are validated at fit time.

    Parameters
    ----------
    k : an int in the range [1, inf), default=None
        Number of clusters (required).
    feature_dim : an int in the range [1, inf) or None, default=None
        Number of features; None takes it from the data. A given value must match the data.
    mini_batch_size : an int in the range [1, inf), default=5000
        Rows per mini-batch of the streaming pass; the first one initialises the centers.
    epochs : an int in the range [1, inf), default=1
        Passes over the training data.
    init_method : a str among {'random', 'kmeans++'}, default='random'
        How the K initial centers are drawn from the first mini-batch.
    extra_center_factor : an int in the range [1, inf) or a str among {'auto'}, default='auto'
        K = k * extra_center_factor centers are kept while streaming; 'auto' is 10, lowered so
        that K never exceeds the distinct rows of the first mini-batch.
    half_life_time_size : an int in the range [0, inf), default=0
        Points after which an observation's weight halves; 0 means no decay.
    local_lloyd_init_method : a str among {'random', 'kmeans++'}, default='kmeans++'
        Initialisation of the final weighted Lloyd reduction from K to k centers.
    local_lloyd_max_iter : an int in the range [1, inf), default=300
        Most Lloyd iterations of one reduction trial.
    local_lloyd_num_trials : an int in the range [1, inf) or a str among {'auto'}, default='auto'
        Reduction trials, the lowest weighted loss kept; 'auto' is 10.
    local_lloyd_tol : a float in the range [0.0, 1.0], default=0.0001
        Relative change of the weighted loss under which a reduction trial stops.
    eval_metrics : a list of str among {'msd', 'ssd'}, default=('msd',)
        Metrics reported on a test channel: 'msd', 'ssd' or both.
    force_dense : a bool or None, default=None
        Accepted for SageMaker compatibility and ignored (the SDK always sends 'True').
    backend : a str among 'auto' and the registered backends, default='auto' (local)
        Where the fit runs and predictions are computed; 'auto' is the fastest backend installed
        here (numba, else numpy). Resolved again at each predict, so a model fitted anywhere
        predicts anywhere. Local only.
    precision : a str among {'fp32', 'tf32'}, default='fp32' (local)
        Arithmetic of the GPU's matrix products: 'tf32' lets the cupy backend rank centers with
        TF32 tensor cores (distances and sums stay fp32/fp64); CPU backends ignore it. Local
        only.
    scheduler_address : a non-empty str or None, default=None (local)
        The Dask scheduler backend='dask' fits on (such as 'tcp://10.0.0.5:8786'); None uses the
        active distributed.Client where there is one, else a LocalCluster of one worker process
        per core, started for the fit and closed after. Local only.
    random_state : an int in the range [0, inf), a numpy Generator or None, default=None (local)
        Seed of every random choice; the same seed, data and hyperparameters give the same
        centers on the same backend. Local only.
    shuffle : a bool or a str among {'auto'}, default='auto' (local)
        Order-robust batching: in-memory rows are visited in a new random order each epoch (X is
        not copied), streamed rows pass through a shuffle buffer and the files of a folder,
        manifest or S3 prefix are read in a random order. 'auto' shuffles unless
        half_life_time_size is set (decay weighs recent rows, so the source's order is meant).
        False keeps the source's order, as SageMaker. Local only.
    reassignment_ratio : a float in the range [0.0, inf), default=0.01 (local)
        Centers whose count falls below this fraction of the largest count, or whose rows a far
        point would serve better, are moved to a point far from every center (scikit-learn's
        MiniBatchKMeans name and meaning); 0 turns reassignment off. Local only.
    shuffle_buffer : an int in the range [1, inf) or a size such as '64MiB', default='64MiB' (local)
        Size of the shuffle buffer of streamed sources, in rows (an int) or memory (such as
        '64MiB'): the memory a shuffled stream adds. Local only.
    compute_labels : a bool, default=True (local)
        Set labels_ and inertia_ of the training rows after a fit on in-memory data (scikit-
        learn's MiniBatchKMeans name and meaning): where the final refinement did not label them
        already, one more assignment pass, and n int32 of memory either way. False leaves them
        unset. Local only.
    role : a non-empty str or None, default=None (job)
        The IAM role (its ARN, or its name in the caller's account) a SageMaker training job
        runs as; required with backend='sagemaker'.
    instance_type : a non-empty str or None, default=None (job)
        The SageMaker instance type of the training job (such as 'ml.c5.xlarge'); required with
        backend='sagemaker'.
    instance_count : an int in the range [1, inf), default=1 (job)
        Instances of the SageMaker training job; the data is written in one shard per instance.
    sagemaker_options : a dict or None, default=None (job)
        Further settings of the SageMaker training job (region, bucket, output_path, image_uri,
        volume_size, max_runtime, use_spot, max_wait, tags, volume_kms_key, output_kms_key,
        subnets, security_group_ids, logs...; see kmeans_stream.backends.sagemaker.JobOptions).
    verbose : a bool or an int in the range [0, inf), default=False (local)
        Progress and per-trial log lines. Local only.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (k, n_features)
        The k final centers, in the dtype of the training data (float32 or float64).
    counts_ : ndarray of shape (k,)
        The (decayed, weighted) number of points behind each final center.
    labels_ : ndarray of shape (n_samples,), int32
        Closest center of each training row, unless compute_labels=False: set by a fit on
        in-memory data (and by `fit_predict` on any source that can be read again); after
        `partial_fit`, of the rows of its last call, as scikit-learn's MiniBatchKMeans.
    inertia_ : float
        Sum of the (weighted) squared distances of those rows to their closest center.
    train_msd_ : float
        SageMaker's train:msd: the best reduction trial's weighted mean squared distance of the
        K streaming centers to the k final centers.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,), dtype object
        Column names of a DataFrame fitted on, when they are all strings.
    n_iter_ : int
        Passes over the training data by `fit` (``epochs``), as scikit-learn's
        MiniBatchKMeans counts them; `partial_fit` leaves it as it was.
    n_steps_ : int
        Mini-batches streamed, over every fit and partial_fit of this model.
    reduction_n_iter_ : int
        Lloyd iterations of the best trial of the final reduction from K to k.
    n_samples_seen_ : int
        Rows streamed, every epoch counted.
    n_streaming_centers_ : int
        K, after the first mini-batch lowered it where needed.
    metrics_ : dict of str to float
        ``train:msd`` and, after ``fit(X, test=...)``, ``test:msd`` and/or ``test:ssd``; for
        backend='sagemaker', the job's final metrics as SageMaker reported them.
    training_job_name_, model_data_ : str
        After backend='sagemaker' (or `attach`): the training job's name and the ``s3://``
        URI of its model.tar.gz.

    Notes
    -----
    After `partial_fit` the reduction from K to k runs lazily, once, when the centers are first
    needed, so streaming many small chunks costs about one fit.
    """

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
        precision="fp32",
        scheduler_address=None,
        random_state=None,
        shuffle="auto",
        reassignment_ratio=0.01,
        shuffle_buffer="64MiB",
        compute_labels=True,
        role=None,
        instance_type=None,
        instance_count=1,
        sagemaker_options=None,
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
        self.precision = precision
        self.scheduler_address = scheduler_address
        self.random_state = random_state
        self.shuffle = shuffle
        self.reassignment_ratio = reassignment_ratio
        self.shuffle_buffer = shuffle_buffer
        self.compute_labels = compute_labels
        self.role = role
        self.instance_type = instance_type
        self.instance_count = instance_count
        self.sagemaker_options = sagemaker_options
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None, *, test: Any = None,
            skip_header: bool = False) -> KMeans:
        """Fit on in-memory data or a stream of batches.

        Parameters
        ----------
        X : array-like, DataFrame, scipy.sparse matrix, iterable of 2-D batches, path or URI
            In-memory data is checked whole first; a stream is checked batch by batch, and an
            error names the row where it applies. Paths and ``s3://`` URIs are read by
            `kmeans_stream.io.iter_batches`.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each row: the streaming update and the reduction weigh
            each row by it, and an integer weight counts as that many copies of the row.
        test : same kinds as X, optional
            An evaluation set, SageMaker's test channel: `metrics_` gets its ``test:msd``
            and/or ``test:ssd`` (as `eval_metrics` asks).
        skip_header : bool, default False
            Drop the first line of each CSV file of X (and of `test`); SageMaker's CSV has no
            header, so by default every line is data.

        Returns
        -------
        self : KMeans
            The fitted estimator.
        """
        values = validate_all(self.get_params())
        source = as_source(X, sample_weight, skip_header=skip_header)
        test_source = None if test is None else as_source(test, skip_header=skip_header)
        if test_source is not None and None not in (test_source.n_features, source.n_features) \
                and test_source.n_features != source.n_features:
            raise ValueError(f"test has {test_source.n_features} features, X has "
                             f"{source.n_features}")
        trainer = self._trainer(values, source)
        rng = _make_rng(values["random_state"])
        params = Params.from_hyperparameters(values)
        with verbose_logging(values["verbose"]):
            result = trainer.fit(source, params, rng, test=test_source)
        fitted = _Fitted(result.state, result.reduction, params, _copy_rng(rng), result.dtype,
                         result.n_features, source.feature_names, result.n_epochs,
                         metrics=dict(result.metrics), attributes=dict(result.attributes))
        if values["compute_labels"]:
            if result.labels is not None:  # the fit's last pass over the data labelled them
                fitted.labels = (result.labels, result.inertia)
            elif source.in_memory:
                fitted.labels = self._labels_of(fitted, source)
        if test_source is not None and not any(m.startswith("test:") for m in result.metrics):
            fitted.metrics.update(self._test_metrics(fitted, test_source))
        self._commit(fitted)
        return self

    def partial_fit(self, X: Any, y: Any = None, sample_weight: Any = None, *,
                    skip_header: bool = False) -> KMeans:
        """Stream one more chunk of data through the K streaming centers.

        The first call initialises the K centers from its first mini-batch. Only the streaming
        state is updated: the reduction from K to k runs once, when the centers are next
        needed. A call that fails leaves the estimator as it was, so the next call continues as
        if the bad chunk never came.

        Parameters
        ----------
        X : array-like, DataFrame, scipy.sparse matrix, iterable of 2-D batches, path or URI
            Cast to the dtype of the first call's data.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each row.
        skip_header : bool, default False
            Drop the first line of each CSV file.

        Returns
        -------
        self : KMeans
            The updated estimator; `labels_` and `inertia_` then describe this chunk.
        """
        values = validate_all(self.get_params())
        source = as_source(X, sample_weight, skip_header=skip_header)
        previous = getattr(self, "_fitted", None)
        if previous is not None:
            if previous.state is None:
                raise ValueError(
                    "This model was loaded from a SageMaker artifact, whose streaming state is "
                    "opaque; partial_fit cannot continue it. Fit a new model instead."
                )
            self._check_feature_names(source)
            if source.n_features is not None:
                check_n_features(source.n_features, previous.n_features)
        trainer = self._trainer(values, source)
        if not hasattr(trainer, "partial_fit"):
            raise ValueError(f"backend={values['backend']!r} fits whole data sets only; use fit.")
        rng = _make_rng(values["random_state"]) if previous is None else \
            _copy_rng(previous.rng)
        params = Params.from_hyperparameters(values)
        with verbose_logging(values["verbose"]):
            state = trainer.partial_fit(source, params, rng,
                                        None if previous is None else previous.state)
        names = source.feature_names if previous is None else previous.feature_names
        fitted = _Fitted(state, None, params, _copy_rng(rng), state.centers.dtype,
                         state.centers.shape[1],
                         names, None if previous is None else previous.n_iter)
        if source.in_memory and source.kind != "device" and values["compute_labels"]:
            fitted.labelled = (_own_copy(source.dense() if source.kind != "sparse"
                                         else source.data), source.sample_weight)
        self._commit(fitted)
        return self

    def _trainer(self, values: dict[str, Any], source: Source) -> Trainer:
        backend = backends.lookup(values["backend"])
        instance = backends.load(backend.name, **values)
        if backend.kind == "trainer":
            return instance
        if source.kind == "device" and not getattr(instance, "device", False):
            raise ValueError(
                f"{source.description} lives on a GPU, but backend={backend.name!r} computes on "
                "the CPU: use a GPU backend, or copy X to the host first (X.get())."
            )
        return LocalTrainer(instance)

    def _commit(self, fitted: _Fitted) -> None:
        for name in getattr(getattr(self, "_fitted", None), "attributes", ()):
            self.__dict__.pop(name, None)
        self._fitted = fitted
        self.__dict__.update(fitted.attributes)
        self.n_features_in_ = fitted.n_features
        if fitted.state is not None:
            self.n_samples_seen_ = fitted.state.n_seen
            self.n_steps_ = fitted.state.n_steps
            self.n_streaming_centers_ = len(fitted.state.counts)
        if fitted.n_iter is not None:
            self.n_iter_ = fitted.n_iter
        if fitted.feature_names is not None:
            self.feature_names_in_ = fitted.feature_names
        else:
            self.__dict__.pop("feature_names_in_", None)

    # ------------------------------------------------------------------ fitted state

    def _reduced(self, fitted: _Fitted | None = None) -> Reduction:
        """The k final centers: computed once, on first need, after a partial_fit."""
        if fitted is None:
            self._check_fitted()
            fitted = self._fitted
        if fitted.reduction is None:
            trainer = LocalTrainer(self._predict_kernels())
            fitted.reduction = trainer.reduce(fitted.state, fitted.params, fitted.rng)
        return fitted.reduction

    @property
    def metrics_(self) -> dict[str, float]:
        """SageMaker's metrics of the fit: ``train:msd`` and, with a test set, ``test:msd``
        and/or ``test:ssd``; a SageMaker job's final metrics as the job reported them."""
        reduction = self._reduced()
        return {"train:msd": reduction.train_msd, **self._fitted.metrics}

    @property
    def cluster_centers_(self) -> np.ndarray:
        return self._reduced().centers.astype(self._fitted.dtype)

    @property
    def counts_(self) -> np.ndarray:
        return self._reduced().weights

    @property
    def train_msd_(self) -> float:
        return self._reduced().train_msd

    @property
    def reduction_n_iter_(self) -> int:
        return self._reduced().n_iter

    @property
    def labels_(self) -> np.ndarray:
        return self._labelled()[0]

    @property
    def inertia_(self) -> float:
        return self._labelled()[1]

    def _labelled(self) -> tuple[np.ndarray, float]:
        fitted = self.__dict__.get("_fitted")
        if fitted is not None and fitted.labels is None and fitted.labelled is not None:
            X, weights = fitted.labelled
            fitted.labels = self._labels_of(fitted, as_source(X, weights))
        if fitted is None or fitted.labels is None:
            raise AttributeError(
                "labels_ and inertia_ are set by a fit on in-memory data, by fit_predict, and "
                "by partial_fit; this model has none."
            )
        return fitted.labels

    def _test_metrics(self, fitted: _Fitted, source: Source) -> dict[str, float]:
        if source.n_features is not None:
            check_n_features(source.n_features, fitted.n_features)
        labels, _, total = self._assign(source, distances=False, fitted=fitted)
        return _eval_metrics(len(labels), total, fitted.params.eval_metrics)

    def _labels_of(self, fitted: _Fitted, source: Source) -> tuple[np.ndarray, float]:
        """Labels and inertia of `source` under the centers of `fitted` (maybe not committed)."""
        labels, _, inertia = self._assign(source, distances=False, fitted=fitted)
        return labels, inertia

    def __sklearn_is_fitted__(self) -> bool:
        return "_fitted" in self.__dict__

    def _check_fitted(self) -> None:
        if "_fitted" not in self.__dict__:
            raise not_fitted_error(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    # ------------------------------------------------------------------ using the model

    def predict(self, X: Any) -> np.ndarray:
        """Index of the closest of the k centers for each row (SageMaker's closest_cluster).

        Parameters
        ----------
        X : array-like, DataFrame, scipy.sparse matrix, iterable of batches, path, URI, dask
            array or dask DataFrame
            With the features (and, for a DataFrame, the column names) of the training data.

        Returns
        -------
        labels : ndarray of shape (n_samples,), int32
            A dask array for a dask X: computed where its blocks are, when asked for.
        """
        source = as_source(X)
        if source.kind == "dask":
            return self._lazy(source, "predict")
        return self._assign(source, distances=False, total=False)[0]

    def predict_with_distance(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """SageMaker's endpoint answer: (closest_cluster, distance_to_cluster).

        Parameters
        ----------
        X : array-like, DataFrame, scipy.sparse matrix, iterable of batches, path, URI, dask
            array or dask DataFrame

        Returns
        -------
        closest_cluster : ndarray of shape (n_samples,), int32
        distance_to_cluster : ndarray of shape (n_samples,), float64
            The plain Euclidean distance to that center, not squared (spec section 0). Both
            are dask arrays for a dask X.
        """
        source = as_source(X)
        if source.kind == "dask":
            return self._lazy(source, "distance")
        labels, sq_dist, _ = self._assign(source, distances=True)
        return labels, np.sqrt(sq_dist)

    def transform(self, X: Any) -> np.ndarray:
        """Euclidean distance of each row to each of the k centers.

        Parameters
        ----------
        X : array-like, DataFrame, scipy.sparse matrix, dask array or dask DataFrame

        Returns
        -------
        distances : ndarray of shape (n_samples, k), X's float dtype
            A dask array for a dask X.
        """
        source = as_source(X)
        if source.kind == "dask":
            return self._lazy(source, "transform")
        source = self._checked(source)
        kernels = self._predict_kernels()
        centers = self._centers_for(source)
        if source.kind in ("dense", "frame", "device"):
            X = source.dense(finite=False)
            out = kernels.empty((X.shape[0], len(centers)), X.dtype, like=X)
            kernels.transform(X, centers, out)
            if not np.isfinite(float(out.sum())):
                check_finite(kernels.to_numpy(X))
            return out
        parts = []
        for tile, _ in source.batches(_PREDICT_ROWS):
            out = np.empty((len(tile), len(centers)), dtype=tile.dtype)
            kernels.transform(tile, centers, out)
            parts.append(out)
        return np.concatenate(parts)

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        """Fit, then the closest center of every row of X.

        Parameters
        ----------
        X : array-like, DataFrame, scipy.sparse matrix, iterable of batches, path or URI
            A source read front to back must be one that can be read again (not a one-shot
            iterator): its rows are labelled in a second pass.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        labels : ndarray of shape (n_samples,), int32
            Also kept as `labels_` (and their inertia as `inertia_`); for a dask X, the lazy
            `predict` (a dask array), and no `labels_`.
        """
        source = as_source(X, sample_weight)
        if source.kind == "dask":
            return self.fit(source).predict(source)
        if not source.reiterable:
            raise ValueError(
                f"fit_predict labels every row after the fit, but {source.description} is a "
                "one-shot iterator that the fit uses up; pass a list, an array, a path or a URI."
            )
        self.fit(source)
        fitted = self._fitted
        if fitted.labels is None:
            fitted.labels = self._labels_of(fitted, source)
        return fitted.labels[0]

    def fit_transform(self, X: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        """Fit, then the distances of X to the k centers.

        Parameters
        ----------
        X : array-like, DataFrame or scipy.sparse matrix
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        distances : ndarray of shape (n_samples, k)
        """
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Negative (weighted) sum of squared distances to the closest center, as scikit-learn.

        Parameters
        ----------
        X : array-like, DataFrame, scipy.sparse matrix, iterable of batches, path or URI
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        score : float
        """
        return -self._assign(as_source(X, sample_weight), distances=False)[2]

    def evaluate(self, X: Any) -> dict[str, float]:
        """The `eval_metrics` SageMaker reports on a test channel.

        Parameters
        ----------
        X : array-like, DataFrame, scipy.sparse matrix, iterable of batches, path or URI

        Returns
        -------
        metrics : dict
            'test:msd' (mean squared distance to the closest center) and/or 'test:ssd' (their
            sum), as `eval_metrics` asks.
        """
        labels, _, total = self._assign(as_source(X), distances=False)
        return _eval_metrics(len(labels), total, validate_value("eval_metrics", self.eval_metrics))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the transform's columns.

        Parameters
        ----------
        input_features : ignored

        Returns
        -------
        names : ndarray of str objects
            ``kmeans0``, ``kmeans1``, ... one per center.
        """
        self._check_fitted()
        return np.asarray([f"kmeans{i}" for i in range(self._reduced().centers.shape[0])],
                          dtype=object)

    def _assign(self, source: Source, distances: bool, total: bool = True,
                fitted: _Fitted | None = None) -> tuple[np.ndarray, Any, float]:
        """Labels (int32), squared distances (float64, when asked for) and their (weighted)
        total (unless `total` is False: then a sum that is finite iff X is), under the centers
        of `fitted` (by default the committed fit). NaN or infinity in a row makes the total not
        finite, so X is scanned to name the place only then: no extra pass over X on every
        predict."""
        if fitted is None:
            source = self._checked(source)
        kernels = self._predict_kernels()
        centers = self._centers_for(source, fitted)
        if source.kind in ("dense", "frame", "device"):
            return self._assign_dense(source, kernels, centers, distances, total)
        parts, found = [], 0.0
        width = (fitted or self._fitted).n_features
        for tile, weights in source.batches(_PREDICT_ROWS):
            check_n_features(tile.shape[1], width)
            labels = np.empty(len(tile), dtype=np.int32)
            sq_dist = np.empty(len(tile), dtype=np.float64)
            tile_total = kernels.assign(tile, centers, labels, sq_dist, None)
            found += tile_total if weights is None else float(sq_dist @ weights)
            parts.append((labels, sq_dist))
        if not parts:
            raise ValueError(f"Found 0 sample(s) in {source.description}.")
        labels = np.concatenate([p[0] for p in parts])
        return labels, np.concatenate([p[1] for p in parts]) if distances else None, found

    def _assign_dense(self, source: Source, kernels: Any, centers: np.ndarray, distances: bool,
                      total: bool) -> tuple[np.ndarray, Any, float]:
        """`_assign` of one dense table: one kernel call, or tiles of rows when a total is
        wanted without the distances (so that they never take n float64 at once)."""
        X = source.dense(finite=False)
        n = X.shape[0]
        weights = source.sample_weight
        workspace = kernels.workspace(X.dtype, len(centers), X.shape[1], 0)
        labels = kernels.empty(n, np.int32, like=X)
        sq_dist = kernels.empty(n, np.float64, like=X) if distances else None
        step = n if distances or not total else _PREDICT_ROWS
        tile = None if distances or not total else kernels.empty(min(n, step), np.float64, like=X)
        found = 0.0
        for start in range(0, n, step):
            rows = slice(start, start + step)
            out = sq_dist[rows] if distances else None if tile is None else tile[:len(X[rows])]
            tile_total = kernels.assign(X[rows], centers, labels[rows], out, workspace)
            if weights is not None and out is not None:
                tile_total = float(kernels.to_numpy(out) @ weights[rows])
            found += tile_total
        if not np.isfinite(found):
            check_finite(kernels.to_numpy(X))
        return labels, sq_dist, found

    def _checked(self, source: Source) -> Source:
        """The source checked against the fitted model: its features and their names."""
        self._check_fitted()
        self._check_feature_names(source)  # first: a missing column names itself
        if source.n_features is not None:
            check_n_features(source.n_features, self._fitted.n_features)
        return source

    def _check_feature_names(self, source: Source) -> None:
        """scikit-learn's rule: names seen at fit must come back, in the same order."""
        fitted_names = self._fitted.feature_names if "_fitted" in self.__dict__ else None
        _check_names(fitted_names, source.feature_names, source.kind, type(self).__name__)

    def _centers_for(self, source: Source, fitted: _Fitted | None = None) -> np.ndarray:
        fitted = fitted or self._fitted
        centers = self._reduced(fitted).centers
        return np.ascontiguousarray(centers, dtype=source.dtype or fitted.dtype)

    def _predict_backend(self) -> tuple[str, dict[str, Any]]:
        """The compute backend of the `backend` parameter as it is now ('auto' for a trainer
        backend) and its options."""
        name = validate_value("backend", self.backend)
        options = {"precision": validate_value("precision", self.precision)}
        return (name if backends.lookup(name).kind == "compute" else "auto"), options

    def _predict_kernels(self) -> Any:
        """The compute kernels predictions run on (`_predict_backend`)."""
        name, options = self._predict_backend()
        return backends.load(name, **options)

    def _lazy(self, source: Source, what: str) -> Any:
        """predict ('predict'), transform ('transform') or predict_with_distance ('distance')
        on a dask collection: dask arrays, computed where its blocks are, each block loading
        the same compute backend there."""
        from .backends.dask import lazy_assign

        source = self._checked(source)
        name, options = self._predict_backend()
        return lazy_assign(source, self._centers_for(source), what, name, options)


def _eval_metrics(n_rows: int, total: float, names: Any) -> dict[str, float]:
    """SageMaker's test metrics of `n_rows` rows whose squared distances sum to `total`:
    ``test:msd`` and/or ``test:ssd``, as `names` (eval_metrics) asks."""
    values = {"msd": total / n_rows, "ssd": total}
    return {f"test:{name}": values[name] for name in names}


def _check_names(fitted: np.ndarray | None, given: np.ndarray | None, kind: str,
                 estimator: str) -> None:
    if fitted is None and given is None:
        return
    if given is None:
        if kind in ("dense", "frame"):
            warnings.warn(f"X does not have valid feature names, but {estimator} was fitted "
                          "with feature names", UserWarning, stacklevel=4)
        return
    if fitted is None:
        warnings.warn(f"X has feature names, but {estimator} was fitted without feature names",
                      UserWarning, stacklevel=4)
        return
    if len(fitted) == len(given) and (fitted == given).all():
        return
    unseen = sorted(set(given) - set(fitted))
    missing = sorted(set(fitted) - set(given))
    message = "The feature names should match those that were passed during fit.\n"
    if unseen:
        message += "Feature names unseen at fit time:\n" + _listed(unseen)
    if missing:
        message += "Feature names seen at fit time, yet now missing:\n" + _listed(missing)
    if not unseen and not missing:
        message += "Feature names must be in the same order as they were in fit.\n"
    raise ValueError(message)


def _listed(names: list[str], most: int = 5) -> str:
    lines = [f"- {name}\n" for name in names[:most]]
    return "".join(lines) + ("- ...\n" if len(names) > most else "")


def _own_copy(X: Any) -> Any:
    """A copy the caller cannot change under us (a partial_fit chunk is often a reused buffer)."""
    return X.copy()


def _make_rng(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    return np.random.default_rng(random_state)  # a Generator is used (and advanced) as it is


def _copy_rng(rng: np.random.Generator) -> np.random.Generator:
    copy = np.random.default_rng()
    copy.bit_generator.state = rng.bit_generator.state
    return copy


__all__ = ["KMeans"]
