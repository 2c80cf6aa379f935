"""The original study reproduced: its published table, and a sweep over K on its
photograph with several seeds and with its own random start, written as a small JSON
file of numbers that the report reads (`make study` writes report/data/study.json).
The same sweep on the report's own image gives the spread over seeds on its error
curve (`make seeds`, without the published table).

    python -m pipeline.study IMAGE OUT.json [--ks "2 4 8"] [--seeds 5] [--published]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

import em
from pipeline import atomic, defaults, experiment, images, paths, results

# The study's published results on its photograph (550 x 690 pixels): K, EM
# iterations, reconstruction error in its table, reconstruction error printed by its
# run. Its EM started from K random pixels, variances uniform in (0, 1) and equal
# weights, once, and stopped when the total log-likelihood changed by less than 1e-2.
PUBLISHED = (
    (2, 23, 0.048828, 0.048741),
    (4, 107, 0.016802, 0.016805),
    (8, 154, 0.007941, 0.006135),
    (16, 452, 0.003880, 0.003334),
    (32, 548, 0.001980, 0.002186),
    (64, 1693, 0.000932, 0.000834),
    (128, 2013, 0.000520, 0.000615),
)
PUBLISHED_TOL = 1e-2               # on the total log-likelihood


def published() -> list[dict]:
    """The published table as a list of {k, iterations, error, error_printed}."""
    return [{"k": k, "iterations": it, "error": e, "error_printed": p}
            for k, it, e, p in PUBLISHED]


def one_fit(colours: np.ndarray, counts: np.ndarray, k: int, *, seed: int, init: str,
            n_init: int, split_merge: int, tol: float, max_iter: int) -> dict:
    """One fit, summarised: error, iterations, seconds, log-likelihood per pixel."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", em.ConvergenceWarning)
        result = em.fit(colours, k, sample_weight=counts, init=init, n_init=n_init,
                        split_merge=split_merge, tol=tol, max_iter=max_iter, seed=seed)
    seconds = time.perf_counter() - start
    labels = em.predict(result, colours)
    return {"k": k, "error": experiment.reconstruction_error(colours, counts, labels,
                                                             result.means),
            "iterations": result.n_iter, "converged": bool(result.converged),
            "seconds": seconds, "ll_per_pixel": result.log_likelihood / counts.sum()}


def sweep(image, ks, *, seeds=range(5), n_init: int = defaults.N_INIT,
          split_merge: int = defaults.SPLIT_MERGE, tol: float = defaults.TOL,
          max_iter: int = defaults.MAX_ITER, with_published: bool = True, log=print) -> dict:
    """Every K with k-means++ starts for each seed, and one run from the study's
    random start (seed 0); the same settings as `make report` otherwise. With
    `with_published`, the study's published table too."""
    path = paths.image_path(str(image))
    rgb = images.load_rgb(path)
    colours8, counts, _ = images.distinct_colours(rgb)
    colours, counts = colours8 / 255.0, counts.astype(np.float64)
    runs = [("kmeans++", seed) for seed in seeds] + [("random", 0)]
    out = []
    for init, seed in runs:
        fits = []
        for k in ks:
            fits.append(one_fit(colours, counts, k, seed=seed, init=init, n_init=n_init,
                                split_merge=split_merge, tol=tol, max_iter=max_iter))
            log(f"{init} seed {seed} K = {k}: error {fits[-1]['error']:.6f}, "
                f"{fits[-1]['iterations']} iterations, {fits[-1]['seconds']:.1f} s")
        out.append({"init": init, "seed": seed, "fits": fits})
    height, width = rgb.shape[:2]
    data = {"image": {"name": path.name, "width": width, "height": height,
                      "distinct_colours": int(len(colours))},
            "settings": {"n_init": n_init, "split_merge": split_merge, "tol": tol,
                         "max_iter": max_iter},
            "runs": out}
    if with_published:
        data |= {"published": published(), "published_tol": PUBLISHED_TOL}
    return data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.study",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("image")
    parser.add_argument("output")
    parser.add_argument("--ks", default=" ".join(map(str, defaults.KS)))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n-init", type=int, default=defaults.N_INIT)
    parser.add_argument("--split-merge", type=int, default=defaults.SPLIT_MERGE)
    parser.add_argument("--tol", type=float, default=defaults.TOL)
    parser.add_argument("--max-iter", type=int, default=defaults.MAX_ITER)
    parser.add_argument("--published", action="store_true",
                        help="add the study's published table (the study's photograph)")
    args = parser.parse_args(argv)
    try:
        data = sweep(args.image, results.parse_ks(args.ks), seeds=range(args.seeds), n_init=args.n_init,
                     split_merge=args.split_merge, tol=args.tol, max_iter=args.max_iter,
                     with_published=args.published)
    except (images.ImageError, ValueError) as exc:
        print(f"study: {exc}", file=sys.stderr)
        return 1
    atomic.write_json(args.output, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
