"""Predictor-in-the-loop by composition: search on predicted metrics, then measure the front.

Search with a :class:`~nas.search.base.MetricEvaluator` whose ``fn`` queries a predictor
(``source="predicted"``), then call :func:`measure_front` with the real evaluator: it measures
only the front (through the store, so nothing measured before is measured again) and reports
predicted against measured values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from nas.errors import ConfigError
from nas.pareto import non_dominated_mask
from nas.search.base import MetricEvaluator, SearchResult, _check_row, _records, _stored_row

if TYPE_CHECKING:
    import pandas as pd

    from nas.execution.base import Executor
    from nas.results import ResultStore


def measure_front(
    result: SearchResult,
    evaluator: MetricEvaluator,
    store: ResultStore,
    *,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Measure ``result``'s front for real; one row per front config, predicted vs measured.

    Columns: ``config_key``, ``cfg.*``, then for every metric key ``<key>.predicted``,
    ``<key>.measured``, and ``measured_on_front`` (whether the point stays non-dominated among
    the measured front, constraints ignored).
    """
    import pandas as pd

    from nas.execution.local import LocalExecutor

    problem = result.problem
    problem.check_metrics(evaluator.metrics)
    keys = problem.metric_keys
    configs = result.front_configs
    rows: list[dict[str, float] | None] = [
        _stored_row(store, c, keys, evaluator.source) for c in configs
    ]
    missing = [i for i, r in enumerate(rows) if r is None]
    if missing:
        todo = [configs[i] for i in missing]
        measured = (executor or LocalExecutor()).map(evaluator.fn, todo)
        checked = [_check_row(m, evaluator, c) for m, c in zip(measured, todo, strict=True)]
        store.extend(
            [
                e
                for c, r in zip(todo, checked, strict=True)
                for e in _records(store, c, r, evaluator.source)
            ]
        )
        for i, r in zip(missing, checked, strict=True):
            rows[i] = r
    full = [r for r in rows if r is not None]
    if len(full) != len(configs):
        raise ConfigError("measure_front lost a row; this is a bug")
    on_front = non_dominated_mask(problem.objective_matrix(full)) if full else np.zeros(0, bool)
    out = []
    for n, (i, cfg) in enumerate(zip(result.front, configs, strict=True)):
        row: dict[str, object] = {"config_key": cfg.key}
        row.update({f"cfg.{k}": v for k, v in cfg.items})
        for j, key in enumerate(keys):
            row[f"{key}.predicted"] = float(result.metrics[i, j])
            row[f"{key}.measured"] = float(full[n][key])
        row["measured_on_front"] = bool(on_front[n])
        out.append(row)
    return pd.DataFrame(out)
