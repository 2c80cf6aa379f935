"""The report's figures: each function takes loaded results and returns a matplotlib
figure; Numbered shows one with its number, caption and alt text, and saves the
README's copies. Figures are 7 inches wide with 11 pt text (9 pt or more in print)."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import PatchCollection
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, NullLocator

from pipeline import atomic, results
from pipeline.results import Sweep

FONT = 11
SMALL = 9     # the smallest text: 7-inch figures print at 6.5 inches, so 9 pt prints at 8.4
WIDTH = 7.0
STYLE = {"EM": dict(color="C0", marker="o", ls="-"),
         "EM, nearest-mean labels": dict(color="C0", marker="o", ls=":", mfc="white"),
         "k-means": dict(color="C1", marker="s", ls="--"),
         "median cut": dict(color="C2", marker="^", ls="-."),
         "original study (EM)": dict(color="0.2", marker="x", ls="none", ms=8, mew=2),
         "study's rule": dict(color="C4", marker="s", ls="none", ms=6, mfc="none", mew=1.5)}


def setup() -> None:
    plt.rcParams.update({
        "figure.dpi": 150, "savefig.dpi": 150, "font.size": FONT, "axes.titlesize": FONT,
        "axes.labelsize": FONT, "xtick.labelsize": FONT - 1, "ytick.labelsize": FONT - 1,
        "legend.fontsize": FONT - 1, "figure.titlesize": FONT, "axes.grid": True, "grid.alpha": 0.3,
        "svg.hashsalt": "em-report"})


class Numbered:
    """Shows figures numbered in order of first mention, each with a caption and an alt
    text (kept in the output's metadata for the renderer); saves README copies to a
    staging folder. ref(key) names a figure before it is shown (it takes the next
    number); a figure shown out of that order raises ValueError."""

    def __init__(self, staging_dir=None, prefix: str = ""):
        self.numbers: dict = {}
        self.shown = 0
        self.staging_dir = Path(staging_dir) if staging_dir else None
        self.prefix = prefix  # e.g. "B": Figure B1, B2... in an appendix

    def ref(self, key) -> str:
        """'Figure n' for the figure `key`."""
        return f"Figure {self.prefix}{self.numbers.setdefault(key, len(self.numbers) + 1)}"

    def show(self, fig, caption: str, alt: str, *, key=None, exact: bool = False,
             photo: bool = False, html: str = "", save_as: str = "",
             save_width_px: int = 800) -> None:
        """Display `fig` as the figure `key`; exact=True keeps its size and dpi (image
        grids); photo=True marks a figure of photographs or maps over them (the HTML
        stores it lossy); `html`: the figure's interactive form, which the HTML shows."""
        from IPython.display import display

        name = self.ref(key if key is not None else object())
        self.shown += 1
        if name != f"Figure {self.prefix}{self.shown}":
            plt.close(fig)
            raise ValueError(f"{name} is shown as the figure number {self.shown}: mention "
                             f"the figures in the order they are shown")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=fig.dpi,
                    **({} if exact else {"bbox_inches": "tight", "pad_inches": 0.05}))
        data = {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                "text/plain": name, **({"text/html": html} if html else {})}
        meta = {"caption": f"**{name}.** {caption}", "alt": alt, **({"photo": True} if photo else {})}
        display(data, raw=True, metadata={"em_report": meta})
        if save_as and self.staging_dir:
            with atomic.atomic_path(self.staging_dir / save_as) as tmp:
                fig.savefig(tmp, format="png", dpi=save_width_px / fig.get_figwidth())
        plt.close(fig)


def k_axis(ax, ks) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("K (components = palette colours)")


def detail_window(a: np.ndarray, b: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left (row, col) of the size x size window where images a and b (H, W, C)
    differ most, by a summed-area table; the first maximum in row-major order wins."""
    diff = ((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    diff = diff.sum(axis=-1) if diff.ndim == 3 else diff
    h, w = diff.shape
    size = max(1, min(size, h, w))
    table = np.zeros((h + 1, w + 1))
    table[1:, 1:] = diff.cumsum(axis=0).cumsum(axis=1)
    sums = (table[size:, size:] - table[:-size, size:] - table[size:, :-size]
            + table[:-size, :-size])
    row, col = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(row), int(col)


def image_grid(panels: Sequence[np.ndarray], titles: Sequence[str], *, ncols: int = 2,
               panel_inches: float = 3.4, magnify: int = 1, gap_inches: float = 0.12,
               title_inches: float = 0.34, bottom_inches: float = 0.0, fontsize: float = FONT,
               **imshow_kw):
    """Equally sized images placed so that one image pixel is exactly magnify x magnify
    figure pixels (more for a tiny image): no resampling. panels: (H, W) or (H, W, 3)
    arrays of one shape. Returns (figure, axes)."""
    if not panels:
        raise ValueError("image_grid needs at least one panel")
    h, w = panels[0].shape[:2]
    if any(p.shape[:2] != (h, w) for p in panels):
        raise ValueError("image_grid panels must all have the same height and width")
    ncols = max(1, ncols)
    nrows = -(-len(panels) // ncols)
    magnify = max(magnify, math.ceil(30 * panel_inches / w))
    dpi = w * magnify / panel_inches
    pw, ph = panel_inches, h * magnify / dpi
    fig_w = ncols * pw + (ncols - 1) * gap_inches
    fig_h = nrows * (ph + title_inches) + (nrows - 1) * gap_inches + bottom_inches
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=dpi)
    axes = []
    imshow_kw.setdefault("interpolation", "nearest")
    for i, (panel, title) in enumerate(zip(panels, titles)):
        row, col = divmod(i, ncols)
        left = col * (pw + gap_inches)
        top = fig_h - row * (ph + title_inches + gap_inches) - title_inches
        ax = fig.add_axes((left / fig_w, (top - ph) / fig_h, pw / fig_w, ph / fig_h))
        ax.imshow(panel, **imshow_kw)
        ax.set_axis_off()
        ax.set_title(title, fontsize=fontsize, pad=4)
        axes.append(ax)
    return fig, axes


def _errors_panel(ax, sweep: Sweep, errors: dict, published: list | None = None) -> None:
    for name, values in errors.items():
        ax.plot(sweep.ks, values, label=name, **STYLE[name])
    if published:
        pub = {row["k"]: row["error"] for row in published}
        ks = [k for k in sweep.ks if k in pub]
        ax.plot(ks, [pub[k] for k in ks], label="original study (EM)", **STYLE["original study (EM)"])
    ax.set_yscale("log")
    ax.set_ylabel("reconstruction error")
    k_axis(ax, sweep.ks)


def _ratio_panel(ax, ks, runs: list, reference: dict, ylabel: str) -> None:
    """Each run's error divided by a reference error per K: runs are (errors {k: e},
    label, style) and reference {k: e}; a line at 1."""
    ax.axhline(1.0, color="0.2", lw=1)
    for errs, label, style in runs:
        shown = [k for k in ks if k in errs and k in reference]
        ax.plot(shown, [errs[k] / reference[k] for k in shown], label=label, **style)
    ax.set_ylabel(ylabel)
    k_axis(ax, ks)


SEED_STYLE = dict(color="C0", marker="o", ls="-", alpha=0.55, lw=1, ms=3)
RANDOM_STYLE = dict(color="C3", marker="D", ls="--", ms=5)


def seed_spread(seeds: dict, ks):
    """EM's error from each seed and from the study's random start, divided by the
    median over the seeds, at the K of the report that make seeds ran."""
    seed_ks, seeded, random = results.seed_errors(seeds)
    shown = [k for k in ks if k in seed_ks]
    median = dict(zip(seed_ks, np.median(seeded, axis=0)))
    runs = [(dict(zip(seed_ks, row)), f"k-means++, {len(seeded)} seeds" if i == 0 else None,
             SEED_STYLE) for i, row in enumerate(seeded)]
    if random is not None:
        runs.append((dict(zip(seed_ks, random)), "the study's random start", RANDOM_STYLE))
    fig, ax = plt.subplots(figsize=(WIDTH, 2.7), layout="constrained")
    _ratio_panel(ax, shown, runs, median, "EM's error / median of the seeds")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=SMALL)
    return fig


def hero_ks(ks) -> list[int]:
    """The K that page 1's figure shows: 4, 16 and 64 where they were run, else the
    first three K."""
    return [k for k in (4, 16, 64) if k in ks] or list(ks[:3])


def hero(rgb: np.ndarray, segmented: dict, shown: Sequence[int], sweep: Sweep,
         errors: dict):
    """Page 1: the original beside a few K, and the error curve of every method."""
    h, w = rgb.shape[:2]
    n = len(shown) + 1
    gap, title, plot_h = 0.06, 0.3, 2.6
    img_h = (WIDTH - (n - 1) * gap) / n * h / w
    total = img_h + title + 0.25 + plot_h
    fig = plt.figure(figsize=(WIDTH, total))
    top = fig.add_gridspec(1, n, left=0, right=1, top=1 - title / total,
                           bottom=1 - (title + img_h) / total, wspace=gap * n / WIDTH)
    for i, (picture, name) in enumerate(zip([rgb] + [segmented[k] for k in shown],
                                            ["original"] + [f"K = {k}" for k in shown])):
        ax = fig.add_subplot(top[0, i])
        ax.imshow(picture, interpolation="antialiased")
        ax.set_title(name, pad=3)
        ax.set_axis_off()
    ax = fig.add_gridspec(1, 1, left=0.1, right=0.99, top=(plot_h - 0.05) / total,
                          bottom=0.55 / total).subplots()
    _errors_panel(ax, sweep, errors)
    ax.legend(loc="lower left", ncol=2, frameon=True)
    return fig


def error_curves(sweep: Sweep, errors: dict, published: list | None = None):
    """Left: error against K for every method (and the study's published error when
    `published` rows are given). Right: PSNR against bits per pixel (the
    rate-distortion curve of the palette PNG), each point a K."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(WIDTH, 3.6), layout="constrained")
    _errors_panel(ax1, sweep, errors, published)
    fig.legend(*ax1.get_legend_handles_labels(), loc="outside lower center", ncol=3,
               fontsize=SMALL)
    bpp, psnr = sweep.series("bits_per_pixel"), sweep.series("psnr_db")
    ax2.plot(bpp, psnr, **STYLE["EM"])
    for k, x, y in zip(sweep.ks, bpp, psnr):
        ax2.annotate(f"K={k}", (x, y), textcoords="offset points", xytext=(5, -10), fontsize=SMALL)
    ax2.set_xlabel("bits per pixel (palette PNG)")
    ax2.set_ylabel("PSNR (dB)")
    ax2.margins(x=0.15, y=0.1)
    return fig


def convergence(sweep: Sweep):
    """Log-likelihood per pixel after each iteration, one line per K labelled at its
    end, re-seeds marked."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.0), layout="constrained")
    colours = plt.cm.plasma(np.linspace(0.0, 0.8, len(sweep.ks)))  # dark to orange
    styles = ["-", "--", "-.", ":"]
    n = sweep.image["pixels"]
    labels = []
    for i, (k, colour) in enumerate(zip(sweep.ks, colours)):
        m = sweep.metrics[k]
        h = np.asarray(m["history"]) / n
        ax.plot(np.arange(len(h)), h, color=colour, ls=styles[i % 4], lw=1.8)
        labels.append(ax.annotate(f"K = {k}", (len(h) - 1, h[-1]), textcoords="offset points",
                                  xytext=(4, 0), va="center", fontsize=SMALL, color=colour))
        for r in m["reseeds"]:
            ax.plot([r], [h[r]], marker="v", color="red", ms=7, ls="none")
    ax.set_xscale("symlog", linthresh=1)
    ax.margins(x=0.12)
    _spread_labels(ax, labels)
    ax.set_xlabel("iteration (0: the start)")
    ax.set_ylabel("log-likelihood per pixel")
    return fig


def sigma_heights(sigma: np.ndarray, low: float, high: float) -> np.ndarray:
    """Bar heights in [0.15, 1] for spreads between low and high, on a log scale (the
    narrowest spread of the sweep still shows)."""
    if high <= low:
        return np.ones_like(sigma)
    return 0.15 + 0.85 * np.log(sigma / low) / np.log(high / low)


def _spread_labels(ax, labels, gap_points: float = 1.1 * SMALL) -> None:
    """Move the end labels of lines apart vertically so that none overlaps the next
    (at least gap_points apart on the page), keeping their order."""
    if len(labels) < 2:
        return
    ax.figure.draw_without_rendering()  # the layout first: it moves the axes
    to_points = ax.transData.transform
    ys = [to_points(label.xy)[1] * 72 / ax.figure.dpi for label in labels]
    order = np.argsort(ys)
    placed = []
    for i in order:
        y = ys[i] if not placed else max(ys[i], placed[-1] + gap_points)
        placed.append(y)
        labels[i].set_position((4, y - ys[i]))


def palettes(sweep: Sweep):
    """One row per K: the components sorted by weight, each a swatch of its mean colour
    as wide as pi_k, above a grey bar whose height shows sigma_k on a log scale from the
    sweep's narrowest spread to its broadest (sigma_heights)."""
    rows = len(sweep.ks)
    fig, ax = plt.subplots(figsize=(WIDTH, 0.5 * rows + 0.75), layout="constrained")
    sigmas = [np.sqrt(np.asarray(sweep.metrics[k]["model"]["variances"])) for k in sweep.ks]
    low, high = min(s.min() for s in sigmas), max(s.max() for s in sigmas)
    boxes = []
    for row, (k, sigma) in enumerate(zip(sweep.ks, sigmas)):
        model = sweep.metrics[k]["model"]
        pi = np.asarray(model["weights"])
        mu = np.clip(np.asarray(model["means"]), 0, 1)
        height = sigma_heights(sigma, low, high)
        left, y = 0.0, rows - 1 - row
        edge = dict(edgecolor="white", lw=0.5) if k <= 16 else dict(edgecolor="none", lw=0)
        for j in np.argsort(-pi, kind="stable"):
            boxes.append(Rectangle((left, y + 0.4), pi[j], 0.5, facecolor=mu[j], **edge))
            boxes.append(Rectangle((left, y + 0.05), pi[j], 0.32 * height[j],
                                   facecolor="0.45", **edge))
            if k <= 4 and pi[j] >= 0.2:
                light = mu[j] @ np.array([0.299, 0.587, 0.114]) > 0.5
                ax.text(left + pi[j] / 2, y + 0.65, f"$\\pi$={pi[j]:.2f}  $\\sigma$={sigma[j]:.3f}",
                        ha="center", va="center", fontsize=SMALL,
                        color="black" if light else "white")
            left += pi[j]
    # One collection draws the rectangles at once (hundreds of patches, one by one, took
    # seconds); no edge is a width of 0 and joins are mitred, as a patch draws them, so the
    # picture is the same to the pixel.
    ax.add_collection(PatchCollection(boxes, match_original=True, joinstyle="miter"),
                      autolim=False)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, rows)
    ax.set_yticks(np.arange(rows) + 0.5, [f"K = {k}" for k in reversed(sweep.ks)])
    ax.set_xlabel("cumulative weight $\\pi_k$ (components sorted by weight)")
    ax.grid(False)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    return fig


def certainty(entropy_map: np.ndarray, relabelled: np.ndarray, rgb: np.ndarray,
              share: float):
    """Left: the entropy of the responsibilities (0 to log 2 nats). Right: in red, the
    pixels whose most probable component is not the nearest mean."""
    grey = 0.35 + 0.55 * rgb.astype(float).mean(axis=2) / 255.0
    overlay = np.repeat(grey[:, :, None], 3, axis=2)
    overlay[relabelled > 0] = (0.85, 0.0, 0.0)
    fig, axes = image_grid([entropy_map / 255.0 * np.log(2), overlay],
                           ["entropy of the responsibilities",
                            f"MAP \u2260 nearest mean: {100 * share:.1f} % of pixels"],
                           ncols=2, panel_inches=2.5, bottom_inches=0.75, cmap="magma_r",
                           vmin=0.0, vmax=float(np.log(2)), fontsize=FONT - 1)
    fig_w, fig_h = fig.get_size_inches()
    cax = fig.add_axes((0.2 / fig_w, 0.52 / fig_h, 2.1 / fig_w, 0.12 / fig_h))
    bar = fig.colorbar(axes[0].images[0], cax=cax, orientation="horizontal", extend="max")
    cax.grid(False)
    bar.set_label("entropy (nats); log 2 = an even split of two", fontsize=FONT - 1, loc="left")
    return fig


def study_curve(data: dict, published: list):
    """Error against K on the study's photograph: the published table, ours over the
    seeds (median) and under the study's own rule; right, each run's error divided by
    the published one: every seed, the study's random start and its rule."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(WIDTH, 3.5), layout="constrained")
    ks, seeded, random = results.seed_errors(data)
    pub = {row["k"]: row["error"] for row in published}
    pk = [k for k in ks if k in pub]
    rule = {f["k"]: f["error"] for f in data.get("study_rule", {}).get("fits", [])}
    ax1.plot(ks, np.median(seeded, axis=0), **STYLE["EM"], label="ours, median of the seeds")
    if rule:
        ax1.plot(list(rule), list(rule.values()), **STYLE["study's rule"],
                 label="ours, the study's rule")
    ax1.plot(pk, [pub[k] for k in pk], **STYLE["original study (EM)"],
             label="original study (table)")
    ax1.set_yscale("log")
    ax1.set_ylabel("reconstruction error")
    k_axis(ax1, ks)
    runs = [(dict(zip(ks, row)), f"ours, k-means++, {len(seeded)} seeds" if i == 0 else None,
             SEED_STYLE) for i, row in enumerate(seeded)]
    if random is not None:
        runs.append((dict(zip(ks, random)), "ours, the study's random start", RANDOM_STYLE))
    if rule:
        runs.append((rule, None, dict(STYLE["study's rule"], ls=":")))
    _ratio_panel(ax2, pk, runs, pub, "our error / published error")
    handles, labels = ax1.get_legend_handles_labels()
    more = ax2.get_legend_handles_labels()
    keep = [(h, lab) for h, lab in zip(*more) if not lab.startswith("_")]
    fig.legend(handles + [h for h, _ in keep], labels + [lab for _, lab in keep],
               loc="outside lower center", ncol=3, fontsize=SMALL)
    return fig
