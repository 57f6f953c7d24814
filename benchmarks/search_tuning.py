"""Tuning problems for the searchers, kept apart from the reported suite.

The default searcher's settings are chosen here and reported in ``benchmarks/search_suite.py``;
the two never share a problem or a seed. The problems are NAS-Bench-201 error (CIFAR-10,
CIFAR-100, ImageNet16-120) × the latency of devices that are *not* in the suite: HELP's
meta-training devices in ``latency_transfer/nb201_latency.csv`` (same cells, same order), plus
one three-objective and one latency-constrained problem on them. Seeds 0-9; the suite reports
seeds 100+.

    python -m benchmarks.search_tuning --seeds 3 --options '{"model": "gp"}'

prints the mean HV ratio at 100 / 300 / 500 evaluations per problem and over all of them.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from benchmarks.search_suite import DATASETS, Problem, Table, curve, run_ours, true_hv

TUNING_DEVICES = ("silver_4114", "titanx_256", "1080ti_1", "samsung_s7")
"""HELP's meta-training devices, none of them among the suite's six."""
BUDGETS = (100, 300, 500)


def tuning_problems() -> list[Problem]:
    out = [
        Problem(f"{d}:{dev}", (f"err:{d}", f"lat:{dev}"), peers=())
        for d in DATASETS
        for dev in TUNING_DEVICES
    ]
    out.append(
        Problem(
            "c100:silver_4114+1080ti_1", ("err:c100", "lat:silver_4114", "lat:1080ti_1"), peers=()
        )
    )
    out.append(Problem("in16:titanx_256<=median", ("err:in16", "lat:titanx_256"), True, ()))
    return out


def tuning_table() -> Table:
    """The suite's table plus the tuning devices' latency (each divided by its maximum)."""
    from benchmarks.data import SHARED_DATA

    table = Table.load()
    frame = pd.read_csv(SHARED_DATA / "latency_transfer" / "nb201_latency.csv")
    for dev in TUNING_DEVICES:
        lat = frame[f"lat_{dev}"].to_numpy(float)
        table.columns[f"lat:{dev}"] = lat / lat.max()
    return table


def run(method: str, options: dict, table: Table, problem: Problem, seed: int) -> np.ndarray:
    """HV ratio after each evaluation of one run."""
    F, _ = run_ours(method, table, problem, seed, max(BUDGETS), options)
    hv, _ = true_hv(table.F(problem), table.feasible(problem))
    ok = F[:, 1] <= table.bound(problem) if problem.constrained else np.ones(len(F), bool)
    return curve(F, ok, hv)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="portfolio")
    parser.add_argument("--options", default="{}", help="searcher options, JSON")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--problems", nargs="*", default=None)
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    options = json.loads(args.options)
    table = tuning_table()
    rows = []
    t0 = time.process_time()
    for problem in tuning_problems():
        if args.problems and problem.name not in args.problems:
            continue
        for seed in range(args.seeds):
            ratios = run(args.method, options, table, problem, seed)
            for b in BUDGETS:
                rows.append(
                    {
                        "problem": problem.name,
                        "seed": seed,
                        "budget": b,
                        "hv": 100 * ratios[min(b, len(ratios)) - 1],
                    }
                )
    frame = pd.DataFrame(rows)
    table_ = frame.groupby(["problem", "budget"]).hv.mean().unstack("budget")
    pd.set_option("display.width", 200)
    print(f"{args.method} {options}: mean HV ratio in % ({args.seeds} seeds)")
    print(table_.to_string(float_format="{:.2f}".format))
    print(
        "mean",
        " ".join(f"{v:.3f}" for v in table_.mean()),
        "min",
        " ".join(f"{v:.2f}" for v in table_.min()),
    )
    print(f"CPU {time.process_time() - t0:.0f} s")
    return frame


if __name__ == "__main__":
    main()
