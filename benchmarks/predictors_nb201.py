"""Latency and accuracy predictors on NAS-Bench-201, next to a FLOPs-proxy baseline.

For every device, predictors are trained on ``n`` random architectures (several seeds) and scored
on all the others. The baseline, computed on the same held-out architectures, is a FLOPs-like proxy
of the cell: the sum over its six edges of 9 for ``nor_conv_3x3``, 1 for ``nor_conv_1x1`` and 0
for every other operation (ranks only; for MAPE, a least-squares line from the proxy to the
metric is fitted on the same training architectures).

MAPE leaves out the architectures whose cell output is disconnected from its input (no path of
non-``none`` edges): their latencies on raspi4/pixel3 are near zero (down to 0.003 ms) and make
percentages meaningless. Rank metrics use every held-out architecture.

Run: ``python -m benchmarks.predictors_nb201`` (``--quick`` for one seed and two devices).
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LinearRegression

import search_spaces
from benchmarks.data import NB201_DEVICES, load_nb201
from predictors.features import cell_disconnected, cell_edges
from predictors.models import make_predictor, search_predictor
from predictors.quality import QualityReport

PROXY_WEIGHTS = {"nor_conv_3x3": 9.0, "nor_conv_1x1": 1.0}


@dataclass(frozen=True)
class Row:
    metric: str
    n_train: int
    kind: str
    spearman: float
    kendall: float
    mape: float
    proxy_spearman: float
    proxy_kendall: float
    proxy_mape: float
    fit_s: float


def flops_proxy(X: np.ndarray, options: tuple[object, ...]) -> np.ndarray:
    weights = np.array([PROXY_WEIGHTS.get(str(o), 0.0) for o in options])
    return weights[X].sum(axis=1)


def fit(space, kind: str, X: np.ndarray, y: np.ndarray, seed: int):  # type: ignore[no-untyped-def]
    if kind == "ridge":  # small grid search: alpha and whether effective-op features help
        return search_predictor(space, X, y, kind="ridge", random_state=seed).best_estimator_
    return make_predictor(space, kind=kind, random_state=seed).fit(X, y)


def run(metrics: list[tuple[str, str, list[int]]], kinds: list[str], seeds: int) -> list[Row]:
    frame, configs = load_nb201()
    space = search_spaces.get("nas_bench_201")
    X = space.encode_many(configs)
    options = space.dims[0].options
    proxy = flops_proxy(X, options)
    none = [d.options.index("none") for d in space.dims]
    connected = cell_disconnected(X, cell_edges(space), none).ravel() == 0  # type: ignore[arg-type]
    rows = []
    for label, column, sizes in metrics:
        y = frame[column].to_numpy(dtype=float)
        for n in sizes:
            proxy_reports = []
            per_kind: dict[str, list[tuple[QualityReport, float]]] = {k: [] for k in kinds}
            for seed in range(seeds):
                rng = np.random.default_rng(np.random.SeedSequence([seed, n]))
                perm = rng.permutation(len(X))
                train, test = perm[:n], perm[n:]
                line = LinearRegression().fit(proxy[train, None], y[train])
                ranks = QualityReport.from_predictions(y[test], proxy[test], n_train=n)
                fitted = QualityReport.from_predictions(
                    y[test], line.predict(proxy[test, None]), n_train=n, mape_mask=connected[test]
                )
                proxy_reports.append(
                    QualityReport(
                        kendall_tau=ranks.kendall_tau,
                        spearman=ranks.spearman,
                        mape=fitted.mape,
                        rmse=fitted.rmse,
                        within_10pct=fitted.within_10pct,
                        n_train=n,
                        n_test=len(test),
                    )
                )
                for kind in kinds:
                    start = time.perf_counter()
                    model = fit(space, kind, X[train], y[train], seed)
                    elapsed = time.perf_counter() - start
                    report = QualityReport.from_predictions(
                        y[test], model.predict(X[test]), n_train=n, mape_mask=connected[test]
                    )
                    per_kind[kind].append((report, elapsed))
            for kind in kinds:
                reports = [r for r, _ in per_kind[kind]]
                rows.append(
                    Row(
                        metric=label,
                        n_train=n,
                        kind=kind,
                        spearman=float(np.mean([r.spearman for r in reports])),
                        kendall=float(np.mean([r.kendall_tau for r in reports])),
                        mape=float(np.mean([r.mape for r in reports])),
                        proxy_spearman=float(np.mean([r.spearman for r in proxy_reports])),
                        proxy_kendall=float(np.mean([r.kendall_tau for r in proxy_reports])),
                        proxy_mape=float(np.mean([r.mape for r in proxy_reports])),
                        fit_s=float(np.mean([t for _, t in per_kind[kind]])),
                    )
                )
                print(_format([rows[-1]], header=len(rows) == 1), flush=True)
    return rows


def _format(rows: list[Row], *, header: bool = True) -> str:
    head = (
        f"{'metric':<22}{'n':>5}  {'kind':<9}{'spearman':>9}{'kendall':>9}{'MAPE%':>8}"
        f"{'proxy_ρ':>9}{'proxy_τ':>9}{'proxyMAPE%':>11}{'ρ/proxy':>9}{'τ/proxy':>9}{'fit_s':>7}"
    )
    lines = [head, "-" * len(head)] if header else []
    for r in rows:
        lines.append(
            f"{r.metric:<22}{r.n_train:>5}  {r.kind:<9}{r.spearman:>9.4f}{r.kendall:>9.4f}"
            f"{100 * r.mape:>8.2f}{r.proxy_spearman:>9.4f}{r.proxy_kendall:>9.4f}"
            f"{100 * r.proxy_mape:>11.2f}{r.spearman / r.proxy_spearman:>9.2f}"
            f"{r.kendall / r.proxy_kendall:>9.2f}{r.fit_s:>7.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", default=["ridge", "gbr", "ensemble"])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 devices, n=100 only")
    args = parser.parse_args()
    devices = NB201_DEVICES[:2] if args.quick else NB201_DEVICES
    lat_sizes = [100] if args.quick else [100, 900]
    acc_sizes = [100] if args.quick else [100, 1000]
    metrics = [(f"latency_ms@{d}", f"lat_{d}", lat_sizes) for d in devices]
    metrics.append(("cifar10_top1", "cifar10_test_acc", acc_sizes))
    seeds = 1 if args.quick else args.seeds
    print(
        f"NAS-Bench-201: train on n random archs, test on the other {15625} - n; mean of "
        f"{seeds} seed(s); MAPE excludes disconnected cells"
    )
    warnings.filterwarnings("ignore", category=UserWarning)
    start = time.perf_counter()
    rows = run(metrics, args.kinds, seeds)
    print()
    print(_format(rows))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
