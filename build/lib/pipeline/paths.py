"""Where things are: the project root, the default image and the output layout.

The one place that knows these paths; the Makefile asks it (`python src/pipeline/paths.py
stem IMAGE`) instead of repeating them. Only the standard library is imported at module
level, so the Makefile can run it before the environment exists.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "output"
REPORT = ROOT / "report"  # the committed report of the default image
REPORT_DATA_DIR = REPORT / "data"  # the committed numbers the report reads besides its runs
STUDY_DATA = REPORT_DATA_DIR / "study.json"  # make study's numbers
BENCH_DATA = REPORT_DATA_DIR / "bench.json"  # make bench's numbers
DEFAULT_IMAGE_NAME = "grace_hopper.jpg"  # ships with matplotlib as sample data
# The original study's photograph, beside the repository when available (never committed).
STUDY_IMAGE = ROOT.parent / "shared" / "reference" / "im.jpg"


def default_image() -> Path:
    """Path of the project's default image: the photograph matplotlib ships."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data(DEFAULT_IMAGE_NAME, asfileobj=False))


def image_path(image: str = "") -> Path:
    """The image to use: the default image when `image` is empty; a relative path is
    taken relative to the project root (so it means the same from notebooks/)."""
    if not image:
        return default_image()
    path = Path(image).expanduser()
    return path if path.is_absolute() else ROOT / path


# What a name under output/ may hold: make cannot take %, :, ;, (, ), $, *, ?, [, ], =, #,
# quotes, spaces or backslashes in a target's name, so each other character becomes "_".
UNSAFE = re.compile(r"[^\w.+,@-]")


def image_stem(image: str = "") -> str:
    """The name the outputs of an image go under, output/<stem>/: the file's stem, with
    every character but letters, digits and . _ - + , @ replaced by "_" (R&D.png: R_D)."""
    stem = UNSAFE.sub("_", Path(image).stem if image else Path(DEFAULT_IMAGE_NAME).stem)
    return "_" if stem in ("", ".", "..") else stem


def results_dir(image: str = "") -> Path:
    """output/<stem>/: every run of one image."""
    return OUTPUT / image_stem(image)


def seeds_data(image: str = "") -> Path:
    """make seeds' numbers (every K from several seeds and the study's random start):
    report/data/seeds.json for the default image (committed, read by the committed
    report), output/<stem>/seeds.json for any other."""
    return REPORT_DATA_DIR / "seeds.json" if not image else results_dir(image) / "seeds.json"


def interactive_dir(image: str, k: int) -> Path:
    """Where a run started by hand in Jupyter writes: output/<stem>/interactive/k-<K>/,
    which make neither reads nor tracks."""
    return results_dir(image) / "interactive" / f"k-{k}"


if __name__ == "__main__":
    # python src/pipeline/paths.py stem IMAGE | report-data IMAGE | study-image
    if len(sys.argv) == 3 and sys.argv[1] == "stem":
        print(image_stem(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "report-data":  # study, bench, seeds
        print(*(path.relative_to(ROOT) for path in (STUDY_DATA, BENCH_DATA,
                                                    seeds_data(sys.argv[2]))))
    elif sys.argv[1:] == ["study-image"]:
        print(STUDY_IMAGE)
    else:
        sys.exit("usage: paths.py stem IMAGE | report-data IMAGE | study-image")
