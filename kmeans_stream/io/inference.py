"""The inference payloads of SageMaker's K-Means (spec 5.1, 5.2), in both directions.

A client encodes requests and decodes responses; a server decodes requests and encodes
responses. Requests carry rows as CSV, JSON (``{"instances": [...]}``), JSON Lines or
RecordIO-protobuf; responses carry one ``closest_cluster`` and ``distance_to_cluster`` per row,
both float32, as the real service sends them. Every problem with a body or a content type is a
`PayloadError` whose message names it; rows and columns in messages count from 1.

Lines are joined by ``\\n`` without a trailing one, as the SageMaker SDK's serializers join
them; decoding takes a trailing line break (and ``\\r\\n``) too.
"""

from __future__ import annotations

import io
import json
import math
import sys

import numpy as np

from ..exceptions import DataFormatError, PayloadError
from ._scan import MAX_FEATURES
from .recordio import (
    read_predictions_recordio,
    read_recordio,
    write_predictions_recordio,
    write_recordio,
)

__all__ = [
    "ACCEPT_TYPES",
    "CONTENT_TYPES",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "media_type",
]

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
RECORDIO = "application/x-recordio-protobuf"

#: The request content types K-Means takes (spec 5.1).
CONTENT_TYPES = (CSV, JSON, JSONLINES, RECORDIO)
#: The response types K-Means answers in (spec 5.2).
ACCEPT_TYPES = (CSV, JSON, JSONLINES, RECORDIO)

_PREDICTION_KEYS = ("closest_cluster", "distance_to_cluster")


def media_type(header: str) -> str:
    """The media type of a Content-Type or Accept header: parameters dropped, lower case.

    ``"Text/CSV; label_size=0"`` gives ``"text/csv"``.
    """
    return header.split(";", 1)[0].strip().lower()


def encode_request(X, content_type: str) -> bytes:
    """Rows as the body of a request to a K-Means endpoint.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or (n_features,), or scipy.sparse matrix
        A 1-D array is one row. Numbers are written as the shortest text that reads back to
        the same value of X's dtype (float32 ``0.1`` is ``0.1``).
    content_type : str
        One of `CONTENT_TYPES`, parameters allowed. A sparse X is written in the JSON forms
        as ``{"data": {"features": {"keys", "shape", "values"}}}``, in RecordIO-protobuf as
        sparse records, and densified for CSV. RecordIO records are float32.

    Returns
    -------
    bytes

    Raises
    ------
    PayloadError
        The content type is not supported, X is not 1-D or 2-D, has no rows, holds something
        other than numbers or a value that is not finite.
    """
    encode = _pick(_REQUEST_ENCODERS, content_type, "content type")
    return encode(_as_rows(X))


def decode_request(body: bytes, content_type: str, n_features: int | None = None) -> np.ndarray:
    """The rows of a request body, every form of spec 5.1.

    Parameters
    ----------
    body : bytes
    content_type : str
        One of `CONTENT_TYPES`, parameters allowed (``text/csv;label_size=0``).
    n_features : int, optional
        The number of features the model expects; other widths are refused.

    Returns
    -------
    X : numpy.ndarray of shape (n_samples, n_features), float32
        Sparse rows are densified with their ``shape``.

    Raises
    ------
    PayloadError
        Unsupported content type, empty body, malformed JSON or RecordIO, a cell that is not a
        number, rows of different lengths, a sparse key outside its shape, a value that is not
        a finite float32, or a width other than `n_features`.
    """
    decode = _pick(_REQUEST_DECODERS, content_type, "content type")
    _check_not_empty(body)
    X = _finite_float32(decode(body))
    if X.shape[0] == 0:
        raise PayloadError("the request holds no rows")
    if X.shape[1] == 0:
        raise PayloadError("the rows hold no features")
    if n_features is not None and X.shape[1] != n_features:
        raise PayloadError(f"expected {n_features} features, got {X.shape[1]}")
    return X


def encode_response(closest_cluster, distance_to_cluster, accept: str) -> bytes:
    """K-Means' answer, byte for byte in the shapes the real service sends (spec 5.2).

    Parameters
    ----------
    closest_cluster, distance_to_cluster : array-like of shape (n_samples,)
        Both are sent as float32 values (``1.0``, ``23.40593910217285``).
    accept : str
        One of `ACCEPT_TYPES`, parameters allowed.

    Returns
    -------
    bytes
        JSON ``{"predictions":[{"closest_cluster":1.0,"distance_to_cluster":3.0},...]}``;
        JSON Lines ``{"distance_to_cluster": 3.0, "closest_cluster": 1.0}`` per line (the key
        order and spacing of the real example); CSV ``1.0,3.0`` per line; or RecordIO-protobuf
        records with the two labels.

    Raises
    ------
    PayloadError
        The accept type is not supported, or the columns are not 1-D of one length.
    """
    encode = _pick(_RESPONSE_ENCODERS, accept, "accept type")
    closest = _column(closest_cluster, "closest_cluster")
    distance = _column(distance_to_cluster, "distance_to_cluster")
    if closest.size != distance.size:
        raise PayloadError(f"{closest.size} closest_cluster for {distance.size} distances")
    return encode(closest, distance)


def decode_response(body: bytes, content_type: str) -> tuple[np.ndarray, np.ndarray]:
    """The predictions in a K-Means response body, any of the four forms of spec 5.2.

    Returns
    -------
    closest_cluster : numpy.ndarray of shape (n_samples,), int32
    distance_to_cluster : numpy.ndarray of shape (n_samples,), float32

    Raises
    ------
    PayloadError
        Unsupported content type, empty or malformed body, a missing or non-numeric field, or a
        closest_cluster that is not a whole number >= 0.
    """
    decode = _pick(_RESPONSE_DECODERS, content_type, "content type")
    _check_not_empty(body)
    closest, distance = decode(body)
    return _cluster_indices(closest), np.asarray(distance, dtype=np.float32)


# -- shared ---------------------------------------------------------------------------------


def _pick(table: dict, header: str, what: str):
    kind = media_type(header)
    if kind not in table:
        raise PayloadError(f"unsupported {what} {header!r}; supported: {', '.join(table)}")
    return table[kind]


def _check_not_empty(body: bytes) -> None:
    if not body or body.isspace():
        raise PayloadError("empty body")


def _text(body: bytes) -> str:
    try:
        return bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"the body is not UTF-8 text: {exc}") from None


def _lines(body: bytes) -> list[str]:
    return _text(body).rstrip().splitlines()


def _json(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"malformed JSON {where}: {exc}") from None


def _json_number(cell) -> float:
    # float() would take True as 1 and the string "2" as 2: neither is a JSON number.
    if type(cell) in (int, float):
        return float(cell)
    raise ValueError(cell)


def _csv_number(cell: str) -> float:
    if "_" in cell:  # float() reads "1_000" as 1000, as Python source does
        raise ValueError(cell)
    return float(cell)


def _numbers(cells: list, row: int, parse=_json_number) -> list[float]:
    values = []
    for column, cell in enumerate(cells, 1):
        try:
            values.append(parse(cell))
        except (ValueError, OverflowError):
            raise PayloadError(f"non-numeric cell {cell!r} at row {row}, column {column}") from None
    return values


def _stack(rows: list) -> np.ndarray:
    width = len(rows[0]) if rows else 0
    for number, row in enumerate(rows, 1):
        if len(row) != width:
            raise PayloadError(
                f"rows of different lengths: row {number} has {len(row)} features, "
                f"row 1 has {width}"
            )
    return np.array(rows, dtype=np.float64).reshape(len(rows), width)


def _finite_float32(X: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        X32 = X.astype(np.float32, copy=False)
    bad = np.argwhere(~np.isfinite(X32))
    if bad.size:
        row, column = bad[0]
        _refuse_non_finite(X[row, column], row, column)
    return X32


def _refuse_non_finite(value, row: int, column: int):
    raise PayloadError(
        f"non-finite value {float(value)!r} at row {row + 1}, column {column + 1} (as float32)"
    )


# -- requests -------------------------------------------------------------------------------


def _is_sparse(X) -> bool:
    # A scipy matrix means scipy is loaded already; otherwise it is never imported.
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X)


def _as_rows(X):
    sparse = _is_sparse(X)
    X = X.tocsr() if sparse else np.asarray(X)
    X = X.reshape(1, -1) if X.ndim == 1 else X
    if X.ndim != 2:
        raise PayloadError(f"X must be 1-D or 2-D; got {X.ndim} dimensions")
    if X.dtype.kind not in "iuf" or X.dtype.itemsize > 8:
        X = _as_float64(X)
    if sparse:
        _check_sparse_finite(X)
    else:
        _finite_float32(X)
    if X.shape[0] == 0:
        raise PayloadError("X has no rows")
    return X


def _check_sparse_finite(X) -> None:
    with np.errstate(over="ignore"):
        bad = np.flatnonzero(~np.isfinite(X.data.astype(np.float32)))
    if bad.size:
        row = np.searchsorted(X.indptr, bad[0], side="right") - 1
        _refuse_non_finite(X.data[bad[0]], row, X.indices[bad[0]])


def _as_float64(X):
    try:
        if X.dtype.kind == "c":
            raise TypeError("complex numbers have no place in a request")
        return X.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"X must hold real numbers; got dtype {X.dtype}: {exc}") from None


def _texts(values: np.ndarray) -> str:
    # numpy prints each value as the shortest text that reads back to it in its own dtype.
    return ",".join(values.astype(str).tolist())


def _dense_texts(X) -> list[str]:
    X = X.toarray() if _is_sparse(X) else X
    return [_texts(row) for row in X]


def _sparse_objects(X) -> list[str]:
    width = X.shape[1]
    objects = []
    for i in range(X.shape[0]):
        row = slice(X.indptr[i], X.indptr[i + 1])
        keys, values = _texts(X.indices[row]), _texts(X.data[row])
        tensor = f'{{"keys":[{keys}],"shape":[{width}],"values":[{values}]}}'
        objects.append(f'{{"data":{{"features":{tensor}}}}}')
    return objects


def _row_objects(X) -> list[str]:
    if _is_sparse(X):
        return _sparse_objects(X)
    return [f'{{"features":[{text}]}}' for text in _dense_texts(X)]


def _encode_csv_request(X) -> bytes:
    return "\n".join(_dense_texts(X)).encode()


def _encode_json_request(X) -> bytes:
    return ('{"instances":[' + ",".join(_row_objects(X)) + "]}").encode()


def _encode_jsonlines_request(X) -> bytes:
    return "\n".join(_row_objects(X)).encode()


def _encode_recordio_request(X) -> bytes:
    out = io.BytesIO()
    write_recordio(out, X.astype(np.float32))
    return out.getvalue()


def _decode_csv_request(body: bytes) -> np.ndarray:
    lines = _lines(body)
    return _stack([_numbers(line.split(","), r, _csv_number) for r, line in enumerate(lines, 1)])


def _decode_json_request(body: bytes) -> np.ndarray:
    doc = _json(_text(body), "in the body")
    if isinstance(doc, list):
        raise PayloadError(
            'a bare JSON list is not a SageMaker request; send {"instances": '
            '[{"features": [...]}, ...]}'
        )
    if not isinstance(doc, dict) or not isinstance(doc.get("instances"), list):
        raise PayloadError('a JSON request must be an object with an "instances" list')
    return _stack([_instance(obj, r) for r, obj in enumerate(doc["instances"], 1)])


def _decode_jsonlines_request(body: bytes) -> np.ndarray:
    lines = _lines(body)
    return _stack(
        [_instance(_json(line, f"on line {r}"), r) for r, line in enumerate(lines, 1)]
    )


def _decode_recordio_request(body: bytes) -> np.ndarray:
    try:
        X, _ = read_recordio(io.BytesIO(body))
    except DataFormatError as exc:
        raise PayloadError(f"malformed RecordIO-protobuf: {exc}") from None
    return X


def _instance(obj, row: int):
    """One row from ``{"features": [...]}`` or ``{"data": {"features": {...}}}``."""
    if isinstance(obj, dict) and isinstance(obj.get("features"), list):
        return _numbers(obj["features"], row)
    data = obj.get("data") if isinstance(obj, dict) else None
    if isinstance(data, dict) and isinstance(data.get("features"), dict):
        return _tensor_row(data["features"], row)
    raise PayloadError(
        f'row {row} is neither {{"features": [...]}} nor {{"data": {{"features": {{"values": '
        "[...]}}}}"
    )


def _tensor_row(tensor: dict, row: int):
    values = _numbers(_list(tensor, "values", row), row)
    if "keys" not in tensor and "shape" not in tensor:
        return values
    shape = _ints(_list(tensor, "shape", row), "shape", row)
    width = math.prod(shape)
    if not shape or min(shape) < 0 or width > MAX_FEATURES:
        raise PayloadError(f"row {row}: shape {shape} is not a feature count such as [7]")
    if "keys" not in tensor:
        if len(values) != width:
            raise PayloadError(f"row {row}: {len(values)} values for shape {shape}")
        return values
    keys = _ints(_list(tensor, "keys", row), "keys", row)
    return _densify(keys, values, shape, row)


def _densify(keys: list[int], values: list[float], shape: list[int], row: int) -> np.ndarray:
    if len(keys) != len(values):
        raise PayloadError(f"row {row}: {len(keys)} keys for {len(values)} values")
    width = math.prod(shape)
    outside = [key for key in keys if not 0 <= key < width]
    if outside:
        raise PayloadError(f"row {row}: sparse key {outside[0]} is out of range for shape {shape}")
    dense = np.zeros(width)
    dense[keys] = values
    return dense


def _list(tensor: dict, name: str, row: int) -> list:
    if not isinstance(tensor.get(name), list):
        raise PayloadError(f'row {row}: "{name}" must be a list')
    return tensor[name]


def _ints(values: list, name: str, row: int) -> list[int]:
    if not all(type(v) is int for v in values):
        raise PayloadError(f'row {row}: "{name}" must hold integers; got {values}')
    return values


# -- responses ------------------------------------------------------------------------------


def _column(values, name: str) -> np.ndarray:
    try:
        column = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{name} must hold numbers: {exc}") from None
    if column.ndim != 1:
        raise PayloadError(f"{name} must be 1-D; got shape {column.shape}")
    return column


def _encode_json_response(closest: np.ndarray, distance: np.ndarray) -> bytes:
    # tolist() gives the Python float of each float32, the text the real service prints.
    pairs = zip(closest.tolist(), distance.tolist(), strict=True)
    rows = [{"closest_cluster": c, "distance_to_cluster": d} for c, d in pairs]
    return json.dumps({"predictions": rows}, separators=(",", ":")).encode()


def _encode_jsonlines_response(closest: np.ndarray, distance: np.ndarray) -> bytes:
    pairs = zip(distance.tolist(), closest.tolist(), strict=True)
    return "\n".join(
        json.dumps({"distance_to_cluster": d, "closest_cluster": c}) for d, c in pairs
    ).encode()


def _encode_csv_response(closest: np.ndarray, distance: np.ndarray) -> bytes:
    pairs = zip(closest.tolist(), distance.tolist(), strict=True)
    return "\n".join(f"{c!r},{d!r}" for c, d in pairs).encode()


def _encode_recordio_response(closest: np.ndarray, distance: np.ndarray) -> bytes:
    out = io.BytesIO()
    write_predictions_recordio(out, closest, distance)
    return out.getvalue()


def _decode_json_response(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    doc = _json(_text(body), "in the body")
    if not isinstance(doc, dict) or not isinstance(doc.get("predictions"), list):
        raise PayloadError('a JSON response must be an object with a "predictions" list')
    return _prediction_columns([_prediction(obj, r) for r, obj in enumerate(doc["predictions"], 1)])


def _decode_jsonlines_response(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    lines = _lines(body)
    pairs = [_prediction(_json(line, f"on line {r}"), r) for r, line in enumerate(lines, 1)]
    return _prediction_columns(pairs)


def _decode_csv_response(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    pairs = []
    for r, line in enumerate(_lines(body), 1):
        cells = line.split(",")
        if len(cells) != 2:
            raise PayloadError(
                f"row {r} has {len(cells)} cells; a prediction is closest_cluster,"
                "distance_to_cluster"
            )
        pairs.append(_numbers(cells, r, _csv_number))
    return _prediction_columns(pairs)


def _decode_recordio_response(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        return read_predictions_recordio(io.BytesIO(body))
    except DataFormatError as exc:
        raise PayloadError(f"malformed RecordIO-protobuf: {exc}") from None


def _prediction(obj, row: int) -> list[float]:
    if not isinstance(obj, dict) or not all(key in obj for key in _PREDICTION_KEYS):
        raise PayloadError(
            f'prediction {row} is not an object with "closest_cluster" and "distance_to_cluster"'
        )
    return _numbers([obj[key] for key in _PREDICTION_KEYS], row)


def _prediction_columns(pairs: list) -> tuple[np.ndarray, np.ndarray]:
    table = np.array(pairs, dtype=np.float64).reshape(len(pairs), 2)
    return table[:, 0], table[:, 1]


def _cluster_indices(closest: np.ndarray) -> np.ndarray:
    closest = np.asarray(closest, dtype=np.float64)
    whole = (closest >= 0) & (closest <= np.iinfo(np.int32).max) & (closest == np.round(closest))
    if not whole.all():
        row = int(np.argmin(whole))
        raise PayloadError(
            f"closest_cluster {float(closest[row])!r} at row {row + 1} is not a cluster index"
        )
    return closest.astype(np.int32)


_REQUEST_ENCODERS = {
    CSV: _encode_csv_request,
    JSON: _encode_json_request,
    JSONLINES: _encode_jsonlines_request,
    RECORDIO: _encode_recordio_request,
}
_REQUEST_DECODERS = {
    CSV: _decode_csv_request,
    JSON: _decode_json_request,
    JSONLINES: _decode_jsonlines_request,
    RECORDIO: _decode_recordio_request,
}
_RESPONSE_ENCODERS = {
    CSV: _encode_csv_response,
    JSON: _encode_json_response,
    JSONLINES: _encode_jsonlines_response,
    RECORDIO: _encode_recordio_response,
}
_RESPONSE_DECODERS = {
    CSV: _decode_csv_response,
    JSON: _decode_json_response,
    JSONLINES: _decode_jsonlines_response,
    RECORDIO: _decode_recordio_response,
}
