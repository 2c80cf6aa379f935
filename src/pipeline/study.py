"""The original study reproduced: a sweep over K on its photograph with several seeds,
with its own random start, and under its own stopping rule, written as a small JSON
file of numbers that the report reads beside the study's published table (`make study`
writes report/data/study.json). The same sweep on the report's own image gives the
spread over seeds on its error curve and BIC past its largest K (`make seeds`).

The published table is typed once, in report/data/published.json (PUBLISHED_FILE);
the study's photograph is not part of the repository.

    python -m pipeline.study IMAGE OUT.json [--ks "2 4 8"] [--seeds 5] [--published]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np

import em
from pipeline import atomic, defaults, experiment, images, paths, results

PUBLISHED_FILE = paths.REPORT_DATA_DIR / "published.json"
STUDY_RULE_MAX_ITER = 10_000   # the study's rule run is allowed this many iterations
BIC_KS = (256,)                # the most colours a palette PNG holds: BIC fits past the sweep


def original(path=PUBLISHED_FILE) -> dict:
    """The study's published facts: image size, start, restarts, tolerance on the total
    log-likelihood (tol_total), the decimals of its table and its rows."""
    with open(path) as f:
        return json.load(f)


def published(path=PUBLISHED_FILE) -> list[dict]:
    """The published table as a list of {k, iterations, error, error_printed}."""
    return original(path)["rows"]


def restarts(colours, counts, k: int, *, seed: int, init: str, n_init: int, tol: float,
             max_iter: int, accelerate: bool = True) -> tuple[em.FitResult, list[int]]:
    """em.fit's restarts one at a time, so that each one's iterations are known: the
    starts drawn in em.fit's order from one generator, EM from each, the highest
    log-likelihood kept (the first of equals), as em.fit(n_init=...) does."""
    rng = np.random.default_rng(seed)
    draw = em.init_kmeans_plus_plus if init == "kmeans++" else em.init_random
    best, iterations = None, []
    for _ in range(n_init):
        start = draw(colours, counts, k, rng)
        result = em.fit(colours, k, sample_weight=counts, init=start, tol=tol,
                        max_iter=max_iter, accelerate=accelerate)
        iterations.append(result.n_iter)
        if best is None or result.log_likelihood > best.log_likelihood:
            best = result
    return best, iterations


def one_fit(colours: np.ndarray, counts: np.ndarray, k: int, *, seed: int, init: str,
            n_init: int, split_merge: int, tol: float, max_iter: int,
            accelerate: bool = True) -> dict:
    """One fit, summarised: error, iterations of the winning restart and of every
    restart (None with split-and-merge moves, which em.fit runs after its restarts),
    seconds of all restarts, log-likelihood per pixel, the last gain (total), BIC."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", em.ConvergenceWarning)
        if split_merge:
            result = em.fit(colours, k, sample_weight=counts, init=init, n_init=n_init,
                            split_merge=split_merge, tol=tol, max_iter=max_iter, seed=seed,
                            accelerate=accelerate)
            every = None
        else:
            result, every = restarts(colours, counts, k, seed=seed, init=init, n_init=n_init,
                                     tol=tol, max_iter=max_iter, accelerate=accelerate)
    seconds = time.perf_counter() - start
    labels = em.predict(result, colours)
    return {"k": k, "error": experiment.reconstruction_error(colours, counts, labels,
                                                             result.means),
            "iterations": result.n_iter,
            "iterations_all": None if every is None else int(sum(every)),
            "converged": bool(result.converged), "seconds": seconds,
            "ll_per_pixel": result.log_likelihood / counts.sum(),
            "last_gain": float(result.history[-1] - result.history[-2])
            if len(result.history) > 1 else None,
            "bic": em.bic(result, colours, sample_weight=counts)}


def sweep(image, ks, *, seeds=range(5), n_init: int = defaults.N_INIT,
          split_merge: int = defaults.SPLIT_MERGE, tol: float = defaults.TOL,
          max_iter: int = defaults.MAX_ITER, with_published: bool = True, larger_ks=(),
          log=print) -> dict:
    """Every K with k-means++ starts for each seed, and one run from the study's
    random start (seed 0); the same settings as `make report` otherwise. With
    `with_published` (the study's photograph), also one run per K under the study's
    own rule (study_rule). `larger_ks`: K past the sweep fitted once (seed 0) for BIC."""
    path = paths.image_path(str(image))
    rgb = images.load_rgb(path)
    colours8, counts, _ = images.distinct_colours(rgb)
    colours, counts = colours8 / 255.0, counts.astype(np.float64)
    settings = dict(n_init=n_init, split_merge=split_merge, tol=tol, max_iter=max_iter)

    def fits(ks, label, **kw):
        out = []
        for k in ks:
            out.append(one_fit(colours, counts, k, **kw))
            log(f"{label} K = {k}: error {out[-1]['error']:.6f}, "
                f"{out[-1]['iterations']} iterations, {out[-1]['seconds']:.1f} s")
        return out

    runs = [{"init": init, "seed": seed,
             "fits": fits(ks, f"{init} seed {seed}", init=init, seed=seed, **settings)}
            for init, seed in [("kmeans++", seed) for seed in seeds] + [("random", 0)]]
    height, width = rgb.shape[:2]
    data = {"image": {"name": path.name, "width": width, "height": height,
                      "pixels": width * height, "distinct_colours": int(len(colours))},
            "settings": settings, "runs": runs}
    larger_ks = past_sweep(ks, larger_ks, len(colours))
    if larger_ks:
        data["larger_k"] = fits(larger_ks, "kmeans++ seed 0", init=defaults.INIT, seed=0,
                                **settings)
    if with_published:
        data["study_rule"] = study_rule(colours, counts, ks, log=log)
    return data


def past_sweep(ks, larger_ks, distinct_colours: int) -> list[int]:
    """Of larger_ks, the K that a sweep over ks fits once more (for BIC): past its
    largest K and at most the image's number of distinct colours."""
    return [k for k in larger_ks if max(ks) < k <= distinct_colours]


def study_rule(colours, counts, ks, log=print) -> dict:
    """One run per K under the study's own rule: its random start (seed 0), once, plain
    EM without acceleration or moves, stopping when the total log-likelihood gains less
    than the published tol_total (em.fit's tol is per pixel: divided by the pixels)."""
    study = original()
    settings = dict(init="random", seed=0, n_init=study["restarts"], split_merge=0,
                    tol=study["tol_total"] / float(np.sum(counts)),
                    max_iter=STUDY_RULE_MAX_ITER, accelerate=False)
    fits = []
    for k in ks:
        fits.append(one_fit(colours, counts, k, **settings))
        log(f"study's rule K = {k}: error {fits[-1]['error']:.6f}, "
            f"{fits[-1]['iterations']} iterations, converged {fits[-1]['converged']}")
    return {"settings": settings, "fits": fits}


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
                        help="the study's photograph: add runs under the study's own rule")
    args = parser.parse_args(argv)
    try:
        ks = results.parse_ks(args.ks)
        data = sweep(args.image, ks, seeds=range(args.seeds), n_init=args.n_init,
                     split_merge=args.split_merge, tol=args.tol, max_iter=args.max_iter,
                     with_published=args.published,
                     larger_ks=() if args.published else BIC_KS)
    except (images.ImageError, ValueError) as exc:
        print(f"study: {exc}", file=sys.stderr)
        return 1
    atomic.write_json(args.output, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
