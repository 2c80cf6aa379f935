"""Explore the mixture interactively: the functions behind notebooks/explore.ipynb and
the widgets that call them.

A change of a widget refits a preview of the image (downscaled to about
PREVIEW_PIXELS) with em.fit and redraws the original and segmented images, the
palette with pi_k and sigma_k, the log-likelihood after every iteration, the
components in RGB space, and the error, PSNR and palette-PNG size. A button fits the
full image; another runs EM one iteration at a time. The functions (`prepare`,
`fit`, `initial_mixture`, `em_step`, `summarise`) are plain and tested; `Explorer`
only wires widgets to them, and its callbacks can be driven without a browser; the
two plots keep their figures between redraws (HistoryPlot, RgbSpacePlot). Nothing is
written to disk but an upload, to a temporary file that is read and deleted.
"""

from __future__ import annotations

import html
import io
import tempfile
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

import em
from pipeline import defaults, experiment, images, params, paths

PREVIEW_PIXELS = 250_000
K_MIN, K_MAX = 2, params.MAX_K
INITS = params.INITS
LABELS = {"map": "MAP label", "nearest": "nearest mean"}
TOL, MAX_ITER = defaults.TOL, defaults.MAX_ITER  # make report's stopping rule


class ExploreError(ValueError):
    """A choice the explorer cannot fit; the message says what to change."""


# ------------------------------------------------------------------ the picture

@dataclass(frozen=True)
class Picture:
    """An image ready to fit.

    name: what the image is called on screen; rgb: (H, W, 3) uint8 pixels that are
    fitted (the preview or the full image); full_shape: (H, W) of the image file;
    colours: (M, 3) distinct colours in [0, 1]; counts: (M,) their pixel counts;
    inverse: (H*W,) index of each pixel's colour.
    """

    name: str
    rgb: np.ndarray
    full_shape: tuple[int, int]
    colours: np.ndarray
    counts: np.ndarray
    inverse: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[:2]

    @property
    def is_preview(self) -> bool:
        return self.shape != self.full_shape

    def describe(self) -> str:
        h, w = self.shape
        size = f"{w} x {h} pixels ({h * w / 1e6:.2f} MP, {len(self.counts):,} colours)"
        if not self.is_preview:
            return f"{self.name}: the full image, {size}"
        fh, fw = self.full_shape
        return (f"{self.name}: preview, {size}, downscaled from {fw} x {fh} "
                f"({fh * fw / 1e6:.2f} MP); 'fit the full image' fits every pixel")


def downscale(rgb: np.ndarray, max_pixels: int) -> np.ndarray:
    """rgb (H, W, 3) uint8 shrunk by area averaging to at most max_pixels pixels
    (aspect ratio kept); returned as it is when it is small enough."""
    h, w = rgb.shape[:2]
    if h * w <= max_pixels:
        return rgb
    scale = (max_pixels / (h * w)) ** 0.5
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))


def prepare(name: str, rgb: np.ndarray, max_pixels: int | None = PREVIEW_PIXELS) -> Picture:
    """The Picture of an image: downscaled to max_pixels (None: full size)."""
    small = rgb if max_pixels is None else downscale(rgb, max_pixels)
    colours8, counts, inverse = images.distinct_colours(small)
    return Picture(name, small, rgb.shape[:2], colours8 / 255.0, counts, inverse)


def load_upload(name: str, content: bytes) -> np.ndarray:
    """An uploaded file's bytes as (H, W, 3) uint8 RGB, read as images.load_rgb reads a
    file; an unreadable upload raises ExploreError naming it."""
    filename = Path(name).name or "upload"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        path.write_bytes(content)
        try:
            return images.load_rgb(path)
        except images.ImageError as exc:
            raise ExploreError(str(exc).replace(repr(str(path)), repr(filename))) from None


# ------------------------------------------------------------------ the model

@dataclass(frozen=True)
class Settings:
    """What the widgets choose: K, seed, start, restarts (one, for speed),
    split-and-merge moves tried per round (make report's), labelling rule."""

    k: int = 16
    seed: int = 0
    init: str = "kmeans++"
    n_init: int = 1
    split_merge: int = defaults.SPLIT_MERGE
    labels: str = "map"


def check(settings: Settings, picture: Picture) -> None:
    """ExploreError with a message for a choice that cannot be fitted to picture."""
    if not K_MIN <= settings.k <= K_MAX:
        raise ExploreError(f"K = {settings.k}: choose K from {K_MIN} to {K_MAX} "
                           f"(an indexed PNG holds at most {K_MAX} colours)")
    if settings.k > len(picture.counts):
        raise ExploreError(f"K = {settings.k} is more than the {len(picture.counts)} "
                           f"distinct colours of {picture.name}: choose K <= "
                           f"{len(picture.counts)}")
    if settings.init not in INITS:
        raise ExploreError(f"start {settings.init!r}: choose one of {', '.join(INITS)}")
    if settings.labels not in LABELS:
        raise ExploreError(f"labels {settings.labels!r}: choose one of {', '.join(LABELS)}")


def fit(picture: Picture, settings: Settings) -> em.FitResult:
    """em.fit on the picture's distinct colours weighted by their pixel counts, with
    the settings and make report's stopping rule."""
    check(settings, picture)
    with warnings.catch_warnings():  # FitResult.converged says it, on screen
        warnings.simplefilter("ignore", em.ConvergenceWarning)
        return em.fit(picture.colours, settings.k, sample_weight=picture.counts,
                      init=settings.init, n_init=settings.n_init,
                      split_merge=settings.split_merge, tol=TOL,
                      max_iter=MAX_ITER, seed=settings.seed)


def initial_mixture(picture: Picture, settings: Settings) -> em.Mixture:
    """The start of em.fit's first restart with these settings (same seed, same draws)."""
    check(settings, picture)
    rng = np.random.default_rng(settings.seed)
    if settings.init == "kmeans++":
        return em.init_kmeans_plus_plus(picture.colours, picture.counts, settings.k, rng)
    return em.init_random(picture.colours, picture.counts, settings.k, rng)


def em_step(picture: Picture, mixture: em.Mixture) -> em.FitResult:
    """One EM iteration from `mixture`, by the kernel's own loop (re-seeding included):
    history holds the log-likelihood before and after it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", em.ConvergenceWarning)
        return em.fit(picture.colours, mixture.k, sample_weight=picture.counts,
                      init=mixture, tol=TOL, max_iter=1)


# ------------------------------------------------------------------ what is shown

@dataclass(frozen=True)
class Summary:
    """What the explorer shows of one mixture on one picture.

    colour_labels: (M,) component of each distinct colour; labels: (H, W) of each
    pixel; palette: (K, 3) uint8 means; error: mean squared RGB distance per pixel
    to its component's mean (RGB in [0, 1]); psnr_db; png_bytes: size of the palette
    PNG (what make report writes as indexed.png), -1 while it is being compressed.
    """

    colour_labels: np.ndarray
    labels: np.ndarray
    palette: np.ndarray
    error: float
    psnr_db: float
    png_bytes: int


def colour_labels(picture: Picture, mixture: em.Mixture, rule: str) -> np.ndarray:
    """(M,) component of every distinct colour: the most probable one ("map") or the
    one whose mean is nearest ("nearest")."""
    if rule == "map":
        return em.predict(mixture, picture.colours)
    if rule == "nearest":
        return em.nearest_centre(picture.colours, mixture.means)[0]
    raise ExploreError(f"labels {rule!r}: choose one of {', '.join(LABELS)}")


# PNG compression runs outside the GIL: the palette PNG's size is computed on this
# thread while the figures are drawn.
_PNG_WRITER = ThreadPoolExecutor(max_workers=1)


def summarise(picture: Picture, mixture: em.Mixture,
              rule: str = "map") -> tuple[Summary, Future]:
    """Labels, palette, error and PSNR of `mixture` on the picture, with png_bytes = -1,
    and a Future of the same summary with the size of the palette PNG that
    images.save_indexed_png writes (compressed on another thread)."""
    per_colour = colour_labels(picture, mixture, rule)
    labels = per_colour[picture.inverse].reshape(picture.shape)
    palette = experiment.palette_of(mixture)
    error = experiment.reconstruction_error(picture.colours, picture.counts, per_colour,
                                            mixture.means)
    summary = Summary(per_colour, labels, palette, error,
                      experiment.psnr_db(error) if error > 0 else float("inf"), -1)
    return summary, _PNG_WRITER.submit(
        lambda: replace(summary, png_bytes=len(images.indexed_png(labels, palette))))


def png_bytes(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 as PNG bytes for the screen (fast compression)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def canvas_png(canvas) -> bytes:
    """What an Agg canvas last drew (an opaque figure) as PNG bytes for the screen."""
    return png_bytes(np.asarray(canvas.buffer_rgba())[..., :3])


class HistoryPlot:
    """The log-likelihood per pixel after every iteration (iteration 0: the start).

    One figure, kept: each call replaces the curve and redraws (building a figure
    costs as much as drawing it)."""

    def __init__(self):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        # Fixed margins: a layout engine would cost more than the drawing.
        self.fig = Figure(figsize=(4.6, 3.0), dpi=90)
        self.canvas = FigureCanvasAgg(self.fig)
        self.fig.subplots_adjust(left=0.17, right=0.97, bottom=0.16, top=0.9)
        self.ax = ax = self.fig.add_subplot()
        (self.line,) = ax.plot([], [], ".-", ms=3)
        ax.set_xlabel("iteration")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("log-likelihood per pixel")
        ax.grid(alpha=0.3)
        # a plain text, not the title: placing a title measures every tick label
        self.title = ax.text(0.5, 1.03, "", transform=ax.transAxes, ha="center",
                             fontsize=10)

    def png(self, history: np.ndarray, n_pixels: int, title: str) -> bytes:
        history = np.asarray(history) / n_pixels
        self.line.set_data(np.arange(len(history)), history)
        self.ax.relim()
        self.ax.autoscale_view()
        self.title.set_text(title)
        self.canvas.draw()
        return canvas_png(self.canvas)


_CLOUD_POINTS = 1500  # distinct colours drawn in the RGB-space plot


class RgbSpacePlot:
    """The components in RGB space: a sample of the colours (drawn by pixel count,
    fixed seed), each mean as a disc of area proportional to pi_k; with `previous`, a
    line from where each mean was one step before.

    The view and the limits are fixed, so the cloud and the axes of a picture are
    drawn once and kept as a background; each call draws only the means on it."""

    def __init__(self):
        self.picture = None

    def _draw_background(self, picture: Picture) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        rng = np.random.default_rng(0)
        m = len(picture.counts)
        sample = rng.choice(m, size=min(_CLOUD_POINTS, m), replace=False,
                            p=picture.counts / picture.counts.sum())
        cloud = picture.colours[sample]
        self.fig = fig = Figure(figsize=(4.2, 3.6), dpi=90)
        self.canvas = FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0, right=0.95, bottom=0.03, top=1)
        self.ax = ax = fig.add_subplot(projection="3d")
        ax.scatter(*cloud.T, c=cloud, s=2, alpha=0.35, depthshade=False)
        ax.set(xlim=(0, 1), ylim=(0, 1), zlim=(0, 1), xlabel="R", ylabel="G", zlabel="B")
        ax.tick_params(labelsize=7)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(fig.bbox)
        self.picture = picture

    def png(self, picture: Picture, mixture: em.Mixture,
            previous: em.Mixture | None = None) -> bytes:
        if self.picture is not picture:
            self._draw_background(picture)
        ax = self.ax
        self.canvas.restore_region(self.background)
        means = np.clip(mixture.means, 0, 1)
        artists = []
        if previous is not None:
            for a, b in zip(np.clip(previous.means, 0, 1), means):
                artists += ax.plot(*np.stack([a, b]).T, color="black", lw=1)
        artists.append(ax.scatter(*means.T, c=means, s=20 + 600 * mixture.weights,
                                  edgecolors="black", depthshade=False))
        try:
            for artist in artists:
                if hasattr(artist, "do_3d_projection"):
                    artist.do_3d_projection()
                ax.draw_artist(artist)
        finally:  # the kept axes hold the cloud only
            for artist in artists:
                artist.remove()
        return canvas_png(self.canvas)


def palette_html(mixture: em.Mixture, palette: np.ndarray) -> str:
    """One swatch per component, by decreasing weight, with pi_k and sigma_k."""
    cells = []
    for j in np.argsort(-mixture.weights, kind="stable"):
        r, g, b = palette[j]
        cells.append(
            f'<div style="display:inline-block;margin:2px;width:64px;'
            f'font:11px monospace;text-align:center" title="component {j}">'
            f'<div style="height:22px;background:rgb({r},{g},{b});'
            f'border:1px solid #888"></div>'
            f'π {mixture.weights[j]:.3f}<br>σ {np.sqrt(mixture.variances[j]):.3f}</div>')
    return ("<b>Palette</b> (by weight; σ<sub>k</sub> on the RGB scale [0, 1])"
            f'<div style="max-height:170px;overflow-y:auto">{"".join(cells)}</div>')


def metrics_html(picture: Picture, summary: Summary, history: np.ndarray,
                 status: str, seconds: float) -> str:
    """The numbers of one fit or step, as a small table."""
    h, w = picture.shape
    rows = [
        ("fitted on", html.escape(picture.describe())),
        ("EM", html.escape(status)),
        ("log-likelihood per pixel", f"{history[-1] / (h * w):.5f}"),
        ("reconstruction error", f"{summary.error:.6f} (mean squared RGB distance)"),
        ("PSNR", f"{summary.psnr_db:.2f} dB"),
        ("palette PNG", f"{summary.png_bytes:,} bytes "
                        f"({8 * summary.png_bytes / (h * w):.3f} bits per pixel)"
                        if summary.png_bytes >= 0 else "compressing …"),
        ("time", f"{seconds:.2f} s"),
    ]
    body = "".join(f"<tr><td style='padding-right:1em'>{a}</td><td>{b}</td></tr>"
                   for a, b in rows)
    return f"<table style='font-size:12px'>{body}</table>"


# ------------------------------------------------------------------ the widgets

def image_choices(images_dir: Path) -> dict[str, str]:
    """Label on screen -> path of every image the dropdown offers: the default image,
    then every file under images_dir (unreadable ones say so when chosen)."""
    default = paths.default_image()
    choices = {f"default: {default.name}": str(default)}
    if images_dir.is_dir():
        for path in sorted(images_dir.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                choices[str(path.relative_to(images_dir))] = str(path)
    return choices


class Explorer:
    """The widgets of notebooks/explore.ipynb. Display `explorer.widget`.

    Every callback catches a bad choice and shows its message in `message`; the last
    state is kept in `result` (the FitResult of the last fit), `mixture` (what is
    shown), `summary` and `picture`. With background=True (the notebook's) fits run
    on a worker thread, so the kernel answers a widget at once, says "fitting", and a
    change made meanwhile replaces the fits not yet started; `wait()` waits for the
    worker. With background=False every callback has finished when it returns.
    """

    UPLOAD_PREFIX = "upload: "

    def __init__(self, image: str = "", images_dir: Path | None = None,
                 settings: Settings = Settings(), background: bool = False):
        import ipywidgets as w

        self.background = background
        self._lock = threading.Lock()
        self._jobs: list = []  # what the worker runs next, in order
        self._worker: threading.Thread | None = None

        self._rgb: dict[str, np.ndarray] = {}  # image key -> pixels (uploads live here)
        self._pictures: dict[tuple[str, bool], Picture] = {}
        self.picture: Picture | None = None
        self.result: em.FitResult | None = None
        self.mixture: em.Mixture | None = None
        self.summary: Summary | None = None
        self._steps: list[em.Mixture] = []  # step mode: the mixture after each step
        self._step_history: list[float] = []
        self._last_status = ""
        self._original_of: Picture | None = None
        self._history, self._space = HistoryPlot(), RgbSpacePlot()
        self.timing: dict[str, float] = {}  # of the last redraw: seconds to "shown", "sized"

        choices = image_choices(images_dir or paths.ROOT / "images")
        first = str(paths.image_path(image)) if image else next(iter(choices.values()))
        if first not in choices.values():
            choices[Path(first).name] = first
        narrow = w.Layout(width="330px")
        self.image = w.Dropdown(options=list(choices.items()), value=first,
                                description="image", layout=narrow)
        self.upload = w.FileUpload(accept="image/*", multiple=False,
                                   description="upload an image", layout=w.Layout(width="auto"))
        self.k = w.IntSlider(value=settings.k, min=K_MIN, max=K_MAX,
                             continuous_update=False, description="K", layout=narrow)
        self.seed = w.BoundedIntText(value=settings.seed, min=0, max=2**31 - 1,
                                     description="seed", layout=w.Layout(width="180px"))
        self.n_init = w.BoundedIntText(value=settings.n_init, min=1, max=20,
                                       description="restarts", layout=w.Layout(width="180px"))
        self.split_merge = w.BoundedIntText(value=settings.split_merge, min=0, max=20,
                                            description="split-merge",
                                            layout=w.Layout(width="180px"))
        auto = {"button_width": "auto"}
        self.init = w.ToggleButtons(options=[(v, k) for k, v in INITS.items()],
                                    value=settings.init, description="start", style=auto)
        self.labels = w.ToggleButtons(options=[(v, k) for k, v in LABELS.items()],
                                      value=settings.labels, description="labels", style=auto)
        self.full_button = w.Button(description="fit the full image", icon="expand")
        self.step_button = w.Button(description="EM step by step", icon="step-forward")
        self.status = w.HTML()
        self.original = w.Image(format="png", layout=w.Layout(width="360px"))
        self.segmented = w.Image(format="png", layout=w.Layout(width="360px"))
        self.history_plot = w.Image(format="png", layout=w.Layout(width="414px"))
        self.space_plot = w.Image(format="png", layout=w.Layout(width="378px"))
        self.palette = w.HTML()
        self.metrics = w.HTML()

        for control in (self.k, self.seed, self.n_init, self.split_merge, self.init):
            control.observe(lambda _: self.refit(), names="value")
        self.image.observe(lambda _: self.refit(), names="value")
        self.labels.observe(lambda _: self.relabel(), names="value")
        self.upload.observe(self._on_upload, names="value")
        self.full_button.on_click(lambda _: self.refit(full=True))
        self.step_button.on_click(lambda _: self.step())

        self.widget = w.VBox([
            w.HBox([self.image, self.upload]),
            w.HBox([self.k, self.seed, self.n_init, self.split_merge]),
            self.init, self.labels,
            w.HBox([self.full_button, self.step_button]),
            self.status,
            w.HBox([self.original, self.segmented]),
            self.palette,
            w.HBox([self.history_plot, self.space_plot]),
            self.metrics,
        ])
        self.refit()

    # -- state read from the widgets

    @property
    def settings(self) -> Settings:
        return Settings(int(self.k.value), int(self.seed.value), self.init.value,
                        int(self.n_init.value), int(self.split_merge.value),
                        self.labels.value)

    @property
    def message(self) -> str:
        """The status line as plain text."""
        import re

        return html.unescape(re.sub(r"<[^>]+>", "", self.status.value))

    def _picture(self, full: bool) -> Picture:
        key = self.image.value
        if (key, full) not in self._pictures:
            if key not in self._rgb:
                self._rgb[key] = images.load_rgb(key)
            name = key[len(self.UPLOAD_PREFIX):] if key.startswith(self.UPLOAD_PREFIX) \
                else Path(key).name
            self._pictures[key, full] = prepare(name, self._rgb[key],
                                                None if full else PREVIEW_PIXELS)
        return self._pictures[key, full]

    # -- callbacks

    def _guarded(self, action) -> bool:
        """Run action(); a bad choice becomes a message on screen, never a traceback."""
        try:
            action()
            return True
        except (ExploreError, ValueError) as exc:  # ImageError is a ValueError
            self._say(str(exc), error=True)
        except Exception as exc:  # keep the widgets usable whatever happened
            self._say(f"{type(exc).__name__}: {exc}", error=True)
        return False

    def _say(self, text: str, error: bool = False) -> None:
        colour = "#b00020" if error else "#333"
        self.status.value = (f"<span style='color:{colour}'>"
                             f"{'⚠ ' if error else ''}{html.escape(text)}</span>")

    def _submit(self, job, after_others: bool = False) -> None:
        """Run job() guarded: now, or on the worker thread, where it replaces the jobs
        not yet started (after_others=True: it queues behind them, as steps do)."""
        if not self.background:
            self._guarded(job)
            return
        with self._lock:
            self._jobs = self._jobs + [job] if after_others else [job]
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._worker = None
                    return
                job = self._jobs.pop(0)
            self._guarded(job)

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the worker has run every job submitted so far."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)

    def refit(self, full: bool = False) -> None:
        """Fit the preview (or the full image) with the widgets' settings and redraw."""
        what = "the full image" if full else "the preview"
        if self.background:
            self._say(f"fitting K = {self.k.value} on {what} …")

        def action():
            start = time.perf_counter()
            self._steps, self._step_history = [], []
            self.step_button.description = "EM step by step"
            picture = self._picture(full)
            self.result = fit(picture, self.settings)
            r = self.result
            status = (f"{r.n_iter} iterations, "
                      f"{'converged' if r.converged else f'stopped at max_iter={MAX_ITER}'}"
                      + (f"; best of {len(r.restarts)} restarts" if len(r.restarts) > 1 else "")
                      + (f"; {len(r.moves)} of {r.move_trials} split-and-merge moves kept"
                         if r.move_trials else ""))
            self._show(picture, r.mixture, r.history, status, start)
        self._submit(action)

    def relabel(self) -> None:
        """Redraw the mixture on screen with the chosen labelling rule (no refit)."""
        def action():
            if self.mixture is None:
                return self.refit()
            start = time.perf_counter()
            history = self._step_history or self.result.history
            self._show(self.picture, self.mixture, np.asarray(history),
                       self._last_status, start, self._steps[-2] if len(self._steps) > 1 else None)
        self._submit(action)

    def step(self) -> None:
        """The first press shows the start of the first restart; each next press runs
        one EM iteration from what is shown."""
        def action():
            start = time.perf_counter()
            picture = self._picture(False)
            previous = None
            if not self._steps:
                mixture = initial_mixture(picture, self.settings)
                ll = em.log_likelihood(mixture, picture.colours, picture.counts)
                self._steps, self._step_history = [mixture], [ll]
            else:
                previous = self._steps[-1]
                moved = em_step(picture, previous)
                mixture = moved.mixture
                self._steps.append(mixture)
                self._step_history.append(moved.log_likelihood)
            n = len(self._steps) - 1
            status = (f"step by step: iteration {n} of restart 1 "
                      f"({INITS[self.settings.init]} start, seed {self.settings.seed})")
            self._show(picture, mixture, np.array(self._step_history), status, start, previous)
            self.step_button.description = f"EM step {n} → {n + 1}"
        self._submit(action, after_others=True)

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        entry = files[0]
        name = entry["name"]

        def action():
            rgb = load_upload(name, bytes(entry["content"]))
            key = self.UPLOAD_PREFIX + name
            self._rgb[key] = rgb
            self._pictures = {k: v for k, v in self._pictures.items() if k[0] != key}
            options = [o for o in self.image.options if o[1] != key]
            self.image.options = options + [(key, key)]
            if self.image.value == key:  # the same name again: no change event
                self.refit()
            else:
                self.image.value = key  # refits
        self._guarded(action)

    def upload_file(self, name: str, content: bytes) -> None:
        """What the upload widget does with a file (for driving it without a browser)."""
        self._on_upload({"new": ({"name": name, "content": memoryview(content)},)})

    # -- drawing

    def _show(self, picture: Picture, mixture: em.Mixture, history: np.ndarray,
              status: str, start: float, previous: em.Mixture | None = None) -> None:
        summary, sized = summarise(picture, mixture, self.labels.value)
        self.picture, self.mixture = picture, mixture
        self._last_status = status
        h, w = picture.shape
        if self._original_of is not picture:
            self.original.value = png_bytes(picture.rgb)
            self._original_of = picture
        self.segmented.value = images.indexed_png(summary.labels, summary.palette, fast=True)
        self.palette.value = palette_html(mixture, summary.palette)
        self.history_plot.value = self._history.png(history, h * w, f"K = {mixture.k}")
        self.space_plot.value = self._space.png(picture, mixture, previous)
        shown = time.perf_counter() - start
        self.summary = summary
        self.metrics.value = metrics_html(picture, summary, history, status, shown)
        # The palette PNG's size (zlib at its slowest level) follows, on its own line.
        self.summary = summary = sized.result()
        self.metrics.value = metrics_html(picture, summary, history, status, shown)
        self.timing = {"shown": shown, "sized": time.perf_counter() - start}
        self._say(f"{picture.describe()}. K = {mixture.k}, {LABELS[self.labels.value]}s.")
