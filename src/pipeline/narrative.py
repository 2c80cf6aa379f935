"""The report's sentences that depend on results, generated from them: each function
takes the loaded numbers and returns Markdown, so no text can contradict the run it
describes. Comparisons are stated as observations with their numbers; two values
within TIE of each other are called equal, never a win."""

from __future__ import annotations

import math

import numpy as np

from pipeline import learned, params, results
from pipeline.results import Sweep
from pipeline.wording import (EXACT, TIE, at, k_list, markdown, num, plural, possessive, ratios,
                              tied, times)

METHODS = ("EM", "k-means", "median cut")
REFERENCE_DB = 30.0  # a round PSNR level the report uses as a reference, nothing more
CHANGE = 10          # RGB distance (of 255) counted as a change of a pixel's colour


def start_name(init: str) -> str:
    """An initialisation as the text names it ("kmeans++" -> "k-means++")."""
    return params.INITS.get(init, init)


def em_to_kmeans(e: dict) -> str:
    """"EM's error is 1.24 to 2.10 times k-means'" over the K of e: where some K are tied
    and others not, the range is of the others, and the sentence says so."""
    r = ratios(e["EM"], e["k-means"])
    differ = [x for x in r if not tied(x, 1.0)]
    if differ and len(differ) < len(r):
        return f"EM's error is {times(differ)} k-means' where the two differ"
    return f"EM's error is {times(r)} k-means'"


def split_merge_clause(m: dict) -> str:
    """", then split-and-merge moves ..." when a run used them, else ""."""
    tries = m.get("split_merge", 0)
    return (f", then split-and-merge moves ({tries} best-ranked tried per round)"
            if tries else "")


def starts(m: dict) -> str:
    """'the best of 3 k-means++ starts' or 'one k-means++ start'."""
    n, name = m["n_init"], start_name(m["init"])
    return f"one {name} start" if n == 1 else f"the best of {n} {name} starts"


def the_start(m: dict) -> str:
    """'the winning start' of several, 'the start' of one."""
    return "the winning start" if m["n_init"] > 1 else "the start"


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


def psnr_k(sweep: Sweep, db: float = REFERENCE_DB):
    """The smallest K of the sweep whose PSNR reaches `db` (an error of 0 does), or None."""
    for k in sweep.ks:
        psnr = sweep.metrics[k]["psnr_db"]
        if psnr is None or psnr >= db:
            return k
    return None


def _group(e: dict, i: int, pick) -> tuple[str, ...]:
    """The methods whose error at index i is the lowest (pick=min) or the highest
    (pick=max), with those within TIE of it."""
    best = pick(e[m][i] for m in METHODS)
    return tuple(m for m in METHODS if tied(e[m][i], best))


def comparison(sweep: Sweep) -> str:
    """Which method is most and least accurate at each K, with the numbers."""
    e, ks = errors(sweep), sweep.ks

    def name(group):
        return group[0] if len(group) == 1 else k_list(group) + f" (within {TIE:.0%})"

    def where(pick, detail):
        groups = {}
        for i, k in enumerate(ks):
            if k not in alike:
                groups.setdefault(_group(e, i, pick), []).append(k)
        return "; ".join(f"{name(g)} at {at(where, ks)}{detail(g, where)}"
                         for g, where in groups.items())

    def worst_detail(group, where):
        idx = [ks.index(k) for k in where]
        if len(group) > 1:
            return ""
        m = group[0]
        if len(idx) == 1:
            others = " and ".join(f"{possessive(o)} {num(e[o][idx[0]])}" for o in METHODS if o != m)
            return f" ({num(e[m][idx[0]])} against {others})"
        return f" ({times([ratios(e[m][i], min(e[o][i] for o in METHODS))[0] for i in idx])} the lowest)"

    alike = [k for i, k in enumerate(ks) if len(_group(e, i, min)) == len(METHODS)]
    text = (f"All three methods are within {TIE:.0%} of each other at {at(alike, ks)}. "
            if alike else "")
    if len(alike) < len(ks):
        text += (f"Lowest error: {where(min, lambda g, w: '')}. "
                 f"Highest error: {where(max, worst_detail)}. ")
    return text + em_to_kmeans(e) + "."


def versus_kmeans(sweep: Sweep) -> tuple[str, list, list, list]:
    """Where k-means' squared error is the lower, EM's, or the two are equal within
    TIE, as a clause, with the three lists of K."""
    e, ks = errors(sweep), sweep.ks
    km = [k for k, a, b in zip(ks, e["EM"], e["k-means"]) if b < a and not tied(a, b)]
    em = [k for k, a, b in zip(ks, e["EM"], e["k-means"]) if a < b and not tied(a, b)]
    same = [k for k in ks if k not in km and k not in em]
    parts = ([f"k-means has the lower squared error at {at(km, ks)}"] if km else []) + \
            ([f"EM at {at(em, ks)}" if km else f"EM has the lower squared error at {at(em, ks)}"]
             if em else []) + \
            ([f"the two are within {TIE:.0%} of each other at {at(same, ks)}"] if same else [])
    return "; ".join(parts), km, em, same


def abstract(sweep: Sweep, bic_sentence: str = "") -> str:
    """At most ~150 words: what was done, the headline numbers, the take-away."""
    info, ks = sweep.image, sweep.ks
    e = errors(sweep)["EM"]
    head = (f"We fit mixtures of K isotropic Gaussians by EM to the colours of a "
            f"{info['width']} $\\times$ {info['height']} photograph ({markdown(info['name'])}, "
            f"{info['distinct_colours']:,} distinct colours), for K = {k_list(ks)}, "
            f"and use each mixture to segment the image and store it as a K-colour "
            f"palette PNG. ")
    last = sweep.metrics[ks[-1]]
    if len(ks) == 1:
        nums = f"The reconstruction error is {num(e[0])} ({last['bits_per_pixel']:.2f} bits per pixel). "
    else:
        verb = "falls" if e[-1] < e[0] else "goes"
        nums = (f"The reconstruction error {verb} from {num(e[0])} at K = {ks[0]} to "
                f"{num(e[-1])} at K = {ks[-1]} ({last['bits_per_pixel']:.2f} bits per pixel). ")
    k30 = psnr_k(sweep)
    if k30 is not None:
        nums += (f"Of these K, the smallest whose PSNR reaches {REFERENCE_DB:.0f} dB is "
                 f"K = {k30} ({sweep.metrics[k30]['bits_per_pixel']:.2f} bits per pixel). ")
    clause, km, em, _ = versus_kmeans(sweep)
    take = (f"At equal K, {clause}. EM fits the density of the colours, not their squared "
            f"error" + (", and pays for it in squared error" if len(km) > len(ks) / 2 else "")
            + "; what it adds is soft, variance-aware membership: a density over the "
              "colours and, for every pixel, a probability of each component. ")
    return (head + nums + take + bic_sentence).strip()


def hero_sentence(figure: str, name: str, shown) -> str:
    """'Figure 1 shows *name* beside its segmentations with K = 4, 16 and 64.', worded
    from the K the figure shows (figures.hero_ks)."""
    return (f"{figure} shows *{markdown(name)}* beside its segmentation"
            f"{'s' if len(shown) > 1 else ''} "
            f"with K = {k_list(shown)}.")


def data_sentence(sweep: Sweep) -> str:
    """How much smaller the data is as distinct colours than as pixels, and the starts."""
    info, m = sweep.image, sweep.metrics[sweep.ks[0]]
    fewer = info["pixels"] / info["distinct_colours"]
    rows = (f"{fewer:.1f} times fewer rows to fit" if fewer >= 1.1 else
            "so nearly every pixel is a row of its own")
    return (f"This image has {info['pixels']:,} pixels and {info['distinct_colours']:,} "
            f"distinct colours, {rows}. Each K was fitted from {starts(m)} (seed {m['seed']})"
            f"{split_merge_clause(m)}, each run stopping when a plain EM step gained less "
            f"than {m['tol']:g} nats per pixel.")


def baselines_sentence(sweep: Sweep) -> str:
    """How the other methods were run (from the baselines' own record)."""
    km = sweep.baselines[sweep.ks[0]]["kmeans"]
    m = sweep.metrics[sweep.ks[0]]
    restarts = km.get("restarts", 1)
    return (f"Every method is scored by the same reconstruction error: EM (each pixel "
            f"labelled by its most probable component); EM's palette with every pixel "
            f"relabelled by its nearest mean; k-means on the colours weighted by their "
            f"counts ({'the best of ' + str(restarts) + ' ' if restarts > 1 else 'one '}"
            f"k-means++ start{'s' if restarts > 1 else ''}, seed {m['seed']}); and "
            f"Pillow's median cut without dithering.")


def seed_spread(seeds: dict, ks) -> str:
    """How much EM's error moves with the seed and with the study's random start, from
    make seeds' sweep of the report's image, at the K both have ("" when none)."""
    seed_ks, seeded, random = results.seed_errors(seeds)
    idx = [seed_ks.index(k) for k in ks if k in seed_ks]
    if not idx:
        return ""
    shown = [seed_ks[i] for i in idx]
    seeded = seeded[:, idx]
    hi, lo = seeded.max(axis=0), seeded.min(axis=0)
    same = [k for k, h, low in zip(shown, hi, lo) if tied(h, low)]
    exact = [k for k, h, low in zip(shown, hi, lo) if k not in same and low < EXACT]
    spread = {k: h / low - 1 for k, h, low in zip(shown, hi, lo) if k not in same + exact}
    parts = []
    if spread:
        widest = max(spread, key=spread.get)
        parts.append(f"EM's error at one K differs by up to {spread[widest]:.1%} between the "
                     f"best and the worst seed (K = {widest})")
    if exact:
        parts.append(f"at K = {k_list(exact)} some seeds give an exact palette (error 0) and "
                     f"others do not")
    if same:
        zero = all(h < EXACT for k, h in zip(shown, hi) if k in same)
        parts.append(f"every seed gives EM the same error at {at(same, shown)} "
                     + ("(0: an exact palette)" if zero else f"(within {TIE:.0%})"))
    text = (f"Over {len(seeded)} seeds (k-means++ starts, the other settings as above), "
            + "; ".join(parts) + ".")
    if random is not None:
        random = random[idx]
        above = [k for k, r, h in zip(shown, random, hi) if r > h and not tied(r, h)]
        below = [k for k, r, low in zip(shown, random, lo) if r < low and not tied(r, low)]
        inside = [k for k in shown if k not in above and k not in below]
        parts = ([f"above every seed's at K = {k_list(above)}"] if above else []) + \
                ([f"below every seed's at K = {k_list(below)}"] if below else []) + \
                ([f"within the seeds' range (or {TIE:.0%} of it) at K = {k_list(inside)}"]
                 if inside else [])
        text += (" From the original study's random start, with the same restarts and "
                 f"tolerance, the error is {k_list(parts)}.")
    return text


def slope_sentence(sweep: Sweep) -> str:
    """The measured rate against K beside the high-resolution rate, and why they differ."""
    if len(sweep.ks) < 3:
        return ""
    e = errors(sweep)["EM"]
    if (e < EXACT).any():
        return ""
    s = slope(sweep.ks, e)
    if not s < 0:
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
                 f"thin sheets (shades of a few surfaces) rather than throughout the cube. ")
    else:
        text += ("The measured rate is slower than $K^{-2/3}$"
                 + (f" ($d \\approx {d_eff:.1f}$ would be needed)" if d_eff < 30 else "")
                 + ": at these K the palette has not reached the regime the theory describes. ")
    return text + ("The theory is an asymptote for large K and an optimal quantiser; "
                   "these K are small and EM's palette is not chosen for squared error, so "
                   "the rate describes this sweep rather than a law.")


def reseeds(sweep: Sweep) -> tuple[int, list[int]]:
    """The number of re-seeded components over the sweep and the K where it happened."""
    where = [k for k in sweep.ks if sweep.metrics[k]["reseeds"]]
    return sum(len(sweep.metrics[k]["reseeds"]) for k in sweep.ks), where


def reseed_marks(sweep: Sweep) -> str:
    """The convergence figure's key to its re-seed marks, from the count of re-seeds."""
    n, _ = reseeds(sweep)
    if n == 0:
        return "No component was re-seeded."
    return ("Red triangle: the re-seed of a component that had lost its weight." if n == 1 else
            f"Red triangles: {plural(n, 're-seed')} of components that had lost their weight.")


def convergence(sweep: Sweep) -> str:
    """Iterations, convergence and re-seeds, as they were."""
    it = sweep.series("iterations").astype(int)
    n, where = reseeds(sweep)
    m0 = sweep.metrics[sweep.ks[0]]
    ran = (f"EM ran {plural(int(it[0]), 'iteration')}" + (" at every K" if len(it) > 1 else "")
           if it.min() == it.max()
           else f"EM ran {it.min()} (K = {sweep.ks[int(it.argmin())]}) to {it.max()} "
                f"iterations (K = {sweep.ks[int(it.argmax())]})")
    text = (f"{ran} on {the_start(m0)}, {starts(m0)}{split_merge_clause(m0)}, stopping "
            f"when a plain EM step gained less than {m0['tol']:g} nats per pixel. ")
    drops = [k for k in sweep.ks if _drops(sweep.metrics[k])]
    text += ("The log-likelihood never decreased between iterations" if not drops else
             f"The log-likelihood decreased outside a re-seed at K = {k_list(drops)}")
    text += ("; no component had to be re-seeded." if n == 0 else
             f"; a component that had lost all its weight was re-seeded "
             f"{'once' if n == 1 else f'{n} times'} (K = {k_list(where)}), where the "
             f"log-likelihood may drop once.")
    stopped = [k for k in sweep.ks if not sweep.metrics[k]["converged"]]
    if stopped:
        text += (f" At K = {k_list(stopped)} EM stopped at max_iter "
                 f"({m0['max_iter']}) before meeting the tolerance.")
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
    if k == 1:
        text = f"At K = 1 the single component has spread $\\sigma$ = {sigma[0]:.3f}. "
    elif k <= 4:
        text = (f"At K = {k} the components have spreads $\\sigma$ = "
                f"{k_list([f'{s:.3f}' for s in sigma])} and weights $\\pi$ = "
                f"{k_list([f'{p:.2f}' for p in pi])}. ")
    else:
        text = (f"At K = {k} the components have spreads $\\sigma$ from {sigma.min():.3f} to "
                f"{sigma.max():.3f} and weights $\\pi$ from {pi.min():.2f} to {pi.max():.2f}. ")
    if k > 1 and sigma.max() >= 2 * sigma.min():
        broad = int(sigma.argmax())
        text += (f"The broadest ($\\sigma$ = {sigma[broad]:.3f}, $\\pi$ = {pi[broad]:.2f}) "
                 f"is {sigma.max() / sigma.min():.1f} times as wide as the narrowest: it "
                 f"takes in colours far from its mean, so regions of the image with quite "
                 f"different colours share its palette colour. ")
    return text + (f"EM's error at this K is {times(ratios(e['EM'][0], e['k-means'][0]))} k-means' "
                   f"({num(e['EM'][0])} against {num(e['k-means'][0])}).")


def certainty_text(sweep: Sweep, k: int) -> str:
    """What the responsibilities say at one K (learned.json), and relabelling."""
    L = sweep.learned[k]
    near, em_error = (sweep.baselines[k]["em_nearest_mean"]["error"],
                      sweep.metrics[k]["reconstruction_error"])
    text = (f"At K = {k} the mean entropy of the responsibilities is "
            f"{L['mean_entropy']:.3f} nats per pixel (at most $\\log {k}$ = "
            f"{np.log(k):.3f}); {100 * L['uncertain_share']:.1f} % of the pixels have no "
            f"component with a responsibility of {learned.SURE} or more, and "
            f"{100 * L['beyond_log2_share']:.2f} % are less sure than an even split between "
            f"two. ")
    if not L["relabelled_share"]:
        return text + "For every pixel the most probable component is the nearest mean."
    text += (f"For {100 * L['relabelled_share']:.2f} % of the pixels the most probable "
             f"component is not the nearest mean: a broad or heavy component claims colours "
             f"closer to a narrow one's mean. ")
    if tied(near, em_error):
        return text + (f"Relabelling them by nearest mean changes the error by less than "
                       f"{TIE:.0%} ({num(near)} against {num(em_error)}).")
    return text + (f"Relabelling them by nearest mean gives an error of {num(near)} instead "
                   f"of {num(em_error)} with the same palette.")


def motion_text(sweep: Sweep, k: int, table: str) -> str:
    """Why the plain run of the motion figure takes more iterations than the fit;
    table: where the fit's iterations are listed, e.g. "Table 1"."""
    m = sweep.learned[k]["motion"]
    fit = sweep.metrics[k]
    one, moves = fit["n_init"] == 1, bool(fit.get("split_merge"))
    counted = ((" on the winning start" if not one else "")
               + (" and its moves" if moves and not one else " with its moves" if moves else ""))
    first = "the fit's start" if one else "the first of the fit's starts"
    return (f"The figure's run is plain EM from {first}: "
            f"{plural(m['iterations'], 'iteration')} to the tolerance. The fit itself "
            f"({table}), {starts(fit)}{split_merge_clause(fit)}, extrapolates between EM "
            f"steps (SQUAREM): {plural(fit['iterations'], 'iteration')}{counted} at this K.")


def changes(segmented: dict, ks) -> str:
    """The share of pixels whose colour moves by more than CHANGE (RGB distance in
    0..255 units) from each K to the next, from the segmented images."""
    if len(ks) < 2:
        return ""
    shares = []
    for a, b in zip(ks, ks[1:]):
        d = np.sqrt(((segmented[a].astype(float) - segmented[b].astype(float)) ** 2).sum(axis=-1))
        shares.append(float((d > CHANGE).mean()))
    text = (f"From one K to the next, the colour of {100 * shares[0]:.1f} % of the pixels "
            f"changes by more than {CHANGE}/255 in RGB distance from K = {ks[0]} to {ks[1]}")
    if len(shares) > 1:
        text += f", and {100 * shares[-1]:.1f} % from K = {ks[-2]} to {ks[-1]}"
    return text + "."


def conclusions(sweep: Sweep, *, choose: str, bic: str, refs: dict) -> list[str]:
    """The take-aways as Markdown bullet points. choose, bic: the choosing section's
    recommendation and BIC sentences; refs: where the report shows the entropy map
    ("entropy"), the spread over seeds on this image ("seeds", absent when not shown)
    and on the study's photograph ("study", absent when not shown), e.g. "Figure 9"."""
    e = errors(sweep)
    clause, km, em, _ = versus_kmeans(sweep)
    nearest = sweep.series("em_nearest_mean.error", "baselines")
    better_nearest = [k for k, a, b in zip(sweep.ks, nearest, e["EM"]) if a < b and not tied(a, b)]
    verdict = ("k-means is the better compressor on this image" if len(km) == len(sweep.ks)
               else "EM is the better compressor on this image" if len(em) == len(sweep.ks)
               else "neither method is better throughout on this image")
    spread = ([f"for this image in {refs['seeds']}"] if refs.get("seeds") else []) + \
             ([f"for the study's photograph in {refs['study']}"] if refs.get("study") else [])
    return [
        choose,
        (f"At equal K, {verdict}: {clause} ({em_to_kmeans(e)}). "
         + (f"Relabelling each pixel by its nearest EM mean lowers EM's error by more than "
            f"{TIE:.0%} at {at(better_nearest, sweep.ks)}: the most probable component is the "
            f"right label for the model, not for the squared error." if better_nearest else
            f"Relabelling each pixel by its nearest EM mean lowers EM's error by more than "
            f"{TIE:.0%} at no K.")),
        ("What EM adds over k-means is soft, variance-aware membership and a density: every "
         f"pixel gets a probability of each component (the entropy map, {refs['entropy']}, "
         "shows where the segmentation is unsure), and the log-likelihood compares fits at "
         "one K. " + bic).strip(),
        ("Limits: one image per report, and one seed per K in the fits above"
         + (f" (the spread over seeds is shown {' and '.join(spread)})" if spread else "")
         + "; isotropic components in RGB, not a perceptual colour space; the error is a "
           "squared RGB distance, not a measure of what the eye sees; pixels are treated as "
           "independent, so the segmentation ignores where a pixel is."),
    ]
