"""``nas compare``: the fronts of several finished runs (or seeds) side by side.

Each run's exported front (``export/front.csv``, measured values) is scored on the runs' shared
search objectives with **one** reference point for all of them (the union's nadir pushed out by
10 % of its range, or one the user gives), so the hypervolumes can be compared; the spec keys
that differ between the runs say what was changed. Only files the pipeline wrote are read; no
torch, no Ray.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ConfigError
from nas.pareto import hypervolume, reference_point_from
from nas.pipeline.console import aligned
from nas.pipeline.run_status import require_run
from nas.search.objectives import Objective, with_unit

# Keys that name a run rather than change it.
_NOT_COMPARED = ("output_dir", "name")


def flatten(spec: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys; lists stay values.

    >>> flatten({"train": {"epochs": 6, "lr": 0.1}, "seed": 0})
    {'train.epochs': 6, 'train.lr': 0.1, 'seed': 0}
    """
    out: dict[str, Any] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def differing_keys(specs: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The flattened spec keys whose values are not the same in every spec (absent: ``None``).

    >>> differing_keys([{"seed": 0, "train": {"epochs": 6}}, {"seed": 1, "train": {"epochs": 6}}])
    {'seed': [0, 1]}
    """
    flat = [flatten(s) for s in specs]
    keys = sorted({k for f in flat for k in f if k not in _NOT_COMPARED})
    return {
        k: [f.get(k) for f in flat]
        for k in keys
        if any(json.dumps(f.get(k)) != json.dumps(flat[0].get(k)) for f in flat)
    }


def _front_points(root: Path, objectives: Sequence[Objective]) -> np.ndarray:
    """Measured objective values of a run's exported front, in natural units (rows: subnets)."""
    path = root / "export" / "front.csv"
    if not path.is_file():
        raise ConfigError(f"RUN={str(root)!r} has no exported front ({path} is missing)")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    points = []
    for row in rows:
        try:
            point = [float(row[f"{o.key}.measured"]) for o in objectives]
        except (KeyError, ValueError):
            continue
        if all(math.isfinite(v) for v in point):
            points.append(point)
    if not points:
        keys = [f"{o.key}.measured" for o in objectives]
        raise ConfigError(f"RUN={str(root)!r}: export/front.csv has no row with all of {keys}")
    return np.asarray(points, dtype=float)


def compare_runs(
    roots: Sequence[Path], *, reference_point: Sequence[float] | None = None
) -> dict[str, Any]:
    """Fronts, hypervolumes with one shared reference point, and the differing spec keys."""
    if len(roots) < 2:
        raise ConfigError(f"RUN: give at least two run directories, got {len(roots)}")
    roots = [require_run(Path(r), key="RUN") for r in roots]
    specs = [json.loads((r / "spec.json").read_text()) for r in roots]
    texts = [tuple(s.get("search", {}).get("objectives", ())) for s in specs]
    if not texts[0] or any(t != texts[0] for t in texts):
        raise ConfigError(
            "search.objectives differ between the runs (or are missing), so their fronts are not "
            f"comparable: {[list(t) for t in texts]}"
        )
    objectives = [Objective.parse(t) for t in texts[0]]
    signs = np.array([o.sign for o in objectives])
    fronts = [_front_points(r, objectives) for r in roots]
    minimised = [f * signs for f in fronts]
    if reference_point is None:
        ref = reference_point_from(np.vstack(minimised))
    else:
        if len(reference_point) != len(objectives):
            raise ConfigError(
                f"--reference-point has {len(reference_point)} values, expected "
                f"{len(objectives)} (one per objective: {[o.key for o in objectives]})"
            )
        ref = np.asarray(reference_point, dtype=float) * signs
    runs = []
    for root, spec, front, points in zip(roots, specs, fronts, minimised, strict=True):
        best = {
            o.key: float(front[:, i].max() if o.direction == "max" else front[:, i].min())
            for i, o in enumerate(objectives)
        }
        runs.append(
            {
                "run": str(root),
                "name": spec.get("name"),
                "seed": spec.get("seed"),
                "front_size": len(front),
                "hypervolume": hypervolume(points, ref),
                "best": best,
                "front": front.tolist(),
            }
        )
    return {
        "objectives": [o.key for o in objectives],
        "directions": [o.direction for o in objectives],
        "reference_point": (ref * signs).tolist(),
        "runs": runs,
        "differing_keys": differing_keys(specs),
    }


def format_comparison(result: Mapping[str, Any]) -> str:
    """The table ``nas compare`` prints."""
    objectives = result["objectives"]
    pairs = zip(objectives, result["reference_point"], strict=True)
    ref = ", ".join(f"{k} {v:.4g}" for k, v in pairs)
    header = ["run", "seed", "front", "hypervolume", *(f"best {k}" for k in objectives)]
    body = [
        [
            run["run"],
            "–" if run["seed"] is None else str(run["seed"]),
            str(run["front_size"]),
            f"{run['hypervolume']:.4g}",
            *(f"{run['best'][k]:.4g}" for k in objectives),
        ]
        for run in result["runs"]
    ]
    lines = [
        "Exported fronts (measured values; top1 is on each run's selection split)",
        f"hypervolume with one reference point for all: {ref}",
        *aligned(header, body),
    ]
    differing = result["differing_keys"]
    if differing:
        lines.append("spec keys that differ:")
        for key, values in differing.items():
            lines.append(f"  {key}: " + " | ".join(json.dumps(v) for v in values))
    else:
        lines.append("spec keys that differ: none (same spec: the spread is run-to-run noise)")
    return "\n".join(lines)


def plot_comparison(result: Mapping[str, Any], path: Path) -> Path:
    """The fronts in one picture (first two objectives), one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objectives = result["objectives"]
    if len(objectives) < 2:
        raise ConfigError("--plot needs at least two search objectives")
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for run in result["runs"]:
        front = np.asarray(run["front"])
        order = np.argsort(front[:, 1])
        label = f"{Path(run['run']).name} (HV {run['hypervolume']:.4g})"
        ax.plot(front[order, 1], front[order, 0], marker="o", drawstyle="steps-post", label=label)
    ref = result["reference_point"]
    ax.scatter([ref[1]], [ref[0]], marker="x", color="black", label="reference point")
    ax.set_xlabel(with_unit(objectives[1]))
    ax.set_ylabel(with_unit(objectives[0]))
    ax.set_title("Exported fronts, measured", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["compare_runs", "differing_keys", "flatten", "format_comparison", "plot_comparison"]
