"""Where EM ends when it is run to the end: plain EM from several starts to a tight
tolerance, printing each fixed point's log-likelihood per pixel and reconstruction error.

    .venv/bin/python benchmarks/fixed_point.py ../shared/reference/im.jpg 4

The error is printed beside the study's published one (pipeline.study.published()) when
K is in its table. Starts of each kind: k-means++ (one restart) and the study's random
start, seeds 0 to --seeds - 1.
"""

from __future__ import annotations

import argparse
import sys

import em
from pipeline import experiment, images, paths, study


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("image")
    parser.add_argument("k", type=int)
    parser.add_argument("--tol", type=float, default=1e-10, help="per pixel (default 1e-10)")
    parser.add_argument("--seeds", type=int, default=3, help="starts of each kind (default 3)")
    args = parser.parse_args(argv)
    colours8, counts, _ = images.distinct_colours(images.load_rgb(paths.image_path(args.image)))
    colours, counts = colours8 / 255.0, counts.astype(float)
    published = {row["k"]: row["error"] for row in study.published()}
    print(f"K = {args.k}, plain EM to tol {args.tol:g} per pixel"
          + (f"; published error {published[args.k]:.6f}" if args.k in published else ""))
    for init in ("kmeans++", "random"):
        for seed in range(args.seeds):
            result = em.fit(colours, args.k, sample_weight=counts, init=init, seed=seed,
                            tol=args.tol, max_iter=100_000, accelerate=False)
            labels = em.predict(result, colours)
            error = experiment.reconstruction_error(colours, counts, labels, result.means)
            print(f"  {init:>8} seed {seed}: {result.n_iter:>5} iterations, log-likelihood "
                  f"{result.mean_log_likelihood:.8f} per pixel, error {error:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
