"""Objectives/constraints as data, and bad input failing before any evaluation runs."""

from __future__ import annotations

import pytest

from nas.errors import ConfigError
from nas.search import (
    Constraint,
    MetricEvaluator,
    Objective,
    ResultStore,
    SearchProblem,
    make_searcher,
    run_search,
)
from tests.test_search_problems import METRICS, analytic_space, evaluate


def test_parse_objectives_and_constraints() -> None:
    assert Objective.parse("top1:max") == Objective("top1", None, "max")
    assert Objective.parse("latency_ms@cpu_int8:min") == Objective("latency_ms", "cpu_int8", "min")
    assert Objective.parse("latency_ms@cpu_int8:min").key == "latency_ms@cpu_int8"
    assert Constraint.parse("latency_ms@cpu_fp32 <= 5") == Constraint(
        "latency_ms", "cpu_fp32", upper=5.0
    )
    assert Constraint.parse("top1>=0.7") == Constraint("top1", None, lower=0.7)
    assert Constraint("m", None, upper=2.0, lower=1.0).violations(3.0) == [1.0, -2.0]


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("top1:maximise", ["top1", "maximise", "'max'", "'min'"]),
        ("top1", ["top1", "'max'", "'min'"]),
        ("top 1:max", ["top 1"]),
    ],
)
def test_bad_objective_text_names_key_and_allowed(text: str, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        Objective.parse(text)
    for needle in needles:
        assert needle in str(info.value)


@pytest.mark.parametrize(
    "text", ["latency_ms < 5", "latency_ms <= fast", "latency_ms@ <= 5", "<= 5"]
)
def test_bad_constraint_text(text: str) -> None:
    with pytest.raises(ConfigError):
        Constraint.parse(text)


def test_contradictory_constraint_and_problem() -> None:
    with pytest.raises(ConfigError, match=r"lower=3\.0 > upper=1\.0"):
        Constraint("lat", None, upper=1.0, lower=3.0)
    with pytest.raises(ConfigError, match="2 or more"):
        SearchProblem.from_strings(analytic_space(), ["quality:max"])
    with pytest.raises(ConfigError, match="same metric twice"):
        SearchProblem.from_strings(analytic_space(), ["quality:max", "quality:min"])


class _Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, cfg):  # type: ignore[no-untyped-def]
        self.calls += 1
        return evaluate(cfg)


@pytest.mark.parametrize(
    ("objectives", "constraints", "budget", "needles"),
    [
        (["quality:max", "latency_ms@toy:min"], [], 10, ["latency_ms@toy", "cost_ms@toy"]),
        (["quality:max", "cost_ms@gpu:min"], [], 10, ["cost_ms@gpu", "cost_ms@toy"]),
        (["quality:max", "cost_ms@toy:min"], ["energy_mj <= 3"], 10, ["energy_mj", "size"]),
        (["quality:max", "cost_ms@toy:min"], [], 0, ["budget=0"]),
        (["quality:max", "cost_ms@toy:min"], [], 1000, ["budget=1000", "729"]),
        (["quality:max", "cost_ms@toy:min"], [], 2.5, ["budget=2.5"]),
    ],
)
def test_bad_search_input_fails_before_any_evaluation(
    objectives: list[str], constraints: list[str], budget: int, needles: list[str]
) -> None:
    problem = SearchProblem.from_strings(analytic_space(), objectives, constraints)
    counter = _Counter()
    searcher = make_searcher("random", problem, seed=0)
    with pytest.raises(ConfigError) as info:
        run_search(searcher, MetricEvaluator(counter, METRICS), ResultStore(), budget=budget)
    for needle in needles:
        assert needle in str(info.value)
    assert counter.calls == 0


def test_unknown_searcher_and_options_name_allowed_values() -> None:
    problem = SearchProblem.from_strings(analytic_space(), ["quality:max", "cost_ms@toy:min"])
    with pytest.raises(ConfigError, match=r"search.algorithm='nsga9' is not one of \["):
        make_searcher("nsga9", problem)
    from nas.search import OptunaSearcher, PymooSearcher

    with pytest.raises(ConfigError, match="'nsga2'"):
        PymooSearcher(problem, algorithm="moead")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'tpe'"):
        OptunaSearcher(problem, algorithm="cmaes")  # type: ignore[arg-type]


def test_evaluate_returning_too_little_is_named() -> None:
    problem = SearchProblem.from_strings(analytic_space(), ["quality:max", "cost_ms@toy:min"])
    bad = MetricEvaluator(lambda c: {"quality": 1.0}, METRICS)
    with pytest.raises(ConfigError, match="'cost_ms@toy'"):
        run_search(make_searcher("random", problem, seed=0), bad, ResultStore(), budget=3)


def test_store_holds_metrics_per_target_and_frame_has_all_evaluations(tmp_path) -> None:  # type: ignore[no-untyped-def]
    problem = SearchProblem.from_strings(
        analytic_space(), ["quality:max", "cost_ms@toy:min"], ["cost_ms@toy <= 0.5"]
    )
    store = ResultStore(tmp_path / "r.jsonl")
    result = run_search(
        make_searcher("pymoo-nsga2", problem, seed=0),
        MetricEvaluator(evaluate, METRICS),
        store,
        budget=30,
        reference_point=(0.0, 1.1),
    )
    assert {e.target for e in store} == {"any", "toy"}
    frame = result.to_frame()
    assert len(frame) == 30 and frame["on_front"].sum() == len(result.front)
    assert set(frame.columns) >= {"quality", "cost_ms@toy", "feasible", "step", "cfg.kind"}
    result.to_csv(tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text().count("\n") == 31
    assert result.history["n_evals"].iloc[-1] == 30
