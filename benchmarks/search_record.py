"""What recording a search into an Optuna journal costs: evaluations/s with and without it.

A 400-evaluation ``pymoo-nsga2`` search on NAS-Bench-201 with predictor-like cheap evaluations:
a random forest fitted on 100 measured cells predicts every cell once up front, and the search's
evaluator looks the prediction up (microseconds, so the search loop and the recording are all
that is timed; a real predictor call adds about a millisecond). ``chunk_size=8`` as in the
pipeline's search stage; the ResultStore in memory, or on file as in the pipeline (an fsync per
evaluation). Runs alternate off/on; the median of ``--repeats`` is reported.

Run from the repository root::

    python -m benchmarks.search_record --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

BUDGET = 400


def _predicted_table(seed: int) -> dict[str, tuple[float, float]]:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.preprocessing import OneHotEncoder

    import search_spaces
    from benchmarks.search_nb201 import N_PREDICTOR_TRAIN, _device_data

    configs, F, _ = _device_data("gold_6226")
    space = search_spaces.get("nas_bench_201")
    X = np.array([[c[d.name] for d in space.dims] for c in configs], dtype=object)
    enc = OneHotEncoder(categories=[list(d.options) for d in space.dims]).fit(X)
    train = np.random.default_rng(seed).choice(len(configs), N_PREDICTOR_TRAIN, replace=False)
    model = RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=1)
    predicted = model.fit(enc.transform(X[train]), F[train]).predict(enc.transform(X))
    return {c.key: (float(p[0]), float(p[1])) for c, p in zip(configs, predicted, strict=True)}


def _search(
    table: dict[str, tuple[float, float]], seed: int, journal: Path | None, store: Path | None
) -> tuple[float, float]:
    """Wall and CPU seconds of one search; with ``journal``, every evaluation recorded there."""
    import search_spaces
    from benchmarks.search_nb201 import TableEvaluate
    from nas.search import MetricEvaluator, ResultStore, SearchProblem, make_searcher, run_search
    from nas.search.optuna_record import OptunaRecord

    problem = SearchProblem.from_strings(
        search_spaces.get("nas_bench_201"), ["err:min", "lat:min"]
    )
    evaluator = MetricEvaluator(TableEvaluate(table), ("err", "lat"), source="predicted")
    start, cpu = time.perf_counter(), time.process_time()
    hook = None
    if journal is not None:
        hook = OptunaRecord(journal, problem, study_name="bench", source="predicted").add
    result = run_search(
        make_searcher("pymoo-nsga2", problem, seed=seed),
        evaluator,
        ResultStore(store),
        budget=BUDGET,
        chunk_size=8,
        on_evaluated=hook,
    )
    seconds = time.perf_counter() - start, time.process_time() - cpu
    assert len(result.configs) == BUDGET
    return seconds


def main() -> None:
    import optuna

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = _predicted_table(args.seed)
    times: dict[tuple[bool, bool], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for on_file in (False, True):
                for record in (False, True):
                    run = Path(tmp) / f"{i}-{on_file}-{record}"
                    run.mkdir()
                    seconds = _search(
                        table,
                        args.seed,
                        run / "optuna.journal" if record else None,
                        run / "predicted.jsonl" if on_file else None,
                    )
                    times.setdefault((on_file, record), []).append(seconds)
    wall = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    print(
        "| recording | evaluations/s, store in memory | CPU ms per evaluation, store in memory "
        "| evaluations/s, store on file |"
    )
    print("| --- | ---: | ---: | ---: |")
    for record, label in ((False, "off"), (True, "on (`search/optuna.journal`)")):
        print(
            f"| {label} | {BUDGET / wall[(False, record)]:,.0f} "
            f"| {1000 * cpu[(False, record)] / BUDGET:.2f} "
            f"| {BUDGET / wall[(True, record)]:,.0f} |"
        )
    print(f"(medians of {args.repeats})")


if __name__ == "__main__":
    main()
