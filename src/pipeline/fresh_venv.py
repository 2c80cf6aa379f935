"""A Python environment made anew, safe to stop at any moment.

    python src/pipeline/fresh_venv.py DIR

Removes DIR if it is an environment (it holds pyvenv.cfg), and makes it again with pip,
by the interpreter that runs this script. The old one is first renamed to DIR.old, one
atomic step, so a removal stopped halfway leaves DIR.old, which the next run removes,
never a half-removed DIR; the new one holds pyvenv.cfg from its first moment. So whatever
an interrupted or failed install leaves behind, the next run recognises as its own and
makes anew (the Makefile writes the environment's stamp, .installed, only at the end). A
DIR that is not an environment is refused in one line and left as it is; Ctrl-C prints one
line. Standard library only: the Makefile runs it before any environment exists.
"""

from __future__ import annotations

import shutil
import sys
import venv
from pathlib import Path


def make(directory: Path) -> None:
    """DIR removed (when it is an environment) and made anew, with pip."""
    old = directory.with_name(directory.name + ".old")
    if directory.exists() and not (directory / "pyvenv.cfg").is_file():
        raise SystemExit(f"{directory} exists and is not a Python environment (it has no "
                         "pyvenv.cfg): move it away or delete it")
    if old.exists() or old.is_symlink():
        _remove(old)  # what an earlier removal, stopped halfway, left behind
    if directory.exists() or directory.is_symlink():
        directory.rename(old)
        _remove(old)
    directory.mkdir(parents=True)
    (directory / "pyvenv.cfg").write_text("# being made by src/pipeline/fresh_venv.py\n")
    try:  # exactly `python -m venv DIR` (the interpreter linked, pip installed)
        venv.main([str(directory)])
    except Exception as exc:  # reported in one line, as `python -m venv` reports it
        raise SystemExit(f"{directory}: the environment could not be made ({exc}); on Debian "
                         "and Ubuntu the interpreter needs its venv module, python3-venv")


def _remove(path: Path) -> None:
    """A folder and what it holds, or a link (not what it points to)."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path)


if __name__ == "__main__":
    target = Path(sys.argv[1])
    try:
        make(target)
    except KeyboardInterrupt:
        sys.exit(f"{target}: interrupted while it was being made; the next run makes it anew")
