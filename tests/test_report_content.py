"""The report's modules on small results: loading (pipeline.results), tables, the
generated sentences (narrative, choosing, comparisons), figures, the K slider, the
study's data.

The generated text is read as a reader would, on real fits of several small synthetic
images and K lists (made with the pipeline's own functions, no notebook): sentences
start with a capital, no empty parentheses or "1.00 times", ties called ties, every
`make` target named exists, and the claims agree with the numbers. One slow test runs
the report notebook on such a sweep and checks that every figure and table is cited.
Seconds, but for the slow test."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import em  # noqa: E402
from pipeline import (atomic, baselines, choosing, comparisons, experiment, figures,  # noqa: E402
                      figures_space, images, learned, narrative, paths, results,
                      slider, study, tables)

REFERENCE_README = paths.STUDY_IMAGE.with_name("README.md")
MAKE_TARGETS = set(re.findall(r"^([a-z][a-z-]*):", (paths.ROOT / "Makefile").read_text(), re.M))


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
            "log_likelihood_per_pixel": 1.0 + i, "bic": 1e6 - 1e5 * i,
            "timing": {"fit_seconds": 1.0},
            "model": {"weights": [1 / k] * k, "means": [[0.5, 0.5, 0.5]] * k,
                      "variances": var}}
        base[k] = {"k": k, "kmeans": {"error": km_err[i], "restarts": 3},
                   "median_cut": {"error": mc_err[i]}, "em_nearest_mean": {"error": em_err[i] * 0.9}}
        learn[k] = {"k": k}
    return results.Sweep(Path("."), list(ks), metrics, base, learn)


# ------------------------------------------------------------------ real fits of small images

def gradient(h=36, w=48) -> np.ndarray:
    """A smooth colour ramp with noise: thousands of colours."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    rgb = np.stack([x, y, 0.5 + 0.4 * np.sin(6 * x * y)], axis=-1)
    rgb += np.random.default_rng(1).normal(0, 0.03, rgb.shape)
    return np.clip(rgb * 255, 0, 255).astype(np.uint8)


def blocks() -> np.ndarray:
    """Six flat colours in blocks: a palette of six fits it exactly."""
    colours = np.array([[250, 10, 10], [10, 200, 20], [20, 20, 230], [240, 240, 240],
                        [30, 30, 30], [200, 180, 20]], np.uint8)
    return colours[np.arange(32 * 36).reshape(32, 36) // 8 % 6][..., :]


def clusters() -> np.ndarray:
    """Three colour clusters of different spreads, scattered over the image."""
    rng = np.random.default_rng(2)
    which = rng.choice(3, size=(30, 40), p=[0.6, 0.3, 0.1])
    centres = np.array([[0.2, 0.3, 0.6], [0.8, 0.7, 0.2], [0.5, 0.5, 0.5]])
    spread = np.array([0.02, 0.08, 0.2])[which][..., None]
    rgb = centres[which] + spread * rng.normal(size=(30, 40, 3))
    return np.clip(rgb * 255, 0, 255).astype(np.uint8)


def run_sweep(folder: Path, rgb: np.ndarray, ks, suffix: str, seed: int = 0) -> results.Sweep:
    """What notebooks/experiment.ipynb does per K, through the same functions, into
    folder/k-<K>/; the image is saved as `suffix` first and read back."""
    folder.mkdir(parents=True)
    image = folder / f"image{suffix}"
    Image.fromarray(rgb).save(image, **({"quality": 85} if suffix == ".jpg" else {}))
    rgb = images.load_rgb(image)
    colours8, counts, inverse = images.distinct_colours(rgb)
    colours = colours8 / 255.0
    h, w = rgb.shape[:2]
    settings = dict(n_init=2, tol=1e-4, max_iter=500, seed=seed)
    for k in ks:
        out = folder / f"k-{k}"
        out.mkdir()
        result = em.fit(colours, k, sample_weight=counts, **settings)
        colour_labels = em.predict(result, colours)
        labels = colour_labels.astype(np.uint8)[inverse].reshape(h, w)
        palette = experiment.palette_of(result)
        images.save_png(out / experiment.SEGMENTED_FILE, palette[labels])
        images.save_indexed_png(out / experiment.INDEXED_FILE, labels, palette)
        entropy, top = learned.certainty(result, colours)
        nearest, _ = em.nearest_centre(colours, result.means)
        atomic.write_json(out / baselines.BASELINES_FILE, baselines.compute(
            rgb, colours, counts, inverse, result, nearest, seed=seed))
        summary = learned.compute(colours, counts, entropy, top, colour_labels, nearest,
                                  k=k, seed=seed)
        if k == learned.MOTION_K:
            summary["motion"] = learned.motion(colours, counts, k, seed=seed, init="kmeans++",
                                               tol=settings["tol"], max_iter=settings["max_iter"])
        atomic.write_json(out / learned.LEARNED_FILE, summary)
        for name, picture in zip((learned.ENTROPY_FILE, learned.RELABELLED_FILE),
                                 learned.maps(entropy, colour_labels, nearest, inverse, (h, w))):
            images.save_png(out / name, picture)
        atomic.write_json(out / experiment.METRICS_FILE, experiment.metrics(
            result=result, k=k, seed=seed, init="kmeans++", n_init=settings["n_init"],
            split_merge=0, tol=settings["tol"], max_iter=settings["max_iter"], path=image,
            rgb=rgb, colours=colours, counts=counts, colour_labels=colour_labels,
            indexed_png=out / experiment.INDEXED_FILE, fit_seconds=0.1, wall_seconds=0.2))
    return results.load(folder, ks)


# (image, K list, file suffix, with the study's sweep, fits past the sweep for BIC)
CASES = {"gradient": (gradient, [2, 8, 32], ".jpg", True, (64,)),
         "blocks": (blocks, [2, 4, 6], ".png", False, ()),
         "clusters": (clusters, [1, 3, 16], ".png", False, (32,)),
         "one-k": (clusters, [8], ".png", False, ())}


class Case:
    """One small image's sweep and everything the report's text reads of it."""

    def __init__(self, folder: Path, name: str):
        make, ks, suffix, with_study, larger = CASES[name]
        self.sweep = run_sweep(folder / name, make(), ks, suffix)
        self.image = folder / name / f"image{suffix}"
        self.rgb = images.load_rgb(self.image)
        self.segmented = {k: results.load_png(self.sweep.results_dir, k) for k in ks}
        self.seeds = study.sweep(self.image, ks, seeds=range(2), n_init=1, with_published=False,
                                 larger_ks=larger, log=lambda *_: None)
        self.study = (study.sweep(self.image, ks, seeds=range(2), n_init=1, log=lambda *_: None)
                      if with_study else None)
        self.curve = choosing.jpeg_curve(self.rgb)
        self.larger = choosing.larger_fits(self.sweep, self.seeds)


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Case]:
    folder = tmp_path_factory.mktemp("sweeps")
    return {name: Case(folder, name) for name in CASES}


def prose(case: Case) -> dict[str, str]:
    """Every generated paragraph the report shows for this sweep, by its function."""
    s, ks = case.sweep, case.sweep.ks
    ka = learned.MOTION_K if learned.MOTION_K in ks else ks[len(ks) // 2]
    bic = choosing.bic_sentence(s, case.larger)
    original = study.original()
    bench = {"rows": [{"k": k, "ours_rows": 900, "sklearn_rows": 1728, "ours_us_per_row": 0.1,
                       "sklearn_us_per_row": 0.5 + k, "ours_ms_per_iter": 0.09,
                       "sklearn_ms_per_iter": 0.9 + k, "ours_seconds": 0.1 * k,
                       "sklearn_seconds": k if k <= 8 else None, "ours_ll_per_pixel": 2.0,
                       "sklearn_ll_per_pixel": 1.99 if k <= 8 else None} for k in ks]}
    text = {
        "abstract": narrative.abstract(s, bic),
        "data": narrative.data_sentence(s),
        "baselines": narrative.baselines_sentence(s),
        "comparison": narrative.comparison(s),
        "seeds": narrative.seed_spread(case.seeds, ks),
        "slope": narrative.slope_sentence(s),
        "changes": narrative.changes(case.segmented, ks),
        "smallest": narrative.smallest_k(s),
        "certainty": narrative.certainty_text(s, ka),
        "convergence": narrative.convergence(s),
        "bic": choosing.bic_text(s, case.larger, "Table 2"),
        "recommendation": choosing.recommendation(s, case.curve, "Table 2", "section 5"),
        "study intro": comparisons.study_intro(original, case.study),
        "speed": comparisons.speed_text(bench, "Table 2"),
        "no bench": comparisons.no_bench("image", default_image=False),
        "no bench, default": comparisons.no_bench("image", default_image=True),
    }
    if "motion" in s.learned[ka]:
        text["motion"] = narrative.motion_text(s, ka, "Table 1")
    if case.study:
        text["study rule"] = comparisons.study_rule_text(case.study, original, "Table 3")
        text["study seeds"] = comparisons.seeds_text(case.study, original, "Table 4")
    for i, point in enumerate(narrative.conclusions(
            s, choose=choosing.summary(s, case.curve), bic=bic,
            refs={"entropy": "Figure 9", "seeds": "Figure 5", "study": "section 7"})):
        text[f"conclusion {i}"] = point
    return text


def problems(paragraph: str) -> list[str]:
    """What a copy editor would strike in one generated paragraph of Markdown."""
    plain = re.sub(r"\$[^$]*\$", "X", re.sub(r"`[^`]*`", "Code", paragraph))
    found = []
    for sentence in re.split(r"(?<=[.!?])\s+", plain.strip()):
        first = re.search(r"[A-Za-z0-9]", sentence)
        if first and not (first.group().isupper() or first.group().isdigit()):
            found.append(f"sentence without a capital: {sentence[:60]!r}")
    for bad in ("()", "( ", " )", "(;", "(,", ",,", " ,", " .", "..", ";.", "  ", "1.00 times",
                "nan", "inf ", "None", "n/a", "{", "}", "th pixel"):
        if bad in plain:
            found.append(f"{bad!r} in {plain[max(0, plain.index(bad) - 40):][:80]!r}")
    if plain.count("(") != plain.count(")"):
        found.append("unbalanced parentheses")
    for target in re.findall(r"`make ([a-z][a-z-]*)", paragraph):
        if target not in MAKE_TARGETS:
            found.append(f"`make {target}` is not a target of the Makefile")
    return found


@pytest.mark.parametrize("name", list(CASES))
def test_generated_text_reads_as_prose_on_any_image(cases, name):
    text = prose(cases[name])
    assert all(isinstance(t, str) for t in text.values())
    bad = {key: p for key, paragraph in text.items() if (p := problems(paragraph))}
    assert not bad, bad


def listed(ks_text: str, all_ks) -> list[int]:
    """'every K' or 'K = 2, 4 and 8' as the K it names."""
    return list(all_ks) if ks_text == "every K" else [int(k) for k in re.findall(r"\d+", ks_text)]


@pytest.mark.parametrize("name", list(CASES))
def test_claims_agree_with_the_numbers(cases, name):
    case = cases[name]
    s, ks = case.sweep, case.sweep.ks
    em_e = s.series("reconstruction_error")
    km_e = s.series("kmeans.error", "baselines")
    text = prose(case)

    # who has the lower squared error, each K named once, ties within 1 % of the larger
    named = {}
    for who, where in re.findall(r"(k-means has the lower squared error|EM has the lower "
                                 r"squared error|EM|the two are within 1% of each other) at "
                                 r"(every K|K = \d+(?:(?:, | and )\d+)*)", text["abstract"]):
        for k in listed(where, ks):
            assert k not in named, (k, text["abstract"])
            named[k] = who
    assert sorted(named) == ks
    for k, who in named.items():
        a, b = em_e[ks.index(k)], km_e[ks.index(k)]
        close = abs(a - b) <= 0.01 * max(a, b) or max(a, b) < 1e-12  # both exact
        assert close == who.startswith("the two"), (k, a, b, who)
        if not close:
            assert (b < a) == who.startswith("k-means"), (k, a, b, who)

    # the smallest K whose PSNR reaches 30 dB
    found = re.search(r"smallest whose PSNR reaches 30 dB is K = (\d+)", text["abstract"])
    psnr = [math.inf if s.metrics[k]["psnr_db"] is None else s.metrics[k]["psnr_db"] for k in ks]
    reaching = [k for k, p in zip(ks, psnr) if p >= 30]
    assert (int(found.group(1)) if found else None) == (reaching[0] if reaching else None)

    # BIC falls throughout exactly when the text says so
    bic = list(s.series("bic")) + [f["bic"] for f in case.larger]
    falls = len(bic) > 1 and all(b < a for a, b in zip(bic, bic[1:]))
    assert ("BIC falls at every K" in text["abstract"]) == falls

    # the broadest spread at the smallest K against the narrowest
    sigma = np.sqrt(s.metrics[ks[0]]["model"]["variances"])
    wide = re.search(r"is ([\d.]+) times as wide as the narrowest", text["smallest"])
    assert bool(wide) == (len(sigma) > 1 and sigma.max() >= 2 * sigma.min())
    if wide:
        assert float(wide.group(1)) == pytest.approx(sigma.max() / sigma.min(), abs=0.051)

    # the lowest error at each K, ties named together
    errs = narrative.errors(s)

    def within(i):
        best = min(errs[m][i] for m in narrative.METHODS)
        return {m for m in narrative.METHODS
                if errs[m][i] <= best + 0.01 * errs[m][i] or errs[m][i] < 1e-12}

    alike = re.search(r"All three methods are within 1% of each other at "
                      r"(every K|K = \d+(?:(?:, | and )\d+)*)", text["comparison"])
    alike = listed(alike.group(1), ks) if alike else []
    assert alike == [k for i, k in enumerate(ks) if len(within(i)) == 3]
    lowest = re.search(r"Lowest error: (.*?)\. Highest", text["comparison"])
    assert bool(lowest) == (len(alike) < len(ks))
    for part in lowest.group(1).split("; ") if lowest else []:
        who, where = re.fullmatch(r"(.*?)(?: \(within 1%\))? at (every K|K = .*)", part).groups()
        for k in listed(where, ks):
            assert within(ks.index(k)) == set(re.split(r", | and ", who)), (k, part)


def test_ties_are_called_ties():
    # EM and k-means 0.06 % apart at every K: neither has the lower error
    sweep = fake_sweep([0.06970, 0.02001, 0.01000], [0.06966, 0.02000, 0.01000],
                       [0.2, 0.1, 0.03])
    abstract = narrative.abstract(sweep)
    assert "the two are within 1% of each other at every K" in abstract
    assert "lower squared error" not in abstract and "pays for it" not in abstract
    assert "EM's error at this K is within 1% of k-means' (0.0697 against 0.0697)" in \
        narrative.smallest_k(sweep)
    assert "neither method is better throughout" in narrative.conclusions(
        sweep, choose="", bic="", refs={"entropy": "Figure 9"})[1]
    assert "EM's error is within 1% of k-means'" in narrative.comparison(sweep)


def test_study_differences_below_the_tables_precision_are_equal():
    pub = {8: {"error": 0.007941}}
    assert comparisons.against_table({8: 0.0079415}, pub, 6) == ([], [8], [])
    assert comparisons.against_table({8: 0.007943}, pub, 6) == ([], [], [8])
    assert comparisons.against_table({8: 0.0079399}, pub, 6) == ([8], [], [])


def test_study_text_compares_like_for_like(cases):
    case = cases["gradient"]
    original = study.original()
    rule = case.study["study_rule"]
    assert rule["settings"]["accelerate"] is False and rule["settings"]["n_init"] == 1
    assert rule["settings"]["tol"] == pytest.approx(
        original["tol_total"] / case.rgb.shape[0] / case.rgb.shape[1])
    assert rule["settings"]["max_iter"] >= 10_000
    assert all(f["converged"] and f["last_gain"] < original["tol_total"] for f in rule["fits"])
    text = comparisons.study_rule_text(case.study, original, "Table 3")
    total = sum(f["iterations"] for f in rule["fits"])
    published = sum(r["iterations"] for r in original["rows"] if r["k"] in case.sweep.ks)
    assert f"Every K converged, in {total:,} iterations in all against the study's {published:,}" in text
    seeds = comparisons.seeds_text(case.study, original, "Table 4")
    every = sum(f["iterations_all"] for f in results.study_runs(case.study)[0][0]["fits"])
    assert f"Seed 0's fits took {every:,} iterations over all their starts" in seeds


def test_restarts_are_em_fit_one_start_at_a_time(cases):
    """study.restarts draws em.fit's starts in its order: the same winner, and the
    iterations of every start."""
    rgb = cases["clusters"].rgb
    colours8, counts, _ = images.distinct_colours(rgb)
    colours, counts = colours8 / 255.0, counts.astype(float)
    for init in ("kmeans++", "random"):
        fit = em.fit(colours, 4, sample_weight=counts, init=init, n_init=3, tol=1e-4, seed=3)
        best, every = study.restarts(colours, counts, 4, seed=3, init=init, n_init=3,
                                     tol=1e-4, max_iter=1000)
        assert best.log_likelihood == fit.log_likelihood and best.n_iter == fit.n_iter
        assert len(every) == 3 and fit.n_iter in every and sum(every) > fit.n_iter


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


def test_seeds_data_belong_to_their_image():
    info = {"name": "a", "width": 550, "height": 690, "distinct_colours": 10}
    assert results.same_image({**info, "name": "a.jpg"}, info)
    assert not results.same_image({**info, "distinct_colours": 11}, info)
    assert not results.same_image(None, info)
    assert paths.seeds_data("") == paths.REPORT / "data" / "seeds.json"
    assert paths.seeds_data("images/b.png") == paths.OUTPUT / "b" / "seeds.json"


# ------------------------------------------------------------------------ narrative

def test_least_accurate_is_named_per_k_with_its_numbers():
    # EM worst at K = 2 (as on the default image), median cut worst at K = 4 and 8
    sweep = fake_sweep([0.1126, 0.04, 0.01], [0.05, 0.02, 0.006], [0.0768, 0.06, 0.02])
    text = narrative.comparison(sweep)
    assert ("Highest error: EM at K = 2 (0.113 against k-means' 0.0500 and median cut's "
            "0.0768); median cut at K = 4 and 8 (3.00 to 3.33 times the lowest)") in text
    assert "Lowest error: k-means at every K" in text


def test_hero_sentence_names_the_k_the_figure_shows():
    for ks, shown in (([2, 4, 8, 16, 32, 64, 128], [4, 16, 64]), ([4, 8, 32], [4]),
                      ([3, 5], [3, 5]), ([2, 8, 32, 128], [2, 8, 32])):
        assert figures.hero_ks(ks) == shown
        text = narrative.hero_sentence("Figure 1", "photo", figures.hero_ks(ks))
        assert listed(re.search(r"with (K = [^.]+)\.$", text).group(1), ks) == shown, text
        assert ("segmentations" in text) == (len(shown) > 1), text


@pytest.mark.parametrize("name", ["st*r", "back\\slash", "a_b_c", "[x](y)", "#1 <b>", "R&D 50%"])
def test_an_image_name_reads_as_it_is_in_html_and_latex(name):
    """Every sentence that names the image gives its name as it is, whatever Markdown or
    LaTeX would make of its characters (emphasis, links, commands): through pandoc, as
    the report is rendered, to plain text."""
    sweep = fake_sweep([0.1, 0.05], [0.09, 0.04], [0.12, 0.06])
    for m in sweep.metrics.values():
        m["image"] = {**m["image"], "name": name}
    for text in (narrative.abstract(sweep), narrative.hero_sentence("Figure 1", name, [2, 4]),
                 comparisons.no_bench(name, False)):
        plain = subprocess.run(["pandoc", "-f", "markdown", "-t", "plain", "--wrap=none"],
                               input=text, capture_output=True, text=True, check=True).stdout
        assert name in plain, (text, plain)  # raw LaTeX (\\slash) would be dropped here


def test_certainty_and_convergence_texts_fit_the_run():
    """No reason given for relabelled pixels when there are none; 'the winning start'
    only when there were several."""
    sweep = fake_sweep([0.1, 0.05], [0.09, 0.04], [0.12, 0.06])
    sweep.learned[2].update(mean_entropy=0.1, uncertain_share=0.05, beyond_log2_share=0.0,
                            relabelled_share=0.0)
    text = narrative.certainty_text(sweep, 2)
    assert "For every pixel the most probable component is the nearest mean." in text
    assert "claims colours" not in text and "Relabelling" not in text
    assert "on the winning start" in narrative.convergence(sweep)
    for m in sweep.metrics.values():
        m["n_init"] = 1
    assert "winning" not in narrative.convergence(sweep)


def test_reseed_marks_count_the_reseeds():
    sweep = fake_sweep([0.1, 0.05], [0.1, 0.05], [0.1, 0.05], reseeds={4: [3]})
    assert narrative.reseed_marks(sweep) == ("Red triangle: the re-seed of a component that "
                                             "had lost its weight.")
    sweep = fake_sweep([0.1, 0.05], [0.1, 0.05], [0.1, 0.05], reseeds={2: [1], 4: [3, 5]})
    assert narrative.reseed_marks(sweep).startswith("Red triangles: 3 re-seeds of components")
    assert narrative.reseed_marks(fake_sweep([0.1], [0.1], [0.1])) == "No component was re-seeded."


def test_reseed_sentence_follows_the_runs():
    none = narrative.convergence(fake_sweep([0.1, 0.05], [0.1, 0.05], [0.1, 0.05]))
    assert "no component had to be re-seeded" in none
    once = narrative.convergence(fake_sweep([0.1, 0.05], [0.1, 0.05], [0.1, 0.05],
                                            reseeds={4: [3]}))
    assert "re-seeded once (K = 4)" in once and "no component" not in once


def test_slope_sentence_states_the_rate_and_the_effective_dimension():
    ks = [2, 4, 8, 16]
    err = [0.1 * (k / 2) ** -1.0 for k in ks]
    sweep = fake_sweep(err, err, err, ks=ks)
    text = narrative.slope_sentence(sweep)
    assert "$K^{-1.00}$" in text and "d \\approx 2.0" in text and "K^{-2/3}" in text
    flat = fake_sweep([0.1, 0.1, 0.11], [0.05] * 3, [0.2] * 3, ks=[2, 4, 8])
    text = narrative.slope_sentence(flat)
    assert "does not fall" in text and "approx" not in text and "inf" not in text
    slow = [0.1 * (k / 2) ** -0.5 for k in ks]
    text = narrative.slope_sentence(fake_sweep(slow, slow, slow, ks=ks))
    assert "slower than $K^{-2/3}$" in text and "thin sheets" not in text


def test_conclusions_name_the_seed_spread_where_it_is_shown():
    sweep = fake_sweep([0.1, 0.05], [0.05, 0.04], [0.2, 0.1])
    limits = narrative.conclusions(sweep, choose="", bic="", refs={"entropy": "Figure 9"})[-1]
    assert "spread over seeds" not in limits
    both = narrative.conclusions(sweep, choose="", bic="", refs={
        "entropy": "Figure 9", "seeds": "Figure 5", "study": "section 7"})[-1]
    assert ("the spread over seeds is shown for this image in Figure 5 and for the study's "
            "photograph in section 7") in both


def test_abstract_is_short_and_carries_the_headline_numbers():
    sweep = fake_sweep([0.1, 0.01, 0.0009], [0.05, 0.008, 0.0007], [0.2, 0.02, 0.001])
    text = narrative.abstract(sweep, "BIC falls at every K up to 256, so it chooses no K "
                                     "on this image; error and size do.")
    assert len(re.sub(r"\$[^$]*\$", "x", text).split()) <= 160
    assert "0.100" in text and "0.000900" in text
    assert "k-means has the lower squared error at every K" in text


def test_the_first_k_over_30_db_is_of_the_ks_run():
    sweep = fake_sweep([0.1, 0.01, 0.001], [0.1, 0.01, 0.001], [0.1, 0.01, 0.001], ks=[2, 8, 32])
    # PSNR = 10 log10(3 / error): 14.8, 24.8, 34.8 dB
    assert "Of these K, the smallest whose PSNR reaches 30 dB is K = 32" in narrative.abstract(sweep)


def test_motion_text_words_the_fits_starts_and_cites_the_given_table():
    sweep = fake_sweep([0.1, 0.05], [0.05, 0.04], [0.2, 0.1], ks=[4, 8])
    sweep.learned[8]["motion"] = {"iterations": 31}
    sweep.metrics[8]["iterations"] = 13
    text = narrative.motion_text(sweep, 8, "Table 7")
    assert "(Table 7)" in text and "Table 1" not in text
    assert "first of the fit's starts" in text and "the best of 3 k-means++ starts" in text
    assert "13 iterations on the winning start at this K" in text
    sweep.metrics[8]["n_init"] = 1
    text = narrative.motion_text(sweep, 8, "Table 7")
    assert "best" not in text and "starts" not in text and "winning" not in text
    assert "from the fit's start" in text and "one k-means++ start" in text


def test_smallest_k_explains_a_broad_component_only_when_there_is_one():
    broad = fake_sweep([0.1, 0.05], [0.05, 0.04], [0.2, 0.1],
                       variances=[[0.001, 0.04], [0.01] * 4])
    assert ("The broadest ($\\sigma$ = 0.200, $\\pi$ = 0.50) is 6.3 times as wide as the "
            "narrowest") in narrative.smallest_k(broad)
    even = fake_sweep([0.1, 0.05], [0.05, 0.04], [0.2, 0.1],
                      variances=[[0.01, 0.012], [0.01] * 4])
    assert "broad" not in narrative.smallest_k(even)


def fake_study():
    runs = [{"init": "kmeans++", "seed": s, "fits": [
        {"k": 2, "error": 0.048 + 0.001 * s, "iterations": 10, "iterations_all": 30,
         "seconds": 1.0},
        {"k": 4, "error": 0.0170 + 0.0002 * s, "iterations": 20, "iterations_all": 50,
         "seconds": 2.0}]} for s in range(3)]
    runs.append({"init": "random", "seed": 0, "fits": [
        {"k": 2, "error": 0.049, "iterations": 30, "iterations_all": 70, "seconds": 1.0},
        {"k": 4, "error": 0.0165, "iterations": 60, "iterations_all": 150, "seconds": 2.0}]})
    rule = {"settings": {"seed": 0, "max_iter": 10_000}, "fits": [
        {"k": 2, "error": 0.048741, "iterations": 16, "converged": True, "last_gain": 0.009},
        {"k": 4, "error": 0.0168055, "iterations": 120, "converged": True, "last_gain": 0.008}]}
    return {"image": {"width": 550, "height": 690}, "settings": {"n_init": 3, "tol": 1e-4},
            "runs": runs, "study_rule": rule}


def test_study_texts_compare_per_k_with_the_published_table():
    original = study.original()
    text = comparisons.seeds_text(fake_study(), original, "Table 4")
    # medians 0.049 (K=2, above 0.048828) and 0.0172 (K=4, above 0.016802)
    assert "our median error is above the table at K = 2 and 4 (+0.4%, +2.4%)" in text
    assert ("Seed 0's fits took 80 iterations over all their starts (3 starts per K), "
            "against the study's 130 for one run per K") in text
    assert "above our k-means++ median at no K" in text
    rule = comparisons.study_rule_text(fake_study(), original, "Table 3")
    assert "in 136 iterations in all against the study's 130" in rule
    assert "below the study's table at K = 2 and above it at K = 4 (+0.02%)" in rule
    assert "It is equal to the study's printed run at K = 2 and 4" in rule


def test_stopping_rules_compare_tolerances_not_times():
    original = study.original()
    pixels = original["image"]["width"] * original["image"]["height"]
    data = fake_study()
    data["settings"]["tol"] = 1e-4
    looser = 1e-4 * pixels / original["tol_total"]
    text = comparisons.study_intro(original, data)
    assert f"a tolerance about {looser:,.0f} times looser" in text and "sooner" not in text
    data["settings"]["tol"] = 1e-10  # stricter than the study's
    text = comparisons.study_intro(original, data)
    assert f"a tolerance about {1 / (1e-10 * pixels / original['tol_total']):,.0f} times " \
           f"stricter" in text and "looser" not in text


def test_seed_spread_names_the_widest_k_and_where_the_random_start_falls():
    text = narrative.seed_spread(fake_study(), [2, 4])
    # K = 2: 0.048 to 0.050 (+4.2 %); K = 4: 0.0170 to 0.0174 (+2.4 %); random 0.049, 0.0165
    assert "Over 3 seeds" in text and "up to 4.2% between the best and the worst seed (K = 2)" in text
    assert "below every seed's at K = 4 and within the seeds' range" in text
    no_random = fake_study()
    no_random["runs"] = no_random["runs"][:-1]
    assert "random" not in narrative.seed_spread(no_random, [2, 4])
    assert narrative.seed_spread(fake_study(), [8]) == ""  # no K in common


def seeds_with_errors(errors_by_k: dict) -> dict:
    """A sweep over seeds (make seeds) with the given k-means++ errors per K, one per seed."""
    n = len(next(iter(errors_by_k.values())))
    return {"runs": [{"init": "kmeans++", "seed": s, "fits": [
        {"k": k, "error": e[s], "iterations": 10, "iterations_all": 30, "seconds": 1.0}
        for k, e in errors_by_k.items()]} for s in range(n)]}


def test_seed_spread_calls_equal_errors_equal():
    # K = 6: exact palettes whose errors are rounding residues; K = 8: within 0.5 %
    exact_and_close = seeds_with_errors({6: [6.4e-33, 1.3e-32, 0.0], 8: [0.0100, 0.0101, 0.01005]})
    text = narrative.seed_spread(exact_and_close, [6, 8])
    assert "differs" not in text and "0.0%" not in text
    assert "every seed gives EM the same error at every K" in text
    mixed = seeds_with_errors({6: [6.4e-33, 1.3e-32, 0.0], 8: [0.0100, 0.0124, 0.0110]})
    text = narrative.seed_spread(mixed, [6, 8])
    assert "differs by up to 24.0% between the best and the worst seed (K = 8)" in text
    assert "every seed gives EM the same error at K = 6" in text and "103" not in text


def test_speed_text_splits_rows_and_kernel_and_says_where_both_converged():
    entry = {"rows": [{"k": 2, "ours_rows": 1000, "sklearn_rows": 7700,
                       "ours_us_per_row": 0.1, "sklearn_us_per_row": 1.8,
                       "ours_ms_per_iter": 0.1, "sklearn_ms_per_iter": 13.86,
                       "ours_seconds": 0.5, "sklearn_seconds": 9.0,
                       "ours_ll_per_pixel": 2.0, "sklearn_ll_per_pixel": 1.9},
                      {"k": 64, "ours_seconds": 3.0, "sklearn_seconds": None}]}
    text = comparisons.speed_text(entry, "Table 2")
    assert "7.7 times fewer rows" in text and "takes 18.0 times our kernel's time" in text
    assert not text.startswith("(a)")  # pandoc's Markdown would make it a numbered list
    assert "To convergence, at K = 2 (scikit-learn ran to convergence only there), ours " \
           "takes 0.50 s" in text
    assert "Table 2's were measured inside `make report`" in text
    assert comparisons.speed_text({"rows": [{"k": 2}]}) == ""


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
    where = "Appendix B, section 12"
    text = comparisons.optimum_text(photos, 2, where)
    assert "2 photographs that Python packages ship (a, b) in 3 fits at K = 4 and 8" in text
    assert "at or above scikit-learn's (its fit scored in this model) in 1 of 3 cases" in text
    assert "with split-and-merge moves (`SPLIT_MERGE=2`) in 2 of 3" in text
    # sklearn's error (0.01) is below ours at a4 and b4, its likelihood below ours at a4 only
    assert "lower reconstruction error (by more than 1%) in 2 of 3 cases, 1 of them at a lower" in text
    assert "raised the log-likelihood in 2 cases, by up to 0.200 nats" in text
    assert "there the reconstruction error rose in 1 (by up to 50%) and fell in 1 (by up to 25%)." in text
    assert "not necessarily a better palette (Appendix B, section 12)" in text
    better = [{"name": "a"} | photo_row(4, 2.0, 2.1, 1.9, 0.020, 0.010),
              {"name": "a"} | photo_row(8, 3.0, 3.1, 2.9, 0.0, 0.0)]
    text = comparisons.optimum_text(better, None, where)
    assert "palette" not in text and "in 2 cases" in text
    assert "error fell in 1 (by up to 50%) and changed by less than 1% in 1." in text
    zero = comparisons.optimum_text([{"name": "a"} | photo_row(4, 2.0, 2.1, 1.9, 0.0, 0.01)], 2, where)
    assert "error rose in 1." in zero and "in 1 of 1 case;" in zero  # no ratio from 0
    assert "no better optimum" in comparisons.optimum_text(
        [{"name": "a"} | photo_row(4, 2.0, 2.0, 1.9, 0.02, 0.02)], 2, where)
    assert comparisons.optimum_text([], 2, where) == ""
    table = tables.optimum(photos)
    assert [cell.strip() for cell in table.splitlines()[2].split("|")[1:-1]] == [
        "a", "4", "2.0000", "2.1000", "1.9000", "0.020000", "0.030000", "0.010000"]


# ------------------------------------------------------------------------ choosing K

def test_jpeg_curve_measures_psnr_against_the_image(cases):
    rgb = cases["gradient"].rgb
    curve = choosing.jpeg_curve(rgb, qualities=(10, 90))
    assert [p["quality"] for p in curve] == [10, 90]
    assert curve[0]["bytes"] < curve[1]["bytes"] and curve[0]["psnr_db"] < curve[1]["psnr_db"]
    assert choosing.jpeg_at(curve, curve[0]["psnr_db"] + 0.01) == curve[1]
    assert choosing.jpeg_at(curve, 99.0) is None
    noisy = rgb.copy()
    noisy[0, 0, 0] ^= 1  # one channel of one pixel one level off: error (1/255)^2 / pixels
    error = choosing.squared_error(rgb, noisy)
    assert error == pytest.approx(1 / 255 ** 2 / (rgb.shape[0] * rgb.shape[1]))


def test_bic_text_says_whether_bic_has_a_minimum():
    falling = fake_sweep([0.1, 0.05, 0.02], [0.1, 0.05, 0.02], [0.1, 0.05, 0.02])
    assert "BIC falls at every K up to 8" in choosing.bic_sentence(falling, [])
    text = choosing.bic_text(falling, [], "Table 2")
    assert "no minimum for K $\\le$ 8" in text and "`make seeds`" in text
    beyond = [{"k": 256, "bic": 1e6 - 1e5 * 3, "ll_per_pixel": 4.0}]
    text = choosing.bic_text(falling, beyond, "Table 2")
    assert "at K = 256: it has no minimum for K $\\le$ 256" in text
    assert "Each component costs 5 parameters" in text
    dip = fake_sweep([0.1, 0.05, 0.02], [0.1, 0.05, 0.02], [0.1, 0.05, 0.02])
    dip.metrics[8]["bic"] = 2e6
    assert "BIC (Table 2) is lowest at K = 4 of the K fitted (2, 4 and 8)" in \
        choosing.bic_text(dip, [], "Table 2")


def test_bic_text_names_only_fits_the_project_can_make(cases):
    """BIC falling up to the largest K: `make seeds` is named only when it would add a
    fit (study.sweep fits no K above the image's colours), and a sweep that reaches the
    image's number of colours is not explained by a photograph's clusters."""
    def falling(colours):
        sweep = fake_sweep([0.1, 0.05, 0.02], [0.1, 0.05, 0.02], [0.1, 0.05, 0.02])
        sweep.image["distinct_colours"] = colours
        return sweep

    text = choosing.bic_text(falling(100), [], "Table 2")
    assert "`make seeds`" not in text
    assert "up to 100, this image's number of distinct colours" in text
    assert "Gaussian clusters" in text
    text = choosing.bic_text(falling(300), [], "Table 2")
    assert "`make seeds` with this image adds a fit at K = 256" in text
    for text in (choosing.bic_text(falling(8), [], "Table 2"), prose(cases["blocks"])["bic"]):
        assert "`make seeds`" not in text and "Gaussian clusters" not in text
        assert "as many components as the image has distinct colours" in text
    assert "it is lowest at the largest K possible" in choosing.bic_sentence(falling(8), [])


def test_bic_lowest_at_the_last_k_is_no_minimum():
    sweep = fake_sweep([0.1, 0.05, 0.02], [0.1, 0.05, 0.02], [0.1, 0.05, 0.02])
    for k, bic in zip(sweep.ks, (1.0e6, 1.1e6, 0.9e6)):  # rises at K = 4, lowest at K = 8
        sweep.metrics[k]["bic"] = bic
    text = choosing.bic_text(sweep, [], "Table 2")
    assert "about that many components" not in text and "it rises at K = 4" in text
    assert "no minimum for K $\\le$ 8" in text and "`make seeds`" in text
    sentence = choosing.bic_sentence(sweep, [])
    assert "lowest at the largest K fitted, K = 8, so it shows no minimum" in sentence


def test_recommendation_keeps_the_jpeg_only_when_it_is_smaller():
    sweep = fake_sweep([0.01, 0.002], [0.008, 0.0015], [0.02, 0.004], ks=[8, 64],
                       png_bytes={8: 30_000, 64: 90_000}, file_bytes=60_000)
    # PSNR 24.8 and 31.8 dB
    small_jpegs = [{"quality": 50, "bytes": 20_000, "psnr_db": 33.0}]
    text = choosing.recommendation(sweep, small_jpegs, "Table 2", "section 5")
    assert "the smallest K of the sweep is K = 64: 90,000 bytes" in text
    assert "keep a JPEG" in text and "1.50 to 4.50 times its size" in text
    assert "use k-means: its PSNR is higher at every K, by 1.0 to 1.2 dB" in text
    big_jpegs = [{"quality": 50, "bytes": 40_000, "psnr_db": 26.0}]
    text = choosing.recommendation(sweep, big_jpegs, "Table 2", "section 5")
    assert "keep a JPEG" not in text and "smaller than a JPEG of the same PSNR at K = 8" in text
    assert "No JPEG up to quality 50 reaches the PSNR of K = 64" in text


def test_palette_against_jpeg_in_three_groups():
    # PSNR 24.8 dB at K = 8 and 31.8 dB at K = 64; one JPEG of 20,000 bytes reaches both
    jpeg = [{"quality": 50, "bytes": 20_000, "psnr_db": 33.0}]
    for png8, group8 in ((19_900, "tied"), (20_100, "tied"), (10_000, "PNG")):
        sweep = fake_sweep([0.01, 0.002], [0.01, 0.002], [0.02, 0.004], ks=[8, 64],
                           png_bytes={8: png8, 64: 90_000})
        ratio, groups = choosing.png_against_jpeg(sweep, jpeg)
        assert groups == {"JPEG": [64], "tied": [8] if group8 == "tied" else [],
                          "PNG": [8] if group8 == "PNG" else []}
        for text in (choosing.recommendation(sweep, jpeg, "Table 2", "section 5"),
                     choosing.summary(sweep, jpeg)):
            assert "a JPEG of the same PSNR is smaller at K = 64 (the palette PNG is 4.50 " \
                   "times its size)" in text
            assert ("within 1% of each other's size at K = 8" in text) == (group8 == "tied")
            assert ("the palette PNG is smaller than a JPEG of the same PSNR at K = 8 (0.50 "
                    "times its size)" in text) == (group8 == "PNG")
            assert "every K" not in text.split("A palette is worth")[0]


def test_kmeans_gains_keep_the_digits_of_the_smallest():
    # k-means 1.1 % and 10 % below EM: 0.048 and 0.46 dB, neither tied
    sweep = fake_sweep([0.0100, 0.0020], [0.00989, 0.0018], [0.02, 0.004], ks=[8, 64])
    text = choosing.recommendation(sweep, [{"quality": 50, "bytes": 9, "psnr_db": 9.0}],
                                   "Table 2", "section 5")
    low, high = re.search(r"higher at every K, by ([\d.]+) to ([\d.]+) dB", text).groups()
    assert float(low) == pytest.approx(10 * math.log10(0.0100 / 0.00989), rel=0.1)
    assert float(high) == pytest.approx(10 * math.log10(0.0020 / 0.0018), rel=0.1)


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


def test_choosing_table_shows_bic_differences_on_a_small_image():
    sweep = fake_sweep([0.1, 0.05, 0.02], [0.1, 0.05, 0.02], [0.1, 0.05, 0.02])
    bic = {2: -10_612.4, 4: -11_050.2, 8: -10_990.7}  # a small image's BIC, in nats
    for k, b in bic.items():
        sweep.metrics[k]["bic"] = b
    table = tables.choosing(choosing.table_rows(sweep, [], []), sweep.image, "JPEG")
    lines = table.splitlines()
    assert lines[0].rstrip(" |").endswith("BIC above lowest")
    cells = {int(line.split("|")[1]): line.split("|")[-2].strip() for line in lines[2:-1]}
    shown = {k: float(c.replace(",", "")) for k, c in cells.items()}
    assert cells[4] == "0" and shown[2] > shown[8] > shown[4]
    assert shown[2] - shown[8] == pytest.approx(bic[2] - bic[8], abs=1)


def test_study_tables_have_one_row_per_k_with_the_published_errors():
    original = study.original()
    rows = tables.study(fake_study(), original).splitlines()[2:]
    assert len(rows) == 2
    assert "0.048828" in rows[0] and "0.016802" in rows[1]
    assert "0.048000 to 0.050000" in rows[0] and "| 30 |" in re.sub(r" +", " ", rows[0])
    rule = tables.study_rule(fake_study(), original).splitlines()[2:]
    assert "0.048741" in rule[0] and "0.016805" in rule[1] and "yes (0.0090)" in rule[0]


def test_study_table_counts_iterations_as_its_caption_says():
    data = fake_study()
    assert tables.study_iterations(data) == "the iterations of every start"
    assert "| 30 |" in re.sub(r" +", " ", tables.study(data, study.original()))
    data["settings"]["split_merge"] = 2  # study.one_fit counts only the winning start's
    for run in data["runs"]:
        for fit in run["fits"]:
            fit["iterations_all"] = None
    rows = tables.study(data, study.original()).splitlines()[2:]
    assert "n/a" not in "".join(rows)
    assert [re.sub(r" +", " ", r).split(" | ")[4] for r in rows] == ["10", "20"]
    assert [re.sub(r" +", " ", r).split(" | ")[-1].rstrip(" |") for r in rows] == ["30", "60"]
    assert tables.study_iterations(data) == ("the iterations of the winning start and its "
                                             "split-and-merge moves")


def test_numbers_follow_first_mention_and_refuse_another_order():
    tab = tables.Numbered()
    assert tab.ref("b") == "Table 1"
    with pytest.raises(ValueError, match="Table 2 is shown as the table number 1"):
        tab.label("a", key="a")
    tab = tables.Numbered()
    assert tab.label("x", key="x").startswith("**Table 1.**") and tab.ref("x") == "Table 1"


def test_photograph_tables_keep_each_photograph_whole():
    photos = [{"name": name, "k": k} for name in "abcde" for k in (4, 8, 16)]
    parts = tables.by_photograph(photos, max_rows=7)
    assert ["".join(dict.fromkeys(p["name"] for p in part)) for part in parts] == ["ab", "cd", "e"]
    assert sum(parts, []) == photos
    assert len(tables.by_photograph(photos, max_rows=100)) == 1


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


def test_sigma_bars_keep_the_narrowest_visible_and_order():
    heights = figures.sigma_heights(np.array([0.004, 0.04, 0.4]), 0.004, 0.4)
    assert heights[0] == pytest.approx(0.15) and heights[2] == pytest.approx(1.0)
    assert heights[1] == pytest.approx(0.575)  # the middle of a log scale


def figure_texts(fig):
    """Every visible text of a figure, with its size in points as printed: a WIDTH-inch
    figure is shown 6.5 inches wide in the PDF."""
    fig.draw_without_rendering()
    scale = min(1.0, 6.5 / fig.get_figwidth())
    return [(t.get_text(), t.get_fontsize() * scale) for t in fig.findobj(matplotlib.text.Text)
            if t.get_visible() and t.get_text().strip()]


def test_figures_print_no_text_under_8_points(cases):
    case = cases["gradient"]
    s, ka = case.sweep, 8
    errs = narrative.errors(s)
    drawn = [figures.hero(case.rgb, case.segmented, [2, 8], s, errs),
             figures.error_curves(s, errs, study.published()),
             figures.seed_spread(case.seeds, s.ks), figures.palettes(s),
             figures_space.colour_cloud(s.learned[ka]["cloud"], s.metrics[ka]["model"]),
             figures_space.motion(s.learned[ka]["motion"], s.learned[ka]["cloud"]),
             figures.convergence(s), figures.study_curve(case.study, study.published()),
             figures.certainty(results.load_png(s.results_dir, ka, learned.ENTROPY_FILE, "L"),
                               results.load_png(s.results_dir, ka, learned.RELABELLED_FILE, "L"),
                               case.rgb, s.learned[ka]["relabelled_share"])]
    small = [(name, size) for fig in drawn for name, size in figure_texts(fig) if size < 8]
    for fig in drawn:
        matplotlib.pyplot.close(fig)
    assert not small, small


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


# ------------------------------------------------------------------------ the notebook

CAPTION = re.compile(r"^\*\*(Figure|Table) ([A-Z]?\d+)\.\*\*")


@pytest.mark.slow
def test_report_cites_every_figure_and_table_and_its_text_reads_as_prose(cases, tmp_path):
    """notebooks/report.ipynb on a small sweep with every optional input (the seeds, the
    study and the benchmark): every Figure n and Table n is cited outside its caption,
    and every paragraph it writes passes the copy editor's checks."""
    import nbformat

    from pipeline.run_notebook import run

    case = cases["gradient"]
    data = {name: tmp_path / f"{name}.json" for name in ("seeds", "study", "bench")}
    atomic.write_json(data["seeds"], case.seeds)
    atomic.write_json(data["study"], case.study)
    rows = [{"k": k, "ours_ms_per_iter": 1.0, "sklearn_ms_per_iter": 9.0, "ours_us_per_row": 0.1,
             "sklearn_us_per_row": 0.5, "ours_rows": 900, "sklearn_rows": 1728,
             "ours_seconds": 0.1, "sklearn_seconds": 1.0, "ours_ll_per_pixel": 2.0,
             "sklearn_ll_per_pixel": 1.9} for k in case.sweep.ks]
    atomic.write_json(data["bench"], {
        "images": {"image": {"rows": rows}},
        "photos": [{"name": "a", "rows": [photo_row(4, 2.0, 2.1, 1.9, 0.02, 0.03)]}]})
    out = tmp_path / "report.ipynb"
    run(paths.ROOT / "notebooks" / "report.ipynb", out,
        {"results_dir": str(case.sweep.results_dir), "ks": " ".join(map(str, case.sweep.ks)),
         "image": str(case.image), "study_data": str(data["study"]),
         "bench_data": str(data["bench"]), "seeds_data": str(data["seeds"])},
        cwd=str(paths.ROOT / "notebooks"), progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    texts, captions = [], []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            texts.append(cell.source)
        for output in cell.get("outputs", []):
            caption = output.get("metadata", {}).get("em_report", {}).get("caption")
            if caption:
                captions.append(caption)
            markdown = output.get("data", {}).get("text/markdown")
            if markdown:
                (captions if CAPTION.match(markdown) else texts).append(markdown)
    shown = [CAPTION.match(c).groups() for c in captions]
    assert [n for kind, n in shown if kind == "Figure"][:3] == ["1", "2", "3"]
    assert {kind for kind, _ in shown} == {"Figure", "Table"}
    body = "\n".join(texts + [CAPTION.sub("", c) for c in captions])
    uncited = [f"{kind} {n}" for kind, n in shown if not re.search(rf"\b{kind} {n}\b", body)]
    assert not uncited, uncited
    paragraphs = [item.removeprefix("- ") for t in texts for p in t.split("\n\n")
                  if p.strip() and not p.lstrip().startswith(("#", "|", "```"))
                  for item in p.split("\n- ")]
    bad = {p[:50]: found for p in paragraphs if (found := problems(p))}
    assert not bad, bad


def test_the_derivation_reads_as_an_appendix():
    """Appendix B is prose: no notebook words, results shown as sentences or tables (no
    print), every figure it shows cited in its text."""
    import nbformat

    nb = nbformat.read(paths.ROOT / "notebooks" / "derivation.ipynb", as_version=4)
    prose_text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"\b(notebook|cells?)\b", prose_text, re.I)
    assert "print(" not in code
    shown = code.count("FIG.show(")
    cited = {int(n) for n in re.findall(r"Figure B(\d+)", prose_text)}
    assert shown >= 8 and cited == set(range(1, shown + 1)), (shown, sorted(cited))


# ------------------------------------------------------------------------ the modules

def test_every_public_function_of_the_pipeline_is_used():
    """A function or class of src/pipeline that nothing in the repository (code,
    notebooks, Makefile, tests, benchmarks) names outside its own definition is dead."""
    import ast
    import subprocess
    from collections import Counter

    files = subprocess.run(["git", "ls-files", "*.py", "*.ipynb", "Makefile"], cwd=paths.ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    words = Counter(re.findall(r"\w+", "\n".join(
        (paths.ROOT / f).read_text() for f in files if (paths.ROOT / f).is_file())))
    unused = []
    for module in sorted((paths.ROOT / "src" / "pipeline").glob("*.py")):
        for node in ast.parse(module.read_text()).body:
            if (isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")
                    and words[node.name] < 2):
                unused.append(f"{module.stem}.{node.name}")
    assert not unused, unused
