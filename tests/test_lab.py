"""`make lab`: JupyterLab on the project's kernel, whose saves leave the committed
notebooks as they are (pipeline.lab's pre-save hook), and whose first screen ends
with the address of the explorer."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from pipeline import lab

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / ".venv-lab"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _as_jupyterlab_saves_it(notebook: dict) -> dict:
    """The notebook after Run All in JupyterLab with ipywidgets, as its autosave sends
    it: outputs (a widget's view among them), execution counts, the widgets' state,
    view metadata, and the running kernel's kernelspec and language_info."""
    ran = copy.deepcopy(notebook)
    for n, cell in enumerate(ran["cells"], 1):
        cell["metadata"].update({"scrolled": True, "jupyter": {"outputs_hidden": False},
                                 "execution": {"iopub.status.idle": "2026-01-01T00:00:00Z"}})
        if cell["cell_type"] == "code":
            cell["execution_count"] = n
            cell["outputs"] = [
                {"output_type": "stream", "name": "stdout", "text": "printed\n"},
                {"output_type": "display_data", "metadata": {}, "data": {
                    "application/vnd.jupyter.widget-view+json": {
                        "model_id": "4f3a", "version_major": 2, "version_minor": 0},
                    "text/plain": "VBox(...)"}}]
    ran["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {"4f3a": {"model_name": "VBoxModel"}}, "version_major": 2, "version_minor": 0}}
    ran["metadata"]["kernelspec"] = {"display_name": "Python 3 (project .venv)",
                                     "language": "python", "name": "python3"}
    ran["metadata"]["language_info"] = {"name": "python", "version": "3.11.7",
                                        "mimetype": "text/x-python"}
    return ran


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_notebook_run_in_jupyterlab_is_saved_as_committed(path):
    """What the server writes (nbformat.write of the hooked model) is the committed
    file, byte for byte: so every committed notebook must be in that form too."""
    committed = json.loads(path.read_text(encoding="utf-8"))
    saved = lab.strip(_as_jupyterlab_saves_it(committed), committed)
    assert nbformat.writes(nbformat.from_dict(saved)) + "\n" == path.read_text(encoding="utf-8")


def test_a_new_notebook_keeps_its_kernel_and_loses_its_outputs():
    committed = json.loads(NOTEBOOKS[0].read_text(encoding="utf-8"))
    saved = lab.strip(_as_jupyterlab_saves_it(committed))
    assert saved["metadata"]["kernelspec"]["display_name"] == "Python 3 (project .venv)"
    assert "widgets" not in saved["metadata"]
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None
               and "execution" not in c["metadata"] for c in saved["cells"])


def test_the_first_screen_names_the_address_and_the_explorer():
    text = lab.first_screen("http://localhost:8888/lab/tree/explore.ipynb?token=abc")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert "http://localhost:8888/lab/tree/explore.ipynb?token=abc" in lines
    assert "explore.ipynb" in lines[1] and "Run All" in text


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org",
                           *args], cwd=repo, capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
@pytest.mark.skipif(not (LAB / ".installed").exists(), reason="make lab has not been set up")
def test_make_lab_serves_lab_with_the_project_kernel_and_saves_keep_git_clean(tmp_path):
    """make lab, serving a git repository of the committed notebooks (a copy, so that no
    other test reads a notebook while the server rewrites it): saves through the server
    with outputs and widgets leave git's view of it clean."""
    port = 20000 + os.getpid() % 20000
    log, repo = tmp_path / "lab.log", tmp_path / "notebooks"
    repo.mkdir()
    for path in NOTEBOOKS + [ROOT / ".gitignore"]:  # what the project's git ignores too
        (repo / path.name).write_bytes(path.read_bytes())
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "the committed notebooks")
    with open(log, "w") as f:
        server = subprocess.Popen(["make", "lab", f"LAB_NOTEBOOKS={repo}",
                                   f"LAB_ARGS=--port={port} --port-retries=0 "
                                   "--IdentityProvider.token=test"],
                                  cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                  start_new_session=True,
                                  env={k: v for k, v in os.environ.items()
                                       if k not in ("DISPLAY", "WAYLAND_DISPLAY")})
    url = f"http://127.0.0.1:{port}"

    def api(path, data=None):
        request = urllib.request.Request(
            f"{url}/api/contents/{path}", method="PUT" if data else "GET",
            data=json.dumps(data).encode() if data else None,
            headers={"Authorization": "token test", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as page:
            return json.load(page)
    try:
        for _ in range(120):
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"{url}/lab?token=test", timeout=5) as page:
                    assert page.status == 200 and b"JupyterLab" in page.read()
                    break
            except OSError:
                assert server.poll() is None, log.read_text()
        else:
            pytest.fail(log.read_text())
        with urllib.request.urlopen(f"{url}/api/kernelspecs?token=test", timeout=5) as page:
            specs = json.load(page)
        for path in NOTEBOOKS:  # saved through the server, with outputs and widgets
            ran = _as_jupyterlab_saves_it(json.loads(path.read_text(encoding="utf-8")))
            api(path.name, {"type": "notebook", "format": "json", "content": ran})
            reopened = api(path.name)["content"]
            assert "widgets" not in reopened["metadata"]
            assert all(not c.get("outputs") for c in reopened["cells"])
        text = log.read_text()  # the block is printed before the server answers
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert _git(repo, "status", "--porcelain") == ""
    assert all((repo / p.name).read_bytes() == p.read_bytes() for p in NOTEBOOKS)
    if os.geteuid() == 0:
        assert "--allow-root" in text
    assert "--no-browser" in text and "[W " not in text and "[I " not in text
    block = text[text.index("JupyterLab is running"):]
    assert f"localhost:{port}/lab/tree/explore.ipynb?token=test" in block
    spec = specs["kernelspecs"][specs["default"]]["spec"]
    assert Path(spec["argv"][0]) == ROOT / ".venv" / "bin" / "python"
    assert spec["display_name"] == "Python 3 (project .venv)"
