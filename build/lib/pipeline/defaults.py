"""The settings of `make report`, written once. The Makefile reads them
(`python src/pipeline/defaults.py` prints NAME=VALUE words), and so do the parameter
checks, the study's sweep and the explorer. Standard library only."""

KS = (2, 4, 8, 16, 32, 64, 128)
SEED = 0
INIT = "kmeans++"   # or "random": the original study's start
N_INIT = 3          # restarts; the best log-likelihood wins
SPLIT_MERGE = 0     # then split-and-merge moves, this many best-ranked tried per round (0: none)
TOL = 1e-4          # stop when the log-likelihood gain per pixel falls below this
MAX_ITER = 2000

if __name__ == "__main__":
    print(" ".join(f"{name}={','.join(map(str, value)) if isinstance(value, tuple) else value}"
                   for name, value in (("KS", KS), ("SEED", SEED), ("INIT", INIT),
                                       ("N_INIT", N_INIT), ("SPLIT_MERGE", SPLIT_MERGE),
                                       ("TOL", TOL), ("MAX_ITER", MAX_ITER))))
