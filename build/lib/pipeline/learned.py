"""What a fitted mixture says beyond its palette, computed once per K beside the
run: how sure it is of each pixel (entropy of the responsibilities), a sample of the
distinct colours with their components (for a 3-D view), and, at one K, EM in motion
from its start to its fixed point. compute() gives learned.json; maps() the two PNGs."""

from __future__ import annotations

import warnings

import numpy as np

import em

LEARNED_FILE = "learned.json"
ENTROPY_FILE = "entropy.png"        # 8-bit: 0 = certain, 255 = log 2 nats or more
RELABELLED_FILE = "relabelled.png"  # 255 where the MAP label is not the nearest mean
MOTION_K = 8                        # the K whose fit is recorded step by step
CLOUD_SIZE = 3000
SURE = 0.9                          # a pixel is sure of a component from this responsibility


def entropy(resp: np.ndarray) -> np.ndarray:
    """Entropy in nats of each row of probabilities (N, K) -> (N,), with 0 log 0 = 0."""
    r = np.asarray(resp, dtype=np.float64)
    logs = np.log(np.where(r > 0, r, 1.0))
    return -(r * logs).sum(axis=1)


def certainty(mixture: em.Mixture, colours: np.ndarray,
              rows: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    """Entropy of the responsibilities (nats) and the largest responsibility of every
    colour: (M, 3) -> (M,), (M,), computed in blocks of rows so that the (M, K)
    responsibilities of a large image never exist at once."""
    h, top = np.empty(len(colours)), np.empty(len(colours))
    for start in range(0, len(colours), rows):
        resp = em.responsibilities(mixture, colours[start:start + rows])
        h[start:start + len(resp)] = entropy(resp)
        top[start:start + len(resp)] = resp.max(axis=1)
    return h, top


def maps(h: np.ndarray, colour_labels: np.ndarray, nearest: np.ndarray,
         inverse: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The entropy map and the relabelled mask as (H, W) uint8 images: per distinct
    colour (entropy h (M,), labels (M,)), spread to the pixels through inverse (H*W,)."""
    h = np.minimum(h / np.log(2), 1.0)
    entropy_map = np.rint(255 * h).astype(np.uint8)[inverse].reshape(shape)
    mask = np.where(colour_labels != nearest, 255, 0).astype(np.uint8)[inverse].reshape(shape)
    return entropy_map, mask


def cloud(colours: np.ndarray, counts: np.ndarray, colour_labels: np.ndarray,
          seed: int, size: int = CLOUD_SIZE) -> dict:
    """A sample of `size` distinct colours drawn with probability proportional to
    their pixel counts (without replacement), as 8-bit RGB and their MAP labels."""
    rng = np.random.default_rng(seed)
    size = min(size, len(colours))
    idx = rng.choice(len(colours), size=size, replace=False, p=counts / counts.sum())
    return {"rgb": np.rint(colours[idx] * 255).astype(int).tolist(),
            "labels": colour_labels[idx].tolist()}


def motion(colours: np.ndarray, counts: np.ndarray, k: int, *, seed: int, init: str,
           tol: float, max_iter: int, snapshots: int = 6) -> dict:
    """Plain EM from the run's first start, step by step: the mixture at a few
    iterations from the start to the fixed point, and the log-likelihood per pixel
    after every iteration. EM's next step depends only on the current parameters, so
    one iteration at a time from each mixture retraces the plain fit."""
    rng = np.random.default_rng(seed)
    w = np.asarray(counts, dtype=np.float64)
    mixture = (em.init_kmeans_plus_plus(colours, w, k, rng) if init == "kmeans++"
               else em.init_random(colours, w, k, rng))
    states, history = [mixture], [em.log_likelihood(mixture, colours, w) / w.sum()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", em.ConvergenceWarning)
        for _ in range(max_iter):
            step = em.fit(colours, k, sample_weight=w, init=mixture, max_iter=1, tol=tol)
            mixture = step.mixture
            states.append(mixture)
            history.append(step.log_likelihood / w.sum())
            if step.converged:
                break
    last = len(states) - 1
    picks = sorted({0, last, *np.unique(np.geomspace(1, max(last, 1), snapshots - 1)
                                        .round().astype(int)).tolist()})
    return {"k": k, "init": init, "iterations": last,
            "log_likelihood_per_pixel": history,
            "snapshots": [{"iteration": i, "weights": states[i].weights.tolist(),
                           "means": states[i].means.tolist(),
                           "variances": states[i].variances.tolist()} for i in picks]}


def compute(colours: np.ndarray, counts: np.ndarray, h: np.ndarray, top: np.ndarray,
            colour_labels: np.ndarray, nearest: np.ndarray, *, k: int, seed: int) -> dict:
    """One K's certainty summary and colour sample, JSON-ready: mean entropy (nats per
    pixel), the share of pixels with no responsibility of SURE or more, the share above
    log 2, the share whose MAP label is not the nearest mean. h, top: certainty()."""
    share = counts / counts.sum()
    return {
        "k": k,
        "mean_entropy": float(share @ h),
        "uncertain_share": float(share @ (top < SURE)),
        "beyond_log2_share": float(share @ (h > np.log(2))),
        "relabelled_share": float(share @ (colour_labels != nearest)),
        "cloud": cloud(colours, counts, colour_labels, seed),
    }


