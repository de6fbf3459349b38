"""Peak memory of a streaming fit from a CSV file is bounded by the shuffle buffer, not the file,
and a file sorted by cluster streams to the quality of an in-memory fit.

Writes two CSV files of float32 rows sorted by cluster (16 Gaussian blobs, one after another),
N and 4N rows (250,000 and 1,000,000 x 32 by default, about 81 and 325 MB), in a temporary
folder. Then, for each, a fresh Python process runs ``KMeans(k=16, mini_batch_size=5000,
random_state=0, shuffle_buffer=BUFFER).fit(path)`` (the defaults otherwise: shuffled) and
reports its peak resident set size (VmHWM of ``/proc/self/status``); a third
fresh process imports kmeans_stream and pyarrow and fits 2,000 rows in memory (numba and
its compiled kernels loaded), for the fixed cost. Targets: the 4N peak
within 5% of the N peak (both files are larger than the buffer), the peak above the import
within the buffer plus 64 MiB (batches, pyarrow's read blocks), and the SSE of each streamed fit
within 3% of an in-memory fit of the same rows (in this process, on the loaded file). Last, the
read throughput of ``iter_batches`` alone on the 4N file, in MB/s (10^6 bytes of file per
second), the median of five reads after one that warms the page cache.

Usage: ``python benchmarks/stream_memory.py [--rows N] [--cols D] [--repeats R]``; unset
``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` first where they are set (see PERF.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from _results import write_section

from kmeans_stream.io.convert import convert
from kmeans_stream.io.sources import iter_batches

BUFFER = "16MiB"
# The peak of this process's own memory: VmHWM starts afresh at exec, where ru_maxrss keeps
# the forking parent's (which holds a whole file while it measures quality).
_PEAK = """
def peak_kib():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1])
"""
_FIT = _PEAK + """
import json, sys, time
from kmeans_stream import KMeans
start = time.perf_counter()
model = KMeans(k=16, mini_batch_size=5000, random_state=0, shuffle_buffer=sys.argv[2])
model.fit(sys.argv[1])
seconds = time.perf_counter() - start
print(json.dumps({"rss_kib": peak_kib(), "seconds": seconds,
                  "rows": int(model.n_samples_seen_), "centers": model.cluster_centers_.tolist()}))
"""

_IMPORT_ONLY = _PEAK + """
import json
import numpy as np, pyarrow.csv
from kmeans_stream import KMeans
KMeans(k=16, random_state=0).fit(
    np.random.default_rng(0).normal(size=(2000, 32)).astype(np.float32))  # the kernels
print(json.dumps({"rss_kib": peak_kib(), "seconds": 0.0, "rows": 0}))
"""


def write_csv(path: str, rows: int, cols: int, seed: int) -> None:
    """Write `rows` float32 rows sorted by cluster (16 blobs, one after the other) to `path`
    a block at a time."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(-10, 10, size=(16, cols)).astype(np.float32)
    step = 50_000
    blocks = (
        (means[np.arange(start, min(rows, start + step)) * 16 // rows]
         + rng.normal(size=(min(step, rows - start), cols))).astype(np.float32)
        for start in range(0, rows, step)
    )
    convert(blocks, path, batch_size=step)


def quality(path: str, centers: list) -> float:
    """SSE of the streamed centers over an in-memory fit's, on the file's rows."""
    from kmeans_stream import KMeans
    from kmeans_stream.metrics import sum_squared_distances

    X = np.concatenate(list(iter_batches(path, 100_000)))
    in_memory = KMeans(k=16, mini_batch_size=5000, random_state=0).fit(X)
    return sum_squared_distances(X, np.asarray(centers)) / sum_squared_distances(
        X, in_memory.cluster_centers_)


def run_fresh(code: str, *args: str) -> dict:
    """Run `code` in a new interpreter and return the JSON it prints."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def read_throughput(path: str, batch_size: int, repeats: int) -> float:
    """MB/s of `iter_batches` over `path`: median of `repeats` reads after a warm-up read."""
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        for _ in iter_batches(path, batch_size):
            pass
        if i:
            times.append(time.perf_counter() - start)
    return os.path.getsize(path) / statistics.median(times) / 1e6


def main() -> None:
    """Run the benchmark and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--cols", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for label, rows in (("N", args.rows), ("4N", 4 * args.rows)):
            paths[label] = os.path.join(folder, f"train_{label}.csv")
            write_csv(paths[label], rows, args.cols, seed=rows)
        results = {"import only": run_fresh(_IMPORT_ONLY)}
        for label, path in paths.items():
            results[label] = run_fresh(_FIT, path, BUFFER)
            results[label]["mb"] = os.path.getsize(path) / 1e6
            results[label]["sse"] = quality(path, results[label]["centers"])
        mb_s = read_throughput(paths["4N"], 5000, args.repeats)
    _print_table(results, mb_s, args)


def _print_table(results: dict, mb_s: float, args: argparse.Namespace) -> None:
    from kmeans_stream.hyperparameters import to_bytes

    title = (
        f"Streaming fit from a CSV sorted by cluster: memory bounded by the shuffle buffer "
        f"({args.cols} float32 columns, k=16, mini_batch_size=5000, shuffle_buffer="
        f"'{BUFFER}', each fit in a fresh process)"
    )
    lines = [
        "| run | rows | CSV MB | fit s | peak RSS MiB | SSE / in-memory fit's |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, r in results.items():
        mb = f"{r['mb']:.0f}" if "mb" in r else "-"
        fit_s = f"{r['seconds']:.1f}" if r["rows"] else "-"
        sse = f"{r['sse']:.4f}" if "sse" in r else "-"
        lines.append(f"| {label} | {r['rows']:,} | {mb} | {fit_s} | "
                     f"{r['rss_kib'] / 1024:.1f} | {sse} |")
    ratio = results["4N"]["rss_kib"] / results["N"]["rss_kib"]
    verdict = "within" if abs(ratio - 1) <= 0.05 else "OUTSIDE"
    above = (results["4N"]["rss_kib"] - results["import only"]["rss_kib"]) / 1024
    bound = to_bytes(BUFFER) / 2**20 + 64
    worst = max(results[label]["sse"] for label in ("N", "4N"))
    lines += [
        "",
        f"Peak RSS 4N / N = {ratio:.3f} ({verdict} the 5% target). Peak above the import: "
        f"{above:.0f} MiB ({'within' if above <= bound else 'OUTSIDE'} the buffer + 64 MiB = "
        f"{bound:.0f} MiB). Streamed SSE at most {worst:.4f}× the in-memory fit's "
        f"({'within' if worst <= 1.03 else 'OUTSIDE'} 1.03).",
        "",
        f"CSV read throughput of `iter_batches`: {mb_s:.0f} MB/s (median of {args.repeats}, "
        "4N file, page cache warm).",
    ]
    text = "\n".join(lines)
    print(f"{title}\n\n{text}")
    write_section("stream-memory", title, text)


if __name__ == "__main__":
    main()
