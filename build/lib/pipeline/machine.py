"""The machine and software a result was measured on, described once for the report
and the benchmark alike."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return " ".join(value.split())
    return platform.processor() or platform.machine() or "unknown"


def memory_gib(meminfo: str | os.PathLike = "/proc/meminfo") -> float | None:
    """Total memory in GiB from /proc/meminfo (Linux), else None."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def describe() -> dict:
    """Versions and machine facts of the running process, as a JSON-ready dict:
    python, numpy, matplotlib, pillow, os, cpu, cores, cores_available, memory_gib,
    thread_settings (the *_NUM_THREADS variables set) and blas (threadpoolctl's view,
    when installed)."""
    import matplotlib
    import numpy as np
    import PIL

    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    try:
        import threadpoolctl

        blas = [{key: info.get(key) for key in ("internal_api", "version", "num_threads",
                                                  "architecture")}
                for info in threadpoolctl.threadpool_info()]
    except ImportError:
        blas = []
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "pillow": PIL.__version__,
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": available,
        "memory_gib": memory_gib(),
        "thread_settings": {name: os.environ[name] for name in
                            ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                             "OPENBLAS_CORETYPE") if name in os.environ},
        "blas": blas,
    }
