"""KMeans(backend='cupy') end to end on the GPU machine, against the CPU backends.

A numpy X and a CuPy X, parity mode and the defaults, predict / transform / score on both
sides; SSE within 1e-4 relative of the numpy backend in parity mode (same seeds, same draws),
same labels on separated data. Prints one line per check and fails on the first wrong one.
"""

from __future__ import annotations

import time

import numpy as np


def blobs(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.uniform(-50, 50, (k, d))
    return (means[rng.integers(k, size=n)] + rng.standard_normal((n, d))).astype(np.float32)


def sse(X, centers):
    from kmeans_stream.metrics import sum_squared_distances

    return sum_squared_distances(X, centers)


def main() -> None:
    import cupy as cp

    from kmeans_stream import KMeans
    from kmeans_stream.backends._cupy_host import host_kernels

    print("small seeding and Lloyd problems run on the host with", host_kernels("numba").name,
          flush=True)
    X = blobs(1_000_000, 16, 16)
    parity = dict(k=16, random_state=0, shuffle=False, reassignment_ratio=0)
    for label, params in (("parity", parity), ("defaults", dict(k=16, random_state=0))):
        ref = KMeans(backend="numpy", **params).fit(X[:200_000])
        gpu = KMeans(backend="cupy", **params).fit(X[:200_000])
        ratio = sse(X, gpu.cluster_centers_) / sse(X, ref.cluster_centers_)
        agree = (gpu.predict(X[:100_000]) == ref.predict(X[:100_000])).mean()
        print(f"{label}: SSE cupy / numpy {ratio:.6f}, labels agree {agree:.6f}", flush=True)
        assert abs(ratio - 1) < (1e-4 if label == "parity" else 2e-2) and agree > 0.9999
    device = cp.asarray(X)
    for where, data in (("host", X), ("device", device)):
        KMeans(k=16, backend="cupy", random_state=0).fit(data)  # warm
        cp.cuda.runtime.deviceSynchronize()
        start = time.perf_counter()
        model = KMeans(k=16, backend="cupy", random_state=0).fit(data)
        cp.cuda.runtime.deviceSynchronize()
        seconds = time.perf_counter() - start
        labels = model.predict(data)
        kind = type(labels).__module__.split(".")[0]
        print(f"fit 1M x 16 k=16 from {where}: {seconds:.3f} s; predict returns {kind} "
              f"{labels.dtype}; SSE / numpy fit "
              f"{sse(X, model.cluster_centers_) / sse(X, KMeans(k=16, backend='numpy', random_state=0).fit(X).cluster_centers_):.4f}",  # noqa: E501
              flush=True)
    model = KMeans(k=16, backend="cupy", random_state=0).fit(device)
    distances = model.transform(device[:1000])
    labels, dist = model.predict_with_distance(device[:1000])
    assert float(cp.abs(distances.min(axis=1) - dist).max()) < 1e-3
    print("transform / predict_with_distance agree on the device; score", model.score(X[:1000]))
    saved = model.save("/tmp/gpu_model.tar.gz")
    from kmeans_stream import load

    again = load(saved)
    assert (again.predict(X[:1000]) == cp.asnumpy(model.predict(device[:1000]))).all()
    print("saved on the GPU machine, loaded and predicted with", again.backend, "-> 'auto'")


if __name__ == "__main__":
    main()
