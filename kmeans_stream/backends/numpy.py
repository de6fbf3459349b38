"""The reference kernels: plain numpy, obvious rather than fast, always there.

Every compute backend provides the same six kernels with the same arguments; the algorithm
(`kmeans_stream.algorithm`) is written once against them, and the tests compare each fast
backend with this one. Random numbers are drawn by the algorithm and handed in, so every backend
consumes the same stream and the same seed gives the same centers.

Arrays: ``X`` is a C-contiguous float32 or float64 ``(n_samples, n_features)``; ``centers`` has
the dtype of ``X``; ``counts`` and ``weights`` are float64.
"""

from __future__ import annotations

import numpy as np

# Rows per distance tile: never an n_samples x K matrix for a whole dataset.
_TILE_ROWS = 4096
# Plain (lazy) k-means++: proposals per step, the last one after a refresh, so always taken; the
# uniforms per step are two per proposal.
PLAIN_PROPOSALS = 4
# Centers chosen since the last refresh, at most (and at most an eighth of the rows).
PLAIN_MAX_PENDING = 1024


class NumpyKernels:
    """The numpy reference implementation of the kernel interface."""

    name = "numpy"

    def assign_labels(self, X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest center of each row.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), IN
        centers : ndarray of shape (n_centers, n_features), IN

        Returns
        -------
        labels : ndarray of shape (n_samples,), intp
        sq_dist : ndarray of shape (n_samples,), float64
            Squared Euclidean distance to that center.
        """
        n = X.shape[0]
        labels = np.empty(n, dtype=np.intp)
        sq_dist = np.empty(n, dtype=np.float64)
        c64 = centers.astype(np.float64)
        c_norms = np.einsum("ij,ij->i", c64, c64)
        for start in range(0, n, _TILE_ROWS):
            tile = _sq_distances(X[start:start + _TILE_ROWS], c64, c_norms)
            best = np.argmin(tile, axis=1)
            labels[start:start + len(best)] = best
            sq_dist[start:start + len(best)] = tile[np.arange(len(best)), best]
        return labels, sq_dist

    def nearest(self, X: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> bool:
        """Nearest center of each row, without distances (the kernel behind predict).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), IN
        centers : ndarray of shape (n_centers, n_features), IN
        labels : ndarray of shape (n_samples,), int32 or int64, OUT

        Returns
        -------
        finite : bool
            False when some row's distances are not finite (NaN or infinity in X).
        """
        total = 0.0
        with np.errstate(invalid="ignore", over="ignore"):
            for start in range(0, X.shape[0], _TILE_ROWS):  # temporaries: one tile's
                found, sq_dist = self.assign_labels(X[start:start + _TILE_ROWS], centers)
                labels[start:start + len(found)] = found
                total += float(sq_dist.sum())
        return bool(np.isfinite(total))

    def transform(self, X: np.ndarray, centers: np.ndarray) -> np.ndarray:
        """Euclidean distance of each row to each center, (n_samples, n_centers), X's dtype."""
        out = np.empty((X.shape[0], centers.shape[0]), dtype=X.dtype)
        c64 = centers.astype(np.float64)
        c_norms = np.einsum("ij,ij->i", c64, c64)
        for start in range(0, X.shape[0], _TILE_ROWS):
            tile = _sq_distances(X[start:start + _TILE_ROWS], c64, c_norms)
            out[start:start + len(tile)] = np.sqrt(tile)
        return out

    def stream_batches(
        self,
        X: np.ndarray,
        batch_size: int,
        centers: np.ndarray,
        counts: np.ndarray,
        half_life: int,
    ) -> None:
        """Run SageMaker's streaming update over `X` cut into mini-batches of `batch_size` rows.

        Per batch of m rows and per center j with m_j new points of mean d_j:
        n_j <- decay * n_j; p_j = m_j / (n_j + m_j); c_j <- (1 - p_j) c_j + p_j d_j;
        n_j <- n_j + m_j, with decay = 2 ** (-m / half_life) (1 when half_life is 0).
        This is the exact running (decayed) mean of the points each center has received.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), IN
        batch_size : int, IN
        centers : ndarray of shape (n_centers, n_features), INOUT
        counts : ndarray of shape (n_centers,), float64, INOUT
        half_life : int, IN
        """
        for start in range(0, X.shape[0], batch_size):
            batch = X[start:start + batch_size]
            labels, _ = self.assign_labels(batch, centers)
            _update_centers(batch, labels, centers, counts, _decay(len(batch), half_life))

    def kmeanspp(
        self, X: np.ndarray, weights: np.ndarray, n_centers: int, uniforms: np.ndarray
    ) -> np.ndarray:
        """Greedy weighted k-means++ seeding; returns the row indices of the chosen centers.

        Each step draws ``uniforms.shape[1]`` candidates with probability proportional to
        weight x squared distance to the nearest chosen center, and keeps the candidate that
        lowers the weighted potential most (scikit-learn's greedy form; one candidate per step
        is plain k-means++). The first center is drawn with probability proportional to weight.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), IN
        weights : ndarray of shape (n_samples,), float64, IN
        n_centers : int, IN
        uniforms : ndarray of shape (n_centers, n_candidates), float64 in [0, 1), IN

        Returns
        -------
        indices : ndarray of shape (n_centers,), intp
        """
        X64 = X.astype(np.float64)
        x_norms = np.einsum("ij,ij->i", X64, X64)
        indices = np.empty(n_centers, dtype=np.intp)
        indices[0] = _draw(np.cumsum(weights), uniforms[0, :1])[0]
        closest = _sq_to_point(X64, x_norms, indices[0])
        for step in range(1, n_centers):
            cumulative = np.cumsum(weights * closest)
            if cumulative[-1] <= 0.0:
                raise ValueError(
                    f"k-means++ found only {step} distinct weighted points for {n_centers} centers"
                )
            candidates = _draw(cumulative, uniforms[step])
            best_potential, best = np.inf, -1
            for cand in candidates:
                trial = np.minimum(closest, _sq_to_point(X64, x_norms, cand))
                potential = float(weights @ trial)
                if potential < best_potential:
                    best_potential, best, best_closest = potential, cand, trial
            indices[step] = best
            closest = best_closest
        return indices

    def kmeanspp_plain(
        self, X: np.ndarray, weights: np.ndarray, n_centers: int, uniforms: np.ndarray
    ) -> np.ndarray:
        """Plain weighted k-means++ (one candidate per step), drawn lazily by rejection.

        Exactly k-means++'s draw, probability proportional to weight x D (D: squared distance to
        the nearest chosen center), without a pass over X per center. D is refreshed for a whole
        group of new centers at once (one pass, a matrix product); in between, a row is proposed
        from the stale D of the last refresh (an upper bound) and accepted with probability
        D_now / D_stale, D_now computed for that row only against the centers chosen since.

        A refresh comes before a proposal when centers are pending and either
        `plain_max_pending` of them are, or more proposals than acceptances were made since the
        last refresh (acceptance below 1/2), and always before a step's last proposal, which is
        then taken. Both backends follow these rules, so they consume the same uniforms.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), IN
        weights : ndarray of shape (n_samples,), float64, IN
        n_centers : int, IN
        uniforms : ndarray of shape (n_centers, 2 * PLAIN_PROPOSALS), float64 in [0, 1), IN
            Step s's proposal r uses uniforms[s, 2r] to draw and uniforms[s, 2r + 1] to accept.

        Returns
        -------
        indices : ndarray of shape (n_centers,), intp
        """
        X64 = X.astype(np.float64)
        max_pending = plain_max_pending(len(X64))
        indices = np.empty(n_centers, dtype=np.intp)
        indices[0] = _draw(np.cumsum(weights), uniforms[0, :1])[0]
        closest = np.full(len(X64), np.inf)
        pending = [int(indices[0])]
        tried = taken = 0
        for step in range(1, n_centers):
            for r in range(PLAIN_PROPOSALS):
                if pending and (len(pending) >= max_pending or tried - taken > taken
                                or r == PLAIN_PROPOSALS - 1 or step == 1):
                    for c in pending:  # the refresh
                        np.minimum(closest, ((X64 - X64[c]) ** 2).sum(axis=1), out=closest)
                    cumulative = np.cumsum(weights * closest)
                    pending, tried, taken = [], 0, 0
                if cumulative[-1] <= 0.0:
                    raise ValueError(f"k-means++ found only {step} distinct weighted points "
                                     f"for {n_centers} centers")
                i = int(_draw(cumulative, uniforms[step, 2 * r:2 * r + 1])[0])
                now = min([closest[i]] + [float(((X64[i] - X64[c]) ** 2).sum()) for c in pending])
                tried += 1
                if uniforms[step, 2 * r + 1] * closest[i] < now:
                    indices[step] = i
                    pending.append(i)
                    taken += 1
                    break
        return indices

    def lloyd(
        self,
        X: np.ndarray,
        weights: np.ndarray,
        centers: np.ndarray,
        max_iter: int,
        tol: float,
    ) -> tuple[np.ndarray, float, int]:
        """Weighted Lloyd from `centers` until the weighted loss changes by at most tol (relative).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), IN
        weights : ndarray of shape (n_samples,), float64, IN
        centers : ndarray of shape (n_centers, n_features), IN (not modified)
        max_iter : int, IN
        tol : float, IN

        Returns
        -------
        centers : ndarray of shape (n_centers, n_features)
        loss : float
            Weighted sum of squared distances of X to the returned centers.
        n_iter : int
        """
        centers = centers.copy()
        labels, sq_dist = self.assign_labels(X, centers)
        loss = float(weights @ sq_dist)
        n_iter = 0
        for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is returned)
            sums, mass = _weighted_sums(X, labels, weights, len(centers))
            filled = mass > 0  # an empty cluster keeps its center
            centers[filled] = sums[filled] / mass[filled, None]
            labels, sq_dist = self.assign_labels(X, centers)
            previous, loss = loss, float(weights @ sq_dist)
            if previous - loss <= tol * previous:
                break
        return centers, loss, n_iter


def plain_max_pending(n_samples: int) -> int:
    """Centers pending between refreshes of plain k-means++: PLAIN_MAX_PENDING, at most n/8."""
    return max(1, min(PLAIN_MAX_PENDING, n_samples // 8))


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


def _decay(n_rows: int, half_life: int) -> float:
    return 2.0 ** (-n_rows / half_life) if half_life > 0 else 1.0


def _weighted_sums(
    X: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, n_centers: int
) -> tuple[np.ndarray, np.ndarray]:
    mass = np.bincount(labels, weights=weights, minlength=n_centers).astype(np.float64)
    sums = np.zeros((n_centers, X.shape[1]), dtype=np.float64)
    w = np.ones(len(X)) if weights is None else weights
    np.add.at(sums, labels, X.astype(np.float64) * w[:, None])
    return sums, mass


def _update_centers(
    batch: np.ndarray,
    labels: np.ndarray,
    centers: np.ndarray,
    counts: np.ndarray,
    decay: float,
) -> None:
    sums, mass = _weighted_sums(batch, labels, None, len(centers))
    counts *= decay
    hit = mass > 0
    share = mass[hit] / (counts[hit] + mass[hit])
    mixed = (1.0 - share)[:, None] * centers[hit] + share[:, None] * (sums[hit] / mass[hit, None])
    centers[hit] = mixed
    counts += mass
