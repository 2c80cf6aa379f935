"""The explorer's fitting, as plain functions: an image made ready to fit (a Picture,
downscaled to a preview), em.fit with the explorer's settings (cancellable), the
start of EM and one EM step for step-by-step mode, and what is shown of a mixture (a
Summary: labels, palette, reconstruction error, PSNR, palette PNG size).
"""

from __future__ import annotations

import tempfile
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

import em
from pipeline import defaults, experiment, images
from pipeline.explore_settings import LABELS, ExploreError, check as check_settings, \
    fit_arguments

PREVIEW_PIXELS = 250_000
TOL, MAX_ITER = defaults.TOL, defaults.MAX_ITER  # make report's stopping rule


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
    def n_pixels(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def is_preview(self) -> bool:
        return self.shape != self.full_shape

    def size(self) -> str:
        """'455 x 533 pixels (0.24 MP, 61,204 colours)'."""
        h, w = self.shape
        return f"{w} x {h} pixels ({h * w / 1e6:.2f} MP, {len(self.counts):,} colours)"

    def describe(self) -> str:
        if not self.is_preview:
            return f"{self.name}: the full image, {self.size()}"
        fh, fw = self.full_shape
        return (f"{self.name}: preview, {self.size()}, downscaled from {fw} x {fh} "
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

def check(settings, picture: Picture) -> None:
    """ExploreError with a message for a choice that cannot be fitted to picture."""
    check_settings(settings)
    if settings.k > len(picture.counts):
        raise ExploreError(f"K = {settings.k} is more than the {len(picture.counts)} "
                           f"distinct colours of {picture.name}: choose K <= "
                           f"{len(picture.counts)}")


def fit(picture: Picture, settings, cancel=None) -> em.FitResult:
    """em.fit on the picture's distinct colours weighted by their pixel counts, with
    the settings' em.fit arguments and make report's stopping rule. cancel: em.fit's
    (polled before every EM iteration and every start; True raises em.Cancelled)."""
    check(settings, picture)
    arguments = fit_arguments(settings)
    k = arguments.pop("k")
    with warnings.catch_warnings():  # FitResult.converged says it, on screen
        warnings.simplefilter("ignore", em.ConvergenceWarning)
        return em.fit(picture.colours, k, sample_weight=picture.counts, tol=TOL,
                      max_iter=MAX_ITER, cancel=cancel, **arguments)


def initial_mixture(picture: Picture, settings) -> em.Mixture:
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
    to its component's mean (RGB in [0, 1]); psnr_db; log_likelihood: per pixel;
    png_bytes: size of the palette PNG (what make report writes as indexed.png), -1
    while it is being compressed.
    """

    colour_labels: np.ndarray
    labels: np.ndarray
    palette: np.ndarray
    error: float
    psnr_db: float
    log_likelihood: float
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


def summarise(picture: Picture, mixture: em.Mixture, rule: str = "map",
              log_likelihood: float | None = None) -> tuple[Summary, Future]:
    """Labels, palette, error, PSNR and log-likelihood per pixel (given, as a total, or
    computed) of `mixture` on the picture, with png_bytes = -1, and a Future of the
    same summary with the size of the palette PNG that images.save_indexed_png writes
    (compressed on another thread)."""
    per_colour = colour_labels(picture, mixture, rule)
    labels = per_colour[picture.inverse].reshape(picture.shape)
    palette = experiment.palette_of(mixture)
    error = experiment.reconstruction_error(picture.colours, picture.counts, per_colour,
                                            mixture.means)
    if log_likelihood is None:
        log_likelihood = em.log_likelihood(mixture, picture.colours, picture.counts)
    psnr = experiment.psnr_db(error)
    summary = Summary(per_colour, labels, palette, error, float("inf") if psnr is None else psnr,
                      log_likelihood / picture.n_pixels, -1)
    return summary, _PNG_WRITER.submit(
        lambda: replace(summary, png_bytes=len(images.indexed_png(labels, palette))))
