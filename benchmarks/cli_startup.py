"""CLI start-up: wall time of `python -c pass` and `nas` commands, two trees side by side.

Each command runs in a fresh interpreter (what a user waits for), alternating between the trees
so load on the machine hits both alike; the table gives the median of ``--repeats`` runs and the
ratio. The baseline tree is a git worktree of ``--before`` (a commit), run with ``PYTHONPATH``.
``--json`` writes the medians, every run's time and the provenance
(:mod:`benchmarks.provenance`) to a result file; :func:`markdown` renders the README table from it.

    python -m benchmarks.cli_startup --before f1fb0a3 --json benchmarks/results/cli_startup.json

Without ``--bundle`` the predictor bundle is made here: ``tiny_cnn`` with three predictors
(ridge top1, ensemble latency on ``cpu``, gradient boosting latency on ``gpu``) and a Pareto
archive, saved by the baseline tree so both trees read the same files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 1.0
"""Issue 35's goal for `nas predict` and `nas best` (median, cold process)."""
GOAL_COMMANDS = ("nas predict (one config)", "nas best")

MAKE_BUNDLE = """
import sys
import numpy as np
import search_spaces
from nas.measure.cost import compute_cost
from predictors.bundle import Predictors, build_archive
from predictors.dataset import fit_predictor

space = search_spaces.get("tiny_cnn")
configs = space.sample_many(120, np.random.default_rng(0))
costs = [compute_cost(space, c) for c in configs]
macs = np.array([c.macs for c in costs], dtype=float)
params = np.array([c.params for c in costs], dtype=float)
top1 = 80 + 5 * np.log(macs / macs.min())
fits = [
    fit_predictor(space, configs, top1, metric="top1", kind="ridge"),
    fit_predictor(space, configs, macs / 1e5, metric="latency_ms", target="cpu", kind="ensemble"),
    fit_predictor(space, configs, params / 1e4, metric="latency_ms", target="gpu", kind="gbr"),
]
bundle = Predictors([f.predictor for f in fits])
archive = build_archive(bundle, space.sample_many(300, np.random.default_rng(1)))
Predictors([bundle[n] for n in bundle.names], archive=archive).save(sys.argv[1])
"""


def _commands(bundle: Path) -> dict[str, list[str]]:
    index = json.loads((bundle / "bundle.json").read_text())
    manifest = json.loads((bundle / index["predictors"][0] / "manifest.json").read_text())
    smallest = {  # first option, or the low bound of a numeric dimension
        d["name"]: d["options"][0] if "options" in d else d["numeric"]["low"]
        for d in manifest["space"]["dims"]
    }
    target = next(n.partition("@")[2] for n in index["predictors"] if "@" in n)
    return {
        "python -c pass": [],
        "nas --help": ["--help"],
        "nas validate experiments/default.toml": ["validate", "experiments/default.toml"],
        "nas predict (one config)": [
            "predict",
            "--predictors",
            str(bundle),
            "--config",
            json.dumps(smallest),
        ],
        "nas best": [
            "best",
            "--predictors",
            str(bundle),
            "--target",
            target,
            "--max-latency-ms",
            "1e9",
        ],
    }


def _env(tree: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}


def _time(tree: Path, argv: list[str]) -> tuple[float, str]:
    command = [sys.executable, "-m", "nas", *argv] if argv else [sys.executable, "-c", "pass"]
    start = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=tree,  # `python -m` puts the working directory first on sys.path
        env=_env(tree),
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{tree}: {' '.join(command[1:])} failed: {done.stderr[-500:]}")
    return elapsed, done.stdout


def _make_bundle(tree: Path, where: Path) -> Path:
    subprocess.run(
        [sys.executable, "-c", MAKE_BUNDLE, str(where)],
        cwd=tree,
        env=_env(tree),
        check=True,
        capture_output=True,
    )
    return where


def measure(before_commit: str, bundle: Path | None, repeats: int) -> dict[str, Any]:
    """Medians and every run's time, per command, for the baseline commit and this tree."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        before = Path(folder) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(before), before_commit],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        try:
            made = bundle is None
            if bundle is None:
                bundle = _make_bundle(before, Path(folder) / "run" / "predictors" / "bundle")
            for name, argv in _commands(bundle.resolve()).items():
                times: dict[str, list[float]] = {"before": [], "now": []}
                outputs: dict[str, set[str]] = {"before": set(), "now": set()}
                for _ in range(repeats):
                    for key, tree in (("before", before), ("now", REPO)):
                        elapsed, out = _time(tree, argv)
                        times[key].append(round(elapsed, 4))
                        outputs[key].add(out)
                rows.append(
                    {
                        "command": name,
                        "before_s": statistics.median(times["before"]),
                        "now_s": statistics.median(times["now"]),
                        "before_runs_s": times["before"],
                        "now_runs_s": times["now"],
                        "same_output": outputs["before"] == outputs["now"],
                    }
                )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(before)], cwd=REPO, check=False
            )
    goal = {name: next(r["now_s"] for r in rows if r["command"] == name) for name in GOAL_COMMANDS}
    return {
        "before": before_commit,
        "bundle": "made by the benchmark (tiny_cnn: ridge, ensemble, gbr; 300-config archive)"
        if made
        else str(bundle),
        "repeats": repeats,
        "rows": rows,
        "goal_s": GOAL_S,
        "goal_met": {name: seconds < GOAL_S for name, seconds in goal.items()},
    }


def markdown(report: dict[str, Any]) -> str:
    """The README table of a result file (``--json``)."""
    lines = [
        f"| command | before (`{report['before']}`) s | now s | now / before | same output |",
        "|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        name, b, n = row["command"], row["before_s"], row["now_s"]
        goal = ""
        if name in report["goal_met"]:
            met = "met" if report["goal_met"][name] else "**not met**"
            goal = f" (goal < {report['goal_s']:g} s: {met})"
        lines.append(
            f"| `{name}` | {b:.2f} | {n:.2f}{goal} | {n / b:.2f}× | "
            f"{'yes' if row['same_output'] else 'no'} |"
        )
    machine = report["machine"]
    lines.append("")
    lines.append(
        f"Median of {report['repeats']} cold runs each, commit `{report['commit'][:12]}`, "
        f"{report['date']}, {machine['cpus']} × {machine['cpu']}."
    )
    return "\n".join(lines)


def main() -> None:
    from benchmarks.provenance import provenance

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", required=True, help="baseline commit")
    parser.add_argument("--bundle", type=Path, help="a saved predictor bundle (default: made)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the result file here")
    args = parser.parse_args()
    report = {
        **provenance("benchmarks.cli_startup"),
        **measure(args.before, args.bundle, args.repeats),
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
