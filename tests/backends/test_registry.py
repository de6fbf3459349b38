"""The one registry: names, 'auto', messages, pyproject's extras, and a backend added in a test
with one registry line."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from kmeans_stream import InvalidHyperparameterError, KMeans, backends
from kmeans_stream.algorithm import LocalTrainer
from kmeans_stream.backends import Backend, register
from kmeans_stream.backends.base import Kernels, Trainer
from kmeans_stream.backends.numpy import NumpyKernels

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


@pytest.fixture
def registry():
    """The registry, restored after the test."""
    saved = dict(backends.REGISTRY)
    yield backends.REGISTRY
    backends.REGISTRY.clear()
    backends.REGISTRY.update(saved)


def _blobs(n=900, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-10, 10, (3, 2))[np.arange(n) % 3] + rng.normal(size=(n, 2)))


def test_the_names_the_table_accepts_are_the_registry_s():
    assert backends.names() == ("auto", *backends.REGISTRY)
    for name in backends.names():
        KMeans(k=2, backend=name).get_params()  # valid at fit: checked below for one
    with pytest.raises(InvalidHyperparameterError,
                       match=r"'backend' parameter of KMeans must be a str among \{'auto', "):
        KMeans(k=2, backend="cuda").fit(_blobs())


def test_an_unknown_backend_lists_the_known_names():
    with pytest.raises(ValueError, match=r"Unknown backend 'cuda'; the known backends are "
                                         r"'auto', .*'numpy'"):
        backends.lookup("cuda")


def test_a_backend_not_built_yet_is_not_valid(registry):
    # Names of coming backends are not accepted before their module exists.
    for name in ("cupy", "sagemaker", "dask"):
        if name not in registry:
            with pytest.raises(InvalidHyperparameterError, match="'backend' parameter"):
                KMeans(k=2, backend=name).fit(_blobs())


def test_a_known_backend_that_is_not_installed_says_how_to_install_it(registry):
    register(Backend("absent", "compute", "absent_module:Kernels",
                     requires=("absent_module_xyz",), extra="absent"))
    with pytest.raises(ImportError, match=re.escape(
            "backend='absent' needs absent_module_xyz: pip install 'kmeans-stream[absent]'")):
        KMeans(k=2, backend="absent").fit(_blobs())


def test_auto_is_the_first_installed_auto_backend(registry):
    backends.REGISTRY.clear()
    register(Backend("absent", "compute", "x:y", requires=("absent_module_xyz",), auto=True))
    register(Backend("numpy", "compute", "kmeans_stream.backends.numpy:NumpyKernels", auto=True))
    assert backends.auto_name() == "numpy"


def test_pyproject_extras_install_what_the_registry_requires():
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    for backend in backends.REGISTRY.values():
        if backend.extra is None:
            assert not backend.requires
            continue
        listed = {re.split(r"[<>=!~\[; ]", req)[0].lower() for req in extras[backend.extra]}
        for package in backend.distributions():
            assert package.lower() in listed, (backend.name, package, backend.extra)


def test_gpu_extras_are_prebuilt_cupy_wheels():
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert "gpu" not in extras  # plain `cupy` builds from source
    assert any(r.startswith("cupy-cuda12x") for r in extras["gpu-cuda12"])
    assert any(r.startswith("cupy-cuda13x") for r in extras["gpu-cuda13"])


# ------------------------------------------------------------ a backend is one module + one line


CONTRACT = {name for name in vars(Kernels) if not name.startswith("_") and name != "name"}


class CountingKernels(NumpyKernels):
    """The numpy kernels, counting calls: a backend written only for this test."""

    name = "counting"
    calls: dict[str, int] = {}

    def __getattribute__(self, name):
        if name in CONTRACT:
            CountingKernels.calls[name] = CountingKernels.calls.get(name, 0) + 1
        return super().__getattribute__(name)


def test_a_new_backend_is_one_class_and_one_registry_line(registry):
    register(Backend("counting", "compute", f"{__name__}:CountingKernels"))
    CountingKernels.calls.clear()
    X = _blobs()
    params = dict(k=3, mini_batch_size=100, epochs=2, random_state=0, local_lloyd_num_trials=4,
                  shuffle=False, reassignment_ratio=0)  # SageMaker's algorithm: fewest calls
    counted = KMeans(backend="counting", **params).fit(X)
    reference = KMeans(backend="numpy", **params).fit(X)
    np.testing.assert_array_equal(counted.cluster_centers_, reference.cluster_centers_)
    calls = CountingKernels.calls
    assert calls["stream_batches"] == 2  # in-memory data: one call per epoch
    assert calls["lloyd"] == 4 and calls["kmeanspp"] == 4  # one per reduction trial
    assert calls["kmeanspp_trials"] == 1  # the trials seeded at once
    assert calls["workspace"] == 3  # the stream's, the reduction's, the labels'
    counted.set_params(backend="numpy")  # predicting is separate from training
    np.testing.assert_array_equal(counted.predict(X), reference.predict(X))


class RecordingTrainer:
    """A trainer that runs the fit elsewhere (here: the local one) and keeps what it got."""

    seen: list = []

    def fit(self, source, params, rng, test=None):
        RecordingTrainer.seen.append((source, params))
        return LocalTrainer(NumpyKernels()).fit(source, params, rng)


def test_a_trainer_backend_gets_the_source_record_and_typed_params(registry, tmp_path):
    register(Backend("recording", "trainer", f"{__name__}:RecordingTrainer"))
    assert isinstance(RecordingTrainer(), Trainer)
    path = tmp_path / "train.csv"
    np.savetxt(path, _blobs(), delimiter=",")
    km = KMeans(k=3, backend="recording", random_state=0, mini_batch_size=300).fit(str(path))
    source, params = RecordingTrainer.seen[-1]
    assert source.kind == "location" and source.reiterable and params.k == 3
    assert km.predict(_blobs()[:5]).dtype == np.int32  # predictions run locally ('auto')
    with pytest.raises(ValueError, match="fits whole data sets only"):
        km.partial_fit(_blobs())


def test_importing_the_registry_imports_no_backend():
    code = ("import sys, kmeans_stream.backends as b; b.names(); b.lookup('auto');"
            "print(any(m.startswith('kmeans_stream.backends.num') for m in sys.modules))")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
