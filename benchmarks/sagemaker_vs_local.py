"""The same data and hyperparameters fitted locally and as a managed SageMaker training job.

Local: kmeans_stream in parity mode (``shuffle=False, reassignment_ratio=0``: SageMaker's
algorithm) and with its defaults. Managed: backend='sagemaker' on SageMaker's K-Means image,
when AWS credentials and a role are present (``KMEANS_STREAM_BENCH_ROLE``, and optionally
``KMEANS_STREAM_BENCH_BUCKET``, ``KMEANS_STREAM_BENCH_INSTANCE`` = ml.c5.xlarge); without them
the managed half is skipped, and the report says so.

Reported side by side: wall time, billable seconds, an on-demand cost estimate (the dated table
in benchmarks/sagemaker_prices.json) and the mean squared distance of the data to the k centers
(test:msd, computed here for every result, so all rows are measured the same way), with
SageMaker's own train:msd beside it.

    python benchmarks/sagemaker_vs_local.py [--rows 1000000] [--features 16] [--k 16]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from _results import write_section
from sklearn.datasets import load_sample_image, make_blobs

from kmeans_stream import KMeans

PRICES = json.loads((Path(__file__).parent / "sagemaker_prices.json").read_text())
PARITY = {"shuffle": False, "reassignment_ratio": 0}


def datasets(rows: int, features: int, k: int) -> list[tuple[str, np.ndarray, int]]:
    X, _ = make_blobs(rows, features, centers=k, random_state=0)
    china = load_sample_image("china.jpg").reshape(-1, 3).astype(np.float32) / 255
    return [(f"make_blobs {rows:,}×{features}, shuffled", X.astype(np.float32), k),
            (f"china.jpg pixels in scan order {len(china):,}×3", china, 16)]


def local(X: np.ndarray, k: int, **params) -> dict:
    start = time.perf_counter()
    model = KMeans(k=k, random_state=0, **params).fit(X)
    wall = time.perf_counter() - start
    return {"wall": wall, "billable": None, "cost": None, "msd": msd(model, X),
            "train_msd": model.train_msd_}


def managed(X: np.ndarray, k: int) -> dict | str:
    """One training job, or why it was skipped."""
    role = os.environ.get("KMEANS_STREAM_BENCH_ROLE")
    try:
        import boto3
    except ImportError:
        return "skipped: boto3 is not installed (pip install 'kmeans-stream[sagemaker]')"
    if boto3.Session().get_credentials() is None:
        return "skipped: no AWS credentials on this machine"
    if not role:
        return "skipped: set KMEANS_STREAM_BENCH_ROLE to a SageMaker execution role"
    instance = os.environ.get("KMEANS_STREAM_BENCH_INSTANCE", "ml.c5.xlarge")
    options = {"bucket": os.environ["KMEANS_STREAM_BENCH_BUCKET"]} \
        if "KMEANS_STREAM_BENCH_BUCKET" in os.environ else {}
    start = time.perf_counter()
    model = KMeans(k=k, backend="sagemaker", role=role, instance_type=instance,
                   sagemaker_options=options).fit(X)
    wall = time.perf_counter() - start
    name = model.training_job_name_
    billable = boto3.client("sagemaker").describe_training_job(
        TrainingJobName=name)["BillableTimeInSeconds"]
    price = PRICES["usd_per_hour"].get(instance)
    return {"wall": wall, "billable": billable,
            "cost": None if price is None else billable / 3600 * price,
            "msd": msd(model, X), "train_msd": model.metrics_.get("train:msd"),
            "job": name, "instance": instance}


def msd(model: KMeans, X: np.ndarray) -> float:
    """Mean squared distance of X to the model's centers (a SageMaker model predicts here)."""
    return model.evaluate(X)["test:msd"]


def cell(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def row(name: str, result: dict) -> str:
    return (f"| {name} | {result['wall']:.2f} | {cell(result['billable'], 'd')} | "
            f"{cell(result['cost'], '.4f')} | {result['msd']:.6g} | "
            f"{cell(result['train_msd'], '.6g')} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--k", type=int, default=16)
    args = parser.parse_args()
    lines = [f"Prices: {PRICES['region']} on-demand, {PRICES['as_of']} "
             "(benchmarks/sagemaker_prices.json). msd: mean squared distance of the data to "
             "the k centers, computed here for every row of the table.", ""]
    KMeans(k=2, random_state=0).fit(np.random.default_rng(0).normal(size=(5000, 4)))  # JIT
    for title, X, k in datasets(args.rows, args.features, args.k):
        results = {"kmeans_stream, parity (SageMaker's algorithm)": local(X, k, **PARITY),
                   "kmeans_stream, defaults": local(X, k)}
        job = managed(X, k)
        lines += [f"**{title}, k={k}**", "",
                  "| run | wall s | billable s | on-demand USD | msd | train:msd |",
                  "|---|---|---|---|---|---|"]
        lines += [row(name, result) for name, result in results.items()]
        if isinstance(job, str):
            lines += ["", f"SageMaker training job: {job}.", ""]
        else:
            lines.append(row(f"SageMaker job {job['job']} ({job['instance']})", job))
            lines.append("")
    text = "\n".join(lines)
    print(text)
    write_section("sagemaker", "kmeans_stream against SageMaker's managed training job", text)


if __name__ == "__main__":
    main()
