"""Render the report: the executed results notebook, then the executed derivation as
Appendix B, as one self-contained HTML file (no script loaded from outside, images
inline, maths as MathML via pandoc, a linked table of contents, figures with alt text
and captions) or as a PDF via XeLaTeX (captions kept with their figures, headings and
table labels kept with what follows). Code, parameters and stderr are hidden; the date
is the notebooks' execution end, so two renders give the same bytes; the output is
written atomically. `publish` moves a finished report (HTML, PDF, figures) into place together.

    python -m pipeline.render html|pdf DERIVATION.ipynb REPORT.ipynb OUT
    python -m pipeline.render publish STAGING_DIR REPORT_DIR
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import datetime as dt
import mimetypes
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from bs4 import BeautifulSoup
from jinja2 import DictLoader, pass_context
from nbconvert.exporters import HTMLExporter, PDFExporter
from nbconvert.exporters.pdf import LatexFailed
from nbconvert.filters import citation2latex, convert_pandoc, strip_files_prefix
from nbconvert.filters.filter_links import resolve_references
from nbconvert.filters.pandoc import ConvertExplicitlyRelativePaths

from pipeline import paths
from pipeline.atomic import atomic_path

TEX_PACKAGES = (paths.ROOT / "tex-packages.txt").read_text().strip()  # Debian packages
REMOVED_CELL_TAGS = {"parameters", "injected-parameters", "remove-cell"}
# Output types that both the HTML and the LaTeX exporter show: with one of them, an
# output's text/plain alternative goes (a text/html-only output keeps its text for the PDF).
RENDERED_BY_BOTH = {"text/markdown", "text/latex", "image/png", "image/jpeg"}
APPENDIX_PREFIX = "Appendix B. "
MARKDOWN_FORMAT = "markdown+tex_math_double_backslash"   # nbconvert's reader for LaTeX

# A text/plain result that only names an object: "<Figure size 640x480 with 1 Axes>",
# "<matplotlib.legend.Legend at 0x7f...>", "[<matplotlib.lines.Line2D at 0x...>]".
OBJECT_REPR = re.compile(r"^\[?<[^<>\n]*>(, <[^<>\n]*>)*\]?$")
ATX_HEADING = re.compile(r"^( {0,3})(#{1,6})(?=[ \t]|$)")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
TEXMATH_UNKNOWN = re.compile(r"\\(big|Big|bigg|Bigg)[lmr](?![A-Za-z])")


class RenderError(Exception):
    """A render that cannot be done; the message says why."""


class MissingTool(RenderError):
    """xelatex, xdvipdfmx or pandoc is not installed."""


# ---------------------------------------------------------------------------
# Markdown headings


def _map_headings(markdown: str, change) -> str:
    """Apply change(level, text) -> (level, text) | None to every ATX heading outside
    fenced code blocks; None deletes the heading line."""
    out, fence = [], None
    for line in markdown.splitlines(keepends=True):
        m = FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            out.append(line)
            continue
        if m:
            fence = m.group(1)
            out.append(line)
            continue
        h = ATX_HEADING.match(line)
        if not h:
            out.append(line)
            continue
        level = len(h.group(2))
        body = line[h.end():]
        ending = body[len(body.rstrip("\r\n")):]
        result = change(level, body.strip())
        if result is not None:
            new_level, text = result
            out.append(f"{h.group(1)}{'#' * new_level} {text}{ending}")
    return "".join(out)


def headings(markdown: str) -> list[tuple[int, str]]:
    """The (level, text) of every ATX heading of a Markdown text, in order."""
    found = []
    _map_headings(markdown, lambda level, text: found.append((level, text)))
    return found


def _markdown_texts(nb):
    """(holder, key) of every Markdown text of a notebook, in reading order: Markdown
    cells' sources and text/markdown outputs."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            yield cell, "source"
        elif cell.cell_type == "code":
            for output in cell.get("outputs", []):
                if "text/markdown" in output.get("data", {}):
                    yield output["data"], "text/markdown"


# ---------------------------------------------------------------------------
# Cleaning and merging


def _is_object_repr(output) -> bool:
    data = output.get("data", {})
    return (output.output_type in ("execute_result", "display_data")
            and set(data) == {"text/plain"}
            and bool(OBJECT_REPR.match(data["text/plain"].strip())))


def _clean_output(output):
    output = copy.deepcopy(output)
    output.pop("execution_count", None)
    if "metadata" in output:
        # keep what exporters read (image size); drop the rest
        output.metadata = nbformat.from_dict(
            {k: v for k, v in output.metadata.items() if k in (
                "image/png", "image/jpeg", "image/svg+xml", "needs_background", "em_report")})
    data = output.get("data")
    if data and "text/plain" in data and set(data) & RENDERED_BY_BOTH:
        del data["text/plain"]
    if output.output_type == "execute_result":
        output.output_type = "display_data"   # no Out[n] prompt, no execution count
    return output


def clean(nb, base_dirs: list[Path]):
    """A copy of an executed notebook with only what the report shows."""
    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & REMOVED_CELL_TAGS:
            continue
        cell.metadata = nbformat.from_dict({"tags": sorted(tags)} if tags else {})
        if cell.cell_type == "code":
            outputs = [] if "remove-output" in tags else cell.outputs
            outputs = [o for o in outputs
                       if not (o.output_type == "stream" and o.get("name") == "stderr")
                       and not _is_object_repr(o)]
            if not outputs:
                continue
            cell.outputs = [_clean_output(o) for o in outputs]
            cell.execution_count = None
        cells.append(cell)
    nb.cells = cells
    for holder, key in _markdown_texts(nb):
        holder[key] = _absolute_images(holder[key], base_dirs)
    return nb


MD_IMAGE = re.compile(r"(!\[[^\]]*\]\()\s*(<[^>]*>|[^)\s]+)")
HTML_IMAGE = re.compile(r"(<img\b[^>]*?\bsrc\s*=\s*)([\"'])(.*?)\2", re.IGNORECASE)


def _absolute_images(markdown: str, base_dirs: list[Path]) -> str:
    """Relative image paths made absolute, against the first base folder that holds
    the file (left as they are when none does: the exporter then reports them)."""

    def resolve(ref: str) -> str:
        if re.match(r"^(data:|attachment:|[a-zA-Z][a-zA-Z0-9+.-]*://|/)", ref):
            return ref
        for base in base_dirs:
            candidate = base / ref
            if candidate.is_file():
                return candidate.resolve().as_posix()
        return ref

    def md(m):
        ref = m.group(2)
        bracketed = ref.startswith("<")
        new = resolve(ref[1:-1] if bracketed else ref)
        return m.group(1) + (f"<{new}>" if bracketed or " " in new else new)

    markdown = MD_IMAGE.sub(md, markdown)
    return HTML_IMAGE.sub(lambda m: f"{m.group(1)}{m.group(2)}{resolve(m.group(3))}{m.group(2)}",
                          markdown)


def _plain(markdown: str) -> str:
    """A Markdown heading as plain text (for <title> and PDF metadata)."""
    text = re.sub(r"`([^`]*)`", r"\1", markdown)
    text = re.sub(r"\$+([^$]*)\$+", r"\1", text)
    text = re.sub(r"[*_]{1,3}([^*_]+)[*_]{1,3}", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"\\([a-zA-Z]+|.)", lambda m: m.group(1) if len(m.group(1)) == 1 else "",
                  text).strip()


def _execution_end(nb) -> dt.datetime | None:
    """When the notebook's execution ended: papermill's end_time, else the latest
    cell execution time recorded by Jupyter."""
    stamps = [nb.metadata.get("papermill", {}).get("end_time")]
    if not stamps[0]:
        for cell in nb.cells:
            execution = cell.get("metadata", {}).get("execution", {})
            stamps.extend(execution.values())
    times = []
    for stamp in stamps:
        if isinstance(stamp, str):
            with contextlib.suppress(ValueError):
                t = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                times.append(t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc))
    return max(times) if times else None


def _base_dirs(path: Path, nb) -> list[Path]:
    """Where a relative path in the notebook may be relative to: the folder of the
    notebook papermill executed (make runs the kernel there) and this notebook's."""
    dirs = []
    source = nb.metadata.get("papermill", {}).get("input_path")
    if source:
        dirs.append(Path(source).expanduser().parent)
    dirs.append(path.parent)
    return dirs


def merge(derivation_path: Path, report_path: Path):
    """The document as one notebook: the results, then the derivation as an appendix.

    Its metadata holds `title` (Markdown), `title_text` (plain), `date` (YYYY-MM-DD or
    empty) and `source_date_epoch` (int).
    """
    derivation_raw = read(derivation_path, "derivation")
    report_raw = read(report_path, "report")
    derivation = clean(derivation_raw, _base_dirs(derivation_path, derivation_raw))
    report = clean(report_raw, _base_dirs(report_path, report_raw))

    # The title: the report's first level-1 heading; its other level-1 headings become 2.
    title = None

    def keep_one_h1(level, text):
        nonlocal title
        if level == 1:
            if title is None:
                title = text
            else:
                level = 2
        return level, text

    for holder, key in _markdown_texts(report):
        holder[key] = _map_headings(holder[key], keep_one_h1)
    if title is None:
        title = report_raw.metadata.get("title") or "Report"
        report.cells.insert(0, nbformat.v4.new_markdown_cell(f"# {title}"))

    # The derivation: one level down, its first heading marked as the appendix.
    first = True

    def appendix(level, text):
        nonlocal first
        if first:
            first = False
            return 2, APPENDIX_PREFIX + text
        return min(6, level + 1), text

    for holder, key in _markdown_texts(derivation):
        holder[key] = _map_headings(holder[key], appendix)
    if first:   # a derivation without headings still gets its own section
        derivation.cells.insert(0, nbformat.v4.new_markdown_cell(
            f"## {APPENDIX_PREFIX}derivation"))

    ends = [t for t in (_execution_end(report_raw), _execution_end(derivation_raw)) if t]
    end = max(ends) if ends else None

    merged = nbformat.v4.new_notebook()
    language = {k: v for k, v in report_raw.metadata.get("language_info", {}).items()
                if k in ("name", "pygments_lexer", "codemirror_mode", "file_extension",
                         "mimetype")}
    kernel = report_raw.metadata.get("kernelspec", {})
    merged.metadata = nbformat.from_dict({
        **({"kernelspec": kernel} if "name" in kernel and "display_name" in kernel else {}),
        **({"language_info": language} if "name" in language else {}),
        "title": title,
        "title_text": _plain(title),
        "date": f"{end.astimezone(dt.timezone.utc):%d %B %Y}".lstrip("0") if end else "",
        "source_date_epoch": int(end.timestamp()) if end else 0,
    })
    merged.cells = report.cells + derivation.cells
    for i, cell in enumerate(merged.cells):
        cell.id = f"cell-{i}"
    nbformat.validate(merged)
    return merged


def read(path: Path, what: str):
    path = Path(path)
    if not path.is_file():
        raise RenderError(f"the {what} notebook {str(path)!r} does not exist"
                          + (" (or is not a file)" if path.exists() else ""))
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any parse error names the file
        raise RenderError(f"the {what} notebook {str(path)!r} cannot be read: {exc}") from None


# ---------------------------------------------------------------------------
# HTML

HTML_TEMPLATE = r"""
{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block extra_css -%}
<style type="text/css">
main { max-width: 62rem; margin: 0 auto; padding: 1.5rem 1rem 4rem; }
.jp-InputPrompt, .jp-OutputPrompt { display: none; }
.jp-RenderedHTMLCommon math[display="block"] {
  margin: 0.8em 0; padding: 0.2em 0; overflow-x: auto; overflow-y: hidden; }
math { font-family: "Latin Modern Math", "STIX Two Math", "Cambria Math", math; }
.jp-RenderedHTMLCommon figure { margin: 1em 0; }
.jp-RenderedHTMLCommon figcaption { font-size: 90%; color: var(--jp-content-font-color2); }
.jp-RenderedImage img { max-width: 100%; height: auto; }
.jp-RenderedHTMLCommon table { margin: 1em 0; }
figure.report-figure { margin: 1.2em 0; }
figure.report-figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figure.report-figure figcaption { font-size: 92%; margin-top: 0.4em; }
figure.report-figure figcaption p { margin: 0; }
p.report-date { color: var(--jp-content-font-color2); margin-top: -0.5em; }
nav.report-toc { font-size: 95%; margin: 1em 0 1.5em; }
nav.report-toc ul { margin: 0.3em 0; padding-left: 1.2em; list-style: none; }
@media (max-width: 600px) {
  main { padding: 0.5rem 0.4rem 2rem; }
  .jp-RenderedHTMLCommon table { display: block; overflow-x: auto; font-size: 85%; }
}
</style>
{%- endblock extra_css -%}
{% block data_png scoped %}
{%- set meta = output.metadata.get('em_report', {}) -%}
<figure class="jp-RenderedImage jp-OutputArea-output report-figure">
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}" alt="{{ meta.get('alt', '') | escape_html }}">
{%- if meta.get('caption') %}
<figcaption>{{ meta['caption'] | markdown2html }}</figcaption>
{%- endif %}
</figure>
{%- endblock data_png %}
{% block data_latex scoped %}
<div class="jp-RenderedHTMLCommon jp-RenderedLatex jp-OutputArea-output {{ extra_class }}"
     data-mime-type="text/latex">
{{ output.data['text/latex'] | latex2html }}
</div>
{%- endblock data_latex %}
"""


class _Conversions:
    """Conversions memoised by key, the ones foreseen made ahead on a few threads: each
    pandoc conversion is a process, most of whose time is its start. A conversion not
    foreseen is made when asked for, so the output never depends on the foresight."""

    THREADS = 4

    def __init__(self):
        self.done: dict[tuple, object] = {}

    def converted(self, key):
        if key not in self.done:
            self.done[key] = self._convert(key)
        return self.done[key]

    def prefetch(self, keys) -> list:
        """Make the conversions `keys` on the threads; returns their outputs, in order."""
        missing = [key for key in dict.fromkeys(keys) if key not in self.done]
        with ThreadPoolExecutor(self.THREADS) as pool:
            self.done.update(zip(missing, pool.map(self._convert, missing)))
        return [self.done[key] for key in keys]

    def _convert(self, key):
        raise NotImplementedError


class _Pandoc(_Conversions):
    """pandoc to HTML with MathML (path None when pandoc is missing)."""

    def __init__(self):
        super().__init__()
        self.path = shutil.which("pandoc")

    def __call__(self, text: str, source_format: str) -> str:
        return self.converted((text, source_format))[0]

    @property
    def failed_maths(self) -> list[str]:
        """The TeX pandoc could not convert to MathML, in the order of the conversions."""
        return [formula for _, failed in self.done.values() for formula in failed]

    def _convert(self, key) -> tuple[str, list[str]]:
        text, source_format = key
        result = subprocess.run(
            [self.path, "--from", source_format, "--to", "html5", "--mathml",
             "--wrap=preserve"],
            input=TEXMATH_UNKNOWN.sub(r"\\\1", text), capture_output=True, text=True,
            check=False)
        if result.returncode:
            raise RenderError(f"pandoc failed on:\n{text[:500]}\n{result.stderr}")
        return result.stdout, re.findall(r"Could not convert TeX math (.*?), rendering as TeX",
                                         result.stderr, flags=re.S)

    def foresee(self, nb, shown) -> None:
        """Convert ahead what HTML_TEMPLATE converts: the Markdown cells, and of each
        output what it shows (shown(data): the MIME types it picks, in nbconvert's order
        of preference): Markdown, LaTeX, or a figure's caption."""
        keys = [(cell.source, MARKDOWN_FORMAT) for cell in nb.cells
                if cell.cell_type == "markdown"]
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                mime = next(iter(shown(data)), None) if data else None
                caption = output.get("metadata", {}).get("em_report", {}).get("caption")
                if mime == "text/markdown":
                    keys.append((data[mime], MARKDOWN_FORMAT))
                elif mime == "text/latex":
                    keys.append((data[mime], "latex"))
                elif mime == "image/png" and caption:
                    keys.append((caption, MARKDOWN_FORMAT))
        self.prefetch(keys)


class OfflineHTMLExporter(HTMLExporter):
    """nbconvert's lab HTML without scripts, maths as MathML, images inline."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.pandoc = _Pandoc()
        self.register_filter("latex2html", self.latex2html)

    @pass_context
    def markdown2html(self, context, source):  # noqa: D102 - pandoc with MathML
        if not self.pandoc.path:
            return super().markdown2html(context, source)
        return self.pandoc(source, MARKDOWN_FORMAT)

    def latex2html(self, source):
        if not self.pandoc.path:
            return f"<pre>{source}</pre>"
        return self.pandoc(source, "latex")


def _data_uri(src: str) -> str:
    if src.startswith("data:"):
        return src
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", src) and not src.startswith("file://"):
        raise RenderError(f"the report refers to a remote image {src!r}: the HTML must "
                          "need no network; save the image and show it from a file")
    path = Path(src.removeprefix("file://"))
    if not path.is_file():
        raise RenderError(f"the report refers to the image {src!r}, which does not exist "
                          "(relative paths are taken from the notebook's working folder)")
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def to_html(nb) -> bytes:
    exporter = OfflineHTMLExporter(
        template_name="lab", template_file="em_report.html.j2",
        extra_loaders=[DictLoader({"em_report.html.j2": HTML_TEMPLATE})],
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
        embed_images=True, anchor_link_text="")
    exporter.log.setLevel("ERROR")   # not the "alternative text is missing" warning
    resources = {"metadata": {"name": nb.metadata.title_text}}
    nb = copy.deepcopy(nb)
    nb.metadata.title = nb.metadata.title_text
    if exporter.pandoc.path:
        exporter.pandoc.foresee(nb, exporter.environment.filters["filter_data_type"])
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    if not exporter.pandoc.path:
        print("render: pandoc is not installed: the HTML's maths shows as TeX source "
              "(install pandoc, e.g. `make tex`, for MathML)", file=sys.stderr)
    for formula in exporter.pandoc.failed_maths:
        print(f"render: pandoc could not convert this TeX to MathML; it shows as TeX: "
              f"{formula.strip()[:200]}", file=sys.stderr)

    soup = BeautifulSoup(body, features="html.parser")
    for img in soup.find_all("img"):
        img["src"] = _data_uri(img.get("src", ""))
    seen: dict[str, int] = {}
    for element in soup.find_all(id=True):   # unique ids across cells
        ident = element["id"]
        if ident in seen:
            seen[ident] += 1
            element["id"] = f"{ident}-{seen[ident]}"
        else:
            seen[ident] = 0
    for element in soup.find_all(["script", "link", "iframe", "source", "video", "audio"]):
        ref = element.get("src") or element.get("href")
        if ref and not ref.startswith(("data:", "#")):
            raise RenderError(f"the HTML would load {ref!r} from outside the file")
    if soup.find("meta", attrs={"name": "date"}) is None and nb.metadata.date:
        meta = soup.new_tag("meta", attrs={"name": "date", "content": nb.metadata.date})
        soup.head.append(meta)
    _describe_images(soup)
    _add_date_and_contents(soup, nb.metadata.date)
    return str(soup).encode("utf-8")


def _describe_images(soup) -> None:
    """Every image without alt text gets one naming the section it illustrates."""
    section = "the report"
    for element in soup.find_all(["h2", "h3", "h4", "img"]):
        if element.name != "img":
            section = element.get_text(" ", strip=True).rstrip("\u00b6").strip()
        elif not element.get("alt") or element["alt"].startswith("No description"):
            element["alt"] = f"A figure of the section \u201c{section}\u201d"


def _add_date_and_contents(soup, date: str) -> None:
    """The date under the title and a linked table of contents of the level-2
    headings (level 3 nested) after it."""
    title = soup.find("h1")
    if title is None:
        return
    anchor = title
    if date:
        stamp = soup.new_tag("p", attrs={"class": "report-date"})
        stamp.string = date
        title.insert_after(stamp)
        anchor = stamp
    nav = soup.new_tag("nav", attrs={"class": "report-toc", "aria-label": "Contents"})
    details = soup.new_tag("details", attrs={"open": ""})
    summary = soup.new_tag("summary")
    summary.string = "Contents"
    details.append(summary)
    top = soup.new_tag("ul")
    current = None
    for heading in soup.find_all(["h2", "h3"]):
        if not heading.get("id"):
            continue
        item = soup.new_tag("li")
        link = soup.new_tag("a", href=f"#{heading['id']}")
        link.string = heading.get_text(" ", strip=True).rstrip("\u00b6").strip()
        item.append(link)
        if heading.name == "h2":
            top.append(item)
            current = item
        elif current is not None:
            if current.find("ul") is None:
                current.append(soup.new_tag("ul"))
            current.find("ul").append(item)
    details.append(top)
    nav.append(details)
    anchor.insert_after(nav)


# ---------------------------------------------------------------------------
# PDF

LATEX_TEMPLATE = r"""
((*- extends 'index.tex.j2' -*))
((* block packages *))
((( super() )))
    \usepackage{etoolbox}
    \usepackage{needspace}
    \usepackage[section,below]{placeins}
    \AtBeginEnvironment{longtable}{\small}
    \setcounter{secnumdepth}{0}
    \pretocmd{\section}{\needspace{12\baselineskip}}{}{}
    \pretocmd{\subsection}{\needspace{9\baselineskip}}{}{}
((* endblock packages *))
((* block title -*))
    \title{((( nb.metadata.title
                | convert_pandoc('markdown+tex_math_double_backslash', 'latex') | trim )))}
((*- endblock title *))
((* block date *))
    \date{((( nb.metadata.date | escape_latex )))}
((* endblock date *))
((* block commands *))
((( super() )))
    \hypersetup{pdftitle={((( nb.metadata.title_text | escape_latex )))}}
((* endblock commands *))
((* block markdowncell scoped *))
    ((( cell.source | citation2latex | strip_files_prefix
        | convert_pandoc('markdown+tex_math_double_backslash', 'json',
                         extra_args=['--columns=100000'])
        | resolve_references | convert_explicitly_relative_paths
        | convert_pandoc('json', 'latex') | fit_tables )))
((* endblock markdowncell *))
((* block data_markdown -*))
    ((( output.data['text/markdown'] | citation2latex | strip_files_prefix
        | convert_pandoc('markdown+tex_math_double_backslash', 'latex',
                         extra_args=['--columns=100000'])
        | fit_tables )))
((* endblock data_markdown *))
((* block stream *))
    \needspace{((( [output.text.count('\n') + 2, 25] | min )))\baselineskip}
((( super() )))
((* endblock stream *))
((* block data_png -*))
((*- set meta = output.metadata.get('em_report', {}) -*))
((*- if meta.get('caption') *))
    \begin{figure}[!htbp]\centering
    \adjustimage{max size={\linewidth}{0.7\textheight}}{((( output.metadata.filenames['image/png'] | posix_path )))}\par
    \vspace{0.4em}\begin{minipage}{0.96\linewidth}\small ((( meta['caption']
        | convert_pandoc('markdown+tex_math_double_backslash', 'latex') | trim )))\end{minipage}
    \end{figure}
((*- else *))
    ((( draw_figure(output.metadata.filenames['image/png']) )))
((*- endif *))
((*- endblock data_png *))
((* block figure scoped *))
    \begin{center}
    \adjustimage{max size={\linewidth}{0.8\textheight}}{((( filename )))}
    \end{center}
    { \hspace*{\fill} \\}
((* endblock figure *))
"""


MAX_BOXED_TABLE_ROWS = 60


def _matching_brace(text: str, start: int) -> int:
    """Index just past the group that opens with the "{" at text[start]."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{" and text[i - 1] != "\\":
            depth += 1
        elif text[i] == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError("unbalanced braces")


def fit_tables(latex: str) -> str:
    """pandoc's tables (longtables, columns at their natural width since pandoc reads
    Markdown with --columns=100000) made to fit the text width: a table of at most
    MAX_BOXED_TABLE_ROWS rows, without caption, becomes a tabular scaled down to the
    line width if it is wider; a longer one stays a longtable, which can break across
    pages, set in \\small like every table."""
    out, pos = [], 0
    opening = "\\begin{longtable}[]{"
    while (start := latex.find(opening, pos)) >= 0:
        spec_start = start + len(opening) - 1
        spec_end = _matching_brace(latex, spec_start)
        end = latex.find("\\end{longtable}", spec_end)
        if end < 0:
            break
        body = latex[spec_end:end]
        rows = len(re.findall(r"\\\\\s*$", body, flags=re.M))
        before = latex[pos:start]
        label = before.rfind("\n\n", 0, len(before.rstrip()))  # the paragraph before
        keep = f"\\needspace{{{min(rows + 6, 40)}\\baselineskip}}\n"
        out.append(before[:label + 2] + keep + before[label + 2:] if label >= 0 else keep + before)
        if ("\\caption" in body or body.count("\\endhead") > 1 or "\\endfirsthead" in body
                or rows > MAX_BOXED_TABLE_ROWS):
            out.append(latex[start:end + len("\\end{longtable}")])
        else:
            body = re.sub(r"^\\end(head|foot|lastfoot)\s*$\n?", "", body, flags=re.M)
            out.append("\\begin{center}\\small\\setlength{\\tabcolsep}{4pt}%\n"
                       "\\begin{adjustbox}{max width=\\linewidth}\n"
                       f"\\begin{{tabular}}{latex[spec_start:spec_end]}{body}\\end{{tabular}}\n"
                       "\\end{adjustbox}\\end{center}")
        pos = end + len("\\end{longtable}")
    out.append(latex[pos:])
    return "".join(out)


# xelatex writes only the XDV; xdvipdfmx turns it into the PDF once, at the end. Most of
# xdvipdfmx's time is deflating the figures: level 6 takes a third of the time of its
# default 9 for a PDF about 2 % larger.
LATEX_COMMAND = ["xelatex", "-no-pdf", "-interaction=nonstopmode", "-halt-on-error",
                 "-file-line-error", "{filename}"]
XDV_TO_PDF_COMMAND = ["xdvipdfmx", "-z", "6", "-o", "{filename}.pdf", "{filename}.xdv"]
MAX_LATEX_PASSES = 3
NOT_READ_BACK = (".log", ".xdv", ".pdf")   # what a pass writes and no later pass reads


class XdvToPdfFailed(LatexFailed):
    """xdvipdfmx could not make the PDF of xelatex's XDV."""


def _read_back_state(folder: Path) -> dict[str, bytes]:
    """The content of every file in `folder` that a xelatex pass may read: the source,
    the figures and what earlier passes wrote (.aux, .out, .toc...)."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())
            if path.is_file() and path.suffix not in NOT_READ_BACK}


class ReportPDFExporter(PDFExporter):
    """nbconvert's PDF exporter, with fewer and cheaper TeX runs: xelatex -no-pdf is run
    again only while a pass changes the files it reads back (the cross-references, the
    bookmarks: as latexmk does), at most latex_count times, then xdvipdfmx makes the
    PDF once. No bibtex."""

    def run_latex(self, filename, raise_on_failure=LatexFailed):
        """Run the xelatex passes, then xdvipdfmx; False (or raise_on_failure) when
        one fails. `filename` is the .tex file, in the current folder."""

        def log_error(command, out):
            self.log.critical("%s failed: %s\n%s", command[0], command, out)

        state = _read_back_state(Path.cwd())
        for _ in range(self.latex_count):
            if not self.run_command(self.latex_command, filename, 1, log_error,
                                    raise_on_failure):
                return False
            state, before = _read_back_state(Path.cwd()), state
            if state == before:
                break
        return self.run_command(XDV_TO_PDF_COMMAND, os.path.splitext(filename)[0], 1,
                                log_error, XdvToPdfFailed if raise_on_failure else None)

    def run_bib(self, filename, raise_on_failure=False):  # noqa: ARG002 - no citations
        return False


class PrefetchedPandoc(_Conversions):
    """nbconvert's convert_pandoc filter, memoised, with the conversions foreseen for a
    notebook made ahead (_prefetch_markdown): the report's ~70, one after another as
    the template asks for them, took 1.5 to 2.5 s. Keys: (source, from, to, extra args)."""

    def __call__(self, source, from_format, to_format, extra_args=None):
        return self.converted((source, from_format, to_format, tuple(extra_args or ())))

    @staticmethod
    def _convert(key) -> str:
        source, from_format, to_format, extra_args = key
        return convert_pandoc(source, from_format, to_format, extra_args=list(extra_args))


def _prefetch_markdown(pandoc: PrefetchedPandoc, nb) -> None:
    """Convert ahead what LATEX_TEMPLATE converts with pandoc, through the same filters:
    the title, the Markdown cells (to pandoc's JSON, then to LaTeX), the Markdown outputs
    and the captions."""
    wide = ("--columns=100000",)
    latex = [(nb.metadata.title, MARKDOWN_FORMAT, "latex", ())]
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            source = strip_files_prefix(citation2latex(cell.source))
            cells.append((source, MARKDOWN_FORMAT, "json", wide))
        for output in cell.get("outputs", []):
            if "text/markdown" in output.get("data", {}):
                source = strip_files_prefix(citation2latex(output.data["text/markdown"]))
                latex.append((source, MARKDOWN_FORMAT, "latex", wide))
            caption = output.get("metadata", {}).get("em_report", {}).get("caption")
            if caption and "image/png" in output.get("data", {}):
                latex.append((caption, MARKDOWN_FORMAT, "latex", ()))
    relative_paths = ConvertExplicitlyRelativePaths(texinputs=os.getcwd())  # as nbconvert's
    asts = pandoc.prefetch(cells + latex)[:len(cells)]
    pandoc.prefetch([(relative_paths(resolve_references(ast)), "json", "latex", ())
                     for ast in asts])


@contextlib.contextmanager
def _environment(**values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _latex_only(nb):
    """The notebook as the LaTeX template wants it: the title heading removed (it is
    \\maketitle's) and every heading one level up."""
    nb = copy.deepcopy(nb)
    removed = False

    def drop_title(level, text):
        nonlocal removed
        if level == 1 and not removed:
            removed = True
            return None
        return max(1, level - 1), text

    for holder, key in _markdown_texts(nb):
        holder[key] = _map_headings(holder[key], drop_title)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if not o.get("metadata", {}).get("em_report", {}).get("html_only")]
    nb.cells = [c for c in nb.cells if not (c.cell_type == "markdown" and not c.source.strip())
                and not (c.cell_type == "code" and not c.outputs)]
    return nb


def check_tex() -> None:
    missing = [tool for tool in ("xelatex", "xdvipdfmx", "pandoc") if not shutil.which(tool)]
    if missing:
        names = " and ".join(filter(None, [", ".join(missing[:-1]), missing[-1]]))
        raise MissingTool(
            f"the PDF needs {names}, which {'is' if len(missing) == 1 else 'are'}"
            f" not installed. On Debian/Ubuntu install the packages {TEX_PACKAGES} "
            f"(`make tex` does it as root: apt-get install --no-install-recommends "
            f"{TEX_PACKAGES}); elsewhere a TeX distribution with XeLaTeX, and pandoc.")


def to_pdf(nb) -> bytes:
    check_tex()
    pandoc = PrefetchedPandoc()
    exporter = ReportPDFExporter(
        template_name="latex", template_file="em_report.tex.j2",
        extra_loaders=[DictLoader({"em_report.tex.j2": LATEX_TEMPLATE})],
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
        latex_count=MAX_LATEX_PASSES, latex_command=LATEX_COMMAND,
        filters={"convert_pandoc": pandoc, "fit_tables": fit_tables})
    exporter.log.setLevel("ERROR")
    nb = _latex_only(nb)
    _prefetch_markdown(pandoc, nb)
    epoch = str(nb.metadata.source_date_epoch)
    with _environment(SOURCE_DATE_EPOCH=epoch, FORCE_SOURCE_DATE="1", TZ="UTC"):
        try:
            pdf, _ = exporter.from_notebook_node(
                nb, resources={"metadata": {"name": "report", "path": ""}})
        except LatexFailed as exc:
            tool = "xdvipdfmx" if isinstance(exc, XdvToPdfFailed) else "xelatex"
            log = exc.output if isinstance(exc.output, str) else str(exc.output)
            errors = [line for line in log.splitlines()
                      if line.startswith(("!", "./")) or ":fatal:" in line]
            tail = "\n".join(errors[-15:] or log.splitlines()[-30:])
            raise RenderError(f"{tool} failed:\n{tail}") from None
    return pdf


# ---------------------------------------------------------------------------
# Files


def render(fmt: str, derivation: str | os.PathLike, report: str | os.PathLike,
           out: str | os.PathLike) -> Path:
    """Render the two executed notebooks to `out` as "html" or "pdf"."""
    if fmt == "pdf":
        check_tex()   # before the work, so that a missing TeX is reported at once
    nb = merge(Path(derivation), Path(report))
    data = to_html(nb) if fmt == "html" else to_pdf(nb)
    with atomic_path(out) as tmp:  # a failed render leaves the old file
        tmp.write_bytes(data)
    return Path(out)


REPORT_PARTS = ("report.html", "report.pdf", "figures")


def publish(staging: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Move a finished report (report.html, report.pdf and figures/) from `staging` into
    the folder `dest`. Every part is first copied beside its place, then all are renamed
    in: the three change together, and only once all three were made."""
    staging, dest = Path(staging), Path(dest)
    missing = [part for part in REPORT_PARTS if not (staging / part).exists()]
    if missing:
        raise RenderError(f"{str(staging)!r} holds no finished report: {', '.join(missing)} "
                          f"missing")
    dest.mkdir(parents=True, exist_ok=True)
    fresh = {part: dest / f".{part}.new" for part in REPORT_PARTS}
    old_figures = dest / ".figures.old"
    def remove(paths):
        for path in paths:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    remove([*fresh.values(), old_figures])
    try:
        for part, path in fresh.items():
            (shutil.copytree if part == "figures" else shutil.copy2)(staging / part, path)
    except OSError:  # e.g. a full disk: the report in place stays as it was
        remove(fresh.values())
        raise
    if (dest / "figures").exists():
        (dest / "figures").rename(old_figures)
    for part, path in fresh.items():
        os.replace(path, dest / part)
    shutil.rmtree(old_figures, ignore_errors=True)
    return dest


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["publish"]:
        if len(argv) != 3:
            print("usage: python -m pipeline.render publish STAGING_DIR REPORT_DIR", file=sys.stderr)
            return 2
        try:
            publish(argv[1], argv[2])
        except RenderError as exc:
            print(f"render: {exc}", file=sys.stderr)
            return 1
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("format", choices=("html", "pdf"))
    parser.add_argument("derivation", help="the executed derivation notebook")
    parser.add_argument("report", help="the executed report (results) notebook")
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
