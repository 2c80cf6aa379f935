"""Expectation-Maximization for a mixture of isotropic Gaussians, in NumPy.

The model, for samples x in R^D (here: RGB colours, D = 3), with one variance per
component shared by the D coordinates:

    p(x) = sum_k pi_k N(x | mu_k, sigma_k^2 I).

Every step works in the log domain. The expansion ||x - mu||^2 = ||x||^2 - 2 x.mu +
||mu||^2 turns the log-densities of all samples against all components into one
matrix product of the augmented samples [x, ||x||^2, 1] (N, D+2) with a (D+2, K)
coefficient matrix; the same augmented samples, weighted by the responsibilities,
give every sufficient statistic of the M-step in a second product. Samples carry
weights (sample_weight), so a fit on the distinct colours of an image weighted by
their pixel counts is exactly the fit on all pixels.

Samples are ordered along a space-filling curve and processed in blocks of rows
(never an (N, K) array inside fit) on a small thread pool; in each block, components
too far from the block's bounding box to weigh exp(-50) of any row's density are
skipped, so the work follows the live entries. Float64 input is computed in float64
throughout (float32 input: the E-step's product in float32, every sum in float64).
The partition does not depend on the number of threads and partial sums are added
in block order, so results are the same bit for bit whatever the threads. fit
accelerates EM with SQUAREM (safeguarded; accelerate=False for plain EM) and, with
split_merge, searches around its best restart by split-and-merge moves.

Steps: `e_step`, `m_step` (fit runs the same two, block by block), `nearest_centre`,
`init_kmeans_plus_plus`, `init_random`. Entry point: `fit(X, k, ...)`. Queries on a
mixture: `log_likelihood`, `score_samples`, `responsibilities`, `predict`,
`reconstruct`, `bic`, `n_parameters`.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

__all__ = [
    "ConvergenceWarning", "Cancelled", "Mixture", "FitResult", "QUANTISATION_VARIANCE",
    "fit", "e_step", "m_step", "nearest_centre", "init_kmeans_plus_plus", "init_random",
    "log_likelihood", "score_samples", "responsibilities", "predict", "reconstruct",
    "bic", "n_parameters",
]

LOG_2PI = math.log(2.0 * math.pi)

# Default variance floor. 8-bit colours scaled to [0, 1] are rounded to multiples of
# h = 1/255, which adds a uniform error of variance h^2 / 12 to every channel: a
# component cannot honestly claim a smaller spread, and without a floor the
# likelihood grows without bound on a single colour.
QUANTISATION_VARIANCE = (1.0 / 255.0) ** 2 / 12.0

# A component whose total responsibility falls below this fraction of the total
# sample weight has lost all its weight and is re-seeded.
_DEAD_FRACTION = 1e-12

# Multiply-adds of a block's matrix products, rows * K * (D + 2), stay under this:
# OpenBLAS then computes each product on one thread (the blocks run on the kernel's
# own threads; BLAS threads inside them only wait for each other).
_BLOCK_PRODUCT = 1 << 19


def _block_rows(k: int, d: int) -> int:
    """Rows per block: as many as keep the products on one BLAS thread (fewer, larger
    blocks cost less Python), at most 4096 (small blocks fit small boxes, where more
    components are skipped)."""
    return int(np.clip((_BLOCK_PRODUCT - 1) // (max(k, 1) * (d + 2)), 256, 4096))


class ConvergenceWarning(UserWarning):
    """EM stopped at max_iter before the log-likelihood gain fell below tol."""


class Cancelled(Exception):
    """fit's `cancel` callback asked it to stop; no result is returned."""


def _check_cancel(cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled("the fit was cancelled")


@dataclass(frozen=True)
class Mixture:
    """Parameters of a mixture of K isotropic Gaussians in D dimensions.

    weights: (K,) mixing proportions pi_k, summing to 1; means: (K, D);
    variances: (K,) one variance sigma_k^2 per component.
    """

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray

    @property
    def k(self) -> int:
        return self.means.shape[0]

    @property
    def d(self) -> int:
        return self.means.shape[1]


@dataclass(frozen=True)
class FitResult(Mixture):
    """A fitted mixture and how EM got there.

    log_likelihood: total (sample-weighted) log-likelihood of the returned parameters.
    history: (n_iter + 1,) total log-likelihood at the start and after every
    iteration (history[-1] == log_likelihood); n_iter: E+M passes on the path to the
    result (the winning restart, then the kept moves); converged:
    whether the gain per unit of sample weight fell below tol; reseeds: iterations
    at which a component that had lost all its weight was re-seeded (the
    log-likelihood may drop there); total_weight: sum of the sample weights (pixels);
    restarts: (n_init,) final log-likelihood of every restart (the best won);
    moves: iterations at which a split-and-merge move (or a batch of moves) was kept
    (the log-likelihood drops there, then climbs above its best before the move);
    move_trials: the starts tried, kept or not.
    """

    log_likelihood: float = 0.0
    history: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_iter: int = 0
    converged: bool = False
    reseeds: tuple = ()
    total_weight: float = 0.0
    restarts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    moves: tuple = ()
    move_trials: int = 0

    @property
    def mixture(self) -> Mixture:
        return Mixture(self.weights, self.means, self.variances)

    @property
    def mean_log_likelihood(self) -> float:
        """Log-likelihood per unit of sample weight (per pixel for an image)."""
        return self.log_likelihood / self.total_weight


# ------------------------------------------------------------------ prepared samples

def _augment(X: np.ndarray) -> np.ndarray:
    """[x, ||x||^2, 1] for every sample: (N, D) float64  ->  (N, D+2) float64."""
    out = np.empty((X.shape[0], X.shape[1] + 2))
    out[:, :-2] = X
    out[:, -2] = (X * X).sum(axis=1)
    out[:, -1] = 1.0
    return out


def _spatial_order(X: np.ndarray) -> np.ndarray:
    """A permutation of the rows along a Z-order (Morton) curve: (N, D) -> (N,).
    Consecutive rows are then close in space, so a block of rows fits a small box."""
    n, d = X.shape
    bits = max(1, min(10, 63 // d))
    lo, span = X.min(axis=0), np.ptp(X, axis=0)
    cells = ((X - lo) / np.where(span > 0, span, 1.0) * (2 ** bits - 1)).astype(np.int64)
    # every cell index with its bit b moved to bit b * d, looked up once per coordinate
    values, spread = np.arange(2 ** bits, dtype=np.uint64), np.zeros(2 ** bits, np.uint64)
    for bit in range(bits):
        spread |= ((values >> np.uint64(bit)) & np.uint64(1)) << np.uint64(bit * d)
    code = np.zeros(n, dtype=np.uint64)
    for j in range(d):
        code |= spread[cells[:, j]] << np.uint64(j)
    return np.argsort(code, kind="stable")


class _Blocks:
    """Samples prepared once for repeated passes: centred, augmented, reordered along
    a space-filling curve and cut into blocks of rows, each with its bounding box.

    X: (N, D), sample_weight: (N,) float64. Centring on `shift` (default: the weighted
    mean) keeps ||x||^2 small, which limits the rounding of the expansion. `dtype` is
    the precision of the E-step's matrix product (float32 input keeps float32).
    `order` maps block rows back to input rows (unsort); ordered=False keeps the input
    order (for a single pass that prunes nothing, where sorting would cost more).
    """

    def __init__(self, X, sample_weight, k: int, dtype=np.float64, shift=None,
                 block_rows: int | None = None, ordered: bool = True):
        X = np.asarray(X, dtype=np.float64)
        self.shift = (np.average(X, axis=0, weights=sample_weight) if shift is None
                      else shift)
        self.order = _spatial_order(X) if ordered else np.arange(X.shape[0])
        Y = (X[self.order] if ordered else X) - self.shift
        self.xa64 = _augment(Y)  # for the sums of the M-step
        self.xa = self.xa64.astype(dtype, copy=False)  # for the E-step
        self.w = np.asarray(sample_weight, dtype=np.float64)[self.order]
        self.dtype = dtype
        n = X.shape[0]
        rows = block_rows or _block_rows(k, X.shape[1])
        self.slices = [slice(i, min(i + rows, n)) for i in range(0, n, rows)]
        self.lo = np.array([Y[sl].min(axis=0) for sl in self.slices])  # (B, D) boxes
        self.hi = np.array([Y[sl].max(axis=0) for sl in self.slices])

    def unsort(self, values: np.ndarray) -> np.ndarray:
        """Rows in block order -> rows in input order."""
        out = np.empty_like(values)
        out[self.order] = values
        return out

    def map(self, func):
        """[func(b) for every block index b], in block order, computed on the thread
        pool in a few runs of consecutive blocks (one task per run, not per block)."""
        n = len(self.slices)
        if n == 1:
            return [func(0)]
        runs = np.array_split(np.arange(n), min(n, 2 * _WORKERS))
        return [out for run in _pool().map(lambda run: [func(b) for b in run], runs)
                for out in run]

    def log_joint(self, sl: slice, coef: np.ndarray) -> np.ndarray:
        """log pi_k + log N(x_n | mu_k, sigma_k^2 I) (less coef's offset): (rows, K)."""
        return self.xa[sl] @ coef

    def live(self, model: "_LogJoint") -> tuple[np.ndarray, np.ndarray]:
        """Which components can matter to some row of each block, (B, K) bool, and
        whether some live log-joint of the block can fall below _EXP_FLOOR, (B,) bool.

        Over a block's box, component k's log-joint is at most its peak less
        dmin_k^2 / (2 s_k) and at least its peak less dmax_k^2 / (2 s_k) (dmin, dmax:
        nearest and farthest distance from mu_k to the box). A component whose upper
        bound is _NEGLIGIBLE nats under the best lower bound weighs at most
        exp(-_NEGLIGIBLE) of every row's density: it is skipped (responsibility 0)."""
        upper, lowest = self._bounds(model)
        live = upper >= lowest.max(axis=1)[:, None] - _NEGLIGIBLE
        floor = _EXP_FLOOR[self.dtype] + model.offset
        return live, (live & (lowest < floor)).any(axis=1)

    def reaches(self, other: "_LogJoint", model: "_LogJoint") -> np.ndarray:
        """Which components of `other` can weigh exp(-_NEGLIGIBLE) of some row's density
        under `model` in each block, as in live: (B, K') bool."""
        return self._bounds(other)[0] >= self._bounds(model)[1].max(axis=1)[:, None] - _NEGLIGIBLE

    def _bounds(self, model: "_LogJoint") -> tuple[np.ndarray, np.ndarray]:
        """Upper and lower bounds of every component's log-joint over every block's box:
        (B, K), (B, K)."""
        near, far = _box_distances(self, model.means)
        return (model.peak - 0.5 * near / model.variances,
                model.peak - 0.5 * far / model.variances)

    def in_float64(self) -> "_Blocks":
        """These blocks with a float64 E-step (a shallow copy for float32 input)."""
        if self.dtype == np.float64:
            return self
        other = copy.copy(self)
        other.xa, other.dtype = self.xa64, np.float64
        return other


_WORKERS = min(4, os.cpu_count() or 1)
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=_WORKERS)
    return _POOL


def _log_weights(mixture: Mixture) -> np.ndarray:
    """log pi_k: (K,). A weight of exactly 0 gives -inf (that component never wins)."""
    with np.errstate(divide="ignore"):
        return np.log(mixture.weights)


# A component whose log-joint is this many nats under another's over a whole block is
# skipped there: exp(-50) * 256 components < 1e-19 of a row's density.
_NEGLIGIBLE = 50.0


@dataclass(frozen=True)
class _LogJoint:
    """The log-joint of a mixture as a linear map of augmented samples (coef, offset),
    with what the pruning needs: means - shift (K, D), variances and peaks (K,)."""

    coef: np.ndarray
    offset: float
    means: np.ndarray
    variances: np.ndarray
    peak: np.ndarray


def _log_joint(mixture: Mixture, shift: np.ndarray, dtype=np.float64) -> _LogJoint:
    coef, offset, peak = _log_joint_coefficients(mixture, shift, dtype)
    return _LogJoint(coef, offset, mixture.means - shift, mixture.variances, peak)


def _log_joint_coefficients(mixture: Mixture, shift: np.ndarray, dtype=np.float64):
    """(D+2, K) matrix C with [y, ||y||^2, 1] @ C = log pi_k + log N(x | mu_k, s_k I)
    - offset, for y = x - shift, m_k = mu_k - shift, s_k = sigma_k^2:

        y.m_k / s_k - ||y||^2 / (2 s_k) + log pi_k - D/2 log(2 pi s_k) - ||m_k||^2 / (2 s_k).

    offset = max_k (log pi_k - D/2 log(2 pi s_k)) bounds every log-joint from above
    (a density peaks at its mean), so exp(C-product) <= 1 never overflows. Returns
    (C in dtype, offset, the peaks log pi_k - D/2 log(2 pi s_k) (K,))."""
    d = mixture.d
    means = mixture.means - shift
    var = mixture.variances
    peak = _log_weights(mixture) - 0.5 * d * (LOG_2PI + np.log(var))
    offset = float(np.max(peak))
    coef = np.empty((d + 2, mixture.k))
    coef[:d] = (means / var[:, None]).T
    coef[d] = -0.5 / var
    coef[d + 1] = peak - offset - 0.5 * (means * means).sum(axis=1) / var
    return coef.astype(dtype, copy=False), offset, peak


# ------------------------------------------------------------------------- E-step

# Row sums below this are recomputed with the exact row maximum (see _e_step_block).
_TINY_SUM = {np.float64: 1e-200, np.float32: 1e-20}
# exp() of a number below log(smallest normal float) is a subnormal or 0, which NumPy
# computes many times slower: log-joints are raised to this floor first. A row whose
# terms are all that small has a sum below _TINY_SUM and is redone exactly.
_EXP_FLOOR = {t: float(np.log(np.finfo(t).tiny)) + 1.0 for t in (np.float64, np.float32)}


def _e_step_block(blocks: _Blocks, b: int, model: _LogJoint, live: np.ndarray,
                  may_underflow: bool):
    """The E-step on block b: responsibilities by Bayes' rule in the log domain, in
    factored form r_nk = p_nk / row_sum_n, over the live components (L,) indices
    (may_underflow: whether some log-joint can fall below _EXP_FLOOR; _Blocks.live).

    -> p (rows, L) = exp(L_nk - shift_n), row_sum (rows,) float64, log_norm (rows,)
    = log p(x_n) = shift_n + log row_sum_n, where L_nk = log pi_k + log N(x_n | k);
    r_nk = 0 for the other components (_Blocks.live). The log-sum-exp shift is the
    upper bound `offset` (no pass for the row maximum); rows whose terms all
    underflow (samples far from every component) are redone with their exact maximum.
    """
    sl = blocks.slices[b]
    coef = model.coef[:, live]
    p = blocks.log_joint(sl, coef)  # L_nk - offset <= 0
    if may_underflow:
        np.maximum(p, _EXP_FLOOR[blocks.dtype], out=p)
    np.exp(p, out=p)
    row_sum = np.einsum("ij->i", p, dtype=np.float64)  # every sum in float64
    low = np.flatnonzero(row_sum < _TINY_SUM[blocks.dtype])
    if len(low):
        redo = blocks.log_joint(slice(sl.start + low[0], sl.start + low[-1] + 1), coef)
        redo = redo[low - low[0]]
        row_max = redo.max(axis=1)
        redo -= row_max[:, None]
        np.exp(redo, out=redo)
        p[low], row_sum[low] = redo, redo.sum(axis=1, dtype=np.float64)
    log_norm = np.log(row_sum)
    log_norm += model.offset
    if len(low):
        log_norm[low] += row_max
    return p, row_sum, log_norm


def _e_step_all(blocks: _Blocks, mixture: Mixture, normalise: bool = True):
    """_e_step_block over every block: resp (N, K) (or None), log_norm (N,), in the
    input's row order."""
    model = _log_joint(mixture, blocks.shift, blocks.dtype)
    live, may_underflow = blocks.live(model)

    def one_block(b):
        columns = np.flatnonzero(live[b])
        p, row_sum, log_norm = _e_step_block(blocks, b, model, columns, may_underflow[b])
        if not normalise:
            return None, log_norm
        resp = np.zeros((len(row_sum), mixture.k))
        resp[:, columns] = p / row_sum[:, None]
        return resp, log_norm

    parts = blocks.map(one_block)
    resp = blocks.unsort(np.concatenate([r for r, _ in parts])) if normalise else None
    return resp, blocks.unsort(np.concatenate([log_norm for _, log_norm in parts]))


def _query_blocks(mixture: Mixture, X, ordered: bool = True) -> _Blocks:
    """X validated and prepared for the E-step of `mixture` (unit weights)."""
    X = _validate_samples(X, "X", mixture.d)
    return _Blocks(X, np.ones(len(X)), mixture.k, shift=mixture.weights @ mixture.means,
                   ordered=ordered)


def e_step(X, mixture: Mixture) -> tuple[np.ndarray, np.ndarray]:
    """Responsibilities r_nk = p(z_n = k | x_n) and log p(x_n), in the log domain.

    X: (N, D)  ->  resp (N, K) with rows summing to 1, log_norm (N,). The same
    block E-step as fit's; here the (N, K) responsibilities are materialised.
    """
    return _e_step_all(_query_blocks(mixture, X), mixture)


# ------------------------------------------------------------------------- M-step

def _statistics(blocks: _Blocks, sl: slice, p: np.ndarray, row_sum: np.ndarray):
    """Weighted sufficient statistics of one block: (K, D+2) float64 with columns
    [sum r w y, sum r w ||y||^2, sum r w] (y = x - shift), for r = p / row_sum.
    w / row_sum is folded into the (rows, D+2) samples, not the (rows, K) block."""
    scaled = blocks.xa64[sl] * (blocks.w[sl] / row_sum)[:, None]
    return p.T.astype(np.float64, copy=False) @ scaled


def _mixture_from_statistics(stats: np.ndarray, total_weight: float, var_floor: float,
                             shift: np.ndarray) -> tuple[Mixture, np.ndarray]:
    """The closed-form M-step from statistics (K, D+2) measured from `shift`:

        N_k = sum r w,  pi_k = N_k / sum w,  mu_k = sum r w x / N_k,
        sigma_k^2 = sum r w ||x - mu_k||^2 / (D N_k)  (floored).

    Returns the mixture and a (K,) mask of components whose weight vanished (their
    means and variances are placeholders)."""
    d = stats.shape[1] - 2
    nk = stats[:, d + 1]
    dead = nk <= _DEAD_FRACTION * total_weight
    safe_nk = np.where(dead, 1.0, nk)
    means = stats[:, :d] / safe_nk[:, None]
    # sigma^2 = (E_k||y||^2 - ||E_k y||^2) / D: a weighted variance, non-negative up
    # to rounding (small because y is centred); the floor bounds it.
    variances = (stats[:, d] / safe_nk - (means * means).sum(axis=1)) / d
    variances = np.maximum(variances, var_floor)
    return Mixture(nk / total_weight, means + shift, variances), dead


def m_step(X, resp, sample_weight=None, var_floor: float = QUANTISATION_VARIANCE) -> Mixture:
    """Closed-form maximiser of Q(theta, theta_old) given responsibilities.

    X: (N, D), resp: (N, K), sample_weight: (N,) or None (all ones)  ->  Mixture with
    pi_k = N_k / sum w, mu_k = sum w r x / N_k, sigma_k^2 = sum w r ||x - mu_k||^2 /
    (D N_k) floored at var_floor, where N_k = sum_n w_n r_nk.
    """
    X = _validate_samples(X, "X")
    w = _validate_sample_weight(sample_weight, len(X))
    resp = np.asarray(resp, dtype=np.float64)
    if resp.ndim != 2 or resp.shape[0] != len(X):
        raise ValueError(f"resp must have shape ({len(X)}, K), got {resp.shape}")
    shift = np.average(X, axis=0, weights=w)  # centred, as in fit, for the rounding
    stats = resp.T @ (_augment(np.asarray(X, dtype=np.float64) - shift) * w[:, None])
    return _mixture_from_statistics(stats, float(w.sum()), var_floor, shift)[0]


# Largest SQUAREM step at the start, and its growth while extrapolations succeed.
_STEP_MAX0, _STEP_GROWTH = 4.0, 4.0

# ------------------------------------------------------------------ one EM iteration

def _e_pass(blocks: _Blocks, mixture: Mixture):
    """E-step of every block, accumulating the M-step's statistics on the way.

    -> (total log-likelihood of `mixture`, stats (K, D+2), index of the sample the
    mixture explains worst)."""
    model = _log_joint(mixture, blocks.shift, blocks.dtype)
    live, may_underflow = blocks.live(model)

    def one_block(b):
        sl, columns = blocks.slices[b], np.flatnonzero(live[b])
        p, row_sum, log_norm = _e_step_block(blocks, b, model, columns, may_underflow[b])
        worst = int(np.argmin(log_norm))
        stats = np.zeros((mixture.k, mixture.d + 2))
        stats[columns] = _statistics(blocks, sl, p, row_sum)
        return float(blocks.w[sl] @ log_norm), stats, float(log_norm[worst]), sl.start + worst

    parts = blocks.map(one_block)
    total = math.fsum(part[0] for part in parts)
    stats = np.sum([part[1] for part in parts], axis=0)
    worst = min(parts, key=lambda part: part[2])[3]
    return total, stats, worst


def _reseed(blocks: _Blocks, mixture: Mixture, dead: np.ndarray, worst: int,
            total_weight: float) -> Mixture:
    """Move the first dead component onto the worst-explained sample.

    Only one: two components re-seeded on the same sample would stay identical
    forever. Other dead ones keep weight 0 and are re-seeded at later iterations."""
    weights, means, variances = (mixture.weights.copy(), mixture.means.copy(),
                                 mixture.variances.copy())
    live = ~dead
    first = np.flatnonzero(dead)[0]
    weights[dead] = 0.0
    means[first] = blocks.xa64[worst, :-2] + blocks.shift
    variances[first] = (np.average(variances[live], weights=weights[live]) if live.any()
                        else variances.max())
    weights[first] = blocks.w[worst] / total_weight
    return Mixture(weights / weights.sum(), means, variances)


# ------------------------------------------------------------------ initialisation

def _box_distances(blocks: _Blocks, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances from every point (P, D) to the nearest and to the farthest
    corner of every block's box: (B, P), (B, P)."""
    lo, hi, points = blocks.lo[:, None, :], blocks.hi[:, None, :], points[None]
    near = np.maximum(np.maximum(lo - points, points - hi), 0.0)
    far = np.maximum(np.abs(points - lo), np.abs(points - hi))
    return (near * near).sum(axis=2), (far * far).sum(axis=2)


def _nearest(blocks: _Blocks, centres: np.ndarray, distances: bool = True):
    """nearest_centre on prepared samples, centres (K, D) given as c - shift: labels
    and squared distances (N,) (None without `distances`), in block order. In each
    block only the centres that come nearer its box than some centre's farthest
    corner can be nearest to a row."""
    d = centres.shape[1]
    near, far = _box_distances(blocks, centres)
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

    X: (N, D), centres: (K, D)  ->  labels (N,) int64, sq_dist (N,) float64. The
    argmin uses the expansion ||x||^2 - 2 x.c + ||c||^2, block by block over the
    centres that can be nearest in the block; the returned distances are recomputed
    from the differences. Ties go to the lowest index.
    """
    X = np.asarray(X, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    # not centred: a row's distances then depend on the row and the centres alone, so
    # equal rows break ties alike whatever else X holds
    blocks = _Blocks(X, np.ones(len(X)), len(centres), shift=np.zeros(X.shape[1]))
    labels = blocks.unsort(_nearest(blocks, centres, distances=False)[0])
    diff = X - centres[labels]
    return labels, (diff * diff).sum(axis=1)


def _greedy_centres(blocks: _Blocks, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ centres (k, D), as c - shift (see init_kmeans_plus_plus)."""
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
    rows = max(256, (_BLOCK_PRODUCT - 1) // ((d + 2) * n_candidates))
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
        parts = list(_pool().map(shortened, runs)) if len(runs) > 1 else [shortened(runs[0])]
        best = int(np.argmin(np.sum([total for _, total in parts], axis=0)))
        centres[j] = chosen[best]
        closest_sq = np.maximum(np.concatenate([sq[:, best] for sq, _ in parts]), 0.0)
    return centres


_LLOYD_ITERATIONS = 10  # weighted Lloyd steps after the k-means++ draws


def _init_kmeans_plus_plus(blocks: _Blocks, k: int, rng: np.random.Generator,
                           var_floor: float, lloyd_iterations: int = _LLOYD_ITERATIONS
                           ) -> Mixture:
    """init_kmeans_plus_plus on prepared samples."""
    Y, w = blocks.xa64[:, :-2], blocks.w
    d = Y.shape[1]
    centres = _greedy_centres(blocks, k, rng)
    weighted = np.ascontiguousarray((Y * w[:, None]).T)  # (D, N): w_n y_n, by coordinate
    for _ in range(lloyd_iterations):
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
                          lloyd_iterations: int = _LLOYD_ITERATIONS) -> Mixture:
    """Greedy k-means++ seeding with sample weights, a few Lloyd iterations, then one
    hard assignment.

    The first centre is a sample drawn with probability proportional to w_n. For
    each next centre, 2 + floor(log k) candidates are drawn with probability
    proportional to w_n D_n^2 (D_n: distance to the nearest centre so far) and the
    one that leaves the smallest sum_n w_n D_n^2 is kept (as scikit-learn does: a
    single draw too often lands two centres in one cluster). Then `lloyd_iterations`
    weighted Lloyd steps (centre <- weighted mean of its samples; an empty cluster
    keeps its centre) move the centres off the sampled colours into their clusters,
    as scikit-learn's k-means start does. Each sample then goes to its nearest centre;
    a component's weight and variance are its cluster's. The samples with positive
    weight are taken in fit's order (a space-filling curve), so fit(seed=s) starts
    from init_kmeans_plus_plus(X, w, k, default_rng(s)).
    X: (N, D), sample_weight: (N,)  ->  Mixture.
    """
    X = np.asarray(X, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    X, w = X[w > 0], w[w > 0]
    return _init_kmeans_plus_plus(_Blocks(X, w, k), k, rng, var_floor, lloyd_iterations)


def init_random(X, sample_weight, k: int, rng: np.random.Generator) -> Mixture:
    """The original study's start: means at k random samples (drawn with probability
    proportional to weight, without replacement), variances uniform in (0, 1),
    equal weights.  X: (N, D), sample_weight: (N,)  ->  Mixture."""
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


# --------------------------------------------------------------------------- fit

def fit(X, k, *, sample_weight=None, init="kmeans++", n_init: int = 1, tol: float = 1e-5,
        max_iter: int = 1000, seed: int = 0, var_floor: float = QUANTISATION_VARIANCE,
        block_rows: int | None = None, accelerate: bool = True,
        split_merge: int = 0, cancel=None) -> FitResult:
    """Fit a mixture of k isotropic Gaussians to X by EM.

    X: (N, D) samples (float32 input keeps a float32 E-step, sums in float64);
    k: components, an integer >= 1; sample_weight: (N,) non-negative weights (e.g.
    pixel counts of distinct colours), None for ones, weight-0 samples are ignored;
    init: "kmeans++", "random" (the original study's start) or explicit parameters
    (a Mixture or a (weights, means, variances) tuple, run once); n_init: restarts,
    the best final log-likelihood wins; tol: stop when the gain per unit of sample
    weight falls below it; max_iter: at most this many iterations (then a
    ConvergenceWarning); seed: of numpy.random.default_rng, the only randomness;
    var_floor: smallest variance; block_rows: rows per block (None: from k; results
    differ across block sizes only by rounding, never across thread counts);
    accelerate: SQUAREM extrapolation between EM steps (False: plain EM; both stop
    at the same fixed point); split_merge: after the restarts, search around the best
    fit by split-and-merge moves: each round tries a batch of disjoint moves predicted
    to gain, then this many of the best-ranked moves one at a time (0: none; _refine);
    cancel: None or a callable polled before every EM iteration and every start tried;
    when it returns True, fit raises Cancelled (an interactive caller's newer request).
    """
    X, w, k, dtype = _validate(X, k, sample_weight, tol, max_iter, n_init, var_floor,
                               seed, block_rows, accelerate, split_merge, cancel)
    if not w.all():
        # A weight-0 sample adds nothing, but it may be the worst-explained one: a
        # component re-seeded there would die and be re-seeded there forever.
        X, w = X[w > 0], w[w > 0]
    total_weight = float(w.sum())
    explicit = not isinstance(init, str)
    if explicit:
        start = _validate_init(init, k, X.shape[1])
        n_init = 1
    elif init not in ("kmeans++", "random"):
        raise ValueError(f"init must be 'kmeans++', 'random' or initial parameters, "
                         f"got {init!r}")
    rng = np.random.default_rng(seed)
    X64 = np.asarray(X, dtype=np.float64)
    blocks = _Blocks(X64, w, k, dtype, block_rows=block_rows)

    best, finals = None, []
    for _ in range(n_init):
        _check_cancel(cancel)
        if not explicit:
            start = (_init_kmeans_plus_plus(blocks, k, rng, var_floor)
                     if init == "kmeans++" else init_random(X64, w, k, rng))
        result = _run_em(blocks, start, total_weight, tol, max_iter, var_floor,
                         bool(accelerate), cancel)
        finals.append(result.log_likelihood)
        if best is None or result.log_likelihood > best.log_likelihood:
            best = result
    best = replace(best, restarts=np.array(finals))
    if split_merge and k >= 3:
        best = _refine(blocks, best, total_weight, tol, max_iter, var_floor,
                       bool(accelerate), split_merge, cancel)
    if not best.converged:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations (last gain per "
            f"sample {np.diff(best.history)[-1] / total_weight:.3g}, tol={tol:g}); "
            f"raise max_iter or tol", ConvergenceWarning, stacklevel=2)
    return best


def _run_em(blocks: _Blocks, mixture: Mixture, total_weight: float, tol: float,
            max_iter: int, var_floor: float, accelerate: bool, cancel=None) -> FitResult:
    """EM from one start until an EM step gains less than tol per unit weight.

    An iteration is one E-step (which also scores its parameters) after an M-step.
    With `accelerate`, once an EM step theta0 -> theta1 has been scored, the M-step's
    theta2 is replaced by a SQUAREM extrapolation from the three (_extrapolate). It
    is kept if it scores at least theta1 (the history never decreases), else theta2
    is scored as plain EM would have (the failed trial costs one iteration).
    Stopping is judged on plain EM steps only, so the fixed point is EM's."""
    ll, stats, worst = _e_pass(blocks, mixture)
    history, reseeds, converged = [ll], [], False
    previous, step_max = None, _STEP_MAX0  # previous: mixture was EM's step from it
    jump = 0.0  # gain of an extrapolation just accepted
    n_iter = 0
    while n_iter < max_iter:
        _check_cancel(cancel)
        n_iter += 1
        step, dead = _mixture_from_statistics(stats, total_weight, var_floor, blocks.shift)
        if dead.any():
            step = _reseed(blocks, step, dead, worst, total_weight)
            reseeds.append(n_iter)
        elif accelerate and previous is not None and n_iter < max_iter:
            trial, alpha = _extrapolate(previous, mixture, step, step_max, var_floor)
            step_max *= _STEP_GROWTH if alpha == -step_max else 1.0
            if trial is not None:
                trial_ll, trial_stats, trial_worst = _e_pass(blocks, trial)
                if trial_ll >= ll:
                    jump = trial_ll - ll
                    mixture, ll, stats, worst = trial, trial_ll, trial_stats, trial_worst
                    history.append(ll)
                    previous = None
                    continue
                step_max = max(_STEP_MAX0, step_max / _STEP_GROWTH)
                history.append(ll)
                n_iter += 1
        previous, mixture = (None if dead.any() else mixture), step
        ll, stats, worst = _e_pass(blocks, mixture)
        history.append(ll)
        if not dead.any() and max(abs(history[-1] - history[-2]), jump) < tol * total_weight:
            converged = True
            break
        jump = 0.0
    return FitResult(mixture.weights, mixture.means, mixture.variances,
                     log_likelihood=ll, history=np.array(history), n_iter=n_iter,
                     converged=converged, reseeds=tuple(reseeds),
                     total_weight=total_weight)


# A split-and-merge move is kept when it gains more than this per unit of sample weight.
_MOVE_GAIN = 1e-3
# Each component may merge with its few nearest others (by ||mu_i - mu_j||^2 / (s_i + s_j)).
_MERGE_NEIGHBOURS = 3
# EM iterations of the two halves of every component when predicting a split's gain.
_SPLIT_ITERATIONS = 4


def _exp(x: np.ndarray) -> np.ndarray:
    """exp(x), in place, without subnormals (_EXP_FLOOR)."""
    np.maximum(x, _EXP_FLOOR[np.float64], out=x)
    return np.exp(x, out=x)


def _merged(mixture: Mixture, pairs: np.ndarray) -> Mixture:
    """Each pair (P, 2) of components as one with the pair's weight, mean and variance
    (moment matching): P components, weights not normalised."""
    w, mu, var = mixture.weights, mixture.means, mixture.variances
    i, j = pairs[:, 0], pairs[:, 1]
    weight = w[i] + w[j]
    mean = (w[i, None] * mu[i] + w[j, None] * mu[j]) / weight[:, None]
    spread = [var[m] + ((mu[m] - mean) ** 2).sum(axis=1) / mixture.d for m in (i, j)]
    return Mixture(weight, mean, (w[i] * spread[0] + w[j] * spread[1]) / weight)


def _move_gains(blocks: _Blocks, mixture: Mixture, var_floor: float):
    """Predicted changes of the log-likelihood: of merging each candidate pair, and of
    splitting each component in two, with the others held fixed.

    Both are the changes of the log-likelihood (up to the pruning's exp(-50), and to
    rounding where the replaced components carry all but 1e-16 of a row's density): a
    merge's is sum_n w_n log(1 - r_ni - r_nj + pi_m N_m(x_n) / p(x_n)). A split's
    halves start 0.8 standard deviations either side of the mean along the
    component's principal axis and take _SPLIT_ITERATIONS EM steps on its share
    r_nk w_n of the samples (Ueda et al.'s partial EM, all components at once); its
    gain is then sum_n w_n log(1 - r_nk + halves / p(x_n)). In float64 whatever the
    input. -> pairs (P, 2), merge changes (P,), halves (a Mixture of 2K components,
    k's at 2k and 2k+1), split gains (K,)."""
    blocks = blocks.in_float64()
    k, d = mixture.k, mixture.d
    shift = blocks.shift
    closeness = (((mixture.means[:, None] - mixture.means[None]) ** 2).sum(axis=2)
                 / (mixture.variances[:, None] + mixture.variances[None]))
    np.fill_diagonal(closeness, np.inf)
    nearest = np.argsort(closeness, axis=1, kind="stable")[:, :min(_MERGE_NEIGHBOURS, k - 1)]
    pairs = np.unique(np.sort(np.stack([np.repeat(np.arange(k), nearest.shape[1]),
                                        nearest.ravel()], axis=1), axis=1), axis=0)
    pairs = pairs[mixture.weights[pairs].sum(axis=1) > 0]  # two without weight: no merge
    model = _log_joint(mixture, shift)
    live, may_underflow = blocks.live(model)
    merged = _log_joint(_merged(mixture, pairs), shift)
    # a pair matters in a block where one of it, or the merged component, can
    pair_live = live[:, pairs[:, 0]] | live[:, pairs[:, 1]] | blocks.reaches(merged, model)

    def responsibilities(b, columns):
        """Responsibilities of the components `columns` (rows, C), 0 where they are not
        live (_Blocks.live), and log p(x_n) (rows,)."""
        live_columns = np.flatnonzero(live[b])
        p, row_sum, log_norm = _e_step_block(blocks, b, model, live_columns, may_underflow[b])
        resp = np.zeros((len(log_norm), len(columns)))
        inside = live[b, columns]
        resp[:, inside] = p[:, np.searchsorted(live_columns, columns[inside])] / row_sum[:, None]
        return resp, log_norm

    def changed_log_likelihood(sl, log_norm, replaced, added):
        """sum_n w_n log(1 - replaced_n + exp(added_n - log p(x_n))) (added: log-joints,
        (rows, C)). Where the new terms outweigh p(x_n), or the replaced ones carried
        all of it, in the log domain (no overflow, no floor on exp)."""
        kept = np.maximum(1.0 - replaced, 0.0)
        new = added - log_norm[:, None]
        rare = (new > 0.0) | (kept < 1e-300)
        change = np.log(kept + _exp(np.where(rare, 0.0, new)))
        if rare.any():
            with np.errstate(divide="ignore"):
                change[rare] = np.logaddexp(np.log(kept[rare]), new[rare])
        return blocks.w[sl] @ change

    def first_pass(b):
        """Merge changes (P,) and the moments of every component's share on block b."""
        sl = blocks.slices[b]
        resp, log_norm = responsibilities(b, np.arange(k))
        merge = np.zeros(len(pairs))
        some = np.flatnonzero(pair_live[b])  # elsewhere the move changes nothing
        added = blocks.xa64[sl] @ merged.coef[:, some] + merged.offset
        merge[some] = changed_log_likelihood(sl, log_norm, resp[:, pairs[some, 0]]
                                             + resp[:, pairs[some, 1]], added)
        y = blocks.xa64[sl]  # [y, ||y||^2, 1]
        terms = np.concatenate([(y[:, :d, None] * y[:, None, :d]).reshape(len(y), d * d),
                                y[:, :d], y[:, d + 1:]], axis=1)
        return merge, (resp * blocks.w[sl, None]).T @ terms

    parts = blocks.map(first_pass)
    merge = np.sum([part[0] for part in parts], axis=0)
    # each component's share: sum r w y y^T (K, D, D), sum r w y (K, D), sum r w (K,)
    moments = np.sum([part[1] for part in parts], axis=0)
    nk = np.maximum(moments[:, -1], 1e-300)
    centre = moments[:, d * d:d * d + d] / nk[:, None]
    covariance = (moments[:, :d * d].reshape(k, d, d) / nk[:, None, None]
                  - centre[:, :, None] * centre[:, None, :])
    values, vectors = np.linalg.eigh(covariance)
    axis = vectors[:, :, -1]
    # an eigenvector's sign is LAPACK's choice: fix it, so that the halves do not swap
    axis = axis * np.sign(axis[np.arange(k), np.argmax(np.abs(axis), axis=1)])[:, None]
    axis *= np.sqrt(np.maximum(values[:, -1], 0.0))[:, None]
    halves = Mixture(np.repeat(mixture.weights / 2.0, 2),
                     np.stack([mixture.means - 0.8 * axis, mixture.means + 0.8 * axis],
                              axis=1).reshape(2 * k, d),
                     np.repeat(mixture.variances, 2))

    def halves_pass(b):
        """The split gains (K,) of `halves` and their EM statistics (2K, D+2) on block b."""
        sl = blocks.slices[b]
        columns = np.flatnonzero(relevant[b])
        resp, log_norm = responsibilities(b, columns)
        first = blocks.xa64[sl] @ model2.coef[:, 2 * columns] + model2.offset
        second = blocks.xa64[sl] @ model2.coef[:, 2 * columns + 1] + model2.offset
        log_sum = np.maximum(first, second)
        log_sum += np.log1p(_exp(-np.abs(first - second)))
        gains, stats = np.zeros(k), np.zeros((2 * k, d + 2))
        gains[columns] = changed_log_likelihood(sl, log_norm, resp, log_sum)
        resp *= blocks.w[sl, None]
        share = _exp(first - log_sum)  # of the first half, within the component
        share *= resp
        y = blocks.xa64[sl]
        stats[2 * columns] = share.T @ y
        stats[2 * columns + 1] = (resp - share).T @ y
        return gains, stats

    total_weight = float(blocks.w.sum())
    for iteration in range(_SPLIT_ITERATIONS + 1):
        model2 = _log_joint(halves, shift)
        reached = blocks.reaches(model2, model)
        relevant = live | reached[:, 0::2] | reached[:, 1::2]
        parts = blocks.map(halves_pass)
        gains = np.sum([part[0] for part in parts], axis=0)
        if iteration == _SPLIT_ITERATIONS:
            return pairs, merge, halves, gains
        stats = np.sum([part[1] for part in parts], axis=0)
        fitted, dead = _mixture_from_statistics(stats, total_weight, var_floor, shift)
        # a half that lost its weight (under 1e-12 of the total) keeps its place
        halves = Mixture(fitted.weights, np.where(dead[:, None], halves.means, fitted.means),
                         np.where(dead, halves.variances, fitted.variances))


def _ranked_moves(pairs, merge, gains) -> np.ndarray:
    """Every move (split s, merged pair p), s not in pair p, by decreasing predicted
    gain gains[s] + merge[p] (_move_gains): (M, 3) float rows (gain, s, p)."""
    score = gains[:, None] + merge[None, :]  # (K, P)
    score[pairs[:, 0], np.arange(len(pairs))] = -np.inf
    score[pairs[:, 1], np.arange(len(pairs))] = -np.inf
    order = np.argsort(-score, axis=None, kind="stable")
    order = order[np.isfinite(score.ravel()[order])]
    s, p = np.unravel_index(order, score.shape)
    return np.stack([score.ravel()[order], s, p], axis=1)


def _batch(ranked: np.ndarray, pairs: np.ndarray, size: int) -> np.ndarray:
    """The best-ranked moves predicted to gain that touch disjoint components, at most
    `size` of them: rows of `ranked`."""
    chosen, used = [], set()
    for row, (gain, s, p) in enumerate(ranked):
        if gain <= 0 or len(chosen) == size:
            break
        touched = {int(s), *pairs[int(p)].tolist()}
        if not touched & used:
            chosen.append(row)
            used |= touched
    return ranked[chosen]


def _moved(mixture: Mixture, moves: np.ndarray, pairs, halves) -> Mixture:
    """The mixture after moves (rows (gain, s, p) touching disjoint components): s keeps
    one of its halves, pair p's first component becomes the merged one, its second the
    other half of s."""
    merged = _merged(mixture, pairs)
    weights, means, variances = (mixture.weights.copy(), mixture.means.copy(),
                                 mixture.variances.copy())
    for s, p in moves[:, 1:].astype(int):
        (i, j), (a, b) = pairs[p], (2 * s, 2 * s + 1)
        weights[[i, s, j]] = merged.weights[p], halves.weights[a], halves.weights[b]
        means[[i, s, j]] = merged.means[p], halves.means[a], halves.means[b]
        variances[[i, s, j]] = merged.variances[p], halves.variances[a], halves.variances[b]
    return Mixture(weights / weights.sum(), means, variances)


# A round's batch holds at most K // _BATCH_SHARE moves.
_BATCH_SHARE = 4


def _refine(blocks: _Blocks, best: FitResult, total_weight: float, tol: float,
            max_iter: int, var_floor: float, accelerate: bool, tries: int,
            cancel=None) -> FitResult:
    """Split-and-merge search from a converged fit (after Ueda et al., 2000). EM seldom
    leaves a basin in which one component covers two clusters while two others share
    one. The moves (split one component, merge a pair of others) are ranked by their
    predicted gain (_move_gains). Each round, EM runs first from a batch of them, when
    two or more moves on disjoint components are predicted to gain (_batch), then from
    the `tries` best-ranked moves one at a time; the first start whose fit gains more
    than _MOVE_GAIN per unit weight is kept and the next round ranks again from it. It
    stops when none does. The history runs on through the kept moves."""
    restarts, history, reseeds, moves = best.restarts, list(best.history), list(best.reseeds), []
    trials = 0
    while True:
        pairs, merge, halves, gains = _move_gains(blocks, best, var_floor)
        ranked = _ranked_moves(pairs, merge, gains)
        batch = _batch(ranked, pairs, best.k // _BATCH_SHARE)
        starts = ([batch] if len(batch) > 1 else []) + list(ranked[:tries, None])
        for chosen in starts:
            _check_cancel(cancel)
            trial = _run_em(blocks, _moved(best, chosen, pairs, halves), total_weight, tol,
                            max_iter, var_floor, accelerate, cancel)
            trials += 1
            if trial.log_likelihood > best.log_likelihood + _MOVE_GAIN * total_weight:
                moves.append(len(history))  # its first iteration, as for reseeds
                reseeds += [len(history) - 1 + i for i in trial.reseeds]
                history += list(trial.history[1:])
                best = trial
                break
        else:
            break
    return replace(best, history=np.array(history), n_iter=len(history) - 1,
                   reseeds=tuple(reseeds), restarts=restarts, moves=tuple(moves),
                   move_trials=trials)


def _extrapolate(m0: Mixture, m1: Mixture, m2: Mixture, step_max: float, var_floor: float):
    """SQUAREM step (Varadhan & Roland 2008, scheme S3) from three successive EM
    iterates, in coordinates where any point is a valid mixture: means, log
    variances, log weights (projected back by softmax and the variance floor).

    With r = u1 - u0, v = u2 - 2 u1 + u0 and alpha = -||r|| / ||v|| clipped to
    [-step_max, -1], the trial is u0 - 2 alpha r + alpha^2 v (alpha = -1 gives u2).
    Returns (trial Mixture or None when it would be u2 or is undefined, alpha)."""
    if not all((m.weights > 0).all() for m in (m0, m1, m2)):
        return None, -1.0
    u0, u1, u2 = (np.concatenate([m.means.ravel(), np.log(m.variances), np.log(m.weights)])
                  for m in (m0, m1, m2))
    r, v = u1 - u0, u2 - 2.0 * u1 + u0
    norm_v = np.linalg.norm(v)
    if not norm_v > 0:
        return None, -1.0
    alpha = float(np.clip(-np.linalg.norm(r) / norm_v, -step_max, -1.0))
    if alpha == -1.0:
        return None, alpha
    u = u0 - 2.0 * alpha * r + alpha * alpha * v
    k, d = m0.means.shape
    log_w = u[k * d + k:]
    weights = np.exp(log_w - log_w.max())
    # multiplicative, so that a variance EM left unchanged (e.g. on the floor) stays exact
    variances = np.maximum(m0.variances * np.exp(u[k * d:k * d + k] - u0[k * d:k * d + k]),
                           var_floor)
    return Mixture(weights / weights.sum(), u[:k * d].reshape(k, d), variances), alpha


# ------------------------------------------------------------------------ queries

def score_samples(mixture: Mixture, X) -> np.ndarray:
    """log p(x_n) for each sample: (N, D)  ->  (N,)."""
    return _e_step_all(_query_blocks(mixture, X), mixture, normalise=False)[1]


def log_likelihood(mixture: Mixture, X, sample_weight=None) -> float:
    """Total log-likelihood sum_n w_n log p(x_n): (N, D), (N,) or None  ->  float."""
    log_density = score_samples(mixture, X)
    return math.fsum(_validate_sample_weight(sample_weight, len(log_density)) * log_density)


def responsibilities(mixture: Mixture, X) -> np.ndarray:
    """Posterior probabilities p(z_n = k | x_n): (N, D)  ->  (N, K), rows sum to 1."""
    return e_step(X, mixture)[0]


def predict(mixture: Mixture, X) -> np.ndarray:
    """Most probable component of each sample: (N, D)  ->  (N,) int64 labels."""
    blocks = _query_blocks(mixture, X, ordered=False)  # every component is scored
    coef = _log_joint_coefficients(mixture, blocks.shift)[0]
    parts = blocks.map(lambda b: np.argmax(blocks.log_joint(blocks.slices[b], coef), axis=1))
    return blocks.unsort(np.concatenate(parts).astype(np.int64))


def reconstruct(mixture: Mixture, X) -> np.ndarray:
    """Each sample replaced by the mean of its most probable component: (N, D)."""
    return mixture.means[predict(mixture, X)]


def n_parameters(k: int, d: int) -> int:
    """Free parameters: (K-1) weights + K*D means + K variances."""
    return (k - 1) + k * d + k


def bic(mixture: Mixture, X, sample_weight=None) -> float:
    """Bayesian information criterion -2 log L + p log n (lower is better), n the
    total sample weight (the number of pixels for weighted distinct colours)."""
    log_l = log_likelihood(mixture, X, sample_weight)  # validates X and sample_weight
    n = float(_validate_sample_weight(sample_weight, len(X)).sum())
    return -2.0 * log_l + n_parameters(mixture.k, mixture.d) * math.log(n)


# --------------------------------------------------------------------- validation

def _validate_samples(X, name: str, d: int | None = None) -> np.ndarray:
    try:
        X = np.asarray(X)
    except ValueError as error:  # e.g. ragged nested lists
        raise ValueError(f"{name} must be a numeric 2-D array: {error}") from None
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise ValueError(f"{name} must be a numeric array, got dtype {X.dtype}")
    if np.iscomplexobj(X):
        raise ValueError(f"{name} must be real, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (N, D), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must have at least one sample and one dimension, "
                         f"got shape {X.shape}")
    if d is not None and X.shape[1] != d:
        raise ValueError(f"{name} has {X.shape[1]} dimensions but the mixture has {d}")
    if X.dtype != np.float32:
        X = X.astype(np.float64, copy=False)
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or inf")
    return X


def _validate_sample_weight(sample_weight, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"sample_weight must be a numeric array: {error}") from None
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},) to match X, got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("sample_weight contains NaN or inf")
    if (w < 0).any():
        raise ValueError("sample_weight must be non-negative")
    if not w.sum() > 0:
        raise ValueError("sample_weight is all zero")
    return w


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _validate(X, k, sample_weight, tol, max_iter, n_init, var_floor, seed, block_rows,
              accelerate, split_merge, cancel):
    X = _validate_samples(X, "X")
    if not _is_integer(k):
        raise ValueError(f"k must be an integer, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    w = _validate_sample_weight(sample_weight, len(X))
    if k > np.count_nonzero(w):
        raise ValueError(f"k (={k}) exceeds the number of samples with positive "
                         f"weight ({np.count_nonzero(w)})")
    if not (isinstance(tol, numbers.Real) and not isinstance(tol, bool)
            and tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    for name, value in (("max_iter", max_iter), ("n_init", n_init)):
        if not _is_integer(value) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if block_rows is not None and (not _is_integer(block_rows) or block_rows < 1):
        raise ValueError(f"block_rows must be None or an integer >= 1, got {block_rows!r}")
    if not _is_integer(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if not (isinstance(var_floor, numbers.Real) and var_floor > 0 and math.isfinite(var_floor)):
        raise ValueError(f"var_floor must be a positive number, got {var_floor!r}")
    if not isinstance(accelerate, (bool, np.bool_)):
        raise ValueError(f"accelerate must be True or False, got {accelerate!r}")
    if cancel is not None and not callable(cancel):
        raise ValueError(f"cancel must be None or a callable, got {cancel!r}")
    if not _is_integer(split_merge) or split_merge < 0:
        raise ValueError(f"split_merge must be an integer >= 0, got {split_merge!r}")
    return X, w, int(k), X.dtype.type


def _validate_init(init, k: int, d: int) -> Mixture:
    try:
        pi, mu, var = (init.weights, init.means, init.variances) \
            if isinstance(init, Mixture) else init
    except (TypeError, ValueError):
        raise ValueError("init must be 'kmeans++', 'random', a Mixture or a "
                         "(weights, means, variances) tuple") from None
    try:
        pi, mu, var = (np.asarray(a, dtype=np.float64) for a in (pi, mu, var))
    except (TypeError, ValueError) as error:
        raise ValueError(f"init parameters must be numeric arrays: {error}") from None
    if pi.shape != (k,) or mu.shape != (k, d) or var.shape != (k,):
        raise ValueError(f"init parameters must have shapes ({k},), ({k}, {d}), ({k},); "
                         f"got {pi.shape}, {mu.shape}, {var.shape}")
    if not (np.isfinite(pi).all() and np.isfinite(mu).all() and np.isfinite(var).all()):
        raise ValueError("init parameters contain NaN or inf")
    if (pi < 0).any() or not np.isclose(pi.sum(), 1.0):
        raise ValueError(f"init weights must be non-negative and sum to 1, "
                         f"got sum {pi.sum()}")
    if (var <= 0).any():
        raise ValueError("init variances must be positive")
    return Mixture(pi, mu, var)
