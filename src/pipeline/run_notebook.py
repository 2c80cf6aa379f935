"""Run a notebook with papermill, safely in parallel, and keep only complete results.

    python -m pipeline.run_notebook INPUT.ipynb OUTPUT.ipynb [--cwd DIR] [-p NAME VALUE]...
                                    [--stage NAME] [--key KEY.json]

Like `papermill INPUT OUTPUT -p NAME VALUE`, with these differences:
- The kernel talks to papermill over Unix sockets (ZeroMQ's ipc transport) instead
  of TCP ports. Papermill picks free TCP ports and releases them before the kernel
  binds them, so two papermill processes started together (`make -j2`) can pick the
  same port and one fails with "Address already in use". The sockets and the
  connection file live in a private temporary directory, removed when the kernel
  stops, or by the next run if this one was killed.
- The executed notebook goes to a temporary file that is renamed onto OUTPUT only
  when every cell succeeded, so OUTPUT exists only for a complete run; with --key,
  OUTPUT.manifest.json then records its checksum and the cache key of KEY.json.
- With --stage NAME, OUTPUT's directory is the unit: the notebook gets a fresh
  staging directory as parameter NAME, writes its results there, the executed
  notebook is saved into it, then a manifest of every file with its checksum and
  the cache key of KEY.json (pipeline.cache), and only then does it replace
  OUTPUT's directory. A failed or killed run leaves the previous results exactly
  as they were.
- A failure is one line on stderr (cell, exception, or a kernel that died), not a
  traceback, and Ctrl-C stops it quietly; temporaries that a killed run left beside
  OUTPUT are removed first.
- One run of an OUTPUT at a time: a run holds a lock file beside it (.<name>.lock,
  pipeline.lock.exclusive) until it ends, and a second run of the same OUTPUT (left
  running by a make killed outright, say) waits for the first, saying so in one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import papermill
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import DeadKernelError

from pipeline import atomic, cache, lock

KERNEL_DIR_PREFIX = "em-kernel-"  # + <pid of the papermill process>-<random>
# Temporaries beside an output, named after the process that made them:
# .<name>.<pid>.part.ipynb (a notebook), .<name>.<pid>.part and .<name>.<pid>.old (directories).
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.(part|part\.ipynb|old)")
_KERNEL_DIR = re.compile(rf"{KERNEL_DIR_PREFIX}(?P<pid>\d+)-.*")


class IPCKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel listens on Unix sockets, not TCP ports, with its
    sockets and connection file in one private directory /tmp/em-kernel-<pid>-<random>/
    that is removed when the kernel stops. The kernel process's own stderr (not its
    cells', which go into the notebook) is kept there too, in `last_stderr` after it
    stopped: a kernel stopped by Ctrl-C in the middle of a cell complains there."""

    last_stderr = ""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.transport = "ipc"
        self.kernel_dir = tempfile.mkdtemp(prefix=f"{KERNEL_DIR_PREFIX}{os.getpid()}-")
        self.connection_file = os.path.join(self.kernel_dir, "kernel.json")
        self.ip = os.path.join(self.kernel_dir, "socket")  # socket-1 ... socket-5

    async def _async_interrupt_kernel(self):
        # jupyter_client interrupts the kernel before every shutdown, and the kernel
        # then logs "KeyboardInterrupt caught in kernel": skip that at shutdown.
        if not self.shutting_down:
            await super()._async_interrupt_kernel()

    async def _async_pre_start_kernel(self, **kw):
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        self._stderr = open(os.path.join(self.kernel_dir, "stderr"), "ab")
        return kernel_cmd, {**kw, "stderr": self._stderr}

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            self._stderr.close()
            with contextlib.suppress(OSError):
                type(self).last_stderr = Path(self.kernel_dir, "stderr").read_text(errors="replace")
            shutil.rmtree(self.kernel_dir, ignore_errors=True)


def parse_value(text: str):
    """A parameter from the command line: int, float, true/false/none, else text."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def remove_stale(directory: Path) -> list[Path]:
    """Remove what runs killed before they could clean up left behind: their
    temporaries and lock files in `directory` and their kernels' directories in the
    temporary folder. Only what belongs to processes no longer running (a lock file:
    that no process holds). Returns the paths."""
    stale = atomic.remove_dead(Path(tempfile.gettempdir()), _KERNEL_DIR)
    if directory.is_dir():
        stale += atomic.remove_dead(directory, _TEMPORARY)
        stale += lock.remove_unheld(directory.glob(".*.lock"))
    return stale


def _replace_dir(staging: Path, final: Path) -> None:
    """Put the directory `staging` where `final` is, removing the old `final`."""
    if final.exists():
        old = final.with_name(f".{final.name}.{os.getpid()}.old")
        os.rename(final, old)
        os.rename(staging, final)  # a crash just before this: final is missing, so rerun
        shutil.rmtree(old)
    else:
        os.rename(staging, final)


def run(input_path, output_path, parameters: dict, cwd=None, progress_bar=True,
        stage: str | None = None, key: dict | None = None):
    """Execute `input_path` with `parameters`; write the result to `output_path`.

    stage: the name of the parameter through which the notebook is told its output
    directory; key: the cache key its manifest records (without `stage`, a manifest is
    written only when given); see the module's docstring."""
    output_path = Path(output_path).absolute()
    final = output_path.parent
    made = final if stage else output_path  # what this run replaces
    made.parent.mkdir(parents=True, exist_ok=True)
    with lock.exclusive(made.with_name(f".{made.name}.lock"), str(made)):
        remove_stale(made.parent)
        _run(input_path, output_path, parameters, cwd, progress_bar, stage, key)


def _run(input_path, output_path: Path, parameters, cwd, progress_bar, stage, key):
    final = output_path.parent
    if stage:
        work = final.with_name(f".{final.name}.{os.getpid()}.part")
        work.mkdir()
        parameters = {**parameters, stage: str(work)}
        notebook = work / output_path.name
    else:
        final.mkdir(exist_ok=True)
        work = final / f".{output_path.stem}.{os.getpid()}.part.ipynb"
        notebook = work
    try:
        try:
            papermill.execute_notebook(
                str(input_path), str(notebook), parameters=parameters, cwd=cwd,
                kernel_name="python3", progress_bar=progress_bar,
                kernel_manager_class=IPCKernelManager)
        except Exception:  # what the kernel itself said may tell why (not after Ctrl-C)
            sys.stderr.write(IPCKernelManager.last_stderr)
            raise
        if stage:
            cache.write_manifest(work, key)
            _replace_dir(work, final)
        else:
            os.replace(work, output_path)
            if key is not None:  # written after: a run killed between is made again
                cache.write_manifest(output_path, key)
    finally:
        atomic.remove(work)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--cwd", help="working directory of the kernel")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"))
    parser.add_argument("--stage", metavar="NAME",
                        help="parameter that receives the staging directory of the results")
    parser.add_argument("--key", metavar="KEY.json",
                        help="the cache key of the results, recorded in their manifest "
                             "(without --stage: OUTPUT.manifest.json)")
    parser.add_argument("--no-progress-bar", action="store_true")
    args = parser.parse_args(argv)
    parameters = {name: parse_value(value) for name, value in args.parameter}
    # Terminated (kill, a stopped CI job): unwind like Ctrl-C, removing this run's temporaries.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    # A dead kernel gets the one line below instead of nbclient's own.
    logging.getLogger("papermill").addFilter(lambda record: "Kernel died" not in record.getMessage())
    try:
        key = json.loads(Path(args.key).read_text()) if args.key else None
        run(args.input, args.output, parameters, cwd=args.cwd,
            progress_bar=not args.no_progress_bar, stage=args.stage, key=key)
    except KeyboardInterrupt:  # Ctrl-C: make says which step it stopped
        return 130
    except papermill.PapermillExecutionError as exc:
        print(f"{args.output}: {args.input} failed in cell {exc.exec_count}: "
              f"{exc.ename}: {exc.evalue}", file=sys.stderr)
        return 1
    except DeadKernelError:
        print(f"{args.output}: the kernel running {args.input} died, most likely killed "
              f"for lack of memory (see `dmesg`); nothing of this run was kept", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the disk is full
        print(f"{args.output}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
