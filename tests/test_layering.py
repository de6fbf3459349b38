"""The direction of dependencies, read from the code's own imports (STYLE.md's house rules)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kmeans_stream import backends

PACKAGE = Path(__file__).parents[1] / "kmeans_stream"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every kmeans_stream module `path` imports, at the top or inside a function."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("kmeans_stream")}


def _modules(folder: str = "") -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def _uses(imported: set[str], forbidden: str) -> list[str]:
    return sorted(m for m in imported if m == forbidden or m.startswith(forbidden + "."))


# Trainer backends (a whole fit elsewhere) read and write data, so they may use io; compute
# kernels may not. The dask trainer runs the algorithm itself, on the workers, so it may use
# it; the SageMaker trainer hands the fit to another program and has no use for it.
TRAINER_MODULES = [p for p in _modules("backends") if "sagemaker" in p.name or "dask" in p.name]
KERNEL_MODULES = [p for p in _modules("backends")
                  if p.name != "__init__.py" and p not in TRAINER_MODULES]


@pytest.mark.parametrize("path", KERNEL_MODULES, ids=lambda p: p.name)
def test_kernels_import_no_estimator_io_algorithm_or_table(path):
    imported = imports_of(path)
    for forbidden in ("kmeans_stream.estimator", "kmeans_stream.io", "kmeans_stream.algorithm",
                      "kmeans_stream.hyperparameters", "kmeans_stream.persistence",
                      "kmeans_stream.cli"):
        assert not _uses(imported, forbidden), (path.name, _uses(imported, forbidden))


@pytest.mark.parametrize("path", TRAINER_MODULES, ids=lambda p: p.name)
def test_trainers_import_no_estimator_algorithm_or_compute_backend(path):
    imported = imports_of(path)
    forbidden = ["kmeans_stream.estimator", "kmeans_stream.persistence", "kmeans_stream.cli",
                 "kmeans_stream.backends.numpy", "kmeans_stream.backends.numba",
                 "kmeans_stream.backends.cupy"]
    if "dask" not in path.name:
        forbidden.append("kmeans_stream.algorithm")
    for name in forbidden:
        assert not _uses(imported, name), (path.name, _uses(imported, name))


@pytest.mark.parametrize("path", _modules("io"), ids=lambda p: p.name)
def test_io_imports_no_compute_algorithm_or_estimator(path):
    imported = imports_of(path)
    for forbidden in ("kmeans_stream.backends", "kmeans_stream.algorithm",
                      "kmeans_stream.estimator", "kmeans_stream.persistence"):
        assert not _uses(imported, forbidden), (path.name, _uses(imported, forbidden))


def test_the_table_imports_no_estimator():
    imported = imports_of(PACKAGE / "hyperparameters.py")
    assert not _uses(imported, "kmeans_stream.estimator")
    assert not _uses(imported, "kmeans_stream.algorithm")


def test_the_registry_imports_no_backend():
    imported = imports_of(PACKAGE / "backends" / "__init__.py")
    assert imported <= {"kmeans_stream.backends"}, imported


@pytest.mark.parametrize("name", ["algorithm.py", "streaming.py", "reassignment.py"])
def test_the_algorithm_names_no_backend(name):
    path = PACKAGE / name
    imported = imports_of(path)
    backend_modules = {m for m in imported if m.startswith("kmeans_stream.backends.")}
    assert {m.split(".")[2] for m in backend_modules} <= {"base"}, backend_modules
    strings = {node.value for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    for backend in backends.REGISTRY:
        assert backend not in strings, f"{name} names the backend {backend!r}"


def test_the_rules_see_imports_inside_functions(tmp_path):
    # The reader itself: relative imports and imports inside functions count.
    assert "kmeans_stream.backends.numpy" in imports_of(PACKAGE / "backends" / "numba.py")
    assert "kmeans_stream.io.sources" in imports_of(PACKAGE / "estimator.py")
    assert "kmeans_stream.persistence" in imports_of(PACKAGE / "_estimator_sagemaker.py")
