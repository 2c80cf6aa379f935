"""The interactive explorer (pipeline.explore and the explore_* modules it wires),
driven through its widgets without a browser: every change refits with exactly
em.fit's numbers, a newer change stops an older fit, bad choices become messages, the
settings list makes every widget, and nothing is written into the project."""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import io
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import traitlets
from PIL import Image

import em
from pipeline import experiment, explore, images, paths
from pipeline import explore_draw as draw, explore_fit as fitting
from pipeline.explore_jobs import Job, Jobs
from pipeline.explore_settings import BY_NAME, SETTINGS, ExploreError, Settings, build_widget


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """images/ of a test: the default photograph shrunk to 64 x 75 pixels (thousands
    of colours), a 4-colour image and a file that is not an image."""
    folder = tmp_path_factory.mktemp("images")
    rgb = images.load_rgb(paths.default_image())
    Image.fromarray(rgb).resize((64, 75), Image.Resampling.BILINEAR).save(folder / "small.png")
    four = np.zeros((10, 12, 3), np.uint8)
    four[:5, :6], four[:5, 6:], four[5:, :6] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    Image.fromarray(four).save(folder / "four.png")
    (folder / "notes.png").write_text("not a picture")
    return folder


@pytest.fixture
def explorer(image_dir) -> explore.Explorer:
    return explore.Explorer(image=str(image_dir / "small.png"), images_dir=image_dir,
                            settings=Settings(k=4))


def _colours(path: Path):
    colours8, counts, _ = images.distinct_colours(images.load_rgb(path))
    return colours8 / 255.0, counts


def _assert_same_fit(a: em.FitResult, b: em.FitResult):
    for name in ("weights", "means", "variances", "history", "restarts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.n_iter == b.n_iter


@pytest.mark.parametrize("change", [
    {"k": 7}, {"seed": 3}, {"init": "random"}, {"n_init": 2}, {"split_merge": 0},
    {"k": 3, "seed": 5, "init": "random", "n_init": 3, "split_merge": 4},
])
def test_a_change_refits_with_the_numbers_of_em_fit(explorer, image_dir, change):
    for name, value in change.items():
        getattr(explorer, name).value = value
    s = explorer.settings
    colours, counts = _colours(image_dir / "small.png")
    expected = em.fit(colours, s.k, sample_weight=counts, init=s.init, n_init=s.n_init,
                      split_merge=s.split_merge, tol=fitting.TOL, max_iter=fitting.MAX_ITER,
                      seed=s.seed)
    _assert_same_fit(explorer.result, expected)
    assert "⚠" not in explorer.message
    assert explorer.mixture.k == s.k and len(explorer.summary.palette) == s.k


def test_the_numbers_shown_are_the_pipelines(explorer, image_dir, tmp_path):
    colours, counts = _colours(image_dir / "small.png")
    labels = em.predict(explorer.result, colours)
    error = experiment.reconstruction_error(colours, counts, labels, explorer.result.means)
    assert explorer.summary.error == error
    assert explorer.summary.psnr_db == experiment.psnr_db(error)
    # The palette PNG is the one make report writes.
    out = tmp_path / "indexed.png"
    images.save_indexed_png(out, explorer.summary.labels, explorer.summary.palette)
    assert explorer.summary.png_bytes == out.stat().st_size
    assert f"{explorer.summary.png_bytes:,} bytes" in explorer.metrics.value


def test_the_segmented_image_shown_is_every_pixel_in_its_components_colour(explorer):
    shown = np.asarray(Image.open(io.BytesIO(explorer.segmented.value)).convert("RGB"))
    np.testing.assert_array_equal(shown, explorer.summary.palette[explorer.summary.labels])


def test_the_kept_plots_draw_what_fresh_ones_draw(image_dir, monkeypatch):
    """The plots keep their figure (and the RGB-space cloud as a background) between
    redraws: after other mixtures, steps with their lines, and the other picture
    (full image and preview), each shows what a new plot draws, nothing left over."""
    monkeypatch.setattr(explore, "PREVIEW_PIXELS", 1200)
    explorer = explore.Explorer(image=str(image_dir / "small.png"), images_dir=image_dir,
                                settings=Settings(k=4))

    def assert_fresh():
        shown = explorer.shown
        picture = shown["picture"]
        assert explorer.space_plot.value == draw.RgbSpacePlot().png(
            picture, shown["mixture"], shown["previous"])
        assert explorer.history_plot.value == draw.HistoryPlot().png(
            shown["history"], picture.n_pixels, shown["title"], *shown["marks"])

    first = explorer.space_plot.value
    explorer.k.value = 6
    assert_fresh()
    assert explorer.space_plot.value != first
    explorer.step_button.click()
    explorer.step_button.click()  # one step: a line from each mean's last place
    assert_fresh()
    explorer.seed.value = 3  # a refit: no lines
    assert_fresh()
    explorer.full_button.click()
    assert_fresh()
    explorer.k.value = 4  # back to the preview
    assert_fresh()


def test_labels_switch_between_map_and_nearest_mean_without_refitting(explorer, image_dir):
    colours, counts = _colours(image_dir / "small.png")
    result = explorer.result
    explorer.labels.value = "nearest"
    assert explorer.result is result
    nearest, sq = em.nearest_centre(colours, result.means)
    np.testing.assert_array_equal(explorer.summary.colour_labels, nearest)
    assert explorer.summary.error == pytest.approx(counts @ sq / counts.sum(), rel=1e-12)
    explorer.labels.value = "map"
    np.testing.assert_array_equal(explorer.summary.colour_labels,
                                  em.predict(result, colours))


def test_a_preview_is_said_so_and_the_button_fits_every_pixel(image_dir, monkeypatch):
    monkeypatch.setattr(explore, "PREVIEW_PIXELS", 1200)
    explorer = explore.Explorer(image=str(image_dir / "small.png"), images_dir=image_dir,
                                settings=Settings(k=4, seed=1))
    h, w = explorer.picture.shape
    assert h * w <= 1200 and abs(h / w - 75 / 64) < 0.05
    assert "preview" in explorer.message and "downscaled from 64 x 75" in explorer.message
    preview = explorer.picture
    _assert_same_fit(explorer.result, em.fit(
        preview.colours, 4, sample_weight=preview.counts, tol=fitting.TOL,
        max_iter=fitting.MAX_ITER, seed=1, split_merge=explorer.settings.split_merge))

    explorer.full_button.click()
    assert explorer.picture.shape == (75, 64)
    assert "the full image" in explorer.message
    colours, counts = _colours(image_dir / "small.png")
    _assert_same_fit(explorer.result, em.fit(colours, 4, sample_weight=counts,
                                             tol=fitting.TOL, max_iter=fitting.MAX_ITER,
                                             seed=1, split_merge=explorer.settings.split_merge))


def test_steps_are_plain_em_iterations_from_the_start(explorer, image_dir):
    colours, counts = _colours(image_dir / "small.png")
    explorer.init.value = "random"
    for _ in range(6):
        explorer.step_button.click()  # the start, then 5 iterations
    assert "iteration 5 of restart 1" in explorer.metrics.value
    assert explorer.step_button.description == "EM step 5 → 6"
    # Reference: the kernel's separate E- and M-steps from the same start.
    mixture = fitting.initial_mixture(explorer.picture, explorer.settings)
    history = []
    for _ in range(6):
        resp, log_norm = em.e_step(colours, mixture)
        history.append(counts @ log_norm)
        last, mixture = mixture, em.m_step(colours, resp, counts)
    np.testing.assert_allclose(explorer.shown["history"], history, rtol=1e-10)
    np.testing.assert_allclose(explorer.mixture.means, last.means, rtol=0, atol=1e-10)
    assert np.all(np.diff(history) > 0)
    explorer.k.value = 5  # any change leaves step mode and refits
    assert explorer.step_button.description == "EM step by step"


def test_the_start_of_steps_is_the_start_of_em_fit(image_dir):
    picture = fitting.prepare("small", images.load_rgb(image_dir / "small.png"))
    for init in explore.INITS:
        settings = Settings(k=6, seed=2, init=init)
        start = fitting.initial_mixture(picture, settings)
        with pytest.warns(em.ConvergenceWarning):
            one = em.fit(picture.colours, 6, sample_weight=picture.counts, init=init,
                         seed=2, max_iter=1, tol=1e-300)
        assert em.log_likelihood(start, picture.colours, picture.counts) == \
            pytest.approx(one.history[0], rel=1e-12)


def test_a_bad_upload_is_a_message_and_the_widgets_stay_usable(explorer):
    before = explorer.image.value
    explorer.upload.value = ({"name": "holiday.jpg", "type": "image/jpeg", "size": 5,
                              "content": memoryview(b"hello"),
                              "last_modified": datetime.datetime.now(datetime.UTC)},)
    assert explorer.message.startswith("⚠")
    assert "'holiday.jpg'" in explorer.message and "not an image file" in explorer.message
    assert "/tmp" not in explorer.message  # names the upload, not where it was put
    assert explorer.image.value == before
    explorer.k.value = 3
    assert explorer.result.k == 3 and "⚠" not in explorer.message


def test_a_good_upload_is_offered_and_fitted(explorer, image_dir):
    explorer.upload_file("mine.png", (image_dir / "four.png").read_bytes())
    assert explorer.image.value == "upload: mine.png"
    assert explorer.picture.name == "mine.png" and len(explorer.picture.counts) == 4
    assert explorer.result.k == 4


def test_an_upload_under_the_name_shown_refits_with_the_new_picture(explorer, image_dir):
    explorer.upload_file("mine.png", (image_dir / "four.png").read_bytes())
    explorer.upload_file("mine.png", (image_dir / "small.png").read_bytes())
    assert explorer.image.value == "upload: mine.png"
    assert explorer.picture.shape == (75, 64) and len(explorer.picture.counts) > 4
    colours, counts = _colours(image_dir / "small.png")
    s = explorer.settings
    _assert_same_fit(explorer.result, em.fit(
        colours, s.k, sample_weight=counts, n_init=s.n_init, split_merge=s.split_merge,
        tol=fitting.TOL, max_iter=fitting.MAX_ITER, seed=s.seed))


def test_k_above_the_distinct_colours_is_a_message(explorer, image_dir):
    explorer.image.value = str(image_dir / "four.png")
    assert explorer.result.k == 4
    explorer.k.value = 5
    assert "K = 5 is more than the 4 distinct colours of four.png" in explorer.message
    assert explorer.result.k == 4  # what was shown stays
    explorer.k.value = 2
    assert explorer.result.k == 2 and "⚠" not in explorer.message


def test_an_unreadable_file_under_images_is_a_message(explorer, image_dir):
    explorer.image.value = str(image_dir / "notes.png")
    assert "notes.png" in explorer.message and "not an image file" in explorer.message
    explorer.image.value = str(image_dir / "small.png")
    assert "⚠" not in explorer.message


def test_k_outside_2_to_256_is_refused_before_fitting(image_dir):
    picture = fitting.prepare("small", images.load_rgb(image_dir / "small.png"))
    with pytest.raises(ExploreError, match="choose K from 2 to 256"):
        fitting.fit(picture, Settings(k=300))


def test_an_upload_reads_as_a_file_does(image_dir):
    path = image_dir / "small.png"
    np.testing.assert_array_equal(fitting.load_upload("x.png", path.read_bytes()),
                                  images.load_rgb(path))


# ------------------------------------------------------------ nothing written

_written: list[str] | None = None


def _record_writes(event, args):
    if _written is None:
        return
    if event == "open":
        path, mode, flags = args
        if (mode and any(c in mode for c in "wax+")) or \
                (mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
            _written.append(os.fsdecode(path) if not isinstance(path, int) else "")
    elif event in ("os.rename", "os.replace", "os.mkdir"):
        _written.append(os.fsdecode(args[1] if event != "os.mkdir" else args[0]))


sys.addaudithook(_record_writes)


def test_exploring_writes_nothing_into_the_project(explorer, image_dir):
    global _written
    _written = []
    try:
        explorer.k.value = 6
        explorer.labels.value = "nearest"
        explorer.full_button.click()
        explorer.step_button.click()
        explorer.step_button.click()
        explorer.upload_file("mine.png", (image_dir / "four.png").read_bytes())
    finally:
        written, _written = _written, None
    assert written, "the PNG size is measured through a temporary file"
    root = paths.ROOT.resolve()
    inside = [p for p in written if p and Path(p).resolve().is_relative_to(root)]
    assert inside == []


# ------------------------------------------------------------ the newest change wins

def _shown_and_cancelled(explorer):
    return [(e.what, e.doing) for e in explorer.events if e.what in ("shown", "cancelled")]


def test_a_second_setting_during_a_long_fit_wins_and_the_old_fit_stops(image_dir, monkeypatch):
    """K = 64 with 3 restarts and split-and-merge moves is running when K is set to 2:
    the K = 2 fit starts at once, the K = 64 fit stops at the next iteration it starts
    and never shows; K = 2 does. Each fit is held at its first poll of `cancel` until
    the test has looked at the screen."""
    settings = Settings(k=4, n_init=3, split_merge=2)
    explorer = explore.Explorer(image=str(image_dir / "small.png"), images_dir=image_dir,
                                settings=settings, background=True)
    assert explorer.wait(60)
    started = {64: threading.Event(), 2: threading.Event()}
    go_on = {64: threading.Event(), 2: threading.Event()}
    polls = []  # the K = 64 fit's answers after it was let go on
    real_fit = explore.fit

    def held_fit(picture, settings, cancel=None):
        k = settings.k

        def held():
            if not go_on[k].is_set():
                started[k].set()
                go_on[k].wait(60)
            if k == 64:
                polls.append(cancel())
            return cancel()
        return real_fit(picture, settings, held)
    monkeypatch.setattr(explore, "fit", held_fit)

    explorer.k.value = 64
    assert started[64].wait(60)
    explorer.k.value = 2
    assert started[2].wait(60)  # the newest fit runs without waiting for the old to stop
    # The status line is the newest job's; the old pictures are marked stale.
    assert explorer.message.startswith("fitting K = 2 on the preview")
    results = (explorer.segmented, explorer.segmented_caption, explorer.palette,
               explorer.history_plot, explorer.space_plot, explorer.metrics)
    assert all(w in explorer.dimmed for w in results)
    go_on[64].set()
    while not any(e.what == "cancelled" for e in explorer.events):
        go_on[2].wait(0.01)
    go_on[2].set()
    assert explorer.wait(60)
    assert polls == [True]  # the old fit polled once more, and stopped there
    assert _shown_and_cancelled(explorer) == [
        ("shown", "fitting K = 4 on the preview"), ("cancelled", "fitting K = 64 on the preview"),
        ("shown", "fitting K = 2 on the preview")]
    colours, counts = _colours(image_dir / "small.png")
    _assert_same_fit(explorer.result, em.fit(colours, 2, sample_weight=counts, n_init=3,
                                             split_merge=2, tol=fitting.TOL,
                                             max_iter=fitting.MAX_ITER))
    assert "K = 2, MAP labels" in explorer.message and "⚠" not in explorer.message
    assert explorer.dimmed == []


def test_in_the_background_no_job_shows_after_a_newer_one_was_made(image_dir):
    explorer = explore.Explorer(image=str(image_dir / "small.png"), images_dir=image_dir,
                                settings=Settings(k=4), background=True)
    for k in (5, 6, 7, 8):  # changes made while fits run
        explorer.k.value = k
    assert explorer.wait(60)
    submitted = {}
    for event in explorer.events:
        if event.what == "submitted":
            submitted[event.job] = event.at
        if event.what == "drawing":
            assert max(submitted) == event.job, "a job drew after a newer change"
    # An older job may end (cancelled) after K = 8 is shown: it was winding down.
    shown = [doing for what, doing in _shown_and_cancelled(explorer) if what == "shown"]
    assert shown[-1] == "fitting K = 8 on the preview"
    ended = {e.job for e in explorer.events if e.what in ("shown", "cancelled")}
    assert ended == {e.job for e in explorer.events if e.what == "submitted"}
    colours, counts = _colours(image_dir / "small.png")
    _assert_same_fit(explorer.result, em.fit(colours, 8, sample_weight=counts,
                                             tol=fitting.TOL, max_iter=fitting.MAX_ITER))
    explorer.step_button.click()
    explorer.step_button.click()  # steps queue behind each other: both run, in order
    assert explorer.wait(60)
    assert explorer.step_button.description == "EM step 1 → 2"
    steps = [e.job for e in explorer.events if e.what == "submitted"][-2:]
    assert [e.job for e in explorer.events if e.what == "shown" and e.job in steps] == steps


def _wait_for_event(explorer, what: str, doing: str) -> None:
    for _ in range(6000):
        if any((e.what, e.doing) == (what, doing) for e in explorer.events):
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"no {what!r} event of {doing!r} in 60 s")


@pytest.mark.parametrize("when", ["drawing", "shown"])
def test_a_labels_change_while_a_fit_draws_is_drawn(image_dir, monkeypatch, when):
    """The labels are set to nearest mean after the K = 6 fit read MAP and began to
    draw: while it draws its pictures ("drawing"; held before its numbers), or once
    they are shown while the palette PNG is being sized ("shown"; held there). The
    fit is not stopped, and the picture, numbers and status at the end are of the
    nearest-mean labels of its mixture."""
    explorer = explore.Explorer(image=str(image_dir / "small.png"), images_dir=image_dir,
                                settings=Settings(k=4), background=True)
    assert explorer.wait(60)
    go_on = threading.Event()
    if when == "drawing":
        real_metrics = draw.metrics_html

        def held_metrics(*args, **kwargs):
            go_on.wait(60)
            return real_metrics(*args, **kwargs)
        monkeypatch.setattr(draw, "metrics_html", held_metrics)
    else:
        real_summarise = explore.summarise

        class HeldSize:
            def __init__(self, sized):
                self.sized = sized

            def result(self, timeout=None):
                if not go_on.wait(timeout):
                    raise TimeoutError
                return self.sized.result()

        def held_summarise(*args, **kwargs):
            summary, sized = real_summarise(*args, **kwargs)
            return summary, HeldSize(sized)
        monkeypatch.setattr(explore, "summarise", held_summarise)

    explorer.k.value = 6
    _wait_for_event(explorer, when, "fitting K = 6 on the preview")
    explorer.labels.value = "nearest"
    go_on.set()
    assert explorer.wait(60)
    assert ("shown", "fitting K = 6 on the preview") in _shown_and_cancelled(explorer)
    picture, result, summary = explorer.picture, explorer.result, explorer.summary
    assert result.k == 6
    nearest, sq = em.nearest_centre(picture.colours, result.means)
    assert not np.array_equal(nearest, em.predict(result, picture.colours)), \
        "the two rules label this image differently at K = 6"
    np.testing.assert_array_equal(summary.colour_labels, nearest)
    assert summary.error == pytest.approx(picture.counts @ sq / picture.n_pixels, rel=1e-12)
    assert summary.png_bytes == len(images.indexed_png(summary.labels, summary.palette))
    shown = np.asarray(Image.open(io.BytesIO(explorer.segmented.value)).convert("RGB"))
    np.testing.assert_array_equal(shown, summary.palette[nearest[picture.inverse]]
                                  .reshape(*picture.shape, 3))
    assert "whose mean is nearest" in explorer.segmented_caption.value
    assert "K = 6, nearest means" in explorer.message and "⚠" not in explorer.message
    assert f"{summary.png_bytes:,} bytes" in explorer.metrics.value


def test_jobs_supersede_all_but_earlier_steps_and_tick_for_the_newest():
    gate, ran, ticks = threading.Event(), [], []
    jobs = Jobs(background=True, tick=0.01,
                on_tick=lambda job, seconds: ticks.append((job.doing, seconds)))

    def run(job):
        ran.append(job.doing)
        if job.doing == "fit 1":
            gate.wait(60)
            job.stop_if_superseded()
        ran.append(f"{job.doing} done")
    first = jobs.submit(Job("fit", "fit 1", run))
    while not ticks:
        gate.wait(0.01)
    steps = [jobs.submit(Job("step", f"step {i}", run)) for i in (1, 2)]
    assert first.cancelled() and not any(s.cancelled() for s in steps)
    gate.set()
    assert jobs.wait(60)
    assert ran == ["fit 1", "step 1", "step 1 done", "step 2", "step 2 done"]
    assert [e.what for e in jobs.events if e.job == first.id] == ["submitted", "cancelled"]
    assert ticks[0][0] == "fit 1"  # the clock of the newest job, counting up
    assert all(b >= a for (d, a), (e, b) in zip(ticks, ticks[1:]) if d == e)


def test_a_job_dropped_before_it_ran_is_recorded_cancelled():
    """Step 2 waits behind step 1 when a fit supersedes both: step 2 never runs and
    its "cancelled" is recorded at once; every job submitted ends in the log."""
    started, gate, ran = threading.Event(), threading.Event(), []
    jobs = Jobs(background=True)

    def run(job):
        ran.append(job.doing)
        if job.doing == "step 1":
            started.set()
            gate.wait(60)
            job.stop_if_superseded()
    first = jobs.submit(Job("step", "step 1", run))
    assert started.wait(60)
    waiting = jobs.submit(Job("step", "step 2", run))
    fit = jobs.submit(Job("fit", "fit", run))
    assert [e.what for e in jobs.events if e.job == waiting.id] == ["submitted", "cancelled"]
    gate.set()
    assert jobs.wait(60)
    assert "step 2" not in ran and fit.done and waiting.done
    cancelled = [e.job for e in jobs.events if e.what == "cancelled"]
    assert sorted(cancelled) == [first.id, waiting.id]  # the fit ran to its end


# ------------------------------------------------------------ settings and screen

def test_the_settings_list_builds_every_widget_and_its_checks(explorer):
    """Every entry of SETTINGS is a widget of the explorer, labelled and explained as
    the entry says; the entries that refit are em.fit's keywords and the others are
    not; every value a widget offers passes the check and reaches Settings as it is,
    and what the check refuses the widget cannot hold."""
    fit_keywords = inspect.signature(em.fit).parameters
    picture = explorer.picture
    for s in SETTINGS:
        widget = getattr(explorer, s.name)
        assert widget.value == getattr(Settings(k=4), s.name)
        assert (widget.description, widget.tooltip) == (s.label, s.help)
        assert (s.name in fit_keywords) == s.fits, s.name
        control, _ = build_widget(s, s.default)
        if s.choices is not None:
            offered, bad = [value for _, value in control.options], "nonsense"
            assert set(offered) == set(s.choices)
            with pytest.raises(traitlets.TraitError):
                control.value = bad
        else:
            offered, bad = [s.low, s.high, *s.presets], s.high + 1
            control.value = bad
            assert control.value == s.high  # held at the top of the range
        for value in offered:
            control.value = value
            settings = dataclasses.replace(Settings(), **{s.name: control.value})
            fitting.check(settings, picture)  # accepted
            assert getattr(settings, s.name) == value
        with pytest.raises(ExploreError, match=f"^{s.label}"):
            fitting.check(Settings(**{s.name: bad}), picture)


def test_k_has_presets_and_free_entry():
    control, shown = build_widget(BY_NAME["k"], 16)
    presets = shown.children[1]
    assert [v for _, v in presets.options] == [2, 4, 8, 16, 32, 64, 128, 256]
    presets.value = 64
    assert control.value == 64
    control.value = 20
    assert presets.value is None
    control.value = 128
    assert presets.value == 128


def test_the_whole_palette_shows_at_any_k():
    rng = np.random.default_rng(0)
    for k in (3, 40, 256):
        weights = rng.dirichlet(np.ones(k))
        mixture = em.Mixture(weights, rng.random((k, 3)), rng.random(k) / 100)
        text = draw.palette_html(mixture, experiment.palette_of(mixture))
        assert text.count('title="component') == k and f"all {k} component" in text
        assert ("<br>σ" in text) == (k <= draw.COMPACT_PALETTE)  # numbers under swatches


def test_captions_say_what_the_images_are(image_dir, monkeypatch):
    monkeypatch.setattr(explore, "PREVIEW_PIXELS", 1200)
    explorer = explore.Explorer(image=str(image_dir / "small.png"), images_dir=image_dir,
                                settings=Settings(k=6))
    h, w = explorer.picture.shape
    assert f"{w} x {h} pixels" in explorer.original_caption.value
    assert "a preview of the 64 x 75 image" in explorer.original_caption.value
    used = len(np.unique(explorer.summary.colour_labels))
    assert f"{used} of the 6 components hold pixels" in explorer.segmented_caption.value
    assert "most probable component" in explorer.segmented_caption.value
    explorer.labels.value = "nearest"
    assert "whose mean is nearest" in explorer.segmented_caption.value


def test_split_and_merge_moves_are_marked_on_the_history(explorer):
    explorer.k.value = 8
    explorer.split_merge.value = 2
    result = explorer.result
    assert result.moves, "this image and seed keep a move at K = 8"
    assert "split-and-merge move" in explorer.history_caption.value
    unmarked = draw.HistoryPlot().png(result.history, explorer.picture.n_pixels,
                                      explorer.shown["title"])
    assert explorer.history_plot.value != unmarked
    explorer.split_merge.value = 0
    assert "split-and-merge" not in explorer.history_caption.value
    # The likelihood and the error of the fit before are shown beside this one's.
    assert "before (split-merge 2)" in explorer.metrics.value


def test_a_higher_likelihood_with_a_higher_error_is_pointed_out(explorer):
    now = explorer.summary
    from dataclasses import replace
    worse = replace(now, log_likelihood=now.log_likelihood - 1, error=now.error / 2)
    better = replace(now, log_likelihood=now.log_likelihood - 1, error=now.error * 2)
    note = "The likelihood rose and so did the error"
    assert note in draw.metrics_html(explorer.picture, now, "", 0.1, ("before", worse))
    assert note not in draw.metrics_html(explorer.picture, now, "", 0.1, ("before", better))


def test_uploads_outlive_a_rerun_and_the_upload_button_is_ready_again(explorer, image_dir):
    explorer.upload_file("kept.png", (image_dir / "four.png").read_bytes())
    assert explorer.upload.value == ()
    again = explore.Explorer(image=str(image_dir / "small.png"), images_dir=image_dir,
                             settings=Settings(k=4))
    assert "upload: kept.png" in [value for _, value in again.image.options]
    again.image.value = "upload: kept.png"
    assert again.picture.name == "kept.png" and len(again.picture.counts) == 4
