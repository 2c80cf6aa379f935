"""Atomic output: a reader sees the old file or the whole new one, never a half-written
file. Every file the project writes goes through here; `publish` moves a finished report
(HTML, PDF, figures) into place together.

    python -m pipeline.atomic publish STAGING DEST PART... [--remove NAME...]

Temporaries are named after the process that makes them (.<part>.<pid>.new, .old), so
that what a killed run left is known and removed by the next (`remove_dead`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from pipeline import lock

_PUBLISHING = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.(new|old)")  # publish's temporaries


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it onto `path` only on success.

    A reader never sees a half-written file: either the old file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 -> what open() would give
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    """Write JSON (no NaN or inf) atomically."""
    write_text_atomic(path, json.dumps(obj, indent=1, allow_nan=False) + "\n")


def remove(path: Path) -> None:
    """Delete a file or a folder with everything in it, if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_dead(directory: Path, temporary: re.Pattern) -> list[Path]:
    """Remove the entries of `directory` whose names match `temporary`, a pattern with a
    group "pid", made by processes no longer running: what a killed run left. Returns
    them."""
    removed = []
    for path in directory.iterdir() if directory.is_dir() else ():
        match = temporary.fullmatch(path.name)
        if match and int(match["pid"]) != os.getpid() and not lock.alive(int(match["pid"])):
            remove(path)
            removed.append(path)
    return removed


def publish(staging: str | os.PathLike, dest: str | os.PathLike, parts, drop=()) -> Path:
    """Move `parts` (files or folders) of the folder `staging` into the folder `dest`
    together, and delete `drop` there (what an earlier run published and this one did
    not make). Every part is first copied beside its place under a name of its own, then
    all are renamed in: they change together, only once all were copied (a full disk
    leaves `dest` as it was). The copies get the time of publishing, so that make sees
    them newer than what they were made from. What killed publishes left in `dest` is
    removed first; Ctrl-C or SIGTERM wait until the parts are renamed in."""
    staging, dest = Path(staging), Path(dest)
    missing = [part for part in parts if not (staging / part).exists()]
    if missing:
        raise FileNotFoundError(f"{staging} holds no finished report: {', '.join(missing)} missing")
    dest.mkdir(parents=True, exist_ok=True)
    remove_dead(dest, _PUBLISHING)
    fresh = {part: dest / f".{part}.{os.getpid()}.new" for part in parts}
    try:
        for part, path in fresh.items():
            if (staging / part).is_dir():
                shutil.copytree(staging / part, path, copy_function=shutil.copyfile)
            else:
                shutil.copyfile(staging / part, path)
    except BaseException:
        for path in fresh.values():
            remove(path)
        raise
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # no part left half renamed
    try:
        for part, path in fresh.items():
            if path.is_dir() and (dest / part).exists():  # a folder cannot be renamed onto one
                old = dest / f".{part}.{os.getpid()}.old"
                os.rename(dest / part, old)
                os.rename(path, dest / part)
                remove(old)
            else:
                os.replace(path, dest / part)
        for name in drop:
            remove(dest / name)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop)
    return dest


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parts, drop = (argv[3:], []) if "--remove" not in argv else \
        (argv[3:argv.index("--remove")], argv[argv.index("--remove") + 1:])
    if argv[:1] != ["publish"] or len(argv) < 4 or not parts:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    # Terminated: unwind like Ctrl-C, removing this run's copies.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        publish(argv[1], argv[2], parts, drop)
    except KeyboardInterrupt:  # Ctrl-C: make says which step it stopped
        return 130
    except OSError as exc:  # unwritable, full disk, an unfinished report: one line
        print(f"{argv[2]}: the report could not be published: "
              f"{exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
