"""Input checks with scikit-learn's wording, without importing scikit-learn."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np


def is_sparse(X: Any) -> bool:
    """True for a scipy.sparse matrix or array (scipy is never imported just to ask)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X)


def check_array(
    X: Any, *, name: str = "X", estimator: str = "KMeans", finite: bool = True
) -> np.ndarray:
    """A 2-D, finite float32 or float64 array from `X`, as scikit-learn's check_array.

    float32 and float64 keep their dtype; other numeric input becomes float64. A float32 or
    float64 C-contiguous array is returned as it is, without a copy. ``finite=False`` leaves
    the NaN / infinity check to a caller that can do it more cheaply.
    """
    array = np.asarray(X)
    if array.dtype.kind == "c":
        raise ValueError("Complex data not supported")
    if array.dtype not in (np.float32, np.float64):
        try:
            array = array.astype(np.float64)
        except TypeError as exc:  # a TypeError, as scikit-learn raises for object arrays
            raise TypeError(f"{name} must hold numbers: {exc}") from exc
    if array.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {array.ndim}D array instead: {name}.shape={array.shape}. "
            "Reshape your data either using array.reshape(-1, 1) if your data has a single "
            "feature or array.reshape(1, -1) if it contains a single sample."
        )
    check_shape(array, name=name, estimator=estimator)
    if finite:
        check_finite(array, name=name)
    return np.ascontiguousarray(array)


def check_shape(array: np.ndarray, *, name: str = "X", estimator: str = "KMeans") -> None:
    """At least one sample and one feature, with scikit-learn's message."""
    n_samples, n_features = array.shape
    if n_samples < 1:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={array.shape}) while a minimum of 1 is "
            f"required by {estimator}."
        )
    if n_features < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={array.shape}) while a minimum of 1 is "
            f"required by {estimator}."
        )


def check_finite(array: np.ndarray, *, name: str = "X", row_offset: int = 0) -> None:
    """Raise naming the first row and column holding NaN or infinity.

    One pass and no n_samples x n_features mask in the common case: the sum of finite values
    is finite unless it overflows, and only then (or when something is wrong) is the mask
    built, to tell an overflow from a bad value and to name its place.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(array.sum()):
            return
    if np.isfinite(array).all():
        return
    row, col = np.argwhere(~np.isfinite(array))[0]
    value = array[row, col]
    what = "NaN" if np.isnan(value) else "infinity or a value too large for dtype('float64')"
    raise ValueError(
        f"Input {name} contains {what} (first at row {row + row_offset}, column {col})."
    )


def check_n_features(n_features: int, expected: int, *, estimator: str = "KMeans",
                     where: str = "") -> None:
    """The feature count must match what the estimator was fitted (or started) with."""
    if n_features != expected:
        raise ValueError(
            f"X has {n_features} features, but {estimator} is expecting {expected} features "
            f"as input{where}."
        )


def check_batch(batch: Any, row_offset: int) -> np.ndarray:
    """One batch of a stream as a finite, C-contiguous float32 or float64 2-D array.

    Errors name rows counted from the start of the stream (`row_offset` is the batch's first).
    """
    array = np.asarray(batch)
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"Each batch must be 2-D; the batch starting at row {row_offset} has shape "
            f"{array.shape}."
        )
    check_finite(array, row_offset=row_offset)
    return np.ascontiguousarray(array)


def check_feature_dim(feature_dim: int | None, n_features: int) -> None:
    """A feature_dim hyperparameter that is set must match the data."""
    if feature_dim is not None and feature_dim != n_features:
        raise ValueError(f"feature_dim={feature_dim} but the data has {n_features} features.")


def feature_names(X: Any) -> np.ndarray | None:
    """A DataFrame's column names when they are all strings, as scikit-learn keeps them."""
    columns = getattr(X, "columns", None)
    if columns is not None and len(columns) and all(isinstance(c, str) for c in columns):
        return np.asarray(list(columns), dtype=object)
    return None
