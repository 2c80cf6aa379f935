"""Helpers of the results report (notebooks/report.ipynb).

The report never refits what the experiments fitted: it reads every K's metrics.json
and PNGs from output/<image-stem>/. What it computes itself is small and lives here,
tested in tests/test_report_content.py:

- loading the results of every K (with an error naming the missing run),
- the baselines at the same K: a weighted k-means (Lloyd's loop with k-means++
  seeding) and Pillow's median-cut quantiser,
- the entropy of the responsibilities and the MAP-versus-nearest-mean labelling,
- Markdown tables (they survive nbconvert's conversions to HTML and to LaTeX),
- the environment the report was produced in,
- the original study's published numbers.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from pipeline import experiment

# The original study's published results on its photograph im.jpg (550 x 690 pixels),
# copied from ../shared/reference/README.md ("The original study's published results
# on im.jpg"): K, EM iterations, reconstruction error in its table, reconstruction error
# printed by its run. Error = mean over pixels of the squared RGB distance, RGB in [0, 1].
# Its EM started from K random pixels, random variances in (0, 1) and equal weights, and
# stopped when the total log-likelihood changed by less than 1e-2.
PUBLISHED_RESULTS: tuple[tuple[int, int, float, float], ...] = (
    (2, 23, 0.048828, 0.048741),
    (4, 107, 0.016802, 0.016805),
    (8, 154, 0.007941, 0.006135),
    (16, 452, 0.003880, 0.003334),
    (32, 548, 0.001980, 0.002186),
    (64, 1693, 0.000932, 0.000834),
    (128, 2013, 0.000520, 0.000615),
)
PUBLISHED_TOL = 1e-2          # its stopping rule, on the total log-likelihood
STUDY_IMAGE_NAME = "im.jpg"   # the file name of the study's photograph


# --------------------------------------------------------------------------- inputs

def parse_ks(ks) -> list[int]:
    """The K values of the report, ascending and without repeats.

    Accepts "2 4 8" (as the Makefile passes it), "2,4,8", a single int, or a list.
    """
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        items = [ks]
    elif isinstance(ks, str):
        items = ks.replace(",", " ").split()
    else:
        items = list(ks)
    values = []
    for item in items:
        try:
            value = int(item)
        except (TypeError, ValueError):
            raise ValueError(f"ks must be integers separated by spaces, got {ks!r}") from None
        if (isinstance(item, float) and item != value) or value < 1:
            raise ValueError(f"every K must be an integer >= 1, got {item!r} in {ks!r}")
        values.append(value)
    if not values:
        raise ValueError("ks is empty: give at least one K, e.g. ks = '2 4 8'")
    return sorted(set(values))


def run_dir(results_dir, k: int) -> Path:
    """The folder of one K's results: <results_dir>/k-<K>/."""
    return Path(results_dir) / f"k-{k}"


def _require(path: Path, k: int, results_dir) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"missing result for K = {k}: {path} does not exist. Run the experiments "
            f"first, e.g. `make experiments KS=\"{k}\"` (results_dir = {results_dir})")
    return path


def load_metrics(results_dir, ks) -> dict[int, dict]:
    """metrics.json of every K in `ks`, as {K: dict}, K ascending.

    Raises FileNotFoundError naming the K and the file when a run is missing, and
    ValueError when a file holds another K or the runs are of different images.
    """
    results = {}
    for k in parse_ks(ks):
        path = _require(run_dir(results_dir, k) / experiment.METRICS_FILE, k, results_dir)
        with open(path) as f:
            metrics = json.load(f)
        if metrics.get("k") != k:
            raise ValueError(f"{path} holds the run of K = {metrics.get('k')}, not K = {k}")
        results[k] = metrics
    shapes = {(m["image"]["name"], m["image"]["width"], m["image"]["height"])
              for m in results.values()}
    if len(shapes) > 1:
        raise ValueError(f"the runs in {results_dir} are of different images: {sorted(shapes)}")
    return results


def load_png(results_dir, k: int, name: str = experiment.SEGMENTED_FILE) -> np.ndarray:
    """One K's PNG as an (H, W, 3) uint8 RGB array (a palette PNG is expanded)."""
    from PIL import Image

    path = _require(run_dir(results_dir, k) / name, k, results_dir)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def metrics_paths(results_dir, ks) -> list[Path]:
    return [run_dir(results_dir, k) / experiment.METRICS_FILE for k in parse_ks(ks)]


# What identifies the study's photograph besides its name (from the reference notes).
STUDY_IMAGE_SHAPE = {"width": 550, "height": 690, "distinct_colours": 49129}


def is_study_image(info: dict, *names) -> bool:
    """Whether the run's image is the original study's photograph: named im.jpg (in any
    of `names`; empty ones are skipped) and of its size and number of distinct colours
    (`info`: the "image" entry of a metrics.json)."""
    named = any(name and Path(str(name)).name == STUDY_IMAGE_NAME for name in names)
    return named and all(info.get(key) == value for key, value in STUDY_IMAGE_SHAPE.items())


def pick_analysis_k(ks, preferred: int = 8) -> int:
    """The K of the soft-versus-hard section: `preferred` if run, else the middle K."""
    ks = parse_ks(ks)
    return preferred if preferred in ks else ks[len(ks) // 2]


def load_bench(path) -> dict | None:
    """output/bench/bench.json, or None when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ----------------------------------------------------------------------- k-means

@dataclass(frozen=True)
class KMeansResult:
    """centres (K, D); labels (N,) nearest centre of each sample; inertia: the
    weighted sum of squared distances to the nearest centre; history: inertia at the
    start of every iteration (never increases); restarts: final inertia of each."""

    centres: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int
    converged: bool
    history: np.ndarray
    restarts: np.ndarray


# Rows per chunk of the distance computation: about 2**17 distances per chunk stays in
# cache and keeps each matrix product small enough for one BLAS thread (a multi-threaded
# product with an inner dimension of 3 is many times slower on a busy machine).
_CHUNK_ENTRIES = 1 << 17


def nearest_centre(X: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre of every sample and the squared distance to it.

    X: (N, D), centres: (K, D)  ->  labels (N,) int64, sq_dist (N,). The argmin uses
    the expansion ||x||^2 - 2 x.c + ||c||^2 in row chunks; the returned distances are
    recomputed directly, so they are exact.
    """
    X = np.asarray(X, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    cc = (centres * centres).sum(axis=1)
    labels = np.empty(len(X), dtype=np.int64)
    rows = max(64, _CHUNK_ENTRIES // max(1, len(centres)))
    for start in range(0, len(X), rows):
        block = X[start:start + rows]
        labels[start:start + len(block)] = np.argmin(cc - 2.0 * block @ centres.T, axis=1)
    sq = ((X - centres[labels]) ** 2).sum(axis=1)
    return labels, sq


def kmeans_plus_plus(X: np.ndarray, w: np.ndarray, k: int,
                     rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding with sample weights: the first centre is a sample drawn with
    probability proportional to w_n, each next one with probability proportional to
    w_n D_n^2 (D_n: distance to the nearest centre so far).  ->  (K, D) centres."""
    X = np.asarray(X, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    centres = np.empty((k, X.shape[1]))
    score = w.copy()
    closest = None
    for j in range(k):
        cumulative = np.cumsum(score)
        total = cumulative[-1]
        if not total > 0:
            raise ValueError(f"k (={k}) exceeds the number of distinct samples with "
                             f"positive weight ({j})")
        idx = min(int(np.searchsorted(cumulative, rng.random() * total, side="right")),
                  len(X) - 1)
        centres[j] = X[idx]
        sq = ((X - centres[j]) ** 2).sum(axis=1)
        closest = sq if closest is None else np.minimum(closest, sq)
        score = w * closest
    return centres


def lloyd(X: np.ndarray, w: np.ndarray, centres: np.ndarray,
          max_iter: int = 1000) -> KMeansResult:
    """Lloyd's algorithm with sample weights from the given centres.

    Alternate: assign every sample to its nearest centre; move every centre to the
    weighted mean of its samples. Stops when no assignment changes (then the centres
    are a fixed point) or after max_iter iterations. A centre that loses all its
    weight is moved onto the sample that contributes most to the objective. The
    weighted objective sum_n w_n ||x_n - c(n)||^2 never increases.
    """
    X = np.asarray(X, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    centres = np.array(centres, dtype=np.float64)
    k, d = centres.shape
    history, previous, converged = [], None, False
    n_iter = 0
    while True:
        labels, sq = nearest_centre(X, centres)
        history.append(float((w * sq).sum()))  # not w @ sq: BLAS threads, slow when busy
        if previous is not None and np.array_equal(labels, previous):
            converged = True
            break
        if n_iter == max_iter:
            break
        n_iter += 1
        nk = np.bincount(labels, weights=w, minlength=k)
        sums = np.stack([np.bincount(labels, weights=w * X[:, j], minlength=k)
                         for j in range(d)], axis=1)
        empty = nk <= 0
        centres[~empty] = sums[~empty] / nk[~empty, None]
        if empty.any():
            worst = np.argsort(-(w * sq), kind="stable")[:int(empty.sum())]
            centres[empty] = X[worst]
        previous = labels
    return KMeansResult(centres, labels, history[-1], n_iter, converged,
                        np.array(history), np.array([history[-1]]))


def kmeans(X: np.ndarray, k: int, weights=None, *, n_init: int = 3, seed: int = 0,
           max_iter: int = 1000) -> KMeansResult:
    """Weighted k-means: k-means++ seeding then Lloyd's loop, best of n_init restarts
    (lowest objective; the first wins ties). Deterministic for a given seed."""
    X = np.asarray(X, dtype=np.float64)
    w = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(X),) or (w < 0).any():
        raise ValueError("weights must be non-negative, one per sample")
    rng = np.random.default_rng(seed)
    best, finals = None, []
    for _ in range(n_init):
        result = lloyd(X, w, kmeans_plus_plus(X, w, k, rng), max_iter=max_iter)
        finals.append(result.inertia)
        if best is None or result.inertia < best.inertia:
            best = result
    return KMeansResult(best.centres, best.labels, best.inertia, best.n_iter,
                        best.converged, best.history, np.array(finals))


# -------------------------------------------------------------------- median cut

@dataclass(frozen=True)
class Quantised:
    """An image quantised to a palette: palette (P, 3) uint8, labels (H, W) indices
    into it, error (mean squared RGB distance per pixel, RGB in [0, 1]), colours
    actually used, and the time the quantiser took."""

    palette: np.ndarray
    labels: np.ndarray
    error: float
    colours_used: int
    seconds: float


def quantisation_error(rgb: np.ndarray, reconstructed: np.ndarray) -> float:
    """Mean over pixels of the squared Euclidean RGB distance, both uint8 (H, W, 3)
    or floats in [0, 255]; RGB scaled to [0, 1]: the study's reconstruction error."""
    diff = (np.asarray(rgb, dtype=np.float64) - np.asarray(reconstructed, dtype=np.float64)) / 255.0
    return float((diff * diff).sum(axis=-1).mean())


def median_cut(rgb: np.ndarray, k: int) -> Quantised:
    """Pillow's median-cut quantiser to k colours, without dithering; the error uses
    its palette colours."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    start = time.perf_counter()
    q = im.quantize(colors=k, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    seconds = time.perf_counter() - start
    labels = np.asarray(q)
    flat = np.array(q.getpalette() or [], dtype=np.uint8)
    palette = flat[: 3 * (len(flat) // 3)].reshape(-1, 3)
    if labels.max() >= len(palette):
        raise ValueError("Pillow's palette is shorter than its indices")
    return Quantised(palette, labels, quantisation_error(rgb, palette[labels]),
                     int(len(np.unique(labels))), seconds)


# ------------------------------------------------------------- soft versus hard

def entropy(resp: np.ndarray, axis: int = -1) -> np.ndarray:
    """Entropy in nats of probability vectors along `axis`, with 0 log 0 = 0."""
    r = np.asarray(resp, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(r > 0, -r * np.log(np.where(r > 0, r, 1.0)), 0.0)
    return terms.sum(axis=axis)


@dataclass(frozen=True)
class SoftHard:
    """Per distinct colour: entropy of its responsibilities (nats), its MAP
    component, its nearest mean; and pixel-weighted summaries."""

    entropy: np.ndarray
    map_labels: np.ndarray
    nearest_labels: np.ndarray
    max_resp: np.ndarray
    fraction_differ: float      # of pixels whose two labels differ
    error_map: float            # reconstruction error, MAP labels
    error_nearest: float        # reconstruction error, nearest-mean labels
    mean_entropy: float         # per pixel, nats


def soft_vs_hard(mixture, colours: np.ndarray, counts: np.ndarray) -> SoftHard:
    """Compare the mixture's MAP labelling with labelling by the nearest mean.

    The responsibilities are computed once per distinct colour (colours (M, 3) in
    [0, 1], counts (M,) pixels); pixel statistics are weighted by the counts.
    """
    import em

    counts = np.asarray(counts, dtype=np.float64)
    resp = em.responsibilities(mixture, colours)
    h = entropy(resp)
    map_labels = em.predict(mixture, colours)
    nearest, sq_nearest = nearest_centre(colours, mixture.means)
    sq_map = ((colours - mixture.means[map_labels]) ** 2).sum(axis=1)
    total = counts.sum()
    return SoftHard(
        entropy=h, map_labels=map_labels, nearest_labels=nearest,
        max_resp=resp.max(axis=1),
        fraction_differ=float(counts[map_labels != nearest].sum() / total),
        error_map=float(counts @ sq_map / total),
        error_nearest=float(counts @ sq_nearest / total),
        mean_entropy=float(counts @ h / total))


# ------------------------------------------------------------------------ figures

def detail_window(a: np.ndarray, b: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left (row, col) of the size x size window where images a and b (H, W, C)
    differ most (sum of squared differences), found with a summed-area table; the
    first maximum in row-major order wins, so the choice is deterministic."""
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
               title_inches: float = 0.34, bottom_inches: float = 0.0, fontsize: float = 11,
               **imshow_kw):
    """A figure of equally sized images placed so that one image pixel is exactly
    `magnify` x `magnify` figure pixels (more for a tiny image): no resampling, hence
    no blur and no dropped rows. The figure's dpi is chosen for that: panel width in
    pixels / panel_inches.

    panels: (H, W) or (H, W, 3) arrays of one shape. Empty grid cells stay blank (the
    figure keeps its width, so a short last row lines up with full ones).
    Returns (figure, list of axes), one axes per panel.
    """
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("image_grid needs at least one panel")
    h, w = panels[0].shape[:2]
    if any(p.shape[:2] != (h, w) for p in panels):
        raise ValueError("image_grid panels must all have the same height and width")
    ncols = max(1, ncols)
    nrows = -(-len(panels) // ncols)
    # A tiny image gets each pixel drawn larger: at a few dpi the titles cannot be drawn.
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


def downsample(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Average factor x factor blocks (Pillow's reduce): for very large images only."""
    from PIL import Image

    if factor <= 1:
        return rgb
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).reduce(factor))


# ------------------------------------------------------------------------ tables

def fmt(value, spec: str = "", missing: str = "n/a") -> str:
    """format(value, spec), or `missing` for None / NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, spec)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence], align: str | None = None) -> str:
    """A pipe table: headers, then one line per row; cells are str()-ed, '|' escaped.

    align: one letter per column, 'l', 'r' or 'c' (default: first column left, the
    rest right). Columns are padded and the separator line is as wide as each column,
    so pandoc sizes wrapped columns in proportion to their content.
    """
    headers = [str(h) for h in headers]
    rows = [[str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in rows]
    n = len(headers)
    for i, row in enumerate(rows):
        if len(row) != n:
            raise ValueError(f"row {i} has {len(row)} cells, the header has {n}")
    align = align or "l" + "r" * (n - 1)
    if len(align) != n or set(align) - set("lrc"):
        raise ValueError(f"align needs one of l, r, c per column ({n}), got {align!r}")
    headers = [h.replace("|", "\\|") for h in headers]
    widths = [max(3, len(headers[j]), *(len(r[j]) for r in rows)) for j in range(n)]

    def line(cells):
        padded = [c.rjust(wd) if a == "r" else c.ljust(wd)
                  for c, wd, a in zip(cells, widths, align)]
        return "| " + " | ".join(padded) + " |"

    def rule(a, wd):
        if a == "l":
            return ":" + "-" * (wd - 1)
        if a == "r":
            return "-" * (wd - 1) + ":"
        return ":" + "-" * (wd - 2) + ":"

    separator = "| " + " | ".join(rule(a, wd) for a, wd in zip(align, widths)) + " |"
    return "\n".join([line(headers), separator, *(line(r) for r in rows)])


# ------------------------------------------------------------------- environment

def report_date(paths: Iterable, environ=None) -> tuple[datetime, str]:
    """The date the report stands for: SOURCE_DATE_EPOCH when set (reproducible
    builds), else the modification time of the newest of `paths` (the results), never
    the time of rendering. Returns (UTC datetime, where it came from)."""
    environ = os.environ if environ is None else environ
    epoch = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        return datetime.fromtimestamp(int(epoch), timezone.utc), "SOURCE_DATE_EPOCH"
    times = [Path(p).stat().st_mtime for p in paths if Path(p).exists()]
    if not times:
        raise FileNotFoundError("no result files to date the report by")
    return datetime.fromtimestamp(max(times), timezone.utc), "newest metrics.json"


def cpu_model(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return " ".join(value.split())
    return platform.processor() or platform.machine() or "unknown"


def environment() -> dict[str, str]:
    """Versions and machine facts of the running kernel, as an ordered dict."""
    import matplotlib
    import PIL

    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    threads = {name: os.environ[name] for name in
               ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
               if name in os.environ}
    info = {
        "Python": platform.python_version(),
        "NumPy": np.__version__,
        "Matplotlib": matplotlib.__version__,
        "Pillow": PIL.__version__,
        "OS": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "CPU": cpu_model(),
        "Logical CPUs": f"{os.cpu_count()} ({available} available to the process)",
    }
    if threads:
        info["Thread settings"] = ", ".join(f"{k}={v}" for k, v in threads.items())
    return info
