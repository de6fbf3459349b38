"""SageMaker's serving contract (spec 8.2): ``docker run <image> serve`` answers ``GET /ping``
and ``POST /invocations`` on port 8080, with the model SageMaker unpacked into
``/opt/ml/model``.

`Application` is a plain WSGI callable: requests in any of spec 5.1's forms, answers in any of
spec 5.2's (`kmeans_stream.io.inference`). A request it cannot take gets a 4xx whose one-line
body starts with SageMaker's own text, ``unable to evaluate payload provided``, and the server
goes on serving. `serve` loads the model and runs the application on waitress.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np

from ._optional import require
from .container import DEFAULT_ROOT, ROOT_ENV
from .exceptions import PayloadError
from .io.inference import ACCEPT_TYPES, CONTENT_TYPES, decode_request, encode_response, media_type

__all__ = ["MAX_PAYLOAD_MB", "PORT", "THREADS", "Application", "model_folder", "serve"]

PORT = 8080
#: SageMaker's default MaxPayloadInMB (spec 8.2), read as MiB.
MAX_PAYLOAD_MB = 6
#: waitress's own default number of worker threads.
THREADS = 4
REFUSAL = "unable to evaluate payload provided"
JSON = "application/json"
# waitress buffers a whole body (to a temporary file past 512 KiB) before the application sees
# it, and refuses a longer one with its own text: its cap stays at least at its default, far
# above ours, so that an oversized payload gets SageMaker's text.
_WAITRESS_MAX_BODY = 1 << 30


class _Refusal(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status


class Application:
    """The WSGI application of a K-Means endpoint.

    Parameters
    ----------
    model : KMeans
        A fitted model; it predicts with `KMeans.predict_with_distance`.
    max_payload_mb : int, default 6
        The largest request body taken, in MiB; a longer one gets 413.
    threads : int, default 4
        The requests served at once, reported as MaxConcurrentTransforms.
    """

    def __init__(self, model: Any, max_payload_mb: int = MAX_PAYLOAD_MB, threads: int = THREADS):
        _check_positive("max_payload_mb", max_payload_mb)
        _check_positive("threads", threads)
        self.model = model
        self.max_payload_mb = max_payload_mb
        self.threads = threads
        self._routes = {
            "/ping": ("GET", self._ping),
            "/invocations": ("POST", self._invocations),
            "/execution-parameters": ("GET", self._execution_parameters),
        }

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path not in self._routes:
            return _answer(start_response, 404, f"no route {path}".encode(), "text/plain")
        allowed, handler = self._routes[path]
        if method != allowed:
            body = f"{path} takes {allowed}, not {method}".encode()
            return _answer(start_response, 405, body, "text/plain", [("Allow", allowed)])
        try:
            body, content_type = handler(environ)
        except _Refusal as refusal:
            text = f"{REFUSAL}: {' '.join(str(refusal).split())}".encode()
            return _answer(start_response, refusal.status, text, "text/plain")
        return _answer(start_response, 200, body, content_type)

    def _ping(self, environ: dict) -> tuple[bytes, str]:
        return b"", "text/plain"

    def _execution_parameters(self, environ: dict) -> tuple[bytes, str]:
        parameters = {"MaxConcurrentTransforms": self.threads, "BatchStrategy": "MULTI_RECORD",
                      "MaxPayloadInMB": self.max_payload_mb}
        return json.dumps(parameters).encode(), JSON

    def _invocations(self, environ: dict) -> tuple[bytes, str]:
        content_type = environ.get("CONTENT_TYPE", "")
        if media_type(content_type) not in CONTENT_TYPES:
            raise _Refusal(415, _unsupported("content type", content_type, CONTENT_TYPES))
        accept = _response_type(environ.get("HTTP_ACCEPT", ""))
        body = self._body(environ)
        try:
            X = decode_request(body, content_type, self.model.n_features_in_)
        except PayloadError as exc:
            raise _Refusal(400, str(exc)) from None
        return encode_response(*self.model.predict_with_distance(X), accept), accept

    def _body(self, environ: dict) -> bytes:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        limit = self.max_payload_mb << 20
        if length > limit:
            raise _Refusal(413, f"the body of {length} bytes is over the {limit} bytes allowed "
                                f"(MaxPayloadInMB={self.max_payload_mb})")
        return environ["wsgi.input"].read(length)


def _response_type(accept: str) -> str:
    """The first type listed in an Accept header that K-Means answers in (q-values are not
    weighed: SageMaker's clients send one type)."""
    # SageMaker's K-Means answers JSON to a request that names no type (or */*).
    for part in accept.split(",") if accept.strip() else ["*/*"]:
        kind = media_type(part)
        if kind in ACCEPT_TYPES:
            return kind
        if kind == "*/*":
            return JSON
    raise _Refusal(406, _unsupported("accept type", accept, ACCEPT_TYPES))


def _unsupported(what: str, header: str, supported: tuple[str, ...]) -> str:
    return f"unsupported {what} {header!r}; supported: {', '.join(supported)}"


def _answer(start_response, status: int, body: bytes, content_type: str,
            headers: list | None = None) -> list[bytes]:
    start_response(f"{status} {HTTPStatus(status).phrase}", [
        ("Content-Type", content_type), ("Content-Length", str(len(body))), *(headers or [])])
    return [body]


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}")


def model_folder() -> Path:
    """Where SageMaker unpacks the model: ``$KMEANS_STREAM_OPT_ML/model``, else
    ``/opt/ml/model``."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT) / "model"


def serve(model_path: str | os.PathLike | None = None, host: str = "0.0.0.0", port: int = PORT,
          max_payload_mb: int = MAX_PAYLOAD_MB, threads: int = THREADS) -> None:
    """Serve a model as a SageMaker K-Means endpoint until SIGTERM or Ctrl-C.

    Parameters
    ----------
    model_path : str or os.PathLike, optional
        Anything `kmeans_stream.load` reads; by default `model_folder()`.
    host : str, default "0.0.0.0"
    port : int, default 8080
    max_payload_mb : int, default 6
        The largest request body, in MiB (SageMaker's MaxPayloadInMB).
    threads : int, default 4
        waitress's worker threads.

    Raises
    ------
    ImportError
        waitress is not installed.
    ValueError, OSError
        The model cannot be loaded, or the address cannot be bound; raised before anything
        is served.
    """
    waitress = require("waitress", "kmeans-stream serve")
    path = Path(model_path) if model_path is not None else model_folder()
    model = _ready_model(path)
    app = Application(model, max_payload_mb, threads)
    try:
        server = waitress.create_server(
            app, host=host, port=port, threads=threads,
            max_request_body_size=max(_WAITRESS_MAX_BODY, (max_payload_mb << 20) + 1))
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                      ) from exc
    print(f"kmeans-stream serve: {path} (k={model.k}, feature_dim={model.n_features_in_}) on "
          f"{_urls(server)}", file=sys.stderr, flush=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit)
    try:
        server.run()  # waitress's loop ends on SystemExit, letting running requests finish
    finally:
        server.close()


def _ready_model(path: Path) -> Any:
    from .persistence import load

    model = load(path)
    # One prediction before the first ping: the kernels are compiled or loaded now, not
    # within the 60 s SageMaker gives the first invocation.
    model.predict_with_distance(np.zeros((1, model.n_features_in_), dtype=np.float32))
    return model


def _exit(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _urls(server: Any) -> str:
    listen = getattr(server, "effective_listen", None) or [
        (server.effective_host, server.effective_port)]
    return ", ".join(f"http://{host}:{port}" for host, port in listen)
