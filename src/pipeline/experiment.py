"""One experiment: an image, a K, a fitted mixture -> segmented image, compressed
image and metrics. notebooks/experiment.ipynb calls these in order.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import em
from pipeline import paths

METRICS_FILE = "metrics.json"
SEGMENTED_FILE = "segmented.png"
INDEXED_FILE = "indexed.png"


def output_dir(image: str, k: int, output_dir: str = "") -> Path:
    """Where a run writes: `output_dir` when given (the Makefile gives
    output/<image-stem>/k-<K>/); otherwise, for a run started by hand in Jupyter,
    paths.interactive_dir, which `make` neither reads nor tracks."""
    if output_dir:
        path = Path(output_dir).expanduser()
        return path if path.is_absolute() else paths.ROOT / path
    return paths.interactive_dir(image, k)


def palette_of(mixture: em.Mixture) -> np.ndarray:
    """The K component means as 8-bit colours: (K, 3) uint8."""
    return np.clip(np.rint(mixture.means * 255.0), 0, 255).astype(np.uint8)


def reconstruction_error(colours: np.ndarray, counts: np.ndarray,
                         colour_labels: np.ndarray, means: np.ndarray) -> float:
    """Mean over pixels of the squared Euclidean RGB distance (RGB in [0, 1]) between
    each pixel and the mean of its component: the original study's cost.

    Computed once per distinct colour and weighted by its pixel count, which is
    exactly the mean over all pixels.
    """
    sq = ((colours - means[colour_labels]) ** 2).sum(axis=1)
    return float(counts @ sq / counts.sum())


# A reconstruction error below this is the rounding of the palette's means: the palette
# reproduces the image exactly.
EXACT_ERROR = 1e-12


def psnr_db(error: float) -> float | None:
    """PSNR of a reconstruction with peak 1: 10 log10(1 / MSE), with MSE per channel
    = reconstruction error / 3 (the error sums the 3 channels); None when it is exact
    (error below EXACT_ERROR)."""
    return 10.0 * math.log10(3.0 / error) if error >= EXACT_ERROR else None


def metrics(*, result: em.FitResult, k: int, seed: int, init: str, n_init: int,
            split_merge: int, tol: float, max_iter: int, path: Path, rgb: np.ndarray,
            colours: np.ndarray, counts: np.ndarray, colour_labels: np.ndarray,
            indexed_png: Path,
            fit_seconds: float, wall_seconds: float) -> dict:
    """Everything a run measured, as plain JSON-ready values.

    colours: (M, 3) float in [0, 1], counts: (M,) pixel counts of each colour,
    colour_labels: (M,) the most probable component of each colour (em.predict).
    Timings live under "timing": they are the only values that differ between two
    runs with the same inputs.
    """
    height, width = rgb.shape[:2]
    n_pixels = height * width
    error = reconstruction_error(colours, counts, colour_labels, result.means)
    palette = palette_of(result) / 255.0
    error_png = reconstruction_error(colours, counts, colour_labels, palette)
    png_bytes = indexed_png.stat().st_size
    file_bytes = path.stat().st_size
    return {
        "image": {
            "path": str(Path(path).resolve()),
            "name": path.stem,
            "width": width, "height": height, "pixels": n_pixels,
            "distinct_colours": int(len(colours)),
            "file_bytes": file_bytes,
        },
        "k": k, "seed": seed, "init": init,
        "n_init": n_init, "split_merge": split_merge, "tol": tol, "max_iter": max_iter,
        "iterations": result.n_iter,
        "moves": list(result.moves), "move_trials": result.move_trials,
        "converged": bool(result.converged),
        "reseeds": list(result.reseeds),
        "log_likelihood": result.log_likelihood,
        "log_likelihood_per_pixel": result.log_likelihood / n_pixels,
        "history": [float(v) for v in result.history],
        "restarts": [float(v) for v in result.restarts],
        "bic": em.bic(result, colours, counts),
        "reconstruction_error": error,
        "reconstruction_error_png": error_png,
        "psnr_db": psnr_db(error),
        "indexed_png_bytes": png_bytes,
        "bits_per_pixel": 8.0 * png_bytes / n_pixels,
        "compression_ratio_raw": 3.0 * n_pixels / png_bytes,
        "compression_ratio_input": file_bytes / png_bytes,
        "model": {
            "weights": result.weights.tolist(),
            "means": result.means.tolist(),
            "variances": result.variances.tolist(),
        },
        "timing": {"fit_seconds": fit_seconds, "wall_seconds": wall_seconds},
    }


def load_mixture(metrics_obj: dict) -> em.Mixture:
    """The fitted mixture stored in a metrics.json object."""
    model = metrics_obj["model"]
    return em.Mixture(np.array(model["weights"]), np.array(model["means"]),
                      np.array(model["variances"]))
