"""How the numba kernels scale with threads: the streaming pass against a Lloyd pass, and a
whole fit with the share its reduction takes (issue 14's 2-, 4-, 8- and 16-core rows).

For each shape and each thread count up to the machine's cores (1, 2, 4, 8, 16): one streaming
pass in 5,000-row batches (k centers), one Lloyd pass (assign + update, k centers), both in
points per second, and their ratio (target >= 0.8); what a batch adds to the streaming pass
(the fork/join, the workers' partial sums, the running-mean update), from the same pass in
batches 20 times larger: the time saved over the batches saved; then a default fit and the
time of its reduction from K to k (measured by running the same reduction again on the fit's
state). Best of 3 after a warm-up, 0.3 s apart. Writes the "threads" section of RESULTS.md.

    python benchmarks/thread_scaling.py [--quick] [--out PATH]

`benchmarks/cpu.py` runs the same table on its shapes and writes it too; this script is the
short form, for a machine where only the scaling is wanted. On the 16-core device machine
(numba installed there), after the GPU check if time is left:
``python3 benchmarks/thread_scaling.py --out $OUT/threads.md`` (about 3 minutes on 16 cores),
then paste the table into RESULTS.md with the machine's name.
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import numba
import numpy as np
from _results import machine, spaced_times, write_section
from sklearn.datasets import make_blobs

from kmeans_stream import KMeans
from kmeans_stream.algorithm import reduce_centers
from kmeans_stream.backends.numba import NumbaKernels

BATCH = 5000
LARGE = 20 * BATCH  # batches as many times larger, to tell what a batch costs in itself
SHAPES = [(1_000_000, 16, 16), (500_000, 64, 256), (200_000, 128, 1024)]
QUICK = [(100_000, 16, 16), (50_000, 64, 64)]


THREADS_HEADER = [
    "| shape | threads | stream pass M pts/s | Lloyd pass M pts/s | stream / Lloyd "
    "(target >= 0.8) | per-batch overhead µs (share of the stream pass) | fit s | "
    "reduction s (share of the fit) |",
    "|---|---|---|---|---|---|---|---|"]
TITLE = "numba kernels by thread count: streaming pass, Lloyd pass, reduction share"


def best(fn, repeats: int = 3) -> float:
    return min(spaced_times(fn, repeats, 0.3))


def reduction_again(model: KMeans, kernels: NumbaKernels):
    """A call that runs a fitted model's reduction from K to k again, on its streamed state,
    with a copy of the generator it started from."""
    fitted = model._fitted
    return lambda: reduce_centers(fitted.state, fitted.params, kernels, copy.deepcopy(fitted.rng))


def threads_to_try() -> list[int]:
    cores = numba.config.NUMBA_NUM_THREADS
    return [t for t in (1, 2, 4, 8, 16) if t <= cores] or [1]


def one_shape(n: int, d: int, k: int) -> list[str]:
    X, _ = make_blobs(n, d, centers=k, random_state=0)
    X = np.ascontiguousarray(X, dtype=np.float32)
    lines = []
    cores = numba.get_num_threads()
    for threads in threads_to_try():
        numba.set_num_threads(threads)
        t = one_count(X, k)
        batches = -(-n // BATCH)
        per_batch = max(0.0, t["stream"] - t["large_batches"]) / (batches - -(-n // LARGE))
        overhead = per_batch * batches
        lines.append(
            f"| {n:,}×{d} k={k} (K={t['K']}) | {threads} | {n / t['stream'] / 1e6:.1f} | "
            f"{n / t['lloyd'] / 1e6:.1f} | {t['lloyd'] / t['stream']:.2f} | "
            f"{per_batch * 1e6:.0f} ({overhead / t['stream']:.0%}) | {t['fit']:.2f} | "
            f"{t['reduce']:.2f} ({t['reduce'] / t['fit']:.0%}) |")
        print(lines[-1], flush=True)
    numba.set_num_threads(cores)
    return lines


def one_count(X: np.ndarray, k: int) -> dict[str, float]:
    """Seconds of a streaming pass (in BATCH-row batches, and in LARGE-row ones), a Lloyd pass,
    a fit and its reduction; and K."""
    kernels = NumbaKernels()
    start = np.ascontiguousarray(X[:k])
    ones = np.ones(len(X))

    def stream(batch_size):
        kernels.stream_batches(X, None, None, batch_size, start.copy(), np.zeros(k), 0)

    times = dict(stream=best(lambda: stream(BATCH)), large_batches=best(lambda: stream(LARGE)),
                 lloyd=best(lambda: kernels.lloyd(X, ones, np.array(start), 0, 0.0)))
    model = KMeans(k=k, backend="numba", random_state=0)
    times["fit"] = best(lambda: model.fit(X), repeats=2)
    times["reduce"] = best(reduction_again(model, kernels), repeats=1)
    times["K"] = model.n_streaming_centers_
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    lines = [
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}. Command: `python "
        f"benchmarks/thread_scaling.py{' --quick' if args.quick else ''}`. Load average at "
        f"start: {os.getloadavg()[0]:.2f}.", "", *THREADS_HEADER]
    for shape in QUICK if args.quick else SHAPES:
        lines += one_shape(*shape)
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as out:
            out.write(text + "\n")
    if not args.quick:
        write_section("threads", TITLE, text, stamp=False)


if __name__ == "__main__":
    main()
