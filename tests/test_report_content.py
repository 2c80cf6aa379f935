"""The report's helpers (pipeline/report.py): loading the runs, the k-means and
median-cut baselines, entropy and MAP-versus-nearest labels, Markdown tables, the
environment and the original study's numbers. Small data: the file runs in seconds."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import em  # noqa: E402
from pipeline import images, paths, report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_README = ROOT.parent / "shared" / "reference" / "README.md"


def blobs(seed=0, n=200, spread=0.01):
    """Three well-separated round clusters in the RGB cube, with their true labels."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.15, 0.2, 0.2], [0.8, 0.15, 0.7], [0.4, 0.85, 0.3]])
    labels = np.repeat(np.arange(3), n)
    return centres[labels] + rng.normal(0.0, spread, (3 * n, 3)), labels, centres


def small_photo(width=48) -> np.ndarray:
    rgb = images.load_rgb(paths.default_image())
    h = round(width * rgb.shape[0] / rgb.shape[1])
    return np.asarray(Image.fromarray(rgb).resize((width, h), Image.Resampling.BOX))


def same_partition(a, b) -> bool:
    """Whether two labellings are the same up to renaming the labels."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


# ------------------------------------------------------------------------ inputs

def test_parse_ks():
    assert report.parse_ks("2 4 8 16 32 64 128") == [2, 4, 8, 16, 32, 64, 128]
    assert report.parse_ks("8 2,2") == [2, 8]
    assert report.parse_ks(8) == [8]
    assert report.parse_ks([4, "2"]) == [2, 4]
    for bad in ("", "two", "2 0", [2.5]):
        with pytest.raises(ValueError):
            report.parse_ks(bad)


def fake_run(results_dir: Path, k: int, name="photo", width=4, height=3):
    folder = results_dir / f"k-{k}"
    folder.mkdir(parents=True)
    metrics = {"k": k, "image": {"name": name, "width": width, "height": height}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    Image.fromarray(np.full((height, width, 3), k, np.uint8)).save(folder / "segmented.png")
    return metrics


def test_load_metrics_reads_every_k(tmp_path):
    for k in (2, 4):
        fake_run(tmp_path, k)
    results = report.load_metrics(tmp_path, "4 2")
    assert list(results) == [2, 4] and results[4]["k"] == 4
    png = report.load_png(tmp_path, 4)
    assert png.shape == (3, 4, 3) and png.dtype == np.uint8 and (png == 4).all()


def test_a_missing_k_is_named_with_its_file(tmp_path):
    fake_run(tmp_path, 2)
    with pytest.raises(FileNotFoundError) as info:
        report.load_metrics(tmp_path, "2 8")
    message = str(info.value)
    assert "K = 8" in message
    assert str(tmp_path / "k-8" / "metrics.json") in message
    assert "make experiments" in message
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "k-8" / "segmented.png"))):
        report.load_png(tmp_path, 8)


def test_runs_of_another_k_or_image_are_refused(tmp_path):
    fake_run(tmp_path, 2)
    fake_run(tmp_path, 4, name="other")
    with pytest.raises(ValueError, match="different images"):
        report.load_metrics(tmp_path, "2 4")
    folder = tmp_path / "k-8"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"k": 16, "image": {}}))
    with pytest.raises(ValueError, match="K = 16, not K = 8"):
        report.load_metrics(tmp_path, "8")


def test_study_image_and_analysis_k():
    study = {"width": 550, "height": 690, "distinct_colours": 49129}
    assert report.is_study_image(study, "../shared/reference/im.jpg")
    assert report.is_study_image(study, "", "/abs/path/im.jpg")
    assert not report.is_study_image(study, "", "images/photo.jpg", None)
    # Another picture that happens to be called im.jpg is not the study's.
    assert not report.is_study_image(dict(study, distinct_colours=1200), "images/cats/im.jpg")
    assert not report.is_study_image(dict(study, width=40), "im.jpg")
    assert report.pick_analysis_k("2 4 8 16 32 64 128") == 8
    assert report.pick_analysis_k("2 4 16 32") == 16
    assert report.pick_analysis_k("3") == 3


def test_load_bench_is_defensive(tmp_path):
    assert report.load_bench(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert report.load_bench(tmp_path / "bad.json") is None
    (tmp_path / "list.json").write_text("[1, 2]")
    assert report.load_bench(tmp_path / "list.json") is None
    (tmp_path / "ok.json").write_text(json.dumps({"rows": [{"k": 2}]}))
    assert report.load_bench(tmp_path / "ok.json") == {"rows": [{"k": 2}]}


# ----------------------------------------------------------------------- k-means

def test_nearest_centre_is_the_brute_force_argmin():
    rng = np.random.default_rng(1)
    X, C = rng.random((3000, 3)), rng.random((37, 3))
    labels, sq = report.nearest_centre(X, C)
    full = ((X[:, None, :] - C[None]) ** 2).sum(axis=2)
    assert np.array_equal(labels, full.argmin(axis=1))
    np.testing.assert_allclose(sq, full.min(axis=1), rtol=0, atol=1e-15)


def test_kmeans_recovers_well_separated_clusters():
    X, truth, centres = blobs()
    result = report.kmeans(X, 3, n_init=3, seed=0)
    assert result.converged
    assert same_partition(result.labels, truth)
    order = [int(np.argmin(((result.centres - c) ** 2).sum(axis=1))) for c in centres]
    np.testing.assert_allclose(result.centres[order], centres, atol=0.005)
    assert result.inertia == pytest.approx(((X - result.centres[result.labels]) ** 2).sum())


def test_weighted_kmeans_on_distinct_colours_equals_kmeans_on_all_pixels():
    rgb = small_photo() // 32 * 32          # few distinct colours, many repeats
    colours8, counts, inverse = images.distinct_colours(rgb)
    colours, pixels = colours8 / 255.0, rgb.reshape(-1, 3) / 255.0
    assert len(colours) < len(pixels) / 4
    start = report.kmeans_plus_plus(colours, counts, 6, np.random.default_rng(3))
    on_colours = report.lloyd(colours, counts, start)
    on_pixels = report.lloyd(pixels, np.ones(len(pixels)), start)
    np.testing.assert_allclose(on_colours.centres, on_pixels.centres, rtol=0, atol=1e-12)
    assert on_colours.inertia == pytest.approx(on_pixels.inertia, rel=1e-12)
    assert np.array_equal(on_colours.labels[inverse], on_pixels.labels)
    assert on_colours.n_iter == on_pixels.n_iter


def test_lloyd_objective_never_increases_and_ends_at_a_fixed_point():
    X = small_photo().reshape(-1, 3) / 255.0
    w = np.random.default_rng(0).integers(1, 5, len(X)).astype(float)
    start = X[np.random.default_rng(2).choice(len(X), 16, replace=False)]
    result = report.lloyd(X, w, start)
    steps = np.diff(result.history)
    assert len(steps) >= 3 and (steps <= 1e-12 * result.history[0]).all()
    assert result.converged
    # a fixed point: each centre is the weighted mean of its samples, each sample is
    # nearest its own centre
    for j in range(16):
        mine = result.labels == j
        np.testing.assert_allclose(result.centres[j], np.average(X[mine], axis=0, weights=w[mine]),
                                   atol=1e-12)
    assert np.array_equal(report.nearest_centre(X, result.centres)[0], result.labels)


def test_an_empty_cluster_is_moved_onto_the_data():
    X, _, _ = blobs(n=50)
    start = np.array([[0.15, 0.2, 0.2], [0.8, 0.15, 0.7], [5.0, 5.0, 5.0]])  # one far away
    result = report.lloyd(X, np.ones(len(X)), start)
    assert np.bincount(result.labels, minlength=3).min() > 0
    assert (np.diff(result.history) <= 1e-12 * result.history[0]).all()
    assert (result.centres <= 1.0).all()


def test_kmeans_is_deterministic_and_keeps_the_best_restart():
    X, _, _ = blobs(seed=4, spread=0.08)
    a = report.kmeans(X, 5, n_init=3, seed=7)
    b = report.kmeans(X, 5, n_init=3, seed=7)
    assert np.array_equal(a.centres, b.centres) and np.array_equal(a.labels, b.labels)
    assert len(a.restarts) == 3 and a.inertia == a.restarts.min()


def test_kmeans_plus_plus_uses_the_weights_and_refuses_too_many_centres():
    X = np.array([[0.0, 0, 0], [1.0, 1, 1], [0.5, 0.5, 0.5]])
    w = np.array([0.0, 0.0, 1.0])  # only the last sample can be drawn first
    assert np.array_equal(report.kmeans_plus_plus(X, w, 1, np.random.default_rng(0))[0], X[2])
    with pytest.raises(ValueError, match="exceeds"):
        report.kmeans_plus_plus(X, w, 2, np.random.default_rng(0))


# -------------------------------------------------------------------- median cut

def test_quantisation_error_definition():
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0] = (255, 0, 0)     # one pixel off by 1 in one channel (in [0, 1] units)
    assert report.quantisation_error(a, b) == pytest.approx(0.25)


def test_median_cut_is_exact_on_few_colours_and_its_error_uses_its_palette():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:4] = (200, 30, 30)
    rgb[4:, :4] = (10, 120, 250)
    exact = report.median_cut(rgb, 4)
    assert exact.error == 0.0 and exact.colours_used == 3
    photo = small_photo()
    q = report.median_cut(photo, 8)
    assert q.colours_used <= 8 and q.labels.shape == photo.shape[:2]
    assert q.error == pytest.approx(report.quantisation_error(photo, q.palette[q.labels]))
    assert q.error > 0


# ------------------------------------------------------------ soft versus hard

def test_entropy():
    for k in (1, 2, 7, 128):
        assert report.entropy(np.full((3, k), 1.0 / k)) == pytest.approx([math.log(k)] * 3)
    assert report.entropy(np.eye(4)).tolist() == [0.0] * 4
    p = np.array([0.5, 0.25, 0.25, 0.0])
    assert report.entropy(p) == pytest.approx(1.5 * math.log(2))
    assert np.isfinite(report.entropy(np.array([[0.0, 1.0]]))).all()


def test_map_equals_nearest_mean_for_equal_weights_and_variances():
    X, _, centres = blobs(spread=0.1)
    counts = np.arange(1, len(X) + 1, dtype=float)
    same = em.Mixture(np.full(3, 1 / 3), centres, np.full(3, 0.02))
    result = report.soft_vs_hard(same, X, counts)
    assert result.fraction_differ == 0.0
    assert result.error_map == pytest.approx(result.error_nearest)
    assert 0.0 < result.mean_entropy < math.log(3)
    # a broad, heavy component takes samples that are nearer another mean
    broad = em.Mixture(np.array([0.8, 0.1, 0.1]), centres, np.array([0.3, 0.001, 0.001]))
    result = report.soft_vs_hard(broad, X, counts)
    differ = result.map_labels != result.nearest_labels
    assert 0.0 < result.fraction_differ < 1.0
    assert result.fraction_differ == pytest.approx(counts[differ].sum() / counts.sum())
    assert result.error_nearest < result.error_map      # nearest mean minimises it
    assert result.entropy.shape == (len(X),) and (result.entropy >= 0).all()


# ----------------------------------------------------------------------- figures

def test_detail_window_finds_where_images_differ():
    a = np.zeros((60, 80, 3))
    b = a.copy()
    b[30:40, 50:60] = 1.0
    row, col = report.detail_window(a, b, 10)
    assert (row, col) == (30, 50)
    row, col = report.detail_window(a, b, 20)
    assert 20 <= row <= 30 and 40 <= col <= 50


def test_image_grid_maps_one_pixel_to_magnify_pixels():
    img = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    fig, axes = report.image_grid([img, img, img], ["a", "b", "c"], ncols=2, magnify=3)
    try:
        assert len(axes) == 3
        fig.canvas.draw()
        box = axes[2].get_window_extent()
        assert box.width == pytest.approx(120, abs=1e-6)
        assert box.height == pytest.approx(90, abs=1e-6)
    finally:
        plt.close(fig)
    with pytest.raises(ValueError):
        report.image_grid([img, img[:10]], ["a", "b"])


# ------------------------------------------------------------------------ tables

def test_markdown_table():
    table = report.markdown_table(["K", "error"], [[2, "0.5"], [128, "0.0001"]])
    assert table.splitlines() == [
        "| K   |  error |",
        "| :-- | -----: |",
        "| 2   |    0.5 |",
        "| 128 | 0.0001 |",
    ]
    centred = report.markdown_table(["a|b", "c"], [["x|y", "z"]], align="cl")
    assert centred.splitlines()[0] == r"| a\|b | c   |"
    assert centred.splitlines()[1] == "| :--: | :-- |"
    assert centred.splitlines()[2] == r"| x\|y | z   |"
    with pytest.raises(ValueError, match="row 0"):
        report.markdown_table(["a", "b"], [["only one"]])
    with pytest.raises(ValueError):
        report.markdown_table(["a", "b"], [], align="lx")


def test_fmt():
    assert report.fmt(None) == "n/a" and report.fmt(float("nan"), ".2f") == "n/a"
    assert report.fmt(3.14159, ".2f") == "3.14" and report.fmt(1234567, ",") == "1,234,567"


# ------------------------------------------------------------------- environment

def test_report_date_is_source_date_epoch_or_the_newest_result(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text("{}")
    b.write_text("{}")
    os.utime(a, (1_600_000_000, 1_600_000_000))
    os.utime(b, (1_700_000_000, 1_700_000_000))
    date, source = report.report_date([a, b], environ={})
    assert date.timestamp() == 1_700_000_000 and source == "newest metrics.json"
    date, source = report.report_date([a, b], environ={"SOURCE_DATE_EPOCH": "86400"})
    assert (date.year, date.month, date.day) == (1970, 1, 2) and source == "SOURCE_DATE_EPOCH"
    with pytest.raises(FileNotFoundError):
        report.report_date([tmp_path / "none"], environ={})


def test_cpu_model_and_environment(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n"
                       "model name\t: Intel(R) Xeon(R)   CPU @ 2.10GHz\n")
    assert report.cpu_model(cpuinfo) == "Intel(R) Xeon(R) CPU @ 2.10GHz"
    assert report.cpu_model(tmp_path / "missing")  # falls back, never empty
    env = report.environment()
    assert env["NumPy"] == np.__version__
    assert {"Python", "Matplotlib", "Pillow", "CPU", "Logical CPUs"} <= set(env)


# ---------------------------------------------------------- the original study

def test_published_results_cover_k_2_to_128():
    ks = [row[0] for row in report.PUBLISHED_RESULTS]
    assert ks == [2 ** i for i in range(1, 8)]
    for k, iterations, table, printed in report.PUBLISHED_RESULTS:
        assert isinstance(iterations, int) and iterations > 0
        assert 0 < table < 0.06 and 0 < printed < 0.06
    errors = [row[2] for row in report.PUBLISHED_RESULTS]
    assert errors == sorted(errors, reverse=True)


@pytest.mark.skipif(not REFERENCE_README.is_file(), reason="no shared reference README")
def test_published_results_match_the_reference_readme():
    text = REFERENCE_README.read_text()
    section = text.split("published results", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"^\|\s*\d+\s*\|", line)]
    parsed = [tuple(cell.strip() for cell in line.strip("|").split("|")) for line in rows]
    expected = [(int(k), int(it), float(t), float(p)) for k, it, t, p in parsed]
    assert expected == list(report.PUBLISHED_RESULTS)


@pytest.mark.parametrize("width", [1, 5, 10, 12, 15])
def test_image_grid_draws_tiny_images_with_readable_titles(width):
    """A few-pixel image once gave a figure of a few dpi, whose title font failed."""
    import io

    import matplotlib.pyplot as plt

    panel = np.zeros((width, width, 3), dtype=np.uint8)
    fig, axes = report.image_grid([panel, panel], ["original", "K = 2"], ncols=2)
    assert fig.dpi >= 30 and len(axes) == 2
    fig.savefig(io.BytesIO(), format="png", dpi=fig.dpi)
    plt.close(fig)
