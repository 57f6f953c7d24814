"""CLI start-up: wall time of `nas --help`, `nas validate`, `nas predict`, two trees side by side.

Each command runs in a fresh interpreter (what a user waits for), alternating between the trees
so load on the machine hits both alike; the table gives the median of ``--repeats`` runs and the
ratio. The baseline tree is a git worktree of ``--before`` (a commit), run with ``PYTHONPATH``.

    python -m benchmarks.cli_startup --before 04e6744 --bundle runs/default/predictors/bundle
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _commands(bundle: Path) -> dict[str, list[str]]:
    import json

    from predictors.bundle import Predictors

    config = Predictors.load(bundle).space.smallest().to_dict()
    return {
        "nas --help": ["--help"],
        "nas validate experiments/default.toml": ["validate", "experiments/default.toml"],
        "nas predict (one config)": [
            "predict",
            "--predictors",
            str(bundle),
            "--config",
            json.dumps(config),
        ],
    }


def _time(tree: Path, argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "nas", *argv],
        cwd=tree,  # `python -m` puts the working directory first on sys.path
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{tree}: nas {' '.join(argv)} failed: {done.stderr[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", required=True, help="baseline commit")
    parser.add_argument("--bundle", type=Path, required=True, help="a saved predictor bundle")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        before = Path(folder) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(before), args.before],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        try:
            rows = []
            for name, argv in _commands(args.bundle.resolve()).items():
                times: dict[str, list[float]] = {"before": [], "now": []}
                for _ in range(args.repeats):
                    times["before"].append(_time(before, argv))
                    times["now"].append(_time(REPO, argv))
                b, n = (statistics.median(times[k]) for k in ("before", "now"))
                rows.append((name, b, n))
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(before)], cwd=REPO, check=False
            )
    print(f"| command | before ({args.before}) s | now s | now / before |")
    print("|---|---|---|---|")
    for name, b, n in rows:
        print(f"| `{name}` | {b:.2f} | {n:.2f} | {n / b:.2f}× |")


if __name__ == "__main__":
    main()
