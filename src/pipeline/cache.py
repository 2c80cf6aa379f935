"""What a result depends on, as digests: the cache keys make compares, and the manifest
that lets a K's results be checked before they are used.

The code a step runs is found from its import statements (`ast`), not from a list kept
by hand: `code_files` follows the imports of notebooks or modules through the project's
modules in src/, adding the package data they name (a string constant naming a file or
folder beside the module, such as a templates folder); `code_key` digests them, a module
as its syntax tree without docstrings (so a comment, a docstring or a reformatting
refits nothing), a notebook and package data as bytes (a notebook's text is part of the
executed notebook a step keeps), and adds the versions of the installed distributions
they import and the Python version. Standard library only.

Results carry a manifest, written last: the key their run was made with and the SHA-256
of every file, in manifest.json for a K's directory, beside it (<name>.manifest.json) for
one executed notebook; `check_manifest` says what is wrong with results, or None.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import platform
import re
import sys
from functools import lru_cache
from pathlib import Path

from pipeline import atomic, paths

SRC = paths.ROOT / "src"
MANIFEST_FILE = "manifest.json"
CHANGED = "its inputs changed"  # what check_manifest says of results made with another key
FILE_NAME = re.compile(r"\w[\w.+-]{0,100}")  # what a string constant naming package data looks like


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------ the code of a step

def _module_path(name: str) -> Path | None:
    """The file of a project module (src/a/b.py or src/a/b/__init__.py), or None."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _source(path: Path) -> str:
    """Python source of a module, or of a notebook's code cells (IPython magics and
    shell escapes left out)."""
    if path.suffix != ".ipynb":
        return path.read_text(encoding="utf-8")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            lines += [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


@lru_cache(maxsize=None)
def _uses(path: Path, name: str, version: tuple) -> tuple[frozenset, tuple]:
    """What the module `name` at `path` (a notebook: name "") uses: every module name its
    imports may load, with their parent packages (for `from a import b`, both a and a.b,
    since b may be a module), and the package data it names (string constants that are
    the name of a file or folder beside it, other than a Python module). `version`: the
    file's time and size, so that a changed file is read again."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names, data = set(), []
    for node in ast.walk(ast.parse(_source(path), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif name and isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                FILE_NAME.fullmatch(node.value):
            found = path.parent / node.value
            if found.exists() and found.suffix != ".py" and found.name != "__pycache__":
                data += [found] if found.is_file() else \
                    [p for p in found.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    with_parents = set()
    for module in filter(None, names):
        parts = module.split(".")
        with_parents.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(with_parents), tuple(data)


def code_files(*entries: str | Path) -> tuple[list[Path], list[str]]:
    """The project's files that `entries` (notebook paths, or module names such as
    "pipeline.render") run, through their imports, with the package data those name;
    and the top-level names of the other modules they import (outside the standard
    library). Both sorted."""
    queue = []
    for entry in entries:
        path = Path(entry) if str(entry).endswith(".ipynb") else _module_path(str(entry))
        if path is None:
            raise ValueError(f"{entry!r}: no such notebook or project module")
        queue.append((path, "" if path.suffix == ".ipynb" else str(entry)))
    files, external = set(), set()
    while queue:
        path, name = queue.pop()
        if path in files:
            continue
        files.add(path)
        stat = path.stat()
        modules, data = _uses(path, name, (stat.st_mtime_ns, stat.st_size))
        files.update(data)
        for module in modules:
            found = _module_path(module)
            if found is not None:
                queue.append((found, module))
            elif "." not in module and module not in sys.stdlib_module_names \
                    and module != "__future__":
                external.add(module)
    return sorted(files), sorted(external)


def _is_text(statement: ast.stmt) -> bool:
    """A statement that is a string alone: a docstring, or text with no effect."""
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) \
        and isinstance(statement.value.value, str)


@lru_cache(maxsize=None)
def _digest(path: Path, version: tuple) -> str:
    """SHA-256 of what in a file can change a result: a module's syntax tree without its
    docstrings and other lone strings (comments and layout are not in the tree), any
    other file's bytes. `version`: the file's time and size, so that a changed file is
    read again."""
    if path.suffix != ".py":
        return sha256(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            if isinstance(statements, list):
                statements[:] = [s for s in statements if not _is_text(s)]
    return hashlib.sha256(ast.dump(tree).encode("utf-8")).hexdigest()


def digest(path: Path) -> str:
    stat = path.stat()
    return _digest(path, (stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=None)
def _distributions() -> dict:
    return importlib.metadata.packages_distributions()


def code_key(*entries: str | Path) -> dict:
    """What the code of a step is, for its cache key: the digest of every project file
    it runs (code_files), the version of every distribution it imports, and Python's."""
    files, external = code_files(*entries)
    versions = {}
    for module in external:
        for dist in _distributions().get(module, [module]):
            try:
                versions[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                versions[dist] = "not installed"
    names = {p: str(p.relative_to(SRC.parent) if p.is_relative_to(SRC) else p) for p in files}
    # Python's major.minor only: a patch release fixes bugs without changing the language
    # or the numbers this code computes (NumPy computes them, keyed by its own version),
    # and the syntax trees digested above are the same within a minor version; so a
    # security update of the interpreter refits nothing.
    return {"files": {names[p]: digest(p) for p in files},
            "packages": dict(sorted(versions.items())),
            "python": f"{platform.python_implementation()} {sys.version_info[0]}.{sys.version_info[1]}"}


# ------------------------------------------------------------------ manifests

def _manifest(results: Path) -> tuple[Path, Path]:
    """(the manifest of `results`, the folder its names are relative to): manifest.json
    inside a directory of results, <name>.manifest.json beside a single file."""
    if results.is_dir():
        return results / MANIFEST_FILE, results
    return results.with_name(f"{results.name}.{MANIFEST_FILE}"), results.parent


def write_manifest(results: str | Path, key: dict | None) -> Path:
    """Record the files of `results` (every file under a directory, or one file) with
    their SHA-256, and the key they were made with, in their manifest (atomically)."""
    results = Path(results)
    path, base = _manifest(results)
    files = [p for p in sorted(results.rglob("*")) if p.is_file() and p.name != MANIFEST_FILE] \
        if results.is_dir() else [results]
    atomic.write_json(path, {"key": key,
                             "files": {p.relative_to(base).as_posix(): sha256(p) for p in files}})
    return path


def check_manifest(results: str | Path, key: dict | None) -> str | None:
    """None when `results` (a directory, or one file) hold every file their manifest
    lists, unchanged, made with `key`; otherwise what is wrong, in a few words."""
    path, base = _manifest(Path(results))
    try:
        manifest = json.loads(path.read_text())
        files, made_with = manifest["files"], manifest["key"]
    except FileNotFoundError:
        return f"{path} is missing"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{path} is damaged"
    if made_with != key:
        return CHANGED
    for name, expected in files.items():
        file = base / name
        if not file.is_file():
            return f"{file} is missing"
        if sha256(file) != expected:
            return f"{file} does not match its checksum"
    return None
