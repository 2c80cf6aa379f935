"""Run a notebook with papermill, safely in parallel, and write it atomically.

    python -m pipeline.run_notebook INPUT.ipynb OUTPUT.ipynb [--cwd DIR] [-p NAME VALUE]...

Like `papermill INPUT OUTPUT -p NAME VALUE`, with two differences that make the
Makefile's per-K runs safe:
- The kernel talks to papermill over Unix sockets (ZeroMQ's ipc transport) instead
  of TCP ports. Papermill picks free TCP ports and releases them before the kernel
  binds them, so two papermill processes started together (`make -j2`) can pick the
  same port and one fails with "Address already in use". Socket files named after
  each kernel's unique connection file cannot collide.
- The executed notebook goes to a temporary file that is renamed onto OUTPUT only
  when every cell succeeded, so OUTPUT exists only for a complete run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path

import papermill
from jupyter_client.manager import AsyncKernelManager


class IPCKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels listen on Unix sockets, not TCP ports.

    The sockets are files /tmp/em-kernel-<random>-ipc-<n>; jupyter_client removes
    them when the kernel shuts down.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.transport = "ipc"
        # Unique per kernel; short, as a socket path must fit in about 100 bytes.
        self.ip = os.path.join(tempfile.gettempdir(), f"em-kernel-{uuid.uuid4().hex[:16]}")


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


def run(input_path, output_path, parameters: dict, cwd=None, progress_bar=True):
    """Execute `input_path` with `parameters`; write the result to `output_path`."""
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f".{output_path.stem}.{os.getpid()}.part.ipynb")
    try:
        papermill.execute_notebook(
            str(input_path), str(tmp), parameters=parameters, cwd=cwd,
            kernel_name="python3", progress_bar=progress_bar,
            kernel_manager_class=IPCKernelManager)
        os.replace(tmp, output_path)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--cwd", help="working directory of the kernel")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"))
    parser.add_argument("--no-progress-bar", action="store_true")
    args = parser.parse_args(argv)
    parameters = {name: parse_value(value) for name, value in args.parameter}
    try:
        run(args.input, args.output, parameters, cwd=args.cwd,
            progress_bar=not args.no_progress_bar)
    except papermill.PapermillExecutionError as exc:
        print(f"{args.input} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
