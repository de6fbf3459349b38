"""Peak memory of a streaming fit from a CSV file must not grow with the file.

Writes two CSV files of float32 rows, N and 4N rows (250,000 and 1,000,000 x 32 by default,
about 81 and 325 MB), in a temporary folder. Then, for each, a fresh Python process runs
``KMeans(k=16, mini_batch_size=5000, random_state=0).fit(path)`` and reports its peak resident
set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``); a third fresh process only imports
kmeans_stream and pyarrow, for the fixed cost. The target: the 4N peak within 5% of the N peak.
Last, the read throughput of ``iter_batches`` alone on the 4N file, in MB/s (10^6 bytes of
file per second), the median of five reads after one that warms the page cache.

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

_FIT = """
import json, resource, sys, time
from kmeans_stream import KMeans
start = time.perf_counter()
model = KMeans(k=16, mini_batch_size=5000, random_state=0).fit(sys.argv[1])
seconds = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rss_kib": rss, "seconds": seconds, "rows": int(model.n_samples_seen_)}))
"""

_IMPORT_ONLY = """
import json, resource
import kmeans_stream, kmeans_stream.io.sources, pyarrow.csv
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rss_kib": rss, "seconds": 0.0, "rows": 0}))
"""


def write_csv(path: str, rows: int, cols: int, seed: int) -> None:
    """Write `rows` random float32 rows to `path` a block at a time."""
    rng = np.random.default_rng(seed)
    step = 50_000
    blocks = (
        rng.normal(size=(min(step, rows - start), cols)).astype(np.float32)
        for start in range(0, rows, step)
    )
    convert(blocks, path, batch_size=step)


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
            results[label] = run_fresh(_FIT, path)
            results[label]["mb"] = os.path.getsize(path) / 1e6
        mb_s = read_throughput(paths["4N"], 5000, args.repeats)
    _print_table(results, mb_s, args)


def _print_table(results: dict, mb_s: float, args: argparse.Namespace) -> None:
    title = (
        f"Streaming fit from CSV: peak memory does not grow with the file ({args.cols} "
        "float32 columns, k=16, mini_batch_size=5000, each fit in a fresh process)"
    )
    lines = [
        "| run | rows | CSV MB | fit s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, r in results.items():
        mb = f"{r['mb']:.0f}" if "mb" in r else "-"
        fit_s = f"{r['seconds']:.1f}" if r["rows"] else "-"
        lines.append(f"| {label} | {r['rows']:,} | {mb} | {fit_s} | {r['rss_kib'] / 1024:.1f} |")
    ratio = results["4N"]["rss_kib"] / results["N"]["rss_kib"]
    verdict = "within" if abs(ratio - 1) <= 0.05 else "OUTSIDE"
    lines += [
        "",
        f"Peak RSS 4N / N = {ratio:.3f} ({verdict} the 5% target).",
        "",
        f"CSV read throughput of `iter_batches`: {mb_s:.0f} MB/s (median of {args.repeats}, "
        "4N file, page cache warm).",
    ]
    text = "\n".join(lines)
    print(f"{title}\n\n{text}")
    write_section("stream-memory", title, text)


if __name__ == "__main__":
    main()
