"""Tables in ``benchmarks/README.md`` that are generated from committed result files match them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from benchmarks.recipe_ablation import markdown

REPO = Path(__file__).resolve().parents[1]


def _block(text: str, name: str) -> str:
    match = re.search(rf"<!-- BEGIN {name} -->\n(.*?)\n<!-- END {name} -->", text, re.S)
    assert match, f"no {name} block in benchmarks/README.md"
    return match.group(1)


def test_recipe_ablation_table_is_the_committed_results() -> None:
    report = json.loads((REPO / "benchmarks/results/recipe_ablation.json").read_text())
    readme = (REPO / "benchmarks/README.md").read_text()
    assert _block(readme, "recipe_ablation") == markdown(report)


def test_recipe_ablation_results_name_their_source() -> None:
    report = json.loads((REPO / "benchmarks/results/recipe_ablation.json").read_text())
    assert report["command"].startswith("python -m benchmarks.recipe_ablation")
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", report["commit"])
    assert report["split"].startswith("validation")
    assert len(report["subnets"]) >= 10 and len(report["settings"]["seeds"]) >= 2
