"""The Searcher protocol and the ``run_search`` loop: ask → look up or evaluate → store → tell.

The :class:`~nas.results.ResultStore` is the source of truth. Before evaluating a config the loop
looks it up in the store (by the key of its canonical form); a config found there costs no
evaluation. A killed search therefore resumes by re-creating the searcher with the same seed and
calling :func:`run_search` again: a deterministic searcher re-traces its path from stored
results and repeats no finished evaluation.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np

from nas.errors import ConfigError, format_choice_error
from nas.execution.local import LocalExecutor
from nas.pareto import hypervolume, non_dominated, reference_point_from
from nas.progress import progress_bar
from nas.results import SOURCES, Evaluation, ResultStore, Source
from nas.search.objectives import NO_TARGET, SearchProblem, split_metric_key
from nas.subnet import SubnetConfig

if TYPE_CHECKING:
    import pandas as pd

    from nas.execution.base import Executor

StopReason = Literal["budget", "searcher_done", "stalled"]
EvaluatedHook = Callable[[int, Sequence[SubnetConfig], Sequence[Mapping[str, float]]], None]
"""``(step, configs, rows)``: canonical configs and their metric rows (the problem's keys)."""


@runtime_checkable
class Searcher(Protocol):
    """Ask/tell over configs; objectives are minimised, constraints feasible when ``<= 0``.

    ``tell`` receives a prefix of the last ``ask`` (the loop may cut a batch at the budget).
    """

    @property
    def problem(self) -> SearchProblem: ...

    def ask(self) -> list[SubnetConfig]: ...

    def tell(
        self,
        configs: Sequence[SubnetConfig],
        objectives: np.ndarray,
        constraints: np.ndarray | None = None,
    ) -> None: ...

    @property
    def done(self) -> bool: ...


@dataclass(frozen=True)
class MetricEvaluator:
    """A per-config metric function and the metric keys it returns.

    Args:
        fn: ``config -> {metric_key: value}``; keys as in :func:`~nas.search.objectives.metric_key`
            (``"top1"``, ``"latency_ms@cpu_int8"``). Must be picklable to run on Ray.
        metrics: The keys ``fn`` provides; objectives and constraints are checked against them
            before anything runs.
        source: Recorded in the store: ``"predicted"`` for a predictor, else ``"measured"``.
    """

    fn: Callable[[SubnetConfig], Mapping[str, float]]
    metrics: tuple[str, ...]
    source: Source = "measured"

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(format_choice_error("source", self.source, list(SOURCES)))
        if not self.metrics:
            raise ConfigError("MetricEvaluator.metrics must name at least one metric key")
        for key in self.metrics:
            split_metric_key(key)


@dataclass(frozen=True)
class SearchResult:
    """Everything one :func:`run_search` call saw, in the order it was first told.

    Attributes:
        configs: Distinct evaluated configs (canonical form), first-seen order.
        metrics: Their metric values, shape (n, len(problem.metric_keys)), natural units.
        F: Minimised objectives, shape (n, n_obj).
        G: Constraint values (``<= 0`` feasible), shape (n, n_constr).
        front: Indices into ``configs`` of the feasible non-dominated points.
        reference_point: HV reference point in minimised coordinates.
        history: One row per tell: ``step``, ``n_evals``, ``hypervolume``.
        n_fresh: Evaluations actually run by this call (the rest came from the store).
    """

    problem: SearchProblem
    configs: tuple[SubnetConfig, ...]
    metrics: np.ndarray
    F: np.ndarray
    G: np.ndarray
    step: np.ndarray
    replayed: np.ndarray
    front: np.ndarray
    reference_point: np.ndarray
    history: pd.DataFrame = field(repr=False)
    n_fresh: int
    stop_reason: StopReason

    @property
    def feasible(self) -> np.ndarray:
        return np.all(self.G <= 0, axis=1) if self.G.shape[1] else np.ones(len(self.F), bool)

    @property
    def front_configs(self) -> list[SubnetConfig]:
        return [self.configs[i] for i in self.front]

    @property
    def front_values(self) -> np.ndarray:
        """Objective values of the front in natural units (maximised metrics positive)."""
        return self.problem.from_minimised(self.F[self.front])

    @property
    def hypervolume(self) -> float:
        return float(self.history["hypervolume"].iloc[-1]) if len(self.history) else 0.0

    def to_frame(self) -> pd.DataFrame:
        """One row per evaluation: step, config columns, metrics, feasible, on_front, replayed."""
        import pandas as pd

        keys = self.problem.metric_keys
        on_front = np.zeros(len(self.configs), bool)
        on_front[self.front] = True
        rows = []
        for i, cfg in enumerate(self.configs):
            row: dict[str, object] = {"step": int(self.step[i]), "config_key": cfg.key}
            row.update({f"cfg.{k}": v for k, v in cfg.items})
            row.update({k: float(v) for k, v in zip(keys, self.metrics[i], strict=True)})
            row.update(
                feasible=bool(self.feasible[i]),
                on_front=bool(on_front[i]),
                replayed=bool(self.replayed[i]),
            )
            rows.append(row)
        return pd.DataFrame(rows)

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_frame` atomically (temp file + ``os.replace``)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", newline="") as fh:
                self.to_frame().to_csv(fh, index=False)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _stored_row(
    store: ResultStore, config: SubnetConfig, keys: Sequence[str], source: Source
) -> dict[str, float] | None:
    row: dict[str, float] = {}
    for key in keys:
        metric, target = split_metric_key(key)
        record = store.get(config, target or NO_TARGET, source)
        if record is None or metric not in record.metrics:
            return None
        row[key] = float(record.metrics[metric])
    return row


def _records(
    store: ResultStore, config: SubnetConfig, row: Mapping[str, float], source: Source
) -> list[Evaluation]:
    """One Evaluation per target, merged with what the store already holds for it."""
    by_target: dict[str, dict[str, float]] = {}
    for key, value in row.items():
        metric, target = split_metric_key(key)
        by_target.setdefault(target or NO_TARGET, {})[metric] = float(value)
    out = []
    for target, metrics in by_target.items():
        previous = store.get(config, target, source)
        merged = {**(previous.metrics if previous else {}), **metrics}
        out.append(Evaluation(config, target, merged, source))
    return out


def _check_row(row: object, evaluator: MetricEvaluator, config: SubnetConfig) -> dict[str, float]:
    if not isinstance(row, Mapping):
        raise ConfigError(
            f"the evaluate function returned {type(row).__name__} for {config.to_dict()}; "
            f"expected a mapping with keys {list(evaluator.metrics)}"
        )
    missing = [k for k in evaluator.metrics if k not in row]
    if missing:
        raise ConfigError(
            f"the evaluate function returned no {missing[0]!r} for {config.to_dict()}; "
            f"it declared {list(evaluator.metrics)} and returned {sorted(row)}"
        )
    values = {str(k): float(v) for k, v in row.items()}
    bad = [k for k in evaluator.metrics if not np.isfinite(values[k])]
    if bad:
        raise ConfigError(
            f"metric {bad[0]!r}={values[bad[0]]} for {config.to_dict()} is not finite"
        )
    return values


def run_search(
    searcher: Searcher,
    evaluator: MetricEvaluator,
    store: ResultStore,
    *,
    budget: int,
    executor: Executor | None = None,
    reference_point: Sequence[float] | None = None,
    chunk_size: int | None = None,
    max_stalled_asks: int = 100,
    progress: bool = False,
    on_evaluated: EvaluatedHook | None = None,
) -> SearchResult:
    """Run ``searcher`` until ``budget`` distinct configs have been evaluated (or it is done).

    Args:
        searcher: Any :class:`Searcher`; its ``problem`` says which metrics to read.
        evaluator: Metric function run through ``executor`` for configs the store lacks.
        store: Looked up before every evaluation and appended after it (resume by replay).
        budget: Number of distinct configs (fresh or found in the store) to evaluate.
        executor: ``LocalExecutor()`` by default; a ``RayExecutor`` fans evaluations out.
        reference_point: HV reference in natural units, one value per objective (maximised
            metrics as they are, e.g. top1 0.0). Default: derived from all evaluated points
            after the run (nadir + 10 % of the range).
        chunk_size: Evaluate new configs in chunks of this many, storing each chunk before the
            next (``None``: the whole batch at once). 1 makes every finished evaluation durable.
        max_stalled_asks: Stop after this many asks in a row bring no new config.
        progress: Show a tqdm bar with the current hypervolume (when ``reference_point`` is
            given).
        on_evaluated: Called as each evaluation finishes, and once per step with the configs
            found in the store, e.g. to mirror the search into an Optuna study
            (:class:`~nas.search.optuna_record.OptunaRecord`); it may see a config again on
            resume.

    Returns:
        The evaluations, the feasible Pareto front and the hypervolume per tell.

    Raises:
        ConfigError: Before any evaluation, if a metric is not provided by ``evaluator`` or the
            budget contradicts the space or itself.
    """
    problem = searcher.problem
    space = problem.space
    problem.check_metrics(evaluator.metrics)
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise ConfigError(f"budget={budget!r} must be a positive integer")
    if budget > space.size():
        raise ConfigError(
            f"budget={budget} exceeds the {space.size()} distinct configs of search space "
            f"{space.name!r}; allowed values: 1..{space.size()}"
        )
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size!r} must be a positive integer or None")
    if max_stalled_asks < 1:
        raise ConfigError(f"max_stalled_asks={max_stalled_asks!r} must be >= 1")
    ref_min = problem.to_minimised(reference_point) if reference_point is not None else None
    executor = executor or LocalExecutor()
    keys = problem.metric_keys
    source = evaluator.source

    rows: dict[str, dict[str, float]] = {}  # canonical key -> metric row
    order: list[SubnetConfig] = []
    first_step: list[int] = []
    replayed: list[bool] = []
    history: list[tuple[int, int, float]] = []
    n_fresh, stalled, step = 0, 0, 0
    reason: StopReason = "budget"

    bar = progress_bar(budget if progress else 0, f"search {space.name}", unit="eval")
    try:
        while len(order) < budget:
            if searcher.done:
                reason = "searcher_done"
                break
            asked = searcher.ask()
            if not asked:
                reason = "searcher_done"
                break
            told: list[SubnetConfig] = []
            canon: list[SubnetConfig] = []
            new: list[SubnetConfig] = []
            new_keys: set[str] = set()
            for cfg in asked:
                c = space.canonical(cfg)
                if c.key not in rows and c.key not in new_keys:
                    if len(order) + len(new) >= budget:
                        break  # cut the batch at the budget; the searcher sees the prefix only
                    new.append(c)
                    new_keys.add(c.key)
                told.append(cfg)
                canon.append(c)
            to_run = []
            for c in new:
                stored = _stored_row(store, c, keys, source)
                if stored is None:
                    to_run.append(c)
                else:
                    rows[c.key] = stored
            if on_evaluated is not None and len(to_run) < len(new):
                found = [c for c in new if c.key in rows]
                on_evaluated(step, found, [rows[c.key] for c in found])
            size = chunk_size or max(len(to_run), 1)
            for start in range(0, len(to_run), size):
                chunk = to_run[start : start + size]

                def record(
                    index: int,
                    row: Mapping[str, float],
                    chunk: list[SubnetConfig] = chunk,
                    step: int = step,
                ) -> None:
                    # durable as each evaluation finishes: a kill loses only those in flight
                    config = chunk[index]
                    checked = _check_row(row, evaluator, config)
                    store.extend(_records(store, config, checked, source))
                    if on_evaluated is not None:
                        on_evaluated(step, [config], [{k: checked[k] for k in keys}])

                results = executor.map(evaluator.fn, chunk, on_result=record)
                checked = [
                    _check_row(r, evaluator, c) for r, c in zip(results, chunk, strict=True)
                ]
                for c, r in zip(chunk, checked, strict=True):
                    rows[c.key] = {k: r[k] for k in keys}
                n_fresh += len(chunk)
            fresh_keys = {c.key for c in to_run}
            for c in new:
                order.append(c)
                first_step.append(step)
                replayed.append(c.key not in fresh_keys)
            told_rows = [rows[c.key] for c in canon]
            searcher.tell(
                told, problem.objective_matrix(told_rows), problem.constraint_matrix(told_rows)
            )
            hv = float("nan")
            if ref_min is not None:
                hv = _front_hv(problem, [rows[c.key] for c in order], ref_min)
                bar.set_postfix(hv=f"{hv:.5g}")
            history.append((step, len(order), hv))
            bar.update(len(new))
            step += 1
            stalled = 0 if new else stalled + 1
            if stalled >= max_stalled_asks:
                reason = "stalled"
                break
    finally:
        bar.close()
    return _result(problem, order, rows, first_step, replayed, history, ref_min, n_fresh, reason)


def _front_hv(problem: SearchProblem, rows: list[dict[str, float]], ref: np.ndarray) -> float:
    F = problem.objective_matrix(rows)
    G = problem.constraint_matrix(rows)
    feasible = np.all(G <= 0, axis=1) if G is not None else np.ones(len(F), bool)
    return hypervolume(F[feasible], ref)


def _result(
    problem: SearchProblem,
    order: list[SubnetConfig],
    rows: dict[str, dict[str, float]],
    first_step: list[int],
    replayed: list[bool],
    history: list[tuple[int, int, float]],
    ref_min: np.ndarray | None,
    n_fresh: int,
    reason: StopReason,
) -> SearchResult:
    import pandas as pd

    keys = problem.metric_keys
    all_rows = [rows[c.key] for c in order]
    metrics = np.array([[r[k] for k in keys] for r in all_rows], float).reshape(
        len(order), len(keys)
    )
    F = problem.objective_matrix(all_rows)
    G_or_none = problem.constraint_matrix(all_rows)
    G = G_or_none if G_or_none is not None else np.zeros((len(order), 0))
    feasible = np.all(G <= 0, axis=1)
    idx = np.flatnonzero(feasible)
    front = idx[non_dominated(F[idx])] if len(idx) else np.zeros(0, dtype=np.int64)
    if ref_min is None:
        ref_min = reference_point_from(F) if len(F) else np.zeros(problem.n_obj)
        history = [(s, n, _front_hv(problem, all_rows[:n], ref_min)) for s, n, _ in history]
    frame = pd.DataFrame(history, columns=["step", "n_evals", "hypervolume"])
    return SearchResult(
        problem=problem,
        configs=tuple(order),
        metrics=metrics,
        F=F,
        G=G,
        step=np.asarray(first_step, dtype=np.int64),
        replayed=np.asarray(replayed, dtype=bool),
        front=front,
        reference_point=ref_min,
        history=frame,
        n_fresh=n_fresh,
        stop_reason=reason,
    )
