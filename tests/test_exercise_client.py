"""The SageMaker K-Means exercise's client code against `kmeans-stream serve` on loopback.

The exercise deployed its model, then set ``predictor.serializer = CSVSerializer()`` and
``predictor.deserializer = JSONDeserializer()``, called ``result = predictor.predict(rows)`` a
slice of rows at a time and read ``result["predictions"][i]["closest_cluster"]``. With the
SageMaker SDK installed its own serializer classes make the bodies; without it, `_Predictor`
makes the same requests by hand: the rows as CSV (``text/csv``), ``Accept: application/json``.
"""

import contextlib
import http.client
import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kmeans_stream import KMeans

COMMAND = Path(sys.executable).with_name("kmeans-stream")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(port: int, path: str, body: bytes = b"", headers: dict | None = None,
          method: str = "POST") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    """`kmeans-stream serve` of a model of the exercise's shape; yields (port, model, rows)."""
    folder = tmp_path_factory.mktemp("exercise")
    rng = np.random.default_rng(42)
    centers = rng.uniform(-10, 10, size=(5, 10))
    X = (centers[rng.integers(0, 5, 500)] + rng.normal(0, 1.5, (500, 10))).astype(np.float32)
    model = KMeans(k=5, mini_batch_size=500, epochs=10, extra_center_factor=2,
                   random_state=42, backend="numpy").fit(X)
    model.save(folder / "model.tar.gz")
    port = _free_port()
    with open(folder / "serve.log", "wb") as log:
        server = subprocess.Popen([str(COMMAND), "serve", "--model", folder / "model.tar.gz",
                                   "--host", "127.0.0.1", "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (folder / "serve.log").read_text()
            with contextlib.suppress(OSError):
                if _post(port, "/ping", method="GET")[0] == 200:
                    break
            assert time.monotonic() < deadline, "no answer to /ping"
            time.sleep(0.05)
        yield port, model, X
    finally:
        server.terminate()
        server.wait(timeout=30)


class _Predictor:
    """What the exercise's predictor did with a CSVSerializer and a JSONDeserializer."""

    def __init__(self, port: int):
        self.port = port
        try:
            from sagemaker.deserializers import JSONDeserializer
            from sagemaker.serializers import CSVSerializer
        except ImportError:
            self.serializer = self.deserializer = None
        else:
            self.serializer, self.deserializer = CSVSerializer(), JSONDeserializer()

    def predict(self, rows: np.ndarray) -> dict:
        if self.serializer is None:
            body = "\n".join(",".join(str(value) for value in row) for row in rows.tolist())
            status, answer = _post(self.port, "/invocations", body.encode(),
                                   {"Content-Type": "text/csv", "Accept": "application/json"})
            assert status == 200, answer
            return json.loads(answer)
        status, answer = _post(self.port, "/invocations", self.serializer.serialize(rows),
                               {"Content-Type": self.serializer.CONTENT_TYPE,
                                "Accept": self.deserializer.ACCEPT[0]})
        assert status == 200, answer
        return self.deserializer.deserialize(io.BytesIO(answer), "application/json")


def get_cluster_assignments(predictor, rows: np.ndarray, batch: int = 100) -> list[int]:
    """The exercise's loop: a slice of rows per request, the closest cluster of each."""
    assignments = []
    for start in range(0, len(rows), batch):
        result = predictor.predict(rows[start:start + batch])
        for i in range(len(result["predictions"])):
            assignments.append(int(result["predictions"][i]["closest_cluster"]))
    return assignments


def test_the_exercises_loop_gets_the_models_clusters(endpoint):
    port, model, X = endpoint
    assignments = get_cluster_assignments(_Predictor(port), X)
    assert assignments == model.predict(X).tolist()
    assert sorted(set(assignments)) == [0, 1, 2, 3, 4]


def test_each_prediction_is_sagemakers_json(endpoint):
    port, model, X = endpoint
    result = _Predictor(port).predict(X[:3])
    labels, distance = model.predict_with_distance(X[:3])
    assert result == {"predictions": [
        {"closest_cluster": float(c), "distance_to_cluster": float(np.float32(d))}
        for c, d in zip(labels, distance, strict=True)
    ]}
