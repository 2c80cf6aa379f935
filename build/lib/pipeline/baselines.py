"""The palettes EM is compared with at the same K: weighted k-means (the kernel's
k-means++ seeding, then Lloyd's loop) and Pillow's median cut, plus EM's own palette
with pixels relabelled by their nearest mean. Every error is
experiment.reconstruction_error; compute() gives one K's numbers for baselines.json."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

import em
from pipeline import experiment

BASELINES_FILE = "baselines.json"
KMEANS_RESTARTS = 3
# Lloyd's loop stops when an iteration lowers the error by less than this fraction
# (its last iterations move the error in the fifth digit).
KMEANS_TOL = 1e-5
# Lloyd's assignment keeps one distance bound per row and group of this many nearby
# centres, in at most MAX_GROUPS groups (the bounds take MAX_GROUPS * 8 bytes a row).
CENTRES_PER_GROUP = 8
MAX_GROUPS = 16


@dataclass(frozen=True)
class KMeansResult:
    """centres (K, D); labels (N,); error: the weighted mean squared distance to the
    nearest centre; history: that error before every iteration (never increases)."""

    centres: np.ndarray
    labels: np.ndarray
    error: float
    n_iter: int
    history: np.ndarray


_EPS = float(np.finfo(np.float64).eps)
# OpenBLAS runs a product of at most this many multiply-adds on one thread: the
# assignment's products are cut to that size (waking threads costs more than it gains).
_ONE_THREAD = 1 << 18


def _squared_distances(columns: np.ndarray, centres: np.ndarray, labels: np.ndarray,
                       rows=slice(None)) -> np.ndarray:
    """||x_n - c_labels[n]||^2 of the given rows: columns (D, N) is X transposed,
    centres (K, D), labels (R,) for the rows -> (R,). Bit for bit the distances of
    em.nearest_centre, (diff * diff).sum(axis=1): NumPy sums fewer than 8 terms in
    order, which the column loop repeats (a longer row goes through that very sum)."""
    if len(columns) >= 8:
        diff = columns[:, rows].T - centres[labels]
        return (diff * diff).sum(axis=1)
    total = None
    for x, c in zip(columns, centres.T):
        diff = x[rows] - c[labels]
        diff *= diff
        total = diff if total is None else total + diff
    return total


class _NearestCentres:
    """The nearest centre of every row, kept from one Lloyd iteration to the next with
    lower bounds (Hamerly 2010, with the centres in groups as in Ding et al. 2015's
    Yinyang k-means): a row keeps its label without a look at the other centres while
    its distance to its own centre (recomputed exactly) stays below a lower bound on
    its distance to every other centre. Each row keeps one bound per group of nearby
    centres, which falls by the farthest any centre of the group moved; half the
    distance from the own centre to the nearest other one, less the row's distance,
    bounds too. The other rows are compared with all centres (small products).

    The labels are those of em.nearest_centre (the nearest centre up to the rounding of
    the expansion ||x||^2 - 2 x.c + ||c||^2): a row's label is decided here only when
    its nearest centre leads the others by more than that rounding can reverse; closer
    calls (ties) take em.nearest_centre's own answer.
    X: (N, D) float64; centres (K, D): the first centres, which fix the groups."""

    def __init__(self, X: np.ndarray, centres: np.ndarray):
        self.X = X
        self.columns = np.ascontiguousarray(X.T)
        self.augmented_t = np.vstack([self.columns, np.ones(len(X))])  # (D + 1, N)
        self.xx = (X * X).sum(axis=1)
        self.x_radius = float(np.sqrt(self.xx.max())) if len(X) else 0.0
        size = max(CENTRES_PER_GROUP, -(-len(centres) // MAX_GROUPS))
        self.members = _centre_groups(centres, size)  # (G, P), -1: no centre
        self.labels = np.zeros(len(X), dtype=np.int64)
        # (G, N): below the distance from every row to every centre of the group but its own
        self.lower = np.full((len(self.members), len(X)), -np.inf)
        self.centres = None
        self.recomputed = 0  # rows compared with all centres, summed over the calls

    def __call__(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """centres (K, D) -> labels (N,) int64, squared distance to the nearest (N,)."""
        rounding, slack = self._rounding(centres)
        old = self.labels
        if self.centres is None:
            sq = None
            rows = np.arange(len(self.X))
        else:
            sq = _squared_distances(self.columns, centres, old)
            rows = np.flatnonzero(self._uncertain(centres, sq, rounding, slack))
        self.recomputed += len(rows)
        labels = old.copy()
        close = self._recompute(rows, centres, labels, rounding, slack)
        if len(close):
            labels[close] = em.nearest_centre(self.X, centres)[0][close]
        if sq is None:
            sq = _squared_distances(self.columns, centres, labels)
        else:
            moved = rows[labels[rows] != old[rows]]
            sq[moved] = _squared_distances(self.columns, centres, labels[moved], moved)
        self.labels, self.centres = labels, centres.copy()
        return labels.copy(), sq

    def _rounding(self, centres):
        """(E, slack): E bounds the rounding of a squared distance ||x - c||^2 as a
        float64 nearest-centre search evaluates it (squared distance units), slack that
        of a distance or bound computed here (distance units). With S = max|x| + max|c|,
        the expansion ||x||^2 - 2 x.c + ||c||^2 rounds by at most about (D + 2) u S^2
        (u = eps / 2), or 16 (D + 2) u S^2 about a shift inside the data: E is 4 times
        that."""
        c_radius = float(np.sqrt((centres * centres).sum(axis=1).max()))
        scale = self.x_radius + c_radius
        return 32 * (self.X.shape[1] + 2) * _EPS * scale * scale, 8 * _EPS * scale

    def _uncertain(self, centres, sq, rounding, slack) -> np.ndarray:
        """Move the lower bounds by the centres' drift; True for the rows whose label
        the bounds cannot confirm: (N,) bool. sq (N,): squared distance to the own
        centre."""
        drift = np.sqrt(((centres - self.centres) ** 2).sum(axis=1))
        group_drift = np.append(drift, 0.0)[self.members].max(axis=1)
        self.lower -= (group_drift + slack)[:, None]
        upper = np.sqrt(sq) + slack
        gaps = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(axis=2))
        np.fill_diagonal(gaps, np.inf)
        half_gap = 0.5 * gaps.min(axis=1) - slack
        bound = np.maximum(self.lower.min(axis=0), 2.0 * half_gap[self.labels] - upper)
        # the true squared distances must differ by more than 2E for the expansion's
        # argmin to agree
        return ~((bound > upper) & ((bound - upper) * (bound + upper) > 2.0 * rounding))

    def _recompute(self, rows, centres, labels, rounding, slack) -> np.ndarray:
        """Nearest centre and lower bounds of the given rows against all centres, in
        blocks; labels[rows] filled. -> the rows too close to a tie to decide (M,)."""
        n_groups, size = self.members.shape
        # [-2 c, ||c||^2] . [x, 1] = ||c||^2 - 2 x.c, the expansion (less ||x||^2), for
        # the centres group by group; an empty place gives +inf
        slots = np.append(centres, np.zeros((1, centres.shape[1])), axis=0)[self.members]
        to_expansion = np.concatenate([-2.0 * slots, (slots * slots).sum(axis=2)[..., None]],
                                      axis=2)
        to_expansion[self.members < 0, -1] = np.inf
        to_expansion = to_expansion.reshape(n_groups * size, -1)
        step = max(1, _ONE_THREAD // to_expansion.size)
        close = []
        for start in range(0, len(rows), step):
            r = rows[start:start + step]
            at = np.arange(len(r))
            g = (to_expansion @ self.augmented_t[:, r]).reshape(n_groups, size, len(r))
            nearest_in_group = g.min(axis=1)  # (G, R)
            group = np.argmin(nearest_in_group, axis=0)
            own = g[group, :, at]  # (R, P): the nearest group's centres
            place = np.argmin(own, axis=1)
            first = own[at, place]
            own[at, place] = np.inf
            nearest_in_group[group, at] = own.min(axis=1)  # the own centre left out
            tie = nearest_in_group.min(axis=0) - first <= 4.0 * rounding
            # a tie's label may be either centre: bound the distance to all of them
            nearest_in_group[:, tie] = first[tie]
            self.lower[:, r] = np.sqrt(np.maximum(
                nearest_in_group + self.xx[r] - 2.0 * rounding, 0.0)) - slack
            labels[r] = self.members[group, place]
            close.append(r[tie])
        return np.concatenate(close) if close else np.empty(0, dtype=np.int64)


def _centre_groups(centres: np.ndarray, size: int) -> np.ndarray:
    """Nearby centres in groups of `size` (the last one or few smaller): the centres are
    split at a multiple of `size` along their widest coordinate, again and again.
    (K, D) -> (G, P) indices into centres, -1 in the places left empty."""
    groups, done = [np.arange(len(centres))], []
    while groups:
        group = groups.pop()
        if len(group) <= size:
            done.append(group)
            continue
        points = centres[group]
        axis = int(np.argmax(points.max(axis=0) - points.min(axis=0)))
        group = group[np.argsort(points[:, axis], kind="stable")]
        half = size * -(-len(group) // (2 * size))
        groups += [group[half:], group[:half]]
    members = np.full((len(done), max(map(len, done))), -1, dtype=np.int64)
    for row, group in zip(members, done):
        row[:len(group)] = group
    return members


def lloyd(X: np.ndarray, w: np.ndarray, centres: np.ndarray, *, tol: float = KMEANS_TOL,
          max_iter: int = 300) -> KMeansResult:
    """Lloyd's loop with sample weights: assign every row to its nearest centre, move
    every centre to the weighted mean of its rows; stop when no label changes or the
    error falls by less than `tol` (relative) in an iteration. A centre left without
    weight moves onto the row that costs most.

    The assignment keeps bounds from one iteration to the next (_NearestCentres) and
    gives em.nearest_centre's labels and distances, so the labels, centres and
    iterations are those of assigning every row with em.nearest_centre; the error is
    summed by np.sum (pairwise, the same on any number of BLAS threads)."""
    X = np.asarray(X, dtype=np.float64)
    centres = np.array(centres, dtype=np.float64)
    k = len(centres)
    nearest = _NearestCentres(X, centres)
    weighted = [w * X[:, j] for j in range(X.shape[1])]
    history, previous = [], None
    for n_iter in range(max_iter + 1):
        labels, sq = nearest(centres)
        history.append(float(np.sum(w * sq) / w.sum()))
        if previous is not None and (np.array_equal(labels, previous)
                                     or history[-2] - history[-1] <= tol * history[-2]):
            break
        if n_iter == max_iter:
            break
        nk = np.bincount(labels, weights=w, minlength=k)
        sums = np.stack([np.bincount(labels, weights=wx, minlength=k) for wx in weighted],
                        axis=1)
        empty = nk <= 0
        centres[~empty] = sums[~empty] / nk[~empty, None]
        if empty.any():
            centres[empty] = X[np.argsort(-(w * sq), kind="stable")[:int(empty.sum())]]
        previous = labels
    return KMeansResult(centres, labels, history[-1], n_iter, np.array(history))


def kmeans(X: np.ndarray, k: int, weights: np.ndarray, *, n_init: int = KMEANS_RESTARTS,
           seed: int = 0) -> KMeansResult:
    """Weighted k-means, best of n_init restarts from the kernel's k-means++ seeding
    (lowest error; the first wins ties). X (N, D), weights (N,)."""
    X = np.asarray(X, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(X),) or (w < 0).any() or not w.sum() > 0:
        raise ValueError("weights must be non-negative, one per row of X, not all zero")
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_init):
        start = em.init_kmeans_plus_plus(X, w, k, rng).means
        result = lloyd(X, w, start)
        if best is None or result.error < best.error:
            best = result
    return best


def median_cut(rgb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's median cut to k colours without dithering: (palette (P, 3) uint8,
    labels (H, W) indices into it)."""
    from PIL import Image

    q = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").quantize(
        colors=k, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    flat = np.array(q.getpalette() or [], dtype=np.uint8)
    return flat[: 3 * (len(flat) // 3)].reshape(-1, 3), np.asarray(q)


def compute(rgb: np.ndarray, colours: np.ndarray, counts: np.ndarray, inverse: np.ndarray,
            mixture: em.Mixture, nearest: np.ndarray, *, seed: int) -> dict:
    """One K's comparison as a JSON-ready dict: k-means, median cut and EM's palette
    relabelled by nearest mean, each with its reconstruction error.

    rgb (H, W, 3) uint8; colours (M, 3) in [0, 1] with counts (M,) and inverse (H*W,)
    from images.distinct_colours; nearest (M,): the nearest of EM's means to each colour."""
    k = mixture.k
    start = time.perf_counter()
    km = kmeans(colours, k, counts, seed=seed)
    km_seconds = time.perf_counter() - start

    start = time.perf_counter()
    palette, mc_labels = median_cut(rgb, k)
    mc_seconds = time.perf_counter() - start
    # median cut labels pixels, not colours; it maps equal colours to equal indices,
    # so any pixel of a colour gives that colour's label.
    a_pixel = np.empty(len(colours), dtype=np.int64)
    a_pixel[inverse] = np.arange(len(inverse))
    mc_colour_labels = mc_labels.reshape(-1)[a_pixel]

    return {
        "k": k,
        "kmeans": {
            "error": experiment.reconstruction_error(colours, counts, km.labels, km.centres),
            "iterations": km.n_iter, "restarts": KMEANS_RESTARTS, "seconds": km_seconds},
        "median_cut": {
            "error": experiment.reconstruction_error(colours, counts, mc_colour_labels,
                                                     palette / 255.0),
            "colours_used": int(len(np.unique(mc_colour_labels))), "seconds": mc_seconds},
        "em_nearest_mean": {
            "error": experiment.reconstruction_error(colours, counts, nearest, mixture.means)},
    }
