"""The data of a SageMaker training job: in-memory and local sources written as
RecordIO-protobuf shards, one per instance, and uploaded with a manifest, as SDK 2.x's
``record_set`` did; or an ``s3://`` source used where it is.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..io import write_recordio
from ..io.locations import expand
from ..io.s3 import is_s3_uri, split_uri

logger = logging.getLogger(__name__)

RECORDIO = "application/x-recordio-protobuf"
CSV = "text/csv"
_MAGIC = b"\x0a\x23\xd7\xce"  # RecordIO's magic 0xCED7230A, little-endian
# Rows written per RecordIO call while spooling a shard.
_WRITE_ROWS = 65536


@dataclass
class Channel:
    """One channel of a training job, and the objects written for it (to delete on failure)."""

    name: str
    s3_uri: str
    s3_data_type: str  # "ManifestFile" or "S3Prefix"
    content_type: str
    distribution: str
    n_features: int
    written: list[str] = field(default_factory=list)  # s3:// URIs this upload created

    def config(self, input_mode: str) -> dict[str, Any]:
        """The channel's entry of CreateTrainingJob's InputDataConfig."""
        return {
            "ChannelName": self.name,
            "DataSource": {"S3DataSource": {
                "S3DataType": self.s3_data_type,
                "S3Uri": self.s3_uri,
                "S3DataDistributionType": self.distribution,
            }},
            "ContentType": self.content_type,
            "InputMode": input_mode,
        }


def describe_channel(source: Any, name: str) -> str:
    """Why `source` cannot be a channel, or '' when it can; checked before any upload."""
    if source.sample_weight is not None:
        return (f"the {name} channel: SageMaker's K-Means takes no sample_weight; fit without "
                "it or with a local backend")
    if source.kind == "device":
        return f"the {name} channel: {source.description} lives on a GPU; pass X.get()"
    if source.kind == "stream":
        return (f"the {name} channel: {source.description} is a stream of bytes; save it to a "
                "file or S3 first")
    if source.kind == "location" and is_s3_uri(source.data) and source.skip_header:
        return f"the {name} channel: CSV objects used in place cannot skip a header row"
    return ""


def s3_channel(source: Any, name: str, distribution: str, client: Any) -> Channel:
    """An ``s3://`` source as it is: its first object's bytes say CSV or RecordIO; its first
    batch says how many features."""
    from ..io import iter_batches

    uri = source.data
    first = next(iter(expand(uri)))
    bucket, key = split_uri(first)
    head = client.get_object(Bucket=bucket, Key=key, Range="bytes=0-3")["Body"].read()
    content_type = RECORDIO if head == _MAGIC else CSV
    n_features = next(iter_batches(uri, 1)).shape[1]
    data_type = "ManifestFile" if uri.endswith(".manifest") else "S3Prefix"
    return Channel(name, uri, data_type, content_type, distribution, n_features)


def upload_channel(source: Any, name: str, location: str, n_shards: int, distribution: str,
                   client: Any, *, encrypt: bool = False) -> Channel:
    """Write `source` as `n_shards` RecordIO-protobuf shards ``matrix_<i>.pbr`` under
    `location` (``s3://bucket/prefix/``) with the SDK's ``.amazon.manifest``.

    In-memory data is cut into contiguous shards of ``n // n_shards`` rows, the last taking the
    rest (the SDK's split); a stream is dealt out in blocks of rows, one shard after another,
    so it is read once. Rows are written as float32, the type SageMaker's image computes in.
    What was uploaded is deleted again if a later shard fails.
    """
    location = location.rstrip("/") + "/"
    bucket, prefix = split_uri(location)
    extra = {"ServerSideEncryption": "AES256"} if encrypt else {}
    channel = Channel(name, location + ".amazon.manifest", "ManifestFile", RECORDIO,
                      distribution, 0)
    names = [f"matrix_{str(i).zfill(len(str(n_shards)))}.pbr" for i in range(n_shards)]
    try:
        with _Shards(n_shards) as shards:
            channel.n_features = shards.fill(source)
            for shard, file_name in zip(shards.files, names, strict=True):
                shard.seek(0)
                client.upload_fileobj(shard, bucket, prefix + file_name, ExtraArgs=extra)
                channel.written.append(location + file_name)
        manifest = json.dumps([{"prefix": location}, *names]).encode()
        client.upload_fileobj(io.BytesIO(manifest), bucket, prefix + ".amazon.manifest",
                              ExtraArgs=extra)
        channel.written.append(channel.s3_uri)
    except BaseException:
        delete(channel.written, client)
        raise
    logger.info("uploaded the %s channel: %d shard(s) under %s", name, n_shards, location)
    return channel


def delete(uris: list[str], client: Any) -> None:
    """Delete the objects `uris` (what a failed or abandoned upload left); errors are logged."""
    for uri in uris:
        bucket, key = split_uri(uri)
        try:
            client.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:  # noqa: BLE001 - cleaning up must not hide the first error
            logger.warning("could not delete %s: %s", uri, exc)


class _Shards:
    """`n` spooled temporary files, filled with RecordIO rows."""

    def __init__(self, n: int) -> None:
        self.files = [tempfile.TemporaryFile() for _ in range(n)]

    def __enter__(self) -> _Shards:
        return self

    def __exit__(self, *exc: object) -> None:
        for file in self.files:
            file.close()

    def fill(self, source: Any) -> int:
        """Write the source's rows; returns the number of features."""
        n = len(self.files)
        if source.in_memory:
            if source.n_samples < n:
                raise ValueError(
                    f"{source.description} has {source.n_samples} rows for {n} instances: "
                    "each instance needs at least one row (lower instance_count)"
                )
            size = source.n_samples // n
            bounds = [i * size for i in range(n)] + [source.n_samples]
            for i, shard in enumerate(self.files):
                for start in range(bounds[i], bounds[i + 1], _WRITE_ROWS):
                    stop = min(start + _WRITE_ROWS, bounds[i + 1])
                    write_recordio(shard, _rows(source, start, stop))
            return source.n_features
        n_features, i = None, 0
        for X, _ in source.batches(_WRITE_ROWS):
            n_features = X.shape[1]
            write_recordio(self.files[i % n], np.asarray(X, dtype=np.float32))
            i += 1
        if n_features is None or i < n:
            raise ValueError(
                f"{source.description} holds too few rows for {n} instances: each instance "
                f"needs at least one block of {_WRITE_ROWS} rows (lower instance_count)"
            )
        return n_features


def _rows(source: Any, start: int, stop: int) -> Any:
    """Rows [start, stop) of an in-memory source, float32 (sparse stays sparse)."""
    if source.kind == "sparse":
        return source.data[start:stop].astype(np.float32)
    X, _ = next(source.batches(stop - start, np.arange(start, stop)))
    return np.asarray(X, dtype=np.float32)
