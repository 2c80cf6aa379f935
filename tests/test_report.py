"""The report end to end: a small study run through the real notebooks, rendered by
pipeline.render to HTML and PDF, then read back as a reader would get it.

The module runs every notebook once (module-scoped fixtures): notebooks/experiment.ipynb
for a few K on a 100 x 120 copy of the default photograph, notebooks/derivation.ipynb
with few pixels, notebooks/report.ipynb on those results; then it renders both formats
twice. About two minutes.

The PDF checks need xelatex and pandoc (`make tex`) and pdftotext (Debian's
poppler-utils). The tests install nothing: without those tools they fail under CI
(CI set) or where they could be installed (root with apt-get), and are skipped
elsewhere. DERIVATION_NOTEBOOK / REPORT_NOTEBOOK in the environment point the test at
other notebooks than notebooks/derivation.ipynb and notebooks/report.ipynb.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from bs4 import BeautifulSoup

from pipeline import atomic, narrative, render, results as results_module
from pipeline import study as study_module
from pipeline.run_notebook import run

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
KS = (2, 3)
DERIVATION_MAX_PIXELS = 5000

RAW_LATEX = ("\\begin", "\\end{", "\\frac", "\\mathcal", "\\sum", "\\left", "\\right",
             "\\mathrm", "\\text{", "\\(", "\\[", "$$")
PLACEHOLDERS = ("<IPython", "<Figure size", "object at 0x", "<matplotlib")


# ---------------------------------------------------------------------------
# Tools and inputs


def require_tools(*tools: str) -> None:
    """Fail (CI, or tools installable here) or skip when a command is missing."""
    missing = [tool for tool in tools if not shutil.which(tool)]
    if not missing:
        return
    message = (f"{' and '.join(missing)} not installed (Debian packages: "
               f"{render.TEX_PACKAGES} for xelatex and pandoc, `make tex`; "
               "poppler-utils for pdftotext)")
    installable = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
    if os.environ.get("CI") or installable:
        pytest.fail(message)
    pytest.skip(message + "; not root with apt-get, so not installable here")


def notebook(variable: str, default: Path) -> Path:
    path = Path(os.environ.get(variable) or default)
    if not path.is_file():
        pytest.skip(f"{path} does not exist yet: the report cannot be built without it")
    return path


def pdf_text(path: Path, layout: bool = False) -> str:
    args = ["pdftotext", "-enc", "UTF-8"] + (["-layout"] if layout else []) + [str(path), "-"]
    text = subprocess.run(args, check=True, capture_output=True, text=True).stdout
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


def markdown_headings(nb) -> list[str]:
    """The headings a reader sees: those of the cells the report keeps."""
    found = []
    for holder, key in render._markdown_texts(render.clean(nb, [])):
        found.extend(text for _, text in render.headings(holder[key]))
    return found


# ---------------------------------------------------------------------------
# The study, run once


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    derivation_source = notebook("DERIVATION_NOTEBOOK", NOTEBOOKS / "derivation.ipynb")
    report_source = notebook("REPORT_NOTEBOOK", NOTEBOOKS / "report.ipynb")
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
    derivation = tmp / "derivation.ipynb"
    run(derivation_source, derivation, {"max_pixels": DERIVATION_MAX_PIXELS},
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
    run(report_source, report,
        {"results_dir": str(results), "ks": " ".join(map(str, KS)), "image": str(image),
         "figures_dir": str(out / "figures"), "study_data": str(study_data),
         "bench_data": str(bench_data)},
        cwd=str(NOTEBOOKS), progress_bar=False)
    return SimpleNamespace(tmp=tmp, out=out, derivation=derivation, report=report,
                           results=results, study_data=study_data,
                           derivation_nb=nbformat.read(derivation, as_version=4),
                           report_nb=nbformat.read(report, as_version=4))


@pytest.fixture(scope="module")
def html(study):
    path = render.render("html", study.derivation, study.report, study.out / "report.html")
    return SimpleNamespace(path=path, soup=BeautifulSoup(path.read_text("utf-8"), "html.parser"))


@pytest.fixture(scope="module")
def pdf(study):
    require_tools("xelatex", "xdvipdfmx", "pandoc", "pdftotext")
    path = render.render("pdf", study.derivation, study.report, study.out / "report.pdf")
    return SimpleNamespace(path=path, text=pdf_text(path), layout=pdf_text(path, layout=True))


def stderr_lines(nb) -> list[str]:
    """Distinctive lines of the notebook's stderr outputs (which the report drops)."""
    lines = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and output.name == "stderr":
                lines.extend(line.strip() for line in output.text.splitlines()
                             if len(line.strip()) > 20)
    return lines


# ---------------------------------------------------------------------------
# HTML


def test_html_is_one_file_with_embedded_images(html):
    assert html.path.is_file()
    images = html.soup.find_all("img")
    assert images, "the report shows no image"
    for img in images:
        assert img.get("src", "").startswith("data:image/"), img.get("src", "")[:80]


def test_html_needs_no_network(html):
    scripts = html.soup.find_all("script")
    assert len(scripts) == 1 and not scripts[0].get("src"), "only the slider's inline script"
    assert scripts[0].find_parent(id="k-slider") is not None
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


def test_html_has_one_title_and_every_section(html, study):
    assert len(html.soup.find_all("h1")) == 1
    shown = collapse(" ".join(h.get_text(" ") for h in html.soup.find_all(re.compile("^h[1-6]$"))))
    for heading in markdown_headings(study.report_nb) + markdown_headings(study.derivation_nb):
        assert heading_words(heading) in shown, heading
    title = markdown_headings(study.report_nb)[0]
    assert heading_words(title) in collapse(html.soup.find("h1").get_text(" "))
    assert heading_words(title) in collapse(html.soup.title.get_text())
    # the report first, the derivation after it as the appendix
    shown_headings = [h.get_text(" ") for h in html.soup.find_all(re.compile("^h[1-6]$"))]
    appendix = [i for i, t in enumerate(shown_headings) if t.startswith(render.APPENDIX_PREFIX)]
    assert appendix == [len(markdown_headings(study.report_nb))], shown_headings


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


def test_html_hides_code_and_parameters(html):
    assert not html.soup.select(".jp-CodeCell .jp-InputArea, .jp-InputArea-editor"), \
        "code input is shown"
    text = html.soup.get_text(" ")
    assert "# Parameters" not in text
    assert "injected-parameters" not in str(html.soup)


# ---------------------------------------------------------------------------
# PDF


def test_pdf_has_every_section(pdf, study):
    text = squash(pdf.text)
    for heading in markdown_headings(study.report_nb) + markdown_headings(study.derivation_nb):
        assert squash(heading_words(heading)) in text, heading


def test_pdf_has_a_row_for_each_k(pdf, study):
    lines = [collapse(line) for line in pdf.layout.splitlines()]
    rows = results_table_rows(study.report_nb)
    for k in KS:
        if rows:
            cells = [c for c in rows[k][:4] if c]
            pattern = re.compile(r"(^|\s)" + r"\s+".join(map(re.escape, cells)) + r"(\s|$)")
            assert any(pattern.search(line) for line in lines), (k, cells)
        else:   # no Markdown table keyed by K: at least a line that starts with it
            assert any(re.match(rf"^(K\s*=\s*)?{k}\b\s+\S", line) for line in lines), k


def results_table_rows(nb) -> dict[int, list[str]] | None:
    """{K: plain cells} of the first Markdown table of the report whose first column
    holds every K, or None."""
    for holder, key in render._markdown_texts(nb):
        table: dict[int, list[str]] = {}
        for line in holder[key].splitlines():
            if not line.strip().startswith("|"):
                if table:
                    break
                continue
            cells = [heading_words(c) for c in line.strip().strip("|").split("|")]
            first = re.sub(r"^K\s*=\s*", "", cells[0])
            if first.isdigit():
                table[int(first)] = cells
        if all(k in table for k in KS):
            return table
    return None


def test_pdf_has_no_raw_latex_or_placeholders(pdf, study):
    for raw in RAW_LATEX + PLACEHOLDERS:
        assert raw not in pdf.text, raw
    for line in stderr_lines(study.report_nb) + stderr_lines(study.derivation_nb):
        assert collapse(line) not in collapse(pdf.text), line


def test_pdf_is_dated_by_the_execution(pdf, study):
    info = subprocess.run(["pdfinfo", "-isodates", str(pdf.path)], capture_output=True,
                          text=True, check=True).stdout
    assert "xdvipdfmx" in info
    end = max(t for t in (render._execution_end(study.report_nb),
                          render._execution_end(study.derivation_nb)) if t)
    created = re.search(r"CreationDate:\s*(\S+)", info).group(1)
    assert created.startswith(end.strftime("%Y-%m-%dT%H:%M:%S")), (created, end)
    date = render.merge(study.derivation, study.report).metadata.date
    assert date and collapse(date) in collapse(pdf.text)


# ---------------------------------------------------------------------------
# Twice the same bytes


def test_html_render_is_reproducible(html, study):
    again = render.render("html", study.derivation, study.report, study.tmp / "again.html")
    assert again.read_bytes() == html.path.read_bytes()


def test_pdf_render_is_reproducible(pdf, study):
    again = render.render("pdf", study.derivation, study.report, study.tmp / "again.pdf")
    assert again.read_bytes() == pdf.path.read_bytes()


# ---------------------------------------------------------------------------
# Without running the study


def small_notebook(tmp_path, markdown: str, name: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_markdown_cell(markdown)])
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_failed_render_leaves_no_output(tmp_path):
    derivation = small_notebook(tmp_path, "# Derivation\n\n## One", "d.ipynb")
    report = small_notebook(tmp_path, "# Title\n\n![missing](no-such.png)", "r.ipynb")
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()
    out.write_text("the previous report")
    with pytest.raises(render.RenderError, match="no-such.png"):
        render.render("html", derivation, report, out)
    assert list(out.parent.iterdir()) == [out]
    assert out.read_text() == "the previous report"


def test_cli_names_a_missing_input(tmp_path):
    report = small_notebook(tmp_path, "# Title", "r.ipynb")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.render", "html", str(tmp_path / "nope.ipynb"),
         str(report), str(tmp_path / "report.html")],
        cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1
    assert "nope.ipynb" in result.stderr and "does not exist" in result.stderr
    assert not (tmp_path / "report.html").exists()


def test_pdf_cross_references_are_resolved(tmp_path):
    """The xelatex passes go on until the page numbers they refer to are known."""
    require_tools("xelatex", "xdvipdfmx", "pandoc", "pdftotext")
    derivation = small_notebook(tmp_path, "# Derivation\n\n## One", "d.ipynb")
    report = small_notebook(
        tmp_path, "# Title\n\n## First\n\nSee page \\pageref{second}.\n\n\\newpage\n\n"
        "## Second\n\nText.", "r.ipynb")
    out = render.render("pdf", derivation, report, tmp_path / "report.pdf")
    text = collapse(pdf_text(out))
    assert "See page 2." in text and "??" not in text


def test_pdf_pandoc_conversions_are_all_made_ahead(tmp_path, monkeypatch):
    """Every pandoc conversion the LaTeX template asks for was foreseen and made ahead."""
    require_tools("xelatex", "xdvipdfmx", "pandoc")
    prefetch = render._prefetch_markdown

    def then_refuse_more(pandoc, nb):
        prefetch(pandoc, nb)
        pandoc._convert = lambda key: pytest.fail(f"conversion not foreseen: {key}")

    monkeypatch.setattr(render, "_prefetch_markdown", then_refuse_more)
    derivation = small_notebook(tmp_path, "# Derivation\n\n## One\n\nSee [two](#two).",
                                "d.ipynb")
    nb = nbformat.read(small_notebook(tmp_path, "# Title *here*\n\n## Two\n\n$x^2$",
                                      "r.ipynb"), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("show()", outputs=[nbformat.v4.new_output(
        "display_data", data={"text/markdown": "Some **bold** text."})]))
    nbformat.write(nb, tmp_path / "r.ipynb")
    out = render.render("pdf", derivation, tmp_path / "r.ipynb", tmp_path / "report.pdf")
    assert "Some bold text." in collapse(pdf_text(out))


@pytest.mark.parametrize("tool", ["xelatex", "xdvipdfmx"])
def test_pdf_error_names_the_tool_and_its_message(tmp_path, monkeypatch, tool):
    require_tools("xelatex", "xdvipdfmx", "pandoc")
    derivation = small_notebook(tmp_path, "# Derivation\n\n## One", "d.ipynb")
    if tool == "xelatex":
        report = small_notebook(tmp_path, "# Title\n\n\\nosuchcommand", "r.ipynb")
        message = "Undefined control sequence"
    else:
        report = small_notebook(tmp_path, "# Title\n\nText.", "r.ipynb")
        monkeypatch.setattr(render, "XDV_TO_PDF_COMMAND",
                            ["xdvipdfmx", "-o", "{filename}.pdf", "no-such.xdv"])
        message = "no-such.xdv"
    with pytest.raises(render.RenderError, match=f"(?s){tool} failed:.*{message}"):
        render.render("pdf", derivation, report, tmp_path / "report.pdf")
    assert not (tmp_path / "report.pdf").exists()


def test_merge_orders_and_levels_headings(tmp_path):
    derivation = small_notebook(
        tmp_path, "# EM, derived\n\n## 1. Model\n\n```\n# not a heading\n```", "d.ipynb")
    report = small_notebook(tmp_path, "# Results\n\nSummary.\n\n## Table\n\n# Another top",
                            "r.ipynb")
    nb = render.merge(derivation, report)
    assert nb.metadata.title == "Results"
    assert markdown_headings(nb) == ["Results", "Table", "Another top",
                                     "Appendix B. EM, derived", "1. Model"]
    levels = [level for holder, key in render._markdown_texts(nb)
              for level, _ in render.headings(holder[key])]
    assert levels == [1, 2, 2, 2, 3]
    assert "# not a heading" in nb.cells[-1].source
    assert all(c.cell_type != "code" for c in nb.cells), "the parameters cells are gone"
    latex = render._latex_only(nb)
    assert [level for holder, key in render._markdown_texts(latex)
            for level, _ in render.headings(holder[key])] == [1, 1, 1, 2]


# ---------------------------------------------------------------------------
# The document a reader gets


def test_pdf_page_one_has_the_abstract_and_a_figure_and_no_plumbing(pdf):
    first = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(pdf.path), "-"],
                           capture_output=True, text=True, check=True).stdout
    assert "Abstract" in first and "Figure 1." in first
    for word in ("notebook", "papermill", "make ", "Python"):
        assert word not in first, word
    images = subprocess.run(["pdfimages", "-f", "1", "-l", "1", "-list", str(pdf.path)],
                            capture_output=True, text=True, check=True).stdout
    assert len(images.splitlines()) > 2, "page 1 has no figure"


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


def test_conclusions_and_reproducing_sections(html, pdf):
    headings = [collapse(h.get_text(" ")) for h in html.soup.find_all("h2")]
    assert any("Conclusions" in h for h in headings)
    assert any("Reproducing these results" in h for h in headings)
    assert "Conclusions" in pdf.text and "make study" in pdf.text


def test_every_html_anchor_resolves(html):
    ids = {element["id"] for element in html.soup.find_all(id=True)}
    links = [a["href"][1:] for a in html.soup.find_all("a", href=True) if a["href"].startswith("#")]
    assert links, "no table of contents"
    assert html.soup.find("nav") is not None
    missing = [link for link in links if link not in ids]
    assert not missing, missing


def test_no_default_alt_text(html):
    for img in html.soup.find_all("img"):
        alt = img.get("alt", "")
        assert alt and "No description" not in alt, img.get("src", "")[:40]


def test_html_has_the_date_and_the_slider_with_every_k_embedded(html, study):
    date = render.merge(study.derivation, study.report).metadata.date
    assert html.soup.find(class_="report-date").get_text() == date
    slider = html.soup.find(id="k-slider")
    frames = slider.find_all("figure")
    assert [int(f["data-k"]) for f in frames] == list(KS)
    assert sum(1 for f in frames if not f.has_attr("hidden")) == 1
    for frame in frames:
        assert frame.img["src"].startswith("data:image/png;base64,")
        assert len(frame.select(".swatches span")) == int(frame["data-k"])
    assert slider.find("input", type="range")["max"] == str(len(KS) - 1)


def test_pdf_has_the_published_table_and_no_slider(pdf, study):
    published = study_module.published()
    text = collapse(pdf.text)
    for row in published:
        if row["k"] in KS:
            assert f"{row['error']:.6f}" in text
    assert "Table 2." in text
    assert "hover" not in text, "the HTML-only slider leaked into the PDF"


def test_sentences_that_depend_on_results_match_them(html, study):
    sweep = results_module.load(study.results, KS)
    text = collapse(html.soup.get_text(" "))
    assert collapse(narrative.comparison(sweep)) in text
    assert collapse(narrative.convergence(sweep)).split(";")[0] in text
    order = narrative.ranking(sweep)
    errors = narrative.errors(sweep)
    highest = text.split("Highest error:")[1].split("EM's error is")[0]
    for i, k in enumerate(KS):
        worst = order[k][-1]
        assert errors[worst][i] == max(errors[m][i] for m in narrative.METHODS)
        assert re.search(rf"{worst} at K = [\d, and]*\b{k}\b", highest), (k, worst, highest)


def test_no_heading_or_table_label_at_a_page_foot(pdf, study):
    headings = {squash(heading_words(h)) for h in
                markdown_headings(study.report_nb) + markdown_headings(study.derivation_nb)}
    for number, page in enumerate(pdf.text.split("\f"), start=1):
        lines = [line for line in page.splitlines() if line.strip()]
        if lines and lines[-1].strip().isdigit():
            lines.pop()   # the page number
        if not lines:
            continue
        last = collapse(lines[-1])
        assert squash(last) not in headings, (number, last)
        assert not re.match(r"Table \d+\.", last), (number, last)
