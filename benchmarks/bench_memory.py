"""Peak memory and time of `make experiments` on large photograph-like images.

    python benchmarks/bench_memory.py [--megapixels 24 49] [--k 128] [--n-init 3]

Makes each test image (the default photograph upscaled, with noise so that it has a
photograph's millions of distinct colours, as a JPEG in output/bench/: never
committed), runs `make experiments IMAGE=... KS=K` on it with nothing cached, samples
the resident memory of the whole process tree (make, papermill, the kernel) every
50 ms, and prints a table: pixels, distinct colours, wall time, peak resident memory
of the tree and of its largest process.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from pipeline import images, paths

BENCH = paths.OUTPUT / "bench"
MIB = 2.0 ** 20


def photo_like(megapixels: float, seed: int = 0) -> Path:
    """The default photograph upscaled to about `megapixels`, plus Gaussian noise of 3
    levels per channel, saved as a quality-92 JPEG (made once, then reused)."""
    path = BENCH / f"photo-{megapixels:g}mp.jpg"
    if path.exists():
        return path
    rgb = images.load_rgb(paths.default_image())
    scale = (megapixels * 1e6 / (rgb.shape[0] * rgb.shape[1])) ** 0.5
    size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
    big = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC)).copy()
    rng = np.random.default_rng(seed)
    for rows in np.array_split(np.arange(big.shape[0]), 64):  # in bands: bounded memory
        band = big[rows].astype(np.int16) + rng.normal(0, 3, big[rows].shape).round().astype(np.int16)
        big[rows] = np.clip(band, 0, 255)
    BENCH.mkdir(parents=True, exist_ok=True)
    Image.fromarray(big).save(path, quality=92)
    return path


def peak_memory(command: list[str]) -> tuple[int, float, float, float]:
    """Run `command`; return its exit status, wall seconds, and the peak resident memory
    (MiB) of its whole process tree and of its largest single process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=paths.ROOT, stdout=subprocess.DEVNULL)
    root = psutil.Process(process.pid)
    tree_peak = single_peak = 0
    while process.poll() is None:
        try:
            rss = [p.memory_info().rss for p in [root, *root.children(recursive=True)]]
        except psutil.Error:  # a process ended while being measured
            continue
        tree_peak, single_peak = max(tree_peak, sum(rss)), max(single_peak, max(rss))
        time.sleep(0.05)
    return process.wait(), time.perf_counter() - start, tree_peak / MIB, single_peak / MIB


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, nargs="+", default=[24, 49])
    parser.add_argument("--k", type=int, default=128)
    parser.add_argument("--n-init", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    for megapixels in args.megapixels:
        image = photo_like(megapixels)
        out = paths.results_dir(str(image)) / f"k-{args.k}"
        shutil.rmtree(out, ignore_errors=True)  # nothing cached: the whole run is measured
        status, seconds, tree, single = peak_memory(
            ["make", "experiments", f"IMAGE={image}", f"KS={args.k}", f"N_INIT={args.n_init}"])
        if status != 0:
            print(f"make experiments failed on {image} (exit status {status})", file=sys.stderr)
            return 1
        metrics = json.loads((out / "metrics.json").read_text())
        rows.append((metrics["image"]["pixels"], metrics["image"]["distinct_colours"],
                     seconds, metrics["timing"]["fit_seconds"], tree, single))
        print(f"{image.name}: {seconds:.0f} s, peak {tree:.0f} MiB", file=sys.stderr)
    print(f"make experiments KS={args.k} N_INIT={args.n_init}: peak resident memory and time\n")
    print("| pixels | distinct colours | wall time (s) | of which fitting (s) "
          "| peak RSS, all processes (MiB) | peak RSS, largest process (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for pixels, colours, seconds, fit, tree, single in rows:
        print(f"| {pixels:,} | {colours:,} | {seconds:.0f} | {fit:.0f} | {tree:.0f} | {single:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
