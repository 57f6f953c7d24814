"""Accuracy predictors on NAS-Bench-201 with and without the cell path features.

Each predictor kind is fitted on ``n`` random cells (CIFAR-10 test accuracy, several seeds) and
ranks all the other cells; the baseline is the same kind on the default cell features, the
candidate adds ``cell_paths`` (:func:`predictors.features.cell_path_lengths`: the number of
input-output paths and, per set of operations, the most of them on one path). Kendall τ over
every held-out cell and over the held-out top 10 % by accuracy, where a search spends its
evaluations; the ratio column divides the candidate's τ by the baseline's.

Run: ``python -m benchmarks.path_features_nb201`` (``--seeds``, ``--n``).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

import search_spaces
from benchmarks.data import load_nb201
from predictors.models import make_predictor

KINDS = ("ensemble", "gbr", "ridge")


def _taus(
    kind: str, paths: bool, X: np.ndarray, acc: np.ndarray, n: int, seed: int
) -> list[float]:
    space = search_spaces.get("nas_bench_201")
    train = np.random.default_rng(seed).choice(len(X), n, replace=False)
    model = make_predictor(space, kind=kind, cell_paths=paths, random_state=seed)
    model.fit(X[train], acc[train])
    rest = np.setdiff1d(np.arange(len(X)), train)
    predicted, true = model.predict(X[rest]), acc[rest]
    top = true >= np.quantile(true, 0.9)
    return [
        float(kendalltau(true, predicted).statistic),
        float(kendalltau(true[top], predicted[top]).statistic),
    ]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n", type=int, default=100, help="training cells per seed")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)  # MLP convergence on small n
    space = search_spaces.get("nas_bench_201")
    frame, configs = load_nb201()
    X, acc = space.encode_many(configs), frame["cifar10_test_acc"].to_numpy()
    t0 = time.perf_counter()
    rows = []
    for kind in KINDS:
        taus = {
            paths: np.array([_taus(kind, paths, X, acc, args.n, s) for s in range(args.seeds)])
            for paths in (False, True)
        }
        for column, name in enumerate(("all", "top 10 %")):
            base, ours = taus[False][:, column], taus[True][:, column]
            rows.append(
                {
                    "kind": kind,
                    "held-out cells": name,
                    "τ default features": f"{base.mean():.3f} ± {base.std(ddof=1):.3f}",
                    "τ + path features": f"{ours.mean():.3f} ± {ours.std(ddof=1):.3f}",
                    "ratio": ours.mean() / base.mean(),
                }
            )
    table = pd.DataFrame(rows)
    print(
        f"CIFAR-10 accuracy from {args.n} random cells, Kendall τ (mean ± sd over {args.seeds} "
        "seeds) on every other cell"
    )
    print(table.to_string(index=False, float_format="{:.2f}".format))
    print(f"\nwall time {time.perf_counter() - t0:.1f} s")
    return table


if __name__ == "__main__":
    main()
