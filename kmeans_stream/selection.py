"""Choosing k: one model per k, scored by the elbow of the SSE curve, the mean silhouette and the
gap statistic, in one call.

The SSE is the whole data's; the silhouette and the gap are computed on one uniform sample of
the rows (the same rows for every k), so that a streamed source never has to fit in memory.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import backends
from ._sampling import BottomK
from .estimator import KMeans
from .hyperparameters import HYPERPARAMETERS, validate_all, validate_value
from .io.sources import Source, as_source
from .metrics import silhouette_or_nan

__all__ = ["KSelection", "METHODS", "select_k"]

METHODS = ("elbow", "silhouette", "gap")

# Rows read at a time by the sampling and SSE passes over a streamed source.
_READ_ROWS = 65536


@dataclass
class KSelection:
    """What `select_k` found: one row per k, the k each method suggests and the rule it used.

    Attributes
    ----------
    ks : list of int
        The numbers of clusters tried, ascending.
    sse : ndarray of shape (len(ks),)
        The data's sum of squared distances to the closest of the k centers.
    silhouette : ndarray of shape (len(ks),)
        Mean silhouette of the sample; NaN where not asked for or undefined (k = 1, or the
        sample's rows all in one cluster).
    gap, gap_se : ndarray of shape (len(ks),)
        The gap statistic of the sample and its standard error s_k; NaN where not asked for.
    suggested : dict of str to int or None
        The k each asked-for method suggests (None where its rule finds none).
    rules : dict of str to str
        One line per asked-for method: the rule behind its suggestion.
    models : dict of int to KMeans
        The fitted model of each k.
    n_samples : int
        Rows in the data.
    sample_index : ndarray of shape (n_sampled,), int64
        Row numbers (from 0, in the source's order) of the sample, ascending.
    """

    ks: list[int]
    sse: np.ndarray
    silhouette: np.ndarray
    gap: np.ndarray
    gap_se: np.ndarray
    suggested: dict[str, int | None]
    rules: dict[str, str]
    models: dict[int, KMeans] = field(repr=False)
    n_samples: int = 0
    sample_index: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)

    @property
    def n_sampled(self) -> int:
        """Rows in the sample the silhouette and the gap were computed on."""
        return len(self.sample_index)

    def table(self) -> str:
        """A plain-text table: a row per k, ``*`` beside each method's suggested k, the rules
        below."""
        columns = [("k", "", None, "{:d}")]
        columns.append(("SSE", "elbow", self.sse, "{:.6g}"))
        if "silhouette" in self.rules:
            columns.append(("silhouette", "silhouette", self.silhouette, "{:.4f}"))
        if "gap" in self.rules:
            columns.append(("gap", "gap", self.gap, "{:.4f}"))
            columns.append(("gap s.e.", "", self.gap_se, "{:.4f}"))
        lines = ["".join(f"{name:>{_width(name)}}  " for name, *_ in columns).rstrip()]
        for i, k in enumerate(self.ks):
            cells = []
            for name, method, values, fmt in columns:
                value = k if values is None else values[i]
                text = "-" if not np.isfinite(value) else fmt.format(value)
                mark = " *" if method and self.suggested.get(method) == k else "  "
                cells.append(f"{text:>{_width(name)}}{mark}")
            lines.append("".join(cells).rstrip())
        picks = ", ".join(f"{m} k={k}" for m, k in self.suggested.items())
        lines += ["", f"* suggested: {picks}"]
        lines += [textwrap.fill(f"{method}: {rule}", 100, subsequent_indent="    ",
                                break_on_hyphens=False)
                  for method, rule in self.rules.items()]
        lines.append(f"SSE on all {self.n_samples:,} rows; silhouette and gap on a sample of "
                     f"{self.n_sampled:,}.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The results as plain JSON-ready values (NaN as None); models and the sample's row
        numbers are left out."""
        def plain(values: np.ndarray) -> list[float | None]:
            return [float(v) if np.isfinite(v) else None for v in values]

        return {
            "ks": list(self.ks), "sse": plain(self.sse), "silhouette": plain(self.silhouette),
            "gap": plain(self.gap), "gap_se": plain(self.gap_se),
            "suggested": dict(self.suggested), "rules": dict(self.rules),
            "n_samples": self.n_samples, "n_sampled": self.n_sampled,
        }

    def plot(self, path: str | os.PathLike) -> Path:
        """Draw the SSE (elbow marked), silhouette and gap (with error bars) curves into one
        PNG; needs matplotlib (``pip install 'kmeans-stream[plot]'``).

        Returns
        -------
        path : pathlib.Path
        """
        from .plots import k_selection

        return k_selection(self, path)


def _width(name: str) -> int:
    return 3 if name == "k" else max(len(name), 10) + 2


def select_k(
    X: Any,
    ks: Iterable[int] = range(2, 11),
    methods: Sequence[str] = METHODS,
    *,
    sample_size: int = 10_000,
    n_refs: int = 10,
    random_state: Any = None,
    n_jobs: int | None = None,
    **params: Any,
) -> KSelection:
    """Fit one KMeans per k and say which k the elbow, silhouette and gap methods suggest.

    Parameters
    ----------
    X : array-like, DataFrame, scipy.sparse matrix, list of batches, path or URI
        Any data `KMeans.fit` takes that can be read more than once (not a one-shot iterator).
        Data that is not in memory is read front to back: once to draw the sample, once per
        epoch of each fit, and once more for the SSE of every k together.
    ks : iterable of int, default=range(2, 11)
        Numbers of clusters to try, each from 1 to the number of rows.
    methods : sequence of str, default=("elbow", "silhouette", "gap")
        The methods whose suggestion is wanted; the SSE is always computed.
    sample_size : int, default=10_000
        Rows of the uniform sample (without replacement; all rows when there are fewer) the
        silhouette and the gap are computed on, the same rows for every k. Memory: the sample
        as a dense (sample_size, n_features) table, plus the silhouette's (1024, sample_size)
        tile.
    n_refs : int, default=10
        B, the uniform reference sets of the gap statistic, each of sample_size rows.
    random_state : int, numpy Generator or None, default=None
        Seeds the sample, the reference sets and every fit; the same seed gives the same
        result whatever `n_jobs`.
    n_jobs : int or None, default=None
        Threads fitting different k at once; None or 1 fits one after another, -1 uses every
        core. The kernels of the numpy and numba backends release the GIL, but each is already
        multi-threaded: on 2 cores, 2 threads were from 28% faster to 20% slower.
    **params
        KMeans hyperparameters (backend, mini_batch_size, epochs, ...) used for every k; the
        reference sets of the gap are fitted with the same ones, on a local backend.

    Returns
    -------
    selection : KSelection

    Raises
    ------
    ValueError
        Before any fit: for empty ks, a k below 1 or above the number of rows, an unknown
        method, a one-shot iterator, or invalid hyperparameters.
    """
    ks, methods = _check_ks(ks), _check_methods(methods)
    _check_options(sample_size, n_refs, n_jobs, params)
    source = as_source(X)
    if not source.reiterable:
        raise ValueError(f"select_k reads the data once per k, but {source.description} is a "
                         "one-shot iterator; pass a list, an array, a path or a URI.")
    rng = np.random.default_rng(random_state)
    sample_seed, box_seed = (int(s) for s in rng.integers(0, 2**63, size=2))
    # Row i seeds the fit of ks[i] (column 0) and of its B reference sets (the rest), fixed
    # before any fit so that threads cannot change which fit gets which seed.
    fit_seeds = rng.integers(0, 2**63, size=(len(ks), 1 + n_refs))
    sample_index, sample, n_samples = _draw_sample(source, sample_size, sample_seed)
    if ks[-1] > n_samples:
        raise ValueError(f"ks goes up to {ks[-1]}, but {source.description} holds "
                         f"{n_samples} rows: k can be at most the number of rows.")
    box = _ReferenceBox(sample, n_refs, box_seed) if "gap" in methods else None
    # The sample keeps a DataFrame's column names, which the models check at predict.
    sample = replace(as_source(sample), description="the sample",
                     feature_names=source.feature_names)
    scores = _map(lambda i: _score_k(source, ks[i], fit_seeds[i], sample, methods, box, params),
                  range(len(ks)), n_jobs)
    return _selection(source, ks, methods, scores, n_refs, n_samples, sample_index)


def _selection(source: Source, ks: list[int], methods: tuple[str, ...], scores: list[_Scores],
               n_refs: int, n_samples: int, sample_index: np.ndarray) -> KSelection:
    models = {k: s.model for k, s in zip(ks, scores, strict=True)}
    sse = np.array([s.model.inertia_ for s in scores]) if source.in_memory else \
        _stream_sse(source, list(models.values()))
    silhouette = np.array([s.silhouette for s in scores])
    gap = np.array([s.gap for s in scores])
    gap_se = np.array([s.gap_se for s in scores])
    suggested, rules = _suggest(methods, ks, sse, silhouette, gap, gap_se, n_refs)
    return KSelection(ks, sse, silhouette, gap, gap_se, suggested, rules, models, n_samples,
                      sample_index)


# ------------------------------------------------------------------ checks at the door

def _check_ks(ks: Any) -> list[int]:
    try:
        values = list(ks)
    except TypeError:
        raise ValueError(f"ks must be an iterable of ints, such as range(2, 11); got {ks!r}.") \
            from None
    if not values:
        raise ValueError("ks is empty: give the numbers of clusters to try, such as "
                         "range(2, 11).")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"ks must hold ints >= 1; got {k!r}.")
    return sorted({int(k) for k in values})


def _check_methods(methods: Any) -> tuple[str, ...]:
    if isinstance(methods, str):
        methods = (methods,)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method {unknown[0]!r}: the methods are "
                         f"{', '.join(map(repr, METHODS))}.")
    return tuple(m for m in METHODS if m in methods)


def _check_options(sample_size: Any, n_refs: Any, n_jobs: Any, params: dict) -> None:
    for name, value, least in (("sample_size", sample_size, 2), ("n_refs", n_refs, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be an int >= {least}; got {value!r}.")
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int)
                               or not (n_jobs >= 1 or n_jobs == -1)):
        raise ValueError(f"n_jobs must be None, -1 or an int >= 1; got {n_jobs!r}.")
    if "k" in params:
        raise ValueError("k is what select_k chooses: give the values to try as ks.")
    validate_all(KMeans(k=1, **params).get_params())


# ------------------------------------------------------------------ the sample

def _draw_sample(source: Source, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Row numbers, rows (float, dense) and the data's row count of a uniform sample of `size`
    rows: those with the `size` smallest of one uniform key per row (bottom-k sampling), so an
    array and the same rows streamed from a file give the same sample under one seed."""
    rng = np.random.default_rng(seed)
    if source.in_memory:
        n = source.n_samples
        index = np.arange(n) if n <= size else \
            np.sort(np.argpartition(rng.random(n), size)[:size])
        return index, _memory_rows(source, index), n
    sample, n = BottomK(size, rng), 0
    for X, _ in source.batches(_READ_ROWS):
        sample.add(np.arange(n, n + len(X), dtype=np.int64), X)
        n += len(X)
    if n == 0:
        raise ValueError(f"Found 0 sample(s) in {source.description}.")
    index, rows = sample.columns
    return index, np.ascontiguousarray(rows), n


def _memory_rows(source: Source, index: np.ndarray) -> np.ndarray:
    if source.kind == "device":
        return np.ascontiguousarray(source.dense()[index].get())
    return next(source.batches(len(index), order=index))[0]


# ------------------------------------------------------------------ one k

@dataclass
class _Scores:
    model: KMeans
    silhouette: float = np.nan
    gap: float = np.nan
    gap_se: float = np.nan


def _score_k(source: Source, k: int, seeds: np.ndarray, sample: Source,
             methods: tuple[str, ...], box: _ReferenceBox | None, params: dict) -> _Scores:
    model = KMeans(k=k, random_state=int(seeds[0]), **params).fit(source)
    scores = _Scores(model)
    if "silhouette" in methods:
        scores.silhouette = silhouette_or_nan(sample.data, model.predict(sample))
    if box is not None:
        # W_k of the data: the sample's SSE under the centers fitted to all the data (a fit to
        # the sample itself when the sample is every row); sd over B as the paper has it, ddof 0.
        log_w = np.log(-model.score(sample))
        ref_log_w = box.log_w(k, seeds[1:], params)
        scores.gap = float(ref_log_w.mean() - log_w)
        scores.gap_se = float(ref_log_w.std() * np.sqrt(1.0 + 1.0 / len(ref_log_w)))
    return scores


class _ReferenceBox:
    """The gap statistic's null model (Tibshirani, Walther & Hastie 2001, method b): uniform
    rows in the box the sample spans along its principal axes, which follows the data's shape
    better than the box of its raw features when the features are correlated."""

    def __init__(self, sample: np.ndarray, n_refs: int, seed: int):
        self.dtype, self.n_rows = sample.dtype, len(sample)
        self.mean = sample.mean(axis=0, dtype=np.float64)
        _, _, self.axes = np.linalg.svd(sample - self.mean, full_matrices=False)
        projected = (sample - self.mean) @ self.axes.T
        self.low, self.high = projected.min(axis=0), projected.max(axis=0)
        # One seed per reference set, the same sets for every k (common random numbers keep
        # the noise of Gap(k) - Gap(k+1) small).
        self.seeds = np.random.default_rng(seed).integers(0, 2**63, size=n_refs)

    def draw(self, b: int) -> np.ndarray:
        """Reference set b: made again on each call rather than keeping B sets in memory."""
        rng = np.random.default_rng(int(self.seeds[b]))
        uniform = rng.uniform(self.low, self.high, size=(self.n_rows, len(self.low)))
        return (uniform @ self.axes + self.mean).astype(self.dtype)

    def log_w(self, k: int, seeds: np.ndarray, params: dict) -> np.ndarray:
        """log W_k of each reference set: the inertia of a KMeans with k centers fitted to it
        with the same hyperparameters as the data, reference set b seeded by seeds[b]."""
        local = _local_params(params)
        return np.array([
            np.log(KMeans(k=k, random_state=int(s), **local).fit(self.draw(b)).inertia_)
            for b, s in enumerate(seeds)
        ])


def _local_params(params: dict) -> dict:
    """`params` for a fit here: B reference fits per k are no work for a remote trainer, so a
    trainer backend becomes 'auto' and the settings of a remote job are dropped."""
    backend = backends.lookup(validate_value("backend", params.get("backend", "auto")))
    if backend.kind == "compute":
        return params
    job = {hp.name for hp in HYPERPARAMETERS if hp.job}
    return {**{n: v for n, v in params.items() if n not in job}, "backend": "auto"}


def _stream_sse(source: Source, models: list[KMeans]) -> np.ndarray:
    """The SSE of every model in one pass over a streamed source."""
    sse = np.zeros(len(models))
    for X, _ in source.batches(_READ_ROWS):
        sse -= [model.score(X) for model in models]
    return sse


def _map(function: Callable[[int], Any], items: Iterable[int], n_jobs: int | None) -> list:
    items = list(items)
    workers = (os.cpu_count() or 1) if n_jobs == -1 else (n_jobs or 1)
    if workers == 1 or len(items) == 1:
        return [function(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(function, items))


# ------------------------------------------------------------------ the rules

def _suggest(methods: tuple[str, ...], ks: list[int], sse: np.ndarray, silhouette: np.ndarray,
             gap: np.ndarray, gap_se: np.ndarray, n_refs: int
             ) -> tuple[dict[str, int | None], dict[str, str]]:
    found = {
        "elbow": lambda: _elbow(ks, sse),
        "silhouette": lambda: _largest(ks, silhouette),
        "gap": lambda: _gap_rule(ks, gap, gap_se),
    }
    rules = {
        "elbow": "Kneedle: the k farthest below the straight line from the first to the last "
                 "point of the SSE curve, k and SSE each scaled to [0, 1] (needs 3 ks).",
        "silhouette": "the k with the largest mean silhouette on the sample.",
        "gap": f"Tibshirani et al. 2001: the smallest k with Gap(k) >= Gap(k')-s(k'), where k' "
               f"is the next k tried and s(k) = sd(k)*sqrt(1+1/B), against B = {n_refs} uniform "
               "reference sets in the sample's PCA-aligned box (the largest k if none).",
    }
    return {m: found[m]() for m in methods}, {m: rules[m] for m in methods}


def _elbow(ks: list[int], sse: np.ndarray) -> int | None:
    if len(ks) < 3 or not np.isfinite(sse).all() or sse.max() == sse.min():
        return None
    x = (np.asarray(ks) - ks[0]) / (ks[-1] - ks[0])
    y = (sse - sse.min()) / (sse.max() - sse.min())
    dx, dy = x[-1] - x[0], y[-1] - y[0]
    below = (dy * (x - x[0]) - dx * (y - y[0])) / np.hypot(dx, dy)
    best = int(np.argmax(below))
    return ks[best] if below[best] > 0 else None


def _largest(ks: list[int], values: np.ndarray) -> int | None:
    if not np.isfinite(values).any():
        return None
    return ks[int(np.nanargmax(values))]


def _gap_rule(ks: list[int], gap: np.ndarray, gap_se: np.ndarray) -> int | None:
    if not np.isfinite(gap).any():
        return None
    for i in range(len(ks) - 1):
        if gap[i] >= gap[i + 1] - gap_se[i + 1]:
            return ks[i]
    return ks[-1]
