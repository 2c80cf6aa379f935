"""The explorer's pictures and words, as plain functions of a fit: PNGs for the screen,
the log-likelihood history and the components in RGB space (two kept figures), the
palette, the numbers with their units, and the captions and notes that say what each
shows. Every sentence holds for any image; the numbers in it come from the fit.
"""

from __future__ import annotations

import html
import io

import numpy as np
from PIL import Image

import em
from pipeline.explore_fit import Picture, Summary
from pipeline.explore_settings import LABELS

MOVE_COLOUR = "#d62728"   # a mean's move in the last EM step
CLOUD_POINTS = 1500       # distinct colours drawn in the RGB-space plot
COMPACT_PALETTE = 32      # above this K the swatches shrink and their numbers go to tooltips


def png_bytes(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 as PNG bytes for the screen (fast compression)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def canvas_png(canvas) -> bytes:
    """What an Agg canvas last drew (an opaque figure) as PNG bytes for the screen."""
    return png_bytes(np.asarray(canvas.buffer_rgba())[..., :3])


def disc_area(weights: np.ndarray) -> np.ndarray:
    """Marker area (points^2) of components of these weights: proportional to pi_k."""
    return 900.0 * np.asarray(weights)


class HistoryPlot:
    """The log-likelihood per pixel after every iteration (iteration 0: the start),
    with the iterations where a split-and-merge move was kept (dashed) or a component
    re-seeded (dotted) marked.

    One figure, kept: each call replaces the curve and the marks and redraws
    (building a figure costs as much as drawing it)."""

    def __init__(self):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        # Fixed margins: a layout engine would cost more than the drawing.
        self.fig = Figure(figsize=(4.8, 3.3), dpi=90)
        self.canvas = FigureCanvasAgg(self.fig)
        self.fig.subplots_adjust(left=0.17, right=0.97, bottom=0.15, top=0.86)
        self.ax = ax = self.fig.add_subplot()
        (self.line,) = ax.plot([], [], ".-", ms=3, label="log-likelihood per pixel")
        ax.set_xlabel("EM iteration (0: the start)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("log-likelihood per pixel (nats)")
        ax.grid(alpha=0.3)
        # plain texts, not a title: placing a title measures every tick label
        self.fig.text(0.5, 0.955, "How EM climbed", ha="center", fontsize=11,
                      weight="bold")
        self.title = ax.text(0.5, 1.03, "", transform=ax.transAxes, ha="center",
                             fontsize=9)
        self.marks: list = []

    def png(self, history: np.ndarray, n_pixels: int, title: str,
            moves=(), reseeds=()) -> bytes:
        history = np.asarray(history) / n_pixels
        self.line.set_data(np.arange(len(history)), history)
        for mark in self.marks:
            mark.remove()
        self.marks = []
        # A move's or a re-seeding's first iteration is i: the mark sits before it.
        for i in moves:
            self.marks.append(self.ax.axvline(i - 0.5, color=MOVE_COLOUR, ls="--", lw=1,
                                              label="split-and-merge move kept"))
        for i in reseeds:
            self.marks.append(self.ax.axvline(i - 0.5, color="grey", ls=":", lw=1,
                                              label="component re-seeded"))
        legend = self.ax.get_legend()
        if legend is not None:
            legend.remove()
        if self.marks:
            handles, labels = self.ax.get_legend_handles_labels()
            unique = dict(zip(labels, handles))
            self.ax.legend(unique.values(), unique.keys(), loc="lower right", fontsize=7)
        self.ax.relim()
        self.ax.autoscale_view()
        self.title.set_text(title)
        self.canvas.draw()
        return canvas_png(self.canvas)


class RgbSpacePlot:
    """The components in RGB space: a sample of the colours (drawn by pixel count,
    fixed seed), each mean as a disc in its colour with area proportional to pi_k;
    with `previous`, a line from where each mean was one step before, and the
    largest move written out (lines shorter than a disc cannot be seen).

    The view and the limits are fixed, so the cloud, the axes and the key of a
    picture are drawn once and kept as a background; each call draws only the means."""

    def __init__(self):
        self.picture = None

    def _draw_background(self, picture: Picture) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D

        rng = np.random.default_rng(0)
        m = len(picture.counts)
        sample = rng.choice(m, size=min(CLOUD_POINTS, m), replace=False,
                            p=picture.counts / picture.counts.sum())
        cloud = picture.colours[sample]
        self.fig = fig = Figure(figsize=(4.6, 4.3), dpi=90)
        self.canvas = FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.02, right=0.93, bottom=0.2, top=0.98)
        self.ax = ax = fig.add_subplot(projection="3d")
        ax.scatter(*cloud.T, c=cloud, s=2, alpha=0.35, depthshade=False)
        ax.set(xlim=(0, 1), ylim=(0, 1), zlim=(0, 1), xlabel="R", ylabel="G", zlabel="B")
        ax.tick_params(labelsize=7)
        fig.text(0.5, 0.955, "The components in RGB space", ha="center", fontsize=11,
                 weight="bold")
        grey = {"color": "none", "markerfacecolor": "#bbbbbb", "markeredgecolor": "black"}
        key = [
            Line2D([], [], ls="", marker="o", ms=2, color="#777777",
                   label=f"the image's colours ({len(sample):,} drawn by pixel count)"),
            Line2D([], [], ls="", marker="o", ms=np.sqrt(disc_area(0.25)), **grey,
                   label="a component's mean, area \u221d \u03c0\u2096 (here 0.25)"),
            Line2D([], [], ls="", marker="o", ms=np.sqrt(disc_area(0.05)), **grey,
                   label="\u03c0\u2096 = 0.05"),
            Line2D([], [], color=MOVE_COLOUR, lw=2, marker="x", ms=4,
                   label="step by step: the mean's move from \u00d7, one step before"),
        ]
        fig.legend(handles=key, loc="lower center", fontsize=7, frameon=False, ncol=1)
        self.canvas.draw()
        self.moved = fig.text(0.5, 0.91, "", ha="center", fontsize=8, color=MOVE_COLOUR,
                              animated=True)
        self.background = self.canvas.copy_from_bbox(fig.bbox)
        self.picture = picture

    def png(self, picture: Picture, mixture: em.Mixture,
            previous: em.Mixture | None = None) -> bytes:
        if self.picture is not picture:
            self._draw_background(picture)
        ax = self.ax
        self.canvas.restore_region(self.background)
        means = np.clip(mixture.means, 0, 1)
        artists = [ax.scatter(*means.T, c=means, s=disc_area(mixture.weights),
                              edgecolors="black", depthshade=False)]
        if previous is not None:  # on top of the discs, with where each mean was
            before = np.clip(previous.means, 0, 1)
            for a, b in zip(before, means):
                artists += ax.plot(*np.stack([a, b]).T, color=MOVE_COLOUR, lw=2)
            artists += ax.plot(*before.T, ls="", marker="x", ms=4, color=MOVE_COLOUR)
            moved = np.sqrt(((mixture.means - previous.means) ** 2).sum(axis=1)).max()
            self.moved.set_text(f"largest move of a mean in this step: {moved:.4f}")
            artists.append(self.moved)
        try:
            for artist in artists:
                if hasattr(artist, "do_3d_projection"):
                    artist.do_3d_projection()
                artist.axes.draw_artist(artist) if artist.axes else self.fig.draw_artist(artist)
        finally:  # the kept axes hold the cloud only
            for artist in artists[:-1] if previous is not None else artists:
                artist.remove()
        return canvas_png(self.canvas)


# ------------------------------------------------------------------ HTML

def palette_html(mixture: em.Mixture, palette: np.ndarray) -> str:
    """Every component's swatch, by decreasing weight, with pi_k and sigma_k: written
    under it up to COMPACT_PALETTE components, in its tooltip above."""
    compact = mixture.k > COMPACT_PALETTE
    cells = []
    for rank, j in enumerate(np.argsort(-mixture.weights, kind="stable"), 1):
        r, g, b = palette[j]
        numbers = f"π {mixture.weights[j]:.3f}, σ {np.sqrt(mixture.variances[j]):.3f}"
        swatch = (f'<div style="height:{18 if compact else 22}px;'
                  f'background:rgb({r},{g},{b});border:1px solid #888"></div>')
        text = "" if compact else numbers.replace(", ", "<br>")
        cells.append(f'<div style="width:{24 if compact else 64}px;margin:1px;'
                     f'font:11px monospace;text-align:center" '
                     f'title="component {j} (#{rank} by weight): {numbers}">{swatch}{text}</div>')
    how = ("hover a swatch for its π<sub>k</sub> and σ<sub>k</sub>" if compact
           else "π<sub>k</sub> and σ<sub>k</sub> under each")
    return (f"<b>Palette</b>: all {mixture.k} component means, by weight π<sub>k</sub> "
            f"({how}; σ<sub>k</sub> on the RGB scale [0, 1])"
            f'<div style="display:flex;flex-wrap:wrap">{"".join(cells)}</div>')


LIKELIHOOD_NOTE = (
    "<b>Log-likelihood per pixel</b>: the mean of log p(x) over the pixels' colours x, "
    "in nats, with colours in the RGB cube [0, 1]³. p is a density, not a probability: "
    "a component with σ = 0.02 reaches π<sub>k</sub> × "
    f"{(2 * np.pi * 0.02 ** 2) ** -1.5:,.0f} at its mean, so log p, and this mean, can "
    "be positive. Compare it only between fits of the same picture.")
ERROR_NOTE = (
    "<b>Likelihood is not error</b>: EM raises the likelihood at every iteration (but "
    "where a component is re-seeded); it does not lower the reconstruction error. The "
    "likelihood also rewards each σ<sub>k</sub> and π<sub>k</sub> that fit the colours, "
    "the error only how near each pixel is to its mean, so a step, a restart or a "
    "split-and-merge move can raise both the likelihood and the error (a lower PSNR).")


def metrics_html(picture: Picture, summary: Summary, status: str, seconds: float,
                 before: tuple[str, Summary] | None = None) -> str:
    """The numbers of one fit or step with their units, as a small table; before:
    (what it was, its Summary) on the same picture, compared, with a note when the
    likelihood and the error rose together."""
    rows = [
        ("fitted on", html.escape(picture.describe())),
        ("EM", html.escape(status)),
        ("log-likelihood per pixel", f"{summary.log_likelihood:.4f} nats"),
        ("reconstruction error", f"{summary.error:.6f} (mean squared RGB distance of a "
                                 f"pixel to its component's mean, RGB in [0, 1])"),
        ("PSNR", f"{summary.psnr_db:.2f} dB"),
        ("palette PNG", f"{summary.png_bytes:,} bytes "
                        f"({8 * summary.png_bytes / picture.n_pixels:.3f} bits per pixel)"
                        if summary.png_bytes >= 0 else "compressing …"),
    ]
    if before is not None:
        what, old = before
        rows.append((html.escape(what), f"log-likelihood {old.log_likelihood:.4f} nats, "
                     f"error {old.error:.6f}, PSNR {old.psnr_db:.2f} dB"))
        if summary.log_likelihood > old.log_likelihood and summary.error > old.error:
            rows.append(("", "<span style='color:#8a4b00'>The likelihood rose and so did "
                             "the error: EM maximises the likelihood, not the squared "
                             "error (see below).</span>"))
    rows.append(("shown after", f"{seconds:.2f} s"))
    body = "".join(f"<tr><td style='padding-right:1em;vertical-align:top'>{a}</td>"
                   f"<td>{b}</td></tr>" for a, b in rows)
    return f"<table style='font-size:12px'>{body}</table>"


def original_caption(picture: Picture) -> str:
    fh, fw = picture.full_shape
    scaled = f", a preview of the {fw} x {fh} image" if picture.is_preview else ""
    return (f"<b>Original</b>: {html.escape(picture.name)}, {picture.size()}{scaled}")


def segmented_caption(summary: Summary, k: int, rule: str) -> str:
    used = len(np.unique(summary.colour_labels))
    whose = {"map": "its most probable component",
             "nearest": "the component whose mean is nearest"}[rule]
    return (f"<b>Segmented</b>: each pixel in the mean colour of {whose} "
            f"({LABELS[rule]}s; {used} of the {k} components hold pixels)")


def history_caption(moves=(), reseeds=(), stepping: bool = False) -> str:
    text = ("Iteration 0 is the start of restart 1; each press adds one iteration."
            if stepping else "Iteration 0 is the start of the winning run.")
    if moves:
        text += (" Dashed: a kept split-and-merge move started EM again from the changed "
                 "mixture (the likelihood drops there, then climbs above its level before).")
    if reseeds:
        text += " Dotted: a component that had lost all its pixels was re-seeded."
    return f"<span style='font-size:12px'>{text}</span>"


STYLE = """<style>
.em-stale { opacity: 0.3; filter: grayscale(0.7); }
.em-caption { font-size: 12px; line-height: 1.3; }
/* the upload button without the count of files it last received */
.em-upload { font-size: 0 !important; }
.em-upload i, .em-upload::after { font-size: var(--jp-widgets-font-size, 13px); }
.em-upload::after { content: " upload an image"; }
</style>"""
