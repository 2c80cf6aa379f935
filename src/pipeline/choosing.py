"""Choosing K on one image: what each K gives (PSNR) and costs (palette PNG bytes, fit
time) beside a JPEG of the same PSNR and BIC, and the recommendation these numbers
support, as Markdown sentences."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

import em
from pipeline import experiment, params, study
from pipeline.narrative import REFERENCE_DB, errors, psnr_k
from pipeline.results import Sweep
from pipeline.wording import TIE, at, k_list, tied, times

JPEG_QUALITIES = (1, *range(5, 100, 5))  # Pillow's quality scale, up to 95 (its highest advised)
CHANNELS = 3


def squared_error(a: np.ndarray, b: np.ndarray, rows: int = 256) -> float:
    """The reconstruction error between two (H, W, 3) uint8 images: the mean over pixels
    of the squared RGB distance, RGB in [0, 1]; exact integer sums, a band of rows at
    a time."""
    total = 0
    for start in range(0, a.shape[0], rows):
        d = a[start:start + rows].astype(np.int32) - b[start:start + rows]
        total += int((d * d).sum(dtype=np.int64))
    return total / (255.0 ** 2 * a.shape[0] * a.shape[1])


def jpeg_curve(rgb: np.ndarray, qualities=JPEG_QUALITIES) -> list[dict]:
    """The image encoded by Pillow's JPEG encoder (its default settings) at each
    quality: {quality, bytes, psnr_db} (psnr_db None when the decoded image is exact)."""
    picture = Image.fromarray(np.ascontiguousarray(rgb))
    out = []
    for quality in qualities:
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=quality)
        with Image.open(buffer) as decoded:
            error = squared_error(rgb, np.asarray(decoded.convert("RGB")))
        out.append({"quality": quality, "bytes": buffer.tell(),
                    "psnr_db": experiment.psnr_db(error)})
    return out


def jpeg_at(curve: list[dict], psnr: float | None) -> dict | None:
    """The smallest JPEG of the curve whose PSNR is at least `psnr` (None: exact), or
    None when no quality reaches it."""
    def reaches(point):
        return point["psnr_db"] is None or (psnr is not None and point["psnr_db"] >= psnr)

    return min((p for p in curve if reaches(p)), key=lambda p: p["bytes"], default=None)


def larger_fits(sweep: Sweep, seeds: dict | None) -> list[dict]:
    """make seeds' fits past the sweep's largest K (for BIC), [] when there are none."""
    fits = (seeds or {}).get("larger_k") or []
    return [f for f in fits if f["k"] > sweep.ks[-1] and f.get("bic") is not None]


def bic_points(sweep: Sweep, larger: list[dict]) -> tuple[list[int], np.ndarray]:
    """K and BIC of the sweep, then of the fits past it."""
    ks = list(sweep.ks) + [f["k"] for f in larger]
    return ks, np.concatenate([sweep.series("bic"), [f["bic"] for f in larger]])


def bic_sentence(sweep: Sweep, larger: list[dict]) -> str:
    """One sentence: where BIC is lowest, or that it falls throughout."""
    ks, bic = bic_points(sweep, larger)
    if len(ks) == 1:
        return ""
    best = int(np.argmin(bic))
    if best < len(ks) - 1:
        return f"BIC is lowest at K = {ks[best]} of the K fitted ({k_list(ks)})."
    every = ("as many components as this image has distinct colours"
             if ks[-1] >= sweep.image["distinct_colours"] else "")
    if np.all(np.diff(bic) < 0):
        return (f"BIC falls at every K up to {ks[-1]}, {every}: it is lowest at the largest "
                f"K possible." if every else f"BIC falls at every K up to {ks[-1]}, so it "
                f"chooses no K on this image; error and size do.")
    return (f"BIC is lowest at the largest K fitted, K = {ks[-1]}, {every}: the largest K "
            f"possible." if every else f"BIC is lowest at the largest K fitted, K = "
            f"{ks[-1]}, so it shows no minimum up to there; error and size choose K.")


def bic_text(sweep: Sweep, larger: list[dict], table: str) -> str:
    """Whether BIC has a minimum up to the largest palette, and what that means."""
    ks, bic = bic_points(sweep, larger)
    if len(ks) == 1:
        return f"BIC needs more than one K to compare; this report fitted K = {ks[0]} only."
    best = int(np.argmin(bic))
    if best == 0:
        return (f"BIC ({table}) is lowest at the smallest K fitted, K = {ks[0]}: by BIC, "
                f"more components do not pay for their parameters on this image.")
    if best < len(ks) - 1:
        return (f"BIC ({table}) is lowest at K = {ks[best]} of the K fitted ({k_list(ks)}): "
                f"by BIC, about that many components describe this image's colours (K "
                f"between those fitted were not tried).")
    # lowest at the largest K fitted: no minimum found up to there
    n, colours = sweep.image["pixels"], sweep.image["distinct_colours"]
    falls = bool(np.all(np.diff(bic) < 0))
    if falls:
        text = (f"BIC ({table}) falls at every K of the sweep, from K = {sweep.ks[0]} to "
                f"{sweep.ks[-1]}" + (f" and, from a fit of `make seeds`, at K = "
                                     f"{k_list([f['k'] for f in larger])}" if larger else ""))
    else:
        rises = [b for b, x, y in zip(ks[1:], bic, bic[1:]) if y >= x]
        text = (f"BIC ({table}) does not fall at every K (it rises at K = {k_list(rises)}) "
                f"but is lowest at the largest K fitted, K = {ks[-1]}"
                + (" (a fit of `make seeds`)" if larger else ""))
    if ks[-1] >= colours:
        text += ((f": it is lowest at K = {ks[-1]}" if falls else "")
                 + ", as many components as the image has distinct colours and the most a "
                   "fit can use. ")
    else:
        text += (f": {'it has' if falls else 'it shows'} no minimum for K $\\le$ {ks[-1]} "
                 f"on this image")
        if ks[-1] >= params.MAX_K:
            text += ", the most colours a palette PNG holds. "
        else:
            limit = min(params.MAX_K, colours)
            more = study.past_sweep(ks, study.BIC_KS, colours)
            text += (f". Whether it has one for K up to {limit}, "
                     + ("the most colours a palette PNG holds" if limit == params.MAX_K else
                        "this image's number of distinct colours")
                     + ", is not measured here"
                     + (f" (`make seeds` with this image adds a fit at K = {k_list(more)})"
                        if more else "") + ". ")
    per = em.n_parameters(2, CHANNELS) - em.n_parameters(1, CHANNELS)
    ll = np.concatenate([sweep.series("log_likelihood_per_pixel"),
                         [f["ll_per_pixel"] for f in larger]]) * n
    gains = np.diff(ll) / np.diff(ks)
    low, high = f"{gains.min():,.0f}", f"{gains.max():,.0f}"
    text += (f"Each component costs {per} parameters, which BIC charges "
             f"{per * np.log(n) / 2:.1f} nats of log-likelihood at {n:,} pixels; between "
             f"consecutive K each added component "
             f"{'raised' if gains.min() > 0 else 'changed'} the log-likelihood by "
             + (f"{low} nats. " if low == high else f"{low} to {high} nats. "))
    if not falls:
        return text + "K is chosen by the error and the size one accepts."
    if ks[-1] >= colours:
        text += ("Every added component fits the image's few exact colours more closely, "
                 "up to as many components as colours")
    else:
        text += ("The colours of this image are not a few Gaussian clusters, so more "
                 "components keep describing their distribution better and BIC keeps "
                 "asking for more")
    return text + (": BIC says how many components the colour density supports, not how "
                   "many colours the picture needs. K is chosen by the error and the size "
                   "one accepts.")


def png_against_jpeg(sweep: Sweep, curve: list[dict]) -> tuple[dict, dict]:
    """Per K where a JPEG of the curve reaches the palette's PSNR, the palette PNG's bytes
    over that JPEG's ({K: ratio}), and those K in three groups: {"JPEG": [K where the
    JPEG is the smaller], "tied": [K where the two are within TIE], "PNG": [...]}."""
    m = sweep.metrics
    sizes = {k: jpeg_at(curve, m[k]["psnr_db"]) for k in sweep.ks}
    ratio = {k: m[k]["indexed_png_bytes"] / sizes[k]["bytes"] for k in sweep.ks if sizes[k]}
    groups = {"JPEG": [k for k, r in ratio.items() if r > 1 and not tied(r, 1)],
              "tied": [k for k, r in ratio.items() if tied(r, 1)],
              "PNG": [k for k, r in ratio.items() if r < 1 and not tied(r, 1)]}
    return ratio, groups


def sizes_clause(ratio: dict, groups: dict, ks) -> str:
    """Where the JPEG of the same PSNR is the smaller file, where the two are tied and
    where the palette PNG is the smaller (png_against_jpeg), each with its K and ratio."""
    def of(group):
        return times([ratio[k] for k in groups[group]])

    parts = ([f"a JPEG of the same PSNR is smaller at {at(groups['JPEG'], ks)} (the palette "
              f"PNG is {of('JPEG')} its size)"] if groups["JPEG"] else []) + \
            ([f"the palette PNG and a JPEG of the same PSNR are within {TIE:.0%} of each "
              f"other's size at {at(groups['tied'], ks)}"] if groups["tied"] else []) + \
            ([f"the palette PNG is smaller than a JPEG of the same PSNR at "
              f"{at(groups['PNG'], ks)} ({of('PNG')} its size)"] if groups["PNG"] else [])
    return k_list(parts) if parts else ""


def recommendation(sweep: Sweep, curve: list[dict], table: str, learned_ref: str) -> str:
    """Which K, and when a JPEG or k-means serves better, from the numbers of the table."""
    ks, m = sweep.ks, sweep.metrics
    info = sweep.image
    k30 = psnr_k(sweep)
    if k30 is not None:
        p = m[k30]
        text = (f"For a palette image whose PSNR reaches {REFERENCE_DB:.0f} dB (a round "
                f"reference level; PSNR only approximates what the eye sees), the smallest K "
                f"of the sweep is K = {k30}: {p['indexed_png_bytes']:,} bytes, "
                f"{p['bits_per_pixel']:.2f} bits per pixel, "
                f"{times(p['indexed_png_bytes'] / info['file_bytes'])} the input file. ")
    else:
        psnr = m[ks[-1]]["psnr_db"]
        text = (f"No K of the sweep reaches {REFERENCE_DB:.0f} dB of PSNR (a round reference "
                f"level); the largest, K = {ks[-1]}, gives {psnr:.1f} dB. ")
    ratio, groups = png_against_jpeg(sweep, curve)
    if ratio:
        lead = ("keep a JPEG: " if groups["JPEG"] and not groups["PNG"] else
                "a palette saves nothing: " if not groups["PNG"] else "")
        text += f"For storage alone ({table}), {lead}{sizes_clause(ratio, groups, ks)}. "
    missing = [k for k in ks if k not in ratio]
    if missing:
        text += (f"No JPEG up to quality {curve[-1]['quality']} reaches the PSNR of "
                 f"K = {k_list(missing)}. ")
    e = errors(sweep)
    km = [k for k, a, b in zip(ks, e["EM"], e["k-means"]) if b < a and not tied(a, b)]
    with np.errstate(divide="ignore"):
        gain = 10 * np.log10(e["EM"] / e["k-means"])  # k-means' PSNR minus EM's, in dB
    text += ("A palette is worth its size when a fixed set of colours is the point (an "
             "indexed format or display, or the segmentation itself). ")
    if km:
        gains = gain[[ks.index(k) for k in km]]
        exact = [k for k, g in zip(km, gains) if not np.isfinite(g)]
        text += (f"For the lowest squared error at a given K, use k-means: its PSNR is "
                 f"higher at {at(km, ks)}"
                 + (f", by {_db(gains[np.isfinite(gains)])}" if np.isfinite(gains).any() else "")
                 + (f" (its error is 0 at K = {k_list(exact)})" if exact else "") + ". ")
    else:
        text += (f"EM's squared error is as low as k-means' (within {TIE:.0%}) or lower at "
                 f"every K here. ")
    return text + (f"EM's palette is worth it when the colours' weights and spreads and "
                   f"each pixel's probabilities are wanted ({learned_ref}).")


def summary(sweep: Sweep, curve: list[dict]) -> str:
    """The recommendation in one sentence, for the conclusions."""
    m = sweep.metrics
    k30 = psnr_k(sweep)
    text = (f"Choosing K: a PSNR of {REFERENCE_DB:.0f} dB takes K = {k30} "
            f"({m[k30]['indexed_png_bytes']:,} bytes, {m[k30]['bits_per_pixel']:.2f} bits per "
            f"pixel)" if k30 is not None else
            f"Choosing K: no K of the sweep reaches {REFERENCE_DB:.0f} dB of PSNR")
    ratio, groups = png_against_jpeg(sweep, curve)
    if ratio:
        text += "; for storage alone, " + sizes_clause(ratio, groups, sweep.ks)
        if not groups["PNG"]:
            text += ", so a palette pays only where a fixed set of colours is the point"
    return text + "."


def file_kind(path) -> str:
    """The input file's format as the text names it: 'JPEG', 'PNG', ..."""
    suffix = str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else ""
    return "JPEG" if suffix in ("jpg", "jpeg") else suffix.upper() or "file"


def _db(values) -> str:
    """'0.05 to 1.23 dB': as many decimals as the smallest (positive) value needs to
    show a digit, at least one."""
    decimals = max(1, -math.floor(math.log10(np.min(values))))
    low, high = f"{np.min(values):.{decimals}f}", f"{np.max(values):.{decimals}f}"
    return f"{low} dB" if low == high else f"{low} to {high} dB"


def table_rows(sweep: Sweep, curve: list[dict], larger: list[dict]) -> list[dict]:
    """One row per K (and per fit past the sweep) with what the choosing table shows;
    None where a value was not measured."""
    e = errors(sweep)
    rows = []
    for i, k in enumerate(sweep.ks):
        m = sweep.metrics[k]
        jpeg = jpeg_at(curve, m["psnr_db"])
        rows.append({"k": k, "psnr_db": m["psnr_db"], "error": m["reconstruction_error"],
                     "png_bytes": m["indexed_png_bytes"], "bits_per_pixel": m["bits_per_pixel"],
                     "of_input": m["indexed_png_bytes"] / sweep.image["file_bytes"],
                     "jpeg_bytes": jpeg["bytes"] if jpeg else None,
                     "kmeans_psnr_db": experiment.psnr_db(e["k-means"][i]),
                     "fit_seconds": m["timing"]["fit_seconds"], "bic": m["bic"]})
    for f in larger:
        rows.append({"k": f["k"], "psnr_db": experiment.psnr_db(f["error"]),
                     "error": f["error"], "png_bytes": None, "bits_per_pixel": None,
                     "of_input": None, "jpeg_bytes": None, "kmeans_psnr_db": None,
                     "fit_seconds": None, "bic": f["bic"]})
    return rows
