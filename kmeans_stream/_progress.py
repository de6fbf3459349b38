"""What `verbose` turns on for the length of one call: kmeans_stream's log lines and progress
bars (tqdm, imported only then) on stderr.

`verbose_logging` is entered by every fit; the bars opened inside it (`bar`) are shown, and any
still open at its end are closed there. A nested verbose call adds nothing, and a quiet call
inside a verbose one stays in it, so that a command line that asks for bars around a library
call keeps them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any


class _Shown:
    """The bars of one verbose call."""

    def __init__(self) -> None:
        self.bars: list[Any] = []

    def close(self, finished: bool) -> None:
        for shown in self.bars:
            if finished and shown.total is not None and shown.n < shown.total:
                # The work ended before the total foreseen (partial_fit does one pass of an
                # `epochs` > 1 model): the bar says what was done, not 33 %.
                shown.total = shown.n
            shown.close()
        self.bars.clear()


_SHOWN: ContextVar[_Shown | None] = ContextVar("kmeans_stream_shown", default=None)
# Where the readers of local files report the bytes they read (a fit's bar in bytes).
_BYTES: ContextVar[Callable[[int], None] | None] = ContextVar("kmeans_stream_bytes",
                                                               default=None)


@contextlib.contextmanager
def counting_bytes(report: Callable[[int], None] | None) -> Iterator[None]:
    """While inside, `read_bytes` hands the bytes read from local files to `report`."""
    token = _BYTES.set(report)
    try:
        yield
    finally:
        _BYTES.reset(token)


def read_bytes(n: int) -> None:
    """Report `n` more bytes read from a local file (nothing happens outside
    `counting_bytes`)."""
    report = _BYTES.get()
    if report is not None and n > 0:
        report(n)


@contextlib.contextmanager
def verbose_logging(verbose: bool | int) -> Iterator[None]:
    """Show kmeans_stream's INFO lines (epochs, reduction trials) and its progress bars on
    stderr while inside; close the bars left open at the end."""
    if not verbose or _SHOWN.get() is not None:
        yield
        return
    shown = _Shown()
    token = _SHOWN.set(shown)
    logger = logging.getLogger("kmeans_stream")
    handler = _BarSafeHandler(shown)
    handler.setFormatter(logging.Formatter("[kmeans_stream] %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    finished = False
    try:
        yield
        finished = True
    finally:
        shown.close(finished)
        logger.removeHandler(handler)
        logger.setLevel(level)
        _SHOWN.reset(token)


class _BarSafeHandler(logging.StreamHandler):
    """A log line written above the open bars rather than through them."""

    def __init__(self, shown: _Shown) -> None:
        super().__init__()
        self.shown = shown

    def emit(self, record: logging.LogRecord) -> None:
        if not self.shown.bars:
            super().emit(record)
            return
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging's own contract: a failing handler reports, never raises
            self.handleError(record)


class Bar:
    """A progress bar on stderr inside a verbose call, else one that shows nothing.

    Made by `bar`. `update` and `update_to` cost a call and a comparison when nothing is shown.
    """

    def __init__(self, shown: Any = None) -> None:
        self._shown = shown  # the tqdm bar, or None

    def update(self, n: int) -> None:
        """Count `n` more units done."""
        if self._shown is not None:
            self._shown.update(n)

    def update_to(self, done: int) -> None:
        """Set the units done so far (a position in a file)."""
        if self._shown is not None and done > self._shown.n:
            self._shown.update(done - self._shown.n)

    def expect(self, total: int) -> None:
        """Set the total, once it is known."""
        if self._shown is not None:
            self._shown.total = total
            self._shown.refresh()

    def close(self) -> None:
        """Draw the bar's last state and leave it on the screen."""
        if self._shown is not None:
            self._shown.close()


def bar(total: int | None, unit: str, desc: str) -> Bar:
    """A progress bar of `total` units (None: a counter with its rate, no ETA).

    Parameters
    ----------
    total : int or None
    unit : {"rows", "B"}
        Rows, shown as 1.2M; or bytes, shown as 1.2GB (powers of 1024).
    desc : str
        The bar's label: the command or call (``"fit"``, ``"predict"``).
    """
    shown = _SHOWN.get()
    if shown is None:
        return Bar()
    from tqdm import tqdm

    # Where stderr is a file rather than a terminal every redraw is kept, so redraw seldom.
    interval = 0.1 if _is_terminal(sys.stderr) else 10.0
    made = tqdm(total=total, desc=desc, unit=" rows" if unit == "rows" else unit,
                unit_scale=True, unit_divisor=1024 if unit == "B" else 1000, file=sys.stderr,
                dynamic_ncols=True, mininterval=interval, leave=True)
    shown.bars.append(made)
    return Bar(made)


@contextlib.contextmanager
def reading(source: Any, desc: str, rows: int | None = None
            ) -> Iterator[tuple[Any, Callable[[Iterable[Any]], Iterator[Any]]]]:
    """`source` made ready for `kmeans_stream.io.iter_batches`, with a bar of its progress.

    One local file is opened here and its position in bytes is the bar's (of the file's size:
    compressed bytes for a gzip file); it reads exactly as the path would. Anything else (a
    folder, a manifest, S3, a stream, an array) gets a bar of rows, of `rows` when known.

    Yields
    ------
    data : object
        What to read: an open binary file, or `source` itself.
    count : callable
        Wraps the iterator of batches read from `data`, moving the bar at each one.
    """
    path = _one_local_file(source)
    if path is None:
        progress = None

        def count(batches: Iterable[Any]) -> Iterator[Any]:
            nonlocal progress
            for batch in batches:
                if progress is None:  # drawn from the first rows: a failing start shows none
                    progress = bar(rows, "rows", desc)
                progress.update(len(batch))
                yield batch

        yield source, count
        if progress is not None:
            progress.close()
        return
    with open(path, "rb") as stream:
        progress = bar(os.fstat(stream.fileno()).st_size, "B", desc)

        def count(batches: Iterable[Any]) -> Iterator[Any]:
            for batch in batches:
                progress.update_to(stream.raw.tell())
                yield batch

        yield stream, count
        progress.close()


def _one_local_file(source: Any) -> str | None:
    """The path of `source` when it names one local file (not a folder, manifest or URI)."""
    from .io.s3 import is_s3_uri

    if not isinstance(source, (str, os.PathLike)):
        return None
    path = os.fspath(source)
    if is_s3_uri(path) or path.endswith(".manifest") or not os.path.isfile(path):
        return None
    return path


def _is_terminal(stream: Any) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
