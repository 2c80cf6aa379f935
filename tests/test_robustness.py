"""The pipeline under bad input and faults: parameters refused before anything is
written, results checked before they are used (cache keys and manifests), any file name,
no temporaries left by killed or interrupted runs, results of a K replaced only as a
whole, a report published without TeX and only by the canonical run, Python versions
refused up front and broken environments rebuilt."""

from __future__ import annotations

import ast
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from conftest import make_args
from pipeline import atomic, cache, images, lock, params, paths, results, run_notebook, steps

ROOT = Path(__file__).resolve().parents[1]
REPORT_PARTS = ("report.html", "report.pdf", "figures")


def _tree(directory: Path) -> dict:
    """Every file under `directory` with its bytes and mtime: to compare before/after."""
    if not directory.exists():
        return {}
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _make(cwd: Path, venv: Path, *args: str, timeout=600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["make", *make_args(venv), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, **kw)


def _notebook(path: Path, *cells: str, parameters: str = "output_dir = ''") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(parameters)] + \
        [nbformat.v4.new_code_cell(c) for c in cells]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


# ------------------------------------------------------------------ parameters

def test_good_parameters_are_converted():
    checked = params.check(image="", ks="2 4 256", seed="0", init="random", n_init="1",
                           tol="1e-4", max_iter="20", upper=True)
    assert checked["ks"] == [2, 4, 256] and checked["seed"] == 0 and checked["tol"] == 1e-4
    assert checked["init"] == "random" and checked["n_init"] == 1 and checked["max_iter"] == 20
    assert checked["path"].name == "grace_hopper.jpg"
    assert params.check(k=16, seed=3, tol=1)["k"] == 16


BAD = [
    ("KS", "2.5"), ("KS", "abc"), ("KS", "0"), ("KS", "257"), ("KS", "2 x"), ("KS", ""),
    ("KS", "08"), ("SEED", "abc"), ("SEED", "-1"), ("TOL", "abc"), ("TOL", "0"),
    ("TOL", "-1e-4"), ("TOL", "nan"), ("TOL", "inf"), ("N_INIT", "0"), ("N_INIT", "1.5"),
    ("MAX_ITER", "0"), ("MAX_ITER", "ten"), ("INIT", "kmeans"), ("SPLIT_MERGE", "-1"),
    ("SPLIT_MERGE", "two"),
]


@pytest.mark.parametrize("name, value", BAD)
def test_bad_parameters_are_refused_with_name_and_value(name, value):
    with pytest.raises(params.ParameterError) as info:
        params.check(upper=True, **{name.lower(): value})
    assert str(info.value).startswith(f"{name}={value!r}: ")


def _bomb(path: Path) -> Path:
    """A tiny PNG whose header claims 20000 x 20000 pixels, beyond Pillow's limit."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = (20000).to_bytes(4, "big") * 2  # IHDR width and height
    data[29:33] = zlib.crc32(data[12:29]).to_bytes(4, "big")  # and the chunk's CRC
    path.write_bytes(bytes(data))
    return path


def _bad_images(directory: Path) -> dict:
    (directory / "text.png").write_text("not an image")
    (directory / "folder").mkdir()
    return {"missing": (directory / "missing.png", "does not exist"),
            "text": (directory / "text.png", "not an image file"),
            "folder": (directory / "folder", "not a file"),
            "bomb": (_bomb(directory / "bomb.png"), "decompression bomb")}


def test_bad_images_are_refused_before_decoding(tmp_path):
    for path, message in _bad_images(tmp_path).values():
        with pytest.raises(params.ParameterError, match=message) as info:
            params.check_image(str(path), "IMAGE")
        assert str(info.value).startswith(f"IMAGE={str(path)!r}: ")
    bomb = tmp_path / "bomb.png"
    with pytest.raises(params.ParameterError) as info:
        params.check_image(str(bomb))
    assert "Downscale it" in str(info.value) and "MAX_IMAGE_PIXELS=" in str(info.value)


def test_the_setting_named_in_the_bomb_message_allows_the_image(tmp_path):
    bomb = _bomb(tmp_path / "bomb.png")
    allowed = subprocess.run(
        [sys.executable, "-m", "pipeline.params", f"IMAGE={bomb}"], capture_output=True,
        text=True, env={**os.environ, "MAX_IMAGE_PIXELS": str(20000 * 20000)})
    refused = subprocess.run([sys.executable, "-m", "pipeline.params", f"IMAGE={bomb}"],
                             capture_output=True, text=True)
    assert allowed.returncode == 0 and allowed.stderr == ""
    assert refused.returncode == 2 and "MAX_IMAGE_PIXELS=" in refused.stderr


def test_big_images_are_shown_subsampled_without_a_copy():
    rgb = np.zeros((5000, 3001, 3), dtype=np.uint8)
    shown = images.for_display(rgb)
    assert max(shown.shape[:2]) <= 1200 and np.shares_memory(shown, rgb)
    small = np.zeros((300, 200, 3), dtype=np.uint8)
    assert images.for_display(small).shape == small.shape


@pytest.mark.slow
def test_make_refuses_a_bad_parameter_in_one_line_and_writes_nothing(project_copy, tmp_path):
    """The cases of each parameter are the unit tests above; here, that make stops on
    them before anything is written, with one line naming the parameter."""
    cwd, venv = project_copy
    bad_images = _bad_images(tmp_path)
    cases = [("KS", "2.5", "not a whole number"),
             ("IMAGE", str(bad_images["text"][0]), "not an image file"),
             ("IMAGE", str(bad_images["missing"][0]), "does not exist"),
             ("IMAGE", "images/a$b.png", "expands")]
    before = _tree(cwd / "output")
    for name, value, message in cases:
        done = _make(cwd, venv, "report", f"{name}={value}", timeout=120)
        assert done.returncode != 0, (name, value, done.stdout)
        assert f"{name}={value!r}" in done.stderr and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert _tree(cwd / "output") == before and not (cwd / "report").exists(), (name, value)


# Rules written as the Makefile writes them: output/<stem>/ in a target and a prerequisite
# of pattern rules, the names quoted in the recipes.
NAMES_MAKEFILE = """
define rules
$$(OUT_$(1))/k-%/done: $$(OUT_$(1))/keys/k-%.json
\t@printf '%s|%s\\n' '$$@' '$$*'
$$(OUT_$(1))/keys/%.json:
\t@mkdir -p '$$(@D)' && touch '$$@'
endef
$(foreach i,$(INDICES),$(eval $(call rules,$(i))))
show:
\t@$(foreach i,$(INDICES),printf '%s\\n' '$(IMAGE_$(i))';)
"""


def test_image_names_become_names_make_can_take(tmp_path):
    """Whatever the file's name, make takes output/<stem>/ in its rules as it is, and a
    path that make does not refuse goes through the recipes' quotes unchanged."""
    rng = np.random.default_rng(0)
    alphabet = list("&()%:;$,=*?[]#'\"\\ -+@._~!{}<>|^`") + list("aZ09éü€語")
    names = ["R&D", "-x", "..", ".", "a b", "50%", "a:b"] + \
        ["".join(rng.choice(alphabet, rng.integers(1, 12))) for _ in range(200)]
    stems = list(dict.fromkeys(paths.image_stem(f"images/{name}.png") for name in names))
    (tmp_path / "Makefile").write_text(NAMES_MAKEFILE)
    indices = f"INDICES={' '.join(map(str, range(len(stems))))}"
    done = subprocess.run(["make", "-s", indices, *(f"OUT_{i}=out/{stem}" for i, stem in enumerate(stems)),
                           *(f"out/{stem}/k-2/done" for stem in stems)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"out/{stem}/k-2/done|2" for stem in stems]
    quotable = [name for name in names if not set(" '$") & set(name)]  # what make refuses
    done = subprocess.run(["make", "-s", "show", f"INDICES={' '.join(map(str, range(len(quotable))))}",
                           *(f"IMAGE_{i}=/images/{name}.png" for i, name in enumerate(quotable))],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.splitlines() == \
        [f"/images/{name}.png" for name in quotable], done.stderr


# ------------------------------------------------------------- killed and dead runs

@pytest.mark.slow
def test_a_killed_run_leaves_nothing_after_the_next_run(tmp_path):
    slow = _notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(60)")
    quick = _notebook(tmp_path / "quick.ipynb", "x = 1")
    results = tmp_path / "out" / "k-2"
    before_tmp = set(Path(tempfile.gettempdir()).glob(run_notebook.KERNEL_DIR_PREFIX + "*"))
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.run_notebook", str(slow), str(results / "nb.ipynb"),
         "--stage", "output_dir", "--no-progress-bar"], stderr=subprocess.PIPE)
    staging = tmp_path / "out" / f".k-2.{process.pid}.part"
    kernel_dirs = []
    for _ in range(300):  # wait until the kernel runs the slow cell
        time.sleep(0.1)
        kernel_dirs = [p for p in Path(tempfile.gettempdir()).glob(
            f"{run_notebook.KERNEL_DIR_PREFIX}{process.pid}-*")]
        if kernel_dirs and list(kernel_dirs[0].glob("socket-*")) and \
                (staging / "nb.ipynb").exists():
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert staging.exists() and kernel_dirs  # litter of the killed run
    quiet = _notebook(tmp_path / "plain.ipynb", "y = 2")
    run_notebook.run(quiet, tmp_path / "out" / "plain.ipynb", {}, progress_bar=False)
    assert not staging.exists() and not kernel_dirs[0].exists()
    run_notebook.run(quick, results / "nb.ipynb", {}, progress_bar=False, stage="output_dir")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["k-2", "plain.ipynb"]
    assert sorted(p.name for p in results.iterdir()) == [cache.MANIFEST_FILE, "nb.ipynb"]
    after_tmp = set(Path(tempfile.gettempdir()).glob(run_notebook.KERNEL_DIR_PREFIX + "*"))
    assert not {p for p in after_tmp - before_tmp if f"-{os.getpid()}-" in p.name}


@pytest.mark.slow
def test_a_terminated_run_removes_its_own_temporaries(tmp_path):
    slow = _notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(60)")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.run_notebook", str(slow), str(tmp_path / "k-2" / "nb.ipynb"),
         "--stage", "output_dir", "--no-progress-bar"], stderr=subprocess.PIPE, text=True)
    kernel = f"{run_notebook.KERNEL_DIR_PREFIX}{process.pid}-*"
    for _ in range(300):
        time.sleep(0.1)
        if list(Path(tempfile.gettempdir()).glob(f"{kernel}/socket-*")):
            break
    time.sleep(1)
    process.terminate()
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert not list(tmp_path.glob(".k-2.*")) and not (tmp_path / "k-2").exists()
    assert not list(Path(tempfile.gettempdir()).glob(kernel))


@pytest.mark.slow
def test_two_runs_of_one_target_run_one_after_the_other(tmp_path):
    """What a make killed outright leaves running and the next make's run of the same
    K: the second waits for the first, in one line, and both results are whole."""
    times = tmp_path / "times.txt"
    notebook = _notebook(tmp_path / "slow.ipynb", "import time\nstart = time.time()\ntime.sleep(2)\n"
                         "with open(log, 'a') as f:\n    f.write(f'{start} {time.time()}\\n')",
                         parameters="output_dir = ''\nlog = ''")
    key = tmp_path / "k-2.json"
    key.write_text('{"k": 2}')
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pipeline.run_notebook", str(notebook), str(out / "k-2" / "nb.ipynb"),
               "--stage", "output_dir", "--key", str(key), "-p", "log", str(times), "--no-progress-bar"]
    first = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    for _ in range(300):  # until the first holds the lock and has started
        if (out / f".k-2.{first.pid}.part").exists():
            break
        time.sleep(0.05)
    second = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    done = [(run.wait(timeout=120), run.stderr.read()) for run in (first, second)]
    assert [status for status, _ in done] == [0, 0], done
    assert done[0][1] == "" and done[1][1] == \
        f"{out / 'k-2'}: another run is making it: waiting for it to finish\n"
    (start1, end1), (start2, end2) = (map(float, line.split()) for line in times.read_text().splitlines())
    assert end1 <= start2
    assert cache.check_manifest(out / "k-2", {"k": 2}) is None
    assert [p.name for p in out.iterdir()] == ["k-2"]  # no lock file, no temporaries


def test_a_lock_file_is_held_by_one_process_and_an_unheld_one_is_removed(tmp_path):
    path = tmp_path / ".k-2.lock"
    with lock.exclusive(path, "k-2"):
        assert lock.remove_unheld([path]) == [] and path.exists()  # held: kept
    assert not path.exists()
    path.write_text("")  # left by a run killed outright
    assert lock.remove_unheld([path]) == [path] and not path.exists()


def test_only_dead_processes_temporaries_are_removed(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    made = [tmp_path / f".k-2.{dead}.part", tmp_path / f".k-3.{dead}.old",
            tmp_path / f".experiment.{dead}.part.ipynb", tmp_path / f".k-4.{alive}.part",
            Path(tempfile.gettempdir()) / f"{run_notebook.KERNEL_DIR_PREFIX}{dead}-test"]
    for path in made:
        path.mkdir() if "ipynb" not in path.name else path.write_text("{}")
    removed = run_notebook.remove_stale(tmp_path)
    assert set(removed) >= {made[0], made[1], made[2], made[4]}
    assert [p.exists() for p in made] == [False, False, False, True, False]


@pytest.mark.slow
def test_a_dead_kernel_is_one_clear_line_and_a_success_is_quiet(tmp_path):
    dies = _notebook(tmp_path / "dies.ipynb", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    out = tmp_path / "out" / "k-7" / "dies.ipynb"
    done = subprocess.run([sys.executable, "-m", "pipeline.run_notebook", str(dies), str(out),
                           "--stage", "output_dir", "--no-progress-bar"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "k-7" in done.stderr and "died" in done.stderr, \
        done.stderr
    assert not (tmp_path / "out" / "k-7").exists() and not list((tmp_path / "out").iterdir())

    fine = _notebook(tmp_path / "fine.ipynb", "print('hello')")
    done = subprocess.run([sys.executable, "-m", "pipeline.run_notebook", str(fine),
                           str(tmp_path / "fine-out.ipynb"), "--no-progress-bar"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stderr


@pytest.mark.slow
def test_a_failed_run_keeps_the_previous_results_whole(tmp_path):
    writes = _notebook(tmp_path / "w.ipynb",
                       "from pathlib import Path\nPath(output_dir, 'a.txt').write_text(value)",
                       "assert value != 'fail'", parameters="output_dir = value = ''")
    out = tmp_path / "res" / "k-2" / "nb.ipynb"
    run_notebook.run(writes, out, {"value": "one"}, progress_bar=False, stage="output_dir")
    before = _tree(out.parent)
    with pytest.raises(Exception):
        run_notebook.run(writes, out, {"value": "fail"}, progress_bar=False, stage="output_dir")
    assert _tree(out.parent) == before and (out.parent / "a.txt").read_text() == "one"
    assert [p.name for p in (tmp_path / "res").iterdir()] == ["k-2"]


@contextlib.contextmanager
def small_disk(folder: Path):
    """A 4 MiB tmpfs mounted on `folder` (root only; the test is skipped elsewhere)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder.mkdir(exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        yield folder
    finally:
        _umount(folder)


def _umount(folder: Path) -> None:
    """Unmount `folder`, once the lock make held on it is let go (a few ms after)."""
    for _ in range(50):
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.slow
def test_a_full_disk_leaves_the_results_as_they_were(project_copy, small_image):
    cwd, venv = project_copy
    with small_disk(cwd / "output") as output:
        args = ("experiments", f"IMAGE={small_image}", "KS=2", "N_INIT=1")
        assert _make(cwd, venv, *args).returncode == 0
        results = _tree(output / "small" / "k-2")
        filler = output / "filler"
        with open(filler, "wb") as f:  # leave about 40 KB: less than an executed notebook
            free = os.statvfs(output).f_bavail * os.statvfs(output).f_frsize
            f.write(b"\0" * (free - 40_000))
        done = _make(cwd, venv, *args, "SEED=1")
        assert done.returncode != 0
        assert "No space left on device" in done.stderr, done.stderr
        filler.unlink()
        assert _tree(output / "small" / "k-2") == results
        assert not [p for p in (output / "small").iterdir() if p.name.startswith(".")]


# ------------------------------------------------------- results checked before use

def test_the_code_of_a_notebook_is_every_project_module_its_imports_load():
    """What pipeline.cache lists for the experiment notebook includes every module of
    src/ that its imports load (a property of the import graph, not a kept list), and
    none that only the report uses."""
    notebook = ROOT / "notebooks" / "experiment.ipynb"
    files, external = cache.code_files(notebook)
    nb = nbformat.read(notebook, as_version=4)
    imports = [ast.unparse(node) for cell in nb.cells if cell.cell_type == "code"
               for node in ast.walk(ast.parse(cell.source))
               if isinstance(node, (ast.Import, ast.ImportFrom))]
    loaded = subprocess.run(
        [sys.executable, "-c", "\n".join(imports) + "\nimport sys\n"
         "print('\\n'.join(m.__file__ for m in list(sys.modules.values())\n"
         "                 if (getattr(m, '__file__', None) or '').startswith(sys.argv[1])))",
         str(cache.SRC)], capture_output=True, text=True, check=True).stdout.split()
    assert loaded and {Path(p) for p in loaded} <= set(files)
    assert notebook in files and {"numpy", "PIL"} <= set(external)
    assert not {"narrative.py", "render.py", "explore.py"} & {p.name for p in files}


def test_code_files_follow_relative_imports_and_the_package_data_a_module_names(
        tmp_path, monkeypatch):
    package = tmp_path / "src" / "pkg"
    (package / "templates").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\nfrom .c import f\nimport json, numpy\n"
                                  "TEMPLATES = 'templates'\nNOT_A_FILE = 'missing.txt'\n")
    (package / "b.py").write_text("def g():\n    import PIL.Image\n")
    (package / "c.py").write_text("def f():\n    pass\n")
    (package / "unused.py").write_text("")
    (package / "templates" / "index.html.j2").write_text("{{ body }}")
    monkeypatch.setattr(cache, "SRC", tmp_path / "src")
    files, external = cache.code_files("pkg.a")
    assert {p.relative_to(package).as_posix() for p in files} == \
        {"__init__.py", "a.py", "b.py", "c.py", "templates/index.html.j2"}
    assert external == ["PIL", "numpy"]


def test_the_code_key_ignores_comments_and_docstrings_not_code(tmp_path, monkeypatch):
    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    module = package / "a.py"
    code = '"""A module."""\nTOL = 1e-4\n\n\ndef f(x):\n    """Twice x."""\n    return 2 * x\n'
    module.write_text(code)
    monkeypatch.setattr(cache, "SRC", tmp_path / "src")
    key = cache.code_key("pkg.a")
    assert key["python"].endswith(f" {sys.version_info[0]}.{sys.version_info[1]}")
    for same in (code.replace("1e-4", "1e-4  # the default"), code.replace("Twice x.", "2 x."),
                 code.replace('"""A module."""', "# A module"), "\n" + code.replace("\n\n\n", "\n")):
        module.write_text(same)
        assert cache.code_key("pkg.a") == key, same
    for other in (code.replace("1e-4", "1e-3"), code.replace("2 * x", "x * 2"),
                  code.replace('    return', '    "a string"\n    return').replace("TOL", "TOLERANCE")):
        module.write_text(other)
        assert cache.code_key("pkg.a") != key, other


def test_a_manifest_finds_a_missing_or_changed_file_and_results_of_other_inputs(tmp_path):
    (tmp_path / "metrics.json").write_text('{"k": 2}')
    (tmp_path / "segmented.png").write_bytes(b"png")
    cache.write_manifest(tmp_path, {"k": 2})
    assert cache.check_manifest(tmp_path, {"k": 2}) is None
    assert cache.check_manifest(tmp_path, {"k": 3}) == cache.CHANGED
    (tmp_path / "metrics.json").write_text('{"k": ')
    assert cache.check_manifest(tmp_path, {"k": 2}) == \
        f"{tmp_path / 'metrics.json'} does not match its checksum"
    (tmp_path / "metrics.json").write_text('{"k": 2}')
    (tmp_path / "segmented.png").unlink()
    assert cache.check_manifest(tmp_path, {"k": 2}) == f"{tmp_path / 'segmented.png'} is missing"
    (tmp_path / cache.MANIFEST_FILE).write_text("{")
    assert "damaged" in cache.check_manifest(tmp_path, {"k": 2})


def test_reading_a_damaged_result_names_the_file(tmp_path):
    run = tmp_path / "k-2"
    run.mkdir()
    (run / "metrics.json").write_text('{"k": 2, "image": {"name"')
    with pytest.raises(ValueError, match=re.escape(f"{run / 'metrics.json'} is damaged")):
        results.load(tmp_path, [2])
    Image.new("RGB", (40, 30)).save(run / "segmented.png")
    (run / "segmented.png").write_bytes((run / "segmented.png").read_bytes()[:60])
    with pytest.raises(ValueError, match=re.escape(f"{run / 'segmented.png'} is damaged")):
        results.load_png(tmp_path, 2)


# ------------------------------------------------------------------ the report

def test_a_full_disk_leaves_the_report_as_it_was(tmp_path):
    staging = tmp_path / "staging"
    (staging / "figures").mkdir(parents=True)
    (staging / "figures" / "gallery.png").write_bytes(os.urandom(64 * 1024))
    for name in ("report.html", "report.pdf"):
        (staging / name).write_bytes(os.urandom(3 * 1024 * 1024))  # 6 MiB in all
    with small_disk(tmp_path / "report") as dest:
        (dest / "figures").mkdir()
        (dest / "figures" / "gallery.png").write_bytes(b"old figure")
        (dest / "report.html").write_bytes(b"old html")
        (dest / "report.pdf").write_bytes(b"old pdf")
        before = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
        with pytest.raises(OSError):
            atomic.publish(staging, dest, REPORT_PARTS)
        after = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
        assert after == before


def _commands(cwd: Path, venv: Path, *args: str) -> str:
    done = _make(cwd, venv, "-n", "report", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_only_the_canonical_run_writes_the_committed_report(project_copy):
    cwd, venv = project_copy
    canonical = _commands(cwd, venv)
    assert "pipeline.atomic publish output/grace_hopper/staged-report report report.html" \
        in canonical
    for args in (["KS=2 8"], ["SEED=1"], ["KS=2 4 8 16 32 64 128", "TOL=1e-3"], ["N_INIT=1"],
                 ["INIT=random"], ["MAX_ITER=50"]):
        commands = _commands(cwd, venv, *args)
        assert " report/" not in commands and " report " not in commands, args
        assert "publish output/grace_hopper/staged-report output/grace_hopper/report report.html" \
            in commands, args
        assert "The report: output/grace_hopper/report/report.html" in commands
        assert "(report/ is made only by the canonical run" in commands


def _path_without(directory: Path, *tools: str) -> dict:
    """The environment with a PATH of links to every program on it but `tools`."""
    directory.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        for tool in Path(folder).glob("*") if Path(folder).is_dir() else []:
            link = directory / tool.name
            if tool.name not in tools and not link.exists() and os.access(tool, os.X_OK):
                link.symlink_to(tool)
    return {**os.environ, "PATH": str(directory)}


@pytest.mark.slow
def test_the_canonical_run_keeps_the_committed_pdf_and_maths(project_copy, tmp_path):
    """Without TeX the canonical run publishes the HTML to report/ and names the
    committed PDF stale, in one line, instead of removing it; without pandoc too, it
    leaves report/ as it is (its HTML's maths would be TeX source) and says so."""
    cwd, venv = project_copy
    (cwd / "report").mkdir()
    (cwd / "report" / "report.pdf").write_text("the committed PDF")
    no_tex = _path_without(tmp_path / "no-tex", "xelatex", "apt-get")
    commands = _make(cwd, venv, "-n", "report", env=no_tex).stdout
    publish = next(line for line in commands.splitlines() if "pipeline.atomic publish" in line)
    assert " report report.html figures" in publish and "--remove" not in publish
    no_pdf = [line for line in commands.splitlines() if "No new PDF" in line]
    assert len(no_pdf) == 1, commands

    def said(*, html_newer: bool) -> str:  # the line as the end of the run prints it
        (cwd / "report" / "report.html").write_text("the new HTML")
        older, newer = ("report.pdf", "report.html") if html_newer else ("report.html", "report.pdf")
        os.utime(cwd / "report" / older, (1e9, 1e9))
        os.utime(cwd / "report" / newer, (2e9, 2e9))
        done = subprocess.run(["bash", "-c", no_pdf[0]], cwd=cwd, capture_output=True, text=True)
        assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done
        return done.stderr
    assert "No new PDF: report/report.pdf is left from an earlier run, stale beside this HTML; " \
           "a new one needs xelatex" in said(html_newer=True)
    assert "No new PDF: report/report.pdf is the one an earlier run made with this HTML; " \
           "a new one needs xelatex" in said(html_newer=False)
    (cwd / "report" / "report.html").unlink()  # report/ as before: the committed PDF alone
    no_pandoc = _path_without(tmp_path / "no-pandoc", "xelatex", "apt-get", "pandoc")
    commands = _make(cwd, venv, "-n", "report", env=no_pandoc).stdout
    assert " report/" not in commands and " report " not in commands
    assert "publish output/grace_hopper/staged-report output/grace_hopper/report" in commands
    assert "(report/ is left as it is: made without pandoc, its HTML's maths would show " \
           "as TeX source)" in commands
    assert "the HTML's maths shows as TeX source (no pandoc)" in commands


def test_steps_log_successes_and_summarise_them(tmp_path):
    log = tmp_path / "steps.log"
    since = time.time()
    busy = "import time\nt = time.process_time()\nwhile time.process_time() < t + 0.3: pass"
    assert steps.run(log, "first", [sys.executable, "-c", "import time; time.sleep(0.2)"]) == 0
    assert steps.run(log, "broken", [sys.executable, "-c", "raise SystemExit(3)"]) == 3
    assert steps.run(log, "busy", [sys.executable, "-c", busy]) == 0
    text = steps.summary(log, since)
    assert "first" in text and "broken" not in text and "in all" in text
    (wall, _, cpu, _), (_, _, busy_cpu, _) = (line.split()[:4] for line in text.splitlines()[1:3])
    assert float(wall) >= 0.2 and float(cpu) < 0.2 and float(busy_cpu) >= 0.3
    assert steps.summary(log, time.time() + 1).startswith("Nothing to do")


# ------------------------------------------------------------------ publishing

def _staged(tmp_path: Path, *parts: str) -> Path:
    staging = tmp_path / "staging"
    (staging / "figures").mkdir(parents=True)
    (staging / "figures" / "gallery.png").write_bytes(b"new figure")
    for part in parts:
        (staging / part).write_text(f"new {part}")
    return staging


def test_publish_moves_the_parts_in_together_dated_now_and_drops_what_is_not_made(tmp_path):
    staging = _staged(tmp_path, "report.html")
    dest = tmp_path / "report"
    (dest / "figures").mkdir(parents=True)
    (dest / "figures" / "old.png").write_bytes(b"old")
    for part in ("report.html", "report.pdf"):
        (dest / part).write_text("old")
    os.utime(staging / "report.html", (0, 0))
    with pytest.raises(FileNotFoundError, match="report.pdf missing"):
        atomic.publish(staging, dest, REPORT_PARTS)  # an unfinished report changes nothing
    assert (dest / "report.html").read_text() == "old"
    atomic.publish(staging, dest, ["report.html", "figures"], drop=["report.pdf"])
    assert sorted(p.name for p in dest.iterdir()) == ["figures", "report.html"]
    assert [p.name for p in (dest / "figures").iterdir()] == ["gallery.png"]
    assert (dest / "report.html").stat().st_mtime > time.time() - 60  # newer than staged


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder`, with what it holds, made unwritable: mounted on itself read-only for
    root (who may write anywhere else), mode 555 for anyone else."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    for options in (["--bind"], ["-o", "remount,ro,bind"]):
        mount = subprocess.run(["mount", *options, str(folder), str(folder)],
                               capture_output=True, text=True)
        if mount.returncode != 0:
            subprocess.run(["umount", str(folder)], capture_output=True)
            pytest.skip(f"cannot mount {folder} read-only here: {mount.stderr.strip()}")
    try:
        yield folder
    finally:
        _umount(folder)


def test_an_unwritable_report_folder_is_one_line(tmp_path):
    staging = _staged(tmp_path, "report.html", "report.pdf")
    with read_only(tmp_path / "report") as dest:
        done = subprocess.run([sys.executable, "-m", "pipeline.atomic", "publish", str(staging),
                               str(dest), *REPORT_PARTS], capture_output=True, text=True)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"{dest}: the report could not be published: ")


# A publish that stops after its first copy, until a signal ends it.
SLOW_PUBLISH = """import shutil, sys, time
from pipeline import atomic
copy = shutil.copyfile
def copy_then_wait(*args, **kw):
    copy(*args, **kw)
    print("copied", flush=True)
    time.sleep(60)
shutil.copyfile = copy_then_wait
sys.exit(atomic.main(sys.argv[1:]))
"""


def test_a_killed_or_terminated_publish_leaves_nothing_behind(tmp_path):
    """kill -9 in the middle of the copies leaves them; the next publish removes them
    (not those of a process still running); SIGTERM removes its own."""
    staging = _staged(tmp_path, "report.html", "report.pdf")
    dest = tmp_path / "report"
    (dest / "figures").mkdir(parents=True)
    for part in ("report.html", "report.pdf", "figures/gallery.png"):
        (dest / part).write_text("old")
    running = dest / f".report.html.{os.getppid()}.new"
    running.write_text("a publish still running")
    before = _tree(dest)
    for stop in (signal.SIGKILL, signal.SIGTERM):
        publishing = subprocess.Popen(
            [sys.executable, "-c", SLOW_PUBLISH, "publish", str(staging), str(dest), *REPORT_PARTS],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert publishing.stdout.readline() == "copied\n"
        publishing.send_signal(stop)
        assert publishing.wait(timeout=60) == (-stop if stop == signal.SIGKILL else 128 + stop)
        if stop == signal.SIGKILL:
            assert (dest / f".report.html.{publishing.pid}.new").exists()
    assert _tree(dest) == before
    atomic.publish(staging, dest, REPORT_PARTS)
    assert sorted(p.name for p in dest.iterdir()) == [running.name, *sorted(REPORT_PARTS)]
    assert (dest / "report.html").read_text() == "new report.html"


def test_git_ignores_a_users_images_and_what_a_killed_publish_leaves():
    def ignored(path: str) -> bool:
        done = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT)
        if done.returncode not in (0, 1):
            pytest.skip("not a git checkout")
        return done.returncode == 0
    assert ignored("images/photo.jpg") and not ignored("images/.gitkeep")
    assert ignored("report/.report.html.123.new") and ignored("report/.figures.123.old")
    assert not ignored("report/report.html") and not ignored("report/figures/gallery.png")


# ------------------------------------------------------- a whole run, without TeX

# A name with every character that make or the shell could take for syntax, and a leading
# dash that a command could take for an option; 16 x 16 pixels of five colours.
HOSTILE = "-R&D(1)50%:a;b,é.png"


@pytest.fixture(scope="module")
def no_tex(module_project_copy, tmp_path_factory):
    """The shared project copy with the HOSTILE image, and an environment whose PATH
    has neither xelatex nor apt-get: a machine without TeX where make cannot install it."""
    cwd, venv = module_project_copy
    rng = np.random.default_rng(5)
    palette = rng.integers(0, 256, (5, 3), dtype=np.uint8)
    Image.fromarray(palette[rng.permutation(np.arange(256) % 5).reshape(16, 16)]).save(cwd / HOSTILE)
    env = _path_without(tmp_path_factory.mktemp("bin") / "bin", "xelatex", "apt-get")
    return cwd, venv, env, cwd / "output" / paths.image_stem(HOSTILE)


def test_ctrl_c_outside_a_step_ends_pipeline_steps_without_a_traceback():
    """A Ctrl-C that reaches `python -m pipeline.steps` outside the step it runs (while
    it imports, say) ends it as the signal does, without a traceback: make names the
    step. Here the module runs as make runs it (its usage, then the signal)."""
    code = ("import os, runpy, signal\n"
            "try:\n    runpy.run_module('pipeline.steps', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "os.kill(os.getpid(), signal.SIGINT)\nprint('went on')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGINT and done.stdout == "", done
    assert "run COMMAND" in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.slow
def test_ctrl_c_prints_at_most_three_lines_and_leaves_nothing_behind(no_tex):
    cwd, venv, env, out = no_tex
    run = subprocess.Popen(["make", *make_args(venv), "report", f"IMAGE={HOSTILE}", "KS=2 3",
                            "N_INIT=1"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while len(list(out.glob(".k-*.part/*.ipynb"))) < 2 and time.time() < deadline:
        assert run.poll() is None, run.communicate()
        time.sleep(0.05)
    time.sleep(0.5)  # inside the notebooks
    os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode != 0 and 1 <= len(err.splitlines()) <= 3, err
    assert not list(out.glob(".*")) and not list(out.glob("k-*"))


@pytest.mark.slow
def test_without_tex_the_html_is_published_and_the_pdf_named(no_tex, tmp_path):
    """A K above the image's colours is left out in one line, the name goes through
    every step, and the HTML is published with one line naming what the PDF needs, and
    that its maths is TeX source when pandoc is missing too; installing pandoc then
    renders the HTML again, and nothing else."""
    cwd, venv, env, out = no_tex
    (out / "report").mkdir(parents=True, exist_ok=True)
    (out / "report" / "report.pdf").write_text("the PDF of an earlier run")
    no_pandoc = _path_without(tmp_path / "bin", "xelatex", "apt-get", "pandoc")
    args = ("report", f"IMAGE={HOSTILE}", "KS=2 3 8", "N_INIT=1")
    done = _make(cwd, venv, *args, env=no_pandoc)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (out / "report").iterdir()) == ["figures", "report.html"]
    assert sorted(p.name for p in out.glob("k-*")) == ["k-2", "k-3"]
    lines = done.stderr.splitlines()
    assert [line for line in lines if "K = 8 left out" in line and "5 distinct colours" in line]
    no_pdf = [line for line in lines if line.startswith("No PDF")]
    packages = (ROOT / "tex-packages.txt").read_text().split()
    assert len(no_pdf) == 1 and all(package in no_pdf[0] for package in packages), lines
    assert "the HTML's maths shows as TeX source" in no_pdf[0]
    html = (out / "report" / "report.html").read_text(encoding="utf-8")
    assert Path(HOSTILE).stem.replace("&", "&amp;") in html and "<math" not in html

    done = _make(cwd, venv, *args, env=env)  # pandoc installed
    assert done.returncode == 0, done.stderr
    assert "pipeline.render html" in done.stdout and "run_notebook" not in done.stdout
    assert "<math" in (out / "report" / "report.html").read_text(encoding="utf-8")
    no_pdf = [line for line in done.stderr.splitlines() if line.startswith("No PDF")]
    assert len(no_pdf) == 1 and "TeX source" not in no_pdf[0], done.stderr


@pytest.mark.slow
def test_a_run_with_nothing_to_do_touches_nothing_even_a_read_only_report(no_tex):
    cwd, venv, env, out = no_tex
    args = ("report", f"IMAGE={HOSTILE}", "KS=2 3 8", "N_INIT=1")
    assert _make(cwd, venv, *args, env=env).returncode == 0  # made here if run alone
    pdf = out / "report" / "report.pdf"  # as an earlier run with TeX published it, with the HTML
    pdf.write_text("the PDF made with this HTML")
    before = _tree(cwd / "output")
    with read_only(out / "report"):
        done = _make(cwd, venv, *args, env=env)
    assert done.returncode == 0, done.stderr
    assert "Nothing to do" in done.stdout and "publish" not in done.stdout
    assert _tree(cwd / "output") == before
    said = [line for line in done.stderr.splitlines() if "PDF" in line]
    assert len(said) == 1 and said[0].startswith(
        f"No new PDF: {pdf.relative_to(cwd)} is the one an earlier run made with this HTML;"), said
    pdf.unlink()


# ------------------------------------------------------------------ Python and environments

@pytest.mark.slow
def test_a_python_older_than_the_projects_minimum_is_refused_in_one_line(project_copy):
    cwd, venv = project_copy
    pyproject = cwd / "pyproject.toml"
    text, found = re.subn(r'requires-python = ">=[0-9.]+"', 'requires-python = ">=3.99"',
                          pyproject.read_text())
    assert found == 1
    pyproject.write_text(text)
    done = subprocess.run(["make", "VENV=new-venv", f"PYTHON={sys.executable}", "report"],
                          cwd=cwd, capture_output=True, text=True, timeout=60)
    version = ".".join(map(str, sys.version_info[:3]))
    assert done.returncode != 0 and len(done.stderr.splitlines()) == 1, done.stderr
    assert f"is Python {version}" in done.stderr and ">= 3.99" in done.stderr
    assert not (cwd / "new-venv").exists() and not (cwd / "output").exists()


@pytest.mark.slow
def test_an_environment_left_by_a_failed_install_is_rebuilt(project_copy):
    """A venv without its .installed (an install that failed or was stopped) is made
    anew, not reused; here the new install fails too (a requirement that cannot be met,
    at once), and leaves no .installed either."""
    cwd, venv = project_copy
    (cwd / "requirements.txt").write_text("./no-such-project\n")
    broken = cwd / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(broken)], check=True)
    (broken / "left-behind").write_text("")
    done = subprocess.run(["make", "VENV=venv", f"PYTHON={sys.executable}", "venv/.installed"],
                          cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "no-such-project" in done.stderr, done.stderr
    assert not (broken / "left-behind").exists() and not (broken / ".installed").exists()
    assert (broken / "bin" / "pip").exists()  # made anew, with pip this time


def _fresh_venv(directory: Path, **kw):
    return subprocess.Popen([sys.executable, str(ROOT / "src" / "pipeline" / "fresh_venv.py"),
                             str(directory)], stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_an_environment_stopped_at_any_point_is_made_anew(tmp_path):
    """What a stopped removal leaves (DIR.old, half removed) and what a stopped making
    leaves (DIR with its pyvenv.cfg but no pip) are made anew by the next run, as `python
    -m venv` makes it; Ctrl-C while it makes DIR prints one line; a DIR that is not an
    environment is refused in one line and left as it was."""
    env, old = tmp_path / "env", tmp_path / "env.old"
    (old / "lib").mkdir(parents=True)
    env.mkdir()
    (env / "pyvenv.cfg").write_text("# being made\n")
    (env / "left-behind").write_text("")
    made = _fresh_venv(env)
    assert made.wait(timeout=300) == 0, made.stderr.read()
    assert (env / "bin" / "pip").exists() and not (env / "left-behind").exists()
    assert not old.exists()
    # its interpreter linked as `python -m venv` links it: the stamp's real path holds
    assert os.path.realpath(env / "bin" / "python") == os.path.realpath(sys.executable)

    shutil.rmtree(env)
    run = _fresh_venv(env, start_new_session=True)
    deadline = time.time() + 120
    while not (env / "bin" / "python").exists() and time.time() < deadline:
        assert run.poll() is None, run.stderr.read()
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the whole group
    _, err = run.communicate(timeout=120)
    assert run.returncode != 0 and err.splitlines() == [
        f"{env}: interrupted while it was being made; the next run makes it anew"], err
    made = _fresh_venv(env)
    assert made.wait(timeout=300) == 0, made.stderr.read()
    assert (env / "bin" / "pip").exists()

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    refused = _fresh_venv(mine)
    err = refused.communicate(timeout=60)[1]
    assert refused.returncode != 0 and len(err.splitlines()) == 1, err
    assert f"{mine} exists and is not a Python environment" in err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


@pytest.mark.slow
def test_an_environment_is_made_anew_when_its_interpreter_or_requirements_change(project_copy):
    """The environment is keyed by content, like a step: a touched but unchanged
    requirements file rebuilds nothing; a changed one, or another PYTHON, rebuilds it."""
    cwd, venv = project_copy
    env = cwd / "env"
    env.mkdir()
    shutil.copy(venv / ".installed", env / ".installed")  # an environment made as the shared one

    def up_to_date(*args: str) -> bool:  # make -q: whether make would remake it
        return subprocess.run(["make", "-q", "VENV=env", *make_args(venv)[1:], *args, "env/.installed"],
                              cwd=cwd, capture_output=True, timeout=60).returncode == 0
    assert up_to_date()
    os.utime(cwd / "requirements.txt")
    os.utime(cwd / "pyproject.toml")
    assert up_to_date()
    stamp = (env / ".installed").read_text()
    (env / ".installed").write_text(re.sub(r"python=\S*:", "python=/usr/bin/another-python:", stamp))
    assert not up_to_date()
    (env / ".installed").write_text(stamp)
    with open(cwd / "requirements.txt", "a") as f:
        f.write("# changed\n")
    assert not up_to_date()


@pytest.mark.slow
def test_make_help_shows_the_settings_make_report_runs(project_copy):
    """What `make help` gives as each parameter's default is what a plain `make report`
    passes to the experiment notebooks: the K it fits and every other setting."""
    cwd, venv = project_copy
    shown = subprocess.run(["make", "-s", "help"], cwd=cwd, capture_output=True, text=True,
                           timeout=60).stdout
    defaults = dict(re.findall(r"\[(KS|SEED|N_INIT|SPLIT_MERGE|TOL|MAX_ITER)=\"?([^\]\"]+)\"?\]", shown))
    defaults["INIT"] = re.search(r"\[INIT=([^|\]]+)", shown)[1]
    assert len(defaults) == 7, shown
    done = _make(cwd, venv, "-n", "report")
    assert done.returncode == 0, done.stderr
    runs = re.findall(r"notebooks/experiment\.ipynb \S*/k-(\d+)/experiment\.ipynb(.*?)(?:\n(?! )|$)",
                      done.stdout.replace("\\\n", " "))
    assert sorted(int(k) for k, _ in runs) == [int(k) for k in defaults["KS"].split()], done.stdout
    for k, passed in runs:
        values = {name.upper(): value.strip("'") for name, value in re.findall(r"-p (\w+) (\S+)", passed)}
        assert values.pop("K") == k and values.pop("IMAGE") == "", passed
        assert values == {name: value for name, value in defaults.items() if name != "KS"}, passed
