"""ImageNet top-1 predictors for Once-for-All MobileNetV3 subnets, next to a MACs baseline.

Data: ``shared/data/ofa_mbv3`` (DyNAS-T search logs; 2,373 rows). Configs are mapped to
``mobilenet_like(bits=(32,))``, canonicalised (inactive blocks reset) and deduplicated (top-1 of
repeated configs averaged), so no network is in both train and test. The rows come from search
runs and lean towards the Pareto front; the split is uniformly random. Baseline on the same
held-out configs: the ranking by MACs (from the table).

Run: ``python -m benchmarks.predictors_ofa`` (``--quick`` for one seed).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import search_spaces
from benchmarks.data import load_ofa_mbv3
from predictors.models import make_predictor, search_predictor
from predictors.quality import QualityReport


def load() -> tuple[object, np.ndarray, np.ndarray, np.ndarray]:
    frame, configs = load_ofa_mbv3()
    space = search_spaces.get("mobilenet_like", bits=(32,))
    keys: dict[str, int] = {}
    rows: list[list[float]] = []
    canon = []
    for cfg, top1, macs in zip(configs, frame["top1"], frame["macs"], strict=True):
        c = space.canonical(cfg)
        if c.key not in keys:
            keys[c.key] = len(rows)
            rows.append([])
            canon.append((c, float(macs)))
        rows[keys[c.key]].append(float(top1))
    X = space.encode_many([c for c, _ in canon])
    y = np.array([np.mean(r) for r in rows])
    macs = np.array([m for _, m in canon])
    return space, X, y, macs


def fit(space, kind: str, encoding: str, X, y, seed: int):  # type: ignore[no-untyped-def]
    if kind == "ridge":
        return search_predictor(
            space,
            X,
            y,
            kind="ridge",
            encoding=encoding,
            random_state=seed,  # type: ignore[arg-type]
        ).best_estimator_
    return make_predictor(space, kind=kind, encoding=encoding, random_state=seed).fit(X, y)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 500, 1000])
    parser.add_argument("--kinds", nargs="+", default=["ridge", "gbr", "mlp", "ensemble"])
    parser.add_argument("--encodings", nargs="+", default=["ordinal", "onehot"])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seeds = 1 if args.quick else args.seeds
    sizes = [200] if args.quick else args.sizes
    warnings.filterwarnings("ignore", category=UserWarning)
    space, X, y, macs = load()
    print(
        f"OFA MobileNetV3 w1.0: {len(X)} distinct configs; train on n, test on the rest; "
        f"mean of {seeds} seed(s)"
    )
    head = (
        f"{'n':>5}  {'kind':<9}{'encoding':<9}{'kendall':>9}{'spearman':>9}{'MAPE%':>7}"
        f"{'RMSE':>7}{'macs_τ':>8}{'τ/macs':>8}{'fit_s':>7}"
    )
    print(head + "\n" + "-" * len(head), flush=True)
    start = time.perf_counter()
    for n in sizes:
        for kind in args.kinds:
            for encoding in args.encodings:
                reports, base, times = [], [], []
                for seed in range(seeds):
                    rng = np.random.default_rng(np.random.SeedSequence([seed, n]))
                    perm = rng.permutation(len(X))
                    train, test = perm[:n], perm[n:]
                    t0 = time.perf_counter()
                    model = fit(space, kind, encoding, X[train], y[train], seed)
                    times.append(time.perf_counter() - t0)
                    reports.append(
                        QualityReport.from_predictions(y[test], model.predict(X[test]), n_train=n)
                    )
                    base.append(
                        QualityReport.from_predictions(y[test], macs[test], n_train=n).kendall_tau
                    )
                tau = float(np.mean([r.kendall_tau for r in reports]))
                print(
                    f"{n:>5}  {kind:<9}{encoding:<9}{tau:>9.4f}"
                    f"{np.mean([r.spearman for r in reports]):>9.4f}"
                    f"{100 * np.mean([r.mape for r in reports]):>7.3f}"
                    f"{np.mean([r.rmse for r in reports]):>7.3f}{np.mean(base):>8.4f}"
                    f"{tau / np.mean(base):>8.2f}{np.mean(times):>7.2f}",
                    flush=True,
                )
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
