"""One make run at a time in a checkout, and one run of a step at a time: locks.

    python src/pipeline/lock.py DIRECTORY PID

Takes an exclusive lock (flock) on DIRECTORY, first saying in one line on stderr that it
waits when another run holds it, and leaves it held by a background process until the
process PID (the make run) has ended; then returns. The lock is the kernel's, on the
directory itself: nothing is written, and a run killed outright releases it. Standard
library only, so the Makefile can run it before the environment exists.

A step outlives a make killed outright (kill -9), and the next make may start the same
step beside it: `exclusive` holds a lock file of the step's output for as long as the
step runs, so that a second run of it waits for the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import sys
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _wait_for(pid: int, poll: float = 0.2) -> None:
    """Return when the process `pid` has ended: at once where the kernel says so
    (a pidfd, Linux), else within `poll` seconds."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        while alive(pid):
            time.sleep(poll)
        return
    select.select([fd], [], [])


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, what: str):
    """Hold an exclusive lock on the lock file `path` (made if missing) while the block
    runs, first saying in one line on stderr that it waits for `what` when another
    process holds it; the file is removed when the block ends. A lock file removed while
    a process waited on it is taken anew, so exactly one process holds `path` at a time."""
    path = Path(path)
    said = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not said:
                    print(f"{what}: another run is making it: waiting for it to finish",
                          file=sys.stderr, flush=True)
                    said = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:  # removed by its holder as it finished: take it anew
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while held: a waiter sees it gone and takes it anew
        os.close(fd)


def remove_unheld(paths) -> list[Path]:
    """Remove the lock files of `paths` that no process holds (left by a run killed
    outright); returns them."""
    removed = []
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                os.unlink(path)
                removed.append(Path(path))
        except OSError:  # held (BlockingIOError), or gone meanwhile
            pass
        finally:
            os.close(fd)
    return removed


def hold(directory: str, pid: int) -> None:
    os.makedirs(directory, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"make: another make run in this checkout is using {directory}/: waiting "
              f"for it to finish", file=sys.stderr, flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
    if os.fork() == 0:  # the holder: keeps the lock (its copy of fd) while `pid` lives
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # make's Ctrl-C ends make, then this
        null = os.open(os.devnull, os.O_RDWR)
        for stream in (0, 1, 2):  # nothing of make's output stays open here
            os.dup2(null, stream)
        _wait_for(pid)
        os._exit(0)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or not argv[1].isdigit():
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    try:
        hold(argv[0], int(argv[1]))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
