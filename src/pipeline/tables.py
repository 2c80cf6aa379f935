"""Markdown pipe tables, the one table format that survives nbconvert's conversions
to both HTML and LaTeX, and the number formatting they use."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from pipeline import results


def fmt(value, spec: str = "", missing: str = "n/a") -> str:
    """format(value, spec), or `missing` for None, NaN or a non-number."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return missing if value is None or not isinstance(value, str) else value
    if isinstance(value, float) and math.isnan(value):
        return missing
    return format(value, spec)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence], align: str | None = None) -> str:
    """A pipe table: headers, then one line per row; cells are str()-ed, '|' escaped.

    align: one letter per column, 'l', 'r' or 'c' (default: first column left, the
    rest right). Columns are padded, so pandoc sizes wrapped columns in proportion.
    """
    headers = [str(h).replace("|", "\\|") for h in headers]
    rows = [[str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in rows]
    n = len(headers)
    for i, row in enumerate(rows):
        if len(row) != n:
            raise ValueError(f"row {i} has {len(row)} cells, the header has {n}")
    align = align or "l" + "r" * (n - 1)
    if len(align) != n or set(align) - set("lrc"):
        raise ValueError(f"align needs one of l, r, c per column ({n}), got {align!r}")
    widths = [max(3, len(headers[j]), *(len(r[j]) for r in rows)) for j in range(n)]

    def line(cells):
        return "| " + " | ".join(c.rjust(wd) if a == "r" else c.ljust(wd)
                                 for c, wd, a in zip(cells, widths, align)) + " |"

    rule = {"l": lambda wd: ":" + "-" * (wd - 1), "r": lambda wd: "-" * (wd - 1) + ":",
            "c": lambda wd: ":" + "-" * (wd - 2) + ":"}
    separator = "| " + " | ".join(rule[a](wd) for a, wd in zip(align, widths)) + " |"
    return "\n".join([line(headers), separator, *(line(r) for r in rows)])


def runs(sweep) -> str:
    """One row per K: iterations of the winning start, log-likelihood per pixel and
    the reconstruction error of every method."""
    rows = []
    for k in sweep.ks:
        m, b = sweep.metrics[k], sweep.baselines[k]
        rows.append([k, m["iterations"], f"{m['log_likelihood_per_pixel']:.3f}",
                     f"{m['reconstruction_error']:.5f}", f"{b['em_nearest_mean']['error']:.5f}",
                     f"{b['kmeans']['error']:.5f}", f"{b['median_cut']['error']:.5f}"])
    return markdown_table(["K", "EM iterations", "log L per pixel", "EM", "EM, nearest mean",
                           "k-means", "median cut"], rows, align="r" * 7)


def choosing(rows: list[dict], info: dict, input_kind: str) -> str:
    """The choosing table (choosing.table_rows), and a last row for the input file. BIC
    is shown above its lowest value in the table, in whole nats: its differences are
    what compare K, readable at any image size."""
    lowest = min((r["bic"] for r in rows if r["bic"] is not None), default=None)
    body = [[r["k"], fmt(r["psnr_db"], ".1f", "exact"), fmt(r["error"], ".5f"),
             fmt(r["png_bytes"], ",", ""), fmt(r["bits_per_pixel"], ".2f", ""),
             fmt(r["of_input"], ".2f", ""), fmt(r["jpeg_bytes"], ",", "none" if r["png_bytes"]
                                                 else ""),
             fmt(r["kmeans_psnr_db"], ".1f", ""), fmt(r["fit_seconds"], ".1f", ""),
             fmt(r["bic"] - lowest if r["bic"] is not None else None, ",.0f", "")] for r in rows]
    body.append([f"input ({input_kind})", "", "", f"{info['file_bytes']:,}",
                 f"{8 * info['file_bytes'] / info['pixels']:.2f}", "1.00", "", "", "", ""])
    return markdown_table(["K", "PSNR (dB)", "error", "PNG bytes", "bits/px", "PNG / input",
                           "JPEG bytes, same PSNR", "k-means PSNR", "fit (s)", "BIC above lowest"],
                          body, align="r" * 10)


def study_rule(data: dict, study: dict) -> str:
    """Like for like: the study's published run per K beside ours under its own rule."""
    pub = {row["k"]: row for row in study["rows"]}
    d = study["error_decimals"]
    rows = []
    for f in data["study_rule"]["fits"]:
        p = pub.get(f["k"], {})
        rows.append([f["k"], fmt(p.get("iterations"), ","), f"{f['iterations']:,}",
                     fmt(p.get("error"), f".{d}f"), fmt(p.get("error_printed"), f".{d}f"),
                     f"{f['error']:.{d}f}",
                     ("yes" if f["converged"] else "no") + f" ({fmt(f['last_gain'], '.4f')})"])
    return markdown_table(["K", "study: iterations", "ours: iterations", "study: error (table)",
                           "study: error (printed run)", "ours: error",
                           "converged (last gain)"], rows, align="r" * 7)


def study(data: dict, study: dict) -> str:
    """make report's settings over seeds on the study's photograph beside its table."""
    pub = {row["k"]: row for row in study["rows"]}
    d = study["error_decimals"]
    seeded, random = results.study_runs(data)
    rows = []
    for i, fit0 in enumerate(seeded[0]["fits"]):
        k = fit0["k"]
        errs = [r["fits"][i]["error"] for r in seeded]
        rnd = random["fits"][i] if random else {}
        rows.append([k, fmt(pub.get(k, {}).get("error"), f".{d}f"), f"{np.median(errs):.{d}f}",
                     f"{min(errs):.{d}f} to {max(errs):.{d}f}",
                     fmt(_iterations(fit0), ","), f"{fit0['seconds']:.1f}",
                     fmt(rnd.get("error"), f".{d}f"), fmt(_iterations(rnd), ",")])
    return markdown_table(
        ["K", "study: error (table)", "ours: median", f"ours: {len(seeded)} seeds",
         "iterations (seed 0)", "s (seed 0)", "random start: error", "iterations"],
        rows, align="r" * 8)


def _iterations(fit: dict):
    """A fit's iterations over every start, or the winning start's where only those were
    counted (study.one_fit with split-and-merge moves); None without a fit."""
    return (fit.get("iterations_all") or fit.get("iterations")) if fit else None


def study_iterations(data: dict) -> str:
    """What the study table's iterations count (_iterations), for its caption."""
    seeded, random = results.study_runs(data)
    fits = [f for r in seeded + ([random] if random else []) for f in r["fits"]]
    if all(f.get("iterations_all") is not None for f in fits):
        return "the iterations of every start"
    return ("the iterations of the winning start"
            + (" and its split-and-merge moves" if data["settings"].get("split_merge") else ""))


def speed(entry: dict) -> str:
    """The benchmark of one image: per K, time per iteration and per row, both sides,
    and the time and log-likelihood at convergence."""
    rows = []
    for r in entry["rows"]:
        rows.append([fmt(r.get("k"), "d"), fmt(r.get("ours_ms_per_iter"), ".1f"),
                     fmt(r.get("sklearn_ms_per_iter"), ".1f"),
                     fmt(r.get("ours_us_per_row"), ".3f"), fmt(r.get("sklearn_us_per_row"), ".3f"),
                     fmt(r.get("ours_seconds"), ".2f"), fmt(r.get("sklearn_seconds"), ".2f"),
                     fmt(r.get("ours_ll_per_pixel"), ".4f"), fmt(r.get("sklearn_ll_per_pixel"), ".4f")])
    return markdown_table(
        ["K", "ours ms/iter", "sklearn ms/iter", "ours \u00b5s/row", "sklearn \u00b5s/row",
         "ours s", "sklearn s", "ours log L/px", "sklearn log L/px"], rows, align="r" * 9)


def optimum(photos: list[dict]) -> str:
    """The package photographs (results.bench_photos): log-likelihood per pixel and
    reconstruction error, ours without and with split-and-merge moves and
    scikit-learn's (its fit scored in this model), per photograph and K."""
    rows = [[p["name"], p["k"], f"{p['ours_ll_per_pixel']:.4f}",
             f"{p['ours_ll_per_pixel_split_merge']:.4f}", f"{p['sklearn_ll_per_pixel_in_ours']:.4f}",
             f"{p['ours_error']:.6f}", f"{p['ours_error_split_merge']:.6f}",
             f"{p['sklearn_error']:.6f}"] for p in photos]
    return markdown_table(["photograph", "K", "log L/px: ours", "with moves", "sklearn",
                           "error: ours", "with moves", "sklearn"], rows, align="lr" + "r" * 6)


def by_photograph(photos: list[dict], max_rows: int = 16) -> list[list[dict]]:
    """The package photographs' rows cut into parts of at most max_rows rows, each
    photograph whole, in order: tables short enough to sit on a page beside text."""
    parts, current = [], []
    for name in dict.fromkeys(p["name"] for p in photos):
        rows = [p for p in photos if p["name"] == name]
        if current and len(current) + len(rows) > max_rows:
            parts.append(current)
            current = []
        current = current + rows
    return parts + ([current] if current else [])


def environment(machine: dict, extra: dict) -> str:
    """The machine and software (pipeline.machine.describe()) and the run's settings,
    as a compact two-column table."""
    blas = ", ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} threads)"
                     for b in machine.get("blas") or [])
    rows = [("Python / NumPy", f"{machine.get('python')} / {machine.get('numpy')}"),
            ("Matplotlib / Pillow", f"{machine.get('matplotlib')} / {machine.get('pillow')}"),
            ("OS", machine.get("os")), ("CPU", machine.get("cpu")),
            ("Cores (available) / memory", f"{machine.get('cores')} ({machine.get('cores_available')})"
                                           f" / {fmt(machine.get('memory_gib'), '.0f')} GiB")]
    if blas:
        rows.append(("BLAS", blas))
    rows += list(extra.items())
    return markdown_table(["", ""], [[a, b] for a, b in rows], align="ll")


class Numbered:
    """Table numbers in order of first mention: ref(key) names a table before it is
    shown (it takes the next number), label(text, key) shows it; a table shown out of
    order raises ValueError."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.numbers: dict = {}
        self.shown = 0

    def ref(self, key) -> str:
        """'Table n' for the table `key`."""
        return f"Table {self.prefix}{self.numbers.setdefault(key, len(self.numbers) + 1)}"

    def label(self, text: str, key=None) -> str:
        name = self.ref(key if key is not None else object())
        self.shown += 1
        if name != f"Table {self.prefix}{self.shown}":
            raise ValueError(f"{name} is shown as the table number {self.shown}: mention "
                             f"the tables in the order they are shown")
        return f"**{name}.** {text}"
