"""Smoke runs of the benchmarks that CI can afford (``--quick``): they run and write their file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_recipe_ablation_quick_writes_a_paired_table(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.recipe_ablation", "--quick", "--jobs", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "benchmarks/out/recipe_ablation_quick.json").read_text())
    assert {"command", "commit", "machine", "date", "split"} <= set(report)
    base, other = report["variants"]
    assert base["variant"] == "base" and base["delta_pp"] == 0.0
    assert len(other["delta_per_subnet_pp"]) == len(report["subnets"]) == 4
    low, high = other["delta_ci95"]
    assert low <= other["delta_pp"] <= high
    assert "| base |" in done.stdout
