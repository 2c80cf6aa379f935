"""How long the explorer (notebooks/explore.ipynb) makes a person wait, on the default
image's preview.

    .venv/bin/python benchmarks/bench_explore.py [--repeats 3] [--ks 2 4 8 16 32]

Drives pipeline.explore.Explorer as the notebook does, without a browser, and times
every widget change (a change of start, then of K through --ks, then of seed, repeated
--repeats times; the same sequence for each start, so the order alternates):

* result: the change's callback with background=False, i.e. the time from the change
  to everything redrawn (fit + labels + images, palette, plots and numbers); + PNG
  size: until the palette PNG's size, compressed meanwhile on another thread, fills
  in its line; cpu: the CPU time the process used meanwhile, PNG compression included
  (all threads; on a busy machine wall time grows with the load, CPU time much less);
  fit: the part of the wall time spent in em.fit; iterations: EM's.
* answer: the same changes with background=True (as in the notebook): how long the
  kernel is blocked before it answers ("fitting ..."); the fit then runs on a worker
  thread and the result follows.

Prints one table per mode (median and maximum over the changes at each K) and the
largest kernel block. Timings depend on the machine's load: run it on a quiet machine
and compare runs side by side, never as a test.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

from pipeline import explore


def _timed_fit(times: list[float]):
    """explore.fit, recording how long each call took."""
    real = explore.fit

    def fit(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - start)
    return fit


def changes(ks: list[int], repeats: int):
    """The widget changes, in order: (widget name, value)."""
    for repeat in range(repeats):
        for init in explore.INITS:
            yield "init", init
            for k in ks:
                yield "k", k
            yield "seed", repeat + 1


def run(explorer: explore.Explorer, ks: list[int], repeats: int, fit_times: list[float]):
    """Every change: (K, seconds until everything but the PNG size was shown, seconds
    until the size was too (background=True: both are the seconds the kernel was
    blocked), CPU seconds of the whole callback, seconds in em.fit, iterations)."""
    rows = []
    for name, value in changes(ks, repeats):
        widget = getattr(explorer, name)
        if widget.value == value:
            continue
        fit_times.clear()
        start, cpu = time.perf_counter(), time.process_time()
        widget.value = value
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        explorer.wait()
        if "⚠" in explorer.message:
            raise SystemExit(f"the change {name}={value!r} failed: {explorer.message}")
        sized = 0.0 if explorer.background else \
            explorer.timing["sized"] - explorer.timing["shown"]
        seconds -= sized
        rows.append((explorer.k.value, seconds, seconds + sized, cpu, sum(fit_times),
                     explorer.result.n_iter))
    return rows


def table(rows, title: str, with_size: bool = True) -> None:
    by_k = defaultdict(list)
    for k, *values in rows:
        by_k[k].append(values)
    print(f"\n{title}")
    print(f"{'K':>4} {'changes':>8} {'median s':>9} {'max s':>7} {'+ PNG size max s':>17} "
          f"{'cpu median s':>13} {'fit median s':>13} {'iterations':>11}")
    for k in sorted(by_k):
        s, sized, c, f, n = zip(*by_k[k])
        print(f"{k:>4} {len(s):>8} {statistics.median(s):>9.3f} {max(s):>7.3f} "
              f"{f'{max(sized):.3f}' if with_size else '-':>17} {statistics.median(c):>13.3f} "
              f"{statistics.median(f):>13.3f} {statistics.median(n):>11.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    args = parser.parse_args()

    fit_times: list[float] = []
    explore.fit = _timed_fit(fit_times)
    settings = explore.Settings(k=args.ks[0])
    sync = explore.Explorer(settings=settings)  # loads the default image's preview
    print(sync.picture.describe())
    result = run(sync, args.ks, args.repeats, fit_times)
    table(result, "result: change -> everything redrawn (background=False)")

    background = explore.Explorer(settings=settings, background=True)
    background.wait()
    answer = run(background, args.ks, args.repeats, fit_times)
    table(answer, "answer: change -> kernel free again (background=True, as in the "
                  "notebook); fit: on the worker", with_size=False)

    worst_result = max(r[1] for r in result)
    worst_sized = max(r[2] for r in result)
    worst_answer = max(r[1] for r in answer)
    print(f"\nlongest wait for a result at K <= {max(args.ks)}: {worst_result:.3f} s "
          f"({worst_sized:.3f} s with the PNG size); longest the kernel was blocked: "
          f"{worst_answer * 1000:.1f} ms")


if __name__ == "__main__":
    main()
