"""Blocked processing in the EM kernel changes nothing but rounding.

em.fit processes samples in blocks of rows (never an (N, K) array for all samples at
once), on a thread pool, adding the partial sums in block order. On the distinct
colours of a small photograph, weighted by their pixel counts (how the project fits),
from one explicit start and for a fixed number of iterations:

* many blocks (block_rows=64) and one block (block_rows=10**9) give the same
  weights, means and log-likelihoods to 1e-12 relative: the block partition only
  changes the order of floating-point additions. Variances agree to 1e-12 relative
  to the terms the kernel subtracts to form them: sigma_k^2 = E_k||x - s||^2 / D -
  ||mu_k - s||^2 / D (s: the weighted centre of the data), so a small component far
  from the centre loses log10(1 + ||mu_k - s||^2 / (D sigma_k^2)) digits to
  cancellation (about 2.5 here: plain relative differences reach ~2e-12);
* the same call repeated gives bit-identical results, whatever the thread pool's
  scheduling (the partition does not depend on the threads and the partial sums are
  combined in block order), also with a different number of worker threads.

Not a timing test; it runs in a few seconds.
"""

from __future__ import annotations

import functools
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import em
from pipeline.images import distinct_colours
from pipeline.paths import default_image

K = 6
ITERATIONS = 25
MANY, ONE = 64, 10**9


@functools.lru_cache(maxsize=None)
def colours_and_counts(width: int = 96):
    """Distinct colours of the default image box-downsampled to `width` columns, in
    [0, 1], with their pixel counts as weights (read-only)."""
    with Image.open(default_image()) as image:
        image = image.convert("RGB")
        height = round(width * image.height / image.width)
        small = np.asarray(image.resize((width, height), Image.Resampling.BOX))
    colours, counts, _ = distinct_colours(small)
    X = colours / 255.0
    w = counts.astype(np.float64)
    X.setflags(write=False)
    w.setflags(write=False)
    return X, w


@functools.lru_cache(maxsize=None)
def start():
    X, w = colours_and_counts()
    return em.init_kmeans_plus_plus(X, w, K, np.random.default_rng(1))


def run(block_rows, X=None, accelerate=False):
    """ITERATIONS iterations from the explicit start, no early stop (plain EM unless
    asked: accelerated runs compare log-likelihoods, which rounding may tip)."""
    X0, w = colours_and_counts()
    X = X0 if X is None else X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", em.ConvergenceWarning)
        result = em.fit(X, K, sample_weight=w, init=start(), max_iter=ITERATIONS, tol=1e-300,
                        block_rows=block_rows, accelerate=accelerate)
    assert result.n_iter == ITERATIONS
    return result


def assert_rel_close(actual, expected, rtol, what):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, what
    err = np.max(np.abs(actual - expected) / np.abs(expected))
    assert err <= rtol, f"{what}: relative difference {err:.3g} > {rtol:g}"


def assert_variances_close(actual, expected, rtol):
    """|delta sigma_k^2| <= rtol * (sigma_k^2 + ||mu_k - s||^2 / D): relative to the
    magnitude of E_k||x - s||^2 / D, from which ||mu_k - s||^2 / D is subtracted."""
    X, w = colours_and_counts()
    centre = np.average(X, axis=0, weights=w)
    scale = expected.variances + ((expected.means - centre) ** 2).sum(axis=1) / X.shape[1]
    err = np.max(np.abs(actual.variances - expected.variances) / scale)
    assert err <= rtol, f"variances: difference {err:.3g} of the cancelled terms > {rtol:g}"


def assert_identical(a, b):
    for name in ("weights", "means", "variances", "history"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), f"{name} differs between identical runs"
    assert a.log_likelihood == b.log_likelihood
    assert (a.n_iter, a.converged, a.reseeds) == (b.n_iter, b.converged, b.reseeds)


def test_the_setting_exercises_many_blocks_and_one():
    X, w = colours_and_counts()
    assert len(X) > 20 * MANY  # distinct colours: enough for many blocks
    assert len(em.blocked.Blocks(X, w, K, np.float64, block_rows=MANY).slices) > 20
    assert len(em.blocked.Blocks(X, w, K, np.float64, block_rows=ONE).slices) == 1
    assert np.all(start().weights > 0)


def test_many_blocks_agree_with_one_block():
    many, one = run(MANY), run(ONE)
    assert not many.reseeds and not one.reseeds  # same path through EM
    assert_rel_close(many.weights, one.weights, 1e-12, "weights")
    # means relative to their magnitude (colours in [0, 1], none near 0 here)
    assert np.all(np.abs(one.means) > 1e-3)
    assert_rel_close(many.means, one.means, 1e-12, "means")
    assert_variances_close(many, one, 1e-12)
    assert_rel_close(many.history, one.history, 1e-12, "log-likelihood history")
    assert many.log_likelihood == pytest.approx(one.log_likelihood, rel=1e-12, abs=0)
    # EM did move: the comparison is not of a fixed point with itself
    assert one.history[-1] > one.history[0]


@pytest.mark.parametrize("block_rows", [MANY, 500, ONE, None])
def test_repeated_runs_are_bit_identical(block_rows):
    results = [run(block_rows, accelerate=True) for _ in range(3)]
    assert_identical(results[0], results[1])
    assert_identical(results[0], results[2])


@pytest.mark.parametrize("threads", [1, 3])
def test_bit_identical_whatever_the_number_of_threads(monkeypatch, threads):
    reference = run(MANY, accelerate=True)
    pool = ThreadPoolExecutor(max_workers=threads)
    monkeypatch.setattr(em.blocked, "_POOL", pool)
    try:
        assert_identical(run(MANY, accelerate=True), reference)
    finally:
        pool.shutdown()


def test_float32_blocks_agree_with_one_block():
    """In float32 (E-step in float32, sums in float64) the block partition reorders
    float64 additions of the same float32 terms: the first log-likelihood agrees to
    float64 rounding. Parameters that then differ in their last float64 bits can round
    to different float32 coefficients, which moves a few terms by float32 rounding:
    the later log-likelihoods agree to 1e-11."""
    X, _ = colours_and_counts()
    X32 = X.astype(np.float32)
    many, one = run(MANY, X32), run(ONE, X32)
    assert_rel_close(many.means, one.means, 1e-12, "means (float32)")
    assert_variances_close(many, one, 1e-12)
    assert_rel_close(many.history[:1], one.history[:1], 1e-15, "first log-likelihood (float32)")
    assert_rel_close(many.history, one.history, 1e-11, "history (float32)")
    assert_identical(run(MANY, X32), many)
