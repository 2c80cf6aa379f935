"""Tests of the EM kernel (the package em, src/em/).

Every test asserts a property that the kernel could violate: agreement with a plain
reference implementation written below, monotone log-likelihood, recovery of known
parameters, invariances (weights vs repeated rows, blocks, threads, seeds), input
validation, degenerate cases and the queries. No result is hard-coded and nothing
is timed. Data are small (a downsampled photograph, a few thousand synthetic
samples) so that the whole file runs in seconds.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image
from scipy.special import logsumexp
from scipy.stats import norm

import em

FLOOR = em.QUANTISATION_VARIANCE


# ---------------------------------------------------------------------------- data

@functools.lru_cache(maxsize=None)
def photo(width: int = 80) -> np.ndarray:
    """Pixels of matplotlib's sample photograph (Grace Hopper), box-downsampled to
    `width` columns, as a read-only (N, 3) float64 array of multiples of 1/255."""
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(path) as image:
        image = image.convert("RGB")
        height = round(width * image.height / image.width)
        small = image.resize((width, height), Image.Resampling.BOX)
    X = np.asarray(small, dtype=np.float64).reshape(-1, 3) / 255.0
    X.setflags(write=False)
    return X


def draw_mixture(weights, means, sigmas, n: int, seed: int):
    """n samples of the isotropic mixture and their true labels: (n, D), (n,)."""
    rng = np.random.default_rng(seed)
    means = np.asarray(means, dtype=np.float64)
    labels = rng.choice(len(weights), size=n, p=weights)
    X = means[labels] + np.asarray(sigmas)[labels, None] * rng.standard_normal((n, means.shape[1]))
    return X, labels


# Three well-separated components in RGB: means more than 10 sigma apart.
SEPARATED = dict(weights=np.array([0.5, 0.3, 0.2]),
                 means=np.array([[0.20, 0.30, 0.25], [0.75, 0.60, 0.30], [0.40, 0.70, 0.80]]),
                 sigmas=np.array([0.03, 0.05, 0.04]))


@functools.lru_cache(maxsize=None)
def separated(n: int = 20000, seed: int = 0):
    X, labels = draw_mixture(SEPARATED["weights"], SEPARATED["means"], SEPARATED["sigmas"],
                             n, seed)
    X.setflags(write=False)
    return X, labels


def overlapping(d: int, n: int, seed: int):
    """Four overlapping components in d dimensions (EM needs many iterations), with
    an explicit, deliberately poor start. Returns X, sample weights, init."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(0.25, 0.75, size=(4, d))
    X, _ = draw_mixture(np.array([0.4, 0.3, 0.2, 0.1]), means,
                        np.array([0.08, 0.1, 0.07, 0.09]), n, seed + 1)
    w = rng.uniform(0.2, 3.0, size=n)
    init = (np.array([0.1, 0.2, 0.3, 0.4]),
            means + rng.uniform(-0.1, 0.1, size=means.shape),
            np.array([0.02, 0.05, 0.03, 0.04]))
    return X, w, init


def quiet_fit(*args, **kwargs) -> em.FitResult:
    """em.fit without the ConvergenceWarning (tests that run a fixed number of
    iterations stop at max_iter on purpose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", em.ConvergenceWarning)
        return em.fit(*args, **kwargs)


def fixed_iterations(X, k, init, n_iter, accelerate=False, **kwargs) -> em.FitResult:
    """Exactly n_iter iterations from `init` (tol so small it never triggers), plain
    EM unless asked otherwise."""
    result = quiet_fit(X, k, init=init, tol=1e-300, max_iter=n_iter, accelerate=accelerate,
                       **kwargs)
    assert result.n_iter == n_iter and len(result.history) == n_iter + 1
    return result


def assert_close(actual, expected, rtol, what="", elementwise=True):
    """|actual - expected| <= rtol * |expected| elementwise, or, with
    elementwise=False, <= rtol * max|expected| (for means, which may be near 0)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, what
    scale = np.abs(expected) if elementwise else np.abs(expected).max()
    err = np.abs(actual - expected)
    worst = np.max(err / np.maximum(scale, 1e-300))
    assert np.all(err <= rtol * scale), f"{what}: relative error {worst:.3g} > {rtol:g}"


# ------------------------------------------------------------ independent reference
# Written from the model's definition, in float64, without the kernel's tricks (no
# expansion of the squared distance, no shift, no blocks, no log-sum-exp).

def ref_log_prob(X, means, variances):
    """log prod_d N(x_d | mu_kd, sigma_k^2) with scipy's 1-D normal: (N, K)."""
    out = np.empty((len(X), len(means)))
    for k in range(len(means)):
        out[:, k] = norm.logpdf(X, loc=means[k], scale=math.sqrt(variances[k])).sum(axis=1)
    return out


def ref_joint(X, weights, means, variances):
    """pi_k prod_d N(x_d | mu_kd, sigma_k^2), the densities themselves: (N, K)."""
    out = np.empty((len(X), len(means)))
    for k in range(len(means)):
        out[:, k] = weights[k] * norm.pdf(X, loc=means[k],
                                          scale=math.sqrt(variances[k])).prod(axis=1)
    return out


def ref_e_step(X, weights, means, variances):
    """Responsibilities normalised directly, and log p(x_n): (N, K), (N,)."""
    joint = ref_joint(X, weights, means, variances)
    density = joint.sum(axis=1)
    assert np.all(density > 0), "reference needs data where densities do not underflow"
    return joint / density[:, None], np.log(density)


def ref_m_step(X, w, resp, var_floor=FLOOR):
    """Closed forms: N_k = sum w r, pi = N_k / sum w, mu = sum w r x / N_k,
    sigma^2 = sum w r ||x - mu||^2 / (D N_k), floored."""
    n, d = X.shape
    k = resp.shape[1]
    weights, means, variances = np.empty(k), np.empty((k, d)), np.empty(k)
    for j in range(k):
        wr = w * resp[:, j]
        nk = wr.sum()
        weights[j] = nk / w.sum()
        means[j] = (wr[:, None] * X).sum(axis=0) / nk
        variances[j] = (wr * ((X - means[j]) ** 2).sum(axis=1)).sum() / (d * nk)
    return weights, means, np.maximum(variances, var_floor)


def ref_em(X, w, init, n_iter, var_floor=FLOOR):
    """Plain EM: parameters after n_iter iterations and the log-likelihood history
    (initial parameters first), plus the unfloored variances seen (to check the
    floor did not bind)."""
    params = tuple(np.array(p, dtype=np.float64) for p in init)
    history = []
    for _ in range(n_iter):
        resp, log_density = ref_e_step(X, *params)
        history.append(w @ log_density)
        params = ref_m_step(X, w, resp, var_floor=0.0)
        assert params[2].min() > 10 * var_floor, "the floor would bind: choose other data"
    history.append(w @ ref_e_step(X, *params)[1])
    return params, np.array(history)


# --------------------------------------------------- 1. agreement with the reference

@pytest.mark.parametrize("d,weighted", [(3, False), (3, True), (5, True)])
def test_fit_agrees_with_reference_em(d, weighted):
    """20 iterations from the same explicit start: same parameters and the same
    log-likelihood history (history[0] at the start, history[t] after iteration t)
    as the plain reference, to 1e-9 relative."""
    X, w, init = overlapping(d, n=2000, seed=10 + d)
    if not weighted:
        w = np.ones(len(X))
    (weights, means, variances), history = ref_em(X, w, init, 20)
    result = fixed_iterations(X, 4, init, 20, sample_weight=w if weighted else None)

    assert np.all(np.diff(history) > 0) and abs(history[-1] - history[0]) > 1.0, \
        "test data should make EM move"
    assert_close(result.history, history, 1e-9, "history")
    assert result.log_likelihood == result.history[-1]
    assert_close(result.weights, weights, 1e-9, "weights")
    assert_close(result.means, means, 1e-9, "means", elementwise=False)
    assert_close(result.variances, variances, 1e-9, "variances")
    assert result.reseeds == () and not result.converged
    assert result.total_weight == pytest.approx(w.sum(), rel=1e-15)


def test_steps_agree_with_reference():
    """em.e_step and em.m_step against the reference, at two sets of parameters (the
    poor start and the start moved by one reference EM step)."""
    X, w, init = overlapping(3, n=1500, seed=3)
    resp0, _ = ref_e_step(X, *init)
    for params in (init, ref_m_step(X, w, resp0)):
        mixture = em.Mixture(*params)
        resp, log_density = ref_e_step(X, *params)
        got_resp, log_norm = em.e_step(X, mixture)
        assert got_resp.shape == resp.shape and log_norm.shape == (len(X),)
        assert_close(log_norm, log_density, 1e-10, "e_step log_norm")
        assert np.abs(got_resp - resp).max() <= 1e-10, "e_step responsibilities"

        got = em.m_step(X, resp, sample_weight=w)
        assert isinstance(got, em.Mixture)
        want = ref_m_step(X, w, resp)
        assert_close(got.weights, want[0], 1e-10, "m_step weights")
        assert_close(got.means, want[1], 1e-10, "m_step means", elementwise=False)
        assert_close(got.variances, want[2], 1e-10, "m_step variances")


def test_samples_far_from_every_component_stay_exact():
    """Samples whose densities underflow to 0 under every component (here: thousands
    of standard deviations away) go through the kernel's exact-maximum fallback: the
    log-likelihood and one EM step still match the reference computed in the log
    domain, in float64 and, with float32's bound, in float32."""
    rng = np.random.default_rng(7)
    near = rng.normal(0.5, 0.01, size=(300, 3))
    far = rng.uniform(-40.0, 40.0, size=(20, 3))
    X = np.vstack([near, far])
    init = (np.array([0.5, 0.3, 0.2]), np.array([[0.5, 0.5, 0.5], [0.49, 0.5, 0.51],
                                                 [0.52, 0.5, 0.48]]),
            np.array([1e-4, 2e-4, 3e-4]))
    log_joint = np.log(init[0]) + ref_log_prob(X, init[1], init[2])
    assert np.exp(log_joint[-20:]).max() == 0.0, "far samples should underflow"
    log_density = logsumexp(log_joint, axis=1)
    resp = np.exp(log_joint - log_density[:, None])
    weights, means, variances = ref_m_step(X, np.ones(len(X)), resp)

    assert_close(em.score_samples(em.Mixture(*init), X), log_density, 1e-12, "log p(x)")
    assert_close(em.log_likelihood(em.Mixture(*init), X), log_density.sum(), 1e-12, "log L")
    result = fixed_iterations(X, 3, init, 1)
    assert_close(result.history[0], log_density.sum(), 1e-12, "history[0]")
    assert_close(result.weights, weights, 1e-9, "weights")
    assert_close(result.means, means, 1e-9, "means", elementwise=False)
    assert_close(result.variances, variances, 1e-9, "variances")
    result32 = fixed_iterations(X.astype(np.float32), 3, init, 1)
    assert np.isfinite(result32.history).all()
    assert_close(result32.history[0], log_density.sum(), 1e-5, "float32 history[0]")


def test_m_step_applies_the_variance_floor():
    X, w, init = overlapping(3, n=500, seed=4)
    resp, _ = ref_e_step(X, *init)
    floor = 0.5 * ref_m_step(X, w, resp, var_floor=0.0)[2].max()  # binds for some
    got = em.m_step(X, resp, sample_weight=w, var_floor=floor)
    assert_close(got.variances, ref_m_step(X, w, resp, var_floor=floor)[2], 1e-10)
    assert got.variances.min() == floor


# ------------------------------------------------------------ 2. monotone likelihood

def assert_monotone(result: em.FitResult, rtol: float = 1e-12):
    history = result.history
    for t in range(1, len(history)):
        if t in result.reseeds:  # a re-seed may lower the likelihood once
            continue
        drop = history[t - 1] - history[t]
        assert drop <= rtol * abs(history[t - 1]), \
            f"log-likelihood fell by {drop:.3g} at iteration {t} of {len(history) - 1}"


@pytest.mark.parametrize("k", [2, 8, 32])
@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_likelihood_never_decreases_on_a_photograph(k, init):
    X = photo(80)
    for seed in (0, 1):
        result = quiet_fit(X, k, init=init, seed=seed, tol=1e-300, max_iter=60)
        assert_monotone(result)
        assert result.history[-1] > result.history[0]


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_likelihood_never_decreases_on_synthetic_data(k):
    X, w, _ = overlapping(3, n=3000, seed=7)
    for seed in (0, 1, 2):
        for weights in (None, w):
            for init in ("kmeans++", "random"):
                result = quiet_fit(X, k, sample_weight=weights, init=init, seed=seed,
                                   tol=1e-300, max_iter=60)
                assert_monotone(result)


def test_likelihood_never_decreases_on_distinct_colours_with_counts():
    colours, counts = np.unique(photo(80), axis=0, return_counts=True)
    for k in (4, 16):
        result = quiet_fit(colours, k, sample_weight=counts, seed=3, tol=1e-300, max_iter=60)
        assert_monotone(result)


# ----------------------------------------------------------- 3. parameter recovery

def test_recovers_a_known_mixture():
    """N = 20000 samples of a known, well-separated isotropic mixture (K = 3, D = 3).

    Sampling error: the weight of component k has standard error
    sqrt(pi_k (1 - pi_k) / N), each coordinate of its mean sigma_k / sqrt(N_k), and
    its variance (a chi-square with D N_k degrees of freedom, scaled) about
    sigma_k^2 sqrt(2 / (D N_k)). The fit must be within 5 standard errors of the
    truth. Moreover, components this far apart barely overlap, so the maximum-
    likelihood fit must equal the statistics of the true clusters (the samples
    grouped by their true labels) to a small fraction of a standard error.
    """
    X, labels = separated()
    n, d = X.shape
    truth = SEPARATED
    result = em.fit(X, 3, seed=0, tol=1e-10)
    assert result.converged

    # Match components by nearest means.
    dist = ((result.means[None, :, :] - truth["means"][:, None, :]) ** 2).sum(axis=2)
    order = dist.argmin(axis=1)
    assert sorted(order) == [0, 1, 2], "each true component needs its own fitted one"
    weights, means, variances = (result.weights[order], result.means[order],
                                 result.variances[order])

    n_k = truth["weights"] * n
    se_weight = np.sqrt(truth["weights"] * (1 - truth["weights"]) / n)
    se_mean = truth["sigmas"] / np.sqrt(n_k)
    se_var = truth["sigmas"] ** 2 * np.sqrt(2.0 / (d * n_k))
    assert np.all(np.abs(weights - truth["weights"]) < 5 * se_weight)
    assert np.all(np.abs(means - truth["means"]) < 5 * se_mean[:, None])
    assert np.all(np.abs(variances - truth["sigmas"] ** 2) < 5 * se_var)

    for j in range(3):
        cluster = X[labels == j]
        assert abs(weights[j] - len(cluster) / n) < 1e-3 * se_weight[j]
        assert np.all(np.abs(means[j] - cluster.mean(axis=0)) < 1e-3 * se_mean[j])
        spread = ((cluster - cluster.mean(axis=0)) ** 2).sum(axis=1).mean() / d
        assert abs(variances[j] - spread) < 1e-3 * se_var[j]


# ---------------------------------------------- 4. weighted distinct rows == all rows

def quantised_photo():
    """Photo pixels on a coarse grid (32 levels per channel): many repeated rows."""
    return np.round(photo(80) * 31.0) / 31.0


@pytest.mark.parametrize("k", [4, 16])
def test_weighted_distinct_rows_equal_all_rows(k):
    X = quantised_photo()
    colours, counts = np.unique(X, axis=0, return_counts=True)
    assert len(colours) < len(X) / 3, "the test needs many repeated rows"
    start = em.init_kmeans_plus_plus(colours, counts.astype(np.float64), k,
                                     np.random.default_rng(5))
    on_all = fixed_iterations(X, k, start, 25)
    on_distinct = fixed_iterations(colours, k, start, 25, sample_weight=counts)

    assert on_distinct.total_weight == on_all.total_weight == len(X)
    assert_close(on_distinct.history, on_all.history, 1e-9, "history")
    assert_close(on_distinct.weights, on_all.weights, 1e-9, "weights")
    assert_close(on_distinct.means, on_all.means, 1e-9, "means", elementwise=False)
    assert_close(on_distinct.variances, on_all.variances, 1e-9, "variances")
    assert on_distinct.reseeds == on_all.reseeds


def test_kmeans_plus_plus_with_counts():
    """init="kmeans++" on weighted distinct rows is the weighted seeding followed by
    EM (so the explicit-start comparison above covers it), and it depends on the
    weights only through their proportions: doubling every count (exact in floating
    point) gives the same draws, the same parameters and twice the log-likelihood."""
    colours, counts = np.unique(quantised_photo(), axis=0, return_counts=True)
    counts = counts.astype(np.float64)
    k, seed = 8, 11
    fitted = quiet_fit(colours, k, sample_weight=counts, init="kmeans++", seed=seed, max_iter=25)
    start = em.init_kmeans_plus_plus(colours, counts, k, np.random.default_rng(seed))
    by_hand = quiet_fit(colours, k, sample_weight=counts, init=start, max_iter=25)
    for name in ("weights", "means", "variances", "history"):
        assert np.array_equal(getattr(fitted, name), getattr(by_hand, name)), name

    doubled = quiet_fit(colours, k, sample_weight=2 * counts, init="kmeans++", seed=seed,
                        max_iter=25)
    assert_close(doubled.means, fitted.means, 1e-12, "means", elementwise=False)
    assert_close(doubled.variances, fitted.variances, 1e-12, "variances")
    assert_close(doubled.weights, fitted.weights, 1e-12, "weights")
    assert_close(doubled.history, 2 * fitted.history, 1e-12, "history")


def test_kmeans_plus_plus_draws_centres_from_weighted_samples():
    """Seeding picks centres among samples of positive weight; one per distinct
    sample when k equals the number of distinct samples."""
    X = np.array([[0.1, 0.1, 0.1], [0.9, 0.1, 0.5], [0.5, 0.8, 0.2], [0.3, 0.3, 0.9]])
    w = np.array([5.0, 0.0, 2.0, 1.0])
    for seed in range(10):
        start = em.init_kmeans_plus_plus(X, w, 3, np.random.default_rng(seed),
                                         lloyd_iterations=0)
        picked = sorted(int(np.flatnonzero((X == c).all(axis=1))[0]) for c in start.means)
        assert picked == [0, 2, 3]
        assert start.weights.sum() == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("k", [3, 12, 40])
def test_kmeans_plus_plus_lloyd_steps_are_weighted_lloyd(k):
    """After the greedy draws, the seeding's Lloyd steps (pruned by the blocks' boxes)
    are a plain weighted Lloyd loop: from the same draws, a brute-force loop over all
    centres gives the same means, and the weights and variances of the final hard
    assignment. Continuous samples (no exact ties, which the two loops could break
    apart), enough of them for many blocks."""
    rng = np.random.default_rng(8)
    centres_true = rng.uniform(0.1, 0.9, size=(30, 3))
    colours = (centres_true[rng.integers(30, size=30000)]
               + rng.normal(scale=0.02, size=(30000, 3)))
    w = rng.integers(1, 6, size=len(colours)).astype(np.float64)
    drawn = em.init_kmeans_plus_plus(colours, w, k, np.random.default_rng(5),
                                     lloyd_iterations=0).means
    centres = drawn.copy()
    for step in range(11):  # 10 Lloyd steps, then the assignment of the mixture
        sq = ((colours[:, None, :] - centres[None]) ** 2).sum(axis=2)
        labels = sq.argmin(axis=1)
        nk = np.bincount(labels, weights=w, minlength=k)
        if step == 10:
            break
        filled = nk > 0
        centres[filled] = (np.stack([np.bincount(labels, weights=w * colours[:, j],
                                                 minlength=k) for j in range(3)], axis=1)
                           [filled] / nk[filled, None])
    spread = np.bincount(labels, weights=w * sq[np.arange(len(w)), labels],
                         minlength=k) / (3 * np.maximum(nk, 1e-300))
    seeded = em.init_kmeans_plus_plus(colours, w, k, np.random.default_rng(5))
    assert_close(seeded.means, centres, 1e-12, "means", elementwise=False)
    assert_close(seeded.weights, nk / nk.sum(), 1e-12, "weights")
    assert_close(seeded.variances, np.maximum(spread, em.QUANTISATION_VARIANCE), 1e-9,
                 "variances")


def seeding_frequencies(init_function, X, w, k, n_draws):
    """How often each ordered tuple of sample indices is drawn as the initial means,
    over seeds 0 .. n_draws-1: dict (i, j, ...) -> count."""
    counts = {}
    for seed in range(n_draws):
        start = init_function(X, w, k, np.random.default_rng(seed))
        key = tuple(int(np.flatnonzero((X == c).all(axis=1))[0]) for c in start.means)
        counts[key] = counts.get(key, 0) + 1
    return counts


def assert_frequencies(counts, probabilities, n_draws):
    """Observed counts within 5 binomial standard errors of n_draws * p (fixed seeds,
    so this is deterministic; the bound is what makes it meaningful)."""
    assert set(counts) <= set(probabilities), "drew an impossible outcome"
    for key, p in probabilities.items():
        se = math.sqrt(n_draws * p * (1 - p))
        assert abs(counts.get(key, 0) - n_draws * p) <= 5 * se + 1e-9, key


def test_kmeans_plus_plus_draws_in_proportion_to_weight_times_squared_distance():
    """Greedy k-means++: first centre i with probability w_i / sum w; then
    2 + floor(log 2) = 2 candidates j1, j2, each drawn with probability
    w_j D_j^2 / sum_l w_l D_l^2 (D: distance to the first centre), and the one
    leaving the smaller potential sum_l w_l min(D_l^2, |x_l - x_j|^2) is kept (the
    first on a tie). The outcome probabilities are enumerated here."""
    X = np.array([[0.0], [1.0], [3.0]])
    w = np.array([3.0, 1.0, 2.0])
    n_draws = 1500
    probabilities = {}
    for i in range(3):
        d2 = (X[:, 0] - X[i, 0]) ** 2
        p = w * d2 / (w @ d2)
        potential = [w @ np.minimum(d2, (X[:, 0] - X[j, 0]) ** 2) for j in range(3)]
        for j1 in range(3):
            for j2 in range(3):
                kept = j2 if potential[j2] < potential[j1] else j1
                key = (i, kept)
                probabilities[key] = probabilities.get(key, 0.0) + w[i] / w.sum() * p[j1] * p[j2]
    probabilities = {key: p for key, p in probabilities.items() if p > 0}
    assert len(probabilities) == 6 and sum(probabilities.values()) == pytest.approx(1.0)
    def seeding(X, w, k, rng):
        return em.init_kmeans_plus_plus(X, w, k, rng, lloyd_iterations=0)

    counts = seeding_frequencies(seeding, X, w, 2, n_draws)
    assert_frequencies(counts, probabilities, n_draws)


def test_random_init_draws_in_proportion_to_weight():
    """The "random" start puts the means on distinct samples drawn with probability
    proportional to their weights; variances in (0, 1); equal weights."""
    X = np.array([[0.1, 0.2, 0.3], [0.6, 0.2, 0.9], [0.9, 0.9, 0.1], [0.4, 0.4, 0.4]])
    w = np.array([5.0, 0.0, 1.0, 2.0])
    n_draws = 1000
    counts = seeding_frequencies(em.init_random, X, w, 1, n_draws)
    assert_frequencies(counts, {(i,): w[i] / w.sum() for i in range(4) if w[i] > 0}, n_draws)
    for seed in range(20):
        start = em.init_random(X, w, 3, np.random.default_rng(seed))
        assert len(np.unique(start.means, axis=0)) == 3
        assert not any((start.means == X[1]).all(axis=1)), "drew a sample of weight 0"
        assert np.all((start.variances > 0) & (start.variances < 1))
        assert np.all(start.weights == 1 / 3)


def test_restarts_keep_the_best():
    """n_init restarts: the result is the restart with the highest final
    log-likelihood, and the first restart is the single-start fit of that seed."""
    X = photo(60)
    single = quiet_fit(X, 6, init="random", seed=3, max_iter=30)
    best = quiet_fit(X, 6, init="random", seed=3, n_init=4, max_iter=30)
    assert len(best.restarts) == 4 and len(np.unique(best.restarts)) > 1
    assert best.restarts[0] == single.log_likelihood
    assert best.log_likelihood == best.restarts.max()
    assert best.log_likelihood == best.history[-1]


# --------------------------------------------------------------- 5. reproducibility

def fields(result: em.FitResult) -> dict:
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}


def assert_identical(a: em.FitResult, b: em.FitResult):
    fa, fb = fields(a), fields(b)
    assert fa.keys() == fb.keys()
    for name in fa:
        assert np.array_equal(fa[name], fb[name]), f"{name} differs"


@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_same_seed_gives_identical_results(init):
    X = photo(60)
    runs = [quiet_fit(X, 6, init=init, seed=42, n_init=2, max_iter=40) for _ in range(2)]
    assert_identical(*runs)
    assert len(runs[0].restarts) == 2


@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_different_seeds_can_differ(init):
    X = photo(60)
    base = quiet_fit(X, 6, init=init, seed=0, max_iter=5)
    others = (quiet_fit(X, 6, init=init, seed=s, max_iter=5) for s in range(1, 6))
    assert any(not np.array_equal(o.means, base.means) for o in others)


# ----------------------------------------------------------------- 6. bad inputs

GOOD_X = np.random.default_rng(0).random((40, 3))
GOOD_INIT = (np.array([0.5, 0.5]), GOOD_X[:2].copy(), np.array([0.01, 0.02]))

BAD_INPUTS = {
    # X
    "X 1-D": (dict(X=GOOD_X[:, 0]), "X"),
    "X 3-D": (dict(X=GOOD_X[None]), "X"),
    "X no rows": (dict(X=np.zeros((0, 3))), "X"),
    "X no columns": (dict(X=np.zeros((40, 0))), "X"),
    "X NaN": (dict(X=np.where(GOOD_X > 0.9, np.nan, GOOD_X)), "X"),
    "X inf": (dict(X=np.where(GOOD_X > 0.9, -np.inf, GOOD_X)), "X"),
    "X strings": (dict(X=np.full((40, 3), "a")), "X"),
    "X objects": (dict(X=np.array([[0.1, None, 0.3]] * 40)), "X"),
    "X complex": (dict(X=GOOD_X + 1j), "X"),
    "X ragged": (dict(X=[[0.1, 0.2, 0.3], [0.1, 0.2]]), "X"),
    # sample_weight
    "sample_weight short": (dict(sample_weight=np.ones(39)), "sample_weight"),
    "sample_weight 2-D": (dict(sample_weight=np.ones((40, 1))), "sample_weight"),
    "sample_weight NaN": (dict(sample_weight=np.r_[np.nan, np.ones(39)]), "sample_weight"),
    "sample_weight inf": (dict(sample_weight=np.r_[np.inf, np.ones(39)]), "sample_weight"),
    "sample_weight negative": (dict(sample_weight=np.r_[-1.0, np.ones(39)]), "sample_weight"),
    "sample_weight all zero": (dict(sample_weight=np.zeros(40)), "sample_weight"),
    "sample_weight strings": (dict(sample_weight=["a"] * 40), "sample_weight"),
    # k
    "k 0": (dict(k=0), "k"),
    "k negative": (dict(k=-2), "k"),
    "k 2.5": (dict(k=2.5), "k"),
    "k float 2.0": (dict(k=2.0), "k"),
    "k '3'": (dict(k="3"), "k"),
    "k True": (dict(k=True), "k"),
    "k None": (dict(k=None), "k"),
    "k > samples": (dict(k=41), "k"),
    "k > positive weights": (dict(sample_weight=np.r_[np.ones(2), np.zeros(38)], k=3), "k"),
    # tol, max_iter, n_init, var_floor, block_rows, seed
    "tol 0": (dict(tol=0.0), "tol"),
    "tol negative": (dict(tol=-1e-6), "tol"),
    "tol NaN": (dict(tol=np.nan), "tol"),
    "tol inf": (dict(tol=np.inf), "tol"),
    "tol string": (dict(tol="1e-6"), "tol"),
    "tol True": (dict(tol=True), "tol"),
    "max_iter 0": (dict(max_iter=0), "max_iter"),
    "max_iter 2.5": (dict(max_iter=2.5), "max_iter"),
    "max_iter True": (dict(max_iter=True), "max_iter"),
    "n_init 0": (dict(n_init=0), "n_init"),
    "n_init 1.0": (dict(n_init=1.0), "n_init"),
    "var_floor 0": (dict(var_floor=0.0), "var_floor"),
    "var_floor NaN": (dict(var_floor=np.nan), "var_floor"),
    "var_floor inf": (dict(var_floor=np.inf), "var_floor"),
    "block_rows 0": (dict(block_rows=0), "block_rows"),
    "block_rows negative": (dict(block_rows=-64), "block_rows"),
    "block_rows 64.0": (dict(block_rows=64.0), "block_rows"),
    "seed negative": (dict(seed=-1), "seed"),
    "seed 1.5": (dict(seed=1.5), "seed"),
    "accelerate 1": (dict(accelerate=1), "accelerate"),
    "accelerate None": (dict(accelerate=None), "accelerate"),
    "fast 'yes'": (dict(fast="yes"), "fast"),
    "fast None": (dict(fast=None), "fast"),
    "cancel not callable": (dict(cancel=True), "cancel"),
    "split_merge negative": (dict(split_merge=-1), "split_merge"),
    "split_merge 1.5": (dict(split_merge=1.5), "split_merge"),
    "split_merge True": (dict(split_merge=True), "split_merge"),
    # init
    "init unknown string": (dict(init="kmeans"), "init"),
    "init None": (dict(init=None), "init"),
    "init two arrays": (dict(init=GOOD_INIT[:2]), "init"),
    "init weights shape": (dict(init=(np.full(3, 1 / 3),) + GOOD_INIT[1:]), "init"),
    "init means shape": (dict(init=(GOOD_INIT[0], GOOD_X[:2, :2], GOOD_INIT[2])), "init"),
    "init means rows": (dict(init=(GOOD_INIT[0], GOOD_X[:3], GOOD_INIT[2])), "init"),
    "init variances shape": (dict(init=GOOD_INIT[:2] + (np.full((2, 1), 0.01),)), "init"),
    "init weights sum": (dict(init=(np.array([0.5, 0.6]),) + GOOD_INIT[1:]), "init"),
    "init weights negative": (dict(init=(np.array([1.5, -0.5]),) + GOOD_INIT[1:]), "init"),
    "init variance zero": (dict(init=GOOD_INIT[:2] + (np.array([0.01, 0.0]),)), "init"),
    "init variance negative": (dict(init=GOOD_INIT[:2] + (np.array([0.01, -1.0]),)), "init"),
    "init NaN mean": (dict(init=(GOOD_INIT[0], np.full((2, 3), np.nan), GOOD_INIT[2])),
                      "init"),
    "init strings": (dict(init=(["a", "b"],) + GOOD_INIT[1:]), "init"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=str)
def test_bad_input_raises_value_error_naming_the_argument(case):
    overrides, name = BAD_INPUTS[case]
    args = dict(X=GOOD_X, k=2, max_iter=3)
    args.update(overrides)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        em.fit(args.pop("X"), args.pop("k"), **args)


def test_good_inputs_of_other_types_are_accepted():
    """The validation does not reject what it should accept: integer-typed k,
    max_iter and seed from numpy, a Mixture as init, integer and boolean samples,
    list inputs, zero weights on some samples."""
    result = quiet_fit(GOOD_X.tolist(), np.int64(2), max_iter=np.int32(3), seed=np.uint8(1),
                       sample_weight=np.r_[np.zeros(5), np.ones(35)].tolist())
    assert np.isfinite(result.means).all()
    quiet_fit(GOOD_X, 2, init=em.Mixture(*GOOD_INIT), max_iter=2)
    quiet_fit((GOOD_X * 255).astype(np.uint8), 2, max_iter=2, var_floor=1.0)
    quiet_fit(GOOD_X > 0.5, 2, max_iter=2)


@pytest.mark.parametrize("query", ["score_samples", "responsibilities", "predict",
                                   "reconstruct", "log_likelihood", "bic"])
def test_queries_validate_their_samples(query):
    mixture = em.Mixture(*GOOD_INIT)
    func = getattr(em, query)
    for bad in (GOOD_X[:, :2], GOOD_X[:, 0], np.full((3, 3), np.nan), np.zeros((0, 3))):
        with pytest.raises(ValueError, match=r"\bX\b"):
            func(mixture, bad)
    if query in ("log_likelihood", "bic"):
        with pytest.raises(ValueError, match=r"\bsample_weight\b"):
            func(mixture, GOOD_X, -np.ones(len(GOOD_X)))


# ---------------------------------------------------------------- 7. degenerate cases

def assert_finite(result: em.FitResult):
    for name in ("weights", "means", "variances", "history"):
        assert np.isfinite(getattr(result, name)).all(), name
    assert math.isfinite(result.log_likelihood)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_single_colour_image(dtype):
    colour = np.array([0.2, 0.4, 0.6])
    X = np.tile(colour, (500, 1)).astype(dtype)
    for result in (em.fit(X, 1), em.fit(X[:1], 1, sample_weight=[500.0])):
        assert_finite(result)
        assert result.converged
        assert result.weights.tolist() == [1.0]
        np.testing.assert_allclose(result.means[0], X[0].astype(np.float64), rtol=0, atol=1e-12)
        assert result.variances.tolist() == [FLOOR]  # the floor holds the variance
        expected = -500 * 1.5 * math.log(2 * math.pi * FLOOR)
        assert result.log_likelihood == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_k_above_the_number_of_distinct_samples_is_refused(init):
    colours = np.array([[0.1, 0.2, 0.3], [0.7, 0.1, 0.4], [0.5, 0.9, 0.2]])
    X = np.repeat(colours, 100, axis=0)
    with pytest.raises(ValueError, match=r"k \(=4\) exceeds the number of distinct samples"):
        em.fit(X, 4, init=init)
    with pytest.raises(ValueError, match=r"k \(=2\) exceeds the number of distinct samples"):
        em.fit(np.tile(colours[0], (50, 1)), 2, init=init)
    # the same three colours, one of them with weight 0
    with pytest.raises(ValueError, match=r"k \(=3\) exceeds the number of distinct samples"):
        em.fit(colours[[0, 1, 2, 0]], 3, sample_weight=[1.0, 1.0, 0.0, 2.0], init=init)


def test_variance_floor_holds_on_exact_colours():
    """A few exact colours with K equal to their number: each component sits on one
    colour with zero spread, so its variance is exactly the floor, never below."""
    colours = np.array([[0.1, 0.2, 0.3], [0.7, 0.1, 0.4], [0.5, 0.9, 0.2], [0.9, 0.9, 0.9]])
    X = np.repeat(colours, [50, 100, 150, 200], axis=0)
    for var_floor in (FLOOR, 1e-4):
        result = em.fit(X, 4, var_floor=var_floor)
        assert_finite(result)
        assert np.all(result.variances == var_floor)
        order = np.argsort(result.means[:, 0])
        np.testing.assert_allclose(result.means[order], colours[np.argsort(colours[:, 0])],
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.sort(result.weights), [0.1, 0.2, 0.3, 0.4], rtol=1e-12)


@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_variance_floor_holds_on_a_photograph(init):
    """A floor above some fitted variances binds there and nowhere goes below."""
    result = quiet_fit(photo(60), 16, init=init, var_floor=1e-3, max_iter=50)
    assert result.variances.min() == 1e-3
    assert_finite(result)


def far_component_start(X, n_far=1):
    """An explicit start with n_far components so far from every sample that their
    responsibilities underflow to exactly 0."""
    weights = np.r_[0.5, 0.5 - n_far * 1e-6, np.full(n_far, 1e-6)]
    far = 1e3 * (1 + np.arange(n_far))[:, None] * np.ones((n_far, X.shape[1]))
    means = np.r_[X[:1], X[-1:], far]
    return weights, means, np.full(2 + n_far, 0.01)


def test_component_that_loses_all_weight_is_reseeded():
    X, _ = separated(3000, seed=1)
    start = far_component_start(X)
    resp_far = em.e_step(X, em.Mixture(*start))[0][:, 2]
    assert np.all(resp_far == 0.0), "the far component must get nothing"

    result = quiet_fit(X, 3, init=start, max_iter=200)
    assert result.reseeds == (1,)
    assert result.converged
    assert_finite(result)
    assert np.all(result.weights > 0) and result.weights.sum() == pytest.approx(1.0)
    assert np.all(result.variances >= FLOOR)
    lo, hi = X.min(axis=0), X.max(axis=0)
    assert np.all((result.means >= lo) & (result.means <= hi)), "re-seeded inside the data"
    assert_monotone(result)


def test_several_dead_components_are_reseeded_apart():
    """Two components that die together must not be re-seeded on the same sample
    (they would be identical and stay identical): one is re-seeded per iteration."""
    X, _ = separated(3000, seed=2)
    result = quiet_fit(X, 4, init=far_component_start(X, n_far=2), max_iter=200)
    assert result.reseeds == (1, 2)
    assert_finite(result)
    assert np.all(result.weights > 0)
    gaps = np.sqrt(((result.means[:, None] - result.means[None]) ** 2).sum(axis=2))
    assert gaps[np.triu_indices(4, 1)].min() > 1e-3, "two components coincide"


def test_zero_weight_samples_are_ignored():
    """A sample of weight 0 must not matter, not even as the worst-explained sample
    where a dead component is re-seeded (it would get weight 0 and die forever)."""
    X, _ = separated(3000, seed=1)
    far = np.array([[5.0, 5.0, 5.0]])
    X_with = np.r_[X[:1500], far, X[1500:]]
    w_with = np.r_[np.ones(1500), 0.0, np.ones(1500)]
    start = far_component_start(X)
    with_zero = quiet_fit(X_with, 3, sample_weight=w_with, init=start, max_iter=200)
    without = quiet_fit(X, 3, init=start, max_iter=200)
    assert with_zero.reseeds == (1,) and with_zero.converged
    assert_identical(with_zero, without)
    for init in ("kmeans++", "random"):
        assert_identical(quiet_fit(X_with, 3, sample_weight=w_with, init=init, seed=4, max_iter=30),
                         quiet_fit(X, 3, init=init, seed=4, max_iter=30))


# ---------------------------------------------------------------------- 8. stopping

def test_max_iter_without_convergence_warns():
    X, w, init = overlapping(3, n=1000, seed=5)
    with pytest.warns(em.ConvergenceWarning, match="max_iter=3"):
        result = em.fit(X, 4, init=init, max_iter=3, tol=1e-12)
    assert not result.converged
    assert result.n_iter == 3 and len(result.history) == 4


def test_convergence_stops_early_without_warning():
    """Overlapping components: the gain shrinks slowly, so the stopping rule (gain
    per unit of sample weight below tol) is tested at the iteration it triggers."""
    X, w, init = overlapping(3, n=1000, seed=5)
    tol = 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("error", em.ConvergenceWarning)
        result = em.fit(X, 4, sample_weight=w, init=init, tol=tol, max_iter=2000,
                        accelerate=False)
    assert result.converged and 10 < result.n_iter < 2000
    gains = np.diff(result.history) / result.total_weight
    assert abs(gains[-1]) < tol, "stopped because the gain fell below tol"
    assert np.all(gains[:-1] >= tol), "did not stop before the gain fell below tol"


# ----------------------------------------------------------------------- 9. float32

def test_float32_stays_float32_and_agrees_with_float64():
    """float32 samples: the E-step (the (rows, K) log-joint block) runs in float32,
    the sums and the returned parameters are float64, the input is not modified.

    Agreement with the float64 fit from the same explicit start, after 30
    iterations, on the photo downsampled to 100 x 117 (11700 pixels), K = 16 and
    32, two k-means++ starts each. The log-joint's expansion rounds by up to
    (D+2) eps32/2 (|y| + |mu|)^2 / (2 s^2) nats, about 1e-1 for tight components away
    from the centre of the colours; such components are computed from float64
    differences instead (core.log_joint_model), so what float32 leaves is its exp and
    the products of broad components. Measured here (worst of the four fits): every
    history entry within 8.4e-8 nats per pixel, means within 6e-8, weights within 1e-8,
    variances within 1.7e-6 relative (before the differences: 7.7e-5, 3.1e-6, 7.9e-6
    and 6.0e-5). Bounds, kept from then: 2e-4 nats per pixel, 1e-4 for means and
    weights, 1e-2 relative for variances.
    """
    X = photo(100)
    X32 = X.astype(np.float32)
    before = X32.copy()
    n = len(X)
    for k in (16, 32):
        blocks = em.blocked.Blocks(X32, np.ones(n), k, np.float32)
        mixture = em.Mixture(np.full(k, 1.0 / k), X[:k], np.full(k, 0.01))
        model = em.core.log_joint_model(mixture, blocks.shift, blocks.radius, np.float32)
        assert em.core.log_joint(blocks.xa[blocks.slices[0]], model).dtype == np.float32

        for seed in (0, 1):
            start = em.init_kmeans_plus_plus(X, np.ones(n), k, np.random.default_rng(seed))
            r64 = fixed_iterations(X, k, start, 30)
            r32 = fixed_iterations(X32, k, start, 30)
            for name in ("weights", "means", "variances", "history"):
                assert getattr(r32, name).dtype == np.float64, name
            assert np.abs(r32.history - r64.history).max() / n < 2e-4
            assert np.abs(r32.means - r64.means).max() < 1e-4
            assert np.abs(r32.weights - r64.weights).max() < 1e-4
            assert np.abs(r32.variances / r64.variances - 1).max() < 1e-2
    assert np.array_equal(X32, before)


# ----------------------------------------------------------------------- 10. queries

def test_queries_match_the_reference():
    X, _ = separated(2000, seed=4)
    rng = np.random.default_rng(8)
    queries = np.r_[X[:500], rng.uniform(0, 1, size=(200, 3))]
    w = rng.uniform(0.5, 4.0, size=len(queries))
    fitted = em.fit(X, 3, seed=1)
    for mixture in (fitted, fitted.mixture):
        resp_ref, log_density_ref = ref_e_step(queries, mixture.weights, mixture.means,
                                               mixture.variances)
        resp = em.responsibilities(mixture, queries)
        assert resp.shape == (len(queries), 3)
        np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(resp, em.e_step(queries, mixture)[0],
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(resp, resp_ref, rtol=0, atol=1e-10)

        labels = em.predict(mixture, queries)
        assert labels.dtype == np.int64
        assert np.array_equal(labels, resp.argmax(axis=1))
        assert np.array_equal(em.reconstruct(mixture, queries), mixture.means[labels])

        scores = em.score_samples(mixture, queries)
        assert_close(scores, log_density_ref, 1e-10, "score_samples")
        assert em.log_likelihood(mixture, queries) == pytest.approx(scores.sum(), rel=1e-12)
        assert em.log_likelihood(mixture, queries, w) == pytest.approx(w @ scores, rel=1e-12)

        p = (3 - 1) + 3 * 3 + 3
        assert em.bic(mixture, queries, w) == pytest.approx(
            -2 * (w @ log_density_ref) + p * math.log(w.sum()), rel=1e-10)
        assert em.bic(mixture, queries) == pytest.approx(
            -2 * log_density_ref.sum() + p * math.log(len(queries)), rel=1e-10)

    # the fit reports the log-likelihood the query computes for its parameters
    assert fitted.log_likelihood == pytest.approx(em.log_likelihood(fitted, X), rel=1e-12)


@pytest.mark.parametrize("k,d", [(1, 1), (1, 3), (4, 3), (7, 5)])
def test_n_parameters_counts_free_parameters(k, d):
    """Every weight, mean coordinate and variance, less one for sum(weights) = 1."""
    m = em.Mixture(np.full(k, 1.0 / k), np.zeros((k, d)), np.ones(k))
    assert em.n_parameters(k, d) == m.weights.size + m.means.size + m.variances.size - 1


def test_queries_with_a_weightless_component():
    """A component of weight exactly 0 never wins and gets no responsibility."""
    weights = np.array([0.6, 0.4, 0.0])
    means = np.array([[0.2, 0.2, 0.2], [0.8, 0.8, 0.8], [0.5, 0.5, 0.5]])
    mixture = em.Mixture(weights, means, np.full(3, 0.01))
    X = np.random.default_rng(0).random((300, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resp = em.responsibilities(mixture, X)
        resp_e, log_norm = em.e_step(X, mixture)
    assert np.all(resp[:, 2] == 0) and np.all(resp_e[:, 2] == 0)
    assert np.all(em.predict(mixture, X) != 2)
    assert np.all(np.isfinite(log_norm))
    assert_close(em.score_samples(mixture, X), ref_e_step(X, *dataclasses.astuple(mixture))[1],
                 1e-10, "score_samples")


# -------------------------------------------------- 11. blocks and threads

def test_block_size_changes_only_rounding():
    """Blocks of 64 rows against one block: the sums are added in another order, so
    results may differ by rounding only (1e-12 relative). On data whose components
    sit far from the centre of the data with tiny variances, the variance
    E||x - shift||^2 - ||mu - shift||^2 loses about log10(||mu - shift||^2 / s^2)
    digits to cancellation; here that ratio is small."""
    X, w, init = overlapping(3, n=4000, seed=6)
    one_block = fixed_iterations(X, 4, init, 30, sample_weight=w)
    small = fixed_iterations(X, 4, init, 30, sample_weight=w, block_rows=64)
    assert len(em.blocked.Blocks(X, w, 4, np.float64).slices) == 1
    assert_close(small.weights, one_block.weights, 1e-12, "weights")
    assert_close(small.means, one_block.means, 1e-12, "means", elementwise=False)
    assert_close(small.variances, one_block.variances, 1e-12, "variances")
    assert_close(small.history, one_block.history, 1e-12, "history")


def test_results_do_not_depend_on_the_number_of_threads(monkeypatch):
    X = photo(60)
    results = []
    for threads in (1, 2, 4):
        pool = ThreadPoolExecutor(max_workers=threads)
        monkeypatch.setattr(em.blocked, "_POOL", pool)
        try:
            results.append(quiet_fit(X, 8, seed=2, block_rows=128, max_iter=20))
        finally:
            pool.shutdown()
    assert all(len(r.history) > 1 for r in results)
    assert_identical(results[0], results[1])
    assert_identical(results[0], results[2])


def test_seeding_does_not_depend_on_the_machines_worker_count(monkeypatch):
    """The greedy draws split the rows into runs on the pool (enough rows here for
    several); a machine with 1, 2 or 4 workers draws the same centres, bit for bit."""
    rng = np.random.default_rng(4)
    X = rng.uniform(size=(70000, 3))
    w = rng.integers(1, 9, size=len(X)).astype(np.float64)
    starts = []
    for workers in (1, 2, 4):
        pool = ThreadPoolExecutor(max_workers=workers)
        monkeypatch.setattr(em.blocked, "_POOL", pool)
        monkeypatch.setattr(em.blocked, "WORKERS", workers)
        try:
            starts.append(em.init_kmeans_plus_plus(X, w, 8, np.random.default_rng(1)))
        finally:
            pool.shutdown()
    for other in starts[1:]:
        for name in ("weights", "means", "variances"):
            assert np.array_equal(getattr(other, name), getattr(starts[0], name)), name


def test_same_call_twice_is_bit_identical():
    X = photo(60)
    for block_rows in (None, 64):
        a = quiet_fit(X, 8, seed=9, block_rows=block_rows, max_iter=20)
        b = quiet_fit(X, 8, seed=9, block_rows=block_rows, max_iter=20)
        assert_identical(a, b)


# ------------------------------------------------------------- 12. nearest centre

def test_nearest_centre_matches_brute_force():
    """Labels are the argmin of the directly computed distances (ties aside), and the
    distances returned are exactly ||x - c_label||^2."""
    X = photo(60)
    centres = X[np.random.default_rng(3).choice(len(X), size=17, replace=False)]
    labels, sq_dist = em.nearest_centre(X, centres)
    direct = ((X[:, None, :] - centres[None]) ** 2).sum(axis=2)
    assert labels.dtype == np.int64 and sq_dist.shape == (len(X),)
    assert np.allclose(direct[np.arange(len(X)), labels], direct.min(axis=1), rtol=0, atol=1e-15)
    assert np.array_equal(sq_dist, ((X - centres[labels]) ** 2).sum(axis=1))


# ------------------------------------------------------------- 13. acceleration

def test_accelerated_and_plain_em_reach_the_same_fixed_point():
    """SQUAREM changes the path, not the fixed point: run to tol = 1e-12 nats per
    unit weight from the same start, accelerated and plain EM agree on the
    parameters (measured: means and weights within 2e-7, variances 6e-7 relative;
    bounds 1e-6, 1e-6, 1e-5) and on the log-likelihood (1e-10 per unit weight), in
    fewer iterations; the accelerated history never decreases."""
    X, w, init = overlapping(3, n=3000, seed=12)
    plain = em.fit(X, 4, sample_weight=w, init=init, tol=1e-12, max_iter=10000,
                   accelerate=False)
    fast = em.fit(X, 4, sample_weight=w, init=init, tol=1e-12, max_iter=10000)
    assert plain.converged and fast.converged and fast.n_iter < plain.n_iter
    assert np.abs(fast.means - plain.means).max() < 1e-6
    assert np.abs(fast.weights - plain.weights).max() < 1e-6
    assert np.abs(fast.variances / plain.variances - 1).max() < 1e-5
    assert abs(fast.log_likelihood - plain.log_likelihood) < 1e-10 * plain.total_weight
    assert_monotone(fast)


@pytest.mark.parametrize("k", [8, 16])
def test_accelerated_em_on_a_photograph(k):
    """On a photograph, where EM crawls, to tol = 1e-11: the same optimum (measured:
    means within 7e-6, variances 5e-5 relative; bounds 1e-4, 1e-3) and a history
    that never decreases, also with the fixed iteration counts of other tests."""
    X = photo(60)
    plain = em.fit(X, k, seed=1, tol=1e-11, max_iter=100000, accelerate=False)
    fast = em.fit(X, k, seed=1, tol=1e-11, max_iter=100000)
    assert fast.n_iter < plain.n_iter
    assert np.abs(fast.means - plain.means).max() < 1e-4
    assert np.abs(fast.variances / plain.variances - 1).max() < 1e-3
    assert fast.log_likelihood >= plain.log_likelihood - 1e-9 * plain.total_weight
    assert_monotone(fast)
    short = fixed_iterations(X, k, em.init_kmeans_plus_plus(X, np.ones(len(X)), k,
                                                            np.random.default_rng(1)),
                             40, accelerate=True)
    assert_monotone(short)


# ------------------------------------------------------- 14. skipped components

def test_skipping_far_components_changes_nothing_but_rounding():
    """Per block, components that weigh less than exp(-50) of every row's density
    are skipped (responsibility 0). Against the reference (no skipping, scipy) on
    a photograph with K = 64 tight components, where most are skipped in most
    blocks: log p(x) and the responsibilities agree to 1e-10 (absolute; what the
    expansion of the squared distance rounds to with such tight components, with or
    without skipping), one EM step to 1e-9 relative."""
    X = photo(60)
    k = 64
    start = em.init_kmeans_plus_plus(X, np.ones(len(X)), k, np.random.default_rng(0))
    mixture = em.Mixture(start.weights, start.means, start.variances / 10)
    blocks = em.blocked.Blocks(X, np.ones(len(X)), k, block_rows=64)
    model = em.core.log_joint_model(mixture, blocks.shift, blocks.radius)
    skipped = 1 - blocks.live(model)[0].mean()
    assert skipped > 0.5, "the test needs components to be skipped"

    log_joint = np.log(mixture.weights) + ref_log_prob(X, mixture.means, mixture.variances)
    log_density = logsumexp(log_joint, axis=1)
    resp = np.exp(log_joint - log_density[:, None])
    assert np.abs(em.score_samples(mixture, X) - log_density).max() < 1e-10
    assert np.abs(em.responsibilities(mixture, X) - resp).max() < 1e-10
    weights, means, variances = ref_m_step(X, np.ones(len(X)), resp)
    result = fixed_iterations(X, k, mixture, 1, block_rows=64)
    assert_close(result.history[0], log_density.sum(), 1e-12, "history[0]")
    assert_close(result.weights, weights, 1e-9, "weights")
    assert_close(result.means, means, 1e-9, "means", elementwise=False)
    assert_close(result.variances, variances, 1e-9, "variances")
    assert np.array_equal(em.predict(mixture, X), np.argmax(log_joint, axis=1))


def test_lloyd_iterations_never_raise_the_k_means_objective():
    """The k-means++ start's Lloyd steps: the weighted objective sum_n w_n min_k
    ||x_n - mu_k||^2 of the start's means never increases with more steps."""
    colours, counts = np.unique(quantised_photo(), axis=0, return_counts=True)
    counts = counts.astype(np.float64)
    objective = []
    for steps in (0, 1, 3, 10):
        start = em.init_kmeans_plus_plus(colours, counts, 12, np.random.default_rng(2),
                                         lloyd_iterations=steps)
        objective.append(counts @ em.nearest_centre(colours, start.means)[1])
    assert np.all(np.diff(objective) <= 1e-12 * objective[0]) and objective[-1] < objective[0]


# ------------------------------------------------------------------ split and merge

def three_clusters(n=300, seed=0):
    """Three round clusters of equal size in the RGB cube: (3n, 3)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.2, 0.2, 0.2], [0.8, 0.2, 0.3], [0.5, 0.8, 0.6]])
    return np.repeat(centres, n, axis=0) + rng.normal(0.0, 0.03, (3 * n, 3)), centres


def test_split_merge_leaves_a_basin_plain_em_cannot():
    """Two components on one cluster and one across the other two is a fixed point
    EM does not leave; a split-and-merge move does, and finds the three clusters."""
    X, centres = three_clusters()
    stuck = em.Mixture(np.array([1 / 6, 1 / 6, 2 / 3]),
                       np.array([[0.19, 0.2, 0.2], [0.21, 0.2, 0.2], [0.65, 0.5, 0.45]]),
                       np.array([0.001, 0.001, 0.05]))
    plain = em.fit(X, 3, init=stuck, tol=1e-8, max_iter=2000)
    moved = em.fit(X, 3, init=stuck, tol=1e-8, max_iter=2000, split_merge=3)
    found = np.sort(moved.means, axis=0)
    assert np.abs(found - np.sort(centres, axis=0)).max() < 0.01
    assert moved.mean_log_likelihood > plain.mean_log_likelihood + 0.1
    assert len(moved.moves) >= 1 and moved.move_trials >= len(moved.moves)


@pytest.mark.parametrize("k", [4, 12])
def test_split_merge_history_and_its_moves(k):
    """The result is never below the restarts' best; the history climbs between the
    kept moves (and re-seeds), ends at the returned log-likelihood, and has n_iter + 1
    entries; each kept move gained more than the threshold."""
    X = photo(60)
    base = quiet_fit(X, k, seed=1, tol=1e-5, max_iter=500)
    result = quiet_fit(X, k, seed=1, tol=1e-5, max_iter=500, split_merge=3)
    assert result.log_likelihood >= base.log_likelihood
    np.testing.assert_array_equal(result.restarts, base.restarts)
    assert len(result.history) == result.n_iter + 1
    assert result.history[-1] == result.log_likelihood
    drops = set(result.moves) | set(result.reseeds)  # iterations: history[i - 1] -> [i]
    steps = np.diff(result.history)
    assert all(step >= 0 for i, step in enumerate(steps) if i + 1 not in drops)
    if result.moves:
        before = result.history[result.moves[0] - 1]
        assert result.log_likelihood > before + em.split_merge.MOVE_GAIN * len(X)


def test_split_merge_is_deterministic_whatever_the_threads(monkeypatch):
    X = photo(60)
    first = em.fit(X, 8, seed=2, tol=1e-4, split_merge=2)
    monkeypatch.setattr(em.blocked, "_POOL", ThreadPoolExecutor(max_workers=1))
    again = em.fit(X, 8, seed=2, tol=1e-4, split_merge=2)
    for name in ("weights", "means", "variances", "history"):
        assert getattr(first, name).tobytes() == getattr(again, name).tobytes(), name
    assert (first.moves, first.move_trials) == (again.moves, again.move_trials)


def _prepared_fit(k, seed=1, block_rows=None, dtype=np.float64):
    X = photo(60)
    w = np.ones(len(X))
    fitted = em.fit(X, k, seed=seed, tol=1e-5, max_iter=500)
    return X, w, fitted.mixture, em.blocked.Blocks(X, w, k, dtype=dtype, block_rows=block_rows)


@pytest.mark.parametrize("k, block_rows, dtype", [(4, None, np.float64), (12, None, np.float64),
                                                  (4, 64, np.float64), (12, 64, np.float32)])
def test_predicted_merge_and_split_changes_are_the_log_likelihood_changes(k, block_rows, dtype):
    """A move's prediction is exact, not an estimate: merging pair (i, j) into one
    component changes the log-likelihood by the predicted merge change, and putting
    component s's two halves in its place by the predicted split gain, each checked
    against log_likelihood of the changed mixture; also with small blocks, where
    most components are pruned, and with float32 samples."""
    X, w, mixture, blocks = _prepared_fit(k, block_rows=block_rows, dtype=dtype)
    pairs, merge, halves, gains = em.split_merge.move_gains(blocks, mixture, em.QUANTISATION_VARIANCE)
    base = em.log_likelihood(mixture, X)
    assert len(pairs) >= k - 1 and (pairs[:, 0] < pairs[:, 1]).all()
    for p, (i, j) in enumerate(pairs):
        merged = em.split_merge.merged_pairs(mixture, pairs[[p]])
        keep = np.setdiff1d(np.arange(k), [i, j])
        changed = em.Mixture(np.r_[mixture.weights[keep], merged.weights],
                             np.vstack([mixture.means[keep], merged.means]),
                             np.r_[mixture.variances[keep], merged.variances])
        assert em.log_likelihood(changed, X) - base == pytest.approx(merge[p], abs=1e-7 * len(X))
    for s in range(k):
        keep = np.setdiff1d(np.arange(k), [s])
        two = [2 * s, 2 * s + 1]
        changed = em.Mixture(np.r_[mixture.weights[keep], halves.weights[two]],
                             np.vstack([mixture.means[keep], halves.means[two]]),
                             np.r_[mixture.variances[keep], halves.variances[two]])
        assert em.log_likelihood(changed, X) - base == pytest.approx(gains[s], abs=1e-7 * len(X))
        # the halves share the component's weight
        assert halves.weights[two].sum() == pytest.approx(mixture.weights[s], rel=1e-3)
    assert (gains > -1e-9 * len(X)).all()  # two halves fit at least as well as one


def test_move_gains_far_outlier_and_weightless_components():
    """A merge that explains a far sample vastly better than the mixture does has a
    finite, exact (here very large) gain, not an overflow; pairs of components without
    weight are not merge candidates, and the others' predictions stay finite."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.1, 0.1, 0.1], [0.12, 0.1, 0.1], [0.9, 0.9, 0.9], [0.88, 0.9, 0.9]])
    X = np.vstack([np.repeat(centres, 200, axis=0) + rng.normal(0, 0.002, (800, 3)),
                   [[0.5, 0.5, 0.5]]])
    w = np.ones(len(X))
    tight = em.Mixture(np.full(4, 0.25), centres, np.full(4, 1e-5))
    blocks = em.blocked.Blocks(X, w, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        pairs, merge, halves, gains = em.split_merge.move_gains(blocks, tight, em.QUANTISATION_VARIANCE)
    assert np.isfinite(merge).all() and np.isfinite(gains).all()
    for p, (i, j) in enumerate(pairs):
        merged = em.split_merge.merged_pairs(tight, pairs[[p]])
        keep = np.setdiff1d(np.arange(4), [i, j])
        changed = em.Mixture(np.r_[tight.weights[keep], merged.weights],
                             np.vstack([tight.means[keep], merged.means]),
                             np.r_[tight.variances[keep], merged.variances])
        change = em.log_likelihood(changed, X) - em.log_likelihood(tight, X)
        assert merge[p] == pytest.approx(change, rel=1e-9, abs=1e-6)
    assert merge.max() > 1000  # the outlier alone gains thousands of nats in some merge
    # the reverse: a light, broad component alone explains the outlier; merged with a
    # heavy, tight one it explains it thousands of nats worse, and the loss is exact
    lonely = em.Mixture(np.array([0.001, 0.999]), np.array([[0.5, 0.5, 0.5], [0.1, 0.1, 0.1]]),
                        np.array([0.05, 1e-6]))
    X2 = np.vstack([X[:200], [[0.95, 0.95, 0.95]]])
    blocks2 = em.blocked.Blocks(X2, np.ones(len(X2)), 2)
    pairs2, merge2, _, _ = em.split_merge.move_gains(blocks2, lonely, em.QUANTISATION_VARIANCE)
    merged = em.split_merge.merged_pairs(lonely, pairs2)
    change = em.log_likelihood(merged, X2) - em.log_likelihood(lonely, X2)
    assert change < -1000 and merge2[0] == pytest.approx(change, rel=1e-9)
    dead = em.Mixture(np.array([0.5, 0.5, 0.0, 0.0]), centres, np.full(4, 1e-3))
    pairs, merge, halves, gains = em.split_merge.move_gains(blocks, dead, em.QUANTISATION_VARIANCE)
    assert [2, 3] not in pairs.tolist() and np.isfinite(merge).all()
    assert np.isfinite(gains).all()


def test_ranked_moves_and_the_mixtures_they_give():
    """Every valid move (split s, merge pair p not holding s) is ranked, by decreasing
    predicted gain gains[s] + merge[p]. A move changes exactly three components: s and
    the pair's second take s's halves, the pair's first the merged component. A batch
    holds moves predicted to gain, on disjoint components, in rank order."""
    X, w, mixture, blocks = _prepared_fit(16)
    pairs, merge, halves, gains = em.split_merge.move_gains(blocks, mixture, em.QUANTISATION_VARIANCE)
    ranked = em.split_merge.ranked_moves(pairs, merge, gains)
    valid = {(s, p) for s in range(16) for p, pair in enumerate(pairs) if s not in pair}
    assert {(int(s), int(p)) for _, s, p in ranked} == valid and len(ranked) == len(valid)
    assert (np.diff(ranked[:, 0]) <= 0).all()
    assert all(g == gains[int(s)] + merge[int(p)] for g, s, p in ranked)
    merged = em.split_merge.merged_pairs(mixture, pairs)
    for row in ranked[:5]:
        s, p = int(row[1]), int(row[2])
        i, j = pairs[p]
        start = em.split_merge.moved(mixture, row[None], pairs, halves)
        assert start.weights.sum() == pytest.approx(1.0) and (start.variances > 0).all()
        assert set(np.flatnonzero((start.means != mixture.means).any(axis=1))) == {s, i, j}
        assert start.means[i].tolist() == merged.means[p].tolist()
        assert start.means[s].tolist() == halves.means[2 * s].tolist()
        assert start.means[j].tolist() == halves.means[2 * s + 1].tolist()
    batch = em.split_merge.disjoint_batch(ranked, pairs, 3)
    touched = [{int(s), *pairs[int(p)].tolist()} for _, s, p in batch]
    assert len(batch) == 3 and (batch[:, 0] > 0).all()  # here 69 moves are predicted to gain
    assert sum(map(len, touched)) == len(set().union(*touched))  # disjoint
    rows = [np.flatnonzero((ranked == move).all(axis=1))[0] for move in batch]
    assert rows[0] == 0 and rows == sorted(rows)
    # every better-ranked move left out shares a component with one taken before it
    for row in range(rows[-1]):
        if row not in rows:
            s, p = int(ranked[row, 1]), int(ranked[row, 2])
            assert {s, *pairs[p].tolist()} & set().union(*touched[:np.searchsorted(rows, row)])
    start = em.split_merge.moved(mixture, batch, pairs, halves)
    assert len(np.flatnonzero((start.means != mixture.means).any(axis=1))) == 9


def test_a_batch_of_moves_is_tried_first_and_kept_when_it_gains():
    """With several disjoint moves predicted to gain, a round's first start applies them
    all at once; here (K = 16) that batch is kept: the result's history runs on with
    the batch's fit right after the best restart's. The search is fit's: the same
    result as fit(split_merge=2)."""
    X = photo(60)
    w = np.ones(len(X))
    base = em.fit(X, 16, seed=1, tol=1e-5, max_iter=500)
    blocks = em.blocked.Blocks(X, w, 16)
    engine = em.blocked.Engine(blocks)
    starts, fits = [], []

    def run(start):
        starts.append(start)
        fits.append(em.core.run_em(engine, start, 1e-5, 500, FLOOR, em.squarem.accelerated))
        return fits[-1]

    result = em.split_merge.search(blocks, run, base, FLOOR, 2)
    changed = (starts[0].means != base.means).any(axis=1).sum()
    assert changed > 3 and result.move_trials == len(starts)  # several moves: a batch
    assert result.moves[0] == base.n_iter + 1
    segment = result.history[base.n_iter + 1:base.n_iter + len(fits[0].history)]
    np.testing.assert_array_equal(segment, fits[0].history[1:])
    assert fits[0].log_likelihood > base.log_likelihood + em.split_merge.MOVE_GAIN * len(X)
    assert_identical(result, em.fit(X, 16, seed=1, tol=1e-5, max_iter=500, split_merge=2))


def test_split_merge_needs_three_components():
    X, _ = three_clusters(50)
    result = em.fit(X, 2, seed=0, split_merge=5)
    assert result.moves == () and result.move_trials == 0


@pytest.mark.parametrize("k", [3, 40])
def test_fit_starts_from_init_kmeans_plus_plus_with_the_same_draws(k):
    """fit(seed=s)'s first restart starts where init_kmeans_plus_plus(..., default_rng(s))
    does (the explorer's and the report's step-by-step EM rely on it), also with
    weight-0 samples present."""
    X = photo(40)
    w = np.random.default_rng(0).integers(0, 4, len(X)).astype(np.float64)
    start = em.init_kmeans_plus_plus(X, w, k, np.random.default_rng(5))
    first = quiet_fit(X, k, sample_weight=w, seed=5, max_iter=1, accelerate=False)
    assert first.history[0] == pytest.approx(em.log_likelihood(start, X, w), rel=1e-12)
    step = quiet_fit(X, k, sample_weight=w, init=start, max_iter=1, accelerate=False)
    np.testing.assert_array_equal(first.means, step.means)


def test_cancel_stops_the_fit_between_iterations_and_draws():
    """cancel is polled before every restart, between iterations and before every draw
    and Lloyd step of the seeding: a callback that turns True at its n-th poll stops
    the fit there with Cancelled, and one that never does changes nothing."""
    X = photo(40)
    polls = []

    def after(n):
        def cancel():
            polls.append(1)
            return len(polls) > n
        return cancel

    start = em.init_kmeans_plus_plus(X, np.ones(len(X)), 4, np.random.default_rng(0))
    with pytest.raises(em.Cancelled):  # the restart, then after iterations 1 and 2
        em.fit(X, 4, init=start, cancel=after(2))
    assert len(polls) == 3
    polls.clear()
    with pytest.raises(em.Cancelled):  # the restart, then before draws 2, 3, 4
        em.fit(X, 64, seed=0, cancel=after(3))
    assert len(polls) == 4
    plain = em.fit(X, 3, n_init=2, seed=0)
    polls.clear()
    kept = em.fit(X, 3, n_init=2, seed=0, cancel=after(10 ** 9))
    assert len(polls) >= plain.n_iter + 2 * (3 - 1 + em.seeding.LLOYD_ITERATIONS)
    np.testing.assert_array_equal(kept.means, plain.means)
    assert kept.history.tolist() == plain.history.tolist()


# ------------------------------------------------- the textbook path and the fast one

@pytest.mark.parametrize("case", ["photo", "weighted-5d", "random-start", "many-pruned", "moves"])
def test_dense_and_blocked_paths_give_the_same_fit(case):
    """fit(fast=False) runs core's E-step on all rows at once, fit(fast=True) the same
    functions on pruned blocks on threads: from the same start the same fit, to
    rounding, in as many iterations (history to 1e-9 relative, parameters to 1e-7;
    measured: 1.1e-10 and 8e-9 at K = 64, where rounding accumulates over 85 iterations)."""
    kwargs = dict(seed=3, tol=1e-6, max_iter=300)
    if case == "photo":
        X, k = photo(60), 8
    elif case == "weighted-5d":
        X, w, init = overlapping(5, n=3000, seed=4)
        k, kwargs = 4, dict(sample_weight=w, init=init, tol=1e-6, max_iter=300)
    elif case == "random-start":
        X, k = photo(50), 16
        kwargs.update(init="random", n_init=2)
    elif case == "many-pruned":  # most components skipped in most blocks
        X, k = photo(60), 64
    else:
        X, k = photo(50), 12
        kwargs.update(split_merge=2, tol=1e-5)
    fast = quiet_fit(X, k, block_rows=200, **kwargs)
    dense = quiet_fit(X, k, fast=False, **kwargs)
    rtol = 1e-9
    assert fast.n_iter == dense.n_iter and fast.reseeds == dense.reseeds
    assert fast.moves == dense.moves
    assert_close(dense.history, fast.history, rtol, "history")
    assert_close(dense.weights, fast.weights, rtol * 100, "weights")
    assert_close(dense.means, fast.means, rtol * 100, "means", elementwise=False)
    assert_close(dense.variances, fast.variances, rtol * 100, "variances")


def direct_log_likelihood(mixture, X):
    """sum_n log sum_k pi_k N(x_n | mu_k, s_k I), from scipy's densities, log-sum-exp."""
    return logsumexp(np.log(mixture.weights)
                     + ref_log_prob(X, mixture.means, mixture.variances), axis=1).sum()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("scale", [1.0, 1e3, 1e6])
def test_exact_at_any_scale(scale, fast, dtype):
    """Eleven samples, six components: three collapse onto single samples at the
    variance floor, where the expansion ||x||^2 - 2 x.mu + ||mu||^2 would cancel
    catastrophically at large scale (the kernel then uses differences). Plain EM's
    history never decreases (to 1e-12 relative) and the log-likelihood is the direct
    sum of log-densities to 1e-9 relative, at scales 1, 1e3 and 1e6. Float32 input keeps
    a float32 product only where it rounds by less than 1e-8 nats, and float32 exp: there
    both hold to 1e-7, float32's precision, at every scale (measured: 4e-8 and 1e-8;
    before, the log-likelihood was 33 % off at 1e6)."""
    X = (np.random.default_rng(7).random((11, 2)) * scale).astype(dtype)
    step_tol, ll_tol = (1e-12, 1e-9) if dtype == np.float64 else (1e-7, 1e-7)
    result = quiet_fit(X, 6, tol=1e-12, max_iter=12, accelerate=False, seed=0, fast=fast)
    assert (result.variances == FLOOR).sum() >= 2, "the test needs collapsed components"
    steps = np.diff(result.history)
    judged = [i for i in range(len(steps)) if i + 1 not in result.reseeds]
    assert (steps[judged] >= -step_tol * np.abs(result.history[1:][judged])).all()
    direct = direct_log_likelihood(result, X.astype(np.float64))
    assert abs(result.log_likelihood - direct) <= ll_tol * abs(direct)
    assert abs(em.log_likelihood(result, X) - direct) <= 1e-9 * abs(direct)


@pytest.mark.parametrize("scale", [1.0, 1e6])
def test_m_step_is_exact_at_any_scale(scale):
    """em.m_step's variances against the reference's direct sum w r ||x - mu||^2, for two
    tight clusters far from the origin: the expansion E||x||^2 - ||E x||^2 would cancel."""
    rng = np.random.default_rng(3)
    X = np.r_[rng.normal(scale, 0.1, (200, 3)), rng.normal(-scale, 0.1, (200, 3))]
    resp = np.r_[np.tile([0.9, 0.1], (200, 1)), np.tile([0.2, 0.8], (200, 1))]
    w = rng.uniform(0.5, 2.0, len(X))
    mixture = em.m_step(X, resp, sample_weight=w)
    weights, means, variances = ref_m_step(X, w, resp)
    assert_close(mixture.variances, variances, 1e-9, "variances")
    assert_close(mixture.means, means, 1e-12, "means")
    assert_close(mixture.weights, weights, 1e-12, "weights")


@pytest.mark.parametrize("k", [4, 8])
def test_the_last_iteration_max_iter_allows_is_a_plain_em_step(k):
    """SQUAREM wraps EM's steps but never spends the last iteration run_em allows on an
    extrapolation: whatever max_iter, the last iterate is a plain (judged) EM step."""
    X = photo(40)
    start = em.init_kmeans_plus_plus(X, np.ones(len(X)), k, np.random.default_rng(1))
    engine = em.core.Dense(X, np.ones(len(X)))
    trials = 0
    for max_iter in range(2, 40):
        yielded = []

        def steps(*args):
            for item in em.squarem.accelerated(*args):
                yielded.append(item)
                yield item

        result = em.core.run_em(engine, start, 1e-300, max_iter, FLOOR, steps)
        assert result.n_iter == len(yielded) == max_iter
        assert yielded[-1][1] is not None, f"max_iter={max_iter}: ended on an extrapolation"
        trials += sum(gain is None for _, gain, _ in yielded)
    assert trials > 0, "the test needs extrapolations"


def test_a_kept_extrapolation_counts_at_the_next_plain_step():
    """An extrapolation is not judged when it is kept; its gain is, at the next plain EM
    step, so a fit cannot stop right after a large jump."""
    X = photo(40)
    start = em.init_kmeans_plus_plus(X, np.ones(len(X)), 8, np.random.default_rng(1))
    engine = em.core.Dense(X, np.ones(len(X)))
    scored = engine.score(start)
    yielded = [(scored, 0.0, False)]
    for item in em.squarem.accelerated(engine, scored, FLOOR, 80):
        yielded.append(item)
        if len(yielded) > 80:
            break
    kept = 0
    for (before, _, _), (jump, gain, _), (after, next_gain, _) in zip(yielded, yielded[1:],
                                                                       yielded[2:]):
        if gain is None and jump.log_likelihood > before.log_likelihood:  # a kept jump
            kept += 1
            assert next_gain >= jump.log_likelihood - before.log_likelihood
    assert kept > 0, "the test needs kept extrapolations"
