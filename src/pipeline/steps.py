"""How long each step of a make run took.

    python -m pipeline.steps run LOG LABEL COMMAND...   run COMMAND; if it succeeds, log its times
    python -m pipeline.steps summary LOG SINCE          the steps logged since SINCE (epoch seconds)

The Makefile runs every slow step through `run` and prints the `summary` at the end
of `make report`. Standard library only: this starts in a few milliseconds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def run(log: Path, label: str, command: list[str]) -> int:
    """Run `command`; on success append "start end label" to `log`."""
    start = time.time()
    with subprocess.Popen(command) as process:
        while True:
            try:
                status = process.wait()
                break
            except KeyboardInterrupt:  # the step got the same Ctrl-C: let it clean up
                pass
    if status < 0:  # killed by a signal
        return 128 - status
    if status == 0:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:  # one short append: safe from parallel steps
            f.write(f"{start!r} {time.time()!r} {label}\n")
    return status


def summary(log: Path, since: float) -> str:
    """The steps that started at or after `since`, in order, with their durations,
    and the wall-clock time since `since`."""
    steps = []
    if log.exists():
        for line in log.read_text().splitlines():
            start, end, label = line.split(" ", 2)
            if float(start) >= since:
                steps.append((float(start), float(end) - float(start), label))
    wall = time.time() - since
    if not steps:
        return f"Nothing to do: every step was up to date ({wall:.1f} s)."
    lines = [f"{seconds:7.1f} s  {label}" for _, seconds, label in sorted(steps)]
    busy = sum(seconds for _, seconds, _ in steps)
    lines.append(f"{wall:7.1f} s  in all, wall clock ({busy:.1f} s of steps, run in parallel)")
    return "Time per step:\n" + "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) >= 4 and argv[0] == "run":
        return run(Path(argv[1]), argv[2], argv[3:])
    if len(argv) == 3 and argv[0] == "summary":
        print(summary(Path(argv[1]), float(argv[2])))
        return 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
