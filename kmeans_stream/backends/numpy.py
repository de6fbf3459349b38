"""The reference kernels: plain numpy, obvious rather than fast, always there.

This is the executable form of the contract in `kmeans_stream.backends.base`: every other
compute backend is tested equal to it on fresh random inputs. Temporaries are numpy's own, one
tile of rows at a time, so its workspace is empty.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import PLAIN_PROPOSALS, decay_factor, each_trial, plain_max_pending

# Rows per distance tile: never an n_samples x K matrix for a whole dataset.
_TILE_ROWS = 4096
# refine: a drop below this share of sum_j m_j ||mean_j||^2 is rounding, not a gain.
REFINE_NOISE = 1e-12


class NumpyKernels:
    """The numpy reference implementation of `kmeans_stream.backends.base.Kernels`."""

    name = "numpy"

    def asarray(self, A: Any, dtype: Any = None) -> np.ndarray:
        """`A` as a C-contiguous numpy array (no copy where it already is one)."""
        return np.ascontiguousarray(A, dtype=dtype)

    def to_numpy(self, A: Any) -> np.ndarray:
        """`A` itself: numpy arrays live on the host."""
        return np.asarray(A)

    def empty(self, shape: tuple[int, ...], dtype: Any, like: Any) -> np.ndarray:
        """An uninitialised numpy array."""
        return np.empty(shape, dtype=dtype)

    def workspace(self, dtype: Any, n_centers: int, n_features: int, max_rows: int) -> None:
        """None: the reference keeps one tile of numpy temporaries at a time."""
        return None

    def assign(self, X: np.ndarray, centers: np.ndarray, labels: np.ndarray,
               sq_dist: np.ndarray | None, workspace: Any = None) -> float:
        """Nearest center of each row (see `Kernels.assign`).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), IN
        centers : ndarray of shape (n_centers, n_features), IN
        labels : ndarray of shape (n_samples,), int32 or intp, OUT
        sq_dist : ndarray of shape (n_samples,), float64, OUT, or None
        workspace : None

        Returns
        -------
        total : float
            Sum of the squared distances: not finite iff a row of X is not.
        """
        c64 = centers.astype(np.float64)
        c_norms = np.einsum("ij,ij->i", c64, c64)
        total = 0.0
        with np.errstate(invalid="ignore", over="ignore"):  # a bad row shows in the total
            for start in range(0, X.shape[0], _TILE_ROWS):
                tile = _sq_distances(X[start:start + _TILE_ROWS], c64, c_norms)
                best = np.argmin(tile, axis=1)
                nearest = tile[np.arange(len(best)), best]
                labels[start:start + len(best)] = best
                if sq_dist is not None:
                    sq_dist[start:start + len(best)] = nearest
                total += float(nearest.sum())
        return total

    def transform(self, X: np.ndarray, centers: np.ndarray, out: np.ndarray) -> None:
        """OUT out (n_samples, n_centers), X's dtype: Euclidean distance to each center."""
        c64 = centers.astype(np.float64)
        c_norms = np.einsum("ij,ij->i", c64, c64)
        with np.errstate(invalid="ignore", over="ignore"):  # a bad row shows in `out`
            for start in range(0, X.shape[0], _TILE_ROWS):
                tile = _sq_distances(X[start:start + _TILE_ROWS], c64, c_norms)
                out[start:start + len(tile)] = np.sqrt(tile)

    def stream_batches(
        self, X: np.ndarray, weights: np.ndarray | None, order: np.ndarray | None,
        batch_size: int, centers: np.ndarray, counts: np.ndarray, half_life: float,
        workspace: Any = None,
    ) -> None:
        """SageMaker's streaming update over X in mini-batches (see `Kernels.stream_batches`).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), IN
        weights : ndarray of shape (n_samples,), float64, IN, or None
        order : ndarray of shape (n_samples,), intp, IN, or None
        batch_size : int, IN
        centers : ndarray of shape (n_centers, n_features), INOUT
        counts : ndarray of shape (n_centers,), float64, INOUT
        half_life : float, IN
        workspace : None
        """
        n_visits = X.shape[0] if order is None else len(order)
        labels = np.empty(min(batch_size, n_visits), dtype=np.intp)
        for start in range(0, n_visits, batch_size):
            rows = slice(start, start + batch_size) if order is None else \
                order[start:start + batch_size]
            batch = X[rows]
            w = None if weights is None else weights[rows]
            self.assign(batch, centers, labels[:len(batch)], None)
            update_centers(batch, w, labels[:len(batch)], centers, counts, half_life)

    def lloyd(
        self, X: np.ndarray, weights: np.ndarray | None, centers: np.ndarray, max_iter: int,
        tol: float, workspace: Any = None,
    ) -> tuple[float, int]:
        """Weighted Lloyd from centers (INOUT) until the weighted loss changes by at most tol.

        Returns
        -------
        loss : float
            Weighted sum of squared distances of X to the returned centers.
        n_iter : int
        """
        labels = np.empty(X.shape[0], dtype=np.intp)
        sq_dist = np.empty(X.shape[0], dtype=np.float64)
        w = np.ones(X.shape[0]) if weights is None else weights
        self.assign(X, centers, labels, sq_dist)
        loss = float(w @ sq_dist)
        n_iter = 0
        for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is returned)
            sums, mass = weighted_sums(X, labels, weights, len(centers))
            filled = mass > 0  # an empty cluster keeps its center
            centers[filled] = sums[filled] / mass[filled, None]
            self.assign(X, centers, labels, sq_dist)
            previous, loss = loss, float(w @ sq_dist)
            if previous - loss <= tol * previous:
                break
        return loss, n_iter

    def refine(
        self, X: np.ndarray, weights: np.ndarray | None, centers: np.ndarray,
        labels: np.ndarray, max_moves: int, tol: float, workspace: Any = None,
    ) -> tuple[float, int]:
        """Lloyd on the data that stops when moving the centers would gain little (see
        `Kernels.refine`).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), IN
        weights : ndarray of shape (n_samples,), float64, IN, or None
        centers : ndarray of shape (n_centers, n_features), INOUT
        labels : ndarray of shape (n_samples,), int32 or intp, OUT
        max_moves : int, IN
        tol : float, IN

        Returns
        -------
        loss : float
            Weighted sum of squared distances to the returned centers.
        moves : int
        """
        moves = 0
        sq_dist = np.empty(min(X.shape[0], _TILE_ROWS), dtype=np.float64)
        while True:
            sums = np.zeros((len(centers), X.shape[1]))
            mass = np.zeros(len(centers))
            loss = 0.0
            for start in range(0, X.shape[0], _TILE_ROWS):
                tile = X[start:start + _TILE_ROWS]
                w = None if weights is None else weights[start:start + _TILE_ROWS]
                found, sq = labels[start:start + len(tile)], sq_dist[:len(tile)]
                self.assign(tile, centers, found, sq)
                loss += float(sq.sum() if w is None else w @ sq)
                tile_sums, tile_mass = weighted_sums(tile, found.astype(np.intp), w,
                                                     len(centers))
                sums += tile_sums
                mass += tile_mass
            filled = mass > 0
            means = sums[filled] / mass[filled, None]
            drop = float((mass[filled] * ((centers[filled] - means) ** 2).sum(axis=1)).sum())
            scale = float((mass[filled] * (means ** 2).sum(axis=1)).sum())
            if moves >= max_moves or drop <= tol * loss or drop <= REFINE_NOISE * scale:
                return loss, moves
            centers[filled] = means
            moves += 1

    def kmeanspp(self, X: np.ndarray, weights: np.ndarray | None, uniforms: np.ndarray,
                 indices: np.ndarray) -> None:
        """Greedy weighted k-means++ seeding (see `Kernels.kmeanspp`).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), IN
        weights : ndarray of shape (n_samples,), float64, IN, or None
        uniforms : ndarray of shape (n_centers, n_candidates), float64 in [0, 1), IN
        indices : ndarray of shape (n_centers,), intp, OUT
        """
        n_centers = len(indices)
        _check_uniforms(uniforms, (n_centers, max(1, uniforms.shape[-1])))
        w = np.ones(X.shape[0]) if weights is None else weights
        X64 = X.astype(np.float64)
        x_norms = np.einsum("ij,ij->i", X64, X64)
        indices[0] = _draw(np.cumsum(w), uniforms[0, :1])[0]
        closest = _sq_to_point(X64, x_norms, indices[0])
        for step in range(1, n_centers):
            cumulative = np.cumsum(w * closest)
            if cumulative[-1] <= 0.0:
                raise too_few_points(step, n_centers)
            best_potential, best = np.inf, -1
            for cand in _draw(cumulative, uniforms[step]):
                trial = np.minimum(closest, _sq_to_point(X64, x_norms, cand))
                potential = float(w @ trial)
                if potential < best_potential:
                    best_potential, best, best_closest = potential, cand, trial
            indices[step] = best
            closest = best_closest

    def kmeanspp_trials(self, X: Any, weights: Any, uniforms: np.ndarray,
                        indices: np.ndarray) -> None:
        """One `kmeanspp` per trial (see `Kernels.kmeanspp_trials`)."""
        each_trial(self, X, weights, uniforms, indices)

    def kmeanspp_plain(self, X: np.ndarray, weights: np.ndarray | None, uniforms: np.ndarray,
                       indices: np.ndarray) -> None:
        """Plain weighted k-means++ (one candidate per step), drawn lazily by rejection.

        Exactly k-means++'s draw, probability proportional to weight x D (D: squared distance to
        the nearest chosen center), without a pass over X per center. D is refreshed for a whole
        group of new centers at once (one pass); in between, a row is proposed from the stale D
        of the last refresh (an upper bound) and accepted with probability D_now / D_stale,
        D_now computed for that row only against the centers chosen since.

        A refresh comes before a proposal when centers are pending and either
        `plain_max_pending` of them are, or more proposals than acceptances were made since the
        last refresh (acceptance below 1/2), and always before a step's last proposal, which is
        then taken. Every backend follows these rules, so all consume the same uniforms.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), IN
        weights : ndarray of shape (n_samples,), float64, IN, or None
        uniforms : ndarray of shape (n_centers, 2 * PLAIN_PROPOSALS), float64 in [0, 1), IN
            Step s's proposal r uses uniforms[s, 2r] to draw and uniforms[s, 2r + 1] to accept.
        indices : ndarray of shape (n_centers,), intp, OUT
        """
        n_centers = len(indices)
        _check_uniforms(uniforms, (n_centers, 2 * PLAIN_PROPOSALS))
        w = np.ones(X.shape[0]) if weights is None else weights
        X64 = X.astype(np.float64)
        max_pending = plain_max_pending(len(X64))
        indices[0] = _draw(np.cumsum(w), uniforms[0, :1])[0]
        closest = np.full(len(X64), np.inf)
        pending = [int(indices[0])]
        tried = taken = 0
        for step in range(1, n_centers):
            for r in range(PLAIN_PROPOSALS):
                if pending and (len(pending) >= max_pending or tried - taken > taken
                                or r == PLAIN_PROPOSALS - 1 or step == 1):
                    for c in pending:  # the refresh
                        np.minimum(closest, ((X64 - X64[c]) ** 2).sum(axis=1), out=closest)
                    cumulative = np.cumsum(w * closest)
                    pending, tried, taken = [], 0, 0
                if cumulative[-1] <= 0.0:
                    raise too_few_points(step, n_centers)
                i = int(_draw(cumulative, uniforms[step, 2 * r:2 * r + 1])[0])
                now = min([closest[i]] + [float(((X64[i] - X64[c]) ** 2).sum()) for c in pending])
                tried += 1
                if uniforms[step, 2 * r + 1] * closest[i] < now:
                    indices[step] = i
                    pending.append(i)
                    taken += 1
                    break


def too_few_points(found: int, n_centers: int) -> ValueError:
    """The seeding kernels' error when the weighted potential reaches 0 (contract text)."""
    return ValueError(
        f"k-means++ found only {found} distinct weighted points for {n_centers} centers"
    )


def _check_uniforms(uniforms: np.ndarray, shape: tuple[int, int]) -> None:
    if uniforms.shape != shape:
        raise ValueError(f"uniforms must have shape {shape}; got {uniforms.shape}.")


def _sq_distances(X: np.ndarray, c64: np.ndarray, c_norms: np.ndarray) -> np.ndarray:
    x64 = X.astype(np.float64)
    sq = np.einsum("ij,ij->i", x64, x64)[:, None] - 2.0 * (x64 @ c64.T) + c_norms[None, :]
    return np.maximum(sq, 0.0, out=sq)


def _sq_to_point(X64: np.ndarray, x_norms: np.ndarray, index: int) -> np.ndarray:
    sq = x_norms - 2.0 * (X64 @ X64[index]) + x_norms[index]
    return np.maximum(sq, 0.0, out=sq)


def _draw(cumulative: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Indices drawn with probability proportional to the increments of `cumulative`."""
    picks = np.searchsorted(cumulative, uniforms * cumulative[-1], side="right")
    return np.minimum(picks, len(cumulative) - 1)


def weighted_sums(
    X: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, n_centers: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per center: the (weighted) sum of its rows, float64 (n_centers, n_features), and their
    (weighted) number, float64 (n_centers,)."""
    mass = np.bincount(labels, weights=weights, minlength=n_centers).astype(np.float64)
    sums = np.zeros((n_centers, X.shape[1]), dtype=np.float64)
    rows = X.astype(np.float64) if weights is None else X.astype(np.float64) * weights[:, None]
    np.add.at(sums, labels, rows)
    return sums, mass


def update_centers(
    batch: np.ndarray, weights: np.ndarray | None, labels: np.ndarray, centers: np.ndarray,
    counts: np.ndarray, half_life: float,
) -> None:
    """The running-mean rule of spec section 0 for one labelled batch; INOUT centers, counts."""
    sums, mass = weighted_sums(batch, labels, weights, len(centers))
    counts *= decay_factor(len(batch) if weights is None else float(weights.sum()), half_life)
    hit = mass > 0
    share = mass[hit] / (counts[hit] + mass[hit])
    mixed = (1.0 - share)[:, None] * centers[hit] + share[:, None] * (sums[hit] / mass[hit, None])
    centers[hit] = mixed
    counts += mass
