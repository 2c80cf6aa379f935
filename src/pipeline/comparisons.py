"""The report's sentences that set this project beside others: the original study's
published table (make study), scikit-learn's speed and its optimum (make bench).
Each function takes the loaded numbers and returns Markdown."""

from __future__ import annotations

import numpy as np

from pipeline import results
from pipeline.narrative import starts
from pipeline.wording import TIE, at, k_list, markdown, percent, plural, ratio, sci, tied, times


def same_as_published(ours: float, published: float, decimals: int) -> bool:
    """Whether ours equals a published error to the table's precision: a difference
    below one unit of its last decimal is no difference."""
    return abs(ours - published) < 10.0 ** -decimals


def against_table(errors: dict, pub: dict, decimals: int) -> tuple[list, list, list]:
    """The K where our error ({k: error}) is below, equal to (at the table's precision)
    and above the published one."""
    equal = [k for k in errors if same_as_published(errors[k], pub[k]["error"], decimals)]
    below = [k for k in errors if k not in equal and errors[k] < pub[k]["error"]]
    above = [k for k in errors if k not in equal and k not in below]
    return below, equal, above


def _where(what: str, below, equal, above, errors, pub) -> str:
    """'below <what> at K = 2, equal to it at K = 4 and above it at K = 8 (+1.2%)'."""
    parts = ([f"below {{}} at K = {k_list(below)}"] if below else []) + \
            ([f"equal to {{}} at K = {k_list(equal)}"] if equal else []) + \
            ([f"above {{}} at K = {k_list(above)} ("
              + ", ".join(percent(errors[k] / pub[k]['error'] - 1) for k in above) + ")"]
             if above else [])
    return k_list([p.format(what if i == 0 else "it") for i, p in enumerate(parts)])


def study_intro(study: dict, data: dict | None) -> str:
    """Where the study's facts and our runs on its photograph come from."""
    text = (f"The original study fitted the same model to its own photograph "
            f"({study['image']['width']} $\\times$ {study['image']['height']} pixels). The "
            f"photograph is not part of this repository; the study's published table is, in "
            f"`report/data/published.json`. ")
    if not data:
        return text + ("`make study` runs our sweeps on the photograph when it is available "
                       "(`STUDY_IMAGE=path/to/im.jpg`) and writes `report/data/study.json`, "
                       "which this section would read; it is missing here.")
    return (text + "`make study` runs our sweeps on the photograph and writes "
            "`report/data/study.json`, which this section reads. "
            + stopping_rules(study, data))


def no_bench(name: str, default_image: bool, photos: list[dict] = ()) -> str:
    """What the speed section says when the benchmark has no entry for the image;
    photos: the benchmark's package photographs (results.bench_photos)."""
    if default_image:
        return ("`report/data/bench.json` has no entry for this image: `make bench` writes "
                "it, with the speed table of this section.")
    text = (f"`report/data/bench.json` has no entry for *{markdown(name)}*: `make bench` times the "
            f"kernel on the default image and the study's photograph only, so this report "
            f"has no speed table.")
    ks = [p["k"] for p in photos if p["name"] == name]
    if ks:
        text += (f" Its likelihood and error at K = {k_list(ks)} are among the package "
                 f"photographs' below.")
    return text


def stopping_rules(study: dict, data: dict) -> str:
    """The study's stopping rule and ours, side by side, from their own records."""
    ours = data["settings"]
    pixels = study["image"]["width"] * study["image"]["height"]
    looser = ours["tol"] * pixels / study["tol_total"]
    than = ("the same tolerance as the study's" if tied(looser, 1.0) else
            f"a tolerance about {ratio(looser)} times looser" if looser > 1 else
            f"a tolerance about {ratio(1 / looser)} times stricter")
    return (f"The study ran EM once per K from its random start ({study['start']}) and "
            f"stopped when the total log-likelihood changed by less than "
            f"{study['tol_total']:g} between iterations: over its {pixels:,} pixels, "
            f"{sci(study['tol_total'] / pixels)} nats per pixel. `make report`'s settings "
            f"stop each run when a plain EM step gains less than {ours['tol']:g} nats per "
            f"pixel, {than}, and keep {starts({'n_init': ours['n_init'], 'init': 'kmeans++'})}, "
            f"with SQUAREM acceleration.")


def study_rule_text(data: dict, study: dict, table: str) -> str:
    """Our runs under the study's own rule against its table and its printed run."""
    rule, settings = data["study_rule"]["fits"], data["study_rule"]["settings"]
    pub = {row["k"]: row for row in study["rows"]}
    fits = [f for f in rule if f["k"] in pub]
    if not fits:
        return ""
    ks = [f["k"] for f in fits]
    decimals = study["error_decimals"]
    errs = {f["k"]: f["error"] for f in fits}
    converged = [f["k"] for f in fits if f["converged"]]
    ours_it = sum(f["iterations"] for f in fits)
    pub_it = sum(pub[k]["iterations"] for k in ks)
    text = (f"{table} repeats the study's rule on its photograph: one run per K from its "
            f"random start (seed {settings['seed']}), plain EM without acceleration, "
            f"stopping at a gain below {study['tol_total']:g} in total, at most "
            f"{settings['max_iter']:,} iterations. "
            + ("Every K converged" if len(converged) == len(ks) else
               (f"K = {k_list(converged)} converged" if converged else "No K converged")
               + f" and K = {k_list([k for k in ks if k not in converged])} stopped at "
                 f"max_iter")
            + f", in {ours_it:,} iterations in all against the study's {pub_it:,}. ")
    below, equal, above = against_table(errs, pub, decimals)
    table_where = _where("the study's table", below, equal, above, errs, pub)
    text += (f"Counting differences below {sci(10.0 ** -decimals)} (the table's last digit) "
             f"as none, the error is {table_where}. ")
    printed = {k: {"error": pub[k]["error_printed"]} for k in ks}
    below, equal, above = against_table(errs, printed, decimals)
    printed_where = _where("the study's printed run", below, equal, above, errs, printed)
    text += f"It is {printed_where}. "
    gap = {k: abs(pub[k]["error"] - pub[k]["error_printed"])
           / min(pub[k]["error"], pub[k]["error_printed"]) for k in ks}
    widest = max(gap, key=gap.get)
    text += (f"The study's own table and printed run differ by up to {gap[widest]:.0%} "
             f"(K = {widest}: {pub[widest]['error']:.{decimals}f} against "
             f"{pub[widest]['error_printed']:.{decimals}f}): one run of EM from a random "
             f"start does not pin the error down more closely than that.")
    return text


def seeds_text(data: dict, study: dict, table: str) -> str:
    """make report's settings over seeds on the study's photograph against its table,
    every restart's iterations counted."""
    pub = {row["k"]: row for row in study["rows"]}
    seeded, random = results.study_runs(data)
    idx = {f["k"]: i for i, f in enumerate(seeded[0]["fits"]) if f["k"] in pub}
    ks = list(idx)
    if not ks:
        return ""
    decimals = study["error_decimals"]
    med = {k: float(np.median([r["fits"][idx[k]]["error"] for r in seeded])) for k in ks}
    worst = {k: max(r["fits"][idx[k]]["error"] for r in seeded) for k in ks}
    below, equal, above = against_table(med, pub, decimals)
    text = (f"With `make report`'s settings ({table}), over {len(seeded)} seeds, our median "
            f"error is {_where('the table', below, equal, above, med, pub)}")
    _, _, worse = against_table(worst, pub, decimals)
    text += ("; the worst seed is above it at " + (f"K = {k_list(worse)}" if worse else "no K")
             + ". ")
    every = [seeded[0]["fits"][idx[k]].get("iterations_all") for k in ks]
    n_init = data["settings"]["n_init"]
    if all(isinstance(n, int) for n in every):
        text += (f"Seed 0's fits took {sum(every):,} iterations over all their starts "
                 f"({plural(n_init, 'start')} per K), against the study's "
                 f"{sum(pub[k]['iterations'] for k in ks):,} for one run per K. ")
    if random:
        rnd = {f["k"]: f for f in random["fits"]}
        worse = [k for k in ks if rnd[k]["error"] > med[k] and
                 not same_as_published(rnd[k]["error"], med[k], decimals)]
        text += ("From the study's random start with the same settings the error is above "
                 "our k-means++ median at " + (at(worse, ks) if worse else "no K") + ".")
    return text.strip()


def speed_text(entry: dict, fit_table: str = "") -> str:
    """The speed-up split into fewer rows and a faster kernel per row, and the time to
    convergence where both sides ran to it, at the log-likelihood each reached."""
    rows = [r for r in entry["rows"] if isinstance(r, dict)]

    def ratios(a, b):
        return [r[a] / r[b] for r in rows if r.get(a) and r.get(b)]

    fewer = ratios("sklearn_rows", "ours_rows")
    per_row = ratios("sklearn_us_per_row", "ours_us_per_row")
    per_iter = ratios("sklearn_ms_per_iter", "ours_ms_per_iter")
    parts = ([f"scikit-learn fits every pixel and ours the distinct colours weighted by "
              f"their counts, {min(fewer):.1f} times fewer rows"] if fewer else []) + \
            ([f"per row, scikit-learn takes {times(per_row)} our kernel's time"]
             if per_row else []) + \
            ([f"together, scikit-learn's iteration takes {times(per_iter)} ours"]
             if per_iter else [])
    text = ("On this image, " + "; ".join(parts) + ". ") if parts else ""
    conv = [r for r in rows if r.get("ours_seconds") and r.get("sklearn_seconds")
            and r.get("ours_ll_per_pixel") is not None and r.get("sklearn_ll_per_pixel") is not None]
    if conv:
        ks = [r["k"] for r in conv]
        at_least = [r["k"] for r in conv if r["ours_ll_per_pixel"] >= r["sklearn_ll_per_pixel"] - 1e-4]
        text += (f"To convergence, at K = {k_list(ks)} (scikit-learn ran to convergence only "
                 f"there), ours takes {_seconds([r['ours_seconds'] for r in conv])} and "
                 f"scikit-learn {_seconds([r['sklearn_seconds'] for r in conv])}; our "
                 f"log-likelihood per pixel is equal or higher (within 1e-4) at "
                 + (f"K = {k_list(at_least)}" if at_least else "no K") + ". ")
    if fit_table and any(r.get("ours_seconds") for r in rows):
        text += (f"These times come from the benchmark, which runs one fit at a time; "
                 f"{fit_table}'s were measured inside `make report`, whose steps run side "
                 f"by side, so the two tables' times for the same fits differ.")
    return text.strip()


def _seconds(values) -> str:
    low, high = f"{min(values):.2f}", f"{max(values):.2f}"
    return f"{low} s" if low == high else f"{low} to {high} s"


def optimum_text(photos: list[dict], moves: int | None, derivation: str) -> str:
    """What a better optimum of the likelihood does to the palette, from the benchmark's
    fits of the package photographs (results.bench_photos); "" without them.
    derivation: where the derivation shows a move, e.g. "Appendix B, section 12"."""
    if not photos:
        return ""
    names = list(dict.fromkeys(p["name"] for p in photos))
    ks = sorted({p["k"] for p in photos})
    n = len(photos)
    where = (f"at K = {k_list(ks)}" if n == len(names) * len(ks)
             else f"in {n} fits at K = {k_list(ks)}")
    at_least = sum(p["ours_ll_per_pixel"] >= p["sklearn_ll_per_pixel_in_ours"] for p in photos)
    with_moves = sum(p["ours_ll_per_pixel_split_merge"] >= p["sklearn_ll_per_pixel_in_ours"]
                     for p in photos)
    setting = f" (`SPLIT_MERGE={moves}`)" if moves else ""

    def cases(m):
        return f"{m} case" + ("" if m == 1 else "s")

    text = (f"The benchmark also fits {plural(len(names), 'photograph')} that Python "
            f"packages ship ({', '.join(names)}) {where}, against scikit-learn's "
            f"`GaussianMixture(covariance_type=\"spherical\", n_init=3)` (its other "
            f"settings at scikit-learn's defaults). With `make report`'s settings our "
            f"log-likelihood per pixel is at or above scikit-learn's (its fit scored in this "
            f"model) in {at_least} of {cases(n)}; with split-and-merge moves{setting} in "
            f"{with_moves} of {n}. ")
    lower = [p for p in photos if p["sklearn_error"] < p["ours_error"]
             and not tied(p["sklearn_error"], p["ours_error"])]
    if lower:
        below = sum(p["sklearn_ll_per_pixel_in_ours"] < p["ours_ll_per_pixel"] for p in lower)
        text += (f"Scikit-learn's fit has the lower reconstruction error (by more than "
                 f"{TIE:.0%}) in {len(lower)} of {cases(n)}, {below} of them at a "
                 f"lower log-likelihood than ours. ")
    moved = [p for p in photos if p["ours_ll_per_pixel_split_merge"] > p["ours_ll_per_pixel"]]
    if not moved:
        return text + "The moves found no better optimum in any case."
    gain = max(p["ours_ll_per_pixel_split_merge"] - p["ours_ll_per_pixel"] for p in moved)
    rose = [p for p in moved if p["ours_error_split_merge"] > p["ours_error"]
            and not tied(p["ours_error_split_merge"], p["ours_error"])]
    fell = [p for p in moved if p["ours_error_split_merge"] < p["ours_error"]
            and not tied(p["ours_error_split_merge"], p["ours_error"])]

    def by_up_to(rows, sign):
        ratios = [sign * (p["ours_error_split_merge"] / p["ours_error"] - 1) for p in rows
                  if p["ours_error"] > 0]
        return f" (by up to {max(ratios):.0%})" if ratios else ""

    parts = []
    if rose:
        parts.append(f"rose in {len(rose)}{by_up_to(rose, 1)}")
    if fell:
        parts.append(f"fell in {len(fell)}{by_up_to(fell, -1)}")
    if len(rose) + len(fell) < len(moved):
        parts.append(f"changed by less than {TIE:.0%} in {len(moved) - len(rose) - len(fell)}")
    text += (f"The moves raised the log-likelihood in {cases(len(moved))}, by up to "
             f"{gain:.3f} nats per pixel; there the reconstruction error {k_list(parts)}. ")
    if not rose:
        return text.strip()
    return text + (f"A better optimum of the likelihood is not necessarily a better palette "
                   f"({derivation}).")

