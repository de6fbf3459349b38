"""backend='dask' (issue 13) on a real distributed.LocalCluster of two worker processes on
loopback: the merge of states, quality against the local fit, parity with it, a worker killed
mid-fit, DataFrames and files, lazy predictions, the client's memory, and bad input."""

from __future__ import annotations

import os
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmeans_stream import KMeans
from kmeans_stream.backends.base import StreamState

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")
pd = pytest.importorskip("pandas")

from kmeans_stream.backends.dask import merge_states  # noqa: E402  (needs dask)

# The workers unpickle this module's functions by value: they need not import the tests.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

PARITY = dict(shuffle=False, reassignment_ratio=0)


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on loopback, for the whole module."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                  env={"NUMBA_NUM_THREADS": "1"}) as cluster:
        yield cluster


@pytest.fixture
def address(cluster):
    return cluster.scheduler_address


def blobs(n=60_000, d=6, k=12, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    means = rng.uniform(-10, 10, (k, d))
    X = means[rng.integers(k, size=n)] + rng.normal(size=(n, d))
    return (np.round(X * 256) / 256).astype(dtype)  # exact in float32 and in CSV text


def sse(model, X):
    return -model.score(X)


# ------------------------------------------------------------------ the merge


def _random_states(seed, n_states, K=7, d=3):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(K, d))
    states = []
    for _ in range(n_states):
        counts = rng.integers(0, 5, size=K).astype(np.float64) * rng.uniform(0.5, 2, size=K)
        centers = np.where(counts[:, None] > 0, rng.normal(size=(K, d)), base)
        states.append(StreamState(centers, counts, int(rng.integers(100)), 1, 2.0))
    return states


def _merge_in_groups(states, rng):
    """Merge in a random order and a random tree of groups."""
    states = [states[i] for i in rng.permutation(len(states))]
    while len(states) > 1:
        size = int(rng.integers(2, 4))
        states = [merge_states(states[i:i + size]) for i in range(0, len(states), size)]
    return states[0]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_states=st.integers(1, 9))
def test_merging_is_the_count_weighted_mean_in_any_order(seed, n_states):
    states = _random_states(seed, n_states)
    counts = sum(s.counts for s in states)
    sums = sum(s.counts[:, None] * s.centers for s in states)
    live = counts > 0
    for trial in range(3):
        merged = _merge_in_groups(states, np.random.default_rng([seed, trial]))
        np.testing.assert_allclose(merged.counts, counts, rtol=1e-13)
        np.testing.assert_allclose(merged.centers[live], sums[live] / counts[live, None],
                                   rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(merged.centers[~live], states[0].centers[~live])
        assert merged.n_seen == sum(s.n_seen for s in states)
        assert merged.n_steps == n_states and merged.weight_seen == 2.0 * n_states


# ------------------------------------------------------------------ the fit


def test_one_partition_in_parity_mode_is_the_local_fit(address):
    X = blobs(n=20_000)
    for extra in ({}, {"epochs": 2, "half_life_time_size": 3000, "init_method": "kmeans++"}):
        local = KMeans(k=12, random_state=3, **PARITY, **extra).fit(X)
        spread = KMeans(k=12, random_state=3, backend="dask", scheduler_address=address,
                        **PARITY, **extra).fit(da.from_array(X, chunks=(len(X), 6)))
        # One epoch is bit for bit; a second one takes the base state away again (rounding).
        tol = 1e-5 if extra else 0
        np.testing.assert_allclose(spread.cluster_centers_, local.cluster_centers_, rtol=tol,
                                   atol=tol)
        assert spread.n_samples_seen_ == local.n_samples_seen_
        assert spread.n_steps_ == local.n_steps_


def test_the_distributed_fit_is_as_good_as_the_local_one(address):
    X = blobs()
    dX = da.from_array(X, chunks=(7_500, 6))  # 8 partitions
    local = KMeans(k=12, random_state=0).fit(X)
    for params in ({}, {"epochs": 2}, PARITY):
        spread = KMeans(k=12, random_state=0, backend="dask", scheduler_address=address,
                        **params).fit(dX)
        assert sse(spread, X) <= 1.02 * sse(local, X), params


def _kill_once(block, marker):
    """Kill the worker process computing this block, the first time only."""
    if block.size and not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os._exit(1)
    return block


def test_a_worker_killed_mid_fit_is_retried_and_the_result_is_the_same(address, tmp_path):
    X = blobs(n=20_000)
    dX = da.from_array(X, chunks=(5_000, 6))
    marker = str(tmp_path / "killed")
    doomed = dX.map_blocks(_kill_once, marker=marker, dtype=X.dtype)
    params = dict(k=12, random_state=5, backend="dask", scheduler_address=address)
    survived = KMeans(**params).fit(doomed)
    assert os.path.exists(marker)  # a worker did die
    np.testing.assert_array_equal(survived.cluster_centers_,
                                  KMeans(**params).fit(dX).cluster_centers_)


def test_a_dask_dataframe_is_fitted_as_the_array_of_its_rows(address):
    X = blobs(n=9_000).astype(np.float64)
    frame = dd.from_pandas(pd.DataFrame(X, columns=[f"f{i}" for i in range(6)]), npartitions=3)
    lengths = tuple(int(n) for n in frame.map_partitions(len).compute())
    params = dict(k=12, random_state=2, backend="dask", scheduler_address=address)
    fitted = KMeans(**params).fit(frame)
    same = KMeans(**params).fit(da.from_array(X, chunks=(lengths, 6)))
    np.testing.assert_array_equal(fitted.cluster_centers_, same.cluster_centers_)
    assert list(fitted.feature_names_in_) == [f"f{i}" for i in range(6)]
    with distributed.Client(address):  # lazy predictions compute on the active client
        labels = fitted.predict(frame)
        assert isinstance(labels, da.Array)
        np.testing.assert_array_equal(labels.compute(), fitted.predict(frame.compute()))


def test_a_list_of_csv_files_one_task_each(address, tmp_path):
    X = blobs(n=12_000)
    paths = []
    for i, rows in enumerate(np.array_split(X, 4)):
        paths.append(str(tmp_path / f"part-{i}.csv"))
        np.savetxt(paths[-1], rows, delimiter=",", fmt="%.8g")
    params = dict(k=12, random_state=4, backend="dask", scheduler_address=address)
    parity = KMeans(**params, **PARITY).fit(paths)
    np.testing.assert_allclose(  # files stream as the blocks of the same rows (but a batch
        parity.cluster_centers_,  # per kernel call, which may round otherwise)
        KMeans(**params, **PARITY).fit(da.from_array(X, chunks=(3_000, 6))).cluster_centers_,
        rtol=1e-6)
    folder = KMeans(**params).fit(str(tmp_path))  # a folder, as a SageMaker channel
    assert sse(folder, X) <= 1.02 * sse(KMeans(k=12, random_state=4).fit(X), X)


def _set_environ(values):
    os.environ.update(values)


def test_an_s3_prefix_one_task_per_object(address, s3_server, tmp_path):
    boto3 = pytest.importorskip("boto3")
    # The workers were started before the S3 server: they are told where it is, as boto3's
    # usual environment would tell them on a real cluster.
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
             "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3")
    with distributed.Client(address, set_as_default=False) as client:
        client.run(_set_environ, {name: os.environ[name] for name in names})
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="dask-train")
    X = blobs(n=9_000)
    paths = []
    for i, rows in enumerate(np.array_split(X, 3)):
        paths.append(str(tmp_path / f"part-{i}.csv"))
        np.savetxt(paths[-1], rows, delimiter=",", fmt="%.8g")
        s3.upload_file(paths[-1], "dask-train", f"train/part-{i}.csv")
    params = dict(k=12, random_state=6, backend="dask", scheduler_address=address)
    from_s3 = KMeans(**params).fit("s3://dask-train/train/")
    np.testing.assert_array_equal(from_s3.cluster_centers_,
                                  KMeans(**params).fit(paths).cluster_centers_)


def test_predictions_on_dask_arrays_stay_lazy_and_equal_the_eager_ones(address):
    X = blobs(n=12_000)
    dX = da.from_array(X, chunks=(5_000, 6))
    model = KMeans(k=12, random_state=0).fit(X)  # fitted anywhere, predicts anywhere
    with distributed.Client(address):
        labels, distances = model.predict(dX), model.transform(dX)
        closest, distance = model.predict_with_distance(dX)
        for lazy in (labels, distances, closest, distance):
            assert isinstance(lazy, da.Array)
        assert labels.dtype == np.int32 and distances.shape == (12_000, 12)
        np.testing.assert_array_equal(labels.compute(), model.predict(X))
        np.testing.assert_allclose(distances.compute(), model.transform(X), rtol=1e-6)
        np.testing.assert_allclose(distance.compute(), model.predict_with_distance(X)[1])
        bad = X.copy()
        bad[7_777, 2] = np.nan
        with pytest.raises(ValueError, match=r"NaN \(first at row 7777, column 2\)"):
            model.predict(da.from_array(bad, chunks=(5_000, 6))).compute()


def test_the_client_holds_the_state_not_the_data(address):
    n, d = 2_000_000, 8
    with distributed.Client(address) as client:  # the active client: no address needed
        rng = da.random.default_rng(0)
        X = rng.normal(size=(n, d), chunks=(250_000, d)) + \
            rng.integers(0, 4, size=(n, 1), chunks=(250_000, 1)) * 10.0
        X = client.persist(X)  # made on the workers; 128 MB there
        distributed.wait(X)
        tracemalloc.start()
        model = KMeans(k=4, random_state=0, backend="dask").fit(X)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print(f"\nclient peak while fitting {n}x{d} float64 ({X.nbytes / 2**20:.0f} MiB): "
          f"{peak / 2**20:.2f} MiB")
    assert model.n_samples_seen_ == n
    assert peak < 8 * 2**20 and peak < X.nbytes / 16


def test_with_no_client_a_local_cluster_is_started_for_the_fit_and_closed():
    X = da.from_array(blobs(n=4_000), chunks=(2_000, 6))
    with pytest.raises(ValueError):
        distributed.get_client()
    model = KMeans(k=3, random_state=0, backend="dask").fit(X)
    assert model.cluster_centers_.shape == (3, 6)
    with pytest.raises(ValueError):  # nothing left behind as the default
        distributed.get_client()


def test_a_local_backend_streams_a_dask_collection_and_a_list_of_files(tmp_path):
    # Classified at the door, read a block (a file) at a time: with no client, the blocks are
    # computed by dask's default scheduler in this process.
    X = blobs(n=9_000)
    params = dict(k=12, random_state=1, **PARITY)
    as_batches = KMeans(**params).fit([X[:3_000], X[3_000:6_000], X[6_000:]])
    blocks = KMeans(**params).fit(da.from_array(X, chunks=(3_000, 6)))
    np.testing.assert_array_equal(blocks.cluster_centers_, as_batches.cluster_centers_)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.csv")
        np.savetxt(paths[-1], X[3_000 * i:3_000 * (i + 1)], delimiter=",", fmt="%.8g")
    files = KMeans(**params).fit(paths)
    np.testing.assert_allclose(files.cluster_centers_, as_batches.cluster_centers_, rtol=1e-6)
    assert isinstance(blocks.predict(da.from_array(X, chunks=(3_000, 6))), da.Array)


# ------------------------------------------------------------------ bad input


def test_bad_input_is_refused_clearly(address):
    X = blobs(n=4_000)
    dX = da.from_array(X, chunks=(2_000, 6))
    model = KMeans(k=3, backend="dask", scheduler_address=address)
    unknown = da.from_array(X, chunks=(2_000, 6)).map_blocks(
        lambda b: b, chunks=((2_000, 2_000), (np.nan,)))
    with pytest.raises(ValueError, match="unknown chunk widths"):
        model.fit(unknown)
    with pytest.raises(ValueError, match="backend='dask' takes no sample_weight"):
        model.fit(dX, sample_weight=np.ones(4_000))
    with pytest.raises(ValueError, match=r"make it a dask array|Make it a dask array"):
        model.fit(X)
    with pytest.raises(ValueError, match="2D dask array"):
        model.fit(dX[:, 0])
    with pytest.raises(TypeError, match="to_frame"):
        model.fit(dd.from_pandas(pd.DataFrame(X), npartitions=2)[0])
    nan = X.copy()
    nan[2_500, 1] = np.nan
    with pytest.raises(ValueError, match="block 1 of dask array"):
        model.fit(da.from_array(nan, chunks=(2_000, 6)))
    with pytest.raises(ValueError, match="fits whole data sets only"):
        model.partial_fit(dX)
