"""kmeans_stream: Amazon SageMaker's streaming K-Means on your own machine.

``from kmeans_stream import KMeans`` is the front door. Importing the package imports numpy
only; every other dependency is imported where it is used.
"""

from .estimator import KMeans
from .exceptions import (
    DataFormatError,
    InvalidHyperparameterError,
    ModelFormatError,
    NotFittedError,
)

__version__ = "0.1.0"


def load(path):
    """A fitted KMeans from a model.tar.gz, a bare model_algo-1 file, or an s3:// URI."""
    from .persistence import load as _load

    return _load(path)


def select_k(X, *args, **kwargs):
    """Fit one KMeans per k and say which k the elbow, silhouette and gap methods suggest.

    `kmeans_stream.selection.select_k`, imported on the first call; its docstring has the
    parameters.
    """
    from .selection import select_k as _select_k

    return _select_k(X, *args, **kwargs)


__all__ = [
    "DataFormatError",
    "InvalidHyperparameterError",
    "KMeans",
    "ModelFormatError",
    "NotFittedError",
    "__version__",
    "load",
    "select_k",
]
