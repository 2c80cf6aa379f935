"""How the report words its numbers: lists of K, plurals, significant digits, ratios
and their ranges, and ties: two values within TIE of each other (or both below EXACT,
the rounding of an exact palette) are equal, never a win."""

from __future__ import annotations

import math
import re

import numpy as np

from pipeline.experiment import EXACT_ERROR as EXACT

TIE = 0.01  # relative difference below which two errors are called equal


def k_list(ks) -> str:
    """'2', '2 and 4', '2, 4 and 8'."""
    ks = [str(k) for k in ks]
    return ks[0] if len(ks) == 1 else ", ".join(ks[:-1]) + " and " + ks[-1]


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 start', '3 starts'."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def num(x: float, digits: int = 3) -> str:
    """x with `digits` significant digits in fixed notation: 0.112, 0.000915, 14.3."""
    if abs(x) < EXACT or not math.isfinite(x):
        return "0" if abs(x) < EXACT else str(x)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def tied(a: float, b: float) -> bool:
    """Whether a and b are within TIE of each other (relative to the larger), or both
    below EXACT."""
    return abs(a - b) <= TIE * max(abs(a), abs(b)) or max(abs(a), abs(b)) < EXACT


def ratio(x: float) -> str:
    """A ratio with the decimals its size needs: 1.53, 19.8, 227, 3,795."""
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def ratios(a, b) -> np.ndarray:
    """a / b elementwise, 1 where the two are tied (0 and 0 too), inf where only b is 0."""
    a, b = np.atleast_1d(np.asarray(a, dtype=float)), np.atleast_1d(np.asarray(b, dtype=float))
    out = np.full(a.shape, np.inf)
    np.divide(a, b, out=out, where=b != 0)
    return np.where([tied(x, y) for x, y in zip(a, b)], 1.0, out)


def times(values) -> str:
    """A ratio or a range of ratios: '1.53 times', '1.24 to 2.10 times', 'within 1 % of'
    when every ratio is within TIE of 1, 'above' when every one is infinite (of a 0)."""
    values = np.atleast_1d(np.asarray(values, dtype=float))
    if all(tied(r, 1.0) for r in values):
        return f"within {TIE:.0%} of"
    ratios = values[np.isfinite(values)]
    if not len(ratios):
        return "above"
    low, high = ratio(ratios.min()), ratio(ratios.max())
    return f"{low} times" if low == high else f"{low} to {high} times"


def sci(x: float) -> str:
    """x in scientific notation as maths: $2.6 \\times 10^{-8}$."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"${mantissa} \\times 10^{{{int(exponent)}}}$"


def percent(x: float) -> str:
    """A signed relative difference with the decimals it needs: +14.6%, +0.02%."""
    return f"{x:+.2%}" if abs(x) < 0.001 else f"{x:+.1%}"


def possessive(name: str) -> str:
    """"EM's", "k-means'"."""
    return name + ("'" if name.endswith("s") else "'s")


def at(ks, all_ks) -> str:
    """Where something holds: 'every K', 'K = 2', 'K = 2, 4 and 8'."""
    return "every K" if len(ks) == len(all_ks) > 1 else f"K = {k_list(ks)}"


def markdown(text: str) -> str:
    """`text` as Markdown shows it: every ASCII punctuation mark backslash-escaped (an
    image named st*r or back\\slash must not become emphasis or a LaTeX command)."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", text)
