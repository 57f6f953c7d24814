"""Searchers on NAS-Bench-201 against exact Pareto fronts: HV ratio at 100 / 300 / 500 evaluations.

Objectives as in ``shared/data/README.md``: f1 = (100 - cifar10_test_acc) / 100 and
f2 = lat / max(lat of that device), both minimised, reference point (1.01, 1.01). The true front
and HV come from enumerating all 15,625 cells (checked against the README's table).

Methods: every registered searcher through ``run_search`` (store-backed: a config is evaluated
once), pymoo NSGA-II and Optuna NSGA-II run directly (library loop; every call counts), and a
predictor-in-the-loop variant (random forest on 100 measured random cells, pymoo-nsga2 on
predicted metrics for 500 predictions, then the predicted front measured for real).

Run from the repository root::

    python -m benchmarks.search_nb201 --seeds 10 --workers 2
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

BUDGETS = (100, 300, 500)
REF = (1.01, 1.01)
OURS = (
    "pymoo-nsga2",
    "pymoo-nsga3",
    "optuna-nsga2",
    "optuna-tpe",
    "optuna-gp",
    "surrogate",
    "random",
)
VARIANTS: dict[str, tuple[str, ...]] = {"surrogate-plain": (), "surrogate-paths": ("err",)}
"""Surrogate variants with path_features named explicitly, run only when named in ``--methods``:
``surrogate-plain`` is ``SurrogateSearcher(path_features=())``, the surrogate without the cell
path features for its error predictor; ``surrogate-paths`` is
``SurrogateSearcher(path_features=["err"])``, which is what the default ``"auto"`` picks here
(kept so that the commands that measured it before it was the default still run)."""
DIRECT = ("pymoo-nsga2-direct", "optuna-nsga2-direct")
PREDICTOR = "predictor+pymoo-nsga2"
N_PREDICTOR_TRAIN = 100


@dataclass(frozen=True)
class TableEvaluate:
    """Looks a config up in the NAS-Bench-201 table (normalised objectives)."""

    table: dict[str, tuple[float, float]]

    def __call__(self, config: object) -> dict[str, float]:
        err, lat = self.table[config.key]  # type: ignore[attr-defined]
        return {"err": err, "lat": lat}


def _device_data(device: str) -> tuple[list, np.ndarray, float]:
    from benchmarks.data import NB201_TRUE_HV, load_nb201
    from nas.pareto import hypervolume

    frame, configs = load_nb201()
    err = (100.0 - frame["cifar10_test_acc"].to_numpy()) / 100.0
    lat = frame[f"lat_{device}"].to_numpy()
    F = np.column_stack([err, lat / lat.max()])
    true_hv = hypervolume(F, REF)
    if abs(true_hv - NB201_TRUE_HV[device]) > 1e-4:
        raise RuntimeError(f"{device}: true HV {true_hv:.5f} != README {NB201_TRUE_HV[device]}")
    return configs, F, true_hv


def _curve(F_in_order: np.ndarray, true_hv: float, budgets: tuple[int, ...]) -> list[float]:
    """HV ratio after the first b evaluations for each budget b."""
    from nas.pareto import hypervolume

    return [hypervolume(F_in_order[:b], REF) / true_hv for b in budgets]


def _run_ours(
    name: str, configs: list, F: np.ndarray, true_hv: float, seed: int, budgets: tuple[int, ...]
) -> list[float]:
    import search_spaces
    from nas.search import (
        MetricEvaluator,
        ResultStore,
        SearchProblem,
        SurrogateSearcher,
        make_searcher,
        run_search,
    )

    table = {c.key: (float(f[0]), float(f[1])) for c, f in zip(configs, F, strict=True)}
    problem = SearchProblem.from_strings(
        search_spaces.get("nas_bench_201"), ["err:min", "lat:min"]
    )
    if name in VARIANTS:
        searcher = SurrogateSearcher(problem, seed=seed, path_features=VARIANTS[name])
    else:
        searcher = make_searcher(name, problem, seed=seed)
    result = run_search(
        searcher,
        MetricEvaluator(TableEvaluate(table), ("err", "lat")),
        ResultStore(),
        budget=max(budgets),
        reference_point=REF,
    )
    return _curve(result.F, true_hv, budgets)


def _run_pymoo_direct(
    configs: list, F: np.ndarray, true_hv: float, seed: int, budgets: tuple[int, ...]
) -> list[float]:
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize

    import search_spaces

    space = search_spaces.get("nas_bench_201")
    index = {c.key: i for i, c in enumerate(configs)}
    seen: list[np.ndarray] = []

    class Table(Problem):
        def __init__(self) -> None:
            super().__init__(n_var=6, n_obj=2, xl=0, xu=4, vtype=int)

        def _evaluate(self, X, out, *args, **kwargs):  # type: ignore[no-untyped-def]
            rows = F[[index[space.decode(x).key] for x in X]]
            seen.append(rows)
            out["F"] = rows

    algorithm = NSGA2(
        pop_size=20,
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
        mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )
    minimize(Table(), algorithm, ("n_eval", max(budgets)), seed=seed, verbose=False)
    return _curve(np.concatenate(seen)[: max(budgets)], true_hv, budgets)


def _run_optuna_direct(
    configs: list, F: np.ndarray, true_hv: float, seed: int, budgets: tuple[int, ...]
) -> list[float]:
    import optuna

    from search_spaces.nas_bench_201 import EDGES, OPERATIONS

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    index = {c.key: i for i, c in enumerate(configs)}
    from nas.subnet import SubnetConfig

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        cfg = SubnetConfig(
            tuple((f"edge{e}", trial.suggest_categorical(f"edge{e}", OPERATIONS)) for e in EDGES)
        )
        f = F[index[cfg.key]]
        return float(f[0]), float(f[1])

    study = optuna.create_study(
        directions=["minimize", "minimize"], sampler=optuna.samplers.NSGAIISampler(seed=seed)
    )
    study.optimize(objective, n_trials=max(budgets))
    return _curve(np.array([t.values for t in study.trials]), true_hv, budgets)


def _run_predictor(configs: list, F: np.ndarray, true_hv: float, seed: int) -> list[float]:
    """Fit on N measured random cells, search on predictions, measure the predicted front.

    Returns [HV ratio of measured (training + front) points, number of real evaluations].
    """
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.preprocessing import OneHotEncoder

    import search_spaces
    from nas.pareto import hypervolume
    from nas.search import (
        MetricEvaluator,
        ResultStore,
        SearchProblem,
        make_searcher,
        measure_front,
        run_search,
    )

    space = search_spaces.get("nas_bench_201")
    rng = np.random.default_rng(seed)
    train = rng.choice(len(configs), N_PREDICTOR_TRAIN, replace=False)
    enc = OneHotEncoder(categories=[list(d.options) for d in space.dims])
    X_all = np.array([[c[d.name] for d in space.dims] for c in configs], dtype=object)
    enc.fit(X_all)
    model = RandomForestRegressor(n_estimators=200, random_state=seed)
    model.fit(enc.transform(X_all[train]), F[train])
    predicted = model.predict(enc.transform(X_all))
    pred_table = {
        c.key: (float(p[0]), float(p[1])) for c, p in zip(configs, predicted, strict=True)
    }
    real_table = {c.key: (float(f[0]), float(f[1])) for c, f in zip(configs, F, strict=True)}
    problem = SearchProblem.from_strings(space, ["err:min", "lat:min"])
    result = run_search(
        make_searcher("pymoo-nsga2", problem, seed=seed),
        MetricEvaluator(TableEvaluate(pred_table), ("err", "lat"), source="predicted"),
        ResultStore(),
        budget=max(BUDGETS),
        reference_point=REF,
    )
    store = ResultStore()
    report = measure_front(
        result, MetricEvaluator(TableEvaluate(real_table), ("err", "lat")), store
    )
    measured = np.vstack([F[train], report[["err.measured", "lat.measured"]].to_numpy()])
    n_real = len({*train.tolist(), *[configs.index(c) for c in result.front_configs]})
    return [hypervolume(measured, REF) / true_hv, float(n_real)]


def _task(args: tuple[str, str, list[int], tuple[int, ...]]) -> list[dict[str, object]]:
    import torch
    from threadpoolctl import threadpool_limits

    # optuna-gp fits its GP with torch, surrogate its predictors with numpy BLAS: one thread
    # per worker, so that parallel workers do not oversubscribe the cores
    torch.set_num_threads(1)
    threadpool_limits(1)
    method, device, seeds, budgets = args
    configs, F, true_hv = _device_data(device)
    rows: list[dict[str, object]] = []
    for seed in seeds:
        t0 = time.perf_counter()
        if method == "pymoo-nsga2-direct":
            curve = _run_pymoo_direct(configs, F, true_hv, seed, budgets)
        elif method == "optuna-nsga2-direct":
            curve = _run_optuna_direct(configs, F, true_hv, seed, budgets)
        elif method == PREDICTOR:
            ratio, n_real = _run_predictor(configs, F, true_hv, seed)
            rows.append(
                {
                    "method": method,
                    "device": device,
                    "seed": seed,
                    "budget": int(n_real),
                    "hv_ratio": ratio,
                    "seconds": time.perf_counter() - t0,
                }
            )
            continue
        else:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            curve = _run_ours(method, configs, F, true_hv, seed, budgets)
        dt = time.perf_counter() - t0
        for budget, ratio in zip(budgets, curve, strict=True):
            rows.append(
                {
                    "method": method,
                    "device": device,
                    "seed": seed,
                    "budget": budget,
                    "hv_ratio": ratio,
                    "seconds": dt,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> pd.DataFrame:
    from benchmarks.data import NB201_DEVICES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds (from --seed0)")
    parser.add_argument("--seed0", type=int, default=100)
    parser.add_argument("--devices", nargs="*", default=list(NB201_DEVICES))
    parser.add_argument("--methods", nargs="*", default=[*OURS, *DIRECT, PREDICTOR])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--max-budget",
        type=int,
        choices=BUDGETS,
        default=max(BUDGETS),
        help="stop every run here (the goal summary needs 500)",
    )
    parser.add_argument("--out", default=None, help="CSV of every (method, device, seed, budget)")
    args = parser.parse_args(argv)
    seeds = list(range(args.seed0, args.seed0 + args.seeds))
    budgets = tuple(b for b in BUDGETS if b <= args.max_budget)
    tasks = [(m, d, seeds, budgets) for d in args.devices for m in args.methods]
    t0 = time.perf_counter()
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            chunks = list(pool.map(_task, tasks))
    else:
        chunks = [_task(t) for t in tasks]
    frame = pd.DataFrame([r for chunk in chunks for r in chunk])
    if args.out:
        frame.to_csv(args.out, index=False)
    _report(frame, seeds, time.perf_counter() - t0)
    return frame


def _report(frame: pd.DataFrame, seeds: list[int], seconds: float) -> None:
    pd.set_option("display.width", 200)
    grid = frame[frame.method != PREDICTOR]
    stats = grid.groupby(["device", "method", "budget"])["hv_ratio"].agg(["mean", "std"])
    cell = (
        (100 * stats["mean"]).map("{:.2f}".format)
        + " ± "
        + (100 * stats["std"]).map("{:.2f}".format)
    )
    print(f"HV(found) / HV(true) in %, mean ± sd over {len(seeds)} seeds {seeds[0]}..{seeds[-1]}")
    print(cell.unstack("budget").to_string())
    if ("random", 500) not in stats.reset_index().set_index(["method", "budget"]).index:
        print(f"\nwall time {seconds:.1f} s (no goal summary: it needs random search at 500)")
        return
    random500 = stats.xs(("random", 500), level=("method", "budget"))["mean"]
    print("\nRatio to random search's 500-evaluation HV (mean over seeds), per device:")
    summary = []
    for (device, method), g in grid.groupby(["device", "method"]):
        at = g.groupby("budget")["hv_ratio"].mean()
        summary.append(
            {
                "device": device,
                "method": method,
                "hv@100 / random hv@500": at[100] / random500[device],
                "hv@500 %": 100 * at[500],
                "goal 99.5% @500": bool(at[500] >= 0.995),
                "beats random@500 by 100": bool(at[100] > random500[device]),
            }
        )
    print(pd.DataFrame(summary).to_string(index=False, float_format="{:.4f}".format))
    pred = frame[frame.method == PREDICTOR]
    if len(pred):
        agg = pred.groupby("device").agg(
            hv_mean=("hv_ratio", "mean"), hv_sd=("hv_ratio", "std"), real_evals=("budget", "mean")
        )
        print(
            f"\nPredictor-in-the-loop ({N_PREDICTOR_TRAIN} measured random cells + measured "
            "predicted front; 500 predicted evaluations): HV ratio of everything measured"
        )
        print(agg.to_string(float_format="{:.4f}".format))
    print(f"\nwall time {seconds:.1f} s")


if __name__ == "__main__":
    main()
