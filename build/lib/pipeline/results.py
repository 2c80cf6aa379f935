"""The results a report reads: every K's files under output/<image>/k-<K>/ (metrics,
baselines, what the mixture learned, PNGs), the benchmark and the study data. Loading
only; a missing run is named with the command that makes it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pipeline import baselines, experiment, learned, params

def parse_ks(ks) -> list[int]:
    """The K values, ascending and without repeats, from "2 4 8", "2,4,8", an int or
    a list, each checked as make checks KS (params.check_ks)."""
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = [int(ks)]
    elif isinstance(ks, str):
        ks = ks.replace(",", " ")
    return sorted(set(params.check_ks(ks, "ks")))


def run_file(results_dir, k: int, name: str) -> Path:
    """<results_dir>/k-<K>/<name>, which must exist (the error says how to make it)."""
    path = Path(results_dir) / f"k-{k}" / name
    if not path.is_file():
        raise FileNotFoundError(
            f"missing result for K = {k}: {path} does not exist. Run the experiments "
            f"first, e.g. `make experiments KS=\"{k}\"` (results_dir = {results_dir})")
    return path


def read_json(path) -> dict:
    """A JSON file; one that does not parse raises ValueError naming it."""
    with open(path) as f:
        try:
            return json.load(f)
        except ValueError as exc:
            raise ValueError(f"{path} is damaged: {exc}") from None


def load_png(results_dir, k: int, name: str = experiment.SEGMENTED_FILE,
             mode: str = "RGB") -> np.ndarray:
    """One K's PNG as a uint8 array: (H, W, 3) for mode "RGB", (H, W) for "L"."""
    from PIL import Image

    path = run_file(results_dir, k, name)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode))
    except (OSError, SyntaxError, ValueError) as exc:  # not an image, truncated
        raise ValueError(f"{path} is damaged: {exc}") from None


@dataclass(frozen=True)
class Sweep:
    """Every K's results of one image: metrics, baselines and learned as {K: dict}."""

    results_dir: Path
    ks: list
    metrics: dict
    baselines: dict
    learned: dict

    @property
    def image(self) -> dict:
        return self.metrics[self.ks[0]]["image"]

    def series(self, key: str, source: str = "metrics") -> np.ndarray:
        """One value per K, by a dotted key into one of the files, e.g.
        series("kmeans.error", "baselines"); a missing or null value is NaN."""
        values = []
        for k in self.ks:
            value = getattr(self, source)[k]
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            values.append(np.nan if value is None else float(value))
        return np.array(values)

    def metrics_paths(self) -> list[Path]:
        return [self.results_dir / f"k-{k}" / experiment.METRICS_FILE for k in self.ks]


def load(results_dir, ks) -> Sweep:
    """The sweep in results_dir for the K in ks. Raises FileNotFoundError naming a
    missing K and file, ValueError when a file holds another K or the runs are of
    different images."""
    results_dir = Path(results_dir)
    ks = parse_ks(ks)
    files = {}
    for name in (experiment.METRICS_FILE, baselines.BASELINES_FILE, learned.LEARNED_FILE):
        files[name] = {}
        for k in ks:
            path = run_file(results_dir, k, name)
            data = read_json(path)
            if data.get("k") != k:
                raise ValueError(f"{path} holds the run of K = {data.get('k')}, not K = {k}")
            files[name][k] = data
    metrics = files[experiment.METRICS_FILE]
    shapes = {(m["image"]["name"], m["image"]["width"], m["image"]["height"])
              for m in metrics.values()}
    if len(shapes) > 1:
        raise ValueError(f"the runs in {results_dir} are of different images: {sorted(shapes)}")
    return Sweep(results_dir, ks, metrics, files[baselines.BASELINES_FILE],
                 files[learned.LEARNED_FILE])


def study_runs(data: dict) -> tuple[list[dict], dict | None]:
    """The runs of a sweep over seeds (make study, make seeds): those from k-means++
    starts, one per seed, and the one from the study's random start or None."""
    seeded = [r for r in data["runs"] if r["init"] == "kmeans++"]
    return seeded, next((r for r in data["runs"] if r["init"] == "random"), None)


def seed_errors(data: dict) -> tuple[list[int], np.ndarray, np.ndarray | None]:
    """The errors of a sweep over seeds: K values, (seeds, K) errors from k-means++
    starts, (K,) errors from the study's random start or None (study_runs)."""
    seeded, random = study_runs(data)
    ks = [f["k"] for f in seeded[0]["fits"]]
    errors = np.array([[f["error"] for f in r["fits"]] for r in seeded])
    return ks, errors, (np.array([f["error"] for f in random["fits"]]) if random else None)


# What the report reads of the benchmark's comparison on the package photographs.
PHOTO_KEYS = ("k", "ours_ll_per_pixel", "ours_ll_per_pixel_split_merge",
              "sklearn_ll_per_pixel_in_ours", "ours_error", "ours_error_split_merge",
              "sklearn_error")


def bench_photos(bench: dict | None) -> tuple[list[dict], int | None]:
    """The benchmark's fits of the package photographs, one {name, PHOTO_KEYS...} per
    photograph and K, in the file's order ([] when the file has none, or is older),
    and the split_merge setting of its fits with moves (None when not recorded)."""
    bench = bench if isinstance(bench, dict) else {}
    settings = bench.get("settings") if isinstance(bench.get("settings"), dict) else {}
    moves = settings.get("photo_moves")
    moves = moves.get("split_merge") if isinstance(moves, dict) else None
    photos = bench.get("photos")
    out = []
    for photo in photos if isinstance(photos, list) else []:
        rows = photo.get("rows") if isinstance(photo, dict) else None
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and all(isinstance(row.get(key), (int, float))
                                             for key in PHOTO_KEYS):
                out.append({"name": str(photo.get("name"))} | {key: row[key] for key in PHOTO_KEYS})
    return out, (moves if isinstance(moves, int) else None)


def same_image(a: dict | None, b: dict) -> bool:
    """Whether two descriptions of an image are of the same image, by size and number
    of distinct colours."""
    keys = ("width", "height", "distinct_colours")
    return isinstance(a, dict) and all(a.get(key) == b.get(key) for key in keys)


def load_optional(path) -> dict | None:
    """A JSON object, or None when the file is missing, unreadable or not an object."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def bench_entry(bench: dict | None, stem: str) -> dict | None:
    """The benchmark's entry for one image (bench.json's images[stem]), or None."""
    entries = bench.get("images") if isinstance(bench, dict) else None
    entry = entries.get(stem) if isinstance(entries, dict) else None
    rows = entry.get("rows") if isinstance(entry, dict) else None
    return entry if isinstance(rows, list) and rows else None


def report_date(paths, environ=None) -> datetime:
    """The date the report stands for: SOURCE_DATE_EPOCH when set, else the newest
    modification time of `paths` (the results), never the time of rendering."""
    environ = os.environ if environ is None else environ
    epoch = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        return datetime.fromtimestamp(int(epoch), timezone.utc)
    times = [Path(p).stat().st_mtime for p in paths if Path(p).exists()]
    if not times:
        raise FileNotFoundError("no result files to date the report by")
    return datetime.fromtimestamp(max(times), timezone.utc)
