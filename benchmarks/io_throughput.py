"""Read throughput of RecordIO-protobuf: `read_recordio` and `iter_recordio` on a dense file.

Writes a dense float32 file as the SageMaker SDK would (1,000,000 x 64 by default, about
280 MB) in a temporary folder, then reads it back five times each way and prints the median
throughput in MB/s (10^6 bytes of file per second). The first read warms the page cache, so
the figure is the decoder's speed, not the disk's.

Usage: ``python benchmarks/io_throughput.py [--rows N] [--cols D] [--batch-size B]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
from _results import write_section

from kmeans_stream.io import iter_recordio, read_recordio, write_recordio


def _median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _consume(path: str, batch_size: int) -> None:
    for _ in iter_recordio(path, batch_size):
        pass


def main() -> None:
    """Run the benchmark and print one line per reader."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    X = np.random.default_rng(0).normal(size=(args.rows, args.cols)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "matrix_0.pbr")
        start = time.perf_counter()
        write_recordio(path, X)
        write_s = time.perf_counter() - start
        megabytes = os.path.getsize(path) / 1e6
        read_recordio(path)
        read_s = _median_seconds(lambda: read_recordio(path), args.repeats)
        iter_s = _median_seconds(lambda: _consume(path, args.batch_size), args.repeats)
    title = (
        f"RecordIO-protobuf throughput ({args.rows:,} x {args.cols} float32, "
        f"{megabytes:.0f} MB, page cache warm)"
    )
    text = "\n".join([
        "| function | MB/s | runs |",
        "|---|---:|---|",
        f"| write_recordio | {megabytes / write_s:.0f} | one |",
        f"| read_recordio | {megabytes / read_s:.0f} | median of {args.repeats} |",
        f"| iter_recordio(batch_size={args.batch_size}) | {megabytes / iter_s:.0f} | "
        f"median of {args.repeats} |",
        "",
        "Target: dense reading >= 200 MB/s.",
    ])
    print(f"{title}\n\n{text}")
    write_section("recordio", title, text)


if __name__ == "__main__":
    main()
