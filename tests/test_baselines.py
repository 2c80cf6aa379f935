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


def plain_lloyd(X, w, centres, *, tol=baselines.KMEANS_TOL, max_iter=300):
    """Lloyd's loop as it was before the bounds: every row against every centre through
    em.nearest_centre in every iteration. The reference for baselines.lloyd."""
    centres = np.array(centres, dtype=np.float64)
    k = len(centres)
    history, previous = [], None
    for n_iter in range(max_iter + 1):
        labels, sq = em.nearest_centre(X, centres)
        history.append(float(np.dot(w, sq) / w.sum()))
        settled = previous is not None and np.array_equal(labels, previous)
        small_gain = len(history) > 1 and history[-2] - history[-1] <= tol * history[-2]
        if settled or small_gain or n_iter == max_iter:
            break
        nk = np.bincount(labels, weights=w, minlength=k)
        kept = nk > 0
        for j in range(X.shape[1]):  # each coordinate's weighted mean over the cluster
            centres[kept, j] = np.bincount(labels, weights=w * X[:, j], minlength=k)[kept] / nk[kept]
        worst_first = np.argsort(-(w * sq), kind="stable")
        centres[~kept] = X[worst_first[:int((~kept).sum())]]  # emptied: the costliest rows
        previous = labels
    return baselines.KMeansResult(centres, labels, history[-1], n_iter, np.array(history))


def assert_same_run(result, reference):
    """Labels, centres and iterations exactly; the error history to rounding (the
    bounded loop sums it with np.sum, the plain one with np.dot)."""
    assert np.array_equal(result.labels, reference.labels)
    assert np.array_equal(result.centres, reference.centres)
    assert result.n_iter == reference.n_iter
    assert np.allclose(result.history, reference.history, rtol=1e-13, atol=0.0)


def photo_colours(width):
    colours8, counts, _ = images.distinct_colours(small_photo(width))
    return colours8 / 255.0, counts.astype(float)


@pytest.mark.parametrize("k", [4, 16, 48])
def test_lloyd_equals_the_plain_loop_on_photo_colours(k):
    X, w = photo_colours(80)
    start = em.init_kmeans_plus_plus(X, w, k, np.random.default_rng(k)).means
    assert_same_run(baselines.lloyd(X, w, start), plain_lloyd(X, w, start))
    assert_same_run(baselines.lloyd(X, w, start, tol=0.0, max_iter=40),
                    plain_lloyd(X, w, start, tol=0.0, max_iter=40))


def test_lloyd_equals_the_plain_loop_on_overlapping_clusters_with_zero_weights():
    X, _ = blobs(spread=0.2)
    w = np.random.default_rng(1).integers(0, 4, len(X)).astype(float)
    start = X[:7]
    assert_same_run(baselines.lloyd(X, w, start, tol=0.0), plain_lloyd(X, w, start, tol=0.0))


def test_lloyd_equals_the_plain_loop_with_empty_clusters_and_one_centre():
    X, w = photo_colours(40)
    far = np.vstack([X[:3], [[5.0, 5.0, 5.0], [-3.0, 0.0, 1.0]]])  # two centres left empty
    assert_same_run(baselines.lloyd(X, w, far), plain_lloyd(X, w, far))
    assert_same_run(baselines.lloyd(X, w, X[:1]), plain_lloyd(X, w, X[:1]))


def test_exact_ties_are_left_to_the_kernel(monkeypatch):
    """On a grid with two equal starting centres and a mirror-symmetric pair, rows are
    exactly as near to two centres; the bounds cannot decide them, em.nearest_centre
    does (the lowest index)."""
    grid = np.stack(np.meshgrid(*[np.arange(5) / 4.0] * 3, indexing="ij"), axis=-1)
    X = grid.reshape(-1, 3)
    w = np.ones(len(X))
    start = np.array([[0.25, 0.5, 0.5], [0.75, 0.5, 0.5], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    reference = plain_lloyd(X, w, start, tol=0.0)
    calls = []
    kernel = em.nearest_centre
    monkeypatch.setattr(em, "nearest_centre", lambda *a: calls.append(1) or kernel(*a))
    assert_same_run(baselines.lloyd(X, w, start, tol=0.0), reference)
    assert calls


def test_squared_distances_are_the_kernels_bit_for_bit():
    rng = np.random.default_rng(0)
    for d in (3, 9):
        X, centres = rng.random((500, d)), rng.random((6, d))
        labels, sq = em.nearest_centre(X, centres)
        columns = np.ascontiguousarray(X.T)
        assert np.array_equal(baselines._squared_distances(columns, centres, labels), sq)
        rows = np.arange(1, 500, 7)
        assert np.array_equal(
            baselines._squared_distances(columns, centres, labels[rows], rows), sq[rows])


def test_centre_groups_hold_every_centre_once_in_groups_of_at_most_the_size():
    centres = np.random.default_rng(0).random((37, 3))
    members = baselines._centre_groups(centres, 8)
    assert sorted(members[members >= 0].tolist()) == list(range(37))
    assert members.shape[1] <= 8 and ((members >= 0).sum(axis=1) > 0).all()


def test_bounds_spare_most_rows_once_the_centres_settle():
    X, w = photo_colours(80)
    start = em.init_kmeans_plus_plus(X, w, 16, np.random.default_rng(0)).means
    nearest = baselines._NearestCentres(X, start)
    nearest(start)
    centres = plain_lloyd(X, w, start, max_iter=5).centres
    nearest(centres)
    before = nearest.recomputed
    nearest(centres + 1e-5)
    assert nearest.recomputed - before < 0.05 * len(X)


def test_kmeans_is_deterministic():
    X, w = photo_colours(40)
    a, b = (baselines.kmeans(X, 8, w, seed=3) for _ in range(2))
    assert np.array_equal(a.centres, b.centres) and np.array_equal(a.history, b.history)


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
