"""SageMaker K-Means model artifacts: ``model.tar.gz`` holding ``model_algo-1`` (spec 4.1).

``model_algo-1`` is an MXNet NDArray list with one (k, feature_dim) float32 array, the
centers. kmeans_stream adds a ``kmeans_stream.json`` member with its own fitted state; a
SageMaker training artifact has a ``state_<uuid>`` member instead, of unknown format, which is
ignored. An artifact may come from anywhere, so archives are read in memory with every member
checked first: no absolute or ``..`` names, no links or device files, nothing huge.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import shutil
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Iterator

import numpy as np

from .._optional import require
from ..exceptions import ModelFormatError
from ._atomic import atomic_write
from .ndarray import LIST_MAGIC, read_ndarrays, write_ndarrays

__all__ = ["model_members", "read_model_artifact", "safe_extract", "write_model_artifact"]

ARTIFACT_NAME = "model.tar.gz"
MODEL_MEMBER = "model_algo-1"
STATE_MEMBER = "kmeans_stream.json"
MAX_MEMBER_BYTES = 1 << 30
MAX_ARCHIVE_BYTES = 4 << 30
MAX_MEMBERS = 1000
_COPY_BYTES = 1 << 20
# What tarfile and gzip raise on a corrupt or truncated archive.
_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def write_model_artifact(path, centers, state: dict | None = None) -> str:
    """Write a SageMaker-style ``model.tar.gz``, replacing any old one atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The archive to write, or an existing folder to write ``model.tar.gz`` into.
    centers : array-like of shape (k, n_features)
        Saved as float32 in the member ``model_algo-1``, as ``mx.nd.save`` would.
    state : dict, optional
        JSON-serialisable state saved as the member ``kmeans_stream.json`` (keys sorted).

    Returns
    -------
    str
        The path of the archive written.
    """
    members = model_members(centers, state)
    target = os.fspath(path)
    if os.path.isdir(target):
        target = os.path.join(target, ARTIFACT_NAME)
    with atomic_write(target) as out:
        _write_tar_gz(out, members)
    return target


def model_members(centers, state: dict | None = None) -> dict[str, bytes]:
    """The members of the ``model.tar.gz`` that `write_model_artifact` writes, by name.

    A training container writes them as files into ``/opt/ml/model``, which SageMaker then
    tars into the same archive.

    Parameters
    ----------
    centers : array-like of shape (k, n_features)
        Saved as float32 in ``model_algo-1``, as ``mx.nd.save`` would.
    state : dict, optional
        JSON-serialisable state, saved as ``kmeans_stream.json`` (keys sorted).

    Returns
    -------
    dict of str to bytes
        ``model_algo-1`` first, then ``kmeans_stream.json`` when `state` is given.
    """
    centers = np.asarray(centers, dtype=np.float32)
    if centers.ndim != 2:
        raise ValueError(f"centers must be a 2-D array (k, n_features); got shape {centers.shape}")
    model = io.BytesIO()
    write_ndarrays(model, [centers])
    members = {MODEL_MEMBER: model.getvalue()}
    if state is not None:
        members[STATE_MEMBER] = json.dumps(state, sort_keys=True).encode("utf-8")
    return members


def _write_tar_gz(out, members: dict[str, bytes]) -> None:
    # Fixed times and owners: the same model gives the same bytes.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))


def read_model_artifact(path_or_uri) -> tuple[np.ndarray, dict | None]:
    """Read the centers (and kmeans_stream's state, if saved) from a K-Means model.

    Parameters
    ----------
    path_or_uri : str or os.PathLike
        A ``model.tar.gz`` (SageMaker's training output or `write_model_artifact`'s), a bare
        ``model_algo-1`` file (recognised by its MXNet magic, whatever its name), a folder
        holding ``model_algo-1`` (and maybe ``kmeans_stream.json``: the archive unpacked, as
        in ``/opt/ml/model``), or an ``s3://bucket/key`` URI of an archive or file, fetched
        with boto3 and the standard AWS settings.

    Returns
    -------
    centers : numpy.ndarray of shape (k, n_features)
    state : dict or None
        The ``kmeans_stream.json`` member, or None when there is none.

    Raises
    ------
    ModelFormatError
        If the file is neither format, an archive member is unsafe (absolute or ``..`` name,
        link, device, too large, too many), ``model_algo-1`` is missing (from an archive or a
        folder), or it does not hold exactly one non-empty 2-D float array.
    """
    if isinstance(path_or_uri, str) and path_or_uri.startswith("s3://"):
        with tempfile.TemporaryDirectory() as folder:
            local = os.path.join(folder, ARTIFACT_NAME)
            _download(path_or_uri, local)
            return _read_local(local, path_or_uri)
    path = os.fspath(path_or_uri)
    if os.path.isdir(path):
        return _read_folder(path)
    return _read_local(path, path)


def _read_folder(path: str) -> tuple[np.ndarray, dict | None]:
    """The model in a folder such as ``/opt/ml/model``, where SageMaker unpacks model.tar.gz
    before serving: ``model_algo-1`` and, if there, ``kmeans_stream.json``; other files (the
    ``state_<uuid>`` of SageMaker's training) are ignored."""
    model = os.path.join(path, MODEL_MEMBER)
    if not os.path.isfile(model):
        raise ModelFormatError(f"{path}: the folder has no {MODEL_MEMBER} file")
    centers = _centers(_read_small(model), model)
    state = os.path.join(path, STATE_MEMBER)
    return centers, _state(_read_small(state), state) if os.path.isfile(state) else None


def _read_small(path: str) -> bytes:
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        if size > MAX_MEMBER_BYTES:
            raise ModelFormatError(f"{path}: {size} bytes is too large for a model file")
        return stream.read()


def _download(uri: str, local: str) -> None:
    boto3 = require("boto3", "reading s3:// URIs")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"{uri!r} is not an S3 object URI (s3://bucket/key)")
    response = boto3.client("s3").get_object(Bucket=bucket, Key=key)
    if response["ContentLength"] > MAX_ARCHIVE_BYTES:
        raise ModelFormatError(f"{uri}: {response['ContentLength']} bytes is too large a model")
    with open(local, "wb") as out:
        for chunk in response["Body"].iter_chunks(_COPY_BYTES):
            out.write(chunk)


def _read_local(path: str, name: str) -> tuple[np.ndarray, dict | None]:
    with open(path, "rb") as stream:
        head = stream.read(8)
        bare = len(head) == 8 and struct.unpack("<Q", head)[0] == LIST_MAGIC
        if bare:
            size = os.fstat(stream.fileno()).st_size
            if size > MAX_MEMBER_BYTES:
                raise ModelFormatError(f"{name}: {size} bytes is too large a model_algo-1")
            stream.seek(0)
            data = stream.read()
    if bare:
        return _centers(data, name), None
    members = _read_members(path, name, {MODEL_MEMBER, STATE_MEMBER})
    if MODEL_MEMBER not in members:
        raise ModelFormatError(f"{name}: the archive has no {MODEL_MEMBER} member")
    model_name = f"{name}[{MODEL_MEMBER}]"
    centers = _centers(members[MODEL_MEMBER], model_name)
    state = members.get(STATE_MEMBER)
    return centers, None if state is None else _state(state, f"{name}[{STATE_MEMBER}]")


def _centers(data: bytes, name: str) -> np.ndarray:
    arrays = read_ndarrays(data, name=name)
    arrays = list(arrays.values()) if isinstance(arrays, dict) else arrays
    if len(arrays) != 1:
        raise ModelFormatError(f"{name}: {len(arrays)} arrays; K-Means saves one (the centers)")
    centers = arrays[0]
    if centers.ndim != 2 or centers.dtype.kind != "f" or not centers.size:
        problem = f"the centers must be a non-empty 2-D float array; got {centers.dtype}"
        raise ModelFormatError(f"{name}: {problem} of shape {centers.shape}")
    return centers.astype(np.float32) if centers.dtype == np.float16 else centers


def _state(data: bytes, name: str) -> dict:
    try:
        state = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError(f"{name}: not valid JSON: {exc}") from None
    if not isinstance(state, dict):
        raise ModelFormatError(f"{name}: a JSON {type(state).__name__}, not an object")
    return state


def _read_members(path: str, name: str, wanted: set[str]) -> dict[str, bytes]:
    """The wanted regular files of an archive, read in memory; every member is checked."""
    found = {}
    with _tar_stream(path, name) as tar:
        for member in _checked_members(tar, name):
            if member.isreg() and _clean_name(member.name) in wanted:
                found[_clean_name(member.name)] = tar.extractfile(member).read()
    return found


def safe_extract(tar_path, target_dir) -> list[str]:
    """Extract an archive under `target_dir`, after checking every member.

    Nothing is written unless every member is safe: a relative name without ``..`` that stays
    under `target_dir` (existing symlinks there included), a regular file or a folder, at most
    `MAX_MEMBER_BYTES` each, at most `MAX_MEMBERS` of them, and the whole archive intact. File
    modes and owners in the archive are not applied.

    Parameters
    ----------
    tar_path : str or os.PathLike
        A tar archive, compressed or not.
    target_dir : str or os.PathLike
        The folder to extract into; created if missing.

    Returns
    -------
    list of str
        The paths of the files written.

    Raises
    ------
    ModelFormatError
        If the archive is unreadable or any member is unsafe.
    """
    name = os.fspath(tar_path)
    target = os.path.realpath(target_dir)
    with _tar_stream(name, name) as tar:
        for member in _checked_members(tar, name):
            _check_inside(target, _clean_name(member.name), name)
    written = []
    # A second pass, so that a bad member anywhere stops the extraction before it starts.
    with _tar_stream(name, name) as tar:
        for member in _checked_members(tar, name):
            dest = os.path.join(target, _clean_name(member.name))
            if member.isdir():
                os.makedirs(dest, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with atomic_write(dest) as out:
                shutil.copyfileobj(tar.extractfile(member), out, _COPY_BYTES)
            written.append(dest)
    return written


@contextlib.contextmanager
def _tar_stream(path: str, name: str) -> Iterator[tarfile.TarFile]:
    """An archive read once, front to back, and checked to the end of its compressed stream.

    tarfile alone stops at the end-of-archive marker, so it would take a gzip file cut inside
    its trailing padding, or with a bad CRC, as sound; reading the gzip stream to its end
    catches both.
    """
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
        try:
            with tarfile.open(fileobj=stream, mode="r|" if gzipped else "r|*") as tar:
                yield tar
            while stream.read(_COPY_BYTES):
                pass
        except _TAR_ERRORS as exc:
            raise ModelFormatError(f"{name}: not a sound tar archive: {exc}") from None


def _checked_members(tar: tarfile.TarFile, name: str) -> Iterator[tarfile.TarInfo]:
    total = 0
    for count, member in enumerate(tar, start=1):
        if count > MAX_MEMBERS:
            raise ModelFormatError(f"{name}: more than {MAX_MEMBERS} archive members")
        _check_member(member, name)
        total += member.size
        if total > MAX_ARCHIVE_BYTES:
            raise ModelFormatError(f"{name}: more than {MAX_ARCHIVE_BYTES} bytes unpacked")
        yield member


def _check_member(member: tarfile.TarInfo, name: str) -> None:
    where = f"{name}: member {member.name!r} (tar byte offset {member.offset})"
    if member.name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", member.name):
        raise ModelFormatError(f"{where} has an absolute name")
    if ".." in re.split(r"[\\/]", member.name):
        raise ModelFormatError(f"{where} has '..' in its name (path traversal)")
    if not (member.isreg() or member.isdir()):
        raise ModelFormatError(f"{where} is a {_kind(member)}; only files and folders are read")
    if member.size > MAX_MEMBER_BYTES:
        raise ModelFormatError(f"{where} is {member.size} bytes, over {MAX_MEMBER_BYTES}")
    if member.isreg() and not _clean_name(member.name):
        raise ModelFormatError(f"{where} is a file without a name")


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symbolic link"
    if member.islnk():
        return "hard link"
    if member.ischr() or member.isblk():
        return "device file"
    return "fifo" if member.isfifo() else f"member of type {member.type!r}"


def _clean_name(name: str) -> str:
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def _check_inside(target: str, relative: str, name: str) -> None:
    dest = os.path.realpath(os.path.join(target, relative))
    if os.path.commonpath([target, dest]) != target:
        raise ModelFormatError(f"{name}: member {relative!r} would land outside {target}")
