"""Write a file so that readers see the old one or the whole new one, never half of it."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from typing import BinaryIO


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` for writing; rename it onto `path` on success.

    The temporary file lives in the same folder, so ``os.replace`` is an atomic rename, and it
    is created with mode 0o666 so the process umask gives the new file the usual permissions.
    On any error the temporary file is removed and `path` is left as it was.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace.

    Yields
    ------
    BinaryIO
        The open temporary file.

    Raises
    ------
    OSError
        When the temporary file cannot be made; it names `path` or its folder as given, never
        the temporary name.
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and not os.path.isdir(folder):
            given = os.path.dirname(path) or os.curdir
            raise FileNotFoundError(errno.ENOENT, "No such folder", given) from None
        raise type(exc)(exc.errno, exc.strerror, path) from None
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
