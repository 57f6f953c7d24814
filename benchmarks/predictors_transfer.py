"""Few-shot latency transfer to a left-out device, next to per-device fitting and a MACs proxy.

For each space with a table in ``../shared/data/latency_transfer`` (NAS-Bench-201, FBNet, OFA
MobileNetV3), every device is left out in turn: the bank is the other devices, and the left-out
device is fitted from ``n`` of its measurements (``predictors.transfer.few_shot.fit_transfer``),
scored by
Spearman ρ and Kendall τ-b on **all the other** architectures of the table, mean ± sd over 5
draws. Two ways of choosing the ``n`` architectures: ``refs`` (``DeviceBank.reference_rows``,
seed = draw) and ``random`` (``default_rng(SeedSequence([draw, n]))``).

Baselines in the same run, on the same held-out architectures:

- ``ridge``: per-device ridge on the space's default features (``ordinal``: one-hot operations
  for NB201, with its cell features, and FBNet; scaled kernel, expand, depth and resolution for
  OFA),
  fitted on the same ``n`` architectures (``random`` and ``refs`` draws), penalty by efficient
  leave-one-out (``RidgeCV``);
- ``proxy``: FLOPs of the NB201 cell (9 per 3x3 conv, 1 per 1x1) or analytic MACs of the OFA
  blocks (``search_spaces.ofa_mbv3_table.block_macs``), no fitting; none for FBNet;
- ``best@900``: the better of ``ridge`` (grid search) and ``gbr`` trained on 900 random
  architectures of the device itself (one draw; the better kind picked on the test set, so an
  optimistic reference).

Run: ``python -m benchmarks.predictors_transfer`` (``--quick``: n = 10, 2 draws, 3 devices each).
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau, spearmanr
from sklearn.linear_model import RidgeCV
from threadpoolctl import threadpool_limits

from benchmarks.predictors_nb201 import flops_proxy
from benchmarks.transfer_data import TABLES, load_bank, missing_reason
from predictors.features import make_features
from predictors.models import make_predictor, search_predictor
from predictors.transfer.device_bank import DeviceBank
from predictors.transfer.few_shot import fit_transfer
from search_spaces.ofa_mbv3_table import block_macs

SIZES = (5, 10, 20, 50)
DRAWS = 5
BEST_N = 900
RIDGE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0)
GOALS = {"nas_bench_201": 0.95, "fbnet": 0.93, "ofa_mbv3_table": 0.93}
"""Goal on the mean Spearman ρ over the left-out devices at n = 10."""


@dataclass
class Scores:
    rho: list[float]
    tau: list[float]

    def add(self, y: np.ndarray, pred: np.ndarray) -> None:
        self.rho.append(float(spearmanr(y, pred).statistic))
        self.tau.append(float(kendalltau(y, pred).statistic))


def _features(bank: DeviceBank) -> np.ndarray:
    """The project's default features (ordinal: OFA's sizes scaled, operations one-hot)."""
    return make_features(bank.space, encoding="ordinal").fit_transform(bank.X)


def _proxy(bank: DeviceBank) -> np.ndarray | None:
    if bank.space.name == "nas_bench_201":
        return flops_proxy(bank.X, bank.space.dims[0].options)
    if bank.space.name == "ofa_mbv3_table":
        return np.array([block_macs(c).sum() for c in bank.configs()])
    return None


def _ridge(F: np.ndarray, y: np.ndarray, train: np.ndarray) -> np.ndarray:
    model = RidgeCV(alphas=RIDGE_ALPHAS).fit(F[train], y[train])
    return model.predict(F)


def _best_at(bank: DeviceBank, y: np.ndarray, n: int) -> float:
    rng = np.random.default_rng(np.random.SeedSequence([0, n]))
    perm = rng.permutation(len(y))
    train, test = perm[:n], perm[n:]
    X = bank.X
    ridge = search_predictor(bank.space, X[train], y[train], kind="ridge").best_estimator_
    gbr = make_predictor(bank.space, kind="gbr").fit(X[train], y[train])
    return max(float(spearmanr(y[test], m.predict(X[test])).statistic) for m in (ridge, gbr))


def run_space(name: str, sizes: tuple[int, ...], draws: int, devices: int | None) -> list[dict]:
    full = load_bank(name)
    configs = full.configs()
    F = _features(full)
    proxy = _proxy(full)
    rows = []
    for j, device in enumerate(full.devices[:devices]):
        start = time.perf_counter()
        bank = full.without(device)
        y = full.latency[:, j]
        best = _best_at(full, y, BEST_N) if len(y) > BEST_N else float("nan")
        proxy_rho = float(spearmanr(y, proxy).statistic) if proxy is not None else float("nan")
        for n in sizes:
            scores = {k: Scores([], []) for k in ("refs", "random", "ridge_refs", "ridge_random")}
            for draw in range(draws):
                picks = {
                    "refs": bank.reference_rows(n, seed=draw),
                    "random": np.random.default_rng(np.random.SeedSequence([draw, n])).permutation(
                        len(y)
                    )[:n],
                }
                for how, train in picks.items():
                    test = np.ones(len(y), dtype=bool)
                    test[train] = False
                    model = fit_transfer(
                        bank, [(configs[i], y[i]) for i in train], target=device, quality=False
                    )
                    representation = model.representation  # one per bank and n
                    scores[how].add(y[test], model.predict_encoded(full.X[test]))
                    scores[f"ridge_{how}"].add(y[test], _ridge(F, y, train)[test])
            row = {
                "space": name,
                "device": device,
                "n": n,
                "proxy": proxy_rho,
                "best900": best,
                "representation": representation,
            }
            for key, s in scores.items():
                row[f"{key}_rho"] = float(np.mean(s.rho))
                row[f"{key}_rho_sd"] = float(np.std(s.rho))
                row[f"{key}_tau"] = float(np.mean(s.tau))
                row[f"{key}_tau_sd"] = float(np.std(s.tau))
            rows.append(row)
        print(_device_table([r for r in rows if r["device"] == device]), flush=True)
        print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    return rows


def _pm(mean: float, sd: float) -> str:
    return f"{mean:.3f}±{sd:.3f}"


def _device_table(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        lines.append(
            f"{r['space']:<15}{r['device']:<16}{r['n']:>4}  "
            f"{_pm(r['refs_rho'], r['refs_rho_sd']):>12} "
            f"{_pm(r['refs_tau'], r['refs_tau_sd']):>12}"
            f"  {_pm(r['random_rho'], r['random_rho_sd']):>12}"
            f"  {_pm(r['ridge_refs_rho'], r['ridge_refs_rho_sd']):>12}"
            f"  {_pm(r['ridge_random_rho'], r['ridge_random_rho_sd']):>12}"
            f"  {r['proxy']:>6.3f}  {r['best900']:>8.3f}  {r['representation']}"
        )
    return "\n".join(lines)


HEADER = (
    f"{'space':<15}{'device':<16}{'n':>4}  {'transfer ρ':>12} {'transfer τ':>12}  "
    f"{'random ρ':>12}  {'ridge(refs)ρ':>12}  {'ridge(rand)ρ':>12}  {'proxyρ':>6}  "
    f"{'best@900':>8}  representation"
)


def summary(rows: list[dict]) -> str:
    """Mean over left-out devices per space and n, with the goal check at n = 10."""
    lines = [
        f"{'space':<15}{'n':>4}{'transfer ρ':>12}{'transfer τ':>12}{'random ρ':>10}"
        f"{'ridge(refs)':>12}{'ridge(rand)':>12}{'proxy':>8}{'best@900':>10}"
        f"{'min Δ vs ridge':>16}",
    ]
    lines.append("-" * len(lines[0]))
    for space in dict.fromkeys(r["space"] for r in rows):
        for n in sorted({r["n"] for r in rows if r["space"] == space}):
            sub = [r for r in rows if r["space"] == space and r["n"] == n]

            def mean(key: str, sub: list[dict] = sub) -> float:
                values = [r[key] for r in sub]
                return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

            worst = min(
                r["refs_rho"] - max(r["ridge_refs_rho"], r["ridge_random_rho"]) for r in sub
            )
            lines.append(
                f"{space:<15}{n:>4}{mean('refs_rho'):>12.4f}{mean('refs_tau'):>12.4f}"
                f"{mean('random_rho'):>10.4f}{mean('ridge_refs_rho'):>12.4f}"
                f"{mean('ridge_random_rho'):>12.4f}{mean('proxy'):>8.4f}{mean('best900'):>10.4f}"
                f"{worst:>+16.4f}"
            )
    lines.append("")
    worse = [
        f"{r['space']} {r['device']} n={r['n']}: "
        f"{r['refs_rho'] - max(r['ridge_refs_rho'], r['ridge_random_rho']):+.4f}"
        for r in rows
        if r["refs_rho"] < max(r["ridge_refs_rho"], r["ridge_random_rho"])
    ]
    lines.append(f"transfer ρ below per-device ridge ρ (same n): {len(worse)} of {len(rows)} rows")
    lines += [f"  {w}" for w in worse]
    lines.append("")
    lines.append("representation chosen (left-out devices per choice):")
    for space in dict.fromkeys(r["space"] for r in rows):
        for n in sorted({r["n"] for r in rows if r["space"] == space}):
            chosen = [r["representation"] for r in rows if r["space"] == space and r["n"] == n]
            counts = ", ".join(f"{c} {chosen.count(c)}" for c in sorted(set(chosen)))
            lines.append(f"  {space} n={n}: {counts}")
    lines.append("")
    for space, goal in GOALS.items():
        sub = [r for r in rows if r["space"] == space and r["n"] == 10]
        if not sub:
            continue
        rho = float(np.mean([r["refs_rho"] for r in sub]))
        verdict = "met" if rho >= goal else f"NOT met (short by {goal - rho:.4f})"
        lines.append(
            f"goal {space} n=10 mean ρ >= {goal}: {rho:.4f} over {len(sub)} devices, {verdict}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--quick", action="store_true", help="n = 10, 2 draws, 3 devices")
    args = parser.parse_args()
    sizes, draws, devices = ((10,), 2, 3) if args.quick else (SIZES, DRAWS, None)
    warnings.filterwarnings("ignore", category=UserWarning)
    threadpool_limits(limits=1)  # small problems: one BLAS thread is faster on 2 shared cores
    start = time.perf_counter()
    rows: list[dict] = []
    print(HEADER)
    for name in args.spaces:
        reason = missing_reason(name)
        if reason is not None:
            print(f"skipping {name}: {reason}")
            continue
        rows += run_space(name, sizes, draws, devices)
    print()
    print(summary(rows))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
