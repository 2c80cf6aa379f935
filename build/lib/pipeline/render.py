"""Render the report: the executed report notebook, then the executed derivation as its
appendix, as one self-contained HTML page (maths as MathML, no script from outside, a
contents list) or as a PDF through XeLaTeX, with nbconvert's exporters and the templates
in pipeline/templates/. Code, parameters and stderr are left out; the date is the
notebooks' execution end, so two renders give the same bytes; the output is written
atomically (pipeline.atomic publishes the finished parts together).

    python -m pipeline.render html|pdf DERIVATION.ipynb REPORT.ipynb OUT
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import nbformat
from nbconvert.exporters import HTMLExporter, PDFExporter
from nbconvert.exporters.pdf import LatexFailed
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from nbconvert.preprocessors import Preprocessor, TagRemovePreprocessor
from PIL import Image
from traitlets import Unicode
from traitlets.config import Config

from pipeline.atomic import atomic_path

TEMPLATES = Path(__file__).parent / "templates"
REMOVED_CELL_TAGS = {"parameters", "injected-parameters", "remove-cell"}
REMOVED_OUTPUT_TAGS = {"html": set(), "latex": {"html-only"}}   # e.g. the K slider's
MARKDOWN = "markdown+tex_math_double_backslash"   # as nbconvert reads Markdown with LaTeX
PANDOC_ARGS = {   # per output format; headings: title (metadata), ## sections, ### below
    "html": ["--to=html5", "--mathml", "--wrap=preserve", "--standalone", "--toc",
             "--toc-depth=3", f"--template={TEMPLATES / 'pandoc' / 'contents.html'}",
             "--metadata=pagetitle:report"],
    "latex": ["--to=latex", "--columns=100000", "--shift-heading-level-by=-1"],
}
NEXT = {"html": "<!-- next text -->", "latex": "% next text"}   # between texts, verbatim
# pandoc's TeX-to-MathML (texmath, before 0.12.6) does not know \Bigl, \bigm...: the plain size
TEXMATH_UNKNOWN = re.compile(r"\\(big|Big|bigg|Bigg)[lmr](?![A-Za-z])")
# latexmk runs xelatex -no-pdf until the cross-references settle, then xdvipdfmx once;
# most of xdvipdfmx's time is deflating the figures: level 6 takes a third of level 9's.
LATEXMK = ["latexmk", "-norc", "-xelatex", "-interaction=nonstopmode", "-halt-on-error",
           "-file-line-error", "-e", "$xdvipdfmx = q/xdvipdfmx -z 6 -o %D %O %S/",
           "{filename}"]


class RenderError(Exception):
    """A render that cannot be done; the message says why."""


class MissingTool(RenderError):
    """A program the PDF needs (xelatex, latexmk, pandoc) is not installed."""


def markdown_texts(nb):
    """(holder, key) of every Markdown text of a notebook, in reading order: the cells,
    the Markdown outputs and the figures' captions."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            yield cell, "source"
        for output in cell.get("outputs", []):
            if "text/markdown" in output.get("data", {}):
                yield output.data, "text/markdown"
            meta = output.get("metadata", {}).get("em_report", {})
            if "caption" in meta:
                yield meta, "caption"


class MarkdownByPandoc(Preprocessor):
    """Converts every Markdown text of the notebook to the output format, HTML with
    MathML or LaTeX, in one pandoc run (one run per text took a second more), for the
    templates to print as it is. For HTML the contents list goes into
    resources["contents"]. Without pandoc the HTML is made by nbconvert's own Markdown
    converter, its maths left as TeX source."""

    to = Unicode("html")

    def preprocess(self, nb, resources):
        texts = list(markdown_texts(nb))
        sources = [holder[key] for holder, key in texts]
        if self.to == "html" and not shutil.which("pandoc"):
            print("render: pandoc is not installed: the HTML's maths shows as TeX source",
                  file=sys.stderr)
            converted, resources["contents"] = map(markdown2html_mistune, sources), ""
        else:
            if self.to == "html":
                sources = [TEXMATH_UNKNOWN.sub(r"\\\1", text) for text in sources]
            separator = f"\n\n```{{={self.to}}}\n{NEXT[self.to]}\n```\n\n"
            result = subprocess.run(["pandoc", f"--from={MARKDOWN}", *PANDOC_ARGS[self.to]],
                                    input=separator.join(sources), stdout=subprocess.PIPE,
                                    text=True, check=False)
            if result.returncode:
                raise RenderError(f"pandoc failed (exit status {result.returncode})")
            converted = re.split(rf"^{re.escape(NEXT[self.to])}$", result.stdout, flags=re.M)
            if self.to == "html":
                resources["contents"], *converted = converted
        for (holder, key), text in zip(texts, converted, strict=True):
            holder[key] = text.strip()
        return nb, resources


def _execution_end(nb) -> dt.datetime | None:
    """When the notebook's execution ended: papermill's end_time, else the latest cell
    execution time Jupyter recorded."""
    stamps = [nb.metadata.get("papermill", {}).get("end_time")]
    if not stamps[0]:
        stamps = [t for c in nb.cells for t in c.get("metadata", {}).get("execution", {}).values()]
    times = []
    for stamp in filter(None, stamps):
        try:
            t = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            continue
        times.append(t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc))
    return max(times, default=None)


def read(path, what: str):
    path = Path(path)
    if not path.is_file():
        raise RenderError(f"the {what} notebook {str(path)!r} does not exist"
                          + (" (or is not a file)" if path.exists() else ""))
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any parse error names the file
        raise RenderError(f"the {what} notebook {str(path)!r} cannot be read: {exc}") from None


def merge(derivation_path, report_path):
    """The document as one notebook: the report's cells, then the derivation's (its
    appendix, its headings written one level down). Metadata: the report's title, and
    as `date` and `source_date_epoch` the later of the two notebooks' execution ends."""
    nb = read(report_path, "report")
    derivation = read(derivation_path, "derivation")
    if not nb.metadata.get("title"):
        raise RenderError(f"the report notebook {str(report_path)!r} has no title "
                          "in its metadata")
    end = max(filter(None, (_execution_end(nb), _execution_end(derivation))), default=None)
    nb.metadata.date = f"{end.astimezone(dt.timezone.utc):%d %B %Y}".lstrip("0") if end else ""
    nb.metadata.source_date_epoch = int(end.timestamp()) if end else 0
    nb.cells += derivation.cells
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"   # unique across the two notebooks
    return nb


def _exporter(cls, fmt: str, **kw):
    """nbconvert's exporter on this package's template for `fmt`, code and prompts
    hidden, the tagged cells removed and the Markdown converted by pandoc."""
    exporter = cls(template_name=f"report-{fmt}", extra_template_basedirs=[str(TEMPLATES)],
                   exclude_input=True, exclude_input_prompt=True,
                   exclude_output_prompt=True, **kw)
    exporter.register_preprocessor(TagRemovePreprocessor(
        remove_cell_tags=REMOVED_CELL_TAGS, remove_all_outputs_tags={"remove-output"},
        remove_single_output_tags=REMOVED_OUTPUT_TAGS[fmt]), enabled=True)
    exporter.register_preprocessor(MarkdownByPandoc(to=fmt), enabled=True)
    exporter.log.setLevel("ERROR")
    return exporter


# A figure's PNG as the HTML embeds it: WebP, lossy for photographs and maps over them
# (the notebook marks them: em_report.photo), else lossless; a third to a fifth of the PNG.
WEBP = {"photo": {"quality": 85, "method": 4}, "other": {"lossless": True, "quality": 50, "method": 1}}


def web_image(output) -> str:
    """The data: URI of a figure output's image, as WebP (see WEBP)."""
    photo = output.get("metadata", {}).get("em_report", {}).get("photo", False)
    with Image.open(io.BytesIO(base64.b64decode(output.data["image/png"]))) as image:
        buffer = io.BytesIO()
        image.save(buffer, "WEBP", **WEBP["photo" if photo else "other"])
    return "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def to_html(nb) -> bytes:
    exporter = _exporter(HTMLExporter, "html", filters={"web_image": web_image},
                         # no code is shown: no code highlighting
                         config=Config({"CSSHTMLHeaderPreprocessor": {"enabled": False}}))
    body, _ = exporter.from_notebook_node(nb)
    return body.encode("utf-8")


class LatexmkPDFExporter(PDFExporter):
    """nbconvert's PDF exporter, its LaTeX runs left to latexmk (which runs BibTeX
    itself when a document cites)."""

    def run_bib(self, filename, raise_on_failure=False):  # noqa: ARG002
        return False


def check_tex() -> None:
    missing = [tool for tool in ("xelatex", "latexmk", "pandoc") if not shutil.which(tool)]
    if missing:
        raise MissingTool(f"the PDF needs {', '.join(missing)}: not installed (make tex)")


def to_pdf(nb) -> bytes:
    check_tex()
    exporter = _exporter(LatexmkPDFExporter, "latex", latex_command=LATEXMK, latex_count=1)
    with mock.patch.dict(os.environ, SOURCE_DATE_EPOCH=str(nb.metadata.source_date_epoch),
                         FORCE_SOURCE_DATE="1", TZ="UTC"):
        try:
            pdf, _ = exporter.from_notebook_node(nb, resources={"metadata": {"path": ""}})
        except LatexFailed as exc:
            log = str(exc.output)
            errors = [line for line in log.splitlines()
                      if line.startswith(("!", "./", "l.")) or ":fatal:" in line]
            raise RenderError("xelatex failed:\n" + "\n".join(
                errors[-15:] or log.splitlines()[-30:])) from None
    return pdf


def render(fmt: str, derivation, report, out) -> Path:
    """Render the two executed notebooks to `out` as "html" or "pdf"."""
    if fmt == "pdf":
        check_tex()   # before the work, so that a missing tool is reported at once
    nb = merge(derivation, report)
    data = to_html(nb) if fmt == "html" else to_pdf(nb)
    with atomic_path(out) as tmp:  # a failed render leaves the old file
        tmp.write_bytes(data)
    return Path(out)


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("format", choices=("html", "pdf"))
    parser.add_argument("derivation", help="the executed derivation notebook")
    parser.add_argument("report", help="the executed report notebook")
    parser.add_argument("output", help="the HTML or PDF file to write")
    args = parser.parse_args(argv)
    try:
        render(args.format, args.derivation, args.report, args.output)
    except MissingTool as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 3
    except RenderError as exc:
        print(f"render: {args.output}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
