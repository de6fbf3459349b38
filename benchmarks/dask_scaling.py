"""backend='dask' on one and two worker processes against the single-machine fit.

The data, N x D float32 rows of K Gaussian blobs (4,000,000 x 16, k=16 by default; 256 MB),
is made on the workers, a block of 250,000 rows per task, and persisted there; the client
never holds it. The single-machine reference is ``KMeans(k, random_state=0)`` (numba, both
cores) on the same rows made in this process. For each cluster, a LocalCluster of W processes
of one thread each (NUMBA_NUM_THREADS=1) on loopback: one fit to load the kernels, then the
median and best of R timed fits of ``KMeans(k, random_state=0, backend="dask")`` (the
defaults: a sampled start, one epoch, Lloyd passes over the blocks to refine), its passes over
the data, its SSE over the single-machine fit's SSE on the same rows, and the client's peak of
traced memory (tracemalloc) during one more fit; then the same figures in parity mode
(``shuffle=False, reassignment_ratio=0``: SageMaker's algorithm on each block, merged; no
sampling pass and no refinement).

The machine is shared with whatever else runs on it; the best of the repeats is the figure
least disturbed, and the load average at start and end is reported beside it.

Usage: ``python benchmarks/dask_scaling.py [--rows N] [--cols D] [--k K] [--repeats R]
[--no-write]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
import tracemalloc

import numpy as np
from _results import write_section

from kmeans_stream import KMeans

BLOCK_ROWS = 250_000
SETTINGS = (("defaults", {}), ("parity", {"shuffle": False, "reassignment_ratio": 0}))


def make_block(n_rows: int, n_features: int, k: int, seed: int, block_id=None) -> np.ndarray:
    """One block of blob rows, the same wherever it is made (a seed per block)."""
    means = np.random.default_rng(seed).uniform(-10, 10, (k, n_features))
    rng = np.random.default_rng([seed, block_id[0]])
    return (means[rng.integers(k, size=n_rows)]
            + rng.normal(size=(n_rows, n_features))).astype(np.float32)


class Passes(logging.Handler):
    """Counts the Lloyd passes a dask fit logs."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.moves: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("refined on the data"):
            self.moves = int(record.args[0])


def timed(fit, repeats: int) -> tuple[tuple[float, float], KMeans]:
    """(median, best) seconds of `repeats` calls after one that warms up, and the last model."""
    fit()  # kernels loaded, caches warm
    seconds, model = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        model = fit()
        seconds.append(time.perf_counter() - start)
    return (statistics.median(seconds), min(seconds)), model


def run_cluster(workers: int, args, X_local: np.ndarray, reference_sse: float, passes: Passes):
    import dask.array as da
    from distributed import Client, LocalCluster, wait

    n_blocks = -(-args.rows // BLOCK_ROWS)
    sizes = tuple(min(BLOCK_ROWS, args.rows - i * BLOCK_ROWS) for i in range(n_blocks))
    rows = []
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      env={"NUMBA_NUM_THREADS": "1"}) as cluster, Client(cluster) as client:
        X = da.map_blocks(lambda block_id=None: make_block(sizes[block_id[0]], args.cols,
                                                          args.k, 0, block_id),
                          chunks=(sizes, (args.cols,)), dtype=np.float32)
        X = client.persist(X)
        wait(X)
        for name, extra in SETTINGS:
            def fit(extra=extra):
                passes.moves = None
                return KMeans(k=args.k, random_state=0, backend="dask", **extra).fit(X)

            seconds, model = timed(fit, args.repeats)
            sse = -model.score(X_local)
            rows.append((workers, name, seconds, passes.moves, sse / reference_sse))
        tracemalloc.start()
        KMeans(k=args.k, random_state=0, backend="dask").fit(X)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return rows, peak, n_blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--cols", type=int, default=16)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    load_start = os.getloadavg()

    n_blocks = -(-args.rows // BLOCK_ROWS)
    X_local = np.concatenate([
        make_block(min(BLOCK_ROWS, args.rows - i * BLOCK_ROWS), args.cols, args.k, 0, (i, 0))
        for i in range(n_blocks)])
    local_seconds, local = timed(lambda: KMeans(k=args.k, random_state=0).fit(X_local),
                                 args.repeats)
    reference_sse = -local.score(X_local)

    passes = Passes()
    logging.getLogger("kmeans_stream").addHandler(passes)
    logging.getLogger("kmeans_stream").setLevel(logging.INFO)
    rows, peaks = [], {}
    for workers in (1, 2):
        found, peaks[workers], _ = run_cluster(workers, args, X_local, reference_sse, passes)
        rows += found
    one_worker = {name: best for workers, name, (_, best), _, _ in rows if workers == 1}

    lines = [
        f"Data: {args.rows:,}x{args.cols} float32 ({X_local.nbytes / 2**20:.0f} MiB), "
        f"{args.k} blobs, made and persisted on the workers in {n_blocks} blocks of "
        f"{BLOCK_ROWS:,} rows; k={args.k}. Times: median and best of {args.repeats} fits "
        "after one that loads the kernels. Passes over the data with the defaults: one to "
        "sample the starting rows, one epoch, then the Lloyd passes that refine (the last one "
        "only confirms); in parity mode, the first rows and one epoch.",
        "",
        "| fit | workers | median s | best s | speed-up over 1 worker (best) | Lloyd moves | "
        "SSE / single-machine |",
        "|---|---|---|---|---|---|---|",
        f"| single machine, numba, 2 threads | — | {local_seconds[0]:.3f} | "
        f"{local_seconds[1]:.3f} | — | — | 1.0000 |",
    ]
    for workers, name, (median, best), moves, ratio in rows:
        lines.append(f"| dask, {name} | {workers} | {median:.3f} | {best:.3f} | "
                     f"{one_worker[name] / best:.2f} | {'—' if moves is None else moves} | "
                     f"{ratio:.4f} |")
    lines += [
        "",
        f"Client memory: the peak of traced allocations in the client process during one fit "
        f"was {peaks[1] / 2**20:.2f} MiB with 1 worker and {peaks[2] / 2**20:.2f} MiB with 2 "
        f"(the data: {X_local.nbytes / 2**20:.0f} MiB on the workers). What reaches the "
        "client is the starting sample and one merged state (K x d) per pass.",
        "",
        "Load average (1, 5, 15 min) at start {:.2f}, {:.2f}, {:.2f}, at end {:.2f}, {:.2f}, "
        "{:.2f}: the machine's two cores serve the workers, the client and the scheduler "
        "alike.".format(*load_start, *os.getloadavg()),
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("dask", "backend='dask': one and two workers against one machine", text)


if __name__ == "__main__":
    main()
