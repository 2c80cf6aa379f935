"""How long each step of a make run took.

    python -m pipeline.steps run LOG LABEL COMMAND...   run COMMAND; if it succeeds, log its times
    python -m pipeline.steps summary LOG SINCE          the steps logged since SINCE (epoch seconds)

The Makefile runs every slow step through `run` and prints the `summary` at the end
of `make report`. Standard library only: this starts in a few milliseconds.
"""

from __future__ import annotations

import signal

# Run by make, first of all: Ctrl-C before run() takes it over (while the modules below
# are imported, say) ends the step as the signal does, silently, not with a
# KeyboardInterrupt traceback; make names the step.
if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)

import resource
import subprocess
import sys
import threading
import time
from pathlib import Path


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _relay(source, interrupted: threading.Event) -> None:
    """Copy the step's stderr to ours, until Ctrl-C: what it says while it stops (a
    traceback of KeyboardInterrupt, say) is not shown; make names the step."""
    for line in iter(source.readline, b""):
        if not interrupted.is_set():
            sys.stderr.buffer.write(line)
            sys.stderr.flush()


def run(log: Path, label: str, command: list[str]) -> int:
    """Run `command`; on success append "start end cpu label" to `log`: its wall-clock
    times and the CPU seconds of its processes (a measure that a busy machine does
    not inflate). After Ctrl-C, which the step gets too, its stderr is dropped."""
    start, cpu = time.time(), _cpu_of_children()
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.set())
    try:
        with subprocess.Popen(command, stderr=subprocess.PIPE) as process:
            relay = threading.Thread(target=_relay, args=(process.stderr, interrupted))
            relay.start()
            status = process.wait()  # the step got the same Ctrl-C: it cleans up and stops
            relay.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    if status < 0:  # killed by a signal
        return 128 - status
    if status == 0:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:  # one short append: safe from parallel steps
            f.write(f"{start!r} {time.time()!r} {_cpu_of_children() - cpu:.2f} {label}\n")
    return status


def summary(log: Path, since: float) -> str:
    """The steps that started at or after `since`, in order, with their wall-clock and
    CPU seconds, and the wall-clock time since `since`."""
    steps = []
    if log.exists():
        for line in log.read_text().splitlines():
            if len(line.split(" ", 3)) != 4:  # written by an older version
                continue
            start, end, cpu, label = line.split(" ", 3)
            if float(start) >= since:
                steps.append((float(start), float(end) - float(start), float(cpu), label))
    wall = time.time() - since
    if not steps:
        return f"Nothing to do: every step was up to date ({wall:.1f} s)."
    lines = [f"{seconds:7.1f} s {cpu:7.1f} s  {label}" for _, seconds, cpu, label in sorted(steps)]
    cpu = sum(step[2] for step in steps)
    lines.append(f"{wall:7.1f} s {cpu:7.1f} s  in all (the steps run side by side)")
    return "Time per step:   wall     CPU\n" + "\n".join(lines)


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
