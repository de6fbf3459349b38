"""The one registry of backends: name -> where it lives -> the extra that installs it.

The hyperparameter table (valid names), ``backend="auto"``, the error texts and the extras of
pyproject.toml (checked by a test) all read `REGISTRY`. A backend is one module plus one
`register` line; modules are imported only when a backend is asked for, so importing
kmeans_stream imports none of their dependencies.

Two kinds (`kmeans_stream.backends.base`): ``compute`` backends provide `Kernels` that the local
algorithm drives; ``trainer`` backends run a whole fit elsewhere.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

__all__ = ["REGISTRY", "Backend", "auto_name", "load", "lookup", "names", "register"]


@dataclass(frozen=True)
class Backend:
    """One registry line.

    Attributes
    ----------
    name : str
        The value of the ``backend`` hyperparameter.
    kind : {"compute", "trainer"}
    target : str
        ``"module:Class"``; the class is instantiated without arguments.
    requires : tuple of str
        Modules that must be importable (their import names).
    extra : str or None
        The pip extra of kmeans-stream that installs them; pyproject.toml's extra of that name
        lists `packages` (a test checks it).
    packages : tuple of str
        The distributions that extra installs; by default the names of `requires`.
    hint : str or None
        The install command, where one extra is not the whole story (CUDA versions).
    options : tuple of str
        Hyperparameters the backend's class takes as keyword arguments (``precision``).
    auto : bool
        Whether ``backend="auto"`` may pick it; among those installed, the first registered
        wins, so fast backends are registered before the reference.
    """

    name: str
    kind: str
    target: str
    requires: tuple[str, ...] = ()
    extra: str | None = None
    auto: bool = False
    packages: tuple[str, ...] | None = None
    hint: str | None = None
    options: tuple[str, ...] = ()

    def distributions(self) -> tuple[str, ...]:
        """The pip distributions the backend's extra must install."""
        return self.requires if self.packages is None else self.packages

    def missing(self) -> list[str]:
        """The required modules that cannot be imported here."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def install_hint(self) -> str:
        """The pip command that installs what this backend needs."""
        if self.hint:
            return self.hint
        return f"pip install 'kmeans-stream[{self.extra}]'" if self.extra else "pip install"


REGISTRY: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Add (or replace) a registry line; returns it."""
    if backend.kind not in ("compute", "trainer"):
        raise ValueError(f"backend kind must be 'compute' or 'trainer'; got {backend.kind!r}")
    REGISTRY[backend.name] = backend
    return backend


register(Backend("numba", "compute", "kmeans_stream.backends.numba:NumbaKernels",
                 requires=("numba", "scipy", "threadpoolctl"), extra="numba", auto=True))
register(Backend("numpy", "compute", "kmeans_stream.backends.numpy:NumpyKernels", auto=True))
# Never 'auto': a GPU is asked for by name. The extras install CuPy's prebuilt wheels.
register(Backend("cupy", "compute", "kmeans_stream.backends.cupy:CupyKernels",
                 requires=("cupy",), extra="gpu-cuda12", packages=("cupy-cuda12x",),
                 hint="pip install 'kmeans-stream[gpu-cuda12]' (or [gpu-cuda13] for a CUDA 13 "
                      "driver)", options=("precision",)))
# A trainer: the whole fit as a SageMaker training job, through boto3.
register(Backend("sagemaker", "trainer", "kmeans_stream.backends.sagemaker:SageMakerTrainer",
                 requires=("boto3",), extra="sagemaker",
                 options=("role", "instance_type", "instance_count", "sagemaker_options")))
# A trainer: the fit on a Dask cluster, the partitions' streaming states merged.
register(Backend("dask", "trainer", "kmeans_stream.backends.dask:DaskTrainer",
                 requires=("dask", "distributed"), extra="dask", options=("scheduler_address",)))


def names() -> tuple[str, ...]:
    """Every valid value of the ``backend`` hyperparameter: 'auto' and the registered names."""
    return ("auto", *REGISTRY)


def auto_name() -> str:
    """The backend 'auto' stands for here: the first registered auto backend that is installed."""
    return next(b.name for b in REGISTRY.values() if b.auto and not b.missing())


def lookup(name: str) -> Backend:
    """The registry line of `name` ('auto' resolved first).

    Raises
    ------
    ValueError
        For a name no backend has; the message lists the known names.
    """
    if name == "auto":
        name = auto_name()
    if name not in REGISTRY:
        raise ValueError(
            f"Unknown backend {name!r}; the known backends are {', '.join(map(repr, names()))}."
        )
    return REGISTRY[name]


def load(name: str, **options: Any) -> Any:
    """An instance of backend `name` ('auto' resolved first), its dependencies imported.

    `options` are hyperparameters; those the backend takes (`Backend.options`) are passed to
    its class, the others ignored.

    Raises
    ------
    ImportError
        A known backend whose dependencies are not installed; the message gives the pip
        command that installs them.
    ValueError
        An unknown backend.
    RuntimeError
        A backend that cannot run here (no GPU); the message says why.
    """
    backend = lookup(name)
    missing = backend.missing()
    if missing:
        raise ImportError(
            f"backend={backend.name!r} needs {', '.join(missing)}: {backend.install_hint()}"
        )
    module_name, class_name = backend.target.split(":")
    kwargs = {key: options[key] for key in backend.options if key in options}
    return getattr(importlib.import_module(module_name), class_name)(**kwargs)
