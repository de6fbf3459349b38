"""What `verbose` turns on: kmeans_stream's log lines on stderr for the length of one call."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def verbose_logging(verbose: bool | int) -> Iterator[None]:
    """Show kmeans_stream's INFO lines (epochs, reduction trials) on stderr while inside."""
    if not verbose:
        yield
        return
    logger = logging.getLogger("kmeans_stream")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[kmeans_stream] %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
