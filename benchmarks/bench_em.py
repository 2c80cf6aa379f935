"""Where the EM kernel's speed comes from, side by side with scikit-learn.

    .venv/bin/python benchmarks/bench_em.py           # make bench: report/data/bench.json
    .venv/bin/python benchmarks/bench_em.py --quick   # a subset: output/bench/bench-quick.json

"ours" is em.fit on the distinct colours weighted by their pixel counts (exactly the fit
on all pixels); "sklearn" is GaussianMixture(covariance_type="spherical") on all pixels.
Colours are RGB in [0, 1], float64 on both sides. For each benchmarked image (the
study's photograph ../shared/reference/im.jpg when present, and the report's default
image, matplotlib's grace_hopper.jpg) and each K:

* rows and time per row: ours iterates over the distinct colours, sklearn over every
  pixel. ms/iter on both sides from the same explicit start (the kernel's k-means++,
  seed 0; sklearn gets it as weights_init/means_init/precisions_init), timed as
  (t(max_iter = 1 + n) - t(max_iter = 1)) / n, so set-up and the first E-step cancel;
  plain EM on our side (one E-step and one M-step per iteration, like sklearn's).
  The two sides alternate, ROUNDS times; medians. us/row = ms/iter / rows.
* to convergence: ours with make report's settings (init k-means++, n_init=3, tol=1e-4
  nats per pixel, max_iter=2000, seed 0), accelerated (the default) and plain EM:
  iterations of the winning restart, wall time of em.fit (all restarts), log-likelihood
  per pixel. sklearn with its defaults and n_init=3 (random_state=0), wall time, its
  score() per pixel; only for K <= --sklearn-max-k (it is slow at large K; null above).
* memory: the peak of memory traced by tracemalloc (NumPy reports its buffers) during
  three iterations of em.fit, per K, against the (pixels, K) float64 array a
  per-pixel E-step would hold.

"photos": on natural photographs shipped by matplotlib, scikit-learn and scikit-image,
the log-likelihood per pixel of ours (make report's settings; then with split-and-merge
moves, SPLIT_MERGE; then with the moves and scikit-learn's variance floor, see
SKLEARN_REG_COVAR) and of sklearn (GaussianMixture spherical, n_init=3, its defaults
otherwise, all pixels), per K: sklearn's own score, and its fitted parameters scored in
this model (variances under the kernel's floor raised to it; "_in_ours"). Also the
reconstruction error of each fit (ours without and with the moves, sklearn's with its
own labels).

JSON schema (report/data/bench.json): {"quick", "machine": pipeline.machine.describe(),
"kernel": {commit, em_modified}, "settings": {...}, "images": {stem: {name, pixels,
distinct_colours, rows: [{k, ours_ms_per_iter, sklearn_ms_per_iter, ours_us_per_row,
sklearn_us_per_row, ours_rows, sklearn_rows, ours_iterations, ours_iterations_plain,
ours_seconds, ours_seconds_plain, sklearn_seconds, sklearn_iterations,
ours_ll_per_pixel, ours_ll_per_pixel_plain, sklearn_ll_per_pixel, ours_peak_mib,
pixels_x_k_mib}]}}, "photos": [{name, source, pixels, distinct_colours, rows: [{k,
ours_ll_per_pixel, sklearn_ll_per_pixel, difference, sklearn_ll_per_pixel_in_ours,
difference_in_ours, ours_ll_per_pixel_split_merge, difference_split_merge,
difference_split_merge_in_ours, ours_ll_per_pixel_sklearn_floor,
difference_sklearn_floor, ours_error, ours_error_split_merge, sklearn_error}]}]};
null where not run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

import em
from pipeline import defaults, machine
from pipeline.atomic import write_json
from pipeline.experiment import reconstruction_error
from pipeline.images import distinct_colours, load_rgb
from pipeline.paths import BENCH_DATA, ROOT, STUDY_IMAGE, default_image

REFERENCE = STUDY_IMAGE
OUTPUT = BENCH_DATA
OUTPUT_QUICK = ROOT / "output" / "bench" / "bench-quick.json"
KS = (2, 4, 8, 16, 32, 64, 128)
PHOTO_KS = (4, 8, 16, 32)  # scikit-learn to convergence, 3 restarts, on every pixel: slow above
# The photographs are also fitted with split-and-merge moves, and with those moves and
# scikit-learn's own variance floor: it adds reg_covar = 1e-6 to every variance, so a
# component on one colour (e.g. pure black) gets 1e-6, under the kernel's floor of
# (1/255)^2 / 12 = 1.28e-6: like for like, the kernel gets 1e-6 as var_floor.
SPLIT_MERGE = {"split_merge": 2}
SKLEARN_REG_COVAR = 1e-6
REPORT_SETTINGS = dict(init=defaults.INIT, n_init=defaults.N_INIT,
                       split_merge=defaults.SPLIT_MERGE, tol=defaults.TOL,
                       max_iter=defaults.MAX_ITER, seed=defaults.SEED)
ROUNDS = 3
MIB = 1024.0 ** 2


# ----------------------------------------------------------------------- data

def photographs() -> list[tuple[str, str, np.ndarray]]:
    """(name, source, (H, W, 3) uint8) of the sample photographs packages ship."""
    from matplotlib import cbook
    from sklearn.datasets import load_sample_image

    photos = [("grace_hopper", "matplotlib", load_rgb(cbook.get_sample_data(
        "grace_hopper.jpg", asfileobj=False)))]
    photos += [(name.removesuffix(".jpg"), "scikit-learn", load_sample_image(name))
               for name in ("china.jpg", "flower.jpg")]
    try:
        import skimage.data
    except ImportError:  # benchmark-only package; the others still run
        return photos
    return photos + [(name, "scikit-image", getattr(skimage.data, name)())
                     for name in ("astronaut", "coffee", "chelsea", "rocket")]


def prepare(rgb: np.ndarray):
    """pixels (H*W, 3), colours (M, 3), counts (M,): float64, RGB in [0, 1]."""
    colours, counts, _ = distinct_colours(rgb)
    return rgb.reshape(-1, 3) / 255.0, colours / 255.0, counts.astype(np.float64)


# ------------------------------------------------------------------ measurements

def ours(colours, counts, k, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", em.ConvergenceWarning)
        return em.fit(colours, k, sample_weight=counts, **kwargs)


def sklearn_model(k, **kwargs):
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(n_components=k, covariance_type="spherical", random_state=0,
                           **kwargs)


def timed(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def per_iteration_ms(pixels, colours, counts, k, n_iter):
    """Median over ROUNDS alternating rounds of (t(1 + n) - t(1)) / n, both sides."""
    start = em.init_kmeans_plus_plus(colours, counts, k, np.random.default_rng(0))

    def ours_run(m):
        ours(colours, counts, k, init=start, max_iter=m, tol=1e-300, accelerate=False)

    def sklearn_run(m):
        model = sklearn_model(k, tol=0.0, max_iter=m, init_params="random_from_data",
                              weights_init=start.weights, means_init=start.means,
                              precisions_init=1.0 / start.variances)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(pixels)

    ours_run(1), sklearn_run(1)  # warm-up, untimed
    ours_ms, sklearn_ms = [], []
    for _ in range(ROUNDS):
        ours_ms.append((timed(lambda: ours_run(1 + n_iter)) - timed(lambda: ours_run(1)))
                       / n_iter * 1e3)
        sklearn_ms.append((timed(lambda: sklearn_run(1 + n_iter))
                           - timed(lambda: sklearn_run(1))) / n_iter * 1e3)
    return statistics.median(ours_ms), statistics.median(sklearn_ms)


def peak_mib(colours, counts, k) -> float:
    """Peak traced memory (MiB) of three iterations of em.fit, start included."""
    tracemalloc.start()
    try:
        ours(colours, counts, k, max_iter=3)
        return tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


def to_convergence(pixels, colours, counts, k, with_sklearn: bool) -> dict:
    row = {}
    for suffix, accelerate in (("", True), ("_plain", False)):
        holder = {}
        seconds = timed(lambda: holder.setdefault("r", ours(
            colours, counts, k, accelerate=accelerate, **REPORT_SETTINGS)))
        result = holder["r"]
        row |= {f"ours_iterations{suffix}": result.n_iter, f"ours_seconds{suffix}": seconds,
                f"ours_ll_per_pixel{suffix}": result.mean_log_likelihood,
                f"ours_converged{suffix}": bool(result.converged)}
    row |= {"sklearn_seconds": None, "sklearn_iterations": None, "sklearn_ll_per_pixel": None}
    if with_sklearn:
        model = sklearn_model(k, n_init=3)
        seconds = timed(lambda: model.fit(pixels))
        row |= {"sklearn_seconds": seconds, "sklearn_iterations": int(model.n_iter_),
                "sklearn_ll_per_pixel": float(model.score(pixels))}
    return row


def bench_image(name, rgb, ks, n_iter, sklearn_max_k) -> dict:
    pixels, colours, counts = prepare(rgb)
    entry = {"name": name, "pixels": len(pixels), "distinct_colours": len(colours),
             "rows": []}
    print(f"\n{name}: {len(pixels):,} pixels, {len(colours):,} distinct colours", flush=True)
    for k in ks:
        ours_ms, sklearn_ms = per_iteration_ms(pixels, colours, counts, k, n_iter)
        row = {"k": k, "ours_ms_per_iter": ours_ms, "sklearn_ms_per_iter": sklearn_ms,
               "ours_rows": len(colours), "sklearn_rows": len(pixels),
               "ours_us_per_row": ours_ms * 1e3 / len(colours),
               "sklearn_us_per_row": sklearn_ms * 1e3 / len(pixels)}
        row |= to_convergence(pixels, colours, counts, k, k <= sklearn_max_k)
        row |= {"ours_peak_mib": peak_mib(colours, counts, k),
                "pixels_x_k_mib": len(pixels) * k * 8 / MIB}
        entry["rows"].append(row)
        print(f"  K={k}: {ours_ms:.1f} vs {sklearn_ms:.0f} ms/iter (x{sklearn_ms / ours_ms:.0f}); "
              f"iterations {row['ours_iterations']} (plain {row['ours_iterations_plain']})",
              flush=True)
    return entry


def error(colours, counts, mixture) -> float:
    """The study's reconstruction error of a mixture on the weighted colours."""
    return reconstruction_error(colours, counts, em.predict(mixture, colours), mixture.means)


def bench_photo(name, source, rgb, ks) -> dict:
    pixels, colours, counts = prepare(rgb)
    rows = []
    for k in ks:
        moving = ours(colours, counts, k, **(REPORT_SETTINGS | SPLIT_MERGE))
        # make report's settings: without moves, when none was kept, the same fit
        plain = (ours(colours, counts, k, **REPORT_SETTINGS)
                 if moving.moves or REPORT_SETTINGS["split_merge"] else moving)
        mine = plain.mean_log_likelihood
        floor = ours(colours, counts, k, var_floor=SKLEARN_REG_COVAR,
                     **(REPORT_SETTINGS | SPLIT_MERGE)).mean_log_likelihood
        model = sklearn_model(k, n_init=3).fit(pixels)
        theirs = float(model.score(pixels))
        # the same parameters in this model: variances under its floor raised to it
        in_ours = em.Mixture(model.weights_, model.means_,
                             np.maximum(model.covariances_, em.QUANTISATION_VARIANCE))
        scored = em.log_likelihood(in_ours, colours, counts) / counts.sum()
        row = {"k": k, "ours_ll_per_pixel": mine, "sklearn_ll_per_pixel": theirs,
               "difference": mine - theirs, "sklearn_ll_per_pixel_in_ours": scored,
               "difference_in_ours": mine - scored,
               "ours_ll_per_pixel_split_merge": moving.mean_log_likelihood,
               "difference_split_merge": moving.mean_log_likelihood - theirs,
               "difference_split_merge_in_ours": moving.mean_log_likelihood - scored,
               "ours_ll_per_pixel_sklearn_floor": floor,
               "difference_sklearn_floor": floor - theirs,
               "ours_error": error(colours, counts, plain),
               "ours_error_split_merge": error(colours, counts, moving),
               "sklearn_error": reconstruction_error(colours, counts, model.predict(colours),
                                                     model.means_)}
        rows.append(row)
        print(f"  {name} K={k}: ours {mine:.5f}, with moves {moving.mean_log_likelihood:.5f}, "
              f"with moves and sklearn's floor {floor:.5f}; sklearn {theirs:.5f} "
              f"({scored:.5f} in this model); errors {row['ours_error']:.6f}, "
              f"{row['ours_error_split_merge']:.6f} with moves, sklearn "
              f"{row['sklearn_error']:.6f}", flush=True)
    return {"name": name, "source": source, "pixels": len(pixels),
            "distinct_colours": len(colours), "rows": rows}


# -------------------------------------------------------------------- tables

def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def image_table(entry) -> str:
    head = (f"{'K':>4} {'rows ours/skl':>15} {'us/row ours':>11} {'skl':>7} {'ms/it ours':>10} "
            f"{'skl':>8} {'x':>5} {'it acc':>6} {'plain':>5} {'s ours':>7} {'skl':>7} "
            f"{'ll/px ours':>10} {'skl':>8} {'MiB':>5} {'(N,K)':>6}")
    lines = [head]
    for r in entry["rows"]:
        lines.append(
            f"{r['k']:>4} {r['sklearn_rows'] / r['ours_rows']:>15.1f} "
            f"{r['ours_us_per_row']:>11.3f} {r['sklearn_us_per_row']:>7.3f} "
            f"{r['ours_ms_per_iter']:>10.1f} {r['sklearn_ms_per_iter']:>8.0f} "
            f"{r['sklearn_ms_per_iter'] / r['ours_ms_per_iter']:>5.0f} "
            f"{r['ours_iterations']:>6} {r['ours_iterations_plain']:>5} "
            f"{r['ours_seconds']:>7.2f} {fmt(r['sklearn_seconds'], '.2f'):>7} "
            f"{r['ours_ll_per_pixel']:>10.4f} {fmt(r['sklearn_ll_per_pixel'], '.4f'):>8} "
            f"{r['ours_peak_mib']:>5.0f} {r['pixels_x_k_mib']:>6.0f}")
    rows = entry["rows"]
    lines.append(f"sum of iterations: accelerated {sum(r['ours_iterations'] for r in rows)}, "
                 f"plain {sum(r['ours_iterations_plain'] for r in rows)}; sweep "
                 f"{sum(r['ours_seconds'] for r in rows):.2f} s accelerated, "
                 f"{sum(r['ours_seconds_plain'] for r in rows):.2f} s plain")
    return "\n".join(lines)


def kernel_version() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD") or None,
            "em_modified": bool(git("status", "--porcelain", "--", "src/em"))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="K in 2, 16; the default image and two photographs")
    parser.add_argument("--sklearn-max-k", type=int, default=8,
                        help="largest K at which scikit-learn runs to convergence "
                             "(default 8; 128, all, takes hours)")
    parser.add_argument("--photo-ks", default=None,
                        help="K values of the photograph comparison (default: 4, 8, 16, 32; "
                             "--quick: 2, 16)")
    parser.add_argument("--part", choices=("all", "images", "photos"), default="all",
                        help="run only the images or the photographs and replace that "
                             "part of an existing output file (to run them in parallel)")
    parser.add_argument("--output", help="the JSON file (default: report/data/bench.json; "
                                         "--quick: output/bench/bench-quick.json)")
    args = parser.parse_args(argv)
    ks = (2, 16) if args.quick else KS
    photo_ks = ([int(k) for k in args.photo_ks.replace(",", " ").split()] if args.photo_ks
                else list(ks) if args.quick else list(PHOTO_KS))
    n_iter = 2 if args.quick else 5

    info = machine.describe()
    print(json.dumps({key: info.get(key) for key in ("cpu", "cores", "cores_available",
                                                     "numpy", "blas")}))
    out = Path(args.output or (OUTPUT_QUICK if args.quick else OUTPUT))
    report = {"quick": args.quick, "machine": info, "kernel": kernel_version(),
              "settings": {"report": REPORT_SETTINGS, "per_iteration_iterations": n_iter,
                           "rounds": ROUNDS, "sklearn_max_k": args.sklearn_max_k,
                           "photo_ks": photo_ks, "photo_moves": SPLIT_MERGE}}
    if args.part != "photos":
        report["images"] = bench_images(args, ks, n_iter)
    if args.part != "images":
        report["photos"] = bench_photos(args, photo_ks)
    if args.part != "all" and out.exists():
        # this part, the machine and kernel it ran on and its settings replace the old ones
        old = json.loads(out.read_text())
        mine = ("per_iteration_iterations", "rounds", "sklearn_max_k") if args.part == "images" \
            else ("photo_ks", "photo_moves")
        settings = old.get("settings", {}) | {key: report["settings"][key]
                                              for key in ("report",) + mine}
        report = old | {key: report[key] for key in (args.part, "machine", "kernel")} \
            | {"settings": settings}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, report)
    print(f"\nWrote {out}")
    return 0


def bench_images(args, ks, n_iter) -> dict:
    images = {}
    if REFERENCE.exists() and not args.quick:
        images["im"] = bench_image("im.jpg (the study's photograph)",
                                   load_rgb(REFERENCE.resolve()), ks, n_iter, args.sklearn_max_k)
    stem = default_image().stem
    images[stem] = bench_image(default_image().name, load_rgb(default_image()), ks, n_iter,
                               args.sklearn_max_k)
    for entry in images.values():
        print(f"\n{entry['name']}: rows x = pixels / distinct colours; x = sklearn ms/it "
              f"over ours (plain EM both, same start, median of {ROUNDS} alternating runs)")
        print(image_table(entry))
    return images


def bench_photos(args, photo_ks) -> list:
    print("\nLog-likelihood per pixel, ours (make report's settings) against "
          "GaussianMixture(spherical, n_init=3) on all pixels:")
    chosen = photographs()[:3] if args.quick else photographs()
    photos = [bench_photo(name, source, rgb, photo_ks) for name, source, rgb in chosen]
    for key, what in (("difference", "make report's settings"),
                      ("difference_in_ours", "make report's settings, sklearn's fit in this "
                                             "model"),
                      ("difference_split_merge", "with split-and-merge moves"),
                      ("difference_split_merge_in_ours", "with the moves, sklearn's fit in "
                                                         "this model"),
                      ("difference_sklearn_floor", "with the moves and sklearn's floor")):
        values = [r[key] for p in photos for r in p["rows"]]
        print(f"ours - sklearn over {len(photos)} photographs, {what}: smallest "
              f"{min(values):+.5f}, at or above in {sum(v >= 0 for v in values)} of {len(values)}")
    return photos


if __name__ == "__main__":
    sys.exit(main())
