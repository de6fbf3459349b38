"""KMeans.save and kmeans_stream.load: SageMaker's model.tar.gz, plus kmeans_stream's own state.

The artifact's ``model_algo-1`` holds the (k, feature_dim) float32 centers as SageMaker's own
K-Means image reads them; a ``kmeans_stream.json`` member carries the hyperparameters and the
fitted state (exact centers, counts, the K streaming centers, the random generator) so that a
loaded model predicts the same and can go on with ``partial_fit``. SageMaker ignores it. JSON,
never pickle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .algorithm import Params
from .backends.base import Reduction, StreamState
from .exceptions import ModelFormatError

FORMAT = "kmeans_stream/2"
# Format 1 kept a `backend` and `verbose` among the hyperparameters and called the reduction's
# Lloyd iterations `n_iter`; it is read as well.
READABLE = ("kmeans_stream/1", FORMAT)
# Where and how chattily a model runs is the loading machine's business, not the artifact's.
NOT_SAVED = ("backend", "verbose", "scheduler_address")


def save(model: Any, path: str | os.PathLike) -> Path:
    """Write `model` as a SageMaker-compatible model.tar.gz at `path` (a file, or a folder to
    hold ``model.tar.gz``), atomically; returns the path written."""
    from .io.artifact import write_model_artifact

    model._check_fitted()
    written = write_model_artifact(path, model.cluster_centers_.astype(np.float32), _state(model))
    return Path(written)


def model_files(model: Any) -> dict[str, bytes]:
    """The files `save` puts into model.tar.gz, by name (``model_algo-1``, then
    ``kmeans_stream.json``): what a training container writes into ``/opt/ml/model``."""
    from .io.artifact import model_members

    model._check_fitted()
    return model_members(model.cluster_centers_.astype(np.float32), _state(model))


def load(path: str | os.PathLike) -> Any:
    """A fitted KMeans from a model.tar.gz (kmeans_stream's or SageMaker's training output),
    a bare ``model_algo-1`` file, a folder holding the archive's files unpacked (as
    ``/opt/ml/model`` when SageMaker serves), or an ``s3://`` URI of an archive or file."""
    from .estimator import KMeans
    from .io.artifact import read_model_artifact

    centers, state = read_model_artifact(path)
    if state is None:
        return _sagemaker_model(KMeans, centers)
    if state.get("format") not in READABLE:
        raise ModelFormatError(
            f"{path}: kmeans_stream.json has format {state.get('format')!r}, expected one of "
            f"{list(READABLE)}"
        )
    try:
        return _restore(KMeans, state)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: kmeans_stream.json is malformed: {exc!r}") from exc


def _sagemaker_model(KMeans: Any, centers: np.ndarray) -> Any:
    from .estimator import _Fitted

    model = KMeans(k=centers.shape[0], feature_dim=centers.shape[1])
    weights = np.full(centers.shape[0], np.nan)
    reduction = Reduction(centers.astype(np.float32), weights, float("nan"), 0)
    params = Params(k=centers.shape[0], feature_dim=centers.shape[1])
    model._commit(_Fitted(None, reduction, params, np.random.default_rng(),
                          np.dtype(np.float32), centers.shape[1]))
    return model


def _state(model: Any) -> dict[str, Any]:
    fitted = model._fitted
    reduction = model._reduced()
    params = {
        name: (list(value) if isinstance(value, tuple) else value)
        for name, value in model.get_params().items() if name not in NOT_SAVED
    }
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None  # a Generator object does not travel; its state does
    out = {
        "format": FORMAT,
        "hyperparameters": params,
        "dtype": fitted.dtype.name,
        "cluster_centers": reduction.centers.tolist(),
        "counts": reduction.weights.tolist(),
        "train_msd": reduction.train_msd,
        "reduction_n_iter": reduction.n_iter,
        "n_iter": fitted.n_iter,
        "n_features_in": fitted.n_features,
        "feature_names_in": None if fitted.feature_names is None else list(fitted.feature_names),
        "rng_state": fitted.rng.bit_generator.state,
        "stream": None,
    }
    if fitted.state is not None:
        state = fitted.state
        out["stream"] = {
            "centers": state.centers.tolist(),
            "counts": state.counts.tolist(),
            "n_seen": state.n_seen,
            "n_steps": state.n_steps,
            "weight_seen": state.weight_seen,
        }
    return out


def _restore(KMeans: Any, state: dict[str, Any]) -> Any:
    from .estimator import _Fitted
    from .hyperparameters import validate_all

    hyperparameters = {k: v for k, v in state["hyperparameters"].items() if k not in NOT_SAVED}
    model = KMeans(**hyperparameters)
    dtype = np.dtype(state["dtype"])
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"unsupported dtype {dtype}")
    version_one = state["format"] == "kmeans_stream/1"
    reduction = Reduction(
        np.asarray(state["cluster_centers"], dtype=np.float64),
        np.asarray(state["counts"], dtype=np.float64), float(state["train_msd"]),
        int(state["n_iter"] if version_one else state["reduction_n_iter"]),
    )
    stream = None
    if state["stream"] is not None:
        saved = state["stream"]
        stream = StreamState(
            np.ascontiguousarray(np.asarray(saved["centers"], dtype=dtype)),
            np.asarray(saved["counts"], dtype=np.float64), int(saved["n_seen"]),
            int(saved.get("n_steps", 0)), float(saved.get("weight_seen", saved["n_seen"])),
        )
    rng = np.random.default_rng()
    rng.bit_generator.state = state["rng_state"]
    names = state["feature_names_in"]
    params = Params.from_hyperparameters(validate_all(model.get_params()))
    n_iter = None if version_one else state["n_iter"]
    model._commit(_Fitted(stream, reduction, params, rng, dtype, int(state["n_features_in"]),
                          None if names is None else np.asarray(names, dtype=object), n_iter))
    return model
