"""Conformance suite for every registered searcher (parametrized over ``nas.search.REGISTRY``)."""

from __future__ import annotations

import numpy as np
import pytest

import nas.search
from nas.errors import ConfigError
from nas.search import (
    OptunaSearcher,
    ResultStore,
    Searcher,
    SearchProblem,
    make_searcher,
    run_search,
)
from tests.test_search_problems import analytic_problem, evaluate, evaluator

NAMES = nas.search.names()


def _searcher(name: str, problem: SearchProblem, seed: int) -> Searcher:
    """The registered searcher; Optuna's GP hands over to TPE after 12 trials (6 random).

    Its GP fits a Gaussian process per ask (over 1 s on 2 cores with a constraint), so a run of
    40-70 evaluations at the default 100 GP trials took 40-100 s per test. With the early
    hand-over each run still asks from the GP, crosses the hand-over and asks from TPE, which
    is every path the contracts are about; the default's quality is tested in
    ``test_search_quality``.
    """
    if name == "optuna-gp":
        return OptunaSearcher(
            problem, algorithm="gp", seed=seed, gp_trials=12, gp_startup_trials=6
        )
    return make_searcher(name, problem, seed=seed)


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def _asks(name: str, seed: int, rounds: int = 4) -> list[list[str]]:
    """Keys asked over a few manual ask/tell rounds."""
    problem = analytic_problem(constrained=True)
    searcher = _searcher(name, problem, seed)
    out = []
    for _ in range(rounds):
        configs = searcher.ask()
        rows = [evaluate(c) for c in configs]
        searcher.tell(configs, problem.objective_matrix(rows), problem.constraint_matrix(rows))
        out.append([c.key for c in configs])
    return out


def test_is_a_searcher_and_asks_valid_configs(name: str) -> None:
    problem = analytic_problem()
    searcher = _searcher(name, problem, 0)
    assert isinstance(searcher, Searcher)
    assert searcher.problem == problem
    assert not searcher.done
    configs = searcher.ask()
    assert configs
    for cfg in configs:
        assert problem.space.validate(cfg) == cfg


def test_same_seed_same_asks_different_seed_different(name: str) -> None:
    assert _asks(name, 0) == _asks(name, 0)
    assert _asks(name, 0) != _asks(name, 1)


def test_tell_accepts_a_prefix_of_the_batch(name: str) -> None:
    problem = analytic_problem()
    searcher = _searcher(name, problem, 0)
    configs = searcher.ask()
    part = configs[: max(1, len(configs) // 2)]
    rows = [evaluate(c) for c in part]
    searcher.tell(part, problem.objective_matrix(rows), problem.constraint_matrix(rows))
    assert searcher.ask()


def test_run_search_equals_manual_ask_tell_loop(name: str) -> None:
    problem = analytic_problem()
    budget = 40
    result = run_search(_searcher(name, problem, 3), evaluator(), ResultStore(), budget=budget)
    searcher = _searcher(name, problem, 3)
    seen: list[str] = []
    while len(seen) < budget:
        configs = searcher.ask()
        told = []
        for c in configs:
            if c.key not in seen:
                if len(seen) == budget:
                    break
                seen.append(c.key)
            told.append(c)
        rows = [evaluate(c) for c in told]
        searcher.tell(told, problem.objective_matrix(rows), problem.constraint_matrix(rows))
    assert [c.key for c in result.configs] == seen


def test_same_seed_same_front_different_seed_different(name: str) -> None:
    problem = analytic_problem()

    def run(seed: int) -> tuple[list[str], np.ndarray]:
        r = run_search(_searcher(name, problem, seed), evaluator(), ResultStore(), budget=60)
        return [c.key for c in r.configs], r.F[r.front]

    keys0, front0 = run(0)
    keys0b, front0b = run(0)
    keys1, _ = run(1)
    assert keys0 == keys0b
    np.testing.assert_array_equal(front0, front0b)
    assert keys0 != keys1


def test_resume_equals_uninterrupted_and_repeats_nothing(name: str) -> None:
    problem = analytic_problem(constrained=True)
    calls: list[str] = []

    def counted(cfg):  # type: ignore[no-untyped-def]
        calls.append(cfg.key)
        return evaluate(cfg)

    ev = nas.search.MetricEvaluator(counted, evaluator().metrics)
    full = run_search(_searcher(name, problem, 5), ev, ResultStore(), budget=70)
    n_full = len(calls)
    calls.clear()

    store = ResultStore()
    first = run_search(_searcher(name, problem, 5), ev, store, budget=25)
    resumed = run_search(_searcher(name, problem, 5), ev, store, budget=70)
    assert [c.key for c in resumed.configs] == [c.key for c in full.configs]
    np.testing.assert_array_equal(resumed.F[resumed.front], full.F[full.front])
    assert len(calls) == len(set(calls)) == n_full
    assert first.n_fresh == 25 and resumed.n_fresh == n_full - 25
    assert int(resumed.replayed.sum()) == 25


def test_tell_with_missing_or_misshapen_values_names_the_shape(name: str) -> None:
    problem = analytic_problem(constrained=True)
    searcher = _searcher(name, problem, 0)
    configs = searcher.ask()
    rows = [evaluate(c) for c in configs]
    F, G = problem.objective_matrix(rows), problem.constraint_matrix(rows)
    n = len(configs)
    with pytest.raises(ConfigError, match=rf"constraints of shape \({n}, {problem.n_constr}\)"):
        searcher.tell(configs, F, None)
    with pytest.raises(ConfigError, match=rf"objectives of shape \({n}, {problem.n_obj}\)"):
        searcher.tell(configs, F[:, :1], G)
    searcher.tell(configs, F, G)  # the checks left the searcher able to take the right values
    assert searcher.ask()
