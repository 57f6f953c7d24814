"""The core runs without Ray: importing it must not import Ray, even transitively."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_without_ray() -> None:
    code = (
        "import sys\n"
        "import nas, nas.space, nas.subnet, nas.supernets.base, nas.elastic\n"
        "import nas.supernets.mbconv.static, nas.data.datasets\n"
        "import nas.measure.cost, nas.results, nas.execution\n"
        "import search_spaces, predictors\n"
        "for optional in ('nas.search', 'nas.training', 'nas.measure', 'nas.pareto'):\n"
        "    try:\n"
        "        __import__(optional)\n"
        "    except ModuleNotFoundError as exc:\n"
        "        if exc.name != optional:\n"
        "            raise\n"
        "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
