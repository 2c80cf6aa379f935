"""The reproducible pipeline: image loading, outputs, the experiment notebook under
papermill, and the Makefile's incremental and parallel runs."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import nbformat
import numpy as np
import papermill
import pytest
from PIL import Image

import em
from conftest import make_args
from pipeline import atomic, cache, experiment, images, paths, plan
from pipeline.run_notebook import run as run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "experiment.ipynb"


# ------------------------------------------------------------------ loading images

def _save(tmp_path, name, im, **kw) -> Path:
    path = tmp_path / name
    im.save(path, **kw)
    return path


def test_rgb_jpeg_round_trip_is_the_decoded_image(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = _save(tmp_path, "a.png", Image.fromarray(rgb))
    loaded = images.load_rgb(path)
    assert loaded.dtype == np.uint8 and loaded.shape == (20, 30, 3)
    assert np.array_equal(loaded, rgb)


def test_greyscale_and_palette_become_rgb(tmp_path):
    grey = np.arange(200, dtype=np.uint8).reshape(10, 20)
    loaded = images.load_rgb(_save(tmp_path, "g.png", Image.fromarray(grey)))
    assert loaded.shape == (10, 20, 3)
    assert np.array_equal(loaded[:, :, 0], grey) and np.array_equal(loaded[:, :, 2], grey)

    pal = Image.frombytes("P", (4, 1), bytes([0, 1, 2, 1]))
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    loaded = images.load_rgb(_save(tmp_path, "p.png", pal))
    assert loaded[0].tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 255, 0]]


def test_sixteen_bit_greyscale_is_scaled_to_eight_bits(tmp_path):
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    loaded = images.load_rgb(_save(tmp_path, "g16.png", Image.fromarray(values)))
    assert loaded[0, :, 0].tolist() == [0, 100, 255]


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0], [200, 0, 0, 128]]], dtype=np.uint8)
    loaded = images.load_rgb(_save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA")))
    assert loaded[0, 0].tolist() == [10, 20, 30]        # opaque: unchanged
    assert loaded[0, 1].tolist() == [255, 255, 255]     # transparent: white page
    expected = np.rint(np.array([200, 0, 0]) * 128 / 255 + 255 * (1 - 128 / 255))
    assert np.abs(loaded[0, 2].astype(int) - expected).max() <= 1


def test_cmyk_is_converted(tmp_path):
    cmyk = Image.new("CMYK", (3, 2), (0, 255, 255, 0))  # full magenta + yellow = red
    loaded = images.load_rgb(_save(tmp_path, "c.tif", cmyk))
    assert loaded.shape == (2, 3, 3) and loaded[0, 0].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((10, 30, 3), dtype=np.uint8)
    rgb[:, :5] = 255  # a white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(tmp_path, "o.jpg", Image.fromarray(rgb), exif=exif, quality=95)
    loaded = images.load_rgb(path)
    assert loaded.shape == (30, 10, 3)               # displayed upright: portrait
    assert loaded[:5].mean() > 200 and loaded[-5:].mean() < 50  # band now at the top


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.jpg", "does not exist"),
    (lambda d: d, "is not a file"),
    (lambda d: (d / "notes.jpg").write_text("not an image") and d / "notes.jpg",
     "not an image file"),
    (lambda d: (d / "empty.png").write_bytes(b"") or d / "empty.png", "not an image file"),
    (lambda d: (d / "cut.png").write_bytes(
        (paths.default_image().read_bytes())[:2000]) and d / "cut.png", "could not be decoded"),
])
def test_bad_images_are_refused_with_the_path(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(images.ImageError, match=message) as info:
        images.load_rgb(path)
    assert str(path) in str(info.value)


def test_distinct_colours_rebuild_the_image():
    rgb = np.random.default_rng(1).integers(0, 4, (50, 40, 3), dtype=np.uint8) * 60
    colours, counts, inverse = images.distinct_colours(rgb)
    assert np.array_equal(colours[inverse].reshape(rgb.shape), rgb)
    assert counts.sum() == 50 * 40 and len(np.unique(colours, axis=0)) == len(colours)
    assert np.array_equal(np.bincount(inverse), counts)


def test_indexed_png_holds_the_palette_and_indices(tmp_path):
    rng = np.random.default_rng(2)
    for k, bits in ((2, 1), (4, 2), (16, 4), (17, 8), (128, 8)):
        labels = rng.integers(0, k, (30, 20))
        palette = rng.integers(0, 256, (k, 3), dtype=np.uint8)
        path = tmp_path / f"k{k}.png"
        images.save_indexed_png(path, labels, palette)
        with Image.open(path) as im:
            assert im.mode == "P"
            assert np.array_equal(np.asarray(im.convert("RGB")), palette[labels])
        assert path.read_bytes()[24] == bits  # PNG IHDR bit depth
    with pytest.raises(ValueError, match="1 to 256 colours"):
        images.save_indexed_png(tmp_path / "x.png", np.zeros((2, 2), int), np.zeros((300, 3)))


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "metrics.json"
    atomic.write_text_atomic(path, "old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# ------------------------------------------------------- the experiment notebook

def _run_experiment(image: Path, out: Path, k: int = 3, **params):
    parameters = {"image": str(image), "k": k, "n_init": 1, "seed": 0, "output_dir": str(out), **params}
    run_notebook(NOTEBOOK, out / "experiment.ipynb", parameters, cwd=ROOT / "notebooks",
                 progress_bar=False)
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def two_runs(small_image, tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    return [(base / name, _run_experiment(small_image, base / name)) for name in ("a", "b")]


@pytest.mark.slow
def test_experiment_writes_every_output(two_runs):
    out, _ = two_runs[0]
    for name in ("segmented.png", "indexed.png", "metrics.json", "experiment.ipynb"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


@pytest.mark.slow
def test_metrics_agree_with_the_files(two_runs, small_image):
    out, m = two_runs[0]
    original = images.load_rgb(small_image).astype(np.float64) / 255
    segmented = np.asarray(Image.open(out / "segmented.png").convert("RGB"))
    with Image.open(out / "indexed.png") as im:
        indices = np.asarray(im)
        palette = np.array(im.getpalette()[: 3 * m["k"]], dtype=np.uint8).reshape(-1, 3)
    # The compressed form decodes to the segmented image exactly.
    assert np.array_equal(palette[indices], segmented)
    assert len(np.unique(indices)) <= m["k"] == len(palette)
    # Reconstruction error recomputed from the PNGs.
    error_png = ((original - segmented / 255) ** 2).sum(axis=2).mean()
    assert m["reconstruction_error_png"] == pytest.approx(error_png, rel=1e-12)
    # The study's error uses the unrounded means: within rounding of the 8-bit palette.
    assert abs(m["reconstruction_error"] - error_png) < 3 * (1 / 255) ** 2
    assert m["psnr_db"] == pytest.approx(10 * np.log10(3 / m["reconstruction_error"]))
    # Sizes and rates.
    n = m["image"]["pixels"]
    assert (m["image"]["width"], m["image"]["height"], n) == (64, 75, 64 * 75)
    assert m["image"]["path"] == str(small_image.resolve())  # the image as resolved
    assert m["indexed_png_bytes"] == (out / "indexed.png").stat().st_size
    assert m["bits_per_pixel"] == pytest.approx(8 * m["indexed_png_bytes"] / n)
    assert m["compression_ratio_raw"] == pytest.approx(3 * n / m["indexed_png_bytes"])
    assert m["compression_ratio_input"] == pytest.approx(
        small_image.stat().st_size / m["indexed_png_bytes"])
    # Likelihood bookkeeping and BIC.
    assert len(m["history"]) == m["iterations"] + 1
    assert m["history"][-1] == m["log_likelihood"]
    assert m["log_likelihood_per_pixel"] == pytest.approx(m["log_likelihood"] / n)
    assert all(b >= a - 1e-9 * abs(a) for a, b in zip(m["history"], m["history"][1:]))
    assert m["bic"] == pytest.approx(-2 * m["log_likelihood"] + (3 - 1 + 9 + 3) * np.log(n))
    # The stored model labels the pixels as the segmented image shows.
    mixture = experiment.load_mixture(m)
    labels = em.predict(mixture, original.reshape(-1, 3))
    assert np.array_equal(experiment.palette_of(mixture)[labels].reshape(segmented.shape),
                          segmented)


@pytest.mark.slow
def test_same_parameters_give_identical_results(two_runs):
    (a, ma), (b, mb) = two_runs
    ma.pop("timing"), mb.pop("timing")
    assert ma == mb
    for name in ("segmented.png", "indexed.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


@pytest.mark.slow
def test_a_different_seed_can_differ(small_image, tmp_path, two_runs):
    other = _run_experiment(small_image, tmp_path / "s", k=3, seed=5, init="random")
    assert other["seed"] == 5 and other["init"] == "random"
    assert other["history"] != two_runs[0][1]["history"]


@pytest.mark.slow
@pytest.mark.parametrize("name, content, message", [
    ("missing.png", None, "does not exist"),
    ("text.png", b"hello", "not an image file"),
])
def test_bad_image_stops_the_notebook_with_its_path(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(papermill.PapermillExecutionError) as info:
        _run_experiment(path, tmp_path / "out")
    assert info.value.ename == "ParameterError" and "image=" in info.value.evalue
    assert message in info.value.evalue and str(path) in info.value.evalue
    assert not (tmp_path / "out" / "metrics.json").exists()
    assert not (tmp_path / "out" / "experiment.ipynb").exists()


@pytest.mark.slow
def test_k_beyond_an_indexed_png_stops_before_fitting(small_image, tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as info:
        _run_experiment(small_image, tmp_path / "out", k=300)
    assert info.value.ename == "ParameterError" and "k='300'" in info.value.evalue
    assert "from 1 to 256" in info.value.evalue
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_runs_started_by_hand_never_write_where_make_does(tmp_path):
    made = experiment.output_dir("", 4, str(tmp_path / "output" / "x" / "k-4"))
    by_hand = experiment.output_dir("", 4)
    assert made == tmp_path / "output" / "x" / "k-4"
    assert by_hand == paths.ROOT / "output" / "grace_hopper" / "interactive" / "k-4"
    assert experiment.output_dir("images/a.png", 2).parts[-3:] == \
        ("a", "interactive", "k-2")


# ------------------------------------------------------------------ the Makefile

def _make(cwd: Path, venv: Path, *args: str) -> str:
    done = subprocess.run(["make", *make_args(venv), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _fitted(output: str) -> list[int]:
    """The K that a make run fitted, from the commands it printed."""
    return sorted(int(k) for k in re.findall(
        r"pipeline\.run_notebook --no-progress-bar notebooks/experiment\.ipynb \S*/k-(\d+)/", output))


@pytest.mark.slow
@pytest.mark.parametrize("image, message", [("my photo.png", "spaces"), ("it's.png", "quote"),
                                            ("a$b.png", "expands")])
def test_make_refuses_image_paths_it_cannot_quote(image, message):
    done = subprocess.run(["make", "-n", "experiments", f"IMAGE={image}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and message in done.stderr and image in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_the_key_holds_the_parameters_in_normal_form_and_the_code(tmp_path, monkeypatch,
                                                                  small_image):
    """TOL=1e-4 and TOL=0.0001 are one setting; a change to the notebook make runs is a
    change of the key (pipeline.plan, run from a checkout's root as make runs it)."""
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "output" / "small"
    key = out / "keys" / "k-2.json"
    assert plan.plan(out, image=str(small_image), ks="2 9", tol="1e-4") == [2, 9]
    first, stamp = key.read_text(), key.stat().st_mtime_ns
    plan.plan(out, image=str(small_image), ks="2", tol="0.0001")
    assert key.read_text() == first and key.stat().st_mtime_ns == stamp
    plan.plan(out, image=str(small_image), ks="2", tol="1e-3")
    assert json.loads(key.read_text())["parameters"]["tol"] == 0.001
    notebook = tmp_path / "notebooks" / "experiment.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("A note."))
    nbformat.write(nb, notebook)
    before = json.loads(key.read_text())
    plan.plan(out, image=str(small_image), ks="2", tol="1e-3")
    after = json.loads(key.read_text())
    assert after["code"] != before["code"] and {**after, "code": None} == {**before, "code": None}


def _program(folder: Path, name: str, says: str) -> None:
    (folder / name).write_text(f"#!/bin/sh\necho '{says}'\n")
    (folder / name).chmod(0o755)


def test_the_render_keys_hold_the_programs_each_rendering_runs(tmp_path, monkeypatch,
                                                                small_image):
    """Installing or upgrading pandoc renders the HTML again (without it the maths is TeX
    source), and pandoc, xelatex or latexmk the PDF; nothing else does."""
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    monkeypatch.chdir(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    out = tmp_path / "output" / "small"
    html, pdf = out / "keys" / "render-html.json", out / "keys" / "render-pdf.json"

    def keys():
        plan.plan(out, image=str(small_image), ks="2")
        return [(json.loads(p.read_text())["tools"], p.stat().st_mtime_ns) for p in (html, pdf)]

    (html_tools, html_time), (pdf_tools, _) = keys()
    assert html_tools == {"pandoc": None}
    assert pdf_tools == {"pandoc": None, "xelatex": None, "latexmk": None}
    _program(bin_dir, "pandoc", "pandoc 3.1")
    (html_tools, html_time), (pdf_tools, pdf_time) = keys()
    assert html_tools == {"pandoc": "pandoc 3.1"} and pdf_tools["pandoc"] == "pandoc 3.1"
    _program(bin_dir, "xelatex", "XeTeX 3.14")
    _program(bin_dir, "latexmk", "\nLatexmk 4.79")
    assert keys() == [({"pandoc": "pandoc 3.1"}, html_time),
                      ({"pandoc": "pandoc 3.1", "xelatex": "XeTeX 3.14", "latexmk": "Latexmk 4.79"},
                       keys()[1][1])] and keys()[1][1] > pdf_time
    _program(bin_dir, "pandoc", "pandoc 3.2")
    assert keys()[0][0] == {"pandoc": "pandoc 3.2"}


def test_a_damaged_executed_notebook_is_run_again_in_one_line(tmp_path, monkeypatch,
                                                              small_image, capsys):
    """The executed notebooks the rendering reads carry a manifest (run_notebook --key);
    one that fails it gets a key newer than itself, so make runs it again."""
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "output" / "small"
    plan.plan(out, image=str(small_image), ks="2")
    made = {out / "report.ipynb": (out / "keys" / "report.json", "notebooks/report.ipynb"),
            tmp_path / "output" / "derivation.ipynb":
                (tmp_path / "output" / "keys" / "derivation.json", "notebooks/derivation.ipynb")}
    for notebook, (key, _) in made.items():
        nbformat.write(nbformat.v4.new_notebook(), notebook)
        cache.write_manifest(notebook, json.loads(key.read_text()))
    capsys.readouterr()
    plan.plan(out, image=str(small_image), ks="2")
    assert capsys.readouterr().err == ""
    assert all(key.stat().st_mtime_ns <= notebook.stat().st_mtime_ns
               for notebook, (key, _) in made.items())
    for notebook, (key, source) in made.items():
        whole = notebook.read_bytes()
        notebook.write_bytes(whole[:40])
        plan.plan(out, image=str(small_image), ks="2")
        assert capsys.readouterr().err == \
            f"{notebook} does not match its checksum: running {source} again\n"
        assert notebook.stat().st_mtime_ns < key.stat().st_mtime_ns <= time.time_ns()
        notebook.write_bytes(whole)  # as if made again


def _noise(path: Path, seed: int, when: str | None = None) -> Path:
    rgb = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    if when:
        os.utime(path, (0, 0) if when == "old" else None)
    return path


@pytest.fixture(scope="module")
def tiny(module_project_copy):
    """The shared project copy with three 16 x 16 noise images and a link to one."""
    cwd, venv = module_project_copy
    for name, seed in (("a.png", 1), ("b.png", 2), ("c.png", 3)):
        _noise(cwd / name, seed, when="old")
    (cwd / "link.png").symlink_to("a.png")
    return cwd, venv


TINY_ARGS = ("experiments", "IMAGE=link.png", "N_INIT=1")


@pytest.mark.slow
def test_overlapping_runs_both_succeed_and_fit_each_k_once(tiny):
    """make experiments KS=2 and KS="2 3" in one checkout: the second waits, then fits
    only what is left."""
    cwd, venv = tiny
    runs = [subprocess.Popen(["make", *make_args(venv), *TINY_ARGS, f"KS={ks}"], cwd=cwd,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for ks in ("2", "2 3")]
    done = [(run.wait(timeout=600), *run.communicate()) for run in runs]
    assert [status for status, _, _ in done] == [0, 0], done
    assert sorted(sum((_fitted(out) for _, out, _ in done), [])) == [2, 3]
    assert sum("waiting for it to finish" in err for _, _, err in done) == 1, done


@pytest.mark.slow
def test_a_changed_image_refits_and_an_unchanged_one_never_does(tiny):
    cwd, venv = tiny
    (cwd / "link.png").unlink()
    (cwd / "link.png").symlink_to("a.png")
    _make(cwd, venv, *TINY_ARGS, "KS=2")
    os.utime(cwd / "a.png")  # newer, same content
    assert _fitted(_make(cwd, venv, *TINY_ARGS, "KS=2", "TOL=1e-4")) == []
    assert _fitted(_make(cwd, venv, *TINY_ARGS, "KS=2", "TOL=0.0001")) == []

    (cwd / "link.png").unlink()
    (cwd / "link.png").symlink_to("b.png")  # older than the results
    assert _fitted(_make(cwd, venv, *TINY_ARGS, "KS=2")) == [2]

    subprocess.run(["cp", "-p", "c.png", "b.png"], cwd=cwd, check=True)  # older too
    assert _fitted(_make(cwd, venv, *TINY_ARGS, "KS=2")) == [2]
    assert json.loads((cwd / "output" / "link" / "k-2" / "metrics.json").read_text())[
        "image"]["file_bytes"] == (cwd / "c.png").stat().st_size


@pytest.mark.slow
def test_damaged_results_are_redone_and_named(tiny):
    """One end-to-end case (the kinds of damage: cache.check_manifest's tests)."""
    cwd, venv = tiny
    _make(cwd, venv, *TINY_ARGS, "KS=2")
    run = cwd / "output" / "link" / "k-2"
    metrics, segmented = run / "metrics.json", run / "segmented.png"
    metrics.write_bytes(metrics.read_bytes()[:len(metrics.read_bytes()) // 2])
    segmented.unlink()
    again = _make(cwd, venv, *TINY_ARGS, "KS=2")
    assert _fitted(again) == [2]
    assert f"K = 2: {metrics.relative_to(cwd)} does not match its checksum" in again
    assert json.loads(metrics.read_text())["k"] == 2 and segmented.is_file()
    assert _fitted(_make(cwd, venv, *TINY_ARGS, "KS=2")) == []


@pytest.mark.slow
def test_make_passes_the_notebook_exactly_its_parameters(project_copy, small_image):
    """The experiment notebook's parameters cell (what a run in Jupyter uses) names
    every parameter make passes, and make passes each one but the staging folder."""
    cwd, venv = project_copy
    commands = _make(cwd, venv, "-n", "experiments", f"IMAGE={small_image}", "KS=2")
    passed = set(re.findall(r"-p (\w+) ", commands))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    names = {target.id for node in ast.parse(cell.source).body
             for target in getattr(node, "targets", [])}
    assert passed == names - {"output_dir"} and "output_dir" in names


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")),
                         ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(notebook):
    """Results live in output/ and report/, never in the committed notebooks."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
