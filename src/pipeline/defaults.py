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

if __name__ == "__main__":  # NAME=VALUE, each number as written above (1e-4), a tuple's joined by commas
    import ast

    source = open(__file__, encoding="utf-8").read()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Constant, ast.Tuple)):
            items = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            print(f"{node.targets[0].id}=" + ",".join(
                item.value if isinstance(item.value, str) else ast.get_source_segment(source, item)
                for item in items), end=" ")
