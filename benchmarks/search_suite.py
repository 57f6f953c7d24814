"""Search problem suite on NAS-Bench-201: our searchers and peers against exact Pareto fronts.

Problems (all 15,625 cells enumerated, so every true front and HV is exact):

- error × latency: CIFAR-10, CIFAR-100 and ImageNet16-120 test error × each of the six shared
  devices' latency (18 problems);
- three objectives: error × two devices' latencies, and error × latency × parameters
  (parameters counted analytically from the cell: NAS-Bench-201's network with 16/32/64
  channels and 5 cells per stage; conv weights and BN affine of the searched cells, plus the
  fixed stem, reduction blocks and classifier: 0.073-1.53 M on CIFAR-10, the published range);
- latency-constrained: error × latency with latency ≤ the median of the device over the space.

Objectives are normalised as in ``shared/data/README.md`` (error in [0, 1], each cost divided by
its maximum over the space), all minimised, reference point 1.01 in each; the HV ratio is
HV(found) / HV(true). For a constrained problem both sides count feasible points only.

Methods: ours through ``run_search`` (a config is evaluated once: budget = distinct configs);
peers through their own loops (``benchmarks/peers``; every evaluation they ask for counts,
repeats included). Peers know no constraints: their constrained numbers are the feasible part
of their unconstrained runs on the same objectives.

Run from the repository root, in the peers' environment (without it the peers are skipped)::

    nice -n 10 benchmarks/peers/.venv/bin/python -m benchmarks.search_suite --out /tmp/suite.csv
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

BUDGETS = (50, 100, 200, 300, 500)
TARGETS = (0.99, 0.995)
REF = 1.01
DATASETS = {"c10": "cifar10", "c100": "cifar100", "in16": "imagenet16_120"}
CLASSES = {"c10": 10, "c100": 100, "in16": 120}
OURS = ("portfolio", "pymoo-nsga2", "random")
LINAS_PROBLEMS = (
    "c10:raspi4",
    "c10:fpga",
    "c100:pixel3",
    "c100:gold_6226",
    "in16:gold_6226",
    "in16:raspi4",
)
"""Where LINAS runs (its inner loop costs about a CPU-minute per run to 300 evaluations)."""
PEERS = ("dynast-linas", "dynast-evolutionary", "synetune-morea", "synetune-random")
"""Peer methods; ``synetune-morea`` is Syne Tune's multi-objective regularized evolution."""
# The searchers' defaults are chosen on benchmarks/search_tuning.py's problems and seeds 0-9,
# none of which this suite reports.


@dataclass(frozen=True)
class Problem:
    """Objective columns (``err:<dataset>``, ``lat:<device>``, ``params:<dataset>``), a bound."""

    name: str
    objectives: tuple[str, ...]
    constrained: bool = False
    peers: tuple[str, ...] = field(default=PEERS)

    @property
    def base(self) -> str:
        """The unconstrained problem with the same objectives."""
        return "|".join(self.objectives)


def problems() -> list[Problem]:
    """The suite: 18 two-objective, 3 three-objective and 3 latency-constrained problems."""
    from benchmarks.data import NB201_DEVICES

    out = [
        Problem(f"{d}:{dev}", (f"err:{d}", f"lat:{dev}"))
        for d in DATASETS
        for dev in NB201_DEVICES
    ]
    out += [
        Problem("c10:raspi4+titan_rtx_1", ("err:c10", "lat:raspi4", "lat:titan_rtx_1")),
        Problem("in16:pixel3+gold_6226", ("err:in16", "lat:pixel3", "lat:gold_6226")),
        Problem("c100:raspi4+params", ("err:c100", "lat:raspi4", "params:c100")),
    ]
    out += [
        Problem(f"{p}<=median", ("err:" + p.split(":")[0], "lat:" + p.split(":")[1]), True, ())
        for p in ("c10:raspi4", "c100:pixel3", "in16:gold_6226")
    ]
    return out


# the table ---------------------------------------------------------------------------------

_OP_PARAMS = {
    "none": 0,
    "skip_connect": 0,
    "avg_pool_3x3": 0,
    "nor_conv_1x1": 1,
    "nor_conv_3x3": 9,
}


def nb201_params(configs: list, n_classes: int) -> np.ndarray:
    """Parameters of NAS-Bench-201's network per cell (C = 16, 32, 64; 5 cells per stage).

    A convolution edge is ReLU-Conv-BN: k²·C² weights and 2·C BN parameters; pooling, skip
    and none have none. Fixed: the stem (3×3 conv 3→16 + BN), the two residual reduction blocks,
    the last BN and the classifier.
    """
    stem = 3 * 16 * 9 + 2 * 16

    def reduction(c_in: int, c_out: int) -> int:
        return 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out + c_in * c_out

    fixed = stem + reduction(16, 32) + reduction(32, 64) + 2 * 64 + 64 * n_classes + n_classes
    out = np.empty(len(configs))
    for i, cfg in enumerate(configs):
        total = fixed
        for _, op in cfg.items:
            k2 = _OP_PARAMS[str(op)]
            if k2:
                total += 5 * sum(k2 * c * c + 2 * c for c in (16, 32, 64))
        out[i] = total
    return out


@dataclass
class Table:
    """Every cell: option-index rows, canonical keys and the objective columns."""

    X: np.ndarray
    keys: list[str]
    columns: dict[str, np.ndarray]

    @classmethod
    def load(cls) -> Table:
        import search_spaces
        from benchmarks.data import NB201_DEVICES, load_nb201

        frame, configs = load_nb201()
        space = search_spaces.get("nas_bench_201")
        X = space.encode_many(configs).astype(np.int64)
        columns: dict[str, np.ndarray] = {}
        for short, name in DATASETS.items():
            columns[f"err:{short}"] = (100.0 - frame[f"{name}_test_acc"].to_numpy()) / 100.0
            params = nb201_params(configs, CLASSES[short])
            columns[f"params:{short}"] = params / params.max()
        for dev in NB201_DEVICES:
            lat = frame[f"lat_{dev}"].to_numpy()
            columns[f"lat:{dev}"] = lat / lat.max()
        return cls(X, [c.key for c in configs], columns)

    def F(self, problem: Problem) -> np.ndarray:
        return np.column_stack([self.columns[c] for c in problem.objectives])

    def feasible(self, problem: Problem) -> np.ndarray:
        """Rows that satisfy the problem's latency bound (all rows when unconstrained)."""
        if not problem.constrained:
            return np.ones(len(self.X), dtype=bool)
        lat = self.columns[problem.objectives[1]]
        return lat <= np.median(lat)

    def bound(self, problem: Problem) -> float:
        return float(np.median(self.columns[problem.objectives[1]]))


def true_hv(F: np.ndarray, feasible: np.ndarray) -> tuple[float, int]:
    from nas.pareto import hypervolume, non_dominated

    Ff = F[feasible]
    front = Ff[non_dominated(Ff)]
    return hypervolume(front, np.full(F.shape[1], REF)), len(front)


def curve(F_order: np.ndarray, ok: np.ndarray, hv_true: float) -> np.ndarray:
    """HV ratio after each evaluation (feasible points only); recomputed only on front changes."""
    from nas.pareto import hypervolume, non_dominated

    ref = np.full(F_order.shape[1], REF)
    out = np.zeros(len(F_order))
    front = np.zeros((0, F_order.shape[1]))
    value = 0.0
    for i, (f, good) in enumerate(zip(F_order, ok, strict=True)):
        if good and not (len(front) and np.all(front <= f, axis=1).any()):
            both = np.vstack([front, f])
            front = both[non_dominated(both)]
            value = hypervolume(front, ref) / hv_true
        out[i] = value
    return out


# runs --------------------------------------------------------------------------------------


class TimedSearcher:
    """A searcher whose asks are timed (CPU seconds), with the number of configs told before."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.asks: list[tuple[int, float]] = []
        self._told = 0

    @property
    def problem(self):  # type: ignore[no-untyped-def]
        return self.inner.problem  # type: ignore[attr-defined]

    @property
    def done(self) -> bool:
        return bool(self.inner.done)  # type: ignore[attr-defined]

    def ask(self):  # type: ignore[no-untyped-def]
        t0 = time.process_time()
        out = self.inner.ask()  # type: ignore[attr-defined]
        self.asks.append((self._told, time.process_time() - t0))
        return out

    def tell(self, configs, objectives, constraints=None):  # type: ignore[no-untyped-def]
        self._told += len(configs)
        self.inner.tell(configs, objectives, constraints)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Lookup:
    index: dict[str, int]
    F: np.ndarray
    names: tuple[str, ...]

    def __call__(self, config: object) -> dict[str, float]:
        row = self.F[self.index[config.key]]  # type: ignore[attr-defined]
        return {n: float(v) for n, v in zip(self.names, row, strict=True)}


def run_ours(
    method: str,
    table: Table,
    problem: Problem,
    seed: int,
    budget: int,
    options: dict[str, object] | None = None,
) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """Objective rows in evaluation order and the timed asks of one of our searchers."""
    import search_spaces
    from nas.search import MetricEvaluator, ResultStore, SearchProblem, make_searcher, run_search

    F = table.F(problem)
    names = tuple(f"f{j}" for j in range(F.shape[1]))
    constraints = [f"f1 <= {table.bound(problem)!r}"] if problem.constrained else []
    sp = SearchProblem.from_strings(
        search_spaces.get("nas_bench_201"), [f"{n}:min" for n in names], constraints
    )
    searcher = TimedSearcher(make_searcher(method, sp, seed=seed, options=options))
    index = {k: i for i, k in enumerate(table.keys)}
    result = run_search(
        searcher,  # type: ignore[arg-type]
        MetricEvaluator(_Lookup(index, F, names), names),
        ResultStore(),
        budget=budget,
        reference_point=[REF] * F.shape[1],
    )
    return result.F, searcher.asks


def run_peer(method: str, table: Table, problem: Problem, seed: int, budget: int) -> np.ndarray:
    from benchmarks.peers import dynast_driver, synetune_driver

    lib, _, name = method.partition("-")
    driver = dynast_driver if lib == "dynast" else synetune_driver
    return driver.run(name, table.X, table.F(problem), [5] * table.X.shape[1], seed, budget)


def peers_available() -> dict[str, str]:
    """Peer library versions, for those importable here."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("dynast", "syne-tune"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def _rows(
    method: str,
    problem: Problem,
    seed: int,
    F_order: np.ndarray,
    table: Table,
    seconds: float,
    asks: list[tuple[int, float]] | None = None,
) -> list[dict[str, object]]:
    feasible_all = table.feasible(problem)
    hv_true, _ = true_hv(table.F(problem), feasible_all)
    ok = np.ones(len(F_order), dtype=bool)
    if problem.constrained:
        ok = F_order[:, 1] <= table.bound(problem)
    ratios = curve(F_order, ok, hv_true)
    out = []
    for budget in BUDGETS:
        if budget > len(F_order):
            continue
        row: dict[str, object] = {
            "method": method,
            "problem": problem.name,
            "seed": seed,
            "budget": budget,
            "hv_ratio": float(ratios[budget - 1]),
            "seconds": seconds,
        }
        if problem.constrained:  # feasible share of the returned (non-dominated) front
            from nas.pareto import non_dominated

            seen = F_order[:budget]
            front = non_dominated(seen)
            row["front_feasible_share"] = float(ok[:budget][front].mean())
            row["front_any_feasible"] = bool(ok[:budget].any())
        for target in TARGETS:
            hit = np.flatnonzero(ratios[:budget] >= target)
            row[f"evals_to_{target}"] = int(hit[0] + 1) if len(hit) else np.nan
        if asks:
            near = [t for n, t in asks if abs(n - budget) <= 25 and n < budget]
            row["ask_cpu_s"] = float(np.mean(near)) if near else np.nan
        out.append(row)
    return out


def _task(args: tuple[str, str, list[int], int]) -> list[dict[str, object]]:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    method, problem_name, seeds, budget = args
    table = _TABLE if _TABLE is not None else Table.load()
    problem = next(p for p in problems() if p.name == problem_name)
    rows: list[dict[str, object]] = []
    for seed in seeds:
        t0 = time.process_time()
        if method in PEERS:
            F_order = run_peer(method, table, problem, seed, budget)
            rows += _rows(method, problem, seed, F_order, table, time.process_time() - t0)
            for constrained in (p for p in problems() if p.constrained and p.base == problem.base):
                rows += _rows(method, constrained, seed, F_order, table, 0.0)
        else:
            F_order, asks = run_ours(method, table, problem, seed, budget)
            rows += _rows(method, problem, seed, F_order, table, time.process_time() - t0, asks)
    return rows


_TABLE: Table | None = None


def main(argv: list[str] | None = None) -> pd.DataFrame:
    global _TABLE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds of ours (from --seed0)")
    parser.add_argument("--peer-seeds", type=int, default=10, help="seeds of the cheap peers")
    parser.add_argument("--other-seeds", type=int, default=10, help="seeds of pymoo-nsga2")
    parser.add_argument("--linas-seeds", type=int, default=10)
    parser.add_argument("--linas-budget", type=int, default=300, help="LINAS: ~1 CPU-min per 300")
    parser.add_argument("--linas-problems", nargs="*", default=list(LINAS_PROBLEMS))
    parser.add_argument("--seed0", type=int, default=100)
    parser.add_argument("--methods", nargs="*", default=[*OURS, *PEERS])
    parser.add_argument("--problems", nargs="*", default=None)
    parser.add_argument("--out", default=None, help="CSV of every (method, problem, seed, budget)")
    parser.add_argument(
        "--resume", action="store_true", help="keep the (method, problem) pairs already in --out"
    )
    parser.add_argument("--report", default=None, help="only print the report of this CSV")
    args = parser.parse_args(argv)
    if args.report:
        frame = pd.read_csv(args.report)
        report(frame)
        return frame
    if os.environ.get("PYTHONHASHSEED") != "0":  # DyNAS-T orders its objectives through a set
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, "-m", "benchmarks.search_suite", *sys.argv[1:]])
    versions = peers_available()
    methods = [m for m in args.methods if m not in PEERS or _peer_package(m) in versions]
    skipped = sorted(set(args.methods) - set(methods))
    if skipped:
        print(f"peers not installed here, skipped: {skipped}", flush=True)
    print(f"peer versions: {versions}", flush=True)
    _TABLE = Table.load()
    chosen = [p for p in problems() if args.problems is None or p.name in args.problems]
    seeds = list(range(args.seed0, args.seed0 + args.seeds))
    peer_seeds = seeds[: args.peer_seeds]
    tasks: list[tuple[str, str, list[int], int]] = []
    order = ["portfolio", "random", "dynast-linas", "synetune-morea", "dynast-evolutionary"]
    methods.sort(key=lambda m: order.index(m) if m in order else len(order))
    for m in methods:
        for p in chosen:
            if m in ("portfolio", "random"):
                tasks.append((m, p.name, seeds, max(BUDGETS)))
            elif m in OURS:
                tasks.append((m, p.name, seeds[: args.other_seeds], max(BUDGETS)))
            elif m == "dynast-linas":
                if p.name in args.linas_problems and not p.constrained:
                    tasks.append((m, p.name, seeds[: args.linas_seeds], args.linas_budget))
            elif not p.constrained:
                tasks.append((m, p.name, peer_seeds, max(BUDGETS)))
    t0 = time.perf_counter()
    rows: list[dict[str, object]] = []
    done: set[tuple[str, str]] = set()
    if args.resume and args.out and Path(args.out).exists():  # keep finished (method, problem)
        previous = pd.read_csv(args.out)
        rows = previous.to_dict("records")
        done = set(zip(previous.method, previous.problem, strict=True))
    for i, task in enumerate(tasks):
        if (task[0], task[1]) in done:
            continue
        rows += _task(task)
        frame = pd.DataFrame(rows)
        if args.out:
            frame.to_csv(args.out, index=False)
        print(
            f"[{i + 1}/{len(tasks)}] {task[0]} {task[1]} {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    frame = pd.DataFrame(rows)
    report(frame)
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")
    return frame


def _peer_package(method: str) -> str:
    return "dynast" if method.startswith("dynast") else "syne-tune"


def report(frame: pd.DataFrame) -> None:
    """HV ratio tables, evaluations to 99 / 99.5 %, across-problem summary, goals."""
    pd.set_option("display.width", 250)
    pd.set_option("display.max_rows", 500)
    stats = frame.groupby(["problem", "method", "budget"])["hv_ratio"].agg(
        ["mean", "std", "count"]
    )
    cell = (
        (100 * stats["mean"]).map("{:.2f}".format)
        + " ± "
        + (100 * stats["std"].fillna(0)).map("{:.2f}".format)
        + " ("
        + stats["count"].astype(int).astype(str)
        + ")"
    )
    print("HV(found) / HV(true) in %, mean ± sd (seeds)")
    print(cell.unstack("budget").to_string())
    compact = (100 * stats["mean"]).unstack("method")
    for budget in sorted({100, 300, 500} & set(frame.budget)):
        print(f"\nMean HV ratio in % at {budget} evaluations (problem × method)")
        print(compact.xs(budget, level="budget").to_string(float_format="{:.2f}".format))
    at500 = frame[frame.budget == frame.groupby(["problem", "method"])["budget"].transform("max")]
    for target in TARGETS:
        col = f"evals_to_{target}"
        med = at500.groupby(["problem", "method"])[col].agg(
            median="median", reached=lambda s: f"{int(s.notna().sum())}/{len(s)}"
        )
        print(
            f"\nEvaluations to {100 * target:g} % of the true HV (median over seeds; reached/runs)"
        )
        print(med.unstack("method").to_string())
    if "front_feasible_share" in frame:
        cons = frame[frame.front_feasible_share.notna()]
        agg = cons.groupby(["problem", "method", "budget"]).agg(
            hv=("hv_ratio", "mean"),
            front_feasible=("front_feasible_share", "mean"),
            any_feasible=("front_any_feasible", "mean"),
        )
        print("\nConstrained problems: feasible HV ratio, feasible share of the front")
        print(agg.to_string(float_format="{:.4f}".format))
    print("\nAcross problems: mean rank of the mean HV (1 = best) and worst problem, per budget")
    means = stats["mean"].reset_index()
    for budget in (100, 300, 500):
        m = means[means.budget == budget].pivot(index="problem", columns="method", values="mean")
        m = m.dropna(axis=1, thresh=max(1, len(m) // 2))
        full = m.dropna()
        ranks = full.rank(axis=1, ascending=False).mean()
        worst = m.min()
        where = m.idxmin()
        summary = pd.DataFrame(
            {
                "mean_rank": ranks,
                "worst_%": 100 * worst,
                "worst_problem": where,
                "problems": m.count(),
            }
        )
        print(f"budget {budget} (ranks over the {len(full)} problems every listed method ran)")
        print(summary.sort_values("mean_rank").to_string(float_format="{:.2f}".format))
    if "ask_cpu_s" in frame:
        ask = (
            frame[frame.method == "portfolio"].groupby("budget")["ask_cpu_s"].agg(["mean", "max"])
        )
        print("\nportfolio CPU-s per ask near each budget (mean and max over runs)")
        print(ask.to_string(float_format="{:.3f}".format))
    _goals(frame, stats)


def _goals(frame: pd.DataFrame, stats: pd.DataFrame) -> None:
    mean = stats["mean"]
    print("\nGoals for portfolio, per problem")
    out = []
    for problem in sorted(frame.problem.unique()):

        def get(method: str, budget: int, problem: str = problem) -> float:
            return float(mean.get((problem, method, budget), np.nan))

        row = {
            "problem": problem,
            "hv@500 %": 100 * get("portfolio", 500),
            ">=99.5@500": get("portfolio", 500) >= 0.995,
            "hv@100 / random@500": get("portfolio", 100) / get("random", 500),
        }
        for budget in (100, 300):
            peers = [get(p, budget) for p in PEERS if not np.isnan(get(p, budget))]
            best = max(peers) if peers else np.nan
            row[f"vs best peer@{budget} pp"] = 100 * (get("portfolio", budget) - best)
        out.append(row)
    print(pd.DataFrame(out).to_string(index=False, float_format="{:.4f}".format))


if __name__ == "__main__":
    main()
