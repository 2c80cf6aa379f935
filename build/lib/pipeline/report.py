"""Everything one report reads, gathered once for notebooks/report.ipynb: the sweep of
the report's image, the image and its segmentations, the original study's published
facts, the study's data file and the benchmark's entry for this image (None when
missing), and the date of the results."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from pipeline import defaults, experiment, images, paths, results, study as study_module


@dataclass(frozen=True)
class Report:
    sweep: results.Sweep
    image_path: Path
    rgb: np.ndarray
    segmented: dict          # {K: (H, W, 3) uint8}
    original: dict           # the study's published facts (study.original())
    study: dict | None       # report/data/study.json
    bench: dict | None       # this image's entry of report/data/bench.json
    photos: list             # bench.json's fits of the package photographs (bench_photos)
    photo_moves: int | None  # the split-and-merge setting of their fits with moves
    seeds: dict | None       # make seeds' sweep of this image (report/data/seeds.json)
    date: datetime

    @property
    def of_study_image(self) -> bool:
        """Whether the report's image is the study's photograph (study.json's image)."""
        return bool(self.study) and results.same_image(self.study.get("image"),
                                                       self.sweep.image)


def resolve(path, default: Path) -> Path:
    """A parameter path: empty -> default; relative -> relative to the project root."""
    if not path:
        return default
    path = Path(path).expanduser()
    return path if path.is_absolute() else paths.ROOT / path


def load(results_dir="", ks=defaults.KS, image="", study_data="",
         bench_data="", seeds_data="") -> Report:
    """Read one report's inputs; the image must be the one the runs were made of."""
    image = str(image or "")
    sweep = results.load(resolve(results_dir, paths.results_dir(image)), ks)
    info = sweep.image
    image_path = paths.image_path(image) if image else Path(info["path"])
    rgb = images.load_rgb(image_path)
    h, w = rgb.shape[:2]
    if (w, h) != (info["width"], info["height"]):
        raise ValueError(f"{image_path} is {w} x {h} pixels but the runs in "
                         f"{sweep.results_dir} were of a {info['width']} x {info['height']} image")
    bench = results.load_optional(resolve(bench_data, paths.BENCH_DATA))
    seeds = results.load_optional(resolve(seeds_data, paths.seeds_data(image)))
    photos, photo_moves = results.bench_photos(bench)
    return Report(
        sweep=sweep, image_path=image_path, rgb=rgb,
        segmented={k: results.load_png(sweep.results_dir, k) for k in sweep.ks},
        original=study_module.original(),
        study=results.load_optional(resolve(study_data, paths.STUDY_DATA)),
        bench=results.bench_entry(bench, paths.image_stem(image)),
        photos=photos, photo_moves=photo_moves,
        seeds=seeds if seeds and results.same_image(seeds.get("image"), info) else None,
        date=results.report_date(sweep.metrics_paths()))


def indexed_png(report: Report, k: int) -> bytes:
    """The palette PNG of one K, as bytes (what the HTML slider embeds)."""
    return results.run_file(report.sweep.results_dir, k, experiment.INDEXED_FILE).read_bytes()
