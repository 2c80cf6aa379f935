"""The HTML report's sliders: a range input that shows one of several frames, and says
which (aria-valuetext: "K = 16", "iteration 5"). The K slider switches the segmented
image and its palette between the K of the sweep; EM in motion steps through the
iterations the report's motion figure draws. Everything is inline (images as data:
URIs, a few lines of script), so the page needs no network."""

from __future__ import annotations

import base64
import html
import io

import numpy as np

SCRIPT = """(function (box) {
  var range = box.querySelector("input"), shown = box.querySelector("output"),
      frames = box.querySelectorAll("figure");
  function update() {
    for (var i = 0; i < frames.length; i++) frames[i].hidden = (i != range.value);
    var label = frames[range.value].getAttribute("data-label");
    shown.textContent = label;
    range.setAttribute("aria-valuetext", label);
  }
  range.addEventListener("input", update);
  update();
})(document.currentScript.parentNode);"""

STYLE = """.report-slider input { width: 100%; max-width: 30rem; }
.report-slider img { width: 32rem; max-width: 100%; height: auto; display: block; }
.report-slider figure { margin: 0.5em 0; }
#k-slider .swatches { display: flex; height: 2.2rem; width: 32rem; max-width: 100%; margin-top: 0.4rem; }
#k-slider .swatches span { display: block; min-width: 1px; }
#k-slider figcaption { font-size: 90%; }"""


def _slider(ident: str, name: str, labels: list[str], figures: list[str], start: int) -> str:
    """A range input over `figures` (HTML <figure> elements, each with its label)."""
    frames = [figure.replace("<figure", f'<figure data-label="{html.escape(label)}"'
                             + ("" if i == start else " hidden"), 1)
              for i, (label, figure) in enumerate(zip(labels, figures, strict=True))]
    return (f'<div id="{ident}" class="report-slider"><style>{STYLE}</style>'
            f'<label><output>{html.escape(labels[start])}</output> '
            f'<input type="range" min="0" max="{len(frames) - 1}" step="1" value="{start}" '
            f'aria-label="{html.escape(name)}" aria-valuetext="{html.escape(labels[start])}">'
            "</label>" + "".join(frames) + f"<script>{SCRIPT}</script></div>")


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


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
    figures = [
        f'<figure data-k="{k}"><img src="{_data_uri("image/png", png)}" alt="{name} '
        f'segmented into K = {k} colours: every pixel replaced by the mean colour of its '
        f'most probable component">{swatches(model)}<figcaption>K = {k}: the image and its '
        f"palette, each colour as wide as its weight \u03c0<sub>k</sub> (hover for "
        f"\u03c0<sub>k</sub> and \u03c3<sub>k</sub>).</figcaption></figure>"
        for k, png, model in frames]
    return _slider("k-slider", "number of colours K", [f"K = {k}" for k, _, _ in frames],
                   figures, start)


def show(frames, image_name: str, start: int = 0) -> None:
    """Display the K slider in a notebook, tagged for the HTML only (the PDF shows the
    palettes figure instead)."""
    from IPython.display import display

    display({"text/html": slider_html(frames, image_name, start)}, raw=True,
            metadata={"tags": ["html-only"]})


def motion_html(motion: dict, cloud: dict, image_name: str) -> str:
    """EM in motion as an iteration slider: the frames of figures_space.motion_frames (as
    lossless WebP), for the motion figure's HTML form."""
    import matplotlib.pyplot as plt

    from pipeline import figures_space

    snaps = motion["snapshots"]
    name, k = html.escape(image_name), motion["k"]
    images = []
    for fig in figures_space.motion_frames(motion, cloud):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="webp", dpi=fig.dpi,
                    pil_kwargs={"lossless": True, "quality": 50, "method": 1})
        plt.close(fig)
        images.append(buffer.getvalue())
    figures_html = [
        f'<figure><img src="{_data_uri("image/webp", data)}" alt="{name}: the colours '
        f'projected on their two main axes and the {k} components as circles at EM '
        f'iteration {snap["iteration"]} of {motion["iterations"]}, above the '
        f'log-likelihood curve with that iteration marked"></figure>'
        for snap, data in zip(snaps, images)]
    return _slider("em-motion", "EM iteration", [f"iteration {s['iteration']}" for s in snaps],
                   figures_html, 0)
