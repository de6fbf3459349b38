"""partial_fit against fit on the same rows: the streaming state is all partial_fit updates.

20 calls of 5,000 rows (100,000 x 20 float32, k=64, mini_batch_size 5,000) against one fit on
the 100,000 rows, both ending with the centers in hand, for every installed CPU backend; and,
for scale, the same calls when the centers are read after every call (each read runs the
reduction, as every call did before the reduction became lazy). scikit-learn's MiniBatchKMeans
on the same calls is the peer. Medians of 5 runs after a warm-up. Run as
``.venv/bin/python benchmarks/partial_fit.py``; writes the ``partial-fit`` section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import time

import numpy as np
from _results import write_section
from sklearn.cluster import MiniBatchKMeans
from sklearn.datasets import make_blobs

from kmeans_stream import KMeans, backends

N, D, K, CHUNK, REPEATS = 100_000, 20, 64, 5000, 5


def median_time(fn) -> float:
    fn()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def one_fit(X, backend):
    return KMeans(k=K, mini_batch_size=CHUNK, backend=backend, random_state=0).fit(X)


def calls(X, backend, read_each=False):
    model = KMeans(k=K, mini_batch_size=CHUNK, backend=backend, random_state=0)
    for start in range(0, len(X), CHUNK):
        model.partial_fit(X[start:start + CHUNK])
        if read_each:
            model.cluster_centers_  # noqa: B018 (reading them runs the reduction)
    return model.cluster_centers_


def sklearn_calls(X):
    model = MiniBatchKMeans(K, batch_size=CHUNK, random_state=0, n_init=1)
    for start in range(0, len(X), CHUNK):
        model.partial_fit(X[start:start + CHUNK])
    return model.cluster_centers_


def main() -> None:
    X, _ = make_blobs(N, D, centers=K, random_state=0)
    X = np.ascontiguousarray(X, dtype=np.float32)
    rows = []
    names = [n for n, b in backends.REGISTRY.items() if b.kind == "compute" and not b.missing()]
    for name in names:
        fit = median_time(lambda name=name: one_fit(X, name))
        lazy = median_time(lambda name=name: calls(X, name))
        eager = median_time(lambda name=name: calls(X, name, read_each=True))
        rows.append((name, fit, lazy, eager))
    peer = median_time(lambda: sklearn_calls(X))
    lines = [
        f"{N:,}×{D} float32 make_blobs, k={K}, {N // CHUNK} calls of {CHUNK:,} rows; medians of "
        f"{REPEATS} runs after a warm-up. Target: the calls cost at most 1.5× one fit.",
        "",
        "| backend | one fit s | 20 partial_fit s | ratio | centers read after every call s | "
        "scikit-learn MiniBatchKMeans, 20 partial_fit s |",
        "|---|---|---|---|---|---|",
    ]
    for name, fit, lazy, eager in rows:
        lines.append(f"| {name} | {fit:.4f} | {lazy:.4f} | {lazy / fit:.2f}× "
                     f"{'(met)' if lazy / fit <= 1.5 else '(MISSED)'} | {eager:.4f} | "
                     f"{peer:.4f} |")
    text = "\n".join(lines)
    print(text)
    write_section("partial-fit", "partial_fit against one fit on the same rows", text)


if __name__ == "__main__":
    main()
