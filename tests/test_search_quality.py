"""Known-answer quality: on an enumerable space every searcher finds most of the true HV."""

from __future__ import annotations

import numpy as np
import pytest

import nas.search
from nas.pareto import non_dominated
from nas.search import ResultStore, make_searcher, run_search
from tests.test_search_problems import REFERENCE, analytic_problem, evaluator, true_front

BUDGET = 150
SEEDS = range(5)
# GP Bayesian optimisation and the surrogate's predictor fits cost a second or more per ask;
# fewer seeds keep the suite short.
SEEDS_FOR = {"optuna-gp": range(2), "surrogate": range(3)}
# Stated bounds at BUDGET=150 of 729 configs (measured over seeds 0-19: per-seed minimum >= 0.948
# for the model-based searchers, >= 0.915 for random search; means 0.976-0.989 and 0.941).
MIN_RATIO = {"random": 0.88}
DEFAULT_MIN_RATIO = 0.93
MIN_MEAN_RATIO = {"random": 0.90}
DEFAULT_MIN_MEAN_RATIO = 0.96


@pytest.mark.parametrize("constrained", [False, True], ids=["free", "cost<=0.5"])
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SEEDS_FOR else n for n in nas.search.names()],
)
def test_hv_ratio_and_non_domination(name: str, constrained: bool) -> None:
    problem = analytic_problem(constrained=constrained)
    _, _, true_hv = true_front(problem)
    ratios = []
    for seed in SEEDS_FOR.get(name, SEEDS):
        searcher = make_searcher(name, problem, seed=seed)
        result = run_search(
            searcher, evaluator(), ResultStore(), budget=BUDGET, reference_point=REFERENCE
        )
        assert len(result.configs) == BUDGET
        assert len({c.key for c in result.configs}) == BUDGET
        # every front point is feasible and non-dominated among all feasible evaluated points
        feasible = np.flatnonzero(result.feasible)
        assert set(result.front) <= set(feasible)
        assert set(result.front) == set(feasible[non_dominated(result.F[feasible])])
        for i in result.front:
            dominated = np.all(result.F[feasible] <= result.F[i], axis=1) & np.any(
                result.F[feasible] < result.F[i], axis=1
            )
            assert not dominated.any()
        if constrained:
            assert np.all(result.metrics[result.front, 1] <= 0.5)
        # HV is monotone over the run and equals the final front's
        assert np.all(np.diff(result.history["hypervolume"].to_numpy()) >= -1e-12)
        ratios.append(result.hypervolume / true_hv)
    ratios_arr = np.array(ratios)
    assert ratios_arr.max() <= 1.0 + 1e-9
    assert ratios_arr.min() >= MIN_RATIO.get(name, DEFAULT_MIN_RATIO), ratios
    assert ratios_arr.mean() >= MIN_MEAN_RATIO.get(name, DEFAULT_MIN_MEAN_RATIO), ratios


def test_searchers_beat_random_at_equal_budget() -> None:
    problem = analytic_problem()
    _, _, true_hv = true_front(problem)

    def mean_ratio(name: str) -> float:
        return float(
            np.mean(
                [
                    run_search(
                        make_searcher(name, problem, seed=s),
                        evaluator(),
                        ResultStore(),
                        budget=BUDGET,
                        reference_point=REFERENCE,
                    ).hypervolume
                    / true_hv
                    for s in SEEDS
                ]
            )
        )

    baseline = mean_ratio("random")
    for name in ("pymoo-nsga2", "optuna-nsga2"):
        assert mean_ratio(name) > baseline + 0.01
