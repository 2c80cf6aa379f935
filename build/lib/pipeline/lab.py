"""JupyterLab for `make lab`: notebooks saved as they are committed, and one clear
first screen.

A Jupyter server extension for the lab environment (.venv-lab, which installs this
project without its dependencies; standard library only here). It registers a
pre-save hook, `strip`, that saves every notebook without what running it adds:
outputs, execution counts, the widgets' state, the cell metadata JupyterLab keeps
for its own view, and the kernelspec and language_info the running kernel reports
(the file's own stay). So a session in JupyterLab leaves `git status` clean and a
reopened notebook rebuilds its widgets on Run All. Once the server is up it prints
the address that opens notebooks/explore.ipynb.

    .venv-lab/bin/python -m pipeline.lab configure   # writes the server's config
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

FIRST_NOTEBOOK = "explore.ipynb"
# Cell metadata that records how JupyterLab last showed or ran a cell.
VIEW_METADATA = ("collapsed", "scrolled", "execution", "ExecuteTime", "jupyter")
# Notebook metadata the kernel writes when it runs: the committed file's value stays.
KERNEL_METADATA = ("kernelspec", "language_info")

# The lab environment's server: this extension on, warnings and errors only (the
# address follows from `announce`), and the explorer as the first page.
EXTENSION = {"ServerApp": {"jpserver_extensions": {"pipeline.lab": True}}}
CONFIG = {
    "ServerApp": {"log_level": "WARN"},
    "LabApp": {"log_level": "WARN", "default_url": f"/lab/tree/{FIRST_NOTEBOOK}"},
}
# JupyterLab's own settings: no pop-up asking to fetch Jupyter's news.
LAB_SETTINGS = {"@jupyterlab/apputils-extension:notification": {
    "fetchNews": "false", "checkForUpdates": False}}


def strip(notebook: dict, committed: dict | None = None) -> dict:
    """The notebook (nbformat 4, as a dict; changed in place and returned) without
    outputs, execution counts, widget state and view metadata; its kernelspec and
    language_info are those of `committed` (the file before this save; None: a new
    notebook keeps its own)."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        for key in VIEW_METADATA:
            cell.get("metadata", {}).pop(key, None)
    metadata = notebook.setdefault("metadata", {})
    metadata.pop("widgets", None)
    if committed is not None:
        for key in KERNEL_METADATA:
            if key in committed.get("metadata", {}):
                metadata[key] = committed["metadata"][key]
            else:
                metadata.pop(key, None)
    return notebook


def pre_save_hook(model: dict, path: str, contents_manager, **kwargs) -> None:
    """jupyter_server's pre-save hook: a notebook is saved stripped (`strip`)."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    on_disk = Path(contents_manager.root_dir, path.lstrip("/"))
    try:
        committed = json.loads(on_disk.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        committed = None
    strip(model["content"], committed)


def first_screen(url: str) -> str:
    """The block `make lab` ends with: where to go, and what to do there."""
    rule = "-" * 78
    return "\n".join([
        "", rule,
        f"  JupyterLab is running. Open this address in a browser; it opens {FIRST_NOTEBOOK}:",
        "",
        f"      {url}",
        "",
        "  Then Run All (the >> button) and change the widgets. The other notebooks are",
        "  in the file list on the left; Jupyter saves them without outputs.",
        "  Stop the server: Ctrl-C twice.",
        rule, "",
    ])


def _explorer_url(serverapp) -> str:
    """The address of the first notebook on the running server, with its token (the
    server's public_url hides a token it did not generate)."""
    from urllib.parse import urlencode, urlsplit

    token = serverapp.identity_provider.token
    return urlsplit(serverapp.public_url)._replace(
        query=urlencode({"token": token}) if token else "").geturl()


def _jupyter_server_extension_points():
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp) -> None:
    serverapp.contents_manager.register_pre_save_hook(pre_save_hook)

    def announce():
        print(first_screen(_explorer_url(serverapp)), flush=True)
    # Once the server listens: the loop's first callback, before any request is served.
    serverapp.io_loop.add_callback(announce)


def configure(prefix: str | os.PathLike = sys.prefix) -> list[Path]:
    """Write EXTENSION, CONFIG and LAB_SETTINGS where the server of the environment
    at `prefix` and its JupyterLab read them; return the files."""
    folder = Path(prefix, "etc", "jupyter")
    written = []
    for path, config in ((folder / "jupyter_server_config.d" / "em-project.json", EXTENSION),
                         (folder / "jupyter_server_config.json", CONFIG),
                         (Path(prefix, "share", "jupyter", "lab", "settings", "overrides.json"),
                          LAB_SETTINGS)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    if sys.argv[1:] != ["configure"]:
        raise SystemExit("usage: python -m pipeline.lab configure")
    configure()
