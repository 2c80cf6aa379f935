"""notebooks/derivation.ipynb: runs on a small sample, keeps its sections and checks.

The notebook asserts every formula it derives against the kernel em, so a run that
completes is the test; papermill raises PapermillExecutionError on a failed assert.
"""

import re
from pathlib import Path

import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "derivation.ipynb"

SECTIONS = [
    "1. The model",
    "2. The log-likelihood, the latent assignments and Q",
    "3. E-step: responsibilities and log-sum-exp",
    "4. M-step: closed forms",
    "5. Why the log-likelihood never decreases",
    "6. Weighted data",
    "7. Degeneracy and the variance floor",
    "8. k-means as a limit of EM",
    "9. Model selection: BIC",
    "10. Segmentation and compression",
    "11. Fewer iterations: extrapolating EM's steps (SQUAREM)",
    "12. Leaving a basin: split-and-merge moves",
]

HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.MULTILINE)


def _headings(cell):
    return HEADING.findall(cell.source) if cell.cell_type == "markdown" else []


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook run by papermill from notebooks/, on at most 3000 pixels."""
    out = tmp_path_factory.mktemp("derivation") / "derivation.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK), str(out), parameters=dict(max_pixels=3000),
        cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
    return nbformat.read(out, as_version=4)


def test_runs_and_every_section_is_checked(executed):
    """Completes, has the twelve numbered sections in order, each with an assert cell."""
    errors = [o for c in executed.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors

    # where each heading starts, in cell order
    starts = [(i, title) for i, cell in enumerate(executed.cells)
              for title in _headings(cell)]
    titles = [title for _, title in starts]
    positions = []
    for section in SECTIONS:
        assert section in titles, f"missing section heading {section!r}"
        positions.append(titles.index(section))
    assert positions == sorted(positions), "sections out of order"

    for section in SECTIONS:
        k = titles.index(section)
        first = starts[k][0]
        end = starts[k + 1][0] if k + 1 < len(starts) else len(executed.cells)
        asserting = [c for c in executed.cells[first + 1:end] if c.cell_type == "code"
                     and re.search(r"^\s*assert\b", c.source, re.MULTILINE)]
        assert asserting, f"no code cell with an assert after {section!r}"


def test_runs_from_the_project_root(tmp_path):
    """The notebook runs from the project root as well as from notebooks/ (imports, not paths)."""
    out = tmp_path / "derivation.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK), str(out), parameters=dict(max_pixels=1000, seed=1),
        cwd=str(ROOT), kernel_name="python3", progress_bar=False)


def test_parameters_injected(executed):
    tags = [c.metadata.get("tags", []) for c in executed.cells]
    assert any("parameters" in t for t in tags)
    injected = [c for c, t in zip(executed.cells, tags) if "injected-parameters" in t]
    assert injected and "max_pixels = 3000" in injected[0].source


def test_committed_valid_with_its_parameters():
    """(Every notebook's empty outputs: tests/test_pipeline.py.)"""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"] == {
        "name": "python3", "display_name": "Python 3", "language": "python"}
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert re.search(r"^image = \"\"", params[0].source, re.MULTILINE)
    assert re.search(r"^max_pixels = \d+", params[0].source, re.MULTILINE)
    assert re.search(r"^seed = \d+", params[0].source, re.MULTILINE)
