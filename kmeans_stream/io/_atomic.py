"""Write a file so that readers see the old one or the whole new one, never half of it."""

from __future__ import annotations

import contextlib
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
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
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
