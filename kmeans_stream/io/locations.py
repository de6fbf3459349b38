"""Paths and URIs to the list of files they stand for: a file, a folder read as a SageMaker
channel, a manifest, an S3 prefix; and the arrays read from those files one after another.

A folder is read as SageMaker reads an S3 prefix: every regular file under it, at any depth, in
the order of the keys S3 would list (by the path relative to the folder, ``/``-separated, as
code points). Hidden files and folders (a name starting with ``.``, such as the SDK's
``.amazon.manifest`` or ``.ipynb_checkpoints``) and ``*.manifest`` files are left out: a
manifest describes data, it is not data, and reading it as CSV would fail.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from .. import _progress
from ..exceptions import DataFormatError
from . import s3
from .streams import Tagged, iter_stream_chunks


def iter_location_chunks(
    source: str | os.PathLike, batch_size: int, *, skip_header: bool = False,
    rng: Any = None,
) -> Iterator[Tagged]:
    """Arrays of rows from every file a path or URI stands for, in order (in a random order
    drawn from `rng` when one is given, as SageMaker's ShuffleConfig orders S3 objects).

    Parameters
    ----------
    source : str or PathLike
        A file, a folder, a manifest, or an ``s3://`` key, prefix or manifest.
    batch_size : int
        Rows per array where the format lets the reader choose.
    skip_header : bool, default False
        Drop the first line of each CSV file.
    rng : numpy.random.Generator, optional
        Shuffle the order of the files.

    Yields
    ------
    Tagged
        Each array and where its first row comes from.
    """
    opener = _Opener()
    locations = list(expand(source, opener))
    if rng is not None and len(locations) > 1:
        locations = [locations[i] for i in rng.permutation(len(locations))]
    for location in locations:
        with opener.open(location) as stream:
            chunks = iter_stream_chunks(stream, location, batch_size, skip_header=skip_header)
            if s3.is_s3_uri(location):
                yield from chunks
            else:
                yield from _counted(chunks, stream)


def _counted(chunks: Iterator[Tagged], stream: BinaryIO) -> Iterator[Tagged]:
    """`chunks`, reporting the bytes of the local file read so far (a progress bar's)."""
    at = 0
    for chunk in chunks:
        position = stream.tell()
        _progress.read_bytes(position - at)
        at = position
        yield chunk


def local_bytes(source: Any) -> int | None:
    """The bytes of the local files a path (or a list of paths) stands for; None for S3 or
    when they cannot be listed (the caller then counts rows)."""
    many = source if isinstance(source, (list, tuple)) else [source]
    try:
        files = [f for one in many for f in expand(one)]
        if not files or any(s3.is_s3_uri(f) for f in files):
            return None
        return sum(os.path.getsize(f) for f in files) or None
    except (OSError, ValueError, TypeError):
        return None


def expand(source: str | os.PathLike, opener: _Opener | None = None) -> Iterator[str]:
    """The files (paths or ``s3://`` URIs) a path or URI stands for, in reading order."""
    opener = opener or _Opener()
    text = os.fspath(source)
    if text.endswith(".manifest"):
        yield from read_manifest(text, opener)
    elif s3.is_s3_uri(text):
        _, key = s3.split_uri(text)
        base = text[: len(text) - len(key)] + key[: key.rfind("/") + 1]
        yield from _data_files(base, s3.list_uris(text, opener.client), keep=text)
    elif os.path.isdir(text):
        yield from _data_files(os.path.join(text, ""), _walk(text))
    else:
        yield text


def _walk(root: str) -> list[str]:
    """Every regular file under `root`, outside hidden folders, in S3 key order."""
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        found += [os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))]
    return sorted(found, key=lambda path: os.path.relpath(path, root).replace(os.sep, "/"))


def _data_files(base: str, locations: Iterable[str], keep: str = "") -> Iterator[str]:
    """`locations` less hidden files and manifests (hidden below `base`), but `keep` stays."""
    for location in locations:
        relative = location[len(base) :].replace(os.sep, "/")
        hidden = any(part.startswith(".") for part in relative.split("/"))
        if location == keep or not (hidden or location.endswith(".manifest")):
            yield location


def read_manifest(location: str, opener: _Opener | None = None) -> list[str]:
    """The files a SageMaker manifest lists.

    The manifest is the JSON the SageMaker SDK writes,
    ``[{"prefix": "s3://bucket/prefix/"}, "matrix_0.pbr", ...]``. A relative entry is appended to
    the prefix (SageMaker concatenates an S3 prefix and an entry as strings; a local prefix is
    joined as a path). A relative prefix, or a missing one, is taken from the manifest's own
    folder; an entry that is itself an ``s3://`` URI, or an absolute path beside a local
    prefix, is used as it is.

    Raises
    ------
    DataFormatError
        If the JSON is malformed or is not that shape; the message names the manifest.
    """
    opener = opener or _Opener()
    entries = _parse_manifest(opener.read_text(location), location)
    folder = _parent(location)
    prefix = folder
    if entries and isinstance(entries[0], dict):
        prefix = _join(folder, entries.pop(0)["prefix"])
    return [_join(prefix, entry) for entry in entries]


def _parse_manifest(text: str, location: str) -> list[Any]:
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            f"{location}, line {exc.lineno}: not a valid JSON manifest ({exc.msg})"
        ) from None
    shape_ok = isinstance(entries, list) and all(isinstance(e, str) for e in entries[1:])
    if shape_ok and entries and isinstance(entries[0], dict):
        shape_ok = isinstance(entries[0].get("prefix"), str)
    elif shape_ok and entries:
        shape_ok = isinstance(entries[0], str)
    if not shape_ok:
        raise DataFormatError(
            f"{location}: a manifest must be a JSON list "
            '[{"prefix": "s3://bucket/prefix/"}, "relative/key", ...]'
        )
    return entries


def _parent(location: str) -> str:
    if s3.is_s3_uri(location):
        return location[: location.rfind("/") + 1]
    return os.path.join(os.path.dirname(os.path.abspath(location)), "")


def _join(base: str, entry: str) -> str:
    if s3.is_s3_uri(entry):
        return entry
    if s3.is_s3_uri(base):
        return base + entry
    return os.path.join(base, entry)


class _Opener:
    """Opens local files and S3 objects, making one S3 client when the first URI needs it."""

    def __init__(self) -> None:
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3.make_client()
        return self._client

    def open(self, location: str) -> BinaryIO:
        if s3.is_s3_uri(location):
            return s3.open_uri(location, self.client)
        return open(location, "rb")

    def read_text(self, location: str) -> str:
        if s3.is_s3_uri(location):
            return s3.read_text(location, self.client)
        with open(location, encoding="utf-8") as file:
            return file.read()
