"""``s3://`` sources: list the objects of a prefix as SageMaker's S3Prefix channel does, and
stream each object's body without saving it.

boto3 is imported when a URI is first read; credentials, region and endpoint come from boto3's
usual chain (``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` points it at a local S3 server
such as moto's).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from .._optional import require
from .streams import buffered


def is_s3_uri(source: object) -> bool:
    """Whether `source` is a string starting with ``s3://``."""
    return isinstance(source, str) and source.startswith("s3://")


def split_uri(uri: str) -> tuple[str, str]:
    """``"s3://bucket/some/key"`` -> ``("bucket", "some/key")``.

    Raises
    ------
    ValueError
        If the URI names no bucket.
    """
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket; expected s3://bucket/prefix")
    return bucket, key


def make_client() -> Any:
    """A boto3 S3 client from the environment's configuration."""
    boto3 = require("boto3", "reading s3:// URIs")
    return boto3.client("s3")


def list_uris(uri: str, client: Any) -> Iterator[str]:
    """The objects a URI names, in key order.

    A URI that is exactly the key of an object names that object alone; otherwise it is a key
    prefix, as in a SageMaker S3Prefix channel, and names every object under it except "folder"
    placeholders (keys ending in ``/``).

    Raises
    ------
    FileNotFoundError
        If no object matches.
    """
    bucket, key = split_uri(uri)
    paginator = client.get_paginator("list_objects_v2")
    found = False
    for page in paginator.paginate(Bucket=bucket, Prefix=key):
        for entry in page.get("Contents", []):
            name = entry["Key"]
            if name == key and not found and not key.endswith("/"):
                yield f"s3://{bucket}/{name}"
                return
            if not name.endswith("/"):
                found = True
                yield f"s3://{bucket}/{name}"
    if not found:
        raise FileNotFoundError(f"no S3 objects under {uri}")


def open_uri(uri: str, client: Any) -> BinaryIO:
    """A buffered binary stream over one object's body (closing it closes the connection)."""
    bucket, key = split_uri(uri)
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    return buffered(body, uri, owned=True)


def read_text(uri: str, client: Any) -> str:
    """A small object's whole body as UTF-8 text (a manifest)."""
    with open_uri(uri, client) as stream:
        return stream.read().decode("utf-8")
