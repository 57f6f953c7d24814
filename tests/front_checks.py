"""Checks that an exported front is true, read from the run directory alone (no pipeline code).

Every measured value of a run lives in ``measure/results.jsonl``; the export stage's same-session
latencies of the front contenders (``export/latency.jsonl``) override the measure stage's. The
exported subnets must be non-dominated among all of them and feasible on those values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from nas.artifacts.export import exported_paths, read_card


def _latest(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    out: dict[tuple[str, str], dict[str, float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            out[(record["config_key"], record["target"])] = record["metrics"]
    return out


def measured_values(run: Path, targets: list[str]) -> dict[str, dict[str, float]]:
    """``config key -> {top1, latency_ms@<target>, ...}`` with the run's latest measurements."""
    records = _latest(run / "measure" / "results.jsonl")
    records.update(_latest(run / "export" / "latency.jsonl"))
    out: dict[str, dict[str, float]] = {}
    for (key, target), metrics in records.items():
        if target == "any":
            out.setdefault(key, {}).update(metrics)
    for (key, target), metrics in records.items():
        if target in targets and key in out:
            out[key].update({f"{k}@{target}": v for k, v in metrics.items()})
    return out


def check_exported_front(
    run: Path,
    objectives: list[tuple[str, str]],
    *,
    targets: list[str],
    max_subnets: int,
    upper_bounds: dict[str, float] | None = None,
) -> list[dict]:
    """Assert the exported cards are feasible, non-dominated among all measured; return cards."""
    values = measured_values(run, targets)
    bounds = upper_bounds or {}
    keys = [k for k, _ in objectives]
    complete = {
        k: v
        for k, v in values.items()
        if all(m in v for m in keys) and all(m in v for m in bounds)
    }
    feasible = {k: v for k, v in complete.items() if all(v[m] <= b for m, b in bounds.items())}
    assert feasible, "nothing measured is feasible"
    config_keys = list(feasible)
    F = np.array(
        [[-v[k] if d == "max" else v[k] for k, d in objectives] for v in feasible.values()]
    )
    front = {config_keys[i] for i in NonDominatedSorting().do(F, only_non_dominated_front=True)}
    cards = [read_card(d) for d in exported_paths(run / "export")]
    assert len(cards) == min(max_subnets, len(front)), (len(cards), len(front))
    for card in cards:
        key = card["config_key"]
        assert key in front, f"{key} is dominated by a subnet measured in the run"
        measured = card["metrics"]["measured"]
        for metric in keys:
            assert measured[metric] == feasible[key][metric]
        for metric, bound in bounds.items():
            assert measured[metric] <= bound
    return cards
