"""CPU seconds per ask of the searchers on spaces too large to enumerate, at 100 and 500 evals.

An ask's cost is what a searcher adds to every evaluation; on measured evaluations it hides
behind the measurement, on predicted ones (about a millisecond each) it is the search's wall
time. The objectives are a cheap synthetic pair (a weighted option sum and its mirror plus an
interaction), so only the searcher is timed: process time of ``ask()`` on one thread, mean over
the asks within 25 evaluations below each budget.

    python -m benchmarks.search_ask_cost --spaces fashion_cnn mobilenet_like fbnet vit_tiny
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

BUDGETS = (100, 500)


def _objectives(space):  # type: ignore[no-untyped-def]
    n = np.asarray(space.n_options, dtype=float)
    weights = np.random.default_rng(0).random(len(n))

    def evaluate(config):  # type: ignore[no-untyped-def]
        x = space.encode_many([config])[0] / np.maximum(n - 1, 1)
        cost = float(weights @ x) / weights.sum()
        quality = float((1 - weights) @ (1 - x)) / (1 - weights).sum() + 0.1 * float(x[0] * x[-1])
        return {"a": cost, "b": quality}

    return evaluate


def ask_costs(method: str, space_name: str, seed: int = 0) -> dict[str, float]:
    import search_spaces
    from nas.search import SearchProblem, make_searcher

    space = search_spaces.get(space_name)
    problem = SearchProblem.from_strings(space, ["a:min", "b:min"])
    searcher = make_searcher(method, problem, seed=seed)
    evaluate = _objectives(space)
    told, asks = 0, []
    while told < max(BUDGETS) and not searcher.done:
        t0 = time.process_time()
        configs = searcher.ask()
        asks.append((told, time.process_time() - t0, max(len(configs), 1)))
        configs = configs[: max(BUDGETS) - told]
        if not configs:
            break
        rows = [evaluate(c) for c in configs]
        searcher.tell(configs, np.array([[r["a"], r["b"]] for r in rows]))
        told += len(configs)
    out = {}
    for b in BUDGETS:
        near = [(t, k) for n, t, k in asks if b - 25 <= n < b] if told >= b else []
        out[f"ask@{b}"] = float(np.mean([t for t, _ in near])) if near else np.nan
        out[f"per eval@{b}"] = (
            sum(t for t, _ in near) / sum(k for _, k in near) if near else np.nan
        )
    return out


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="*", default=["fashion_cnn", "mobilenet_like", "fbnet"])
    parser.add_argument("--methods", nargs="*", default=["portfolio", "pymoo-nsga2"])
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    rows = []
    for space in args.spaces:
        for method in args.methods:
            costs = ask_costs(method, space)
            rows.append({"space": space, "method": method, **costs})
    frame = pd.DataFrame(rows)
    print("CPU-s per ask and per asked config (one thread), asks within 25 evaluations below")
    print(frame.to_string(index=False, float_format="{:.4f}".format))
    return frame


if __name__ == "__main__":
    main()
