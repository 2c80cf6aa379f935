"""EM for a mixture of isotropic Gaussians, in NumPy:

    p(x) = sum_k pi_k N(x | mu_k, sigma_k^2 I).

Read core.py first: the model, the E-step, the M-step from sufficient statistics, the EM
loop with restarts and re-seeding, and the queries, in the derivation's notation. Every
fit runs those functions; `fit` below puts them together with what makes them fast and
what searches further, each a module of its own:

    blocked.py      the fast engine (fast=True): core's steps on blocks of rows, pruned,
                    on threads; fast=False runs core.Dense, the textbook on all rows
    seeding.py      the k-means++ start (with Lloyd steps), the study's random start
    squarem.py      SQUAREM, a wrapper around EM's iterates (accelerate=True)
    split_merge.py  split-and-merge moves from the best restart (split_merge=N)
    validation.py   input checks: a ValueError naming the argument
"""

from __future__ import annotations

import warnings

import numpy as np

from em import blocked, core, seeding, split_merge as moves, squarem, validation
from em.core import (QUANTISATION_VARIANCE, Cancelled, ConvergenceWarning, FitResult, Mixture,
                     bic, e_step, log_likelihood, m_step, n_parameters, predict, reconstruct,
                     responsibilities, score_samples)
from em.seeding import init_kmeans_plus_plus, init_random, nearest_centre

__all__ = [
    "ConvergenceWarning", "Cancelled", "Mixture", "FitResult", "QUANTISATION_VARIANCE",
    "fit", "e_step", "m_step", "nearest_centre", "init_kmeans_plus_plus", "init_random",
    "log_likelihood", "score_samples", "responsibilities", "predict", "reconstruct",
    "bic", "n_parameters",
]


def fit(X, k, *, sample_weight=None, init="kmeans++", n_init: int = 1, tol: float = 1e-5,
        max_iter: int = 1000, seed: int = 0, var_floor: float = QUANTISATION_VARIANCE,
        fast: bool = True, block_rows: int | None = None, accelerate: bool = True,
        split_merge: int = 0, cancel=None) -> FitResult:
    """Fit a mixture of k isotropic Gaussians to X by EM.

    X: (N, D) samples (float32 keeps a float32 log-joint product where it rounds by less
    than 1e-8 nats); k >= 1 components;
    sample_weight: (N,) non-negative (e.g. pixel counts of distinct colours), None for
    ones; init: "kmeans++", "random" (the original study's start) or initial parameters
    (a Mixture or a (weights, means, variances) tuple, run once); n_init: restarts, the
    highest log-likelihood wins; tol: stop when an iteration gains less than this per
    unit of weight; max_iter: then a ConvergenceWarning; seed: numpy.random.default_rng's,
    the only randomness; var_floor: smallest variance; fast: the blocked engine (False:
    the textbook E-step on all rows at once; the same fit to rounding); block_rows: rows
    per block (None: from k); accelerate: SQUAREM (False: plain EM; both stop on a plain EM
    step that gains less than tol, near one of EM's fixed points); split_merge: after the restarts, this many best-ranked moves tried per
    round (0: none); cancel: None or a callable polled between iterations, restarts,
    the seeding's draws and the moves' passes, whose True raises Cancelled (an
    interactive caller's newer request).
    """
    X, w, k = validation.fit_arguments(
        X, k, sample_weight, tol=tol, max_iter=max_iter, n_init=n_init, var_floor=var_floor,
        seed=seed, block_rows=block_rows, accelerate=accelerate, fast=fast,
        split_merge=split_merge, cancel=cancel)
    if not isinstance(init, str):
        start, n_init = Mixture(*validation.start(init, k, X.shape[1])), 1
    elif init not in ("kmeans++", "random"):
        raise ValueError(f"init must be 'kmeans++', 'random' or initial parameters, "
                         f"got {init!r}")
    # A weight-0 sample adds nothing, but it may be the worst explained: a component
    # re-seeded there would die and be re-seeded there forever.
    X, w = (X, w) if w.all() else (X[w > 0], w[w > 0])
    rng = np.random.default_rng(seed)
    X64 = np.asarray(X, dtype=np.float64)
    blocks = blocked.Blocks(X64, w, k, X.dtype.type, block_rows=block_rows)  # Z-ordered
    engine = blocked.Engine(blocks) if fast else core.Dense(X64, w, X.dtype.type)

    def draw() -> Mixture:
        if not isinstance(init, str):
            return start
        if init == "kmeans++":
            return seeding.kmeans_plus_plus(blocks, k, rng, var_floor, cancel=cancel)
        return seeding.init_random(X64, w, k, rng)

    steps = squarem.accelerated if accelerate else core.em_steps
    best = core.best_of(engine, draw, n_init, tol, max_iter, var_floor, steps, cancel)
    if split_merge and k >= 3:
        best = moves.search(blocks, lambda s: core.run_em(engine, s, tol, max_iter, var_floor,
                                                          steps, cancel),
                            best, var_floor, split_merge, cancel)
    if not best.converged:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations (last gain per "
            f"sample {np.diff(best.history)[-1] / best.total_weight:.3g}, tol={tol:g}); "
            f"raise max_iter or tol", ConvergenceWarning, stacklevel=2)
    return best
