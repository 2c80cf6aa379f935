"""EM for a mixture of isotropic Gaussians: the textbook, and what every fit runs.

The model (derivation, section 1), for samples x in R^D with one variance per component:

    p(x) = sum_k pi_k N(x | mu_k, sigma_k^2 I).

The E-step (section 3) gives each sample its responsibilities r_nk = p(z_n = k | x_n) by
Bayes' rule in the log domain; the M-step (section 4) maximises Q in closed form from the
sufficient statistics sum_n w_n r_nk [x_n, ||x_n||^2, 1]. Samples carry weights (section
6: distinct colours weighted by their pixel counts give exactly the fit on all pixels); a
variance floor (section 7) keeps the likelihood bounded. `Dense` runs the steps on all
rows at once; the fast engine (em.blocked, fit's default) runs them on blocks of rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from em import validation

LOG_2PI = math.log(2.0 * math.pi)
# 8-bit colours in [0, 1] are rounded to multiples of h = 1/255, a uniform error of
# variance h^2 / 12 in every channel: no component can honestly claim less (section 7).
QUANTISATION_VARIANCE = (1.0 / 255.0) ** 2 / 12.0
# A component whose responsibilities sum to less than this share of the weight is re-seeded.
DEAD_FRACTION = 1e-12
# Largest rounding, in nats, allowed to the expanded square of a log-joint (LogJoint).
EXACT = 1e-8


class ConvergenceWarning(UserWarning):
    """EM stopped at max_iter before the log-likelihood gain fell below tol."""


class Cancelled(Exception):
    """fit's `cancel` callback asked it to stop; no result is returned."""


def check_cancel(cancel) -> None:
    """Raise Cancelled when the callback (or None) says so."""
    if cancel is not None and cancel():
        raise Cancelled("the fit was cancelled")


@dataclass(frozen=True)
class Mixture:
    """weights: (K,) pi_k, summing to 1; means: (K, D) mu_k; variances: (K,) sigma_k^2."""

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
    """A fitted mixture and how EM got there: log_likelihood sum_n w_n log p(x_n);
    history (n_iter + 1,), the log-likelihood at the start and after every iteration on
    the path to the result; converged (the gain per unit weight fell below tol); reseeds
    and moves, the iterations where a component was re-seeded or a split-and-merge move
    kept (the log-likelihood may drop there); total_weight sum_n w_n; restarts (n_init,)
    every restart's final log-likelihood; move_trials, the moves' starts tried."""

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


# ------------------------------------------------------------- the log-joint (section 3)

def augment(Y: np.ndarray) -> np.ndarray:
    """[y, ||y||^2, 1] for every sample: (N, D) -> (N, D+2) float64."""
    out = np.empty((Y.shape[0], Y.shape[1] + 2))
    out[:, :-2] = Y
    out[:, -2] = (Y * Y).sum(axis=1)
    out[:, -1] = 1.0
    return out


@dataclass(frozen=True)
class LogJoint:
    """L_nk = log pi_k + log N(x_n | mu_k, s_k I) as a map of augmented samples [y, ||y||^2,
    1] (y = x - centre): coef (D+2, K), offset, and per component the mean m_k = mu_k -
    centre, s_k, peak_k = log pi_k - D/2 log(2 pi s_k), `exact` (K,): the expansion might
    lose more than EXACT nats, so log_joint uses differences, and statistics measures
    from `ref` (K, D): m_k for those, 0 for the others (None when there are none)."""

    coef: np.ndarray
    offset: float
    means: np.ndarray
    variances: np.ndarray
    peak: np.ndarray
    exact: np.ndarray
    ref: np.ndarray | None  # where statistics() measures moments from (K, D), or None


def log_joint_model(mixture: Mixture, centre, radius: float, dtype=np.float64) -> LogJoint:
    """Expanding ||y - m_k||^2 = ||y||^2 - 2 y.m_k + ||m_k||^2 makes all log-joints one
    matrix product: L_nk = y.m_k / s_k - ||y||^2 / (2 s_k) + peak_k - ||m_k||^2 / (2 s_k).
    coef holds it less offset = max_k peak_k, which bounds every L_nk (a density peaks at
    its mean), so exp never overflows. The expansion rounds by up to (D+2) u (|y| +
    |m_k|)^2 / (2 s_k) nats (u: dtype's unit roundoff; radius: the largest |y|)."""
    d = mixture.d
    means, var = mixture.means - centre, mixture.variances
    with np.errstate(divide="ignore"):  # a weight of 0 gives -inf: it never wins
        peak = np.log(mixture.weights) - 0.5 * d * (LOG_2PI + np.log(var))
    offset = float(np.max(peak))
    coef = np.empty((d + 2, mixture.k))
    coef[:d] = (means / var[:, None]).T
    coef[d] = -0.5 / var
    coef[d + 1] = peak - offset - 0.5 * (means * means).sum(axis=1) / var
    unit = np.finfo(dtype).eps / 2  # the product's unit roundoff
    rounding = (d + 2) * unit * (radius + np.sqrt((means * means).sum(axis=1))) ** 2
    exact = rounding > EXACT * 2.0 * var
    return LogJoint(coef.astype(dtype, copy=False), offset, means, var, peak, exact,
                    np.where(exact[:, None], means, 0.0) if exact.any() else None)


def log_joint(xa: np.ndarray, model: LogJoint, columns=slice(None), xa64=None) -> np.ndarray:
    """L_nk - offset for augmented samples xa (N, D+2) and the components `columns` (all
    by default): (N, C) in xa's precision; the components marked exact from differences
    of the float64 rows xa64 (xa itself when it is float64)."""
    A = xa @ model.coef[:, columns]
    exact = np.flatnonzero(model.exact[columns]) if model.ref is not None else ()
    if len(exact):
        j = np.arange(len(model.peak))[columns][exact]
        diff = (xa if xa64 is None else xa64)[:, None, :-2] - model.means[j]
        A[:, exact] = (model.peak[j] - model.offset
                       - 0.5 * (diff * diff).sum(axis=2) / model.variances[j])
    return A


# ---------------------------------------------------------------- E-step (section 3)

def normalise(A: np.ndarray, offset: float, row_max: bool = True, floor=None):
    """Bayes' rule in the log domain, in place: A (N, C) holds L_nk - offset and becomes
    p_nk = exp(L_nk - offset - c_n); r_nk = p_nk / row_sum_n. The textbook shifts each row
    by its maximum c_n (log-sum-exp: the largest term is 1); without row_max, c_n = 0 (the
    offset bounds every term) and `floor` raises exp's arguments first (a subnormal exp is
    slow), so a row whose terms all underflow needs row_max. -> p (N, C), row_sum (N,)
    float64, log_norm (N,) = log p(x_n) = offset + c_n + log row_sum_n."""
    shift = A.max(axis=1) if row_max else 0.0
    if row_max:
        A -= shift[:, None]
    if floor is not None:
        np.maximum(A, floor, out=A)
    np.exp(A, out=A)
    row_sum = np.einsum("ij->i", A, dtype=np.float64)  # every sum in float64
    log_norm = np.log(row_sum)
    log_norm += offset
    if row_max:
        log_norm += shift
    return A, row_sum, log_norm


# ------------------------------------------------------------------- M-step (section 4)

def statistics(xa: np.ndarray, w: np.ndarray, p: np.ndarray, row_sum: np.ndarray,
               model: LogJoint | None = None, columns=slice(None)) -> np.ndarray:
    """sum_n w_n r_nk [y_n, ||y_n||^2, 1] for r = p / row_sum: (C, D+2) float64 (xa in
    float64); for components the model marks exact, [y_n - m_k, ||y_n - m_k||^2, 1]."""
    q = w / row_sum  # folded into the (N, D+2) samples, not the (N, C) responsibilities
    stats = p.T.astype(np.float64, copy=False) @ (xa * q[:, None])
    if model is not None and model.ref is not None:
        means = model.means[columns]
        for c in np.flatnonzero(model.exact[columns]):
            wr = p[:, c] * q
            diff = xa[:, :-2] - means[c]
            stats[c, :-1] = np.append(wr @ diff, wr @ (diff * diff).sum(axis=1))
    return stats


def mixture_from_statistics(stats: np.ndarray, total_weight: float, var_floor: float,
                            centre, ref=None) -> tuple[Mixture, np.ndarray]:
    """The closed-form M-step: N_k = sum w r, pi_k = N_k / sum w, mu_k = sum w r x / N_k,
    sigma_k^2 = sum w r ||x - mu_k||^2 / (D N_k) = (E_k||y||^2 - ||E_k y||^2) / D, floored;
    stats (K, D+2) measured from centre + ref. -> the mixture, and a (K,) mask of the
    components whose weight vanished (their parameters are placeholders)."""
    d = stats.shape[1] - 2
    nk = stats[:, d + 1]
    dead = nk <= DEAD_FRACTION * total_weight
    safe_nk = np.where(dead, 1.0, nk)
    means = stats[:, :d] / safe_nk[:, None]
    variances = np.maximum((stats[:, d] / safe_nk - (means * means).sum(axis=1)) / d, var_floor)
    if ref is not None:
        means = means + ref
    return Mixture(nk / total_weight, means + centre, variances), dead


def reseed(mixture: Mixture, dead: np.ndarray, x: np.ndarray, weight: float,
           total_weight: float) -> Mixture:
    """The first dead component moves onto sample x (the worst explained) with its weight
    and the live components' mean variance; the other dead ones keep weight 0 until later
    iterations (two re-seeded on one sample would stay identical forever)."""
    weights, means, variances = (mixture.weights.copy(), mixture.means.copy(),
                                 mixture.variances.copy())
    live, first = ~dead, np.flatnonzero(dead)[0]
    weights[dead] = 0.0
    means[first] = x
    variances[first] = (np.average(variances[live], weights=weights[live]) if live.any()
                        else variances.max())
    weights[first] = weight / total_weight
    return Mixture(weights / weights.sum(), means, variances)


# ------------------------------------------------------------------- one E-step, scored

@dataclass(frozen=True)
class Scored:
    """A mixture after its E-step: total log-likelihood, statistics (K, D+2) for the next
    M-step (measured from ref), and the index of the sample explained worst."""

    mixture: Mixture
    log_likelihood: float
    stats: np.ndarray
    worst: int
    ref: np.ndarray | None = None


class Dense:
    """The E-step on all rows at once, (N, K) arrays: the textbook path (fit(fast=False)).
    Samples are centred on their weighted mean (small |y|: little rounding); dtype: the
    log-joint product's (float32 input keeps float32)."""

    def __init__(self, X: np.ndarray, w: np.ndarray, dtype=np.float64):
        X = np.asarray(X, dtype=np.float64)
        self.w, self.total_weight, self.X = w, float(w.sum()), X
        self.centre = np.average(X, axis=0, weights=w)
        self.xa64 = augment(X - self.centre)
        self.xa = self.xa64.astype(dtype, copy=False)
        self.radius = math.sqrt(self.xa64[:, -2].max())

    def score(self, mixture: Mixture) -> Scored:
        model = log_joint_model(mixture, self.centre, self.radius, self.xa.dtype)
        p, row_sum, log_norm = normalise(log_joint(self.xa, model, xa64=self.xa64), model.offset)
        stats = statistics(self.xa64, self.w, p, row_sum, model)
        return Scored(mixture, float(self.w @ log_norm), stats, int(np.argmin(log_norm)), model.ref)

    def sample(self, i: int) -> tuple[np.ndarray, float]:
        return self.X[i], self.w[i]


# ------------------------------------------------------------------ the EM loop (section 5)

def m_step_of(engine, scored: Scored, var_floor: float) -> tuple[Mixture, bool]:
    """The M-step from a scored mixture's statistics, re-seeding a component that lost
    its weight: -> the next mixture, whether it re-seeded."""
    mixture, dead = mixture_from_statistics(scored.stats, engine.total_weight, var_floor,
                                            engine.centre, scored.ref)
    if not dead.any():
        return mixture, False
    return reseed(mixture, dead, *engine.sample(scored.worst), engine.total_weight), True


def em_step(engine, scored: Scored, var_floor: float, step=None):
    """One EM iteration from a scored mixture: the M-step (m_step_of, or its result `step`
    when the caller has it) and the new mixture's E-step. -> (scored, gain, reseeded),
    gain being the log-likelihood's change (None after a re-seed: not judged)."""
    mixture, reseeded = step or m_step_of(engine, scored, var_floor)
    new = engine.score(mixture)
    return new, None if reseeded else abs(new.log_likelihood - scored.log_likelihood), reseeded


def em_steps(engine, scored: Scored, var_floor: float, max_iter: int):
    """Plain EM's iterates: yields em_step's (scored, gain, reseeded) after every iteration
    (max_iter, run_em's budget, matters only to squarem.accelerated)."""
    while True:
        scored, gain, reseeded = em_step(engine, scored, var_floor)
        yield scored, gain, reseeded


def run_em(engine, start: Mixture, tol: float, max_iter: int, var_floor: float,
           steps=em_steps, cancel=None) -> FitResult:
    """EM from one start until an iteration gains less than tol per unit of weight, or
    max_iter. `steps` yields the iterates (em_steps, or squarem.accelerated around em_step)."""
    scored = engine.score(start)
    history, reseeds, converged = [scored.log_likelihood], [], False
    for n_iter, (scored, gain, reseeded) in enumerate(steps(engine, scored, var_floor, max_iter), 1):
        history.append(scored.log_likelihood)
        reseeds += [n_iter] if reseeded else []
        converged = gain is not None and gain < tol * engine.total_weight
        if converged or n_iter == max_iter:
            break
        check_cancel(cancel)
    m = scored.mixture
    return FitResult(m.weights, m.means, m.variances, log_likelihood=scored.log_likelihood,
                     history=np.array(history), n_iter=n_iter, converged=converged,
                     reseeds=tuple(reseeds), total_weight=engine.total_weight)


def best_of(engine, draw, n_init: int, tol: float, max_iter: int, var_floor: float,
            steps=em_steps, cancel=None) -> FitResult:
    """EM from n_init starts, each drawn by draw(): the highest log-likelihood wins."""
    best, finals = None, []
    for _ in range(n_init):
        check_cancel(cancel)
        result = run_em(engine, draw(), tol, max_iter, var_floor, steps, cancel)
        finals.append(result.log_likelihood)
        if best is None or result.log_likelihood > best.log_likelihood:
            best = result
    return replace(best, restarts=np.array(finals))


# -------------------------------------------------------- the steps and queries, public

_CHUNK = 1 << 20  # entries of the (rows, K) arrays a query holds at once


def _chunks(mixture: Mixture, X):
    """X checked, centred on the mixture's mean: (model, augmented rows) per chunk."""
    X = validation.samples(X, "X", mixture.d).astype(np.float64, copy=False)
    centre = mixture.weights @ mixture.means
    radius = math.sqrt(((X - centre) ** 2).sum(axis=1).max())
    model = log_joint_model(mixture, centre, radius)
    rows = max(1, _CHUNK // mixture.k)
    for start in range(0, len(X), rows):
        yield model, augment(X[start:start + rows] - centre)


def _e_steps(mixture: Mixture, X):
    """The E-step (Dense's) per chunk of rows: (resp, log p(x_n))."""
    for model, xa in _chunks(mixture, X):
        p, row_sum, log_norm = normalise(log_joint(xa, model), model.offset)
        yield p / row_sum[:, None], log_norm


def e_step(X, mixture: Mixture) -> tuple[np.ndarray, np.ndarray]:
    """Responsibilities and log p(x_n), by the functions every fit runs:
    X (N, D) -> resp (N, K), rows summing to 1, and log_norm (N,)."""
    resp, log_norm = zip(*_e_steps(mixture, X))
    return np.concatenate(resp), np.concatenate(log_norm)


def m_step(X, resp, sample_weight=None, var_floor: float = QUANTISATION_VARIANCE) -> Mixture:
    """The M-step from responsibilities: X (N, D), resp (N, K), sample_weight (N,) or None
    -> Mixture (pi, mu, sigma^2 floored at var_floor)."""
    X = validation.samples(X, "X")
    w = validation.sample_weight(sample_weight, len(X))
    resp = np.asarray(resp, dtype=np.float64)
    if resp.ndim != 2 or resp.shape[0] != len(X):
        raise ValueError(f"resp must have shape ({len(X)}, K), got {resp.shape}")
    centre = np.average(X, axis=0, weights=w)
    xa, ones = augment(X.astype(np.float64, copy=False) - centre), np.ones(len(X))
    mixture = mixture_from_statistics(statistics(xa, w, resp, ones), float(w.sum()), var_floor,
                                      centre)[0]
    model = log_joint_model(mixture, centre, math.sqrt(xa[:, -2].max()))
    if model.ref is None:  # no component's moments lose digits about the centre
        return mixture
    return mixture_from_statistics(statistics(xa, w, resp, ones, model), float(w.sum()),
                                   var_floor, centre, model.ref)[0]


def score_samples(mixture: Mixture, X) -> np.ndarray:
    """log p(x_n) for each sample: (N, D) -> (N,)."""
    return np.concatenate([log_norm for _, log_norm in _e_steps(mixture, X)])


def log_likelihood(mixture: Mixture, X, sample_weight=None) -> float:
    """Total log-likelihood sum_n w_n log p(x_n): (N, D), (N,) or None -> float."""
    log_density = score_samples(mixture, X)
    return math.fsum(validation.sample_weight(sample_weight, len(log_density)) * log_density)


def responsibilities(mixture: Mixture, X) -> np.ndarray:
    """Posterior probabilities p(z_n = k | x_n): (N, D) -> (N, K), rows sum to 1."""
    return e_step(X, mixture)[0]


def predict(mixture: Mixture, X) -> np.ndarray:
    """Most probable component of each sample (section 10): (N, D) -> (N,) int64."""
    return np.concatenate([np.argmax(log_joint(xa, model), axis=1)
                           for model, xa in _chunks(mixture, X)]).astype(np.int64)


def reconstruct(mixture: Mixture, X) -> np.ndarray:
    """Each sample replaced by the mean of its most probable component: (N, D)."""
    return mixture.means[predict(mixture, X)]


def n_parameters(k: int, d: int) -> int:
    """Free parameters: (K-1) weights + K*D means + K variances."""
    return (k - 1) + k * d + k


def bic(mixture: Mixture, X, sample_weight=None) -> float:
    """Bayesian information criterion -2 log L + p log n (section 9; lower is better), n
    the total sample weight (the number of pixels for weighted distinct colours)."""
    log_l = log_likelihood(mixture, X, sample_weight)
    n = float(validation.sample_weight(sample_weight, len(X)).sum())
    return -2.0 * log_l + n_parameters(mixture.k, mixture.d) * math.log(n)
