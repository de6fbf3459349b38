"""A uniform sample of bounded size from a stream of rows (bottom-k sampling)."""

from __future__ import annotations

import numpy as np


class BottomK:
    """At most `size` rows of a stream, uniformly: each row draws a key in [0, 1) from `rng`
    and the rows of the `size` smallest keys stay, in the stream's order. Keys are drawn one
    per row in order, so an array and the same rows streamed in batches give the same sample.

    `add` takes columns of one length (rows, and what goes with them: row numbers, labels);
    `columns` holds the sample's, None before any row.
    """

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size, self.rng = size, rng
        self.keys = np.empty(0)
        self.columns: list[np.ndarray] | None = None
        self.threshold = np.inf  # the largest key kept, once the sample is full

    def add(self, *columns: np.ndarray) -> None:
        keys = self.rng.random(len(columns[0]))
        new = np.flatnonzero(keys < self.threshold)  # only these can enter the sample
        picked = [np.asarray(c)[new] for c in columns]
        self.keys = np.concatenate([self.keys, keys[new]])
        self.columns = picked if self.columns is None else [
            np.concatenate([old, part.astype(old.dtype, copy=False)])
            for old, part in zip(self.columns, picked, strict=True)]
        if len(self.keys) > self.size:
            keep = np.sort(np.argpartition(self.keys, self.size)[:self.size])
            self.keys = self.keys[keep]
            self.columns = [c[keep] for c in self.columns]
            self.threshold = self.keys.max()
