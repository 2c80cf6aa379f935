"""How long the explorer (notebooks/explore.ipynb) makes a person wait for the picture
of a change, whatever was running before, on the default image's preview.

    .venv/bin/python benchmarks/bench_explore.py [--repeats 5] [--ks 2 4 8 16 32]

Drives pipeline.explore.Explorer as the notebook does (background=True: fits on the
worker thread, a newer change stops the running fit), without a browser. Each
measurement puts the explorer in a state `before` (nothing running, or a long job
started --delay seconds earlier), then makes one change to K with one restart and no
split-and-merge moves (a new seed each time, so nothing is reused) and times it until
the new picture is shown (everything but the palette PNG's size, which follows):

* idle: the previous fit had finished;
* K=128: a preview fit at K = 128 was running;
* K=64 x3 sm2: K = 64 with 3 restarts and split-and-merge 2 (the long fit of the
  issue that asked for this) was running;
* K=64 full: a fit of every pixel at K = 64 was running;
* K=256: a preview fit at K = 256 (its k-means++ seeding, then EM) was running.

Prints, per K and per state, the median and the largest wait over --repeats changes,
how many times the job before was still running when the change came, and the
longest time the kernel was blocked by a change (the widget's callback). Timings
depend on the machine's load: run it on a quiet machine, several times, never as a
test.
"""

from __future__ import annotations

import argparse
import statistics
import time

from pipeline import explore
from pipeline.explore_settings import Settings

TARGET = {"n_init": 1, "split_merge": 0}
BEFORE = {
    "idle": None,
    "K=128": {"k": 128, "n_init": 1, "split_merge": 0},
    "K=64 x3 sm2": {"k": 64, "n_init": 3, "split_merge": 2},
    "K=64 full": "full",
    "K=256": {"k": 256, "n_init": 1, "split_merge": 0},
}


def start_before(explorer: explore.Explorer, before, seed: int, delay: float) -> None:
    """Put the explorer in the state `before` (see BEFORE): a job running for `delay` s."""
    explorer.wait()
    if before is None:
        return
    if before == "full":
        explorer.change(k=64, seed=seed, **TARGET)
        explorer.wait()
        explorer.refit(full=True)
    else:
        explorer.change(seed=seed, **before)
    time.sleep(delay)


def one_change(explorer: explore.Explorer, k: int, seed: int) -> tuple[float, float, bool]:
    """(seconds from the change to its picture, seconds the kernel was blocked by
    the change, whether a job was running when it came)."""
    running = explorer.jobs.running is not None
    start = time.perf_counter()
    explorer.change(k=k, seed=seed, **TARGET)
    blocked = time.perf_counter() - start
    newest = explorer.jobs.newest
    explorer.wait()
    shown = [e.at for e in explorer.events if e.job == newest.id and e.what == "shown"]
    if not shown or "⚠" in explorer.message:
        raise SystemExit(f"K = {k} was not shown: {explorer.message}")
    return shown[0] - start, blocked, running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--delay", type=float, default=0.3,
                        help="seconds the job before has run when the change comes")
    args = parser.parse_args()

    explorer = explore.Explorer(settings=Settings(k=args.ks[0]), background=True)
    explorer.wait()
    print(explorer.picture.describe())
    waits = {(k, name): [] for k in args.ks for name in BEFORE}
    running = {key: 0 for key in waits}
    blocked = []
    seed = 0
    for _ in range(args.repeats):  # the states alternate, so load drifts hit them alike
        for name, before in BEFORE.items():
            for k in args.ks:
                seed += 1
                start_before(explorer, before, seed, args.delay)
                seconds, kernel, was_running = one_change(explorer, k, seed + 10_000)
                waits[k, name].append(seconds)
                running[k, name] += was_running
                blocked.append(kernel)

    width = 18
    print(f"\nseconds from a change of K (1 restart, no moves) to its picture: median "
          f"(largest) of {args.repeats}; [n]: times the job before was still running")
    print(f"{'K':>4}" + "".join(f"{name:>{width}}" for name in BEFORE))
    for k in args.ks:
        cells = [f"{statistics.median(waits[k, n]):.2f} ({max(waits[k, n]):.2f}) "
                 f"[{running[k, n]}]" for n in BEFORE]
        print(f"{k:>4}" + "".join(f"{c:>{width}}" for c in cells))
    medians = {n: statistics.median(w for k in args.ks for w in waits[k, n]) for n in BEFORE}
    print("\nmedian over every K: " + ", ".join(f"{n}: {m:.2f} s" for n, m in medians.items()))
    print(f"largest median at any K and state: "
          f"{max(statistics.median(w) for w in waits.values()):.2f} s; the kernel was "
          f"blocked at most {max(blocked) * 1000:.0f} ms by a change")


if __name__ == "__main__":
    main()
