import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import kmeans_stream
from kmeans_stream import KMeans
from kmeans_stream.io.sources import as_source
from kmeans_stream.metrics import sum_squared_distances
from kmeans_stream.selection import KSelection, _draw_sample, _elbow, _gap_rule, select_k

# Four round blobs of std 0.6 on the corners of a square of side 10: k = 4 beyond doubt.
CORNERS = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [10.0, 10.0, 0.0]])
FAST = dict(backend="numpy", n_refs=3)


def four_blobs(n=800, seed=0):
    rng = np.random.default_rng(seed)
    truth = np.arange(n) % 4
    return CORNERS[truth] + rng.normal(scale=0.6, size=(n, 3)), truth


@pytest.fixture(scope="module")
def selection():
    X, _ = four_blobs()
    return select_k(X, range(2, 9), sample_size=300, random_state=0, **FAST)


def test_every_method_suggests_the_known_k(selection):
    assert selection.suggested == {"elbow": 4, "silhouette": 4, "gap": 4}
    assert set(selection.rules) == {"elbow", "silhouette", "gap"}
    assert sorted(selection.models) == selection.ks == list(range(2, 9))
    assert all(model.k == k for k, model in selection.models.items())


def test_sse_is_the_data_sum_of_squared_distances_and_decreases(selection):
    X, _ = four_blobs()
    for k, sse in zip(selection.ks, selection.sse, strict=True):
        centers = selection.models[k].cluster_centers_
        assert sse == pytest.approx(sum_squared_distances(X, centers), rel=1e-9)
    assert (np.diff(selection.sse) < 0).all()


def test_silhouette_is_scikit_learns_on_the_same_sample(selection):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    X, _ = four_blobs()
    assert selection.n_samples == 800 and selection.n_sampled == 300
    sample = X[selection.sample_index]
    for k, value in zip(selection.ks, selection.silhouette, strict=True):
        labels = selection.models[k].predict(sample)
        assert value == pytest.approx(sklearn_metrics.silhouette_score(sample, labels),
                                      rel=0, abs=1e-9)


def test_gap_is_reproducible_with_a_seed_and_its_rule_holds(selection):
    X, _ = four_blobs()
    again = select_k(X, range(2, 9), sample_size=300, random_state=0, **FAST)
    np.testing.assert_array_equal(again.gap, selection.gap)
    np.testing.assert_array_equal(again.gap_se, selection.gap_se)
    other = select_k(X, range(2, 9), sample_size=300, random_state=1, **FAST)
    assert not np.array_equal(other.gap, selection.gap)
    assert (selection.gap_se > 0).all()
    i = selection.ks.index(selection.suggested["gap"])
    assert selection.gap[i] >= selection.gap[i + 1] - selection.gap_se[i + 1]
    assert all(selection.gap[j] < selection.gap[j + 1] - selection.gap_se[j + 1]
               for j in range(i))


def test_the_table_lists_every_k_and_marks_each_suggestion(selection):
    table = selection.table()
    lines = table.splitlines()
    assert lines[0].split() == ["k", "SSE", "silhouette", "gap", "gap", "s.e."]
    rows = {int(line.split()[0]): line for line in lines[1:len(selection.ks) + 1]}
    assert sorted(rows) == selection.ks
    assert rows[4].count("*") == 3
    assert all("*" not in line for k, line in rows.items() if k != 4)
    assert "* suggested: elbow k=4, silhouette k=4, gap k=4" in table
    for method in ("elbow", "silhouette", "gap"):
        assert any(line.startswith(f"{method}: ") for line in lines)
    assert "sample of 300" in table


def test_to_dict_is_plain_json(selection):
    data = json.loads(json.dumps(selection.to_dict()))
    assert data["ks"] == selection.ks
    assert data["suggested"] == selection.suggested
    assert data["sse"] == pytest.approx(selection.sse.tolist())
    assert data["n_sampled"] == 300


def test_plot_writes_a_png(selection, tmp_path):
    pytest.importorskip("matplotlib")
    path = selection.plot(tmp_path / "k.png")
    assert path == tmp_path / "k.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_a_csv_path_is_sampled_as_the_array_is_and_scored_over_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr("kmeans_stream.selection._READ_ROWS", 128)  # several batches to merge
    X, _ = four_blobs(1200, seed=3)
    X = X.astype(np.float32)
    path = tmp_path / "train.csv"
    np.savetxt(path, X, delimiter=",", fmt="%.9g")
    streamed = select_k(str(path), [1, 3, 4, 5], sample_size=200, random_state=5, **FAST)
    in_memory = select_k(X, [1, 3, 4, 5], sample_size=200, random_state=5, **FAST)
    assert streamed.n_samples == 1200 and streamed.n_sampled == 200
    np.testing.assert_array_equal(streamed.sample_index, in_memory.sample_index)
    for k, sse in zip(streamed.ks, streamed.sse, strict=True):
        assert sse == pytest.approx(-streamed.models[k].score(X), rel=1e-6)
    assert np.isnan(streamed.silhouette[0])  # k = 1
    assert streamed.suggested["silhouette"] == streamed.suggested["gap"] == 4


def test_the_sample_of_a_stream_takes_bounded_memory(monkeypatch):
    monkeypatch.setattr("kmeans_stream.selection._READ_ROWS", 8192)

    class Batches:  # 1,000,000 x 8 float64 (64 MB), made a batch at a time
        def __iter__(self):
            rng = np.random.default_rng(0)
            for _ in range(100):
                yield rng.random((10_000, 8))

    tracemalloc.start()
    try:
        index, sample, n = _draw_sample(as_source(Batches()), 500, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 1_000_000 and sample.shape == (500, 8) and len(set(index)) == 500
    assert peak < 8 * 2**20  # the sample, a few read batches; never the data


@pytest.mark.parametrize("ks, methods, match", [
    ([], ("elbow",), "ks is empty"),
    ([0, 2], ("elbow",), "ints >= 1; got 0"),
    ([2, 2.5], ("elbow",), "ints >= 1; got 2.5"),
    ([2, 41], ("elbow",), "up to 41, but .* holds 40 rows"),
    ([2, 3], ("elbow", "bic"), "Unknown method 'bic'"),
])
def test_bad_input_fails_before_any_fit(ks, methods, match, monkeypatch):
    monkeypatch.setattr(KMeans, "fit", lambda *a, **k: pytest.fail("fitted"))
    X, _ = four_blobs(40)
    with pytest.raises(ValueError, match=match):
        select_k(X, ks, methods)


def test_bad_options_and_one_shot_iterators_fail_before_any_fit(tmp_path, monkeypatch):
    monkeypatch.setattr(KMeans, "fit", lambda *a, **k: pytest.fail("fitted"))
    X, _ = four_blobs(40)
    with pytest.raises(ValueError, match="one-shot iterator"):
        select_k(iter([X[:20], X[20:]]))
    with pytest.raises(ValueError, match="k is what select_k chooses"):
        select_k(X, k=3)
    with pytest.raises(ValueError, match="mini_batch_size"):
        select_k(X, mini_batch_size=0)
    with pytest.raises(ValueError, match="n_jobs"):
        select_k(X, n_jobs=0)
    path = tmp_path / "small.csv"
    np.savetxt(path, X[:6], delimiter=",")
    with pytest.raises(ValueError, match="holds 6 rows"):
        select_k(str(path), [2, 7])


def test_threads_give_the_table_of_one_thread():
    X, _ = four_blobs(600, seed=2)
    serial = select_k(X, range(2, 7), sample_size=200, random_state=4, **FAST)
    threaded = select_k(X, range(2, 7), sample_size=200, random_state=4, n_jobs=2, **FAST)
    assert threaded.table() == serial.table()
    assert threaded.to_dict() == serial.to_dict()


def test_elbow_rule_by_hand():
    # Scaled: x = 0, .25, .5, .75, 1 and y = 1, .140, .032, .011, 0; k = 2 lies farthest below
    # the line from (0, 1) to (1, 0).
    assert _elbow([1, 2, 3, 4, 5], np.array([100.0, 20.0, 10.0, 8.0, 7.0])) == 2
    assert _elbow([2, 3], np.array([10.0, 5.0])) is None
    assert _elbow([1, 2, 3], np.array([3.0, 2.0, 1.0])) is None  # a straight line: no elbow


def test_gap_rule_by_hand():
    gap, se = np.array([0.1, 0.5, 0.55, 0.52]), np.array([0.01, 0.01, 0.1, 0.01])
    assert _gap_rule([1, 2, 3, 4], gap, se) == 2  # 0.5 >= 0.55 - 0.1
    assert _gap_rule([1, 2, 3], np.array([0.1, 0.2, 0.3]), np.full(3, 0.01)) == 3  # none: last


def test_a_subset_of_methods_and_the_table_without_them():
    X, _ = four_blobs(300)
    only = select_k(X, [3, 4, 5], ["silhouette"], random_state=0, **FAST)
    assert only.suggested == {"silhouette": 4} and list(only.rules) == ["silhouette"]
    assert np.isnan(only.gap).all()
    assert "gap" not in only.table().splitlines()[0]
    assert isinstance(only, KSelection)


def test_select_k_is_exported_lazily():
    code = (
        "import sys, numpy as np, kmeans_stream\n"
        "assert 'kmeans_stream.selection' not in sys.modules\n"
        "X = np.random.default_rng(0).random((60, 2))\n"
        "kmeans_stream.select_k(X, [2, 3], backend='numpy', n_refs=2, random_state=0)\n"
        "heavy = {'numba', 'matplotlib', 'sklearn', 'scipy', 'pandas'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "select_k" in kmeans_stream.__all__


def _frame(X):
    return pytest.importorskip("pandas").DataFrame(X, columns=["a", "b", "c"])


def _sparse(X):
    return pytest.importorskip("scipy.sparse").csr_matrix(np.where(X > 5, X, 0.0))


@pytest.mark.parametrize("kind", [_frame, _sparse, lambda X: [X[:100], X[100:]]],
                         ids=["DataFrame", "sparse", "list of batches"])
@pytest.mark.filterwarnings("error")
def test_other_in_memory_and_batch_sources(kind):
    X, _ = four_blobs(240, seed=1)
    found = select_k(kind(X), [2, 4, 6], sample_size=100, random_state=0, **FAST)
    assert found.n_samples == 240 and found.n_sampled == 100
    assert found.suggested["silhouette"] == found.suggested["gap"] == 4


def test_an_s3_prefix(s3_server):
    boto3 = pytest.importorskip("boto3")
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket="choose")
    X, _ = four_blobs(300, seed=4)
    for i in range(3):
        body = "\n".join(",".join(f"{v:.9g}" for v in row) for row in X[i * 100:(i + 1) * 100])
        client.put_object(Bucket="choose", Key=f"train/part-{i}.csv", Body=body.encode())
    found = select_k("s3://choose/train/", [3, 4, 5], sample_size=120, random_state=0, **FAST)
    assert found.n_samples == 300 and found.n_sampled == 120
    assert found.suggested["silhouette"] == found.suggested["gap"] == 4
