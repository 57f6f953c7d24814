"""Multi-objective search: the Searcher protocol, the run_search loop and a registry of searchers.

Example:
    >>> from nas.space import Choice, SearchSpace
    >>> space = SearchSpace("demo", tuple(Choice(f"x{i}", (0, 1, 2)) for i in range(3)))
    >>> problem = SearchProblem.from_strings(space, ["a:min", "b:min"])
    >>> searcher = make_searcher("random", problem, seed=0)
    >>> def f(cfg):
    ...     return {"a": float(cfg["x0"]), "b": float(2 - cfg["x0"] + cfg["x1"])}
    >>> result = run_search(searcher, MetricEvaluator(f, ("a", "b")), ResultStore(), budget=10)
    >>> len(result.configs)
    10
"""

from __future__ import annotations

from collections.abc import Callable

from nas.errors import ConfigError, format_choice_error
from nas.results import ResultStore
from nas.search.base import MetricEvaluator, Searcher, SearchResult, run_search
from nas.search.objectives import Constraint, Objective, SearchProblem
from nas.search.optuna_search import OptunaSearcher
from nas.search.predicted import measure_front
from nas.search.pymoo_search import PymooSearcher
from nas.search.random_search import RandomSearcher
from nas.search.surrogate_search import SurrogateSearcher

SearcherFactory = Callable[[SearchProblem, int | None], Searcher]


def _pymoo_nsga2(problem: SearchProblem, seed: int | None) -> Searcher:
    return PymooSearcher(problem, algorithm="nsga2", seed=seed)


def _pymoo_nsga3(problem: SearchProblem, seed: int | None) -> Searcher:
    return PymooSearcher(problem, algorithm="nsga3", seed=seed)


def _optuna_nsga2(problem: SearchProblem, seed: int | None) -> Searcher:
    return OptunaSearcher(problem, algorithm="nsga2", seed=seed)


def _optuna_tpe(problem: SearchProblem, seed: int | None) -> Searcher:
    return OptunaSearcher(problem, algorithm="tpe", seed=seed)


def _optuna_gp(problem: SearchProblem, seed: int | None) -> Searcher:
    return OptunaSearcher(problem, algorithm="gp", seed=seed)


def _surrogate(problem: SearchProblem, seed: int | None) -> Searcher:
    return SurrogateSearcher(problem, seed=seed)


def _random(problem: SearchProblem, seed: int | None) -> Searcher:
    return RandomSearcher(problem, seed=seed)


REGISTRY: dict[str, SearcherFactory] = {
    "pymoo-nsga2": _pymoo_nsga2,
    "pymoo-nsga3": _pymoo_nsga3,
    "optuna-nsga2": _optuna_nsga2,
    "optuna-tpe": _optuna_tpe,
    "optuna-gp": _optuna_gp,
    "surrogate": _surrogate,
    "random": _random,
}


def names() -> list[str]:
    """Registered searcher names."""
    return sorted(REGISTRY)


def make_searcher(name: str, problem: SearchProblem, *, seed: int | None = None) -> Searcher:
    """Build a registered searcher with its default settings."""
    if name not in REGISTRY:
        raise ConfigError(format_choice_error("search.algorithm", name, names()))
    return REGISTRY[name](problem, seed)


__all__ = [
    "REGISTRY",
    "Constraint",
    "MetricEvaluator",
    "Objective",
    "OptunaSearcher",
    "PymooSearcher",
    "RandomSearcher",
    "ResultStore",
    "SearchProblem",
    "SearchResult",
    "Searcher",
    "SurrogateSearcher",
    "make_searcher",
    "measure_front",
    "names",
    "run_search",
]
