"""Known-answer problems for the search tests: small spaces enumerated exactly.

``analytic_problem()`` is a 3^5 x 3 = 729-config space (five ordered dimensions and one
unordered) with two smooth conflicting objectives; ``evaluate`` is picklable (module level), so
the same function runs locally, on Ray and in a killed subprocess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from nas.pareto import hypervolume, non_dominated
from nas.search import Constraint, MetricEvaluator, Objective, SearchProblem
from nas.space import Choice, SearchSpace
from nas.subnet import SubnetConfig

WEIGHTS = (5.0, 4.0, 3.0, 2.0, 1.0)
KIND_BONUS = {"a": 0.0, "b": 0.3, "c": 0.12}
KIND_COST = {"a": 0.0, "b": 0.2, "c": 0.05}
METRICS = ("quality", "cost_ms@toy", "size")
REFERENCE = (0.0, 1.1)  # natural units: quality (max) 0, cost_ms (min) 1.1


def analytic_space() -> SearchSpace:
    dims = tuple(Choice(f"x{i}", (0, 1, 2)) for i in range(5))
    return SearchSpace("analytic", (*dims, Choice("kind", ("a", "b", "c"), ordered=False)))


def evaluate(config: SubnetConfig) -> Mapping[str, float]:
    """quality (max, diminishing returns) vs cost (min, linear): a concave front."""
    a = [int(config[f"x{i}"]) / 2 for i in range(5)]  # type: ignore[arg-type]
    kind = str(config["kind"])
    quality = sum(w * math.sqrt(x) for w, x in zip(WEIGHTS, a, strict=True)) / sum(WEIGHTS)
    quality = (quality + KIND_BONUS[kind]) / 1.3
    cost = (sum(a) / 5 + KIND_COST[kind]) / 1.2
    return {"quality": quality, "cost_ms@toy": cost, "size": float(sum(a))}


def analytic_problem(*, constrained: bool = False) -> SearchProblem:
    constraints = (Constraint("cost_ms", "toy", upper=0.5),) if constrained else ()
    return SearchProblem(
        analytic_space(),
        (Objective("quality", None, "max"), Objective("cost_ms", "toy", "min")),
        constraints,
    )


def evaluator() -> MetricEvaluator:
    return MetricEvaluator(evaluate, METRICS)


def true_front(problem: SearchProblem) -> tuple[list[SubnetConfig], np.ndarray, float]:
    """Front configs, their minimised objectives and the true HV, by enumeration."""
    configs = problem.space.enumerate()
    rows = [evaluate(c) for c in configs]
    F = problem.objective_matrix(rows)
    G = problem.constraint_matrix(rows)
    feasible = np.all(G <= 0, axis=1) if G is not None else np.ones(len(F), bool)
    idx = np.flatnonzero(feasible)
    front = idx[non_dominated(F[idx])]
    ref = problem.to_minimised(REFERENCE)
    return [configs[i] for i in front], F[front], hypervolume(F[front], ref)


def test_analytic_problem_has_a_nontrivial_front() -> None:
    problem = analytic_problem()
    configs, F, hv = true_front(problem)
    assert analytic_space().size() == 729
    assert 10 <= len(configs) < 200
    assert hv > 0
    # the front trades quality for cost: sorted by cost, quality increases
    order = np.argsort(F[:, 1])
    assert np.all(np.diff(-F[order, 0]) >= 0)


def test_constrained_front_is_feasible_and_smaller() -> None:
    configs_c, _, hv_c = true_front(analytic_problem(constrained=True))
    _, _, hv = true_front(analytic_problem())
    assert all(evaluate(c)["cost_ms@toy"] <= 0.5 for c in configs_c)
    assert 0 < hv_c < hv
