"""kmeans_stream on the CPU, side by side with scikit-learn and faiss-cpu in one process.

Run as ``.venv/bin/python benchmarks/cpu.py`` (``--quick`` for a small smoke run). It re-executes
itself with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset and NUMBA_NUM_THREADS set, prints the
tables and writes them into benchmarks/RESULTS.md between ``<!-- cpu:start -->`` and
``<!-- cpu:end -->``. All libraries run with the same thread count (threadpoolctl for the BLAS and
OpenMP pools, NUMBA_NUM_THREADS for numba, faiss.omp_set_num_threads).
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_THREADS = int(os.environ.get("KMEANS_BENCH_THREADS", os.cpu_count() or 1))
_ENV_DROP = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _reexec_clean() -> None:
    """Run again without the OpenBLAS overrides and with numba's thread count fixed."""
    dirty = any(name in os.environ for name in _ENV_DROP)
    if dirty or os.environ.get("NUMBA_NUM_THREADS") != str(N_THREADS):
        env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
        env["NUMBA_NUM_THREADS"] = str(N_THREADS)
        env["KMEANS_BENCH_UNSET"] = "1" if dirty else env.get("KMEANS_BENCH_UNSET", "0")
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


_reexec_clean()

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from _results import machine, write_section  # noqa: E402
from sklearn.cluster import KMeans as SkKMeans  # noqa: E402
from sklearn.cluster import MiniBatchKMeans, kmeans_plusplus  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402
from thread_scaling import THREADS_HEADER, TITLE, one_shape, reduction_again  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from kmeans_stream import KMeans  # noqa: E402
from kmeans_stream.algorithm import (  # noqa: E402
    DEFAULT_NUM_TRIALS,
    n_distinct_rows,
    n_initial_centers,
    n_local_trials,
)
from kmeans_stream.backends.base import PLAIN_PROPOSALS  # noqa: E402
from kmeans_stream.backends.numba import NumbaKernels  # noqa: E402
from kmeans_stream.backends.numpy import NumpyKernels  # noqa: E402

GRID = [(1_000_000, 16, 16), (500_000, 64, 256), (200_000, 128, 1024), (5000, 10, 5)]
QUICK_GRID = [(50_000, 16, 16), (20_000, 64, 64), (5000, 10, 5)]
BATCH = 5000
PAUSE_S = 0.5
CACHE = HERE / ".cache"


def _rss_now() -> int:
    return _proc_status("VmRSS")


def _proc_status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def measure(fn, repeats: int, warmup: bool = True) -> tuple[float, int, object]:
    """Median wall time of `repeats` calls after one warm-up; extra peak RSS of the last call.

    Each measurement starts after a pause: the OpenMP runtimes of the previous one (scikit-
    learn's, faiss's, numba's) keep their threads spinning for a while after a parallel
    region, and on two cores they would take the CPU from the next library measured.
    """
    time.sleep(PAUSE_S)
    result = fn() if warmup else None
    times = []
    peak = 0
    for _ in range(repeats):
        before = _rss_now()
        _reset_peak()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        peak = max(peak, _proc_status("VmHWM") - before)
    return float(np.median(times)), peak, result


def sse(X: np.ndarray, centers: np.ndarray) -> float:
    """The one float64 evaluator: sum of squared distances to the closest center."""
    labels = np.empty(len(X), dtype=np.intp)
    sq_dist = np.empty(len(X), dtype=np.float64)
    return NumpyKernels().assign(X, np.asarray(centers, dtype=np.float64), labels, sq_dist)


def seeded(method, X, weights, uniforms):
    """The rows a seeding kernel picks (the kernels fill an indices array)."""
    indices = np.empty(len(uniforms), dtype=np.intp)
    method(X, weights, uniforms, indices)
    return indices


def lloyd(kernels, X, weights, start, max_iter):
    """Weighted Lloyd from a copy of `start` (the kernels update centers in place); max_iter=0
    is one whole pass (every distance, then the sums), the unit the tables count in: later
    passes skip the rows whose center cannot have changed."""
    return kernels.lloyd(X, weights, np.array(start), max_iter, 0.0)


def sgemm_rate() -> float:
    a = np.random.default_rng(0).random((4096, 4096), dtype=np.float32)
    a @ a
    times = []
    for _ in range(3):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * 4096**3 / min(times)


def reference_sse(X, k, shape, n_init: int, sk_default) -> float:
    """sklearn KMeans(n_init) SSE, cached per shape under benchmarks/.cache/ (git-ignored)."""
    CACHE.mkdir(exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")
    path = CACHE / f"ref_{shape[0]}x{shape[1]}_k{k}_n{n_init}.npz"
    if path.exists():
        return float(np.load(path)["sse"])
    if n_init == 1:
        value = sk_default
    else:
        value = sse(X, SkKMeans(k, n_init=n_init, random_state=0).fit(X).cluster_centers_)
    np.savez(path, sse=value)
    return value


def run_shape(n, d, k, rate, quick):
    X, _ = make_blobs(n_samples=n, n_features=d, centers=k, random_state=0)
    X = np.ascontiguousarray(X, dtype=np.float32)
    big = n * d * k > 50_000_000
    slow = 1 if big else 5  # repeats for the slow peers on the big shapes
    fast = 3 if quick else 5
    rows, notes = [], {}
    nb = NumbaKernels()

    def row(name, t, reps, peak, passes_flops=None, centers=None, points=n):
        gf = passes_flops / t / 1e9 if passes_flops else None
        rows.append(dict(name=name, t=t, reps=reps, pts=points / t, gflops=gf,
                         share=(gf * 1e9 / rate) if gf else None,
                         sse=sse(X, centers) if centers is not None else None, peak=peak))
        return rows[-1]

    t, peak, km = measure(lambda: KMeans(k=k, backend="numba", random_state=0).fit(X), fast)
    K = km.n_streaming_centers_
    ours = row(f"kmeans_stream fit, numba (K={K})", t, fast, peak, centers=km.cluster_centers_)
    reduce_s = measure(reduction_again(km, nb), fast)[0]
    t, peak, kp = measure(lambda: KMeans(k=k, backend="numpy", random_state=0).fit(X), slow,
                          warmup=not big)
    row("kmeans_stream fit, numpy", t, slow, peak, centers=kp.cluster_centers_)
    t, peak, sk = measure(lambda: SkKMeans(k, random_state=0).fit(X), slow, warmup=not big)
    skrow = row("sklearn KMeans() defaults", t, slow, peak, centers=sk.cluster_centers_)
    t, peak, mb = measure(
        lambda: MiniBatchKMeans(k, batch_size=BATCH, max_iter=1, random_state=0).fit(X),
        slow, warmup=not big)
    row(f"sklearn MiniBatchKMeans.fit (batch {BATCH}, max_iter=1)", t, slow, peak,
        centers=mb.cluster_centers_)

    def partial():
        model = MiniBatchKMeans(k, batch_size=BATCH, random_state=0)
        for start in range(0, n, BATCH):
            model.partial_fit(X[start:start + BATCH])
        return model
    t, peak, pf = measure(partial, slow, warmup=not big)
    pfrow = row(f"sklearn MiniBatchKMeans.partial_fit ({BATCH}-row batches, 1 pass)", t, slow,
                peak, centers=pf.cluster_centers_)

    def run_faiss():
        model = faiss.Kmeans(d, k, seed=0)
        model.train(X)
        return model
    t, peak, fk = measure(run_faiss, fast if not big else 3)
    row("faiss Kmeans defaults (niter=25)", t, fast if not big else 3, peak,
        centers=fk.centroids)

    start_centers = np.ascontiguousarray(X[:k])

    def stream():
        centers, counts = start_centers.copy(), np.zeros(k)
        nb.stream_batches(X, None, None, BATCH, centers, counts, 0)
        return centers
    t, peak, _ = measure(stream, fast)
    streamrow = row(f"numba stream_batches, 1 pass (K={k}, batch {BATCH})", t, fast, peak,
                    2 * n * k * d)
    ones = np.ones(n)
    t, peak, _ = measure(lambda: lloyd(nb, X, ones, start_centers, 0), fast)
    lloydrow = row(f"numba Lloyd pass (assign+sums, K={k})", t, fast, peak, 2 * n * k * d)
    t, peak, _ = measure(lambda: km.predict(X), fast)
    ourpred = row("kmeans_stream predict, numba", t, fast, peak, 2 * n * k * d)
    t, peak, _ = measure(lambda: sk.predict(X), fast)
    skpred = row("sklearn predict", t, fast, peak, 2 * n * k * d)
    uniforms = np.random.default_rng(0).random((k, 2 * PLAIN_PROPOSALS))
    t, peak, _ = measure(lambda: seeded(nb.kmeanspp_plain, X, ones, uniforms), fast)
    pprow = row(f"numba kmeans++ ({k} centers, plain, lazy)", t, fast, peak)
    init, reduce = init_costs(X, k, nb, fast)

    n_init = 10 if n * d * k <= 300_000_000 else 1
    notes["ref"] = f"KMeans(n_init={n_init})"
    ref = reference_sse(X, k, (n, d), n_init, skrow["sse"])
    for r in rows:
        r["ratio"] = r["sse"] / ref if r["sse"] is not None else None
    targets = dict(
        fit_speedup=skrow["t"] / ours["t"],
        fit_sse=ours["sse"] / skrow["sse"],
        stream_vs_partial_fit=streamrow["pts"] / pfrow["pts"],
        stream_vs_lloyd=streamrow["pts"] / lloydrow["pts"],
        predict_vs_sklearn=skpred["t"] / ourpred["t"],
        predict_sgemm_share=ourpred["share"],
        kmeanspp_in_lloyd_iters=pprow["t"] / lloydrow["t"],
        init_in_lloyd_iters=init,
        reduce_in_lloyd_iters=reduce,
        reduce_share=(reduce_s, reduce_s / ours["t"]),
    )
    return rows, targets, notes, X.nbytes


def init_costs(X, k, nb, repeats):
    """k-means++ as the algorithm uses it, each in Lloyd iterations on the same points and centers.

    init: plain (lazy) k-means++ of K = 10·k centers (capped by the rows) from the first
    mini-batch, as `kmeans_stream.algorithm.initialize` runs it.
    reduce: greedy weighted k-means++ (2 + ln k candidates) of k centers from the K streaming
    centers after one streaming pass, weighted by their counts, in float64, as
    `kmeans_stream.algorithm.reduce_centers` runs it: all its trials (10) in one call, timed per
    trial. scikit-learn's `kmeans_plusplus` (the same greedy form, weighted, one trial) on the
    same points is the peer.
    """
    batch = np.ascontiguousarray(X[:BATCH])
    K = n_initial_centers(k, None, len(batch), n_distinct_rows(batch))
    uniforms = np.random.default_rng(1).random((K, 2 * PLAIN_PROPOSALS))
    ones = np.ones(len(batch))
    t_init, _, idx = measure(lambda: seeded(nb.kmeanspp_plain, batch, ones, uniforms), repeats)
    t_iter = measure(lambda: lloyd(nb, batch, ones, batch[idx], 0), repeats)[0]
    centers, counts = np.ascontiguousarray(batch[idx]), np.zeros(K)
    nb.stream_batches(X, None, None, BATCH, centers, counts, 0)
    points = np.ascontiguousarray(centers[counts > 0], dtype=np.float64)
    weights = counts[counts > 0]
    uniforms = np.random.default_rng(2).random((DEFAULT_NUM_TRIALS, k, n_local_trials(k)))
    seeds = np.empty((DEFAULT_NUM_TRIALS, k), dtype=np.intp)
    t_red = measure(lambda: nb.kmeanspp_trials(points, weights, uniforms, seeds),
                    repeats)[0] / DEFAULT_NUM_TRIALS
    t_red_iter = measure(lambda: lloyd(nb, points, weights, points[seeds[0]], 0), repeats)[0]
    t_peer = measure(lambda: kmeans_plusplus(points, k, sample_weight=weights, random_state=0,
                                             n_local_trials=n_local_trials(k)), repeats)[0]
    print(f"  init: kmeans++ K={K} of {len(batch)} rows {t_init * 1e3:.2f} ms, Lloyd iteration "
          f"{t_iter * 1e3:.2f} ms; reduce: greedy kmeans++ k={k} of {len(points)} weighted "
          f"{t_red * 1e3:.2f} ms a trial (scikit-learn's {t_peer * 1e3:.2f} ms), Lloyd iteration "
          f"{t_red_iter * 1e3:.2f} ms", flush=True)
    return (K, len(batch), t_init / t_iter), (len(points), t_red / t_red_iter,
                                                t_peer / t_red_iter)


def cold_start(repeats: int = 3) -> float:
    code = (
        "from sklearn.datasets import make_blobs\n"
        "import numpy as np\n"
        "X = np.ascontiguousarray(make_blobs(5000, 10, centers=5, random_state=0)[0], "
        "dtype=np.float32)\n"
        "import time; t = time.perf_counter()\n"
        "from kmeans_stream import KMeans\n"
        "KMeans(k=5, backend='numba', random_state=0).fit(X)\n"
        "print(time.perf_counter() - t)\n"
    )
    times, walls = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        walls.append(time.perf_counter() - start)
        times.append(float(out.stdout.split()[-1]))
    return float(np.median(times)), float(np.median(walls))


_MEMORY_CODE = """
import numpy as np, sys
from pathlib import Path
from kmeans_stream import KMeans
n, d, k = map(int, sys.argv[1:4])
KMeans(k=k, backend='numba', random_state=0).fit(
    np.random.default_rng(1).standard_normal((20 * k, d)).astype(np.float32))
rng = np.random.default_rng(0)
means = rng.uniform(-10, 10, (k, d)).astype(np.float32)
X = np.empty((n, d), dtype=np.float32)
for s in range(0, n, 65536):
    rows = min(65536, n - s)
    X[s:s + rows] = means[rng.integers(k, size=rows)] + rng.standard_normal((rows, d))
def status(key):
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key + ':'):
            return int(line.split()[1]) * 1024
before = status('VmRSS')
Path('/proc/self/clear_refs').write_text('5')
KMeans(k=k, backend='numba', random_state=0).fit(X)
print(X.nbytes, status('VmHWM') - before)
"""


def fit_memory(n, d, k) -> float:
    out = subprocess.run([sys.executable, "-c", _MEMORY_CODE, str(n), str(d), str(k)],
                         capture_output=True, text=True, check=True)
    nbytes, extra = map(int, out.stdout.split()[-2:])
    return extra / nbytes


def _fmt(value, spec):
    return "—" if value is None else format(value, spec)


def render(results, rate, cold, memory, elapsed, command, load) -> str:
    lines = [
        f"Machine: {machine()}; {N_THREADS} threads for every library "
        f"(threadpoolctl limits, NUMBA_NUM_THREADS={N_THREADS}, faiss.omp_set_num_threads). "
        f"Date: {datetime.date.today().isoformat()}. Command: `{command}` "
        f"({elapsed / 60:.1f} min). Load average (1, 5, 15 min) at start "
        f"{', '.join(f'{v:.2f}' for v in load[0])}, at end {', '.join(f'{v:.2f}' for v in load[1])}"
        f". OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset in the "
        f"benchmark's environment"
        f"{' (they were set and the script re-executed itself)' if os.environ.get('KMEANS_BENCH_UNSET') == '1' else ''}.",  # noqa: E501
        "",
        f"Measured SGEMM 4096³ (numpy, {N_THREADS} threads): {rate / 1e9:.0f} GFLOP/s. "
        "Data: make_blobs float32 C-contiguous. Times are medians of the repeats shown, after "
        "one warm-up, except for the slow peers on the big shapes (1 run, no warm-up). "
        "GFLOP/s = 2·N·K·d per pass, only for one-pass rows. Peak RSS: the process's extra "
        "peak over the run (VmHWM after a reset minus RSS before).",
        "",
    ]
    for (n, d, k), (rows, _, notes, _) in results.items():
        lines += [f"### {n:,}×{d}, k={k} (SSE reference: scikit-learn {notes['ref']})", "",
                  "| method | wall s | runs | points/s | GFLOP/s | % SGEMM | SSE / ref | "
                  "extra peak RSS MiB |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(
                f"| {r['name']} | {r['t']:.4g} | {r['reps']} | {r['pts']:.3g} | "
                f"{_fmt(r['gflops'], '.1f')} | {_fmt(r['share'] and 100 * r['share'], '.0f')} | "
                f"{_fmt(r['ratio'], '.4f')} | {r['peak'] / 2**20:.0f} |")
        lines.append("")
    lines += ["### Targets", "", "| target | shape | measured | goal | met |",
              "|---|---|---|---|---|"]

    def target(name, shape, value, goal, ok):
        lines.append(f"| {name} | {shape} | {value} | {goal} | {'yes' if ok else 'NO'} |")

    for (n, d, k), (_, t, _, _) in results.items():
        shape = f"{n:,}×{d} k={k}"
        if (n, d, k) in [(1_000_000, 16, 16), (500_000, 64, 256)]:
            target("fit vs sklearn KMeans() (time ratio)", shape, f"{t['fit_speedup']:.2f}×",
                   "≥ 5×", t["fit_speedup"] >= 5)
            target("fit SSE / sklearn KMeans() SSE", shape, f"{t['fit_sse']:.4f}", "≤ 1.03",
                   t["fit_sse"] <= 1.03)
        target("stream pass / partial_fit points/s", shape,
               f"{t['stream_vs_partial_fit']:.1f}×", "≥ 5×", t["stream_vs_partial_fit"] >= 5)
        target("stream pass / Lloyd pass points/s", shape, f"{t['stream_vs_lloyd']:.2f}×",
               "≥ 0.8×", t["stream_vs_lloyd"] >= 0.8)
        if (n, d, k) == (1_000_000, 16, 16):
            target("predict vs sklearn predict", shape, f"{t['predict_vs_sklearn']:.2f}×",
                   "≥ 1.5×", t["predict_vs_sklearn"] >= 1.5)
        if (n, d, k) in [(500_000, 64, 256), (200_000, 128, 1024)]:
            target("predict share of SGEMM rate", shape, f"{100 * t['predict_sgemm_share']:.0f}%",
                   "≥ 65%", t["predict_sgemm_share"] >= 0.65)
        target("kmeans++ time in Lloyd passes", shape, f"{t['kmeanspp_in_lloyd_iters']:.2f}",
               "≤ 3", t["kmeanspp_in_lloyd_iters"] <= 3)
        K, rows, init = t["init_in_lloyd_iters"]
        target(f"init: kmeans++ K={K} of the first {rows} rows, in Lloyd iterations on them",
               shape, f"{init:.2f}", "≤ 3", init <= 3)
        points, red, peer = t["reduce_in_lloyd_iters"]
        target(f"reduce: greedy kmeans++ k={k} of {points} weighted centers, a trial in Lloyd "
               "iterations (scikit-learn's kmeans_plusplus on them)", shape,
               f"{red:.2f} ({peer:.1f})", "≤ 3", red <= 3)
        seconds, share = t["reduce_share"]
        goal = 0.10 if n >= 1_000_000 else 0.25
        target("reduction from K to k, share of the fit", shape,
               f"{100 * share:.0f}% ({seconds:.3f} s)", f"≤ {100 * goal:.0f}%", share <= goal)
    target("cold start (import + cached kernels + fit, 5000×10 k=5)", "5,000×10 k=5",
           f"{cold[0]:.2f} s (whole interpreter {cold[1]:.2f} s)", "≤ 2 s", cold[0] <= 2)
    for shape, ratio in memory.items():
        target("in-memory fit extra peak RSS / X bytes", shape, f"{100 * ratio:.1f}%", "≤ 15%",
               ratio <= 0.15)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, for a smoke run")
    args = parser.parse_args()
    began = time.perf_counter()
    load_start = os.getloadavg()
    print(f"load average at start: {load_start}", flush=True)
    faiss.omp_set_num_threads(N_THREADS)
    with threadpool_limits(N_THREADS):
        rate = sgemm_rate()
        print(f"SGEMM 4096^3: {rate / 1e9:.0f} GFLOP/s", flush=True)
        results = {}
        for shape in QUICK_GRID if args.quick else GRID:
            results[shape] = run_shape(*shape, rate, args.quick)
            print(shape, {k: v if isinstance(v, tuple) else round(v, 3)
                         for k, v in results[shape][1].items()}, flush=True)
        cold = cold_start()
        memory = {}
        for n, d, k in (QUICK_GRID if args.quick else GRID)[:2]:
            memory[f"{n:,}×{d} k={k}"] = fit_memory(n, d, k)
        threads = [*THREADS_HEADER]
        for n, d, k in (QUICK_GRID if args.quick else GRID)[:-1]:
            threads += one_shape(n, d, k)
    command = ".venv/bin/python benchmarks/cpu.py" + (" --quick" if args.quick else "")
    load = (load_start, os.getloadavg())
    text = render(results, rate, cold, memory, time.perf_counter() - began, command, load)
    print(text)
    threads_text = (f"Machine: {machine()}. Date: {datetime.date.today().isoformat()}. Command: "
                    f"`{command}`. Best of 3 runs 0.3 s apart after a warm-up (fit: of 2; "
                    f"reduction: 1 run, again on the fit's state).\n\n" + "\n".join(threads))
    print(threads_text)
    if not args.quick:
        write_section("cpu", "CPU: kmeans_stream vs scikit-learn and faiss", text, stamp=False)
        write_section("threads", TITLE, threads_text, stamp=False)


if __name__ == "__main__":
    main()
