"""SQUAREM (Varadhan & Roland 2008, scheme S3; derivation, section 11), a wrapper around
EM's iterates (fit(accelerate=True), the default). From two EM steps theta0 -> theta1 ->
theta2 it extrapolates along the steps' direction, in coordinates where every point is a
mixture (means, log variances, log weights). The extrapolation is kept only when it
scores at least theta1, so the log-likelihood never decreases; otherwise theta2 is scored
as plain EM would have. Stopping is judged on plain EM steps only, so it stops near a
fixed point of EM, within the tolerance. `accelerated` yields what core.em_steps yields
and takes its place in core.run_em; its plain steps are core.em_step.
"""

from __future__ import annotations

import numpy as np

from em import core

# Largest step at the start, and its growth while extrapolations succeed.
STEP_MAX0, STEP_GROWTH = 4.0, 4.0


def extrapolate(m0: core.Mixture, m1: core.Mixture, m2: core.Mixture, step_max: float,
                var_floor: float):
    """The SQUAREM point from three successive EM iterates: with r = u1 - u0,
    v = u2 - 2 u1 + u0 and alpha = -||r|| / ||v|| clipped to [-step_max, -1], the trial is
    u0 - 2 alpha r + alpha^2 v (alpha = -1 gives u2). -> (trial Mixture, or None when it
    would be u2 or is undefined; alpha)."""
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
    return core.Mixture(weights / weights.sum(), u[:k * d].reshape(k, d), variances), alpha


def accelerated(engine, scored: core.Scored, var_floor: float, max_iter: int):
    """core.em_steps with SQUAREM: yields (scored, gain, reseeded) after every E-step.
    Once a plain step theta0 -> theta1 has been scored, EM's next point theta2 is replaced
    by the extrapolation; a kept one is yielded with gain None (not judged: its gain
    counts at the next plain step); a failed one costs an iteration (theta1 again), then
    theta2 is scored. The step bound grows while extrapolations reach it. The last of the
    max_iter iterations is always a plain step."""
    previous, step_max, jump = None, STEP_MAX0, 0.0  # previous: scored was EM's step from it
    n = 0  # iterations yielded
    while True:
        step = core.m_step_of(engine, scored, var_floor)
        mixture, reseeded = step
        if previous is not None and not reseeded and n + 1 < max_iter:
            trial, alpha = extrapolate(previous.mixture, scored.mixture, mixture, step_max,
                                       var_floor)
            step_max *= STEP_GROWTH if alpha == -step_max else 1.0
            if trial is not None:
                tried = engine.score(trial)
                n += 1
                if tried.log_likelihood >= scored.log_likelihood:
                    jump = tried.log_likelihood - scored.log_likelihood
                    previous, scored = None, tried
                    yield tried, None, False
                    continue
                step_max = max(STEP_MAX0, step_max / STEP_GROWTH)
                yield scored, None, False
        new, gain, reseeded = core.em_step(engine, scored, var_floor, step)
        gain = None if gain is None else max(gain, jump)  # a kept jump counts here
        previous, scored, jump, n = (None if reseeded else scored), new, 0.0, n + 1
        yield new, gain, reseeded
