"""The plan of a make run, made before any step runs:

    python -m pipeline.plan OUT IMAGE=... KS="2 4" SEED=0 INIT=kmeans++ N_INIT=3 SPLIT_MERGE=0 TOL=1e-4 MAX_ITER=2000

Checks every parameter (pipeline.params), leaves out each K above the image's number of
distinct colours (one line on stderr), and writes the cache key of every step: what its
result depends on (the image's content, the parameters in normal form, the code it runs:
pipeline.cache, the programs it calls), as JSON rewritten only when it changes, so that
make, comparing times, reruns a step exactly when its key changed:

    OUT/keys/k-<K>.json     one experiment (notebooks/experiment.ipynb), fitted into OUT/k-<K>/
    OUT/keys/report.json    the report notebook (the K fitted, report/data/ and make seeds' file)
    OUT/keys/render-html.json, render-pdf.json   the rendering (pipeline.render), with the
                            versions of pandoc (HTML, PDF), xelatex and latexmk (PDF) or their absence
    OUT/../keys/derivation.json   the derivation notebook (output/derivation.ipynb)

OUT is the image's results folder, output/<image> (pipeline.paths.results_dir); the
notebooks are read from the working directory, as make runs them.

Results that fail their manifest (a K's folder, or an executed notebook: missing,
damaged, or made with another key) are dated older than their key, so make makes them
again, with one line on stderr; results that pass, a key no newer. Prints the K to fit; a
bad parameter, or keys that cannot be written, print one line instead (exit status 2),
which make shows as its error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pipeline import atomic, cache, defaults, params, paths

EXPERIMENT = "notebooks/experiment.ipynb"
REPORT = "notebooks/report.ipynb"
DERIVATION = "notebooks/derivation.ipynb"
RENDER = "pipeline.render"
RUN_NOTEBOOK = "experiment.ipynb"  # the executed notebook: the file make tracks per K
# The programs each rendering runs (pipeline.render): without pandoc the HTML's maths is
# TeX source, so installing or upgrading one renders again.
TOOLS = {"html": ("pandoc",), "pdf": ("pandoc", "xelatex", "latexmk")}


def write_if_changed(path: Path, obj) -> bool:
    """Write `obj` as JSON to `path` (atomically) unless it already holds exactly that."""
    text = json.dumps(obj, indent=1, sort_keys=True) + "\n"
    try:
        if path.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic.write_text_atomic(path, text)
    return True


def describe_image(path: Path, keys: Path, name: str) -> dict:
    """The image's resolved path, SHA-256 and number of distinct colours (counted up to
    params.MAX_K, None above; read from keys/image.json when that is of the same content).
    `name`: the image as given, for the message of an image that cannot be decoded."""
    from PIL import Image

    from pipeline import images

    described = {"path": str(path.resolve()), "sha256": cache.sha256(path)}
    try:
        known = json.loads((keys / "image.json").read_text())
        if known["sha256"] == described["sha256"]:
            return {**described, "distinct_colours": known["distinct_colours"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        rgb = images.load_rgb(path)
    except images.ImageError as exc:
        raise params.ParameterError(f"IMAGE={name!r}: {exc}") from None
    colours = Image.fromarray(rgb).getcolors(maxcolors=params.MAX_K)
    return {**described, "distinct_colours": len(colours) if colours else None}


def fitting(ks: list[int], colours: int | None, image: str) -> list[int]:
    """The K that can be fitted to an image of `colours` distinct colours (None: more
    than any K): the others are left out with one line on stderr, or, if no K is left,
    ParameterError."""
    kept = [k for k in ks if colours is None or k <= colours]
    dropped = [k for k in ks if k not in kept]
    name = repr(image) if image else "the default image"
    if not kept:
        raise params.ParameterError(
            f"KS={' '.join(map(str, ks))!r}: every K is above the {colours} distinct "
            f"colours of {name}, and a mixture cannot have more components than colours")
    if dropped:
        print(f"KS: K = {', '.join(map(str, dropped))} left out: {name} has {colours} "
              f"distinct colours, and a mixture cannot have more components than colours",
              file=sys.stderr)
    return kept


def tool_versions(names, known: Path) -> dict:
    """The version of each program of `names` on PATH (the first line of its --version),
    or None where it is not installed. `known`: a file of what was found before, reused
    while a program's file keeps its path, size and time (latexmk takes 0.1 s to say)."""
    try:
        found = json.loads(known.read_text())
    except (OSError, ValueError):
        found = {}
    found = found if isinstance(found, dict) else {}
    versions = {}
    for name in names:
        path = shutil.which(name)
        if path is None:
            versions[name] = None
            continue
        stat = os.stat(path)
        file = [os.path.realpath(path), stat.st_size, stat.st_mtime_ns]
        if not isinstance(found.get(name), dict) or found[name].get("file") != file \
                or not isinstance(found[name].get("version"), str):
            said = subprocess.run([path, "--version"], capture_output=True, text=True,
                                  check=False).stdout
            found[name] = {"file": file,
                           "version": next((line.strip() for line in said.splitlines()
                                            if line.strip()), "unknown")}
        versions[name] = found[name]["version"]
    write_if_changed(known, found)
    return versions


def schedule(key: Path, target: Path, results: Path) -> str | None:
    """Make the times of `key` and `target`, the file make tracks, say whether `results`
    (a K's folder, or the executed notebook itself) must be made again: the key newer
    when they fail their manifest, no newer when they pass. Returns what is wrong with
    results that exist, or None."""
    if not target.exists():
        return None
    key_data = json.loads(key.read_text())
    problem = cache.check_manifest(results, key_data)
    made = target.stat().st_mtime_ns
    if problem is None:
        if key.stat().st_mtime_ns > made:
            os.utime(key, ns=(made, made))
    elif key.stat().st_mtime_ns <= made:  # the target dated back (no key in the future)
        earlier = key.stat().st_mtime_ns - 1_000_000_000
        os.utime(target, ns=(earlier, earlier))
    return None if problem in (None, cache.CHANGED) else problem


def plan(out: str | Path, image="", ks=defaults.KS, **settings) -> list[int]:
    """Check the parameters, write every key, schedule every K of the results folder
    `out`; the K to fit."""
    checked = params.check(image=image, ks=ks, upper=True, **settings)
    out = Path(out)
    keys = out / "keys"
    described = describe_image(checked["path"], keys, checked["image"])
    ks = fitting(sorted(set(checked["ks"])), described["distinct_colours"], checked["image"])
    image_key = {"path": described["path"], "sha256": described["sha256"]}
    write_if_changed(keys / "image.json", {"sha256": described["sha256"],
                                           "distinct_colours": described["distinct_colours"]})
    settings = {name: checked[name] for name in
                ("seed", "init", "n_init", "split_merge", "tol", "max_iter")}
    experiment_code = cache.code_key(EXPERIMENT)
    for k in ks:
        key = keys / f"k-{k}.json"
        write_if_changed(key, {"image": image_key, "parameters": {"k": k, **settings},
                               "code": experiment_code})
        problem = schedule(key, out / f"k-{k}" / RUN_NOTEBOOK, out / f"k-{k}")
        if problem:
            print(f"K = {k}: {problem}: fitting it again", file=sys.stderr)
    data = sorted({*paths.REPORT_DATA_DIR.glob("*.json"), paths.seeds_data(checked["image"])})
    write_if_changed(keys / "report.json", {
        "image": image_key, "ks": ks, "code": cache.code_key(REPORT),
        "data": {str(p.relative_to(paths.ROOT)): cache.sha256(p) if p.is_file() else None
                 for p in data}})
    render_code = cache.code_key(RENDER)
    for fmt, tools in TOOLS.items():
        write_if_changed(keys / f"render-{fmt}.json", {
            "code": render_code, "tools": tool_versions(tools, keys / "tools.json")})
    write_if_changed(out.parent / "keys" / "derivation.json",
                     {"code": cache.code_key(DERIVATION)})
    # The executed notebooks the rendering reads carry a manifest too (run_notebook --key).
    for key, notebook, source in ((keys / "report.json", out / "report.ipynb", REPORT),
                                  (out.parent / "keys" / "derivation.json",
                                   out.parent / "derivation.ipynb", DERIVATION)):
        problem = schedule(key, notebook, notebook)
        if problem:
            print(f"{problem}: running {source} again", file=sys.stderr)
    return ks


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    values = {}
    for arg in argv[1:]:
        name, sep, value = arg.partition("=")
        if not sep or name.lower() not in params.NAMES:
            print(f"usage: python -m pipeline.plan OUT NAME=VALUE...: got {arg!r}")
            return 2
        values[name.lower()] = value
    try:
        print(*plan(argv[0], **values))
    except params.ParameterError as exc:
        print(exc)
        return 2
    except OSError as exc:  # e.g. a full disk: the keys cannot be written
        print(f"{exc.filename or argv[0]}: {exc.strerror or exc}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
