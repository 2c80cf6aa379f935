"""Fixtures shared by the pipeline's tests: a small image, the derivation notebook run
once, and a copy of the project that make can run in."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from pipeline import images, paths
from pipeline.run_notebook import run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def small_image(tmp_path_factory) -> Path:
    """The default photograph shrunk to 64 x 75 pixels (thousands of colours)."""
    path = tmp_path_factory.mktemp("img") / "small.png"
    rgb = images.load_rgb(paths.default_image())
    Image.fromarray(rgb).resize((64, 75), Image.Resampling.BILINEAR).save(path)
    return path


@pytest.fixture(scope="session")
def executed_derivation(tmp_path_factory) -> Path:
    """notebooks/derivation.ipynb run by papermill once per test process (per pytest-xdist
    worker that needs it), on at most 3000 pixels, from a folder outside the project (it
    finds its code and image by import, not by path); its asserts check every formula,
    so a run that completes is a check."""
    folder = tmp_path_factory.mktemp("derivation")
    out = folder / "derivation.ipynb"
    run(ROOT / "notebooks" / "derivation.ipynb", out, {"max_pixels": 3000}, cwd=str(folder),
        progress_bar=False)
    return out


def copy_project(dest: Path) -> tuple[Path, Path]:
    """Copy the project to `dest` for make to run in, sharing this test's environment
    (no reinstall; its editable install still imports the code of this checkout): the
    copied requirements are the same files, so the environment's key (its stamp, made
    by the Makefile) holds. Returns (dest, the environment)."""
    venv = Path(sys.prefix)
    if not (venv / ".installed").exists():
        pytest.skip(f"run through `make test`: {venv} is not the project's environment")
    for item in ("Makefile", "src", "notebooks"):
        source = ROOT / item
        (shutil.copytree if source.is_dir() else shutil.copy2)(
            source, dest / item, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                    if source.is_dir() else {}))
    for name in ("requirements.txt", "requirements-dev.txt", "pyproject.toml", "tex-packages.txt"):
        shutil.copy2(ROOT / name, dest / name)
    return dest, venv


def make_args(venv: Path) -> list[str]:
    """make's arguments for a run in a project copy on the environment `venv`, with the
    interpreter that made it (another would make the environment anew)."""
    return [f"VENV={venv}", f"PYTHON={os.path.realpath(venv / 'bin' / 'python')}"]


@pytest.fixture()
def project_copy(tmp_path):
    """A copy of the project that shares this test's environment (copy_project)."""
    return copy_project(tmp_path)


@pytest.fixture(scope="module")
def module_project_copy(tmp_path_factory):
    """One copy of the project (copy_project) for the tests of a module to share."""
    return copy_project(tmp_path_factory.mktemp("project"))
