"""The HTML report's K slider: one range input that switches the segmented image and
its palette between the K of the sweep. Everything is inline (images as data: URIs,
a few lines of script), so the page needs no network."""

from __future__ import annotations

import base64
import html

import numpy as np

SCRIPT = """(function () {
  var box = document.getElementById("k-slider"), range = box.querySelector("input"),
      shown = box.querySelector("output"), frames = box.querySelectorAll("figure");
  function update() {
    for (var i = 0; i < frames.length; i++) frames[i].hidden = (i != range.value);
    shown.textContent = frames[range.value].getAttribute("data-k");
  }
  range.addEventListener("input", update);
  update();
})();"""

STYLE = """#k-slider input { width: 100%; max-width: 30rem; }
#k-slider img { width: 32rem; max-width: 100%; height: auto; }
#k-slider .swatches { display: flex; height: 2.2rem; width: 32rem; max-width: 100%; margin-top: 0.4rem; }
#k-slider .swatches span { display: block; min-width: 1px; }
#k-slider figcaption { font-size: 90%; }"""


def swatches(model: dict) -> str:
    """The palette as a row of coloured blocks, widths proportional to pi_k, sorted by
    weight; each block's tooltip gives pi_k and sigma_k."""
    pi = np.asarray(model["weights"])
    mu = np.clip(np.rint(np.asarray(model["means"]) * 255), 0, 255).astype(int)
    sigma = np.sqrt(np.asarray(model["variances"]))
    spans = []
    for j in np.argsort(-pi, kind="stable"):
        colour = "#{:02x}{:02x}{:02x}".format(*mu[j])
        spans.append(f'<span style="flex: {pi[j]:.6f}; background: {colour}" '
                     f'title="{colour}: \u03c0 = {pi[j]:.3f}, \u03c3 = {sigma[j]:.3f}"></span>')
    return '<div class="swatches">' + "".join(spans) + "</div>"


def slider_html(frames: list[tuple[int, bytes, dict]], image_name: str, start: int = 0) -> str:
    """frames: (K, PNG bytes of the segmented image, the mixture's "model" dict) per K,
    K ascending. Returns a self-contained HTML fragment."""
    if not frames:
        raise ValueError("the K slider needs at least one frame")
    name = html.escape(image_name)
    figures = []
    for i, (k, png, model) in enumerate(frames):
        data = base64.b64encode(png).decode("ascii")
        figures.append(
            f'<figure data-k="{k}"{"" if i == start else " hidden"}>'
            f'<img src="data:image/png;base64,{data}" alt="{name} segmented into K = {k} '
            f'colours: every pixel replaced by the mean colour of its most probable component">'
            f"{swatches(model)}<figcaption>K = {k}: the image and its palette, each colour as "
            f"wide as its weight \u03c0<sub>k</sub> (hover for \u03c0<sub>k</sub> and "
            f"\u03c3<sub>k</sub>).</figcaption></figure>")
    return (f'<div id="k-slider"><style>{STYLE}</style>'
            f'<label>K = <output>{frames[start][0]}</output> '
            f'<input type="range" min="0" max="{len(frames) - 1}" step="1" value="{start}" '
            f'aria-label="number of colours K"></label>'
            + "".join(figures) + f"<script>{SCRIPT}</script></div>")


def show(frames, image_name: str, start: int = 0) -> None:
    """Display the slider in a notebook, tagged for the HTML only (the PDF shows the
    palettes figure instead)."""
    from IPython.display import display

    display({"text/html": slider_html(frames, image_name, start)}, raw=True,
            metadata={"tags": ["html-only"]})
