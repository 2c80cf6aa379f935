"""The pipeline under bad input and faults: parameters refused before anything is
written, no temporaries left by killed runs, results of a K replaced only as a whole,
the committed report changed only by the canonical run, and make lab as root."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from pipeline import images, params, render, run_notebook, steps

ROOT = Path(__file__).resolve().parents[1]


def _tree(directory: Path) -> dict:
    """Every file under `directory` with its bytes and mtime: to compare before/after."""
    if not directory.exists():
        return {}
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _make(cwd: Path, venv: Path, *args: str, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(["make", f"VENV={venv}", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


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
def test_make_refuses_each_bad_parameter_and_writes_nothing(project_copy, small_image):
    cwd, venv = project_copy
    ok = _make(cwd, venv, "experiments", f"IMAGE={small_image}", "KS=2", "N_INIT=1")
    assert ok.returncode == 0, ok.stderr
    before = _tree(cwd / "output")
    (cwd / "images").mkdir()
    bad_images = [(str(p), m) for p, m in _bad_images(cwd / "images").values()]
    cases = [(name, value, "") for name, value in BAD] + \
        [("IMAGE", path, message) for path, message in bad_images + [("images/", "not a file")]]
    for name, value, message in cases:
        for target in ("experiments", "report"):
            done = _make(cwd, venv, target, f"{name}={value}", timeout=60)
            assert done.returncode != 0, (name, value, done.stdout)
            assert f"{name}={value!r}" in done.stderr and message in done.stderr, done.stderr
            assert len(done.stderr.strip().splitlines()) <= 3, done.stderr
            assert _tree(cwd / "output") == before, (name, value)


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
    assert [p.name for p in results.iterdir()] == ["nb.ipynb"]
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
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.slow
def test_a_full_disk_leaves_every_k_as_it_was(project_copy, small_image):
    cwd, venv = project_copy
    with small_disk(cwd / "output") as output:
        args = ("experiments", f"IMAGE={small_image}", "KS=2 3", "N_INIT=1")
        assert _make(cwd, venv, *args).returncode == 0
        results = {k: _tree(output / "small" / f"k-{k}") for k in (2, 3)}
        filler = output / "filler"
        with open(filler, "wb") as f:  # leave about 40 KB: less than an executed notebook
            free = os.statvfs(output).f_bavail * os.statvfs(output).f_frsize
            f.write(b"\0" * (free - 40_000))
        done = _make(cwd, venv, *args, "SEED=1")
        assert done.returncode != 0
        assert "No space left on device" in done.stderr, done.stderr
        filler.unlink()
        for k in (2, 3):
            assert _tree(output / "small" / f"k-{k}") == results[k], k
        assert not [p for p in (output / "small").iterdir() if p.name.startswith(".")]


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
            render.publish(staging, dest)
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
    assert "pipeline.render publish output/grace_hopper/staged-report report\n" in canonical
    for args in (["KS=2 8"], ["SEED=1"], ["KS=2 4 8 16 32 64 128", "TOL=1e-3"], ["N_INIT=1"],
                 ["INIT=random"], ["MAX_ITER=50"]):
        commands = _commands(cwd, venv, *args)
        assert " report/" not in commands, args
        assert "publish output/grace_hopper/staged-report output/grace_hopper/report\n" \
            in commands, args
        assert "output/grace_hopper/report/report.html and report.pdf (report/ is made only" \
            in commands


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


# ------------------------------------------------------------------ JupyterLab

LAB = ROOT / ".venv-lab"


@pytest.mark.slow
@pytest.mark.skipif(not (LAB / ".installed").exists(), reason="make lab has not been set up")
def test_make_lab_serves_lab_with_the_project_kernel(tmp_path):
    port = 20000 + os.getpid() % 20000
    log = tmp_path / "lab.log"
    with open(log, "w") as f:
        lab = subprocess.Popen(["make", "lab", f"LAB_ARGS=--port={port} --port-retries=0 "
                                "--IdentityProvider.token=test"], cwd=ROOT, stdout=f,
                               stderr=subprocess.STDOUT, start_new_session=True,
                               env={k: v for k, v in os.environ.items()
                                    if k not in ("DISPLAY", "WAYLAND_DISPLAY")})
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"{url}/lab?token=test", timeout=5) as page:
                    assert page.status == 200 and b"JupyterLab" in page.read()
                    break
            except OSError:
                assert lab.poll() is None, log.read_text()
        else:
            pytest.fail(log.read_text())
        with urllib.request.urlopen(f"{url}/api/kernelspecs?token=test", timeout=5) as page:
            specs = json.load(page)
        text = log.read_text()  # up to serving: what stopping it logs does not count
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(timeout=30)
    assert f"{url}/lab" in text or f"localhost:{port}/lab" in text  # the URL to open
    if os.geteuid() == 0:
        assert "--allow-root" in text
    assert "--no-browser" in text and "[W " not in text and "may not be found" not in text
    spec = specs["kernelspecs"][specs["default"]]["spec"]
    assert Path(spec["argv"][0]) == ROOT / ".venv" / "bin" / "python"
    assert spec["display_name"] == "Python 3 (project .venv)"
