"""`kmeans-stream serve`: the real waitress server in a subprocess, spoken to over real HTTP."""

import contextlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import kmeans_stream
from kmeans_stream import KMeans
from kmeans_stream.container import ROOT_ENV
from kmeans_stream.exceptions import ModelFormatError
from kmeans_stream.io import (
    read_predictions_recordio,
    safe_extract,
    write_ndarrays,
    write_recordio,
)
from kmeans_stream.io.inference import ACCEPT_TYPES, decode_response
from kmeans_stream.persistence import model_files
from kmeans_stream.serve import REFUSAL, Application, serve

FIXTURES = Path(__file__).parent / "fixtures"
ROWS = np.load(FIXTURES / "recordio" / "dense_f32.npy")  # (7, 5), as dense_f32.pbr
SPARSE_ROWS = np.load(FIXTURES / "recordio" / "sparse_f32.dense.npy")  # (6, 10)
READY_S = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _command(*options: str) -> list[str]:
    return [sys.executable, "-m", "kmeans_stream.cli", "serve", "--host", "127.0.0.1", *options]


def _request(port: int, method: str, path: str, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def _wait_ready(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited {process.returncode}: {log.read_text()}")
        with contextlib.suppress(OSError):
            if _request(port, "GET", "/ping")[0] == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"no answer to /ping in {READY_S} s: {log.read_text()}")


@contextlib.contextmanager
def _serving(folder: Path, *options: str, env: dict | None = None):
    """A running `kmeans-stream serve`; yields (port, process, stderr log); stops it by SIGTERM."""
    port, log = _free_port(), folder / f"serve-{time.monotonic_ns()}.log"
    environment = {k: v for k, v in os.environ.items() if k != ROOT_ENV} | (env or {})
    with open(log, "wb") as err:
        process = subprocess.Popen(_command("--port", str(port), *options), env=environment,
                                   stdout=subprocess.DEVNULL, stderr=err)
    try:
        _wait_ready(port, process, log)
        yield port, process, log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


@pytest.fixture(scope="module")
def main_server(tmp_path_factory):
    """A kmeans_stream model.tar.gz (`KMeans.save`) with 5 features, served with 2 threads."""
    folder = tmp_path_factory.mktemp("main")
    X = np.random.default_rng(0).normal(size=(300, 5)).astype(np.float32)
    path = KMeans(k=3, random_state=0, backend="numpy").fit(X).save(folder / "model.tar.gz")
    with _serving(folder, "--model", str(path), "--threads", "2") as (port, _, _):
        yield port, kmeans_stream.load(path)


@pytest.fixture(scope="module")
def opt_ml_server(tmp_path_factory):
    """SageMaker's own training artifact unpacked into $KMEANS_STREAM_OPT_ML/model, served
    without --model, with a payload limit of 1 MiB."""
    opt_ml = tmp_path_factory.mktemp("opt_ml")
    safe_extract(FIXTURES / "ndarray" / "model.tar.gz", opt_ml / "model")
    with _serving(opt_ml, "--max-payload-mb", "1", env={ROOT_ENV: str(opt_ml)}) as (port, _, _):
        yield port, kmeans_stream.load(opt_ml / "model")


def _invoke(port: int, body: bytes, content_type: str, accept: str | None = None):
    headers = {"Content-Type": content_type} | ({"Accept": accept} if accept else {})
    return _request(port, "POST", "/invocations", body, headers)


def _rows_json(X: np.ndarray, form: str) -> list[dict]:
    rows = X.tolist()
    if form == "dense":
        return [{"features": row} for row in rows]
    if form == "values":
        return [{"data": {"features": {"values": row}}} for row in rows]
    return [{"data": {"features": {"keys": np.flatnonzero(row).tolist(), "shape": [len(row)],
                                   "values": [v for v in row if v]}}} for row in rows]


def _json_request(X: np.ndarray, form: str) -> bytes:
    return json.dumps({"instances": _rows_json(X, form)}).encode()


def _recordio(X: np.ndarray) -> bytes:
    out = io.BytesIO()
    write_recordio(out, X)
    return out.getvalue()


REQUESTS = {
    "csv": ("text/csv", lambda X: "\n".join(",".join(map(repr, r)) for r in X.tolist()).encode()),
    "csv label_size": ("text/csv;label_size=0", lambda X: REQUESTS["csv"][1](X) + b"\n"),
    **{f"json {form}": ("application/json", lambda X, form=form: _json_request(X, form))
       for form in ("dense", "values", "sparse")},
    "jsonlines": ("application/jsonlines",
                  lambda X: "\n".join(map(json.dumps, _rows_json(X, "dense"))).encode()),
    "jsonlines sparse": ("application/jsonlines",
                         lambda X: "\n".join(map(json.dumps, _rows_json(X, "sparse"))).encode()),
    "recordio": ("application/x-recordio-protobuf", _recordio),
    "SDK's dense_f32.pbr": ("application/x-recordio-protobuf",
                            lambda X: (FIXTURES / "recordio" / "dense_f32.pbr").read_bytes()),
}


def _check_answer(status, content_type, body, accept, model, X):
    assert (status, content_type) == (200, accept)
    if accept == "application/x-recordio-protobuf":
        closest, distance = read_predictions_recordio(io.BytesIO(body))
    else:
        closest, distance = decode_response(body, accept)
    labels, expected = model.predict_with_distance(X)
    np.testing.assert_array_equal(closest, labels)
    np.testing.assert_array_equal(np.float32(distance), np.float32(expected))


@pytest.mark.parametrize("accept", ACCEPT_TYPES)
@pytest.mark.parametrize("form", REQUESTS)
def test_every_request_form_against_every_accept_type(main_server, form, accept):
    port, model = main_server
    content_type, encode = REQUESTS[form]
    answer = _invoke(port, encode(ROWS), content_type, accept)
    _check_answer(*answer, accept, model, ROWS)


@pytest.mark.parametrize("accept", [None, "*/*", "text/html, */*;q=0.1"])
def test_json_is_the_default_answer(main_server, accept):
    port, model = main_server
    answer = _invoke(port, REQUESTS["csv"][1](ROWS), "text/csv", accept)
    _check_answer(*answer, "application/json", model, ROWS)


def test_ping_is_200_with_an_empty_body(main_server):
    status, _, body = _request(main_server[0], "GET", "/ping")
    assert (status, body) == (200, b"")


def test_execution_parameters(main_server):
    status, content_type, body = _request(main_server[0], "GET", "/execution-parameters")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD",
                                "MaxPayloadInMB": 6}


BAD = [
    (b"1,2,3", "text/csv", None, 400, "expected 5 features, got 3"),
    (b"1,2,x,4,5", "text/csv", None, 400, "non-numeric cell 'x' at row 1, column 3"),
    (b"1,2,3,4,5\n1,2", "text/csv", None, 400, "rows of different lengths"),
    (b"1,2,3,4,nan", "text/csv", None, 400, "non-finite value nan at row 1, column 5"),
    (b"", "text/csv", None, 400, "empty body"),
    (b'{"instances": [', "application/json", None, 400, "malformed JSON"),
    (b"[[1, 2, 3, 4, 5]]", "application/json", None, 400, "a bare JSON list"),
    (b"\x00" * 12, "application/x-recordio-protobuf", None, 400, "malformed RecordIO-protobuf"),
    (b"1,2,3,4,5", "text/plain", None, 415, "unsupported content type 'text/plain'"),
    (b"1,2,3,4,5", "application/octet-stream", None, 415, "unsupported content type"),
    (b"1,2,3,4,5", "text/csv", "text/html", 406, "unsupported accept type 'text/html'"),
]


@pytest.mark.parametrize(("body", "content_type", "accept", "status", "detail"), BAD)
def test_bad_input_gets_a_one_line_reason_and_serving_goes_on(
        main_server, body, content_type, accept, status, detail):
    port, model = main_server
    answer_status, answer_type, answer = _invoke(port, body, content_type, accept)
    text = answer.decode()
    assert (answer_status, answer_type) == (status, "text/plain")
    assert text.startswith(f"{REFUSAL}: ") and detail in text and "\n" not in text
    _check_answer(*_invoke(port, REQUESTS["csv"][1](ROWS), "text/csv"), "application/json",
                  model, ROWS)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/invocations", 405), ("POST", "/ping", 405), ("GET", "/nowhere", 404)])
def test_unknown_routes_and_methods(main_server, method, path, status):
    assert _request(main_server[0], method, path)[0] == status


def test_sagemaker_model_folder_is_served_by_default(opt_ml_server):
    port, model = opt_ml_server
    np.testing.assert_array_equal(model.cluster_centers_,
                                  np.load(FIXTURES / "ndarray" / "centers_8x7.npy"))
    X = np.random.default_rng(1).normal(size=(20, 7)).astype(np.float32)
    for accept in ACCEPT_TYPES:
        _check_answer(*_invoke(port, _recordio(X), "application/x-recordio-protobuf", accept),
                      accept, model, X)


def test_a_body_over_the_limit_gets_413(opt_ml_server):
    port, model = opt_ml_server
    status, _, body = _invoke(port, b"0" * ((1 << 20) + 1), "text/csv")
    assert status == 413
    assert body.decode().startswith(f"{REFUSAL}: the body of {(1 << 20) + 1} bytes")
    X = np.zeros((3, 7), dtype=np.float32)
    _check_answer(*_invoke(port, _recordio(X), "application/x-recordio-protobuf",
                           "text/csv"), "text/csv", model, X)


def test_cli_serves_a_bare_model_algo_1_until_sigterm(tmp_path):
    path = tmp_path / "model_algo-1"
    centers = np.random.default_rng(2).normal(size=(4, 10)).astype(np.float32)
    write_ndarrays(path, [centers])
    model = kmeans_stream.load(path)
    with _serving(tmp_path, "--model", str(path)) as (port, process, log):
        pbr = (FIXTURES / "recordio" / "sparse_f32.pbr").read_bytes()
        _check_answer(*_invoke(port, pbr, "application/x-recordio-protobuf", "application/json"),
                      "application/json", model, SPARSE_ROWS)
    assert process.returncode == 0
    assert f"(k=4, feature_dim=10) on http://127.0.0.1:{port}" in log.read_text()


@pytest.mark.parametrize(("options", "reason", "status"), [
    (["--model", str(FIXTURES / "evil" / "truncated_ndarray")], "truncated_ndarray", 1),
    ([], "No such file or directory", 4),
    (["--model", str(FIXTURES / "ndarray" / "model.tar.gz"), "--threads", "0"],
     "threads must be an int >= 1", 1),
])
def test_an_unloadable_model_exits_at_start_with_the_reason(tmp_path, options, reason, status):
    environment = os.environ | {ROOT_ENV: str(tmp_path / "empty")}
    done = subprocess.run(_command("--port", str(_free_port()), *options), env=environment,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == status  # the command line's exit status table
    assert done.stderr.startswith("kmeans-stream serve: error: ")
    assert reason in done.stderr and done.stderr.count("\n") == 1


def test_load_reads_an_unpacked_model_folder(tmp_path):
    X = np.random.default_rng(3).normal(size=(60, 3))
    model = KMeans(k=2, random_state=0, backend="numpy").fit(X)
    for name, data in model_files(model).items():
        (tmp_path / name).write_bytes(data)
    loaded = kmeans_stream.load(tmp_path)
    np.testing.assert_array_equal(loaded.cluster_centers_, model.cluster_centers_)
    assert loaded.train_msd_ == model.train_msd_  # kmeans_stream.json was read too
    (tmp_path / "model_algo-1").unlink()
    with pytest.raises(ModelFormatError, match="the folder has no model_algo-1"):
        kmeans_stream.load(tmp_path)


@pytest.mark.parametrize("option", ["max_payload_mb", "threads"])
def test_application_refuses_a_count_below_1(option):
    with pytest.raises(ValueError, match=f"{option} must be an int >= 1"):
        Application(None, **{option: 0})


def test_serve_without_waitress_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "waitress", None)
    with pytest.raises(ImportError, match=r"pip install 'kmeans-stream\[serve\]'"):
        serve(FIXTURES / "ndarray" / "model.tar.gz")


def test_a_port_in_use_is_named(tmp_path):
    import socket

    from kmeans_stream import KMeans
    from kmeans_stream.serve import serve

    model = KMeans(k=2, random_state=0, backend="numpy").fit(
        np.random.default_rng(0).normal(size=(50, 3)))
    path = model.save(tmp_path / "model.tar.gz")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve(path, host="127.0.0.1", port=port)
