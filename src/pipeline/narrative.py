"""The report's sentences that depend on results, generated from them: each function
takes the loaded numbers and returns Markdown, so no text can contradict the run it
describes. Comparisons are stated as observations with their numbers."""

from __future__ import annotations

import math

import numpy as np

from pipeline import params, results
from pipeline.results import Sweep

METHODS = ("EM", "k-means", "median cut")


def start_name(init: str) -> str:
    """An initialisation as the text names it ("kmeans++" -> "k-means++")."""
    return params.INITS.get(init, init)


VISIBLE_DB = 30.0   # PSNR above which a palette image is commonly hard to tell apart


def split_merge_clause(m: dict) -> str:
    """", then split-and-merge moves ..." when a run used them, else ""."""
    tries = m.get("split_merge", 0)
    return (f", then split-and-merge moves ({tries} best-ranked tried per round)"
            if tries else "")


def k_list(ks) -> str:
    """'2', '2 and 4', '2, 4 and 8'."""
    ks = [str(k) for k in ks]
    return ks[0] if len(ks) == 1 else ", ".join(ks[:-1]) + " and " + ks[-1]


def errors(sweep: Sweep) -> dict[str, np.ndarray]:
    """Reconstruction error per K of EM (MAP labels), k-means and median cut."""
    return {"EM": sweep.series("reconstruction_error"),
            "k-means": sweep.series("kmeans.error", "baselines"),
            "median cut": sweep.series("median_cut.error", "baselines")}


def slope(ks, values) -> float:
    """Least-squares slope of log(values) against log(K): values ~ K^slope."""
    if len(ks) < 2:
        return math.nan
    return float(np.polyfit(np.log(ks), np.log(values), 1)[0])


def psnr_k(sweep: Sweep, db: float = VISIBLE_DB):
    """The smallest K whose PSNR reaches `db`, or None."""
    for k in sweep.ks:
        psnr = sweep.metrics[k]["psnr_db"]
        if psnr is not None and psnr >= db:
            return k
    return None


def ranking(sweep: Sweep) -> dict[int, list[str]]:
    """The three methods at each K, lowest error first."""
    e = errors(sweep)
    return {k: sorted(METHODS, key=lambda m: e[m][i]) for i, k in enumerate(sweep.ks)}


def comparison(sweep: Sweep) -> str:
    """Which method is most and least accurate at each K, with the numbers."""
    order = ranking(sweep)
    e = errors(sweep)
    best = {m: [k for k in sweep.ks if order[k][0] == m] for m in METHODS}
    worst = {m: [k for k in sweep.ks if order[k][-1] == m] for m in METHODS}

    def detail(m, ks):
        idx = [sweep.ks.index(k) for k in ks]
        if len(ks) == 1:
            others = " and ".join(f"{o} {e[o][idx[0]]:.4f}" for o in METHODS if o != m)
            return f" ({e[m][idx[0]]:.4f} against {others})"
        ratio = [e[m][i] / e[order[sweep.ks[i]][0]][i] for i in idx]
        return f" ({min(ratio):.2f} to {max(ratio):.2f} times the lowest)"

    ratio = e["EM"] / e["k-means"]
    lowest = "; ".join(f"{m} at {'every K' if len(ks) == len(sweep.ks) else 'K = ' + k_list(ks)}"
                       for m, ks in best.items() if ks)
    highest = "; ".join(f"{m} at K = {k_list(ks)}{detail(m, ks)}"
                        for m, ks in worst.items() if ks)
    span = (f"{ratio[0]:.2f}" if len(ratio) == 1 else f"{ratio.min():.2f} to {ratio.max():.2f}")
    return (f"Lowest error: {lowest}. Highest error: {highest}. "
            f"EM's error is {span} times k-means'.")


def slope_sentence(sweep: Sweep) -> str:
    """The measured rate against K beside the high-resolution rate, and why they differ."""
    if len(sweep.ks) < 3:
        return ""
    s = slope(sweep.ks, errors(sweep)["EM"])
    if s >= 0:
        return (f"On log-log axes the error does not fall over K = {sweep.ks[0]} to "
                f"{sweep.ks[-1]} (slope {s:.2f}); high-resolution quantisation theory's "
                f"$K^{{-2/3}}$ describes large K and an optimal quantiser, not this sweep.")
    d_eff = 2.0 / -s
    text = (f"On log-log axes the error falls as about $K^{{{s:.2f}}}$ over K = "
            f"{sweep.ks[0]} to {sweep.ks[-1]}: each doubling of K divides it by "
            f"{2 ** -s:.2f}. High-resolution quantisation theory gives $K^{{-2/d}}$ for data "
            f"that fill a $d$-dimensional region, $K^{{-2/3}}$ for colours spread through "
            f"the RGB cube. ")
    if d_eff < 3:
        text += (f"The measured rate corresponds to $d \\approx {d_eff:.1f}$, faster than "
                 f"$K^{{-2/3}}$, consistent with colours that lie close to a few curves and "
                 f"thin sheets (shades of a few surfaces) rather than throughout the cube, "
                 f"so that each new colour has less volume to cover. ")
    else:
        text += (f"The measured rate is slower than $K^{{-2/3}}$ ($d \\approx {d_eff:.1f}$ "
                 f"would be needed): at these K the palette has not yet reached the "
                 f"regime the theory describes. ")
    return text + ("The theory is also an asymptote for large K and an optimal quantiser; "
                   "these K are small and EM's palette is not chosen for squared error, so "
                   "the rate describes this sweep rather than a law.")


def compression(sweep: Sweep, input_suffix: str) -> str:
    """Bits per pixel and the palette PNG's size against raw RGB and the input file."""
    info = sweep.image
    first, last = sweep.metrics[sweep.ks[0]], sweep.metrics[sweep.ks[-1]]
    raw = 3 * info["pixels"]
    text = (f"The palette PNG takes {first['bits_per_pixel']:.2f} bits per pixel at "
            f"K = {sweep.ks[0]} and {last['bits_per_pixel']:.2f} at K = {sweep.ks[-1]} "
            f"({last['indexed_png_bytes']:,} bytes, {raw / last['indexed_png_bytes']:.1f} "
            f"times smaller than {raw:,} bytes of raw 24-bit RGB). ")
    input_bytes = info["file_bytes"]
    ratio = last["indexed_png_bytes"] / input_bytes
    kind = "JPEG " if input_suffix.lower() in (".jpg", ".jpeg") else ""
    text += (f"The {kind}input file takes {input_bytes:,} bytes "
             f"({8 * input_bytes / info['pixels']:.2f} bits per pixel): the K = {sweep.ks[-1]} "
             + (f"PNG is {ratio:.1f} times larger. " if ratio > 1 else
                f"PNG is {1 / ratio:.1f} times smaller. "))
    smaller = [k for k in sweep.ks if sweep.metrics[k]["indexed_png_bytes"] < input_bytes]
    text += (f"The PNG is smaller than the input at K = {k_list(smaller)}" if smaller
             else "The PNG is larger than the input at every K")
    if kind:
        text += "; unlike the lossy JPEG it stores its palette image exactly"
    return text + "."


def reseeds(sweep: Sweep) -> tuple[int, list[int]]:
    """The number of re-seeded components over the sweep and the K where it happened."""
    where = [k for k in sweep.ks if sweep.metrics[k]["reseeds"]]
    return sum(len(sweep.metrics[k]["reseeds"]) for k in sweep.ks), where


def convergence(sweep: Sweep) -> str:
    """Iterations, convergence and re-seeds, as they were."""
    it = sweep.series("iterations").astype(int)
    n, where = reseeds(sweep)
    m0 = sweep.metrics[sweep.ks[0]]
    text = (f"EM ran {it.min()} (K = {sweep.ks[int(it.argmin())]}) to {it.max()} iterations "
            f"(K = {sweep.ks[int(it.argmax())]}), best of {m0['n_init']} {start_name(m0['init'])} starts"
            f"{split_merge_clause(m0)}, stopping when the gain fell below {m0['tol']:g} per pixel. ")
    drops = [k for k in sweep.ks if _drops(sweep.metrics[k])]
    text += ("The log-likelihood never decreased between iterations" if not drops else
             f"The log-likelihood decreased outside a re-seed at K = {k_list(drops)}")
    text += (f"; no component had to be re-seeded." if n == 0 else
             f"; a component that had lost all its weight was re-seeded {n} "
             f"time{'s' if n > 1 else ''} (K = {k_list(where)}), where the log-likelihood "
             f"may drop once.")
    stopped = [k for k in sweep.ks if not sweep.metrics[k]["converged"]]
    if stopped:
        text += f" K = {k_list(stopped)} stopped at max_iter before meeting the tolerance."
    return text


def _drops(m: dict) -> bool:
    h = np.asarray(m["history"], dtype=float)
    steps = np.diff(h)
    allowed = set(m["reseeds"]) | set(m.get("moves", ()))  # iterations that may drop
    return any(s < -1e-12 * abs(h[i]) and i + 1 not in allowed for i, s in enumerate(steps))


def smallest_k(sweep: Sweep) -> str:
    """What the mixture did with the fewest colours, from its fitted parameters."""
    k = sweep.ks[0]
    model = sweep.metrics[k]["model"]
    sigma = np.sqrt(model["variances"])
    pi = np.asarray(model["weights"])
    e = errors(sweep)
    text = (f"At K = {k} the mixture's components have spreads $\\sigma$ = "
            f"{', '.join(f'{s:.3f}' for s in sigma)} and weights $\\pi$ = "
            f"{', '.join(f'{p:.2f}' for p in pi)}. ")
    if k > 1 and sigma.max() > 2 * sigma.min():
        broad = int(sigma.argmax())
        text += (f"The broadest component ($\\sigma$ = {sigma[broad]:.3f}, $\\pi$ = "
                 f"{pi[broad]:.2f}) is more than twice as wide as the narrowest: it takes in "
                 f"colours far from its mean, so distinct regions of the image whose colours "
                 f"fall in it share one palette colour; ")
    text += (f"its error is {e['EM'][0] / e['k-means'][0]:.2f} times k-means' at this K "
             f"({e['EM'][0]:.4f} against {e['k-means'][0]:.4f}).")
    return text


def enough_k(sweep: Sweep) -> str:
    """Which K is enough for this image: by error (PSNR) and by bits per pixel."""
    k30 = psnr_k(sweep)
    psnr = sweep.series("psnr_db")
    gains = np.diff(psnr)
    text = ""
    if k30 is not None:
        m = sweep.metrics[k30]
        text += (f"The PSNR first reaches {VISIBLE_DB:.0f} dB, a common threshold for "
                 f"differences that are hard to see, at K = {k30} ({m['psnr_db']:.1f} dB, "
                 f"{m['bits_per_pixel']:.2f} bits per pixel). ")
    else:
        text += (f"No K of the sweep reaches {VISIBLE_DB:.0f} dB (the largest, K = "
                 f"{sweep.ks[-1]}, gives {psnr[-1]:.1f} dB). ")
    if len(gains):
        bpp = np.diff(sweep.series("bits_per_pixel"))
        text += (f"Each step of the sweep adds {gains.min():.1f} to {gains.max():.1f} dB "
                 f"of PSNR for {bpp.min():.2f} to {bpp.max():.2f} more bits per pixel.")
    return text


def visible_changes(segmented: dict, ks, threshold: float = 10.0) -> str:
    """By eye: the share of pixels whose colour moves by more than `threshold` (RGB
    distance in 0..255 units) from each K to the next, from the segmented images."""
    if len(ks) < 2:
        return ""
    shares = []
    for a, b in zip(ks, ks[1:]):
        d = np.sqrt(((segmented[a].astype(float) - segmented[b].astype(float)) ** 2).sum(axis=-1))
        shares.append(float((d > threshold).mean()))
    last = f"{100 * shares[-1]:.1f} %"
    return (f"By eye: from one K to the next, the colour of {100 * shares[0]:.0f} % of the pixels "
            f"moves by more than {threshold:g}/255 in RGB distance at K = {ks[0]} to {ks[1]}, "
            f"and {last} at K = {ks[-2]} to {ks[-1]} (the segmentations above show where).")


def abstract(sweep: Sweep) -> str:
    """At most ~150 words: what was done, the headline numbers, the take-away."""
    info = sweep.image
    e = errors(sweep)
    k30 = psnr_k(sweep)
    ratio = e["EM"] / e["k-means"]
    head = (f"We fit mixtures of K isotropic Gaussians by EM to the colours of a "
            f"{info['width']} $\\times$ {info['height']} photograph ({info['name']}, "
            f"{info['distinct_colours']:,} distinct colours), for K = {k_list(sweep.ks)}, "
            f"and use each mixture to segment the image and store it as a K-colour "
            f"palette PNG. ")
    nums = (f"The reconstruction error falls from {e['EM'][0]:.4f} at K = {sweep.ks[0]} to "
            f"{e['EM'][-1]:.5f} at K = {sweep.ks[-1]} "
            f"({sweep.metrics[sweep.ks[-1]]['bits_per_pixel']:.1f} bits per pixel). ")
    if k30 is not None:
        nums += (f"The PSNR first reaches {VISIBLE_DB:.0f} dB at K = {k30} "
                 f"({sweep.metrics[k30]['bits_per_pixel']:.1f} bits per pixel). ")
    lower = int((ratio > 1).sum())
    take = (f"At equal K, k-means has the lower squared error at {lower} of {len(sweep.ks)} "
            f"K (EM's error is {ratio.min():.2f} to {ratio.max():.2f} times k-means'). EM "
            f"fits the density of the colours, not their squared error"
            + (", and pays for it in squared error" if lower > len(sweep.ks) / 2 else "")
            + "; it gives what k-means cannot, a spread and a weight per colour and a "
              "measure of how sure each pixel's label is.")
    return head + nums + take


def data_sentence(sweep: Sweep) -> str:
    """How much smaller the data is as distinct colours than as pixels, and the starts."""
    info, m = sweep.image, sweep.metrics[sweep.ks[0]]
    return (f"This image has {info['pixels']:,} pixels but {info['distinct_colours']:,} "
            f"distinct colours, {info['pixels'] / info['distinct_colours']:.1f} times fewer "
            f"rows to fit. Each K was fitted from {m['n_init']} {start_name(m['init'])} starts (seed "
            f"{m['seed']}){split_merge_clause(m)}, stopping when the gain fell below "
            f"{m['tol']:g} per pixel.")


def seed_spread(seeds: dict) -> str:
    """How much EM's error moves with the seed and with the study's random start, from
    make seeds' sweep of the report's image."""
    ks, seeded, random = results.seed_errors(seeds)
    spread = seeded.max(axis=0) / seeded.min(axis=0) - 1
    widest = int(np.argmax(spread))
    text = (f"Over {len(seeded)} seeds (k-means++ starts, the other settings as above), "
            f"EM's error at one K differs by up to {spread[widest]:.0%} between the best "
            f"and the worst seed (K = {ks[widest]}).")
    if random is not None:
        above = [k for k, r, hi in zip(ks, random, seeded.max(axis=0)) if r > hi]
        below = [k for k, r, lo in zip(ks, random, seeded.min(axis=0)) if r < lo]
        text += (" From the original study's random start the error is above every seed's "
                 + (f"at K = {k_list(above)}" if above else "at no K")
                 + (f" and below every seed's at K = {k_list(below)}" if below else "") + ".")
    return text


def study_text(data: dict) -> str:
    """Ours against the published table on the study's photograph, per K, and what the
    study's random start changes."""
    pub = {row["k"]: row for row in data["published"]}
    seeded, random = results.study_runs(data)
    ks = [f["k"] for f in seeded[0]["fits"] if f["k"] in pub]
    idx = {f["k"]: i for i, f in enumerate(seeded[0]["fits"])}
    med = {k: float(np.median([r["fits"][idx[k]]["error"] for r in seeded])) for k in ks}
    hi = {k: max(r["fits"][idx[k]]["error"] for r in seeded) for k in ks}
    below = [k for k in ks if med[k] <= pub[k]["error"]]
    above = [k for k in ks if k not in below]
    text = (f"Over {len(seeded)} seeds, our median error is at or below the published one at "
            + (f"every K" if not above else
               (f"K = {k_list(below)}" if below else "no K")
               + f" and above it at K = {k_list(above)} ("
               + ", ".join(f"{med[k] / pub[k]['error'] - 1:+.1%}" for k in above) + ")")
            + "; the worst seed is above it at "
            + (f"K = {k_list(worst)}" if (worst := [k for k in ks if hi[k] > pub[k]["error"]])
               else "no K") + ". ")
    ours_it = sum(seeded[0]["fits"][idx[k]]["iterations"] for k in ks)
    pub_it = sum(pub[k]["iterations"] for k in ks)
    text += (f"Seed 0 used {ours_it:,} iterations over these K against the study's "
             f"{pub_it:,} ({ours_it / pub_it:.0%}). ")
    spread = max(abs(pub[k]["error"] - pub[k]["error_printed"]) /
                 min(pub[k]["error"], pub[k]["error_printed"]) for k in ks)
    text += (f"The study's own table and printed run differ by up to {spread:.0%} at the "
             f"same K: differences of that size are EM's run-to-run variation. ")
    if random:
        rnd = {f["k"]: f for f in random["fits"]}
        worse = [k for k in ks if rnd[k]["error"] > med[k]]
        it_r = sum(rnd[k]["iterations"] for k in ks)
        text += (f"From the study's random start (same restarts and tolerance) the error is "
                 f"above our k-means++ median at "
                 + (f"K = {k_list(worse)}" if worse else "no K")
                 + f", with {it_r:,} iterations in total against {ours_it:,} from k-means++ "
                 f"starts (seed 0).")
    return text


def speed_text(entry: dict) -> str:
    """The speed-up split into fewer rows and a faster kernel per row, and the time to
    convergence at the log-likelihood each side reached."""
    rows = [r for r in entry["rows"] if isinstance(r, dict)]

    def ratios(a, b):
        return [r[a] / r[b] for r in rows if r.get(a) and r.get(b)]

    fewer = ratios("sklearn_rows", "ours_rows")
    per_row = ratios("sklearn_us_per_row", "ours_us_per_row")
    per_iter = ratios("sklearn_ms_per_iter", "ours_ms_per_iter")
    # not "(a)" first: Markdown would read a paragraph that opens so as a list
    text = "On this image: " if fewer or per_row else ""
    if fewer:
        text += (f"(a) Rows: scikit-learn fits every pixel, ours the distinct colours "
                 f"weighted by their counts, {min(fewer):.1f} times fewer rows. ")
    if per_row:
        text += (f"(b) Per row, scikit-learn takes {min(per_row):.1f} to {max(per_row):.1f} "
                 f"times our kernel's time. ")
    if per_iter:
        text += (f"Together, scikit-learn's iteration takes {min(per_iter):.1f} to "
                 f"{max(per_iter):.1f} times ours. ")
    conv = [r for r in rows if r.get("ours_seconds") and r.get("sklearn_seconds")
            and r.get("ours_ll_per_pixel") is not None and r.get("sklearn_ll_per_pixel") is not None]
    if conv:
        at_least = [r["k"] for r in conv if r["ours_ll_per_pixel"] >= r["sklearn_ll_per_pixel"] - 1e-4]
        text += (f"To convergence, ours takes {min(r['ours_seconds'] for r in conv):.2f} to "
                 f"{max(r['ours_seconds'] for r in conv):.2f} s and scikit-learn "
                 f"{min(r['sklearn_seconds'] for r in conv):.2f} to "
                 f"{max(r['sklearn_seconds'] for r in conv):.2f} s; our log-likelihood per "
                 f"pixel is equal or higher (within 1e-4) at "
                 + (f"K = {k_list(at_least)}" if at_least else "no K") + ".")
    return text.strip()


def optimum_text(photos: list[dict], moves: int | None) -> str:
    """What a better optimum of the likelihood does to the palette, from the benchmark's
    fits of the package photographs (results.bench_photos); "" without them."""
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
    cases = lambda m: f"{m} case" + ("" if m == 1 else "s")  # noqa: E731
    text = (f"The benchmark also fits {len(names)} photographs that Python packages ship "
            f"({', '.join(names)}) {where}. With `make report`'s settings our "
            f"log-likelihood per pixel is at or above scikit-learn's (its fit scored in this "
            f"model) in {at_least} of {cases(n)}; with split-and-merge moves{setting} in "
            f"{with_moves} of {n}. ")
    lower = [p for p in photos if p["sklearn_error"] < p["ours_error"]]
    if lower:
        below = sum(p["sklearn_ll_per_pixel_in_ours"] < p["ours_ll_per_pixel"] for p in lower)
        text += (f"Scikit-learn's fit has the lower reconstruction error in {len(lower)} of "
                 f"{cases(n)}, {below} of them at a lower log-likelihood than ours. ")
    moved = [p for p in photos if p["ours_ll_per_pixel_split_merge"] > p["ours_ll_per_pixel"]]
    if not moved:
        return text + "The moves found no better optimum in any case."
    gain = max(p["ours_ll_per_pixel_split_merge"] - p["ours_ll_per_pixel"] for p in moved)
    rose = [p for p in moved if p["ours_error_split_merge"] > p["ours_error"]]
    fell = [p for p in moved if p["ours_error_split_merge"] < p["ours_error"]]

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
        parts.append(f"did not change in {len(moved) - len(rose) - len(fell)}")
    text += (f"The moves raised the log-likelihood in {cases(len(moved))}, by up to "
             f"{gain:.3f} nats per pixel; there the reconstruction error {k_list(parts)}. ")
    if not rose:
        return text.strip()
    return text + ("A better optimum of the likelihood is not necessarily a better palette "
                   "(Appendix B, section 12).")


def conclusions(sweep: Sweep, segmented: dict, study_shown: bool = False,
                seeds_shown: bool = False) -> list[str]:
    """The take-aways as Markdown bullet points; segmented: {K: (H, W, 3) uint8};
    study_shown, seeds_shown: whether the report shows the spread over seeds on the
    study's photograph, on this image."""
    e = errors(sweep)
    ratio = e["EM"] / e["k-means"]
    nearest = sweep.series("em_nearest_mean.error", "baselines")
    better_nearest = [k for k, a, b in zip(sweep.ks, nearest, e["EM"]) if a < b]
    points = [enough_k(sweep) + " " + visible_changes(segmented, sweep.ks),
              (f"As a compressor at equal K, "
               + ("k-means is the better choice on this image: its "
                  if (ratio > 1).all() else "EM is the better choice on this image: k-means' "
                  if not (ratio > 1).any() else
                  "neither method is better throughout on this image: k-means' ")
               + f"squared error is lower at {int((ratio > 1).sum())} of {len(sweep.ks)} K "
               f"(EM's is {ratio.min():.2f} to {ratio.max():.2f} times k-means'). Relabelling "
               f"each pixel by its nearest EM mean lowers EM's error at "
               + (f"K = {k_list(better_nearest)}" if better_nearest else "no K")
               + ": the most probable component is the right label for the model, not for "
               f"the squared error."),
              ("EM's soft, variance-aware model helps where the question is about the "
               "colours' distribution rather than their squared error: each colour gets a "
               "weight and a spread, every pixel a probability of each label (the entropy map "
               "shows where the segmentation is unsure), and the log-likelihood and BIC "
               "compare K on a common scale."),
              (f"Limits: one image per report and one seed per K in the runs above"
               + (" (" + " and ".join(
                   (["the error curve's band shows the spread over seeds on this image"]
                    if seeds_shown else [])
                   + (["the study section the spread over seeds on the study's photograph"]
                      if study_shown else [])) + ")" if seeds_shown or study_shown else "")
               + f"; isotropic components in "
               f"RGB, not a perceptual colour space; the error is a squared RGB distance, "
               f"not a measure of what the eye sees; pixels are treated as independent, so "
               f"the segmentation ignores where a pixel is.")]
    return points
