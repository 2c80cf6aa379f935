"""The parameters of a run, checked before anything is written.

    python -m pipeline.params IMAGE=... KS="2 4" SEED=0 INIT=kmeans++ N_INIT=3 SPLIT_MERGE=0 TOL=1e-4 MAX_ITER=2000

The Makefile runs this before it creates any file; the experiment notebook calls
`check` on its own parameters. A bad value raises ParameterError (exit status 2 from
the command line) with a one-line message naming the parameter and its value.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

from pipeline import defaults, paths

INITS = {"kmeans++": "k-means++", "random": "random (original study)"}  # value: its name in text
NAMES = ("image", "ks", "seed", "init", "n_init", "split_merge", "tol", "max_iter")  # make's, lower-cased
MAX_K = 256  # the most colours an indexed PNG holds


class ParameterError(ValueError):
    """A parameter with a value the pipeline cannot use; the message names both."""


def _fail(name: str, value, why: str):
    raise ParameterError(f"{name}={str(value)!r}: {why}")


def _integer(name: str, value, low: int, high: int | None = None) -> int:
    """`value` (an int or its plain decimal text) as an int in [low, high]."""
    # An int, or its text written plainly (no sign +, no leading zeros, no spaces).
    if isinstance(value, bool) or not isinstance(value, (int, str)) or \
            not re.fullmatch(r"-?(0|[1-9][0-9]*)", str(value)):
        number = "a whole number" + (f" from {low} to {high}" if high else f" >= {low}")
        _fail(name, value, f"must be {number}")
    number = int(value)
    if number < low or (high is not None and number > high):
        _fail(name, value, f"must be from {low} to {high}" if high else f"must be >= {low}")
    return number


def check_k(k, name: str = "k") -> int:
    """K as the experiment needs it: 1 to 256 components, the most colours an
    indexed PNG holds."""
    try:
        return _integer(name, k, 1, MAX_K)
    except ParameterError as exc:
        raise ParameterError(f"{exc} (an indexed PNG holds at most {MAX_K} colours)") from None


def check_ks(ks, name: str = "KS") -> list[int]:
    """A space-separated list of K (or a list of them): each checked by check_k."""
    words = ks.split() if isinstance(ks, str) else list(ks)
    if not words:
        _fail(name, ks, "needs at least one K")
    checked = []
    for word in words:
        try:
            checked.append(check_k(word))
        except ParameterError:
            _fail(name, ks, f"{word!r} is not a whole number from 1 to {MAX_K} "
                            f"(an indexed PNG holds at most {MAX_K} colours)")
    return checked


def check_seed(seed, name: str = "seed") -> int:
    return _integer(name, seed, 0)


def check_n_init(n_init, name: str = "n_init") -> int:
    return _integer(name, n_init, 1)


def check_split_merge(split_merge, name: str = "split_merge") -> int:
    return _integer(name, split_merge, 0)


def check_max_iter(max_iter, name: str = "max_iter") -> int:
    return _integer(name, max_iter, 1)


def check_tol(tol, name: str = "tol") -> float:
    """A positive, finite number."""
    try:
        number = float(tol)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(tol, bool) or not (0 < number < math.inf):
        _fail(name, tol, "must be a positive number, e.g. 1e-4")
    return number


def check_init(init, name: str = "init") -> str:
    if init not in INITS:
        _fail(name, init, "must be " + " or ".join(INITS))
    return init


def check_image(image, name: str = "image") -> Path:
    """The image file of `image` (empty: the default image), opened far enough to know
    that Pillow reads it and that it is not too large; the pixels are not decoded."""
    from pipeline import images  # needs Pillow

    try:
        return images.check_readable(paths.image_path(str(image or "")))
    except images.ImageError as exc:
        raise ParameterError(f"{name}={str(image)!r}: {exc}") from None


def check(*, image="", k=None, ks=None, seed=defaults.SEED, init=defaults.INIT,
          n_init=defaults.N_INIT, split_merge=defaults.SPLIT_MERGE, tol=defaults.TOL,
          max_iter=defaults.MAX_ITER,
          upper: bool = False) -> dict:
    """Every parameter checked and converted: a dict of the same names (image -> its
    Path under "path"). `upper` names them as the Makefile does (KS, SEED...)."""
    def n(name):
        return name.upper() if upper else name

    checked = {
        "seed": check_seed(seed, n("seed")),
        "init": check_init(init, n("init")),
        "n_init": check_n_init(n_init, n("n_init")),
        "split_merge": check_split_merge(split_merge, n("split_merge")),
        "tol": check_tol(tol, n("tol")),
        "max_iter": check_max_iter(max_iter, n("max_iter")),
    }
    if k is not None:
        checked["k"] = check_k(k, n("k"))
    if ks is not None:
        checked["ks"] = check_ks(ks, n("ks"))
    checked["image"] = str(image or "")
    checked["path"] = check_image(image, n("image"))
    return checked


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    values = {}
    for arg in argv:
        name, sep, value = arg.partition("=")
        if not sep or name.lower() not in NAMES:
            print(f"usage: python -m pipeline.params NAME=VALUE...: got {arg!r}", file=sys.stderr)
            return 2
        values[name.lower()] = value
    try:
        check(upper=True, **values)
    except ParameterError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
