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

from .algorithm import Reduction, StreamState
from .exceptions import ModelFormatError

FORMAT = "kmeans_stream/1"


def save(model: Any, path: str | os.PathLike) -> Path:
    """Write `model` as a SageMaker-compatible model.tar.gz at `path` (a file, or a folder to
    hold ``model.tar.gz``), atomically; returns the path written."""
    from .io.artifact import write_model_artifact

    model._check_fitted()
    written = write_model_artifact(path, model.cluster_centers_.astype(np.float32), _state(model))
    return Path(written)


def load(path: str | os.PathLike) -> Any:
    """A fitted KMeans from a model.tar.gz (kmeans_stream's or SageMaker's training output),
    a bare ``model_algo-1`` file, or an ``s3://`` URI of either."""
    from .estimator import KMeans, _Fit
    from .io.artifact import read_model_artifact

    centers, state = read_model_artifact(path)
    if state is None:
        model = KMeans(k=centers.shape[0], feature_dim=centers.shape[1])
        weights = np.full(centers.shape[0], np.nan)
        reduction = Reduction(centers.astype(np.float32), weights, float("nan"), 0)
        model._commit(_Fit(None, reduction, np.random.default_rng(), centers.shape[1], "auto"))
        return model
    if state.get("format") != FORMAT:
        raise ModelFormatError(
            f"{path}: kmeans_stream.json has format {state.get('format')!r}, expected {FORMAT!r}"
        )
    try:
        return _restore(KMeans, _Fit, state)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: kmeans_stream.json is malformed: {exc!r}") from exc


def _state(model: Any) -> dict[str, Any]:
    fitted = model._fit
    params = {
        name: (list(value) if isinstance(value, tuple) else value)
        for name, value in model.get_params().items()
    }
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None  # a Generator object does not travel; its state does
    names = getattr(model, "feature_names_in_", None)
    out = {
        "format": FORMAT,
        "hyperparameters": params,
        "dtype": model.cluster_centers_.dtype.name,
        "cluster_centers": model.cluster_centers_.tolist(),
        "counts": fitted.reduction.weights.tolist(),
        "train_msd": fitted.reduction.train_msd,
        "n_iter": fitted.reduction.n_iter,
        "n_features_in": fitted.n_features,
        "backend": fitted.backend,
        "feature_names_in": None if names is None else list(names),
        "rng_state": fitted.rng.bit_generator.state,
        "stream": None,
    }
    if fitted.state is not None:
        out["stream"] = {
            "centers": fitted.state.centers.tolist(),
            "counts": fitted.state.counts.tolist(),
            "n_seen": fitted.state.n_seen,
        }
    return out


def _restore(KMeans: Any, Fit: Any, state: dict[str, Any]) -> Any:
    model = KMeans(**state["hyperparameters"])
    dtype = np.dtype(state["dtype"])
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"unsupported dtype {dtype}")
    centers = np.asarray(state["cluster_centers"], dtype=dtype)
    reduction = Reduction(
        centers, np.asarray(state["counts"], dtype=np.float64), float(state["train_msd"]),
        int(state["n_iter"]),
    )
    stream = None
    if state["stream"] is not None:
        stream = StreamState(
            np.ascontiguousarray(np.asarray(state["stream"]["centers"], dtype=dtype)),
            np.asarray(state["stream"]["counts"], dtype=np.float64),
            int(state["stream"]["n_seen"]),
        )
    rng = np.random.default_rng()
    rng.bit_generator.state = state["rng_state"]
    names = state["feature_names_in"]
    fitted = Fit(stream, reduction, rng, int(state["n_features_in"]), state["backend"],
                 None if names is None else np.asarray(names, dtype=object))
    model._commit(fitted)
    return model
