"""Where a committed benchmark result came from: command, commit, machine, date.

Every JSON under ``benchmarks/results/`` carries this block, so a README number can be traced
to the run that produced it and rerun.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def provenance(module: str, argv: list[str] | None = None) -> dict[str, Any]:
    """The block written into every result file (``module``: the benchmark's ``-m`` name)."""
    import torch

    args = sys.argv[1:] if argv is None else argv
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "command": " ".join(["python", "-m", module, *args]),
        "commit": _git("rev-parse", "HEAD") + ("+dirty" if dirty not in ("", "unknown") else ""),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "system": f"{platform.system()} {platform.release()}",
        },
    }
