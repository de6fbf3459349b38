"""Data and model formats: RecordIO-protobuf, MXNet NDArray files, model.tar.gz; the
streaming sources a fit reads (CSV, RecordIO, .npy, folders, manifests, s3:// URIs); and the
inference payloads of a K-Means endpoint."""

from ..exceptions import PayloadError
from .artifact import read_model_artifact, safe_extract, write_model_artifact
from .convert import convert
from .inference import (
    ACCEPT_TYPES,
    CONTENT_TYPES,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    media_type,
)
from .ndarray import read_ndarrays, write_ndarrays
from .recordio import (
    iter_recordio,
    read_predictions_recordio,
    read_recordio,
    write_predictions_recordio,
    write_recordio,
)
from .sources import iter_batches, rebatch

__all__ = [
    "ACCEPT_TYPES",
    "CONTENT_TYPES",
    "PayloadError",
    "convert",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "iter_batches",
    "iter_recordio",
    "media_type",
    "read_model_artifact",
    "read_ndarrays",
    "read_predictions_recordio",
    "read_recordio",
    "rebatch",
    "safe_extract",
    "write_model_artifact",
    "write_ndarrays",
    "write_predictions_recordio",
    "write_recordio",
]
