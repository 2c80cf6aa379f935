"""Speed and memory of the EM kernel (src/em.py), side by side with scikit-learn.

Run from the repository root:

    .venv/bin/python benchmarks/bench_em.py           # full run, a few minutes (make bench)
    .venv/bin/python benchmarks/bench_em.py --quick   # a subset, under a minute (make bench-quick)

What is measured
----------------
Image: ../shared/reference/im.jpg (relative to the repository root) when it exists,
else the project's default image (matplotlib's grace_hopper.jpg). Colours are scaled
to [0, 1] in float64.

* "ours" fits the distinct colours of the image weighted by their pixel counts (how
  the project fits; exactly the fit on all pixels); "sklearn" is
  sklearn.mixture.GaussianMixture(covariance_type="spherical") fitted on all pixels
  (what a user would do).
* Per iteration (ms/it): both sides start from the same explicit parameters (a
  weighted k-means++ start of the kernel, seed 0; for scikit-learn means_init,
  weights_init, precisions_init = 1/variances, init_params="random_from_data" so that
  no k-means runs) and run a fixed number of iterations with no stopping
  (ours: tol=1e-300; sklearn: tol=0). One iteration is one E-step plus one M-step on
  both sides. To exclude set-up and the initial/final E-step, each side is timed with
  max_iter = 1 + N and max_iter = 1 and the difference is divided by N:
  ms/it = (min t(1 + N) - min t(1)) / N, minima over a few repeats.
  The first call of each side is a warm-up and is not timed. "ours32" is the same
  with the colours passed as float32 (E-step in float32, sums in float64).
  speedup = sklearn ms/it / ours ms/it (float64 against float64).
* To convergence, each K in a fresh subprocess (so that the peak resident
  memory belongs to that one fit):
    ours:    em.fit(colours, K, sample_weight=counts) with the kernel's defaults
             (kmeans++ start, n_init, tol, max_iter of em.fit); time of em.fit
             including its initialisation; iterations; mean_log_likelihood.
    sklearn: GaussianMixture(n_components=K, covariance_type="spherical",
             random_state=0).fit(pixels) with scikit-learn's defaults (k-means start,
             tol=1e-3, max_iter=100); time of fit; n_iter_, converged_;
             score(pixels) = mean log-likelihood per pixel.
  Both log-likelihoods are densities of colours in [0, 1]^3 per pixel, so they
  compare directly. The sweep is the sum over K of the time of ours.
  Peak memory (MiB) is the peak RSS of the subprocess, which includes the
  interpreter, the imports and the image; *_base_mib is the peak just before the
  fit started. The peak is VmHWM of /proc/self/status (ru_maxrss, its fallback,
  survives execve on Linux and would include the parent's peak).
* Memory case: a photograph-like image of ~24 megapixels (the default image upscaled
  with Pillow, bicubic, to 4000 x 6000, plus Gaussian noise of sd 3 grey levels per
  channel from numpy.random.default_rng(0), so that it has millions of colours),
  written uncompressed to a temporary file; then in a fresh subprocess:
  load_rgb -> distinct_colours -> em.fit(K=128, max_iter=5, other defaults).
  Reports peak RSS of that subprocess and the time of each stage. (--quick: 2000 x
  3000 = 6 megapixels and max_iter=2.)

Targets of the issue, checked at the end: speedup >= 100 at K=128 on im.jpg; the
sweep under 15 s; the 24 MP case under 1 GiB; ours_ll_per_pixel >= sklearn's at
every K.

JSON (output/bench/bench.json, written atomically; --quick writes bench-quick.json)
---------------------------------------------------
{
  "quick": bool,
  "machine": {cpu, cores, cores_available, memory_gib, python, platform, numpy,
              sklearn, blas: [threadpoolctl info], load_average_start,
              load_average_end},
  "kernel": {commit, em_py_modified},     the src/em.py that was measured
  "image": {name, path, height, width, pixels, distinct_colours},
  "method": {per_iteration_iterations, ...: text describing every measurement},
  "rows": [ {                               one per K, ascending
      "k": int,
      "ours_ms_per_iter": float,            ms per EM iteration, float64, distinct colours
      "ours32_ms_per_iter": float,          same with float32 colours
      "sklearn_ms_per_iter": float,         ms per iteration, scikit-learn, all pixels
      "speedup": float,                     sklearn_ms_per_iter / ours_ms_per_iter
      "speedup32": float,                   sklearn_ms_per_iter / ours32_ms_per_iter
      "ours_iterations": int|null,          em.fit defaults: iterations run
      "ours_converged": bool|null,
      "ours_seconds": float|null,           em.fit defaults: wall time (s)
      "ours_ll_per_pixel": float|null,      result.mean_log_likelihood
      "sklearn_iterations": int|null,       GaussianMixture defaults: n_iter_
      "sklearn_converged": bool|null,       converged_
      "sklearn_seconds": float|null,        fit wall time (s)
      "sklearn_ll_per_pixel": float|null,   gm.score(all pixels)
      "ours_peak_mib": float|null,          peak RSS of the ours subprocess (MiB)
      "ours_base_mib": float|null,          peak RSS before em.fit was called
      "sklearn_peak_mib": float|null,       peak RSS of the sklearn subprocess (MiB)
      "sklearn_base_mib": float|null } ],   peak RSS before fit was called
  (null: not run, e.g. the convergence runs at large K in --quick mode)
  "sweep_seconds": float,                   sum of ours_seconds over the K that ran
  "sweep_ks": [int],                        the K summed in sweep_seconds
  "memory_case": {megapixels, height, width, distinct_colours, k, iterations,
                  seconds (em.fit), load_seconds, distinct_seconds,
                  peak_mib, after_load_mib, after_distinct_mib,
                  pixels_x_k_float64_gib (what an (pixels, K) array would take)},
  "targets": [{name, target, value, met (true/false; null = not checked in --quick)}]
}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import em
from pipeline.atomic import write_text_atomic
from pipeline.images import distinct_colours, load_rgb
from pipeline.paths import ROOT, default_image

REFERENCE = ROOT / ".." / "shared" / "reference" / "im.jpg"
OUTPUT = ROOT / "output" / "bench" / "bench.json"  # the report shows this one
OUTPUT_QUICK = ROOT / "output" / "bench" / "bench-quick.json"  # --quick: never shown

FULL_KS = (2, 4, 8, 16, 32, 64, 128)
QUICK_KS = (2, 16, 128)
MIB = 1024.0 * 1024.0


# ----------------------------------------------------------------------- helpers

def image_path() -> Path:
    return REFERENCE.resolve() if REFERENCE.exists() else default_image()


def load_data(path):
    """colours (M, 3) float64 in [0, 1], counts (M,) float64, pixels (H*W, 3) float64."""
    rgb = load_rgb(path)
    colours, counts, _ = distinct_colours(rgb)
    return rgb, colours / 255.0, counts.astype(np.float64)


def peak_mib() -> float:
    """Peak resident memory of this process image so far, in MiB.

    VmHWM of /proc/self/status: the high-water mark of this process's own address
    space, which starts afresh at execve. getrusage(RUSAGE_SELF).ru_maxrss is the
    fallback only: on Linux it survives fork and execve, so a fresh subprocess
    started from a large parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def quiet():
    """Silence the convergence warnings of fixed-iteration runs (both libraries)."""
    warnings.simplefilter("ignore")


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal"))
        memory_gib = round(mem_kib / MIB, 1)
    except (OSError, StopIteration):
        memory_gib = None
    import sklearn
    try:
        import threadpoolctl
        blas = [{key: info.get(key) for key in ("internal_api", "version", "num_threads",
                                                  "threading_layer", "architecture")}
                for info in threadpoolctl.threadpool_info()]
    except Exception:  # noqa: BLE001 - informational only
        blas = []
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "blas": blas,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def kernel_version() -> dict:
    """The commit of the repository and whether src/em.py differs from it."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD") or None,
            "em_py_modified": bool(git("status", "--porcelain", "--", "src/em.py"))}


def kernel_start(colours, counts, k):
    """The explicit start shared by both sides of the per-iteration comparison."""
    return em.init_kmeans_plus_plus(colours, counts, k, np.random.default_rng(0))


# ------------------------------------------------------------ per-iteration timing

def time_ours(colours, counts, start, max_iter):
    t = time.perf_counter()
    result = em.fit(colours, start.k, sample_weight=counts, init=start, max_iter=max_iter, tol=1e-300)
    elapsed = time.perf_counter() - t
    assert result.n_iter == max_iter, (result.n_iter, max_iter)
    return elapsed


def time_sklearn(pixels, start, max_iter):
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(n_components=start.k, covariance_type="spherical", tol=0.0,
                         max_iter=max_iter, n_init=1, init_params="random_from_data",
                         weights_init=start.weights, means_init=start.means,
                         precisions_init=1.0 / start.variances, random_state=0)
    t = time.perf_counter()
    gm.fit(pixels)
    elapsed = time.perf_counter() - t
    assert gm.n_iter_ == max_iter, (gm.n_iter_, max_iter)
    return elapsed


def per_iteration_ms(timer, n_iter, repeats, budget_s):
    """(min t(1 + n_iter) - min t(1)) / n_iter in ms, the minima over repeats (the
    least disturbed run of each length). Stops repeating once budget_s seconds have
    been spent (at least one repeat)."""
    long_best, short_best, spent = float("inf"), float("inf"), 0.0
    for _ in range(repeats):
        long_run = timer(1 + n_iter)
        short_run = timer(1)
        long_best, short_best = min(long_best, long_run), min(short_best, short_run)
        spent += long_run + short_run
        if spent > budget_s:
            break
    return (long_best - short_best) / n_iter * 1e3


# ------------------------------------------------------- cases in fresh subprocesses

def run_case(spec: dict) -> dict:
    """Run this script with --_case spec in a fresh interpreter; return its JSON."""
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_case",
                           json.dumps(spec)], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"case {spec} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def case_ours(spec):
    _, colours, counts = load_data(spec["image"])
    base = peak_mib()
    quiet()
    t = time.perf_counter()
    result = em.fit(colours, spec["k"], sample_weight=counts)
    seconds = time.perf_counter() - t
    return {"iterations": result.n_iter, "converged": bool(result.converged),
            "seconds": seconds, "ll_per_pixel": result.mean_log_likelihood,
            "peak_mib": peak_mib(), "base_mib": base}


def case_sklearn(spec):
    from sklearn.mixture import GaussianMixture

    rgb = load_rgb(spec["image"])
    pixels = rgb.reshape(-1, 3) / 255.0
    del rgb
    base = peak_mib()
    quiet()
    kwargs = {} if spec.get("max_iter") is None else {"max_iter": spec["max_iter"]}
    gm = GaussianMixture(n_components=spec["k"], covariance_type="spherical",
                         random_state=0, **kwargs)
    t = time.perf_counter()
    gm.fit(pixels)
    seconds = time.perf_counter() - t
    return {"iterations": int(gm.n_iter_), "converged": bool(gm.converged_),
            "seconds": seconds, "ll_per_pixel": float(gm.score(pixels)),
            "peak_mib": peak_mib(), "base_mib": base}


def case_memory(spec):
    quiet()
    t0 = time.perf_counter()
    rgb = load_rgb(spec["image"])
    t1 = time.perf_counter()
    after_load = peak_mib()
    height, width = rgb.shape[:2]
    colours, counts, inverse = distinct_colours(rgb)
    del rgb, inverse
    X = colours / 255.0
    w = counts.astype(np.float64)
    del colours, counts
    t2 = time.perf_counter()
    after_distinct = peak_mib()
    result = em.fit(X, spec["k"], sample_weight=w, max_iter=spec["max_iter"])
    t3 = time.perf_counter()
    return {"height": height, "width": width, "megapixels": height * width / 1e6,
            "distinct_colours": int(len(X)), "k": spec["k"], "iterations": result.n_iter,
            "seconds": t3 - t2, "load_seconds": t1 - t0, "distinct_seconds": t2 - t1,
            "peak_mib": peak_mib(), "after_load_mib": after_load,
            "after_distinct_mib": after_distinct}


CASES = {"ours": case_ours, "sklearn": case_sklearn, "memory": case_memory}


def make_large_image(path: Path, width: int, height: int, noise_sd: float = 3.0) -> None:
    """The default image upscaled (bicubic) to width x height plus Gaussian noise,
    deterministic (default_rng(0)), saved as an uncompressed PPM."""
    from PIL import Image

    with Image.open(default_image()) as im:
        big = np.asarray(im.convert("RGB").resize((width, height), Image.Resampling.BICUBIC))
    out = np.empty_like(big)
    rng = np.random.default_rng(0)
    for start in range(0, height, 256):  # in bands, to keep the float arrays small
        band = big[start:start + 256].astype(np.float32)
        band += rng.normal(0.0, noise_sd, size=band.shape).astype(np.float32)
        out[start:start + 256] = np.clip(np.rint(band), 0, 255).astype(np.uint8)
    Image.fromarray(out).save(path, format="PPM")


# -------------------------------------------------------------------------- report

def fmt(value, spec, width):
    text = "-" if value is None else format(value, spec)
    return text.rjust(width)


COLUMNS = [  # (header, key, format, width)
    ("K", "k", "d", 4),
    ("ours ms/it", "ours_ms_per_iter", ".2f", 11),
    ("ours32 ms/it", "ours32_ms_per_iter", ".2f", 13),
    ("sklearn ms/it", "sklearn_ms_per_iter", ".1f", 14),
    ("speedup", "speedup", ".1f", 8),
    ("ours it", "ours_iterations", "d", 8),
    ("ours s", "ours_seconds", ".2f", 8),
    ("ours ll/px", "ours_ll_per_pixel", ".4f", 11),
    ("skl it", "sklearn_iterations", "d", 7),
    ("skl conv", "sklearn_converged", "", 9),
    ("skl s", "sklearn_seconds", ".2f", 8),
    ("skl ll/px", "sklearn_ll_per_pixel", ".4f", 10),
    ("ours MiB", "ours_peak_mib", ".0f", 9),
    ("(base)", "ours_base_mib", ".0f", 6),
    ("skl MiB", "sklearn_peak_mib", ".0f", 8),
    ("(base)", "sklearn_base_mib", ".0f", 6),
]


def table(rows) -> str:
    lines = [" ".join(h.rjust(w) for h, _, _, w in COLUMNS)]
    for row in rows:
        cells = []
        for _, key, spec, width in COLUMNS:
            value = row.get(key)
            if isinstance(value, bool):
                value, spec = ("yes" if value else "no"), "s"
            cells.append(fmt(value, spec, width))
        lines.append(" ".join(cells))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="K in 2, 16, 128, 2 iterations per timing; convergence runs for "
                             "K <= 16 only; 6 MP memory case with 2 iterations")
    parser.add_argument("--sklearn-max-iter", type=int, default=None,
                        help="cap scikit-learn's max_iter in the defaults run (default: its own, 100)")
    parser.add_argument("--output", help=f"the JSON file (default: {OUTPUT.name}, "
                                         f"with --quick {OUTPUT_QUICK.name}, under output/bench/)")
    parser.add_argument("--_case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._case:
        spec = json.loads(args._case)
        print(json.dumps(CASES[spec["case"]](spec)))
        return 0

    quick = args.quick
    ks = QUICK_KS if quick else FULL_KS
    converge_ks = [k for k in ks if k <= 16] if quick else list(ks)
    n_iter = 2 if quick else 5
    mem_width, mem_height = (2000, 3000) if quick else (4000, 6000)

    machine = machine_info()
    kernel = kernel_version()
    path = image_path()
    rgb, colours, counts = load_data(path)
    pixels = rgb.reshape(-1, 3) / 255.0
    image = {"name": path.name, "path": str(path), "height": int(rgb.shape[0]),
             "width": int(rgb.shape[1]), "pixels": int(pixels.shape[0]),
             "distinct_colours": int(len(colours))}
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['num_threads']} threads, "
                     f"{b['architecture']})" for b in machine["blas"]) or "unknown"
    print(f"Machine: {machine['cpu']}, {machine['cores']} cores "
          f"({machine['cores_available']} available), {machine['memory_gib']} GiB; "
          f"Python {machine['python']}, numpy {machine['numpy']}, "
          f"scikit-learn {machine['sklearn']}; BLAS {blas}")
    print(f"Load average at start: {machine['load_average_start']}; kernel: commit "
          f"{(kernel['commit'] or 'unknown')[:10]}"
          f"{' + uncommitted changes to src/em.py' if kernel['em_py_modified'] else ''}")
    print(f"Image: {image['name']} {image['width']} x {image['height']} = "
          f"{image['pixels']:,} pixels, {image['distinct_colours']:,} distinct colours"
          + ("  [--quick]" if quick else ""))
    print(f"Per iteration: same explicit start (kernel k-means++, seed 0) on both sides, "
          f"ms/it = (min t(1+{n_iter}) - min t(1)) / {n_iter}, minima over repeats, after a warm-up; "
          f"ours on distinct colours weighted by counts, sklearn on all pixels.")
    print("To convergence: each side with its defaults in a fresh subprocess "
          "(em.fit(colours, K, sample_weight=counts); GaussianMixture(K, 'spherical', "
          f"random_state=0{'' if args.sklearn_max_iter is None else f', max_iter={args.sklearn_max_iter}'})"
          ".fit(pixels)); peak MiB = that subprocess's peak RSS.\n", flush=True)

    # warm-up: one untimed call of each side
    quiet()
    warm = kernel_start(colours, counts, 2)
    time_ours(colours, counts, warm, 2)
    time_ours(colours.astype(np.float32), counts, warm, 2)
    time_sklearn(pixels, warm, 2)

    rows = []
    colours32 = colours.astype(np.float32)
    for k in ks:
        start = kernel_start(colours, counts, k)
        ours = per_iteration_ms(lambda m: time_ours(colours, counts, start, m), n_iter, 7, 10.0)
        ours32 = per_iteration_ms(lambda m: time_ours(colours32, counts, start, m), n_iter, 7, 10.0)
        theirs = per_iteration_ms(lambda m: time_sklearn(pixels, start, m), n_iter, 3, 5.0)
        row = {"k": k, "ours_ms_per_iter": ours, "ours32_ms_per_iter": ours32,
               "sklearn_ms_per_iter": theirs, "speedup": theirs / ours,
               "speedup32": theirs / ours32}
        for key in ("ours_iterations", "ours_converged", "ours_seconds", "ours_ll_per_pixel",
                    "sklearn_iterations", "sklearn_converged", "sklearn_seconds",
                    "sklearn_ll_per_pixel", "ours_peak_mib", "ours_base_mib",
                    "sklearn_peak_mib", "sklearn_base_mib"):
            row[key] = None
        if k in converge_ks:
            for side, spec in (("ours", {"case": "ours", "image": str(path), "k": k}),
                               ("sklearn", {"case": "sklearn", "image": str(path), "k": k,
                                            "max_iter": args.sklearn_max_iter})):
                result = run_case(spec)
                for key in ("iterations", "converged", "seconds", "ll_per_pixel"):
                    row[f"{side}_{key}"] = result[key]
                row[f"{side}_peak_mib"] = result["peak_mib"]
                row[f"{side}_base_mib"] = result["base_mib"]
        rows.append(row)
        print(f"  K={k}: ours {ours:.2f} ms/it, float32 {ours32:.2f}, sklearn {theirs:.1f} "
              f"(x{theirs / ours:.0f}); defaults: ours {row['ours_seconds']} s, "
              f"sklearn {row['sklearn_seconds']} s", flush=True)

    sweep_ks = [r["k"] for r in rows if r["ours_seconds"] is not None]
    sweep = sum(r["ours_seconds"] for r in rows if r["ours_seconds"] is not None)

    with tempfile.TemporaryDirectory(prefix="bench_em_") as tmp:
        big = Path(tmp) / "large.ppm"
        make_large_image(big, mem_width, mem_height)
        memory = run_case({"case": "memory", "image": str(big), "k": 128,
                           "max_iter": 2 if quick else 5})
    memory["pixels_x_k_float64_gib"] = memory["megapixels"] * 1e6 * memory["k"] * 8 / 1024 ** 3
    memory["image"] = (f"default image upscaled (bicubic) to {mem_width} x {mem_height} "
                       f"+ N(0, 3^2) noise per channel, default_rng(0)")

    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]

    print()
    print(table(rows))
    print(f"\nspeedup = sklearn ms/it / ours ms/it (float64); ll/px = mean log-likelihood per pixel; "
          f"MiB = peak RSS of the fit's subprocess, (base) = its peak before the fit; "
          f"'-' = not run{' (--quick: convergence runs only for K <= 16)' if quick else ''}.")
    print(f"Sweep (sum of ours s over K = {sweep_ks}): {sweep:.2f} s")
    print(f"Memory case ({memory['image']}{'; --quick: 6 MP instead of 24 MP' if quick else ''}): "
          f"{memory['megapixels']:.1f} MP, {memory['distinct_colours']:,} distinct colours, "
          f"K={memory['k']}, {memory['iterations']} iterations in {memory['seconds']:.2f} s "
          f"(load {memory['load_seconds']:.2f} s, distinct colours {memory['distinct_seconds']:.2f} s); "
          f"peak RSS {memory['peak_mib']:.0f} MiB (after load {memory['after_load_mib']:.0f}, "
          f"after distinct colours {memory['after_distinct_mib']:.0f}); "
          f"a (pixels, K) float64 array alone would be {memory['pixels_x_k_float64_gib']:.1f} GiB")
    print(f"Load average at end: {machine['load_average_end']}")

    targets = []
    k128 = next((r for r in rows if r["k"] == 128), None)
    if k128 is not None:
        targets.append({"name": f"per-iteration speedup vs sklearn at K=128 ({image['name']})",
                        "target": ">= 100", "value": round(k128["speedup"], 1),
                        "met": bool(k128["speedup"] >= 100)})
    targets.append({"name": f"sweep (K = {sweep_ks}) with em.fit defaults",
                    "target": "< 15 s", "value": round(sweep, 2),
                    "met": None if quick else bool(sweep < 15)})
    targets.append({"name": f"peak RSS, {memory['megapixels']:.0f} MP image at K=128",
                    "target": "< 1024 MiB", "value": round(memory["peak_mib"]),
                    "met": None if quick else bool(memory["peak_mib"] < 1024)})
    compared = [r for r in rows if r["ours_ll_per_pixel"] is not None
                and r["sklearn_ll_per_pixel"] is not None]
    worst = min((r["ours_ll_per_pixel"] - r["sklearn_ll_per_pixel"] for r in compared),
                default=None)
    targets.append({"name": f"min over K = {[r['k'] for r in compared]} of "
                            "ours_ll_per_pixel - sklearn_ll_per_pixel",
                    "target": ">= 0", "value": None if worst is None else round(worst, 5),
                    "met": None if worst is None else bool(worst >= 0)})
    print("\nTargets of the issue (null = not checked in --quick):")
    for t in targets:
        verdict = {True: "met", False: "MISSED", None: "not checked (--quick)"}[t["met"]]
        print(f"  {t['name']}: {t['value']} (target {t['target']}): {verdict}")

    report = {
        "quick": quick, "machine": machine, "kernel": kernel, "image": image,
        "method": {
            "per_iteration_iterations": n_iter,
            "per_iteration": f"same explicit start on both sides (em.init_kmeans_plus_plus, "
                             f"seed 0); ms/it = (min t(max_iter=1+{n_iter}) - min t(max_iter=1)) / "
                             f"{n_iter}, minima over repeats, after a warm-up; ours: em.fit on "
                             f"distinct colours with counts, tol=1e-300; sklearn: "
                             f"GaussianMixture(spherical, tol=0, init_params='random_from_data', "
                             f"weights_init/means_init/precisions_init) on all pixels",
            "convergence": "each side with its defaults in a fresh subprocess; time of the "
                           "fit call including initialisation",
            "sklearn_max_iter": args.sklearn_max_iter,
            "memory": "peak RSS (VmHWM) of a fresh subprocess per case",
        },
        "rows": rows, "sweep_seconds": sweep, "sweep_ks": sweep_ks,
        "memory_case": memory, "targets": targets,
    }
    out = Path(args.output or (OUTPUT_QUICK if args.quick else OUTPUT))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(report, indent=1) + "\n")
    print(f"\nWrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
