"""notebooks/derivation.ipynb: its sections, each checked by asserts, and its committed form.

The notebook asserts every formula it derives against the kernel em, so a run that
completes is the test (tests/conftest.py runs it once, from outside the project);
papermill raises PapermillExecutionError on a failed assert.
"""

import re
from pathlib import Path

import nbformat
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


@pytest.mark.slow
def test_runs_and_every_section_is_checked(executed_derivation):
    """Completes, has the twelve numbered sections in order, each with an assert cell."""
    executed = nbformat.read(executed_derivation, as_version=4)
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
