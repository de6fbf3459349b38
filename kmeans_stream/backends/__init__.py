"""The backend registry: name -> "module:Class", imported only when asked for.

Compute backends run the kernels of `kmeans_stream.backends.numpy.NumpyKernels` on arrays; the
algorithm drives them. Remote trainers (a SageMaker job, a dask cluster) run a whole fit and
live behind their own interface.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

COMPUTE_BACKENDS: dict[str, str] = {
    "numpy": "kmeans_stream.backends.numpy:NumpyKernels",
    "numba": "kmeans_stream.backends.numba:NumbaKernels",
}

# Extras that install each backend's dependency, for the error message.
_EXTRA = {"numba": "numba", "cupy": "gpu", "sagemaker": "sagemaker", "dask": "dask"}


def resolve_backend(name: str) -> str:
    """The concrete backend for `name`: 'auto' is numba where it is installed, else numpy."""
    if name == "auto":
        return "numba" if importlib.util.find_spec("numba") is not None else "numpy"
    return name


def get_kernels(name: str) -> Any:
    """An instance of the compute backend `name` ('auto' resolved first).

    Raises
    ------
    ImportError
        The backend's dependency is missing; the message says which extra installs it.
    ValueError
        The backend is not a compute backend of this version.
    """
    name = resolve_backend(name)
    if name not in COMPUTE_BACKENDS:
        raise ValueError(
            f"backend={name!r} is not available in this version of kmeans_stream; "
            f"available: {sorted(COMPUTE_BACKENDS)} or 'auto'."
        )
    module_name, class_name = COMPUTE_BACKENDS[name].split(":")
    if name != "numpy" and importlib.util.find_spec(name) is None:
        raise ImportError(
            f"backend={name!r} needs {name}: pip install 'kmeans-stream[{_EXTRA[name]}]'"
        )
    return getattr(importlib.import_module(module_name), class_name)()
