"""What `labels_` cost after an in-memory fit, and what compute_labels=False saves.

10,000,000×10 float32 blobs, k=5, defaults (numba where installed): fit from the array with
compute_labels=True (the default) and False, and from the same rows in a .npy file (a streamed
source, whose rows are not labelled). Medians of 5 fits after a warm-up, 0.5 s apart; the
extra memory is the peak of Python-traced allocations (numpy's arrays included) during a fit.

    python benchmarks/labels_cost.py
"""

from __future__ import annotations

import statistics
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
from _results import spaced_times, write_section
from sklearn.datasets import make_blobs

from kmeans_stream import KMeans

N, D, K, REPEATS = 10_000_000, 10, 5, 5


def timed(fit) -> tuple[float, float]:
    """Median seconds of `fit` and the peak traced MiB of one more run."""
    times = spaced_times(fit, REPEATS, 0.5)
    tracemalloc.start()
    fit()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return statistics.median(times), peak


def main() -> None:
    X, _ = make_blobs(N, D, centers=K, random_state=0)
    X = np.ascontiguousarray(X, dtype=np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.npy"
        np.save(path, X)
        for name, fit in (
            ("array, compute_labels=True (default)",
             lambda: KMeans(k=K, random_state=0).fit(X)),
            ("array, compute_labels=False",
             lambda: KMeans(k=K, random_state=0, compute_labels=False).fit(X)),
            (".npy file (streamed, no labels)",
             lambda: KMeans(k=K, random_state=0).fit(str(path))),
        ):
            seconds, peak = timed(fit)
            rows.append(f"| {name} | {seconds:.3f} | {peak:.1f} |")
    text = "\n".join([
        f"{N:,}×{D} float32 make_blobs (k={K}, {X.nbytes / 2**20:.0f} MiB), defaults; median of "
        f"{REPEATS} fits after a warm-up. labels_ are n int32 ({N * 4 / 2**20:.0f} MiB); where "
        "the final refinement labels the rows they cost no extra pass, only that memory.",
        "", "| fit | s | peak traced MiB during the fit |", "|---|---|---|", *rows])
    print(text)
    write_section("labels", "The cost of labels_ (compute_labels)", text)


if __name__ == "__main__":
    main()
