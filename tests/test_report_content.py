"""The report's modules on small, hand-made results: loading (pipeline.results), tables,
the generated sentences (pipeline.narrative), figures, the K slider, the study's data
and the publishing of a staged report. Seconds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline import figures, narrative, paths, render, results, slider, study, tables  # noqa: E402

REFERENCE_README = paths.STUDY_IMAGE.with_name("README.md")


def fake_sweep(em_err, km_err, mc_err, *, ks=None, reseeds=None, png_bytes=None,
               file_bytes=50_000, pixels=10_000, variances=None) -> results.Sweep:
    """A sweep with the given errors per K (and what else the sentences read)."""
    ks = ks or [2 ** (i + 1) for i in range(len(em_err))]
    metrics, base, learn = {}, {}, {}
    for i, k in enumerate(ks):
        var = variances[i] if variances else [0.01 * (j + 1) for j in range(k)]
        metrics[k] = {
            "k": k, "image": {"name": "photo", "width": 100, "height": 100, "pixels": pixels,
                              "distinct_colours": 4000, "file_bytes": file_bytes,
                              "path": "/data/photo.jpg"},
            "reconstruction_error": em_err[i], "psnr_db": 10 * np.log10(3 / em_err[i]),
            "iterations": 10 + i, "converged": True, "n_init": 3, "init": "kmeans++",
            "tol": 1e-4, "seed": 0, "max_iter": 2000,
            "reseeds": (reseeds or {}).get(k, []),
            "history": list(np.linspace(-3, 1, 11 + i) * pixels),
            "bits_per_pixel": 8 * (png_bytes or {}).get(k, 1000 * k) / pixels,
            "indexed_png_bytes": (png_bytes or {}).get(k, 1000 * k),
            "log_likelihood_per_pixel": 1.0, "bic": 1e6,
            "timing": {"fit_seconds": 1.0},
            "model": {"weights": [1 / k] * k, "means": [[0.5, 0.5, 0.5]] * k,
                      "variances": var}}
        base[k] = {"k": k, "kmeans": {"error": km_err[i]}, "median_cut": {"error": mc_err[i]},
                   "em_nearest_mean": {"error": em_err[i] * 0.9}}
        learn[k] = {"k": k}
    return results.Sweep(Path("."), list(ks), metrics, base, learn)


# ------------------------------------------------------------------------ results

def test_parse_ks():
    assert results.parse_ks("2 4 8 16") == [2, 4, 8, 16]
    assert results.parse_ks("8 2,2") == [2, 8]
    assert results.parse_ks(8) == [8]
    for bad in ("", "two", "2 0", [2.5]):
        with pytest.raises(ValueError):
            results.parse_ks(bad)


def write_run(folder: Path, k: int, name="photo"):
    run = folder / f"k-{k}"
    run.mkdir(parents=True)
    info = {"name": name, "width": 4, "height": 3}
    (run / "metrics.json").write_text(json.dumps({"k": k, "image": info}))
    (run / "baselines.json").write_text(json.dumps({"k": k}))
    (run / "learned.json").write_text(json.dumps({"k": k}))
    Image.fromarray(np.full((3, 4, 3), k, np.uint8)).save(run / "segmented.png")


def test_load_reads_every_k_and_names_a_missing_one(tmp_path):
    for k in (2, 4):
        write_run(tmp_path, k)
    sweep = results.load(tmp_path, "4 2")
    assert sweep.ks == [2, 4] and sweep.metrics[4]["k"] == 4
    assert (results.load_png(tmp_path, 4) == 4).all()
    with pytest.raises(FileNotFoundError, match=r"K = 8.*k-8.*make experiments"):
        results.load(tmp_path, "2 8")


def test_runs_of_another_k_or_image_are_refused(tmp_path):
    write_run(tmp_path, 2)
    write_run(tmp_path, 4, name="other")
    with pytest.raises(ValueError, match="different images"):
        results.load(tmp_path, "2 4")
    (tmp_path / "k-2" / "learned.json").write_text(json.dumps({"k": 3}))
    with pytest.raises(ValueError, match="K = 3, not K = 2"):
        results.load(tmp_path, "2")


def test_bench_entry_tolerates_missing_parts(tmp_path):
    assert results.load_optional(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert results.load_optional(tmp_path / "bad.json") is None
    for bench in (None, {}, {"images": []}, {"images": {"photo": {}}},
                  {"images": {"photo": {"rows": []}}}):
        assert results.bench_entry(bench, "photo") is None
    entry = {"rows": [{"k": 2}]}
    assert results.bench_entry({"images": {"photo": entry}}, "photo") is entry


def test_report_date_is_source_date_epoch_or_the_newest_result(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("1")
    b.write_text("2")
    import os
    os.utime(a, (1000, 1000))
    os.utime(b, (2000, 2000))
    assert results.report_date([a, b], environ={}).timestamp() == 2000
    assert results.report_date([a], environ={"SOURCE_DATE_EPOCH": "5"}).timestamp() == 5


def test_series_reads_dotted_keys_and_missing_values_as_nan():
    sweep = fake_sweep([0.1, 0.05], [0.08, 0.04], [0.2, 0.1])
    assert sweep.series("kmeans.error", "baselines").tolist() == [0.08, 0.04]
    assert np.isnan(sweep.series("nope.error", "baselines")).all()


# ------------------------------------------------------------------------ narrative

def test_least_accurate_is_named_per_k_with_its_numbers():
    # EM worst at K = 2 (as on the default image), median cut worst at K = 4 and 8
    sweep = fake_sweep([0.1126, 0.04, 0.01], [0.05, 0.02, 0.006], [0.0768, 0.06, 0.02])
    text = narrative.comparison(sweep)
    assert ("Highest error: EM at K = 2 (0.1126 against k-means 0.0500 and median cut "
            "0.0768); median cut at K = 4 and 8 (3.00 to 3.33 times the lowest)") in text
    assert "Lowest error: k-means at every K" in text


def test_reseed_sentence_follows_the_runs():
    none = narrative.convergence(fake_sweep([0.1, 0.05], [0.1, 0.05], [0.1, 0.05]))
    assert "no component had to be re-seeded" in none
    once = narrative.convergence(fake_sweep([0.1, 0.05], [0.1, 0.05], [0.1, 0.05],
                                            reseeds={4: [3]}))
    assert "re-seeded 1 time (K = 4)" in once and "no component" not in once


def test_compression_says_larger_or_smaller_than_the_input_correctly():
    bigger = narrative.compression(fake_sweep([0.1, 0.05], [0.1, 0.05], [0.1, 0.05],
                                              png_bytes={2: 20_000, 4: 145_117},
                                              file_bytes=61_306), ".jpg")
    assert "PNG is 2.4 times larger" in bigger and "smaller than the input at K = 2" in bigger
    smaller = narrative.compression(fake_sweep([0.1, 0.05], [0.1, 0.05], [0.1, 0.05],
                                               png_bytes={2: 2_000, 4: 4_000},
                                               file_bytes=40_000), ".png")
    assert "PNG is 10.0 times smaller" in smaller and "JPEG" not in smaller


def test_slope_sentence_states_the_rate_and_the_effective_dimension():
    ks = [2, 4, 8, 16]
    err = [0.1 * (k / 2) ** -1.0 for k in ks]
    sweep = fake_sweep(err, err, err, ks=ks)
    text = narrative.slope_sentence(sweep)
    assert "$K^{-1.00}$" in text and "d \\approx 2.0" in text and "K^{-2/3}" in text
    flat = fake_sweep([0.1, 0.1, 0.11], [0.05] * 3, [0.2] * 3, ks=[2, 4, 8])
    text = narrative.slope_sentence(flat)
    assert "does not fall" in text and "approx" not in text and "inf" not in text


def test_conclusions_name_the_seed_spread_only_when_the_study_is_shown():
    sweep = fake_sweep([0.1, 0.05], [0.05, 0.04], [0.2, 0.1])
    segmented = {k: np.zeros((4, 4, 3), np.uint8) for k in sweep.ks}
    assert "spread over seeds" not in narrative.conclusions(sweep, segmented)[-1]
    assert "spread over seeds" in narrative.conclusions(sweep, segmented, True)[-1]
    both = narrative.conclusions(sweep, segmented, True, seeds_shown=True)[-1]
    assert "spread over seeds on this image and the study section" in both
    assert "on this image" not in narrative.conclusions(sweep, segmented, True)[-1]


def test_smallest_k_explains_a_broad_component_only_when_there_is_one():
    broad = fake_sweep([0.1, 0.05], [0.05, 0.04], [0.2, 0.1],
                       variances=[[0.001, 0.04], [0.01] * 4])
    assert "broadest component ($\\sigma$ = 0.200, $\\pi$ = 0.50) is more than twice as " \
           "wide as the narrowest" in narrative.smallest_k(broad)
    even = fake_sweep([0.1, 0.05], [0.05, 0.04], [0.2, 0.1],
                      variances=[[0.01, 0.012], [0.01] * 4])
    assert "broad" not in narrative.smallest_k(even)


def test_abstract_is_short_and_carries_the_headline_numbers():
    sweep = fake_sweep([0.1, 0.01, 0.0009], [0.05, 0.008, 0.0007], [0.2, 0.02, 0.001])
    text = narrative.abstract(sweep)
    assert len(re.sub(r"\$[^$]*\$", "x", text).split()) <= 160
    assert "0.1000" in text and "0.00090" in text
    assert "k-means has the lower squared error at 3 of 3 K" in text


def test_enough_k_names_the_first_k_over_30_db():
    sweep = fake_sweep([0.1, 0.01, 0.001], [0.1, 0.01, 0.001], [0.1, 0.01, 0.001])
    # PSNR = 10 log10(3 / error): 14.8, 24.8, 34.8 dB
    assert "at K = 8 (34.8 dB" in narrative.enough_k(sweep)


def fake_study():
    runs = [{"init": "kmeans++", "seed": s, "fits": [
        {"k": 2, "error": 0.048 + 0.001 * s, "iterations": 10, "seconds": 1.0},
        {"k": 4, "error": 0.0170 + 0.0002 * s, "iterations": 20, "seconds": 2.0}]}
        for s in range(3)]
    runs.append({"init": "random", "seed": 0, "fits": [
        {"k": 2, "error": 0.049, "iterations": 30, "seconds": 1.0},
        {"k": 4, "error": 0.0165, "iterations": 60, "seconds": 2.0}]})
    return {"image": {"width": 550, "height": 690}, "published": study.published(),
            "runs": runs}


def test_study_text_compares_per_k_with_the_published_table():
    text = narrative.study_text(fake_study())
    # medians 0.049 (K=2, above 0.048828) and 0.0172 (K=4, above 0.016802)
    assert "above it at K = 2 and 4 (+0.4%, +2.4%)" in text
    assert "Seed 0 used 30 iterations over these K against the study's 130 (23%)" in text
    assert "above our k-means++ median at no K, with 90 iterations in total against 30" in text


def test_seed_spread_names_the_widest_k_and_where_the_random_start_falls():
    text = narrative.seed_spread(fake_study())
    # K = 2: 0.048 to 0.050 (+4.2 %); K = 4: 0.0170 to 0.0174 (+2.4 %); random 0.049, 0.0165
    assert "Over 3 seeds" in text and "up to 4% between the best and the worst seed (K = 2)" in text
    assert "above every seed's at no K and below every seed's at K = 4." in text
    no_random = fake_study()
    no_random["runs"] = no_random["runs"][:-1]
    assert "random" not in narrative.seed_spread(no_random)


def test_seeds_data_belong_to_their_image():
    info = {"name": "a", "width": 550, "height": 690, "distinct_colours": 10}
    assert results.same_image({**info, "name": "a.jpg"}, info)
    assert not results.same_image({**info, "distinct_colours": 11}, info)
    assert not results.same_image(None, info)
    assert paths.seeds_data("") == paths.REPORT / "data" / "seeds.json"
    assert paths.seeds_data("images/b.png") == paths.OUTPUT / "b" / "seeds.json"


def test_speed_text_splits_rows_and_kernel():
    entry = {"rows": [{"k": 2, "ours_rows": 1000, "sklearn_rows": 7700,
                       "ours_us_per_row": 0.1, "sklearn_us_per_row": 1.8,
                       "ours_ms_per_iter": 0.1, "sklearn_ms_per_iter": 13.86,
                       "ours_seconds": 0.5, "sklearn_seconds": 9.0,
                       "ours_ll_per_pixel": 2.0, "sklearn_ll_per_pixel": 1.9}]}
    text = narrative.speed_text(entry)
    assert "7.7 times fewer rows" in text and "18.0 to 18.0 times" in text
    assert not text.startswith("(a)")  # pandoc's Markdown would make it a numbered list
    assert "equal or higher (within 1e-4) at K = 2" in text
    assert narrative.speed_text({"rows": [{"k": 2}]}) == ""
    only_per_row = narrative.speed_text({"rows": [{"k": 2, "ours_us_per_row": 0.1,
                                                    "sklearn_us_per_row": 1.8}]})
    assert only_per_row.startswith("On this image: (b) Per row")


def photo_row(k, ll, ll_moves, ll_sklearn, err, err_moves, err_sklearn=0.01):
    return {"k": k, "ours_ll_per_pixel": ll, "ours_ll_per_pixel_split_merge": ll_moves,
            "sklearn_ll_per_pixel_in_ours": ll_sklearn, "ours_error": err,
            "ours_error_split_merge": err_moves, "sklearn_error": err_sklearn,
            "sklearn_ll_per_pixel": ll_sklearn + 0.5}


def test_bench_photos_reads_complete_rows_and_the_moves_setting():
    bench = {"settings": {"photo_moves": {"split_merge": 2}},
             "photos": [{"name": "a", "rows": [photo_row(4, 2.0, 2.1, 1.9, 0.02, 0.03),
                                               {"k": 8, "ours_ll_per_pixel": 3.0}]},
                        {"name": "b", "rows": [photo_row(4, 2.0, 2.0, 2.2, 0.02, 0.02)]}]}
    photos, moves = results.bench_photos(bench)
    assert [(p["name"], p["k"]) for p in photos] == [("a", 4), ("b", 4)]  # a's K=8 incomplete
    assert moves == 2 and set(photos[0]) == {"name", *results.PHOTO_KEYS}
    assert results.bench_photos({"photos": "x"}) == ([], None)
    assert results.bench_photos(None) == ([], None)


def test_optimum_text_counts_from_the_rows():
    photos = [{"name": "a"} | photo_row(4, 2.0, 2.1, 1.9, 0.020, 0.030),   # moves: +0.1, +50 %
              {"name": "a"} | photo_row(8, 3.0, 3.0, 3.1, 0.010, 0.010),   # below sklearn
              {"name": "b"} | photo_row(4, 2.0, 2.2, 2.1, 0.040, 0.030)]   # moves: +0.2, -25 %
    text = narrative.optimum_text(photos, 2)
    assert "2 photographs that Python packages ship (a, b) in 3 fits at K = 4 and 8" in text
    assert "at or above scikit-learn's (its fit scored in this model) in 1 of 3 cases" in text
    assert "with split-and-merge moves (`SPLIT_MERGE=2`) in 2 of 3" in text
    # sklearn's error (0.01) is below ours at a4 and b4, its likelihood below ours at a4 only
    assert "lower reconstruction error in 2 of 3 cases, 1 of them at a lower" in text
    assert "raised the log-likelihood in 2 cases, by up to 0.200 nats" in text
    assert "there the reconstruction error rose in 1 (by up to 50%) and fell in 1 (by up to 25%)." in text
    assert "not necessarily a better palette" in text
    better = [{"name": "a"} | photo_row(4, 2.0, 2.1, 1.9, 0.020, 0.010),
              {"name": "a"} | photo_row(8, 3.0, 3.1, 2.9, 0.0, 0.0)]
    text = narrative.optimum_text(better, None)
    assert "palette" not in text and "in 2 cases" in text
    assert "error fell in 1 (by up to 50%) and did not change in 1." in text
    zero = narrative.optimum_text([{"name": "a"} | photo_row(4, 2.0, 2.1, 1.9, 0.0, 0.01)], 2)
    assert "error rose in 1." in zero and "in 1 of 1 case;" in zero  # no ratio from 0
    one = narrative.optimum_text([{"name": "a"} | photo_row(4, 2.0, 2.1, 1.9, 0.02, 0.03),
                                  {"name": "b"} | photo_row(8, 2.0, 2.0, 1.9, 0.02, 0.02)], 2)
    assert "in 1 case," in one and "in 2 fits at K = 4 and 8" in one
    assert "no better optimum" in narrative.optimum_text(
        [{"name": "a"} | photo_row(4, 2.0, 2.0, 1.9, 0.02, 0.02)], 2)
    assert narrative.optimum_text([], 2) == ""
    table = tables.optimum(photos)
    assert [cell.strip() for cell in table.splitlines()[2].split("|")[1:-1]] == [
        "a", "4", "2.0000", "2.1000", "1.9000", "0.020000", "0.030000", "0.010000"]


# ------------------------------------------------------------------------ tables

def test_markdown_table():
    table = tables.markdown_table(["K", "error"], [[2, "0.1"], [16, "a|b"]])
    lines = table.splitlines()
    assert lines[0] == "| K   | error |" and lines[1] == "| :-- | ----: |"
    assert "a\\|b" in lines[3]
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        tables.markdown_table(["a", "b"], [[1]])


def test_fmt():
    assert tables.fmt(0.5, ".2f") == "0.50"
    assert tables.fmt(None) == tables.fmt(float("nan")) == "n/a"


def test_study_table_has_one_row_per_k_with_the_published_error():
    table = tables.study(fake_study())
    rows = [line for line in table.splitlines()[2:]]
    assert len(rows) == 2
    assert "0.048828" in rows[0] and "0.016802" in rows[1]
    assert "0.048000 to 0.050000" in rows[0]


def test_published_results_match_the_reference_readme():
    if not REFERENCE_README.is_file():
        pytest.skip("the reference notes are not available here")
    text = REFERENCE_README.read_text()
    for row in study.published():
        pattern = (rf"\|\s*{row['k']}\s*\|\s*{row['iterations']}\s*\|\s*{row['error']:.6f}\s*\|"
                   rf"\s*{row['error_printed']:.6f}\s*\|")
        assert re.search(pattern, text), row


# ------------------------------------------------------------------------ figures

def test_detail_window_finds_where_images_differ():
    a = np.zeros((40, 50, 3))
    b = a.copy()
    b[20:28, 30:38] = 1.0
    assert figures.detail_window(a, b, 8) == (20, 30)


def test_image_grid_maps_one_pixel_to_magnify_pixels():
    panel = np.random.default_rng(0).random((60, 80, 3))
    fig, axes = figures.image_grid([panel, panel], ["a", "b"], ncols=2, panel_inches=2.0, magnify=2)
    bbox = axes[0].get_window_extent()
    assert round(bbox.width) == 160 and round(bbox.height) == 120


def test_figures_draw_from_a_sweep():
    sweep = fake_sweep([0.1, 0.05, 0.02], [0.08, 0.04, 0.01], [0.2, 0.1, 0.03])
    for fig in (figures.palettes(sweep), figures.convergence(sweep),
                figures.error_curves(sweep, narrative.errors(sweep)),
                figures.study_curve(fake_study())):
        assert fig.axes
        matplotlib.pyplot.close(fig)


# ------------------------------------------------------------------------ slider

def test_slider_embeds_every_k_and_shows_one():
    model = {"weights": [0.75, 0.25], "means": [[1, 0, 0], [0, 0, 1]], "variances": [0.01, 0.04]}
    html = slider.slider_html([(2, b"\x89PNG2", model), (4, b"\x89PNG4", model)], "photo", start=1)
    assert html.count("<figure") == 2 and html.count(" hidden") == 1
    assert html.count("data:image/png;base64,") == 2
    assert '<span style="flex: 0.750000; background: #ff0000"' in html
    assert "src=" not in html.split("<script>")[0].split("<figure")[0]
    with pytest.raises(ValueError):
        slider.slider_html([], "photo")


# ------------------------------------------------------------------------ publish

def test_publish_replaces_report_and_figures_together(tmp_path):
    staging, dest = tmp_path / "staging", tmp_path / "report"
    (staging / "figures").mkdir(parents=True)
    (staging / "figures" / "gallery.png").write_bytes(b"new")
    (dest / "figures").mkdir(parents=True)
    (dest / "figures" / "old.png").write_bytes(b"old")
    (dest / "report.html").write_text("old")
    (dest / "report.pdf").write_text("old")
    (staging / "report.html").write_text("new")
    with pytest.raises(render.RenderError, match="report.pdf missing"):
        render.publish(staging, dest)  # an unfinished report changes nothing
    assert (dest / "report.html").read_text() == "old"
    assert sorted(p.name for p in (dest / "figures").iterdir()) == ["old.png"]
    (staging / "report.pdf").write_text("new")
    render.publish(staging, dest)
    assert sorted(p.name for p in (dest / "figures").iterdir()) == ["gallery.png"]
    assert (dest / "report.html").read_text() == (dest / "report.pdf").read_text() == "new"
    assert sorted(p.name for p in dest.iterdir()) == ["figures", "report.html", "report.pdf"]


def test_slope_slower_than_the_theory_is_not_explained_by_low_dimension():
    ks = [2, 4, 8, 16]
    err = [0.1 * (k / 2) ** -0.5 for k in ks]
    text = narrative.slope_sentence(fake_sweep(err, err, err, ks=ks))
    assert "slower than $K^{-2/3}$" in text and "thin sheets" not in text


def test_take_away_follows_which_method_wins():
    em_better = fake_sweep([0.05, 0.02, 0.01], [0.06, 0.03, 0.02], [0.1, 0.05, 0.03])
    assert "pays for it in squared error" not in narrative.abstract(em_better)
    assert "k-means has the lower squared error at 0 of 3 K" in narrative.abstract(em_better)
    assert "EM is the better choice" in narrative.conclusions(
        em_better, {k: np.zeros((2, 2, 3), np.uint8) for k in em_better.ks})[1]
