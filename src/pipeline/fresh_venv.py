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

import os
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
    if old.exists():
        shutil.rmtree(old)  # what an earlier removal, stopped halfway, left behind
    if directory.exists():
        directory.rename(old)
        shutil.rmtree(old)
    directory.mkdir(parents=True)
    (directory / "pyvenv.cfg").write_text("# being made by src/pipeline/fresh_venv.py\n")
    # As `python -m venv` makes it: the interpreter linked, not copied (so the stamp's
    # interpreter, its real path, is the one that made it), and pip.
    venv.EnvBuilder(symlinks=os.name != "nt", with_pip=True).create(directory)


if __name__ == "__main__":
    target = Path(sys.argv[1])
    try:
        make(target)
    except KeyboardInterrupt:
        sys.exit(f"{target}: interrupted while it was being made; the next run makes it anew")
