"""Where EM starts. `init_kmeans_plus_plus`, fit's default: greedy weighted k-means++
draws (2 + log K candidates per centre, the one that leaves the smallest weighted squared
distance kept, as scikit-learn does), then weighted Lloyd steps and one hard assignment
that gives each component its cluster's weight and spread. `init_random` is the original
study's start. `nearest_centre` is the assignment step, shared with the k-means baseline.
On blocks of rows (em.blocked), only the centres that can be nearest to some row of a
block's box are compared there.
"""

from __future__ import annotations

import math

import numpy as np

from em import blocked
from em.core import QUANTISATION_VARIANCE, Mixture, check_cancel

LLOYD_ITERATIONS = 10  # weighted Lloyd steps after the k-means++ draws


def _nearest(blocks: blocked.Blocks, centres: np.ndarray, distances: bool = True):
    """nearest_centre on prepared samples, centres (K, D) given as c - shift: labels
    and squared distances (N,) (None without `distances`), in block order. In each
    block only the centres that come nearer its box than some centre's farthest
    corner can be nearest to a row."""
    d = centres.shape[1]
    near, far = blocked.box_distances(blocks, centres)
    candidates = near <= far.min(axis=1)[:, None]
    cc, twice = (centres * centres).sum(axis=1), -2.0 * centres

    def one_block(b):
        sl, columns = blocks.slices[b], np.flatnonzero(candidates[b])
        Y = blocks.xa64[sl, :d]
        # ||c||^2 - 2 y.c, in place (scaling by -2 is exact: the same numbers)
        score = Y @ twice[columns].T
        score += cc[columns]
        labels = columns[np.argmin(score, axis=1)]
        if not distances:
            return labels, None
        diff = Y - centres[labels]
        return labels, (diff * diff).sum(axis=1)

    parts = blocks.map(one_block)
    labels = np.concatenate([labels for labels, _ in parts])
    return labels, (np.concatenate([sq for _, sq in parts]) if distances else None)


def nearest_centre(X, centres) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre of every sample and the squared distance to it.

    X: (N, D), centres: (K, D) -> labels (N,) int64, sq_dist (N,) float64. The argmin
    uses the expansion ||x||^2 - 2 x.c + ||c||^2, block by block over the centres that
    can be nearest in the block; the returned distances are recomputed from the
    differences. Ties go to the lowest index.
    """
    X = np.asarray(X, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    # not centred: a row's distances then depend on the row and the centres alone, so
    # equal rows break ties alike whatever else X holds
    blocks = blocked.Blocks(X, np.ones(len(X)), len(centres), shift=np.zeros(X.shape[1]))
    labels = blocks.unsort(_nearest(blocks, centres, distances=False)[0])
    diff = X - centres[labels]
    return labels, (diff * diff).sum(axis=1)


def _greedy_centres(blocks: blocked.Blocks, k: int, rng: np.random.Generator,
                    cancel=None) -> np.ndarray:
    """Greedy k-means++ centres (k, D), as c - shift (see init_kmeans_plus_plus); cancel
    is polled before every draw."""
    xa, w = blocks.xa64, blocks.w
    n, d = xa.shape[0], xa.shape[1] - 2
    n_candidates = 2 + int(math.log(k))
    centres = np.empty((k, d))
    centres[0] = xa[rng.choice(n, p=w / w.sum()), :d]
    closest_sq = ((xa[:, :d] - centres[0]) ** 2).sum(axis=1)
    to_candidates = np.ones((d + 2, n_candidates))  # [y, ||y||^2, 1] -> ||y - c||^2
    candidates = np.zeros(n_candidates, dtype=np.int64)
    # a few runs of rows on the pool, each product small enough for one BLAS thread;
    # a multiple of 4 of them, so that 2 or 4 workers each wait as long (a constant:
    # the runs' partial sums must not depend on the machine's worker count)
    rows = max(256, (blocked.BLOCK_PRODUCT - 1) // ((d + 2) * n_candidates))
    n_runs = -(-n // rows)
    n_runs = n_runs if n_runs == 1 else -(-n_runs // 4) * 4
    runs = [slice(run[0], run[-1] + 1) for run in np.array_split(np.arange(n), n_runs)]

    def shortened(sl):
        """min(D_n^2, ||y_n - c||^2) for a run of rows (rows, candidates), and its
        weighted sum over them (candidates,)."""
        sq = xa[sl] @ to_candidates
        inside = (candidates >= sl.start) & (candidates < sl.stop)
        # exactly 0 at a candidate itself, so that none can be drawn twice
        sq[candidates[inside] - sl.start, np.flatnonzero(inside)] = 0.0
        np.minimum(sq, closest_sq[sl, None], out=sq)
        return sq, np.einsum("n,nc->c", w[sl], sq)

    for j in range(1, k):
        check_cancel(cancel)
        cumulative = np.cumsum(w * closest_sq)
        if not cumulative[-1] > 0:
            raise ValueError(
                f"k (={k}) exceeds the number of distinct samples with positive "
                f"weight ({j}): a mixture cannot have more components than points")
        draws = rng.random(n_candidates) * cumulative[-1]
        candidates[:] = np.minimum(np.searchsorted(cumulative, draws, side="right"), n - 1)
        chosen = xa[candidates, :d]
        to_candidates[:d] = -2.0 * chosen.T
        to_candidates[d + 1] = (chosen * chosen).sum(axis=1)
        parts = (list(blocked.pool().map(shortened, runs)) if len(runs) > 1
                 else [shortened(runs[0])])
        best = int(np.argmin(np.sum([total for _, total in parts], axis=0)))
        centres[j] = chosen[best]
        closest_sq = np.maximum(np.concatenate([sq[:, best] for sq, _ in parts]), 0.0)
    return centres


def kmeans_plus_plus(blocks: blocked.Blocks, k: int, rng: np.random.Generator,
                     var_floor: float, lloyd_iterations: int = LLOYD_ITERATIONS,
                     cancel=None) -> Mixture:
    """init_kmeans_plus_plus on prepared samples; cancel (fit's) is polled before every
    draw and every Lloyd step."""
    Y, w = blocks.xa64[:, :-2], blocks.w
    d = Y.shape[1]
    centres = _greedy_centres(blocks, k, rng, cancel)
    weighted = np.ascontiguousarray((Y * w[:, None]).T)  # (D, N): w_n y_n, by coordinate
    for _ in range(lloyd_iterations):
        check_cancel(cancel)
        labels, _ = _nearest(blocks, centres, distances=False)
        nk = np.bincount(labels, weights=w, minlength=k)
        sums = np.stack([np.bincount(labels, weights=weighted[j], minlength=k)
                         for j in range(d)], axis=1)
        filled = nk > 0
        centres[filled] = sums[filled] / nk[filled, None]
    labels, sq_dist = _nearest(blocks, centres)
    nk = np.bincount(labels, weights=w, minlength=k)
    spread = np.bincount(labels, weights=w * sq_dist, minlength=k) / (d * np.maximum(nk, 1e-300))
    return Mixture(nk / nk.sum(), centres + blocks.shift, np.maximum(spread, var_floor))


def init_kmeans_plus_plus(X, sample_weight, k: int, rng: np.random.Generator,
                          var_floor: float = QUANTISATION_VARIANCE,
                          lloyd_iterations: int = LLOYD_ITERATIONS) -> Mixture:
    """Greedy weighted k-means++, `lloyd_iterations` weighted Lloyd steps (an empty
    cluster keeps its centre), then each sample to its nearest centre: a component's
    weight and variance are its cluster's. The first centre is drawn with probability
    proportional to w_n, each next one from 2 + floor(log k) candidates drawn in
    proportion to w_n D_n^2. Samples with positive weight are taken in fit's order (a
    Z-order curve), so fit(seed=s) starts from init_kmeans_plus_plus(X, w, k,
    default_rng(s)). X: (N, D), sample_weight: (N,) -> Mixture."""
    X = np.asarray(X, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    X, w = X[w > 0], w[w > 0]
    return kmeans_plus_plus(blocked.Blocks(X, w, k), k, rng, var_floor, lloyd_iterations)


def init_random(X, sample_weight, k: int, rng: np.random.Generator) -> Mixture:
    """The original study's start: means at k random samples (drawn with probability
    proportional to weight, without replacement), variances uniform in (0, 1), equal
    weights. X: (N, D), sample_weight: (N,) -> Mixture."""
    X = np.asarray(X, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    positive = np.flatnonzero(w > 0)
    distinct = len(np.unique(X[positive], axis=0))
    if k > distinct:
        raise ValueError(
            f"k (={k}) exceeds the number of distinct samples with positive weight "
            f"({distinct}): a mixture cannot have more components than points")
    idx = rng.choice(positive, size=k, replace=False, p=w[positive] / w[positive].sum())
    variances = rng.uniform(0.0, 1.0, size=k)
    while np.any(variances == 0.0):  # uniform draws are in [0, 1); keep it open
        variances[variances == 0.0] = rng.uniform(0.0, 1.0)
    return Mixture(np.full(k, 1.0 / k), X[idx], variances)
