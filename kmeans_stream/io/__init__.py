"""Data and model formats: RecordIO-protobuf, MXNet NDArray files, model.tar.gz."""

from .ndarray import read_ndarrays, write_ndarrays
from .recordio import iter_recordio, read_recordio, write_recordio

__all__ = [
    "iter_recordio",
    "read_ndarrays",
    "read_recordio",
    "write_ndarrays",
    "write_recordio",
]
