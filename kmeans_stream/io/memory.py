"""In-memory data as float arrays: numpy arrays and lists of rows, DataFrames, sparse matrices and
device (GPU) arrays, each told apart without importing the library that made it.

Numbers keep float32 or float64 and become float64 otherwise, as scikit-learn's check_array;
what cannot be numbers is refused with a message naming the column.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..exceptions import DataFormatError
from .streams import float_dtype

__all__ = [
    "dense_dtype", "frame_dtype", "frame_rows", "is_batch_iterable", "is_device_array",
    "is_frame", "is_sparse", "numeric_array",
]


def is_frame(X: Any) -> bool:
    """A pandas DataFrame (pandas is never imported to ask: an object of it means it is)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(X, pandas.DataFrame)


def is_sparse(X: Any) -> bool:
    """A scipy.sparse matrix or array (scipy is never imported to ask)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X)


def is_device_array(X: Any) -> bool:
    """An array in GPU memory (CuPy, or anything with the CUDA array interface)."""
    return hasattr(X, "__cuda_array_interface__") and not isinstance(X, np.ndarray)


def is_batch_iterable(X: Any) -> bool:
    """Whether `X` is an iterable of batches rather than an array or a list of rows.

    A list or tuple is a list of batches when its first item is 2-D (an array, a DataFrame,
    a sparse matrix or a nested list), else a list of rows.
    """
    if isinstance(X, (list, tuple)):
        first = X[0] if X else None
        return is_sparse(first) or is_frame(first) or np.ndim(first) == 2
    return isinstance(X, Iterable) and not hasattr(X, "__array__")


def dense_dtype(dtype: np.dtype, what: str) -> np.dtype:
    """The float type `what` is read as: float32 and float64 stay, other numbers are float64.

    Raises
    ------
    DataFormatError
        For complex numbers, text, objects and other types that are not numbers.
    """
    if dtype.kind == "c":
        raise DataFormatError(f"Complex data not supported: {what} has dtype {dtype}")
    if dtype.kind not in "fiub":
        raise DataFormatError(f"{what} has dtype {dtype}; training data must be numbers")
    return float_dtype(dtype)


def numeric_array(X: Any, what: str = "X") -> np.ndarray:
    """`X` (an array-like that is no DataFrame) as a numpy array of numbers, not yet 2-D checked.

    An object array (a list holding None or numbers as strings) is converted to float64 where
    every item is a number, else refused naming the first item that is not.
    """
    array = np.asarray(X)
    if array.dtype != object:
        dense_dtype(array.dtype, what)
        return array
    try:
        return array.astype(np.float64)
    except (TypeError, ValueError) as exc:
        flat = array.ravel()
        bad = next((i for i, v in enumerate(flat) if not _is_number(v)), 0)
        where = f"{flat[bad]!r} at index {tuple(map(int, np.unravel_index(bad, array.shape)))}"
        # A TypeError (an object that is no number at all), as scikit-learn raises it; a
        # string that does not parse is a data error.
        error = TypeError if isinstance(exc, TypeError) else DataFormatError
        raise error(f"{what} must hold numbers: {exc} ({where})") from None


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def frame_dtype(frame: Any) -> np.dtype:
    """float32 when every column is float32, else float64; a column that is not numeric (text,
    categories, dates) is refused by name."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    bad = [name for name, dtype in frame.dtypes.items()
           if not (is_numeric_dtype(dtype) or is_bool_dtype(dtype))]
    if bad:
        shown = ", ".join(f"{name!r} ({frame.dtypes[name]})" for name in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DataFormatError(
            f"DataFrame column(s) {shown}{more} are not numeric; K-Means needs numbers in every "
            "column (encode or drop them first)"
        )
    kinds = set(frame.dtypes)
    return np.dtype(np.float32) if kinds == {np.dtype(np.float32)} else np.dtype(np.float64)


def frame_rows(frame: Any, rows: Any, dtype: np.dtype) -> np.ndarray:
    """Rows of a DataFrame (a slice or positions) as a C-contiguous array; missing values (NaN,
    None, pd.NA of the nullable types) become NaN, which the finiteness check then names."""
    part = frame.iloc[rows]
    return np.ascontiguousarray(part.to_numpy(dtype=dtype, na_value=np.nan))
