"""SageMaker's training contract for kmeans_stream's own image (spec 8.1): ``docker run <image>
train`` reads ``/opt/ml/input``, fits, and writes ``/opt/ml/model`` or ``/opt/ml/output/failure``.

The model folder gets the files of `KMeans.save`'s model.tar.gz (``model_algo-1`` and
``kmeans_stream.json``), so SageMaker's tarring of it gives an archive that SageMaker's own K-Means
image serves and `kmeans_stream.load` reads back whole. The metric lines SageMaker's metric
definitions look for (``#quality_metric: ...``) are printed as its K-Means image prints them
(spec 6.2). One instance trains: there is no merge of centers across hosts yet.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from . import backends
from .estimator import KMeans
from .exceptions import DataFormatError, InvalidHyperparameterError
from .hyperparameters import validate_all
from .io import iter_batches
from .io._atomic import atomic_write
from .io.locations import expand
from .io.streams import GZIP_MAGIC, NPY_MAGIC, RECORDIO_MAGIC
from .persistence import model_files

__all__ = ["ROOT_ENV", "Channel", "Pipes", "train"]

ROOT_ENV = "KMEANS_STREAM_OPT_ML"
DEFAULT_ROOT = "/opt/ml"
CHANNELS = ("train", "test")
CONTENT_TYPES = {"text/csv": "csv", "application/x-recordio-protobuf": "recordio"}
FORMAT_NAMES = {"csv": "CSV (text/csv)", "npy": "a .npy array",
                "recordio": "RecordIO-protobuf (application/x-recordio-protobuf)"}
INPUT_MODES = ("File", "FastFile", "Pipe")
# SageMaker creates the FIFO of an epoch when it starts feeding it, possibly after the
# container asks for it.
PIPE_WAIT_S = 60.0
_PIPE_POLL_S = 0.02


def train(root: str | os.PathLike | None = None) -> int:
    """Run a SageMaker training job's work in this container.

    Parameters
    ----------
    root : str or os.PathLike, optional
        The ``/opt/ml`` folder; by default ``$KMEANS_STREAM_OPT_ML``, else ``/opt/ml``.

    Returns
    -------
    int
        The exit status: 0 when the model was written into ``model/``; 1 when the job failed,
        its reason written to ``output/failure`` (SageMaker's FailureReason) and to stderr, and
        nothing to ``model/``.
    """
    _log("Docker entrypoint called with argument(s): train")
    opt_ml = Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)
    try:
        _train(opt_ml)
    except Exception as exc:
        _fail(opt_ml, exc)
        return 1
    return 0


def _train(opt_ml: Path) -> None:
    config = opt_ml / "input" / "config"
    model = _model(_read_json(config / "hyperparameters.json"))
    channels = _channels(_read_json(config / "inputdataconfig.json"), opt_ml / "input" / "data")
    host = _host(_read_json(config / "resourceconfig.json"))
    model.fit(channels["train"].fit_data(model.mini_batch_size))
    _log(f"#quality_metric: host={host}, train msd <loss>={model.train_msd_}")
    _report_test(model, channels.get("test"), host)
    _write_model(model, opt_ml / "model")


def _model(hyperparameters: dict[str, Any]) -> KMeans:
    """The unfitted model, every hyperparameter checked before any data is read."""
    model = KMeans.from_sagemaker_hyperparameters(hyperparameters)
    values = validate_all(model.get_params())
    if values["feature_dim"] is None:
        raise InvalidHyperparameterError(
            "The 'feature_dim' hyperparameter is required (the number of columns of the data)."
        )
    if backends.lookup(values["backend"]).kind != "compute":
        raise InvalidHyperparameterError(
            f"backend={values['backend']!r} hands the fit to another trainer; inside the "
            "training container the fit runs here (leave backend unset)."
        )
    return model


def _host(resources: dict[str, Any]) -> str:
    hosts = resources.get("hosts") or []
    if len(hosts) > 1:
        raise ValueError(
            f"resourceconfig.json lists {len(hosts)} hosts ({', '.join(map(str, hosts))}), but "
            "kmeans_stream's container trains on one instance (there is no merge of centers "
            "across hosts yet): run the training job with instance_count=1."
        )
    return str(resources.get("current_host", "algo-1"))


# --------------------------------------------------------------------- channels


@dataclass(frozen=True)
class Channel:
    """One input channel of ``inputdataconfig.json``.

    Attributes
    ----------
    name : str
    path : str
        The channel's folder in File mode; the FIFOs' stem (``<data>/<name>``) in Pipe mode.
    format : str or None
        'csv' or 'recordio' as its ContentType says; None when it has none (then the first
        bytes of each file tell, as for any kmeans_stream source).
    pipe : bool
    """

    name: str
    path: str
    format: str | None
    pipe: bool

    def fit_data(self, batch_size: int) -> Any:
        """What fit reads: the folder (read again each epoch), or `Pipes`."""
        if self.pipe:
            return Pipes(self, batch_size)
        for location in expand(self.path):
            with open(location, "rb") as stream:
                self.check_format(stream, location)
        return self.path

    def one_pass(self, batch_size: int) -> Iterator[np.ndarray]:
        """The channel's rows, read once (the pipe of epoch 0 in Pipe mode)."""
        return iter(self.fit_data(batch_size)) if self.pipe else \
            iter_batches(self.fit_data(batch_size), batch_size)

    def check_format(self, stream: BinaryIO, name: str) -> None:
        """Refuse data whose first bytes are not of the channel's ContentType."""
        found = _format_of(stream.peek(8)[:8])
        if self.format and found and found != self.format:
            raise DataFormatError(
                f"{name}: the '{self.name}' channel's ContentType is "
                f"{FORMAT_NAMES[self.format]}, but the data is {FORMAT_NAMES[found]}."
            )


class Pipes:
    """A Pipe-mode channel as fit reads it: iteration n reads the FIFO ``<channel>_<n>``, since
    SageMaker feeds each epoch through a new pipe."""

    def __init__(self, channel: Channel, batch_size: int) -> None:
        self._channel, self._batch_size, self._epoch = channel, batch_size, 0

    def __iter__(self) -> Iterator[np.ndarray]:
        path = f"{self._channel.path}_{self._epoch}"
        self._epoch += 1
        return self._read(path)

    def _read(self, path: str) -> Iterator[np.ndarray]:
        with _open_pipe(path) as stream:
            self._channel.check_format(stream, path)
            yield from iter_batches(stream, self._batch_size)


def _channels(config: dict[str, Any], data: Path) -> dict[str, Channel]:
    unknown = sorted(set(config) - set(CHANNELS))
    if unknown:
        raise ValueError(
            f"inputdataconfig.json has the channel(s) {unknown}; K-Means reads 'train' and an "
            "optional 'test'."
        )
    if "train" not in config:
        raise ValueError("inputdataconfig.json has no 'train' channel; K-Means needs one.")
    return {name: _channel(name, settings, data) for name, settings in config.items()}


def _channel(name: str, settings: Any, data: Path) -> Channel:
    if not isinstance(settings, dict):
        raise ValueError(f"inputdataconfig.json: the '{name}' channel is not a JSON object.")
    mode = settings.get("TrainingInputMode", "File")
    if mode not in INPUT_MODES:
        raise ValueError(
            f"the '{name}' channel's TrainingInputMode {mode!r} is not one of {list(INPUT_MODES)}."
        )
    channel = Channel(name, str(data / name), _format(name, settings.get("ContentType")),
                      mode == "Pipe")
    if not channel.pipe and not os.path.isdir(channel.path):
        raise ValueError(f"the '{name}' channel's folder {channel.path} does not exist.")
    return channel


def _format(name: str, content_type: str | None) -> str | None:
    if content_type is None:
        return None
    kind, *options = (part.strip() for part in content_type.split(";"))
    if kind.lower() not in CONTENT_TYPES:
        raise ValueError(
            f"the '{name}' channel's ContentType {content_type!r} is not supported; use "
            f"{' or '.join(map(repr, CONTENT_TYPES))}."
        )
    for option in options:
        key, _, value = option.partition("=")
        if key.strip() == "label_size" and value.strip() != "0":
            raise ValueError(
                f"the '{name}' channel's ContentType {content_type!r} has labels; K-Means is "
                "unsupervised: send text/csv or text/csv;label_size=0."
            )
    return CONTENT_TYPES[kind.lower()]


def _format_of(head: bytes) -> str | None:
    """The format the first bytes show; None for nothing or gzip (told apart inside)."""
    if not head or head.startswith(GZIP_MAGIC):
        return None
    if head.startswith(RECORDIO_MAGIC):
        return "recordio"
    return "npy" if head.startswith(NPY_MAGIC) else "csv"


def _open_pipe(path: str) -> BinaryIO:
    deadline = time.monotonic() + PIPE_WAIT_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise ValueError(f"Pipe mode: {path} did not appear within {PIPE_WAIT_S:g} s.")
        time.sleep(_PIPE_POLL_S)
    return open(path, "rb")


# --------------------------------------------------------------------- results


def _report_test(model: KMeans, channel: Channel | None, host: str) -> None:
    if channel is None:
        _log("Test data is not provided.")
        return
    batches = _same_width(channel.one_pass(model.mini_batch_size), model.n_features_in_)
    for name, value in model.evaluate(batches).items():
        _log(f"#quality_metric: host={host}, test {name.removeprefix('test:')} <loss>={value}")


def _same_width(batches: Iterator[np.ndarray], n_features: int) -> Iterator[np.ndarray]:
    for X in batches:
        if X.shape[1] != n_features:
            raise DataFormatError(
                f"the 'test' channel has {X.shape[1]} columns, but the model was trained on "
                f"feature_dim={n_features}."
            )
        yield X


def _write_model(model: KMeans, folder: Path) -> None:
    """The files of model.tar.gz into `folder`, each written whole or not at all."""
    files = model_files(model)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        for name, data in files.items():
            with atomic_write(folder / name) as out:
                out.write(data)
            written.append(folder / name)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def _fail(opt_ml: Path, exc: Exception) -> None:
    """SageMaker's failure report: ``output/failure`` (its first 1024 characters become the
    job's FailureReason) and stderr; a traceback only for what is not the input's fault."""
    reason = _reason(exc)
    if not isinstance(exc, ValueError):
        traceback.print_exception(exc, file=sys.stderr)
    print(reason, file=sys.stderr, flush=True)
    failure = opt_ml / "output" / "failure"
    try:
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(reason + "\n", encoding="utf-8")
    except OSError as error:
        print(f"could not write {failure}: {error}", file=sys.stderr)


def _reason(exc: Exception) -> str:
    # ClientError and AlgorithmError are the prefixes of SageMaker's built-in algorithms: the
    # input's fault, or the algorithm's.
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, ValueError):
        return f"ClientError: {text}"
    return f"AlgorithmError: {type(exc).__name__}: {text}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path} is missing; SageMaker writes it before training.") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object; it holds a {type(value).__name__}.")
    return value


def _log(line: str) -> None:
    print(line, flush=True)
