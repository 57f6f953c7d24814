"""Tables in ``benchmarks/README.md`` that are generated from committed result files match them."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _block(text: str, name: str) -> str:
    match = re.search(rf"<!-- BEGIN {name} -->\n(.*?)\n<!-- END {name} -->", text, re.S)
    assert match, f"no {name} block in benchmarks/README.md"
    return match.group(1)


# (README block, committed result file, the benchmark's table function)
GENERATED_TABLES = [
    ("recipe_ablation", "recipe_ablation.json", "benchmarks.recipe_ablation"),
    ("weight_sharing", "weight_sharing.json", "benchmarks.weight_sharing_tables"),
    ("cli_startup", "cli_startup.json", "benchmarks.cli_startup"),
]


@pytest.mark.parametrize(("block", "results", "module"), GENERATED_TABLES)
def test_generated_table_is_the_committed_results(block: str, results: str, module: str) -> None:
    markdown = importlib.import_module(module).markdown
    result = json.loads((REPO / "benchmarks/results" / results).read_text())
    readme = (REPO / "benchmarks/README.md").read_text()
    assert _block(readme, block) == markdown(result)


def test_recipe_ablation_results_name_their_source() -> None:
    report = json.loads((REPO / "benchmarks/results/recipe_ablation.json").read_text())
    assert report["command"].startswith("python -m benchmarks.recipe_ablation")
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", report["commit"])
    assert report["split"].startswith("validation")
    assert len(report["subnets"]) >= 10 and len(report["settings"]["seeds"]) >= 2


def test_weight_sharing_results_hold_what_the_issue_asks() -> None:
    result = json.loads((REPO / "benchmarks/results/weight_sharing.json").read_text())
    assert result["command"].startswith("python -m benchmarks.weight_sharing")
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", result["commit"])
    for key in ("mean_gap_pp", "gap_ci95", "kendall_tau", "hv_front", "hv_family"):
        assert isinstance(result[key], float | list), key
    assert result["n_subnets"] == len(result["subnets"]) >= 8
    gaps = [row["gap pp"] for row in result["subnets"]]
    assert abs(sum(gaps) / len(gaps) - result["mean_gap_pp"]) < 1e-9
    assert result["gap_ci95"][0] <= result["mean_gap_pp"] <= result["gap_ci95"][1]
    assert result["goals"]["mean_gap_ge_-0.5pp"] == (result["mean_gap_pp"] >= -0.5)


def test_an_extended_variant_is_paired_on_its_own_seeds() -> None:
    from benchmarks.recipe_ablation import paired_change

    def run(variant: str, seed: int, top1: list[float]) -> dict[str, object]:
        return {"variant": variant, "seed": seed, "val_top1": top1, "train_cpu_s": 1.0}

    runs = [run("base", s, [80.0, 70.0]) for s in range(4)]
    runs += [run("ema", s, [80.5, 70.5]) for s in range(2)]  # two seeds recorded
    runs += [run("zero_init", s, [80.0 + s, 70.0 + s]) for s in range(4)]  # extended to four
    assert paired_change(runs, "ema")["delta_per_seed_pp"] == [0.5, 0.5]
    row = paired_change(runs, "zero_init")
    assert row["delta_per_seed_pp"] == [0.0, 1.0, 2.0, 3.0]
    assert row["delta_pp"] == 1.5 and not row["helps"]  # seed 0 shows no gain


def test_cli_startup_results_hold_what_the_issue_asks() -> None:
    result = json.loads((REPO / "benchmarks/results/cli_startup.json").read_text())
    assert result["command"].startswith("python -m benchmarks.cli_startup")
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", result["commit"])
    rows = {row["command"]: row for row in result["rows"]}
    assert {"python -c pass", "nas predict (one config)", "nas best"} <= set(rows)
    for row in rows.values():
        assert len(row["now_runs_s"]) == len(row["before_runs_s"]) == result["repeats"] >= 5
        assert row["same_output"], row["command"]
    for name, met in result["goal_met"].items():
        assert met == (rows[name]["now_s"] < result["goal_s"])
