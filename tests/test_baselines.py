"""The per-K comparisons and summaries the experiment step writes beside each run:
pipeline.baselines (k-means, median cut, nearest-mean relabelling) and pipeline.learned
(entropy, colour sample, EM step by step). Small data: seconds."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import em
from pipeline import baselines, images, learned, paths


def blobs(seed=0, n=200, spread=0.01):
    """Three well-separated round clusters in the RGB cube, with their true labels."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.15, 0.2, 0.2], [0.8, 0.15, 0.7], [0.4, 0.85, 0.3]])
    labels = np.repeat(np.arange(3), n)
    return centres[labels] + rng.normal(0.0, spread, (3 * n, 3)), labels


def small_photo(width=40) -> np.ndarray:
    rgb = images.load_rgb(paths.default_image())
    h = round(width * rgb.shape[0] / rgb.shape[1])
    return np.asarray(Image.fromarray(rgb).resize((width, h), Image.Resampling.BOX))


def same_partition(a, b) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_kmeans_recovers_well_separated_clusters():
    X, truth = blobs()
    result = baselines.kmeans(X, 3, np.ones(len(X)), seed=0)
    assert same_partition(result.labels, truth)


def test_weighted_kmeans_on_distinct_colours_equals_kmeans_on_all_pixels():
    rgb = small_photo()
    colours8, counts, inverse = images.distinct_colours(rgb)
    colours = colours8 / 255.0
    weighted = baselines.lloyd(colours, counts.astype(float), colours[:4])
    pixels = rgb.reshape(-1, 3) / 255.0
    full = baselines.lloyd(pixels, np.ones(len(pixels)), colours[:4])
    assert np.allclose(weighted.centres, full.centres)
    assert weighted.error == pytest.approx(full.error, rel=1e-10)


def test_lloyd_error_never_increases():
    X, _ = blobs(spread=0.2)
    result = baselines.lloyd(X, np.ones(len(X)), X[:5])
    assert (np.diff(result.history) <= 1e-15).all() and result.n_iter >= 1


def test_kmeans_refuses_bad_weights():
    X, _ = blobs()
    with pytest.raises(ValueError, match="weights"):
        baselines.kmeans(X, 3, -np.ones(len(X)))


def test_median_cut_is_exact_on_few_colours():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:2] = (200, 10, 10)
    palette, labels = baselines.median_cut(rgb, 2)
    assert np.array_equal(palette[labels], rgb)


def test_compute_errors_agree_with_a_direct_pixel_computation():
    rgb = small_photo()
    colours8, counts, inverse = images.distinct_colours(rgb)
    colours = colours8 / 255.0
    result = em.fit(colours, 4, sample_weight=counts, seed=0)
    nearest = em.nearest_centre(colours, result.means)[0]
    out = baselines.compute(rgb, colours, counts, inverse, result, nearest, seed=0)
    pixels = rgb.reshape(-1, 3) / 255.0

    palette, labels = baselines.median_cut(rgb, 4)
    direct_mc = ((pixels - palette[labels].reshape(-1, 3) / 255.0) ** 2).sum(axis=1).mean()
    assert out["median_cut"]["error"] == pytest.approx(direct_mc, rel=1e-12)

    d = ((pixels[:, None] - result.means[None]) ** 2).sum(axis=2)
    assert out["em_nearest_mean"]["error"] == pytest.approx(d.min(axis=1).mean(), rel=1e-12)
    # k-means minimises this error; EM's nearest-mean palette is one of its candidates
    assert out["kmeans"]["error"] <= out["em_nearest_mean"]["error"] * (1 + 1e-9)


def test_entropy():
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.25, 0.75]])
    expected = [0.0, np.log(2), -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))]
    assert np.allclose(learned.entropy(p), expected)


def test_certainty_in_blocks_equals_the_whole():
    X, _ = blobs(spread=0.2)
    mixture = em.fit(X, 3, seed=0)
    resp = em.responsibilities(mixture, X)
    h, top = learned.certainty(mixture, X, rows=7)
    assert np.allclose(h, learned.entropy(resp)) and np.allclose(top, resp.max(axis=1))


def test_maps_spread_colour_values_to_pixels():
    h = learned.entropy(np.array([[1.0, 0.0], [0.5, 0.5]]))
    inverse = np.array([0, 1, 1, 0])
    entropy_map, mask = learned.maps(h, np.array([0, 1]), np.array([0, 0]), inverse, (2, 2))
    assert entropy_map.tolist() == [[0, 255], [255, 0]]
    assert mask.tolist() == [[0, 255], [255, 0]]


def test_motion_retraces_the_fit_to_its_fixed_point():
    rgb = small_photo()
    colours8, counts, _ = images.distinct_colours(rgb)
    colours = colours8 / 255.0
    out = learned.motion(colours, counts, 3, seed=0, init="kmeans++", tol=1e-4, max_iter=500)
    fitted = em.fit(colours, 3, sample_weight=counts, seed=0, n_init=1, tol=1e-4, max_iter=500,
                    accelerate=False)
    assert out["iterations"] == fitted.n_iter
    assert out["log_likelihood_per_pixel"][-1] == pytest.approx(
        fitted.log_likelihood / counts.sum(), rel=1e-9)
    assert np.allclose(out["snapshots"][-1]["means"], fitted.means)
    assert (np.diff(out["log_likelihood_per_pixel"]) >= -1e-12).all()
    assert out["snapshots"][0]["iteration"] == 0


def test_cloud_sample_is_deterministic_and_labelled():
    X, truth = blobs()
    counts = np.ones(len(X))
    a = learned.cloud(X, counts, truth, seed=3, size=50)
    assert a == learned.cloud(X, counts, truth, seed=3, size=50)
    assert len(a["rgb"]) == len(a["labels"]) == 50


def test_lloyd_tolerance_stops_early_within_it_of_the_fixed_point():
    rgb = small_photo()
    colours8, counts, _ = images.distinct_colours(rgb)
    colours, w = colours8 / 255.0, counts.astype(float)
    start = colours[:: max(1, len(colours) // 8)][:8]
    exact = baselines.lloyd(colours, w, start, tol=0.0)
    early = baselines.lloyd(colours, w, start)
    assert early.n_iter <= exact.n_iter
    assert exact.error <= early.error <= exact.error * (1 + 1e-3)
