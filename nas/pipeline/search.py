"""The search stage: search on predicted (or measured) metrics, then measure the front."""

from __future__ import annotations

from typing import Any

from nas.pipeline.context import (
    PredictedMetrics,
    RunContext,
    SubnetMeasurer,
    accuracy_evaluator,
    latency_protocol,
    load_bundle,
    measured_results,
    measured_subnets,
)
from nas.results import ResultStore
from nas.spec.resolve import (
    COST_METRICS,
    SLOW_ASK_SEARCHERS,
    available_metrics,
)


def run_search_stage(ctx: RunContext) -> dict[str, Any]:
    """Search (on predicted or measured metrics), then measure the front for real."""
    from nas.search import MetricEvaluator, make_searcher, measure_front, run_search
    from nas.search import optuna_record as rec
    from nas.search.front import measured_front
    from nas.search.hv_history import write_history

    exp = ctx.exp
    spec = exp.spec
    measured_store = measured_results(exp)
    measurer = SubnetMeasurer(
        accuracy_evaluator(ctx), exp.measured_targets, latency_protocol(exp), spec.seed
    )
    measured = MetricEvaluator(measurer, tuple(available_metrics(exp.measured_targets)))
    if spec.search.use_predictors:
        bundle = load_bundle(exp)
        keys = tuple([*bundle.names, *COST_METRICS])
        evaluator = MetricEvaluator(PredictedMetrics(bundle, exp.space), keys, "predicted")
        store = ResultStore(exp.stage_dir("search") / "predicted.jsonl")
    else:
        evaluator, store = measured, measured_store
    searcher = make_searcher(
        spec.search.algorithm, exp.problem, seed=spec.seed, options=spec.search.options
    )
    if spec.search.use_predictors and spec.search.algorithm in SLOW_ASK_SEARCHERS:
        cost = SLOW_ASK_SEARCHERS[spec.search.algorithm]
        ctx.log(
            f"search: note: {spec.search.algorithm} spends {cost} CPU-seconds per ask, far "
            "more than a predicted evaluation (about a millisecond); pymoo-nsga2 searches "
            "predictors faster. It pays off on measured evaluations (use_predictors = false)."
        )
    ctx.log(
        f"search: {spec.search.algorithm}, budget {spec.search.budget}, "
        f"{'predicted' if spec.search.use_predictors else 'measured'} metrics"
    )
    out = exp.stage_dir("search")

    def warn(message: str) -> None:  # an unreadable journal is set aside, never fatal
        ctx.log(f"search: warning: {message}")

    # every evaluation also lands in an Optuna study: `optuna-dashboard search/optuna.journal`
    journal = out / rec.JOURNAL_FILE
    search_study = rec.search_study_name(spec.name, evaluator.source)
    record = rec.OptunaRecord(
        journal, exp.problem, study_name=search_study, source=evaluator.source, warn=warn
    )
    if rec.drop_legacy_study(journal, spec.name, exp.problem):
        ctx.log(
            f"search: the journal's study {spec.name!r} (named before studies were named after "
            f"their source) is deleted; its evaluations are recorded as {search_study!r}"
        )
    result = run_search(
        searcher,
        evaluator,
        store,
        budget=spec.search.budget,
        chunk_size=8,
        progress=True,
        on_evaluated=record.add,
    )
    result.to_frame().to_csv(out / "evaluations.csv", index=False)
    write_history(result, out)
    ctx.log(
        f"search: {len(result.configs)} evaluated ({result.n_fresh} fresh), "
        f"front of {len(result.front)}; measuring the front"
    )
    front = measure_front(result, measured, measured_store)
    front.to_csv(out / "front.csv", index=False)
    studies = [search_study]
    if evaluator.source == "predicted":
        studies.append(rec.measured_front_study_name(spec.name))
        rec.record_measured_front(journal, result, front, study_name=studies[-1], warn=warn)
    subnets = measured_subnets(exp)
    studies.append(rec.measured_study_name(spec.name))
    n_measured = rec.record_measured(
        journal, exp.problem, subnets, study_name=studies[-1], warn=warn
    )
    ctx.log(
        f"search: Optuna studies {', '.join(studies)} in {journal.name} "
        f"({len(record)} evaluations; {n_measured} measured subnets added)"
    )
    # Constraints hold on measured values: say now, before export, when nothing satisfies them.
    measured_front(exp.problem, subnets)
    return {"n_evaluated": len(result.configs), "front_size": len(result.front)}
