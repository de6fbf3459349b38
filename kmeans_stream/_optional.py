"""Import an optional dependency where it is used, failing at once with the install hint."""

import importlib
from types import ModuleType

# module name -> the extra that installs it. Backends' dependencies are not here: the backend
# registry (`kmeans_stream.backends`) names those and says how to install them.
_EXTRAS = {
    "boto3": "io",
    "matplotlib": "plot",
    "pyarrow": "io",
    "scipy": "io",
    "waitress": "serve",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import `module`, or raise ImportError saying which extra brings it.

    Parameters
    ----------
    module : str
        The module to import, such as ``"numba"`` or ``"matplotlib.pyplot"``.
    purpose : str
        What needs it, for the message, such as ``"backend='numba'"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRAS.get(top, top)
        raise ImportError(
            f"{purpose} needs {top}: pip install 'kmeans-stream[{extra}]'"
        ) from exc
