"""The installed `kmeans-stream` command, run as a user runs it: a subprocess on small files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kmeans_stream
from kmeans_stream import KMeans
from kmeans_stream.io.inference import decode_response
from kmeans_stream.metrics import silhouette_score

COMMAND = Path(sys.executable).with_name("kmeans-stream")
FAST = ("--backend", "numpy")  # no numba import in every subprocess


def run(*args, stdin: bytes | None = None, env: dict | None = None, cwd=None):
    """`kmeans-stream *args`: (exit status, stdout bytes, stderr text)."""
    done = subprocess.run([str(COMMAND), *map(str, args)], input=stdin, capture_output=True,
                          env=env, cwd=cwd, timeout=120)
    return done.returncode, done.stdout, done.stderr.decode()


def blobs(n_per=100):
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(loc, 0.1, size=(n_per, 3)) for loc in (0.0, 5.0, 10.0)])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A CSV of 300 rows in 3 blobs, the same with a header line, and a model fitted on it."""
    folder = tmp_path_factory.mktemp("cli")
    X = blobs()
    np.savetxt(folder / "train.csv", X, delimiter=",")
    text = (folder / "train.csv").read_text()
    (folder / "header.csv").write_text("a,b,c\n" + text)
    model = KMeans(k=3, random_state=0, backend="numpy").fit(X.astype(np.float32))
    model.save(folder / "model.tar.gz")
    return folder, X.astype(np.float32), model


def one_line_error(err: str, command: str) -> str:
    assert err.startswith(f"kmeans-stream {command}: error: "), err
    assert err.count("\n") == 1, err
    return err


def test_version():
    status, out, _ = run("--version")
    assert status == 0 and out.decode() == f"kmeans-stream {kmeans_stream.__version__}\n"


def test_help_lists_every_command_and_the_exit_status():
    status, out, _ = run("--help")
    text = out.decode()
    assert status == 0
    for command in ("demo", "fit", "predict", "evaluate", "select-k", "convert", "bench",
                    "train", "serve"):
        assert command in text
    assert "exit status:" in text and "3    a missing optional dependency" in text


def test_fit_shows_a_bar_then_prints_one_summary_line(files, tmp_path):
    folder, X, _ = files
    status, out, err = run("fit", folder / "train.csv", "--model", tmp_path / "m.tar.gz",
                           "--k", "3", "--epochs", "2", "--random-state", "0", *FAST)
    assert status == 0, err
    summary = out.decode()
    assert summary.count("\n") == 1
    assert summary.startswith("fit: 300 rows x 2 epochs in ")
    model = kmeans_stream.load(tmp_path / "m.tar.gz")
    assert f"train:msd={model.train_msd_:.6g}, k=3, feature_dim=3; model: " in summary
    # A local file's bar counts its bytes (each epoch's), so its total is known at once.
    size = (folder / "train.csv").stat().st_size
    assert "fit:   0%|" in err and "fit: 100%|" in err and "B/s]" in err
    assert f"{2 * size / 1024:.1f}k/{2 * size / 1024:.1f}k" in err
    assert "[kmeans_stream] epoch 2/2: file " in err


def test_quiet_shows_no_bar_and_no_log_lines(files, tmp_path):
    folder, _, _ = files
    status, out, err = run("fit", folder / "train.csv", "--model", tmp_path / "m.tar.gz",
                           "--k", "3", "--quiet", *FAST)
    assert status == 0 and err == ""
    assert out.decode().startswith("fit: 300 rows x 1 epoch in ")
    status, _, err = run("predict", tmp_path / "m.tar.gz", folder / "train.csv", "-q", *FAST)
    assert status == 0 and err == ""


def test_predict_csv_has_integer_clusters_and_sagemakers_distances(files):
    folder, X, model = files
    status, out, err = run("predict", folder / "model.tar.gz", folder / "train.csv",
                           "--header", *FAST)
    assert status == 0
    lines = out.decode().splitlines()
    assert lines[0] == "closest_cluster,distance_to_cluster"
    labels, distance = model.predict_with_distance(X)
    expected = [f"{c},{float(np.float32(d))!r}" for c, d in zip(labels, distance, strict=True)]
    assert lines[1:] == expected
    assert "predict: 100%|" in err and "B/s]" in err  # a local file: a bar in bytes


@pytest.mark.parametrize(("fmt", "media"), [("json", "application/json"),
                                             ("jsonlines", "application/jsonlines")])
def test_predict_json_forms_are_sagemakers_answers(files, tmp_path, fmt, media):
    folder, X, model = files
    target = tmp_path / f"out.{fmt}"
    status, out, _ = run("predict", folder / "model.tar.gz", folder / "train.csv",
                         "--format", fmt, "--output", target, "-q", *FAST)
    assert status == 0 and out == b""
    labels, distance = decode_response(target.read_bytes(), media)
    expected_labels, expected_distance = model.predict_with_distance(X)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(distance, expected_distance.astype(np.float32))
    if fmt == "json":
        assert json.loads(target.read_bytes())["predictions"][0]["closest_cluster"] == \
            float(expected_labels[0])


def test_json_of_many_batches_is_one_document(tmp_path):
    X = np.random.default_rng(1).normal(size=(70_000, 2)).astype(np.float32)
    np.save(tmp_path / "rows.npy", X)
    model = KMeans(k=2, random_state=0, backend="numpy").fit(X[:1000])
    model.save(tmp_path / "m.tar.gz")
    status, out, _ = run("predict", tmp_path / "m.tar.gz", tmp_path / "rows.npy",
                         "--format", "json", "-q", *FAST)
    assert status == 0
    labels, _ = decode_response(out, "application/json")
    np.testing.assert_array_equal(labels, model.predict(X))


def test_header_goes_with_csv_only(files):
    folder, _, _ = files
    status, _, err = run("predict", folder / "model.tar.gz", folder / "train.csv",
                         "--format", "json", "--header")
    assert status == 2 and "--header goes with --format csv only" in err


def test_dash_reads_stdin_and_writes_stdout(files, tmp_path):
    folder, X, model = files
    data = (folder / "train.csv").read_bytes()
    status, out, err = run("predict", folder / "model.tar.gz", "-", "--output", "-", *FAST,
                           stdin=data)
    assert status == 0
    assert [int(line.split(",")[0]) for line in out.decode().splitlines()] == \
        model.predict(X).tolist()
    assert "predict: 300 rows" in err  # a stream: rows counted, no total
    status, out, _ = run("fit", "-", "--model", tmp_path / "m.tar.gz", "--k", "3", "-q", *FAST,
                         stdin=data)
    assert status == 0 and out.startswith(b"fit: 300 rows")
    status, out, _ = run("convert", "-", tmp_path / "rows.npy", "-q", stdin=data)
    assert status == 0
    np.testing.assert_array_equal(np.load(tmp_path / "rows.npy"), X)


def test_skip_header_on_every_command_that_reads_csv(files, tmp_path):
    folder, X, model = files
    header = folder / "header.csv"
    status, _, err = run("fit", header, "--model", tmp_path / "m.tar.gz", "--k", "3", "-q",
                         *FAST)
    assert status == 1
    assert "header.csv, line 1: column 1: 'a' is not a number (a header line? " \
        "--skip-header drops it)" in one_line_error(err, "fit")
    commands = [
        ("fit", header, "--model", tmp_path / "m.tar.gz", "--k", "3", *FAST),
        ("predict", folder / "model.tar.gz", header, *FAST),
        ("evaluate", folder / "model.tar.gz", header, "--format", "json", *FAST),
        ("convert", header, tmp_path / "rows.npy"),
        ("select-k", header, "--k-max", "3", "--methods", "elbow", *FAST),
    ]
    for command in commands:
        status, _, err = run(*command, "--skip-header", "-q")
        assert status == 0, (command, err)
    np.testing.assert_array_equal(np.load(tmp_path / "rows.npy"), X)


def test_evaluate_prints_msd_ssd_sizes_and_silhouette(files):
    folder, X, model = files
    status, out, err = run("evaluate", folder / "model.tar.gz", folder / "train.csv",
                           "--format", "json", *FAST)
    assert status == 0 and "evaluate: 100%|" in err
    report = json.loads(out)
    labels = model.predict(X)
    assert report["rows"] == 300 and report["cluster_sizes"] == np.bincount(labels).tolist()
    assert report["msd"] == pytest.approx(model.evaluate(X)["test:msd"], rel=1e-6)
    assert report["ssd"] == pytest.approx(report["msd"] * 300)
    assert report["silhouette_rows"] == 300
    assert report["silhouette"] == pytest.approx(silhouette_score(X, labels))
    status, out, _ = run("evaluate", folder / "model.tar.gz", folder / "train.csv",
                         "--sample-size", "50", "-q", *FAST)
    text = out.decode()
    assert status == 0
    assert "rows        300\n" in text and "(on a sample of 50 of 300 rows)" in text
    assert "cluster     size\n" in text and text.count("     100\n") == 3


def test_select_k_prints_the_table_or_json(files):
    folder, _, _ = files
    status, out, _ = run("select-k", folder / "train.csv", "--k-min", "2", "--k-max", "4",
                         "--methods", "elbow", "silhouette", "--random-state", "0", *FAST)
    assert status == 0
    assert "* suggested: elbow k=3, silhouette k=3" in out.decode()
    status, out, _ = run("select-k", folder / "train.csv", "--k-max", "4", "--methods",
                         "silhouette", "--format", "json", "--random-state", "0", *FAST)
    result = json.loads(out)
    assert status == 0 and result["ks"] == [2, 3, 4] and result["suggested"] == {"silhouette": 3}


def test_convert_shows_a_bar_in_bytes_and_a_summary(files, tmp_path):
    folder, X, _ = files
    status, out, err = run("convert", folder / "train.csv", tmp_path / "rows.pbr")
    assert status == 0
    assert out.decode().startswith(f"convert: 300 rows to {tmp_path / 'rows.pbr'} in ")
    size = (folder / "train.csv").stat().st_size
    assert "convert: 100%|" in err and f"/{size / 1024:.1f}k" in err
    status, _, _ = run("convert", tmp_path / "rows.pbr", tmp_path / "rows.npy", "-q")
    assert status == 0
    np.testing.assert_array_equal(np.load(tmp_path / "rows.npy"), X)


def test_bench_prints_seconds():
    status, out, _ = run("bench", "--rows", "2000", "--features", "4", "--k", "3",
                         "--repeat", "1", *FAST)
    lines = out.decode().splitlines()
    assert status == 0
    assert lines[0].startswith(f"kmeans-stream {kmeans_stream.__version__} bench: 2,000 rows x 4")
    assert [line.split()[0] for line in lines[1:]] == ["warm-up", "fit", "predict"]
    assert all(line.split()[2] == "s" for line in lines[1:])


# ------------------------------------------------------------------------------ failures


@pytest.fixture(scope="module")
def bad_files(files):
    folder, _, _ = files
    (folder / "ragged.csv").write_text("1,2,3\n4,5,6\n7,8\n")
    (folder / "wide.csv").write_text("1,2,3,4\n5,6,7,8\n")
    return folder


@pytest.mark.parametrize(("args", "status", "expected"), [
    (["predict", "model.tar.gz", "missing.csv"], 4, "missing.csv: No such file or directory"),
    (["predict", "missing.tar.gz", "train.csv"], 4, "missing.tar.gz: No such file or directory"),
    (["fit", "train.csv", "--model", "no/such/model.tar.gz", "--k", "3"], 4,
     "no/such: No such folder"),
    (["predict", "model.tar.gz", "ragged.csv"], 1, "ragged.csv, line 3"),
    (["predict", "model.tar.gz", "wide.csv"], 1,
     "wide.csv: X has 4 features, but KMeans is expecting 3 features as input."),
    (["evaluate", "train.csv", "train.csv"], 1, "train.csv"),
    (["fit", "train.csv", "--model", "m.tar.gz", "--k", "0"], 2,
     "The 'k' parameter of KMeans must be an int in the range [1, inf). Got '0' instead."),
])
def test_a_failure_is_one_line_naming_the_path_with_its_exit_status(bad_files, args, status,
                                                                    expected):
    got, out, err = run(*args, "-q", *(FAST if args[0] != "fit" else ()), cwd=bad_files)
    assert got == status
    assert expected in one_line_error(err, args[0])
    assert ".tmp" not in err and not (bad_files / "no").exists()


def test_usage_errors_exit_2():
    status, _, err = run("fit", "train.csv", "--model", "m.tar.gz", "--no-such-option")
    assert status == 2 and "unrecognized arguments: --no-such-option" in err
    status, _, err = run("predict")
    assert status == 2 and "the following arguments are required" in err


def test_a_missing_dependency_exits_3_with_the_install_hint(tmp_path, files):
    folder, _, _ = files
    blocked = tmp_path / "blocked" / "boto3"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('blocked for the test')\n")
    env = os.environ | {"PYTHONPATH": str(blocked.parent)}
    status, _, err = run("fit", "s3://bucket/train.csv", "--model", tmp_path / "m.tar.gz",
                         "--k", "3", "-q", env=env)
    assert status == 3
    assert "reading s3:// URIs needs boto3: pip install 'kmeans-stream[io]'" in \
        one_line_error(err, "fit")


def _no_credentials() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return env | {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
                  "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}


def test_s3_without_credentials_is_one_line_naming_the_uri(tmp_path):
    status, _, err = run("fit", "s3://bucket/train.csv", "--model", tmp_path / "m.tar.gz",
                         "--k", "3", "-q", env=_no_credentials())
    assert status == 4
    assert "s3://bucket/train.csv: Unable to locate credentials (configure AWS credentials" in \
        one_line_error(err, "fit")


def test_s3_refusals_name_the_uri(s3_server, tmp_path):
    status, _, err = run("predict", "s3://no-such-bucket/model.tar.gz", "-", stdin=b"1,2\n")
    assert status == 4
    assert "s3://no-such-bucket/model.tar.gz: " in one_line_error(err, "predict")


def test_debug_raises_with_the_traceback(bad_files):
    status, _, err = run("--debug", "predict", "model.tar.gz", "wide.csv", "-q", *FAST,
                         cwd=bad_files)
    assert status == 1
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().endswith(
        "ValueError: X has 4 features, but KMeans is expecting 3 features as input.")
