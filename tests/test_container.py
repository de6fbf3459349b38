"""The SageMaker training contract of kmeans_stream's image, on a temporary /opt/ml."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import kmeans_stream
from kmeans_stream import KMeans, container
from kmeans_stream.cli import main
from kmeans_stream.io import write_recordio

CSV = "text/csv;label_size=0"
RECORDIO = "application/x-recordio-protobuf"
# Parity knobs and a seed: the container's fit must equal the same fit in memory.
HYPERPARAMETERS = {
    "k": "3", "feature_dim": "3", "mini_batch_size": "100", "force_dense": "True",
    "_kvstore": "auto", "backend": "numpy", "shuffle": "False", "reassignment_ratio": "0",
    "random_state": "7",
}
PARAMS = dict(k=3, feature_dim=3, mini_batch_size=100, backend="numpy", shuffle=False,
              reassignment_ratio=0, random_state=7)
TRAIN_MSD = re.compile(r"#quality_metric: host=(\S+), train msd <loss>=(\S+)")


@pytest.fixture
def X():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0, 0], [5, 5, 0], [0, 5, 5]], dtype=np.float32)
    return (centers[rng.integers(0, 3, 300)] + rng.normal(0, 0.3, (300, 3))).astype(np.float32)


def make_opt_ml(root: Path, channels: dict, hyperparameters: dict | str = HYPERPARAMETERS,
                hosts: tuple[str, ...] = ("algo-1",)) -> Path:
    """A /opt/ml as SageMaker lays it out; `channels` maps a name to (ContentType, mode)."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (root / "model").mkdir()
    (root / "output").mkdir()
    text = hyperparameters if isinstance(hyperparameters, str) else json.dumps(hyperparameters)
    (config / "hyperparameters.json").write_text(text)
    (config / "inputdataconfig.json").write_text(json.dumps({
        name: {"ContentType": content_type, "TrainingInputMode": mode,
               "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
        for name, (content_type, mode) in channels.items()
    }))
    (config / "resourceconfig.json").write_text(json.dumps(
        {"current_host": hosts[0], "hosts": list(hosts), "network_interface_name": "eth0"}
    ))
    for name, (_, mode) in channels.items():
        if mode == "File":
            (root / "input" / "data" / name).mkdir(parents=True)
    return root


def write_csv(path: Path, X: np.ndarray) -> None:
    np.savetxt(path, X, delimiter=",", fmt="%.9g")  # float32 rows read back exactly


def csv_opt_ml(root: Path, X: np.ndarray, **kwargs) -> Path:
    make_opt_ml(root, {"train": (CSV, "File")}, **kwargs)
    write_csv(root / "input" / "data" / "train" / "part-0.csv", X[:170])
    write_csv(root / "input" / "data" / "train" / "part-1.csv", X[170:])
    return root


def model_folder(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "model").iterdir())


def tar_model(root: Path, archive: Path) -> Path:
    """What SageMaker does with /opt/ml/model after training."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in (root / "model").iterdir():
            tar.add(path, arcname=path.name)
    return archive


def test_file_mode_csv_fits_as_in_memory(tmp_path, X, capsys):
    root = csv_opt_ml(tmp_path, X)
    assert container.train(root) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Docker entrypoint called with argument(s): train"
    assert "Test data is not provided." in lines
    expected = KMeans(**PARAMS).fit(X)
    host, msd = TRAIN_MSD.search("\n".join(lines)).groups()
    assert host == "algo-1"
    assert float(msd) == pytest.approx(expected.train_msd_, rel=1e-12)
    assert model_folder(root) == ["kmeans_stream.json", "model_algo-1"]
    model = kmeans_stream.load(root / "model" / "model_algo-1")
    np.testing.assert_array_equal(model.cluster_centers_,
                                  expected.cluster_centers_.astype(np.float32))


def test_the_tarred_model_folder_loads_whole(tmp_path, X):
    root = csv_opt_ml(tmp_path, X)
    assert container.train(root) == 0
    model = kmeans_stream.load(tar_model(root, tmp_path / "model.tar.gz"))
    expected = KMeans(**PARAMS).fit(X)
    np.testing.assert_array_equal(model.cluster_centers_, expected.cluster_centers_)
    np.testing.assert_array_equal(model.counts_, expected.counts_)
    assert model.train_msd_ == expected.train_msd_
    assert model.n_samples_seen_ == len(X)
    np.testing.assert_array_equal(model.predict(X), expected.predict(X))


def test_file_mode_recordio_shards(tmp_path, X):
    root = make_opt_ml(tmp_path, {"train": (RECORDIO, "File")})
    write_recordio(root / "input" / "data" / "train" / "shard-0.pbr", X[:150])
    write_recordio(root / "input" / "data" / "train" / "shard-1.pbr", X[150:])
    assert container.train(root) == 0
    model = kmeans_stream.load(root / "model" / "model_algo-1")
    expected = KMeans(**PARAMS).fit(X)
    np.testing.assert_array_equal(model.cluster_centers_,
                                  expected.cluster_centers_.astype(np.float32))


def _feed_pipes(stem: Path, data: bytes, epochs: int) -> None:
    """SageMaker's side of Pipe mode: each epoch's FIFO appears, is written, is closed."""
    for epoch in range(epochs):
        time.sleep(0.05)  # the pipe appears after the container first looks for it
        path = f"{stem}_{epoch}"
        os.mkfifo(path)
        with open(path, "wb") as pipe:
            pipe.write(data)


def test_pipe_mode_reads_one_fifo_per_epoch(tmp_path, X, capsys):
    root = make_opt_ml(tmp_path, {"train": (RECORDIO, "Pipe")},
                       hyperparameters={**HYPERPARAMETERS, "epochs": "2"})
    (root / "input" / "data").mkdir(parents=True)
    write_recordio(tmp_path / "data.pbr", X)
    feeder = threading.Thread(target=_feed_pipes, daemon=True, args=(
        root / "input" / "data" / "train", (tmp_path / "data.pbr").read_bytes(), 2))
    feeder.start()
    assert container.train(root) == 0
    feeder.join(5)
    model = kmeans_stream.load(root / "model" / "model_algo-1")
    expected = KMeans(**PARAMS, epochs=2).fit(X)
    np.testing.assert_array_equal(model.cluster_centers_,
                                  expected.cluster_centers_.astype(np.float32))
    assert "train msd <loss>=" in capsys.readouterr().out


def test_a_test_channel_reports_msd_and_ssd(tmp_path, X, capsys):
    hyperparameters = {**HYPERPARAMETERS, "eval_metrics": '["msd", "ssd"]'}
    root = make_opt_ml(tmp_path, {"train": (CSV, "File"), "test": ("text/csv", "Pipe")},
                       hyperparameters=hyperparameters, hosts=("algo-2",))
    write_csv(root / "input" / "data" / "train" / "part-0", X)
    write_csv(root / "input" / "data" / "test_0", X[:50])  # a plain file stands for the FIFO
    assert container.train(root) == 0
    out = capsys.readouterr().out
    assert "Test data is not provided." not in out
    found = dict(re.findall(r"#quality_metric: host=algo-2, test (\w+) <loss>=(\S+)", out))
    model = kmeans_stream.load(tar_model(root, tmp_path / "model.tar.gz"))
    metrics = model.evaluate(X[:50])
    assert float(found["msd"]) == pytest.approx(metrics["test:msd"], rel=1e-6)
    assert float(found["ssd"]) == pytest.approx(metrics["test:ssd"], rel=1e-6)
    assert TRAIN_MSD.search(out).group(1) == "algo-2"


def _bad_json(root, X):
    (root / "input" / "config" / "hyperparameters.json").write_text('{"k": "3",')


def _set_hyperparameters(**changes):
    def change(root, X):
        values = {k: v for k, v in {**HYPERPARAMETERS, **changes}.items() if v is not None}
        (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(values))
    return change


def _no_train_channel(root, X):
    path = root / "input" / "config" / "inputdataconfig.json"
    path.write_text(json.dumps({"test": {"ContentType": CSV, "TrainingInputMode": "File"}}))


def _abc_cell(root, X):
    (root / "input" / "data" / "train" / "part-1.csv").write_text("1,2,3\n4,abc,6\n")


def _two_hosts(root, X):
    path = root / "input" / "config" / "resourceconfig.json"
    path.write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]}))


def _recordio_declared(root, X):
    path = root / "input" / "config" / "inputdataconfig.json"
    path.write_text(json.dumps({"train": {"ContentType": RECORDIO, "TrainingInputMode": "File"}}))


def _missing_pipe(root, X):
    path = root / "input" / "config" / "inputdataconfig.json"
    path.write_text(json.dumps({"train": {"ContentType": CSV, "TrainingInputMode": "Pipe"}}))


def _narrow_test_channel(root, X):
    path = root / "input" / "config" / "inputdataconfig.json"
    path.write_text(json.dumps({"train": {"ContentType": CSV, "TrainingInputMode": "File"},
                                "test": {"ContentType": CSV, "TrainingInputMode": "File"}}))
    (root / "input" / "data" / "test").mkdir()
    write_csv(root / "input" / "data" / "test" / "part-0", X[:10, :2])


FAILURES = {
    "malformed hyperparameters.json": (_bad_json, "hyperparameters.json is not valid JSON"),
    "unknown key": (_set_hyperparameters(kay="3"), "Unknown SageMaker K-Means hyperparameter"),
    "k=0": (_set_hyperparameters(k="0"), "The 'k' parameter of KMeans must be"),
    "no feature_dim": (_set_hyperparameters(feature_dim=None), "'feature_dim' hyperparameter"),
    "missing train channel": (_no_train_channel, "no 'train' channel"),
    "a CSV cell 'abc'": (_abc_cell, "part-1.csv, line 2: column 2: 'abc' is not a number"),
    "feature_dim mismatch": (_set_hyperparameters(feature_dim="4"), "feature_dim=4"),
    "two hosts": (_two_hosts, "lists 2 hosts (algo-1, algo-2)"),
    "ContentType mismatch": (_recordio_declared, "ContentType is RecordIO-protobuf"),
    "missing pipe": (_missing_pipe, "train_0 did not appear"),
    "test channel too narrow": (_narrow_test_channel, "'test' channel has 2 columns"),
}


@pytest.mark.parametrize("case", FAILURES)
def test_a_failure_is_reported_and_writes_no_model(tmp_path, X, capsys, monkeypatch, case):
    monkeypatch.setattr(container, "PIPE_WAIT_S", 0.1)
    spoil, expected = FAILURES[case]
    root = csv_opt_ml(tmp_path, X)
    spoil(root, X)
    assert container.train(root) == 1
    reason = (root / "output" / "failure").read_text()
    assert reason.startswith("ClientError: ") and expected in reason, reason
    assert reason.count("\n") == 1  # one paragraph
    err = capsys.readouterr().err
    assert reason.strip() in err and "Traceback" not in err
    assert model_folder(root) == []


def test_an_error_of_the_algorithm_comes_with_its_traceback(tmp_path, X, capsys, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(KMeans, "fit", broken)
    root = csv_opt_ml(tmp_path, X)
    assert container.train(root) == 1
    reason = (root / "output" / "failure").read_text()
    assert reason == "AlgorithmError: RuntimeError: kernel exploded\n"
    assert "Traceback" in capsys.readouterr().err
    assert model_folder(root) == []


def test_the_root_comes_from_the_environment(tmp_path, X, monkeypatch, capsys):
    root = csv_opt_ml(tmp_path, X)
    monkeypatch.setenv(container.ROOT_ENV, str(root))
    assert main(["train"]) == 0
    assert model_folder(root) == ["kmeans_stream.json", "model_algo-1"]


def test_the_console_script_trains(tmp_path, X):
    root = csv_opt_ml(tmp_path, X)
    script = Path(sys.executable).with_name("kmeans-stream")
    done = subprocess.run([str(script), "train"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, container.ROOT_ENV: str(root)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Docker entrypoint called with argument(s): train\n")
    assert TRAIN_MSD.search(done.stdout)
    assert model_folder(root) == ["kmeans_stream.json", "model_algo-1"]
