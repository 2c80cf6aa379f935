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


@dataclass(frozen=True)
class KMeansResult:
    """centres (K, D); labels (N,); error: the weighted mean squared distance to the
    nearest centre; history: that error before every iteration (never increases)."""

    centres: np.ndarray
    labels: np.ndarray
    error: float
    n_iter: int
    history: np.ndarray


def lloyd(X: np.ndarray, w: np.ndarray, centres: np.ndarray, *, tol: float = KMEANS_TOL,
          max_iter: int = 300) -> KMeansResult:
    """Lloyd's loop with sample weights: assign every row to its nearest centre, move
    every centre to the weighted mean of its rows; stop when no label changes or the
    error falls by less than `tol` (relative) in an iteration. A centre left without
    weight moves onto the row that costs most."""
    centres = np.array(centres, dtype=np.float64)
    k = len(centres)
    history, previous = [], None
    for n_iter in range(max_iter + 1):
        labels, sq = em.nearest_centre(X, centres)
        history.append(float(np.dot(w, sq) / w.sum()))
        if previous is not None and (np.array_equal(labels, previous)
                                     or history[-2] - history[-1] <= tol * history[-2]):
            break
        if n_iter == max_iter:
            break
        nk = np.bincount(labels, weights=w, minlength=k)
        sums = np.stack([np.bincount(labels, weights=w * X[:, j], minlength=k)
                         for j in range(X.shape[1])], axis=1)
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
