"""The explorer of notebooks/explore.ipynb: widgets wired to plain functions.

The settings and their widgets come from explore_settings.SETTINGS, the fits from
explore_fit, the pictures and words from explore_draw, and the order of work from
explore_jobs: a change refits a preview of the image (downscaled to about
explore_fit.PREVIEW_PIXELS) and redraws; a newer change stops the fit running and
takes its place. A button fits the full image; another runs EM one iteration per
press. Nothing is written to disk but an upload, to a temporary file that is read
and deleted; uploads are kept for the kernel's life, so a re-run of the cell keeps
them.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np

import em
from pipeline import explore_draw as draw, images, paths
from pipeline.explore_fit import (PREVIEW_PIXELS, Picture, em_step, fit, initial_mixture,
                                  load_upload, prepare, summarise)
from pipeline.explore_jobs import Job, Jobs
from pipeline.explore_settings import (BY_NAME, INITS, LABELS, SETTINGS, ExploreError,
                                       Settings, build_widget, describe, fit_arguments)

UPLOAD_PREFIX = "upload: "
_UPLOADS: dict[str, np.ndarray] = {}  # "upload: name" -> pixels, for the kernel's life
STEP = "EM step by step"  # the step button's label out of step mode
STALE = "em-stale"  # the CSS class (explore_draw.STYLE) of pictures a newer change replaces


def image_choices(images_dir: Path) -> dict[str, str]:
    """Label on screen -> key of every image the dropdown offers: the default image,
    every file under images_dir (unreadable ones say so when chosen), then this
    kernel's uploads."""
    default = paths.default_image()
    choices = {f"default: {default.name}": str(default)}
    if images_dir.is_dir():
        for path in sorted(images_dir.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                choices[str(path.relative_to(images_dir))] = str(path)
    return choices | {key: key for key in _UPLOADS}


class Explorer:
    """The widgets of notebooks/explore.ipynb. Display `explorer.widget`.

    Each setting's widget is an attribute of its name (explorer.k, explorer.seed, ...).
    Every job catches a bad choice and shows its message in `message`; what is shown
    is kept in `result` (the FitResult of the last fit), `mixture`, `summary` and
    `picture`; `dimmed` lists the results shown as stale; `events` records what
    happened to each job (explore_jobs.Event). With background=True (the notebook's)
    jobs run on worker threads, so the kernel answers a widget at once, and a change
    stops the fit running; `wait()` waits for them. With background=False every
    callback has finished when it returns.
    """

    def __init__(self, image: str = "", images_dir: Path | None = None,
                 settings: Settings = Settings(), background: bool = False):
        import ipywidgets as w

        self.jobs = Jobs(background, on_submit=self._submitted, on_tick=self._tick)
        self._pictures: dict[tuple[str, bool], Picture] = {}
        self.picture: Picture | None = None
        self.result: em.FitResult | None = None
        self.mixture: em.Mixture | None = None
        self.summary = None
        # What is on screen, for a redraw: picture, mixture, history, status, title
        # (of the history plot), headline (of the status line), previous (the mixture
        # one step before), marks ((moves, reseeds) on the history), button (its label).
        self.shown: dict = {}
        self._last_fit = None        # (settings, picture, summary) of the last fit shown
        self._steps: list[em.Mixture] = []   # step mode: the mixture after each step
        self._step_history: list[float] = []
        self._step_key = None
        self._plots = draw.HistoryPlot(), draw.RgbSpacePlot()
        self._holding = False  # True while change() sets several widgets
        self._shown_picture: Picture | None = None  # whose original is on screen
        self.timing: dict[str, float] = {}  # of the last redraw: seconds to "shown", "sized"

        choices = image_choices(images_dir or paths.ROOT / "images")
        first = str(paths.image_path(image)) if image else next(iter(choices.values()))
        if first not in choices.values():
            choices[Path(first).name] = first
        self.image = w.Dropdown(options=list(choices.items()), value=first,
                                description="image", layout=w.Layout(width="330px"),
                                tooltip="The default photograph, a file under images/, "
                                        "or an upload")
        self.upload = w.FileUpload(accept="image/*", multiple=False,
                                   description="upload an image", layout=w.Layout(width="auto"),
                                   tooltip="Any image file Pillow reads; it stays in memory")
        self.upload.add_class("em-upload")

        rows, numbers = [w.HBox([self.image, self.upload])], []
        for setting in SETTINGS:
            control, shown = build_widget(setting, getattr(settings, setting.name))
            setattr(self, setting.name, control)
            control.observe(lambda _, s=setting: self._holding or (
                self.refit() if s.fits else self.relabel()), names="value")
            if setting.choices is None and not setting.presets:
                numbers.append(shown)  # whole numbers share a row
                continue
            if numbers:
                rows.append(w.HBox(numbers))
                numbers = []
            rows.append(shown)
        rows += [w.HBox(numbers)] if numbers else []

        self.full_button = w.Button(description="fit the full image", icon="expand",
                                    tooltip="Fit every pixel of the image, not the preview")
        self.step_button = w.Button(description=STEP, icon="step-forward",
                                    tooltip="First press: the start; each next press: "
                                            "one EM iteration")
        self.full_button.on_click(lambda _: self.refit(full=True))
        self.step_button.on_click(lambda _: self.step())

        def text(value="", **layout):  # tooltip "": no title="null" on the empty label
            return w.HTML(value, tooltip="", **layout)
        self.status = text()

        def picture(width):
            return w.Image(format="png", layout=w.Layout(width=width))

        def caption(width):
            return text(layout=w.Layout(width=width)).add_class("em-caption")
        self.original, self.original_caption = picture("360px"), caption("360px")
        self.segmented, self.segmented_caption = picture("360px"), caption("360px")
        self.history_plot, self.history_caption = picture("432px"), caption("846px")
        self.space_plot = picture("414px")
        self.palette, self.metrics = text(), text()
        self.notes = text(f"<p class='em-caption'>{draw.LIKELIHOOD_NOTE}</p>"
                          f"<p class='em-caption'>{draw.ERROR_NOTE}</p>")
        self._results = (self.segmented, self.segmented_caption, self.palette,
                         self.history_plot, self.history_caption, self.space_plot,
                         self.metrics)

        self.widget = w.VBox([
            text(draw.STYLE), *rows,
            w.HBox([self.full_button, self.step_button]),
            self.status,
            w.HBox([w.VBox([self.original, self.original_caption]),
                    w.VBox([self.segmented, self.segmented_caption])]),
            self.palette,
            w.HBox([self.history_plot, self.space_plot]), self.history_caption,
            self.metrics, self.notes,
        ])
        self.image.observe(lambda _: self.refit(), names="value")
        self.upload.observe(self._on_upload, names="value")
        self.refit()

    # -- state read from the widgets

    @property
    def settings(self) -> Settings:
        return Settings(**{s.name: getattr(self, s.name).value for s in SETTINGS})

    @property
    def message(self) -> str:
        """The status line as plain text."""
        return html.unescape(re.sub(r"<[^>]+>", "", self.status.value))

    @property
    def dimmed(self) -> list:
        """The result widgets shown dimmed as stale (a newer change is being worked on),
        read from the state the browser is sent."""
        return [w for w in self._results
                if STALE in w.get_state("_dom_classes")["_dom_classes"]]

    @property
    def events(self):
        return self.jobs.events

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every job submitted so far has run (False on timeout)."""
        return self.jobs.wait(timeout)

    def _picture(self, key: str, full: bool) -> Picture:
        if (key, full) not in self._pictures:
            if key in _UPLOADS:
                name, rgb = key[len(UPLOAD_PREFIX):], _UPLOADS[key]
            else:
                name, rgb = Path(key).name, images.load_rgb(key)
            self._pictures[key, full] = prepare(name, rgb, None if full else PREVIEW_PIXELS)
        return self._pictures[key, full]

    # -- the status line and stale pictures

    def _say(self, text: str, error: bool = False) -> None:
        colour = "#b00020" if error else "#333"
        self.status.value = (f"<span style='color:{colour}'>"
                             f"{'⚠ ' if error else ''}{html.escape(text)}</span>")

    def _submitted(self, job: Job) -> None:
        """A new job is the newest: the status line is its, the pictures are stale."""
        self._say(f"{job.doing} …")
        for widget in self._results:
            widget.add_class(STALE)

    def _tick(self, job: Job, seconds: float) -> None:
        self.jobs.when_newest(job, lambda: job.settled or job.done or self._say(
            f"{job.doing} … {seconds:.1f} s (the dimmed pictures are from before)"))

    def _submit(self, kind: str, doing: str, run) -> None:
        def guarded(job: Job) -> None:
            """run(job); a bad choice becomes the newest job's message, never a traceback."""
            try:
                run(job)
            except em.Cancelled:
                raise
            except Exception as exc:  # keep the widgets usable whatever happened
                text = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
                self.jobs.record("failed", job)

                def failed():
                    job.settled = True
                    self._say(text, error=True)
                self.jobs.when_newest(job, failed)
        self.jobs.submit(Job(kind, doing, guarded))

    # -- what a change does

    def change(self, **values) -> None:
        """Set several settings at once as one change: one refit (one redraw when no
        setting of the fit changed)."""
        unknown = sorted(set(values) - set(BY_NAME))
        if unknown:
            raise ExploreError(f"no setting {', '.join(unknown)}: the settings are "
                               f"{', '.join(BY_NAME)}")
        self._holding = True
        try:
            for name, value in values.items():
                getattr(self, name).value = value
        finally:
            self._holding = False
        self.refit() if any(BY_NAME[name].fits for name in values) else self.relabel()

    def refit(self, full: bool = False) -> None:
        """Fit the preview (or the full image) with the widgets' settings and redraw."""
        settings, key = self.settings, self.image.value
        what = "the full image" if full else "the preview"

        def run(job: Job) -> None:
            picture = self._picture(key, full)
            job.stop_if_superseded()
            r = fit(picture, settings, cancel=job.cancelled)
            status = (f"{r.n_iter} iterations, "
                      f"{'converged' if r.converged else 'stopped at max_iter'}"
                      + (f"; best of {len(r.restarts)} restarts" if len(r.restarts) > 1 else "")
                      + (f"; {len(r.moves)} of {r.move_trials} split-and-merge moves kept"
                         if r.move_trials else ""))
            before = None
            if self._last_fit and self._last_fit[1] is picture:
                old, _, old_summary = self._last_fit
                changed = [n for n, v in fit_arguments(settings).items()
                           if fit_arguments(old)[n] != v]
                if changed:
                    before = (f"before ({describe(old, changed)})", old_summary)
            title = f"K = {r.k}" + (f", the best of {len(r.restarts)} restarts"
                                    if len(r.restarts) > 1 else "")
            self._show(job, picture, r.mixture, r.history, status, title, f"K = {r.k}",
                       before=before, marks=(r.moves, r.reseeds), result=r, settings=settings)
        self._submit("fit", f"fitting K = {settings.k} on {what}", run)

    def relabel(self) -> None:
        """Redraw what is shown with the chosen labelling rule (no refit)."""
        if self.jobs.busy_with("fit", "step"):
            return  # the job running or waiting draws with the new rule (see _show)
        if self.mixture is None:
            return self.refit()

        def run(job: Job) -> None:
            self._show(job, **self.shown)
        self._submit("view", f"labelling by {LABELS[self.labels.value]}", run)

    def step(self) -> None:
        """The first press shows the start of the first restart; each next press runs
        one EM iteration from what is shown (a change of settings starts again)."""
        settings, key = self.settings, self.image.value
        step_key = (key, tuple(fit_arguments(settings).items()))

        def run(job: Job) -> None:
            picture = self._picture(key, False)
            previous = before = None
            if self._step_key != step_key or not self._steps:
                mixture = initial_mixture(picture, settings)
                job.stop_if_superseded()
                self._steps = [mixture]
                self._step_history = [em.log_likelihood(mixture, picture.colours,
                                                         picture.counts)]
                self._step_key = step_key
            else:
                previous = self._steps[-1]
                moved = em_step(picture, previous)
                job.stop_if_superseded()
                mixture = moved.mixture
                self._steps.append(mixture)
                self._step_history.append(moved.log_likelihood)
                before = ("before this step", self.summary)
            n = len(self._steps) - 1
            status = (f"step by step: iteration {n} of restart 1 "
                      f"({INITS[settings.init]} start, seed {settings.seed})")
            self._show(job, picture, mixture, np.array(self._step_history), status,
                       f"K = {mixture.k}, step by step",
                       f"K = {mixture.k} after EM iteration {n} (step by step)" if n else
                       f"K = {mixture.k} at the start (step by step)",
                       previous=previous, before=before, button=f"EM step {n} → {n + 1}")
        self._submit("step", f"EM step on K = {settings.k}", run)

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        entry = files[0]
        name = entry["name"]
        try:
            rgb = load_upload(name, bytes(entry["content"]))
            key = UPLOAD_PREFIX + name
            _UPLOADS[key] = rgb
            self._pictures = {k: v for k, v in self._pictures.items() if k[0] != key}
            options = [o for o in self.image.options if o[1] != key]
            self.image.options = options + [(key, key)]
            if self.image.value == key:  # the same name again: no change event
                self.refit()
            else:
                self.image.value = key  # refits
        except ExploreError as exc:
            self._say(str(exc), error=True)
        finally:
            self.upload.value = ()  # ready for the next file, the same one too

    def upload_file(self, name: str, content: bytes) -> None:
        """What the upload widget does with a file (for driving it without a browser)."""
        self._on_upload({"new": ({"name": name, "content": memoryview(content)},)})

    # -- drawing

    def _show(self, job: Job, picture: Picture, mixture: em.Mixture, history: np.ndarray,
              status: str, title: str, headline: str, previous: em.Mixture | None = None,
              before=None,
              marks=((), ()), result: em.FitResult | None = None, settings=None,
              button: str = STEP) -> None:
        """Draw one mixture, unless a newer job superseded this one (em.Cancelled).

        The labelling rule is read before drawing; a change of it made meanwhile finds
        this job busy (relabel leaves the redraw to it), so the job draws again with
        the new rule until the rule it drew is the one chosen when it settles."""
        rule = self.labels.value
        while True:
            summary, sized = summarise(picture, mixture, rule, history[-1])
            with self.jobs.drawing:  # one job draws at a time, and only if not superseded
                with self.jobs.lock:
                    job.stop_if_superseded()
                    self.jobs.record("drawing", job)
                self._draw(picture, mixture, summary, history, title, previous, marks,
                           button, rule)
                if result is not None:
                    self.result, self._steps, self._step_key = result, [], None
                    self._last_fit = (settings, picture, summary)
                self.shown = dict(picture=picture, mixture=mixture, history=history,
                                  status=status, title=title, headline=headline,
                                  previous=previous, marks=marks, button=button)
                seconds = job.elapsed()
                self.metrics.value = draw.metrics_html(picture, summary, status, seconds,
                                                       before)
                self.timing = {"shown": seconds}

                def shown():
                    job.settled = True  # from now on a change of labels redraws itself
                    for widget in self._results:
                        widget.remove_class(STALE)
                    self._say(f"{picture.describe()}. {headline}, {LABELS[rule]}s; shown "
                              f"{seconds:.2f} s after the change.")
                with self.jobs.lock:  # relabel asks busy_with under this lock
                    if self.jobs.is_newest(job) and self.labels.value != rule:
                        rule = self.labels.value  # changed while this job drew
                        continue
                    self.jobs.when_newest(job, shown)
                self.jobs.record("shown", job)
                break
        # The palette PNG's size (zlib at its slowest level) follows, on its own line.
        while not job.superseded:
            try:
                summary = sized.result(timeout=0.05)
            except TimeoutError:
                continue

            def sized_shown():
                self.summary = summary
                self.metrics.value = draw.metrics_html(picture, summary, status, seconds,
                                                       before)
                self.timing["sized"] = job.elapsed()
            self.jobs.when_newest(job, sized_shown)
            return

    def _draw(self, picture: Picture, mixture: em.Mixture, summary, history, title: str,
              previous, marks, button: str, rule: str) -> None:
        """Every picture and caption of one mixture."""
        self.picture, self.mixture, self.summary = picture, mixture, summary
        if self._shown_picture is not picture:
            self.original.value = draw.png_bytes(picture.rgb)
            self.original_caption.value = draw.original_caption(picture)
            self._shown_picture = picture
        self.segmented.value = images.indexed_png(summary.labels, summary.palette, fast=True)
        self.segmented_caption.value = draw.segmented_caption(summary, mixture.k, rule)
        self.palette.value = draw.palette_html(mixture, summary.palette)
        history_plot, space_plot = self._plots
        self.history_plot.value = history_plot.png(history, picture.n_pixels, title, *marks)
        self.history_caption.value = draw.history_caption(*marks, stepping=button != STEP)
        self.space_plot.value = space_plot.png(picture, mixture, previous)
        self.step_button.description = button
