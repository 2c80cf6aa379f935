"""Expectation-Maximization for a mixture of isotropic Gaussians, in NumPy.

The model, for samples x in R^D (here: RGB colours, D = 3):

    p(x) = sum_k pi_k N(x | mu_k, sigma_k^2 I)
         = sum_k pi_k prod_d N(x_d | mu_kd, sigma_k^2)

with one variance per component, shared by the D coordinates.

Every step works in the log domain. The log-densities come from the expansion
||x - mu||^2 = ||x||^2 - 2 x.mu + ||mu||^2, which turns the E-step of all samples
against all components into one matrix product of the "augmented" samples
[x, ||x||^2, 1] (N, D+2) with a (D+2, K) coefficient matrix. The same augmented
samples, weighted by the responsibilities, give every sufficient statistic of the
M-step in a second matrix product. Samples carry weights, so a fit on the distinct
colours of an image, weighted by their pixel counts, is exactly the fit on all pixels.

Data are processed in blocks of rows (never an (N, K) array for all samples at
once) on a small thread pool; the block partition does not depend on the number of
threads and partial sums are added in block order, so results are the same bit for
bit whatever the thread count.

Entry point: `fit(X, k, ...)`. Queries on a fitted mixture: `log_likelihood`,
`score_samples`, `responsibilities`, `predict`, `reconstruct`, `bic`.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

__all__ = [
    "ConvergenceWarning", "Mixture", "FitResult", "QUANTISATION_VARIANCE",
    "fit", "log_prob", "e_step", "m_step", "init_kmeans_plus_plus", "init_random",
    "log_likelihood", "score_samples", "responsibilities", "predict", "reconstruct",
    "bic", "n_parameters",
]

LOG_2PI = math.log(2.0 * math.pi)

# Default variance floor. 8-bit colours scaled to [0, 1] are rounded to multiples of
# 1/255, and rounding to a grid of step h adds a uniform error of variance h^2 / 12
# to every channel. A component cannot honestly claim a spread below that: a
# variance under it describes the quantisation grid, not the colours, and letting it
# shrink further lets the likelihood grow without bound on a single colour.
QUANTISATION_VARIANCE = (1.0 / 255.0) ** 2 / 12.0

# A component whose total responsibility falls below this fraction of the total
# sample weight has lost all its weight and is re-seeded.
_DEAD_FRACTION = 1e-12

# Rows per block: about 2**17 log-probabilities per block keeps a block in cache.
_BLOCK_ENTRIES = 1 << 17


class ConvergenceWarning(UserWarning):
    """EM stopped at max_iter before the log-likelihood gain fell below tol."""


@dataclass(frozen=True)
class Mixture:
    """Parameters of a mixture of K isotropic Gaussians in D dimensions.

    weights:   (K,)   mixing proportions pi_k, summing to 1.
    means:     (K, D) component means mu_k.
    variances: (K,)   one variance sigma_k^2 per component.
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

    log_likelihood: total (sample-weighted) log-likelihood of the returned
                    parameters.
    history:        (n_iter + 1,) total log-likelihood of the initial parameters
                    and after every iteration; history[-1] == log_likelihood.
    n_iter:         EM iterations run.
    converged:      whether the gain per unit of sample weight fell below tol.
    reseeds:        iterations at which a component that had lost all its weight
                    was re-seeded (the log-likelihood may drop once there).
    total_weight:   sum of the sample weights (the number of pixels for an image).
    restarts:       (n_init,) final log-likelihood of every restart; the best won.
    """

    log_likelihood: float = 0.0
    history: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_iter: int = 0
    converged: bool = False
    reseeds: tuple = ()
    total_weight: float = 0.0
    restarts: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def mixture(self) -> Mixture:
        return Mixture(self.weights, self.means, self.variances)

    @property
    def mean_log_likelihood(self) -> float:
        """Log-likelihood per unit of sample weight (per pixel for an image)."""
        return self.log_likelihood / self.total_weight


# --------------------------------------------------------------------------- steps

def log_prob(X: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """log N(x_n | mu_k, sigma_k^2 I) for every sample and component.

    X: (N, D), means: (K, D), variances: (K,)  ->  (N, K).
    """
    X = np.asarray(X, dtype=np.float64)
    d = X.shape[1]
    sq_dist = (
        (X * X).sum(axis=1)[:, None] - 2.0 * X @ means.T + (means * means).sum(axis=1)
    )
    np.maximum(sq_dist, 0.0, out=sq_dist)  # the expansion can round below zero
    return -0.5 * (d * np.log(2.0 * np.pi * variances) + sq_dist / variances)


def _log_weights(mixture: Mixture) -> np.ndarray:
    """log pi_k: (K,). A weight of exactly 0 gives -inf (that component never wins)."""
    with np.errstate(divide="ignore"):
        return np.log(mixture.weights)


def _exp_shifted_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Overwrite a (N, K) with exp(a - rowmax); return rowmax (N,) and the row sums (N,).

    Then log sum_k exp(a_nk) = rowmax + log(rowsum). Subtracting the row maximum
    first makes the largest term exp(0) = 1, so nothing overflows and the sum never
    underflows to zero: the log-sum-exp trick.
    """
    row_max = a.max(axis=1)
    a -= row_max[:, None]
    np.exp(a, out=a)
    return row_max, a.sum(axis=1)


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """log sum_k exp(a_nk) for each row: (N, K) -> (N,). Overwrites `a`."""
    row_max, row_sum = _exp_shifted_rows(a)
    return row_max + np.log(row_sum)


def e_step(X: np.ndarray, mixture: Mixture) -> tuple[np.ndarray, np.ndarray]:
    """Responsibilities r_nk = p(z_n = k | x_n) by Bayes' rule, in the log domain.

    X: (N, D)  ->  log_resp (N, K), log_norm (N,) where log_norm_n = log p(x_n).
    """
    log_joint = _log_weights(mixture) + log_prob(X, mixture.means, mixture.variances)
    log_norm = _logsumexp_rows(log_joint.copy())
    return log_joint - log_norm[:, None], log_norm


def _statistics_to_mixture(stats: np.ndarray, total_weight: float,
                           var_floor: float) -> tuple[Mixture, np.ndarray]:
    """M-step from the weighted sufficient statistics.

    stats: (K, D+2) with columns [sum_n r w x, sum_n r w ||x||^2, sum_n r w], where
    r w is responsibility times sample weight. Returns the mixture and a (K,) mask
    of components whose weight vanished (their parameters are placeholders).
    """
    d = stats.shape[1] - 2
    nk = stats[:, d + 1]
    dead = nk <= _DEAD_FRACTION * total_weight
    safe_nk = np.where(dead, 1.0, nk)
    means = stats[:, :d] / safe_nk[:, None]
    # sigma_k^2 = sum_n r w ||x_n - mu_k||^2 / (D N_k) = (E_k||x||^2 - ||mu_k||^2) / D.
    # Both terms are exact float64 sums over the same weights, so the difference is
    # a weighted variance and cannot be negative beyond rounding; the floor bounds it.
    variances = (stats[:, d] / safe_nk - (means * means).sum(axis=1)) / d
    variances = np.maximum(variances, var_floor)
    weights = nk / total_weight
    return Mixture(weights, means, variances), dead


def m_step(X: np.ndarray, sample_weight: np.ndarray, resp: np.ndarray,
           var_floor: float = QUANTISATION_VARIANCE) -> Mixture:
    """Closed-form maximiser of Q(theta, theta_old) given responsibilities.

    X: (N, D), sample_weight: (N,), resp: (N, K)  ->  Mixture with
        N_k = sum_n w_n r_nk,   pi_k = N_k / sum_n w_n,
        mu_k = sum_n w_n r_nk x_n / N_k,
        sigma_k^2 = sum_n w_n r_nk ||x_n - mu_k||^2 / (D N_k)   (floored).
    """
    X = np.asarray(X, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    stats = (resp * w[:, None]).T @ _augment(X)
    return _statistics_to_mixture(stats, w.sum(), var_floor)[0]


# ------------------------------------------------------------- the blocked E+M pass

def _augment(X: np.ndarray, dtype=np.float64) -> np.ndarray:
    """[x, ||x||^2, 1] for every sample: (N, D)  ->  (N, D+2)."""
    X = np.asarray(X, dtype=np.float64)
    out = np.empty((X.shape[0], X.shape[1] + 2), dtype=dtype)
    out[:, :-2] = X
    out[:, -2] = (X * X).sum(axis=1)
    out[:, -1] = 1.0
    return out


def _log_joint_coefficients(mixture: Mixture, shift: np.ndarray, dtype) -> np.ndarray:
    """(D+2, K) matrix C with [y, ||y||^2, 1] @ C = log pi_k + log N(x | mu_k, sigma_k^2 I)
    for y = x - shift:

    log pi_k + log N = y.m_k / sigma_k^2 - ||y||^2 / (2 sigma_k^2)
                       + log pi_k - D/2 log(2 pi sigma_k^2) - ||m_k||^2 / (2 sigma_k^2),
    with m_k = mu_k - shift (distances do not depend on the shift).
    """
    d = mixture.d
    means = mixture.means - shift
    var = mixture.variances
    log_w = _log_weights(mixture)
    coef = np.empty((d + 2, mixture.k))
    coef[:d] = (means / var[:, None]).T
    coef[d] = -0.5 / var
    coef[d + 1] = log_w - 0.5 * d * (LOG_2PI + np.log(var)) - 0.5 * (means * means).sum(1) / var
    return coef.astype(dtype, copy=False)


class _Blocks:
    """Samples prepared once for repeated passes: augmented, centred, in blocks.

    X: (N, D) float, w: (N,) float64. Centring on `shift` keeps ||x||^2 small, which
    limits the rounding of the expansion (that matters in float32).
    """

    def __init__(self, X: np.ndarray, w: np.ndarray, k: int, dtype, shift=None,
                 block_rows: int | None = None):
        X = np.asarray(X, dtype=np.float64)
        self.shift = np.average(X, axis=0, weights=w) if shift is None else shift
        self.xa64 = _augment(X - self.shift)  # for the sums of the M-step
        self.xa = self.xa64.astype(dtype, copy=False)  # for the E-step
        self.w = w
        self.dtype = dtype
        n = X.shape[0]
        rows = block_rows or int(np.clip(_BLOCK_ENTRIES // max(k, 1), 256, 16384))
        self.slices = [slice(i, min(i + rows, n)) for i in range(0, n, rows)]

    def map(self, func):
        """func(slice) for every block, in block order, on the thread pool."""
        if len(self.slices) == 1:
            return [func(self.slices[0])]
        return list(_pool().map(func, self.slices))

    def log_joint(self, sl: slice, coef: np.ndarray) -> np.ndarray:
        """log pi_k + log N(x_n | mu_k, sigma_k^2 I) for the block: (rows, K)."""
        return self.xa[sl] @ coef


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
    return _POOL


# Row sums below this are recomputed with the exact row maximum (see _em_pass).
_TINY_SUM = {np.float64: 1e-200, np.float32: 1e-30}


def _em_pass(blocks: _Blocks, mixture: Mixture):
    """One E-step over all blocks, accumulating the next M-step's statistics.

    Returns (total log-likelihood of `mixture`, stats (K, D+2) float64 measured from
    blocks.shift, index of the worst-explained sample).

    Log-sum-exp needs a shift per row that keeps exp() from overflowing. Instead of
    the row maximum (a pass over the block), use a bound: a log-density never exceeds
    its value at the mean, so L_nk <= log pi_k - D/2 log(2 pi sigma_k^2) =: c_k, and
    after subtracting max_k c_k (folded into the matrix product) every term is <= 1.
    Rows whose terms all underflow (samples far from every component) get their sum
    recomputed with the exact maximum.
    """
    d = mixture.d
    coef = _log_joint_coefficients(mixture, blocks.shift, np.float64)
    upper = float(np.max(_log_weights(mixture)
                         - 0.5 * d * (LOG_2PI + np.log(mixture.variances))))
    coef[d + 1] -= upper
    coef = coef.astype(blocks.dtype, copy=False)
    tiny = _TINY_SUM[blocks.dtype]

    def one_block(sl):
        resp = blocks.log_joint(sl, coef)           # L_nk - upper <= 0
        np.exp(resp, out=resp)
        row_sum = resp.sum(axis=1, dtype=np.float64)
        shift = np.full(len(row_sum), upper)
        low = np.flatnonzero(row_sum < tiny)
        if len(low):
            redo = blocks.log_joint(slice(sl.start + low[0], sl.start + low[-1] + 1), coef)
            redo = redo[low - low[0]]
            row_max, row_sum[low] = _exp_shifted_rows(redo)
            resp[low] = redo
            shift[low] += row_max
        log_norm = shift + np.log(row_sum)
        # r_nk w_n = exp(L_nk - shift_n) * w_n / row_sum_n: fold w_n / row_sum_n into
        # the (rows, D+2) samples rather than scaling the (rows, K) block.
        scaled = blocks.xa64[sl] * (blocks.w[sl] / row_sum)[:, None]
        stats = resp.T.astype(np.float64, copy=False) @ scaled  # sums in float64
        worst = int(np.argmin(log_norm))
        return (float(blocks.w[sl] @ log_norm), stats, float(log_norm[worst]),
                sl.start + worst)

    parts = blocks.map(one_block)
    total = math.fsum(p[0] for p in parts)
    stats = np.sum([p[1] for p in parts], axis=0)
    worst = min(parts, key=lambda p: p[2])[3]
    return total, stats, worst


def _m_step_from_stats(blocks: _Blocks, stats: np.ndarray, total_weight: float,
                       var_floor: float, worst: int):
    """M-step; a component that lost all its weight is re-seeded on the sample the
    current mixture explains worst. Returns (mixture, whether a re-seed happened).

    Only the first dead component is re-seeded: the pass knows one worst sample, and
    two components re-seeded on it would be identical and stay identical forever.
    Any other dead component keeps weight 0 (it then stays dead) and is re-seeded at
    a later iteration, on the sample worst explained by then."""
    mixture, dead = _statistics_to_mixture(stats, total_weight, var_floor)
    means = mixture.means + blocks.shift
    if not dead.any():
        return Mixture(mixture.weights, means, mixture.variances), False
    weights, variances = mixture.weights.copy(), mixture.variances.copy()
    live = ~dead
    first = np.flatnonzero(dead)[0]
    weights[dead] = 0.0
    means[first] = blocks.xa64[worst, :-2] + blocks.shift
    variances[first] = np.average(variances[live], weights=weights[live]) if live.any() \
        else variances.max()
    weights[first] = blocks.w[worst] / total_weight
    weights /= weights.sum()
    return Mixture(weights, means, variances), True


# ------------------------------------------------------------------ initialisation

def init_kmeans_plus_plus(X: np.ndarray, w: np.ndarray, k: int,
                          rng: np.random.Generator,
                          var_floor: float = QUANTISATION_VARIANCE) -> Mixture:
    """k-means++ seeding with sample weights, then one hard assignment.

    Centres are drawn one at a time, each sample with probability proportional to
    w_n D_n^2 (D_n: distance to the nearest centre so far; the first draw uses w_n).
    Each sample then goes to its nearest centre; a component's weight and variance
    are those of its cluster.  X: (N, D), w: (N,)  ->  Mixture.
    """
    n, d = X.shape
    centres = np.empty((k, d))
    centres[0] = X[rng.choice(n, p=w / w.sum())]
    closest_sq = ((X - centres[0]) ** 2).sum(axis=1)
    for j in range(1, k):
        score = w * closest_sq
        total = score.sum()
        if not total > 0:
            raise ValueError(
                f"k (={k}) exceeds the number of distinct samples with positive "
                f"weight ({j}): a mixture cannot have more components than points")
        centres[j] = X[rng.choice(n, p=score / total)]
        np.minimum(closest_sq, ((X - centres[j]) ** 2).sum(axis=1), out=closest_sq)
    labels = predict(Mixture(np.full(k, 1.0 / k), centres, np.ones(k)), X)
    nk = np.bincount(labels, weights=w, minlength=k)
    sq = ((X - centres[labels]) ** 2).sum(axis=1)
    spread = np.bincount(labels, weights=w * sq, minlength=k) / (d * np.maximum(nk, 1e-300))
    return Mixture(nk / nk.sum(), centres, np.maximum(spread, var_floor))


def init_random(X: np.ndarray, w: np.ndarray, k: int,
                rng: np.random.Generator) -> Mixture:
    """The original study's start: means at k random samples (drawn with probability
    proportional to weight, without replacement), variances uniform in (0, 1),
    equal weights.  X: (N, D), w: (N,)  ->  Mixture."""
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
    return Mixture(np.full(k, 1.0 / k), X[idx].astype(np.float64), variances)


# --------------------------------------------------------------------------- fit

def fit(X, k, *, weights=None, init="kmeans++", n_init: int = 1, tol: float = 1e-5,
        max_iter: int = 1000, seed: int = 0, var_floor: float = QUANTISATION_VARIANCE,
        block_rows: int | None = None) -> FitResult:
    """Fit a mixture of k isotropic Gaussians to X by EM.

    X:         (N, D) samples, float64 (float32 is kept: the E-step runs in float32
               and all sums in float64).
    k:         number of components, an integer >= 1.
    weights:   (N,) non-negative sample weights (e.g. pixel counts of distinct
               colours); None means all ones. Samples of weight 0 are ignored.
    init:      "kmeans++" (weighted k-means++ seeding), "random" (the original
               study's: means at k random samples, variances uniform in (0, 1),
               equal weights), or explicit initial parameters: a Mixture or a
               (weights (K,), means (K, D), variances (K,)) tuple.
    n_init:    restarts from independent initialisations; the best final
               log-likelihood wins (an explicit init runs once).
    tol:       stop when the gain in log-likelihood per unit of sample weight
               (per pixel) between iterations falls below tol.
    max_iter:  iterations at most; stopping there issues a ConvergenceWarning.
    seed:      seed of numpy.random.default_rng (an integer >= 0), the only
               source of randomness.
    var_floor: smallest variance a component may take (default: the quantisation
               variance of 8-bit data scaled to [0, 1]).
    block_rows: rows per block, an integer >= 1 (default None: chosen from k);
               results do not depend on the number of threads, and differ across
               block sizes only by rounding.
    """
    X, w, k, dtype = _validate(X, k, weights, tol, max_iter, n_init, var_floor,
                               seed, block_rows)
    if not w.all():
        # A sample of weight 0 adds nothing to any sum, but it may be the sample the
        # mixture explains worst: a component re-seeded there would get weight 0,
        # die again and be re-seeded there at every iteration.
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
        if not explicit:
            start = (init_kmeans_plus_plus(X64, w, k, rng, var_floor) if init == "kmeans++"
                     else init_random(X64, w, k, rng))
        result = _run_em(blocks, start, total_weight, tol, max_iter, var_floor)
        finals.append(result.log_likelihood)
        if best is None or result.log_likelihood > best.log_likelihood:
            best = result
    best = replace(best, restarts=np.array(finals))
    if not best.converged:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations (last gain per "
            f"sample {np.diff(best.history)[-1] / total_weight:.3g}, tol={tol:g}); "
            f"raise max_iter or tol", ConvergenceWarning, stacklevel=2)
    return best


def _run_em(blocks: _Blocks, mixture: Mixture, total_weight: float, tol: float,
            max_iter: int, var_floor: float) -> FitResult:
    """EM from one start: alternate a fused E-pass and an M-step until the gain in
    log-likelihood per unit weight is below tol. The last E-pass scores the returned
    parameters, so history[-1] is their log-likelihood."""
    ll, stats, worst = _em_pass(blocks, mixture)
    history, reseeds, converged = [ll], [], False
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        mixture, reseeded = _m_step_from_stats(blocks, stats, total_weight, var_floor, worst)
        ll, stats, worst = _em_pass(blocks, mixture)
        history.append(ll)
        if reseeded:
            reseeds.append(n_iter)
        elif abs(history[-1] - history[-2]) < tol * total_weight:
            converged = True
            break
    return FitResult(mixture.weights, mixture.means, mixture.variances,
                     log_likelihood=ll, history=np.array(history), n_iter=n_iter,
                     converged=converged, reseeds=tuple(reseeds),
                     total_weight=total_weight)


# ------------------------------------------------------------------------ queries

def _query_blocks(mixture: Mixture, X, weights=None) -> _Blocks:
    X = _validate_samples(X, "X", mixture.d)
    w = np.ones(len(X)) if weights is None else _validate_weights(weights, len(X))
    shift = mixture.weights @ mixture.means
    return _Blocks(X, w, mixture.k, np.float64, shift=shift)


def score_samples(mixture: Mixture, X) -> np.ndarray:
    """log p(x_n) for each sample: (N, D)  ->  (N,)."""
    blocks = _query_blocks(mixture, X)
    coef = _log_joint_coefficients(mixture, blocks.shift, np.float64)
    parts = blocks.map(lambda sl: _logsumexp_rows(blocks.log_joint(sl, coef)))
    return np.concatenate(parts)


def log_likelihood(mixture: Mixture, X, weights=None) -> float:
    """Total log-likelihood sum_n w_n log p(x_n): (N, D), (N,)  ->  float."""
    log_density = score_samples(mixture, X)
    if weights is None:
        return math.fsum(log_density)
    return math.fsum(_validate_weights(weights, len(log_density)) * log_density)


def responsibilities(mixture: Mixture, X) -> np.ndarray:
    """Posterior probabilities p(z_n = k | x_n): (N, D)  ->  (N, K), rows sum to 1."""
    blocks = _query_blocks(mixture, X)
    coef = _log_joint_coefficients(mixture, blocks.shift, np.float64)

    def one_block(sl):
        resp = blocks.log_joint(sl, coef)
        _logsumexp_rows(resp)
        resp /= resp.sum(axis=1)[:, None]
        return resp

    return np.concatenate(blocks.map(one_block))


def predict(mixture: Mixture, X) -> np.ndarray:
    """Most probable component of each sample: (N, D)  ->  (N,) int64 labels."""
    blocks = _query_blocks(mixture, X)
    coef = _log_joint_coefficients(mixture, blocks.shift, np.float64)
    parts = blocks.map(lambda sl: np.argmax(blocks.log_joint(sl, coef), axis=1))
    return np.concatenate(parts).astype(np.int64)


def reconstruct(mixture: Mixture, X) -> np.ndarray:
    """Each sample replaced by the mean of its most probable component: (N, D)."""
    return mixture.means[predict(mixture, X)]


def n_parameters(k: int, d: int) -> int:
    """Free parameters: (K-1) weights + K*D means + K variances."""
    return (k - 1) + k * d + k


def bic(mixture: Mixture, X, weights=None) -> float:
    """Bayesian information criterion -2 log L + p log n (lower is better), where n
    is the total sample weight (the number of pixels for distinct colours)."""
    log_l = log_likelihood(mixture, X, weights)  # validates X and weights
    n = len(X) if weights is None else float(np.sum(weights))
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


def _validate_weights(weights, n: int) -> np.ndarray:
    try:
        w = np.asarray(weights, dtype=np.float64) if not isinstance(weights, np.ndarray) \
            else weights.astype(np.float64, copy=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"weights must be a numeric array: {error}") from None
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},) to match X, got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("weights contains NaN or inf")
    if (w < 0).any():
        raise ValueError("weights must be non-negative")
    if not w.sum() > 0:
        raise ValueError("weights are all zero")
    return w


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _validate(X, k, weights, tol, max_iter, n_init, var_floor, seed=0, block_rows=None):
    X = _validate_samples(X, "X")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k must be an integer, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    w = np.ones(len(X)) if weights is None else _validate_weights(weights, len(X))
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
