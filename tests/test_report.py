"""The report end to end: a small study run through the real notebooks, rendered by
pipeline.render to HTML and PDF, then read back as a reader would get it.

The module runs every notebook once (module-scoped fixtures; the derivation is the
session's, tests/conftest.py): notebooks/experiment.ipynb for two K on a 100 x 120 copy
of the default photograph and notebooks/report.ipynb on those results; it renders each
format once, and twice for the byte-identical rerun. What the report should show is
read from the executed notebooks themselves (headings, alt texts, captions, tables).

The PDF checks need xelatex, latexmk and pandoc (`make tex`) and pdftotext (Debian's
poppler-utils). The tests install nothing: without those tools they fail under CI (CI
set) or where they could be installed (root with apt-get), and are skipped elsewhere.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from bs4 import BeautifulSoup

from pipeline import atomic, render
from pipeline import study as study_module
from pipeline.run_notebook import run

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
KS = (2, 8)   # 8: the K whose fit the report shows in motion
TEX_TOOLS = ("xelatex", "latexmk", "pandoc", "pdftotext")

RAW_LATEX = ("\\begin", "\\end{", "\\frac", "\\mathcal", "\\sum", "\\left", "\\right",
             "\\mathrm", "\\text{", "\\(", "\\[", "$$")
PLACEHOLDERS = ("<IPython", "<Figure size", "object at 0x", "<matplotlib")


# ---------------------------------------------------------------------------
# Tools and helpers


def require_tools(*tools: str) -> None:
    """Fail (CI, or tools installable here) or skip when a command is missing."""
    missing = [tool for tool in tools if not shutil.which(tool)]
    if not missing:
        return
    message = (f"{' and '.join(missing)} not installed (`make tex`; poppler-utils for "
               "pdftotext)")
    installable = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
    if os.environ.get("CI") or installable:
        pytest.fail(message)
    pytest.skip(message + "; not root with apt-get, so not installable here")


def pdf_text(path: Path, *args: str) -> str:
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", *args, str(path), "-"], check=True,
                          capture_output=True, text=True).stdout
    return unicodedata.normalize("NFKC", text)


QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                        "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u00a0": " "})


def collapse(text: str) -> str:
    """Text with Unicode compatibility forms (ligatures, math italic letters), typographic
    quotes and dashes made plain, and whitespace runs made one space."""
    text = unicodedata.normalize("NFKC", text).translate(QUOTES)
    return re.sub(r"\s+", " ", text).strip()


def squash(text: str) -> str:
    """collapse() without spaces and hyphens: immune to line breaks and hyphenation."""
    return re.sub(r"[\s-]+", "", collapse(text))


def heading_words(text: str) -> str:
    """A Markdown heading as the words a PDF shows for sure: maths, code marks and
    emphasis removed (maths comes out of pdftotext as math-italic letters)."""
    text = re.sub(r"\$[^$]*\$", " ", text)
    text = re.sub(r"[`*_]", "", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return collapse(text)


def headings(nb) -> list[tuple[int, str]]:
    """(level, text) of the ATX headings of a notebook's Markdown cells, as written,
    outside fenced code and cells tagged remove-cell."""
    found = []
    for cell in nb.cells:
        if cell.cell_type != "markdown" or "remove-cell" in cell.metadata.get("tags", []):
            continue
        fenced = False
        for line in cell.source.splitlines():
            if re.match(r" {0,3}(```|~~~)", line):
                fenced = not fenced
            elif not fenced and (m := re.match(r" {0,3}(#{1,6})\s+(.*?)[\s#]*$", line)):
                found.append((len(m.group(1)), m.group(2)))
    return found


def outputs(nb):
    for cell in nb.cells:
        yield from cell.get("outputs", [])


def execution_end(*notebooks) -> dt.datetime:
    return max(dt.datetime.fromisoformat(nb.metadata.papermill.end_time) for nb in notebooks)


def stderr_lines(nb) -> list[str]:
    """Distinctive lines of the notebook's stderr outputs (which the report drops)."""
    return [line.strip() for o in outputs(nb) if o.output_type == "stream" and o.name == "stderr"
            for line in o.text.splitlines() if len(line.strip()) > 20]


# ---------------------------------------------------------------------------
# The study, run once; each format rendered once


@pytest.fixture(scope="module")
def study(tmp_path_factory, executed_derivation):
    from matplotlib import cbook
    from PIL import Image

    tmp = tmp_path_factory.mktemp("report")
    image = tmp / "photo.png"
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        im.convert("RGB").resize((100, 120), Image.LANCZOS).save(image)

    results = tmp / "results"
    for k in KS:
        run(NOTEBOOKS / "experiment.ipynb", results / f"k-{k}" / "experiment.ipynb",
            {"image": str(image), "k": k, "n_init": 1, "output_dir": str(results / f"k-{k}")},
            cwd=str(NOTEBOOKS), progress_bar=False)
    study_data = tmp / "study.json"
    atomic.write_json(study_data, study_module.sweep(image, KS, seeds=range(2), n_init=1,
                                                     log=lambda *_: None))
    bench_data = tmp / "bench.json"
    atomic.write_json(bench_data, {"machine": {}, "images": {"photo": {
        "name": "photo.png", "pixels": 12000, "distinct_colours": 7000, "rows": [
            {"k": k, "ours_ms_per_iter": 1.0, "sklearn_ms_per_iter": 20.0,
             "ours_us_per_row": 0.14, "sklearn_us_per_row": 1.6, "ours_rows": 7000,
             "sklearn_rows": 12000, "ours_seconds": 0.1, "sklearn_seconds": 2.0,
             "ours_ll_per_pixel": 1.5, "sklearn_ll_per_pixel": 1.4} for k in KS]}}})
    report = tmp / "report.ipynb"
    out = tmp / "out"
    run(NOTEBOOKS / "report.ipynb", report,
        {"results_dir": str(results), "ks": " ".join(map(str, KS)), "image": str(image),
         "figures_dir": str(out / "figures"), "study_data": str(study_data),
         "bench_data": str(bench_data)},
        cwd=str(NOTEBOOKS), progress_bar=False)
    return SimpleNamespace(tmp=tmp, out=out, derivation=executed_derivation, report=report,
                           results=results,
                           derivation_nb=nbformat.read(executed_derivation, as_version=4),
                           report_nb=nbformat.read(report, as_version=4))


@pytest.fixture(scope="module")
def html(study):
    path = render.render("html", study.derivation, study.report, study.out / "report.html")
    soup = BeautifulSoup(path.read_text("utf-8"), "html.parser")
    return SimpleNamespace(path=path, soup=soup, main=soup.find("main"))


@pytest.fixture(scope="module")
def pdf(study):
    require_tools(*TEX_TOOLS)
    path = render.render("pdf", study.derivation, study.report, study.out / "report.pdf")
    return SimpleNamespace(path=path, text=pdf_text(path), layout=pdf_text(path, "-layout"))


def body_headings(html) -> list[tuple[int, str]]:
    """(level, text) of the HTML's section headings, the title's header left out."""
    return [(int(h.name[1]), collapse(h.get_text(" "))) for h in html.main.find_all(
            re.compile("^h[2-6]$")) if not h.find_parent("header")]


# ---------------------------------------------------------------------------
# HTML


@pytest.mark.slow
def test_html_is_one_file_with_embedded_images(html):
    images = html.soup.find_all("img")
    assert images, "the report shows no image"
    for img in images:
        assert img.get("src", "").startswith("data:image/"), img.get("src", "")[:80]


@pytest.mark.slow
def test_html_needs_no_network(html):
    for script in html.soup.find_all("script"):
        assert not script.get("src") and "http" not in script.get_text(), script
    for element in html.soup.find_all(True):
        for attribute in ("src", "srcset", "data", "poster"):
            value = element.get(attribute)
            if value:
                assert value.startswith("data:"), (element.name, value[:80])
    for link in html.soup.find_all("link"):
        assert link.get("href", "").startswith(("data:", "#")), link
    for style in html.soup.find_all("style"):
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", style.get_text()):
            assert url.startswith("data:"), url[:80]
        assert "@import" not in style.get_text()


@pytest.mark.slow
def test_html_has_the_title_then_every_heading_at_its_level_in_order(html, study):
    """The report notebook's title once, as h1 and <title>; then the report's headings
    and the derivation's (its appendix), each at the level its notebook writes."""
    title = study.report_nb.metadata.title
    assert [collapse(h.get_text(" ")) for h in html.soup.find_all("h1")] == [collapse(title)]
    assert collapse(html.soup.title.get_text()) == collapse(title)
    written = [(level, heading_words(text))
               for level, text in headings(study.report_nb) + headings(study.derivation_nb)]
    assert [(level, heading_words(text)) for level, text in body_headings(html)] == written


@pytest.mark.slow
def test_html_contents_list_links_every_section_nested_under_its_parent(html):
    nav = html.soup.find("nav")
    listed = [(len(a.find_parents("ul")) + 1, collapse(a.get_text(" "))) for a in nav.find_all("a")]
    assert listed == [(level, text) for level, text in body_headings(html) if level <= 3]
    ids = {element["id"] for element in html.soup.find_all(id=True)}
    links = [a["href"][1:] for a in html.soup.find_all("a", href=True) if a["href"].startswith("#")]
    assert links and not [link for link in links if link not in ids]


@pytest.mark.slow
def test_html_maths_is_mathml_and_nothing_is_left_raw(html, study):
    text = html.soup.get_text(" ")
    for placeholder in PLACEHOLDERS:
        assert placeholder not in text, placeholder
    if shutil.which("pandoc"):
        assert html.soup.find("math") is not None
        for annotation in html.soup.find_all("annotation"):
            annotation.decompose()
        visible = html.soup.get_text(" ")
        for raw in RAW_LATEX:
            assert raw not in visible, raw
    for line in stderr_lines(study.report_nb) + stderr_lines(study.derivation_nb):
        assert line not in text, line


@pytest.mark.slow
def test_html_hides_code_and_parameters(html):
    assert not html.soup.select(".jp-CodeCell .jp-InputArea, .jp-InputArea-editor"), \
        "code input is shown"
    text = html.soup.get_text(" ")
    assert "# Parameters" not in text
    assert "injected-parameters" not in str(html.soup)


@pytest.mark.slow
def test_every_figure_has_the_alt_text_its_notebook_gives(html, study):
    """Each figure of the two notebooks carries its own alt text; the HTML shows those,
    in order, and nothing else stands in for a missing one."""
    given = []
    for output in [*outputs(study.report_nb), *outputs(study.derivation_nb)]:
        if "image/png" in output.get("data", {}) and "text/html" not in output.data:
            meta = output.get("metadata", {}).get("em_report", {})
            assert meta.get("alt", "").strip(), f"a figure without alt text: {meta.get('caption')}"
            given.append(meta["alt"])
    assert [img["alt"] for img in html.soup.select("figure.report-figure > img")] == given
    for img in html.soup.find_all("img"):   # the slider's too
        assert img.get("alt", "").strip(), img.get("src", "")[:40]


@pytest.mark.slow
def test_html_has_the_date_and_the_slider_with_every_k_embedded(html, study):
    end = execution_end(study.report_nb, study.derivation_nb)
    date = collapse(html.soup.find(class_="report-date").get_text())
    assert date == f"{end.day} {end:%B %Y}"
    slider = html.soup.find(id="k-slider")
    frames = slider.find_all("figure")
    assert [int(f["data-k"]) for f in frames] == list(KS)
    for frame in frames:   # the palette PNG itself, and a swatch per component
        assert frame.img["src"].startswith("data:image/png;base64,")
        assert len(frame.select(".swatches span")) == int(frame["data-k"])


@pytest.mark.slow
def test_html_sliders_show_and_announce_one_frame(html):
    """Each slider shows the frame its range input points at, and says which (the
    visible label and aria-valuetext: "K = 16", not "3")."""
    sliders = html.soup.select(".report-slider")
    assert {s["id"] for s in sliders} == {"k-slider", "em-motion"}
    for slider in sliders:
        control = slider.find("input", type="range")
        frames = slider.find_all("figure")
        shown = [f for f in frames if not f.has_attr("hidden")]
        assert len(shown) == 1 and frames.index(shown[0]) == int(control["value"])
        assert int(control["max"]) == len(frames) - 1
        assert control["aria-valuetext"] == shown[0]["data-label"] == slider.output.get_text()
    labels = [f["data-label"] for f in html.soup.find(id="k-slider").find_all("figure")]
    assert labels == [f"K = {k}" for k in KS]


@pytest.mark.slow
def test_em_in_motion_steps_through_the_iterations_the_pdf_draws(html, study):
    """The motion figure's HTML form: one frame per iteration of the run's snapshots
    (learned.json), under the figure's caption; the PDF has the figure's static frames."""
    snapshots = json.loads((study.results / "k-8" / "learned.json").read_text())["motion"]["snapshots"]
    motion = html.soup.find(id="em-motion")
    assert [f["data-label"] for f in motion.find_all("figure")] == \
        [f"iteration {s['iteration']}" for s in snapshots]
    caption = collapse(motion.find_parent("figure").find("figcaption", recursive=False).get_text())
    assert re.match(r"Figure \d+\. ", caption), caption


# ---------------------------------------------------------------------------
# PDF


@pytest.mark.slow
def test_pdf_has_every_section(pdf, study):
    text = squash(pdf.text)
    assert squash(study.report_nb.metadata.title) in text
    for _, heading in headings(study.report_nb) + headings(study.derivation_nb):
        assert squash(heading_words(heading)) in text, heading


@pytest.mark.slow
def test_pdf_has_a_row_for_each_k_of_the_results_table(pdf, study):
    """The first table of the report whose first column holds every K shows in the PDF
    row by row (its first cells on one line)."""
    lines = [collapse(line) for line in pdf.layout.splitlines()]
    for output in outputs(study.report_nb):
        table = {}
        for line in output.get("data", {}).get("text/markdown", "").splitlines():
            cells = [heading_words(c) for c in line.strip().strip("|").split("|")]
            if line.lstrip().startswith("|") and cells[0].isdigit():
                table[int(cells[0])] = cells
        if all(k in table for k in KS):
            break
    else:
        pytest.fail("the report has no Markdown table with a row per K")
    for k in KS:
        pattern = r"(^|\s)" + r"\s+".join(map(re.escape, table[k][:4])) + r"(\s|$)"
        assert any(re.search(pattern, line) for line in lines), (k, table[k][:4])


@pytest.mark.slow
def test_pdf_has_no_raw_latex_or_placeholders_and_no_slider(pdf, study):
    for raw in RAW_LATEX + PLACEHOLDERS:
        assert raw not in pdf.text, raw
    for line in stderr_lines(study.report_nb) + stderr_lines(study.derivation_nb):
        assert collapse(line) not in collapse(pdf.text), line
    assert "hover" not in pdf.text, "the HTML-only slider leaked into the PDF"


@pytest.mark.slow
def test_pdf_has_the_published_table(pdf):
    text = collapse(pdf.text)
    for row in study_module.published():
        if row["k"] in KS:
            assert f"{row['error']:.6f}" in text
    assert "Table 2." in text


@pytest.mark.slow
def test_pdf_is_dated_by_the_execution(pdf, study):
    info = subprocess.run(["pdfinfo", "-isodates", str(pdf.path)], capture_output=True,
                          text=True, check=True).stdout
    end = execution_end(study.report_nb, study.derivation_nb).astimezone(dt.timezone.utc)
    created = re.search(r"CreationDate:\s*(\S+)", info).group(1)
    assert created.startswith(end.strftime("%Y-%m-%dT%H:%M:%S")), (created, end)
    assert f"{end.day} {end:%B %Y}" in collapse(pdf.text)
    assert collapse(study.report_nb.metadata.title) in collapse(
        re.search(r"Title:\s*(.*)", info).group(1))


@pytest.mark.slow
def test_pdf_page_one_has_the_abstract_and_a_figure_and_no_plumbing(pdf):
    first = pdf_text(pdf.path, "-f", "1", "-l", "1")
    assert "Abstract" in first and "Figure 1." in first
    for word in ("notebook", "papermill", "make ", "Python"):
        assert word not in first, word
    images = subprocess.run(["pdfimages", "-f", "1", "-l", "1", "-list", str(pdf.path)],
                            capture_output=True, text=True, check=True).stdout
    assert len(images.splitlines()) > 2, "page 1 has no figure"


@pytest.mark.slow
def test_figures_are_numbered_in_order_with_captions(html, pdf):
    """The report's figures are 1, 2, ... and name the image; the derivation's, in
    Appendix B, are B1, B2, ...; both in the HTML and the PDF."""
    captions = [collapse(c.get_text(" ")) for c in html.soup.find_all("figcaption")
                if c.get_text().startswith("Figure")]
    report = [c for c in captions if re.match(r"Figure \d+\.", c)]
    numbers = [int(re.match(r"Figure (\d+)\.", c).group(1)) for c in report]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 6
    assert all("photo" in c for c in report), "every caption names the image"
    appendix = [int(re.match(r"Figure B(\d+)\.", c).group(1)) for c in captions
                if c not in report]
    assert appendix == list(range(1, len(appendix) + 1)) and len(appendix) >= 5
    pdf_numbers = [int(n) for n in re.findall(r"Figure (\d+)\.", pdf.text)]
    assert sorted(set(pdf_numbers)) == numbers
    assert sorted({int(n) for n in re.findall(r"Figure B(\d+)\.", pdf.text)}) == appendix


@pytest.mark.slow
def test_no_heading_or_table_label_at_a_page_foot(pdf, study):
    written = {squash(heading_words(text))
               for _, text in headings(study.report_nb) + headings(study.derivation_nb)}
    for number, page in enumerate(pdf.text.split("\f"), start=1):
        lines = [line for line in page.splitlines() if line.strip()]
        if lines and lines[-1].strip().isdigit():
            lines.pop()   # the page number
        if not lines:
            continue
        last = collapse(lines[-1])
        assert squash(last) not in written, (number, last)
        assert not re.match(r"Table \d+\.", last), (number, last)


# ---------------------------------------------------------------------------
# Twice the same bytes


@pytest.mark.slow
def test_html_render_is_reproducible(html, study):
    again = render.render("html", study.derivation, study.report, study.tmp / "again.html")
    assert again.read_bytes() == html.path.read_bytes()


@pytest.mark.slow
def test_pdf_render_is_reproducible(pdf, study):
    again = render.render("pdf", study.derivation, study.report, study.tmp / "again.pdf")
    assert again.read_bytes() == pdf.path.read_bytes()


# ---------------------------------------------------------------------------
# Small notebooks


def small_notebook(tmp_path, markdown: str, name: str, title: str = "Title") -> Path:
    nb = nbformat.v4.new_notebook(metadata={"title": title}, cells=[
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_markdown_cell(markdown)])
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_html_figures_are_lossless_webp_unless_marked_photographs():
    import base64
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, "PNG")
    output = nbformat.v4.new_output("display_data", metadata={"em_report": {}},
                                    data={"image/png": base64.b64encode(png.getvalue()).decode()})

    def webp(output):
        uri = render.web_image(output)
        assert uri.startswith("data:image/webp;base64,")
        return base64.b64decode(uri.split(",", 1)[1])

    lossless = webp(output)
    assert lossless[12:16] == b"VP8L"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(lossless)).convert("RGB")), pixels)
    output.metadata["em_report"]["photo"] = True
    assert webp(output)[12:16] == b"VP8 "   # lossy


def test_cli_names_a_missing_input_and_writes_nothing(tmp_path, capsys):
    report = small_notebook(tmp_path, "## One", "r.ipynb")
    out = tmp_path / "report.html"
    assert render.main(["html", str(tmp_path / "nope.ipynb"), str(report), str(out)]) == 1
    assert "nope.ipynb" in capsys.readouterr().err and not out.exists()


def test_a_report_without_a_title_is_refused_by_name(tmp_path):
    derivation = small_notebook(tmp_path, "## Appendix", "d.ipynb")
    report = small_notebook(tmp_path, "## One", "untitled.ipynb", title="")
    with pytest.raises(render.RenderError, match="untitled.ipynb.*no title"):
        render.merge(derivation, report)


@pytest.mark.slow
def test_pdf_cross_references_are_resolved(tmp_path):
    """The LaTeX runs go on until the page numbers they refer to are known."""
    require_tools(*TEX_TOOLS)
    derivation = small_notebook(tmp_path, "## Appendix\n\n### One", "d.ipynb")
    report = small_notebook(
        tmp_path, "## First\n\nSee page \\pageref{second}.\n\n\\newpage\n\n"
        "## Second\n\nText.", "r.ipynb")
    out = render.render("pdf", derivation, report, tmp_path / "report.pdf")
    text = collapse(pdf_text(out))
    assert "See page 2." in text and "??" not in text


@pytest.mark.slow
def test_a_latex_error_is_named_and_leaves_the_previous_pdf(tmp_path):
    require_tools(*TEX_TOOLS)
    derivation = small_notebook(tmp_path, "## Appendix", "d.ipynb")
    report = small_notebook(tmp_path, "## One\n\n\\nosuchcommand", "r.ipynb")
    out = tmp_path / "out" / "report.pdf"
    out.parent.mkdir()
    out.write_text("the previous report")
    with pytest.raises(render.RenderError, match=r"(?s)xelatex failed:.*Undefined control sequence"):
        render.render("pdf", derivation, report, out)
    assert list(out.parent.iterdir()) == [out] and out.read_text() == "the previous report"
