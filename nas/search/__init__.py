"""Multi-objective search: the Searcher protocol, the run_search loop and a registry of searchers.

Example:
    >>> from nas.search import MetricEvaluator, ResultStore, run_search
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

import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nas.errors import ConfigError, format_choice_error
from nas.lazy import lazy_getattr
from nas.search.objectives import Constraint, Objective, SearchProblem

if TYPE_CHECKING:
    from nas.search.base import Searcher

# Imported on first use (PEP 562): spec validation names searchers without importing pymoo,
# Optuna or scikit-learn.
_LAZY = {
    "ResultStore": "nas.results",
    "MetricEvaluator": "nas.search.base",
    "Searcher": "nas.search.base",
    "SearchResult": "nas.search.base",
    "run_search": "nas.search.base",
    "measure_front": "nas.search.predicted",
    "OptunaSearcher": "nas.search.optuna_search",
    "PortfolioSearcher": "nas.search.portfolio_search",
    "PymooSearcher": "nas.search.pymoo_search",
    "RandomSearcher": "nas.search.random_search",
    "SurrogateSearcher": "nas.search.surrogate_search",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


@dataclass(frozen=True)
class SearcherEntry:
    """A registered searcher: its class (by name, imported when built) and its fixed keywords."""

    class_name: str
    fixed: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cls(self) -> type[Any]:
        return __getattr__(self.class_name)

    def settable(self) -> dict[str, tuple[Any, Any]]:
        """Constructor keywords a spec may set (``[search.options]``): name → (hint, default).

        Only plain values (numbers, strings, booleans, lists of them) are settable; objects
        such as an Optuna storage or sampler are the Python API's.
        """
        hints = typing.get_type_hints(self.cls.__init__)
        found = {}
        for name, parameter in inspect.signature(self.cls.__init__).parameters.items():
            if name in ("self", "problem", "seed", *self.fixed) or parameter.kind not in (
                parameter.KEYWORD_ONLY,
                parameter.POSITIONAL_OR_KEYWORD,
            ):
                continue
            hint = hints.get(name, Any)
            if _plain_hint(hint):
                found[name] = (hint, parameter.default)
        return found


def _plain_hint(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return True
    if origin in (typing.Union, types.UnionType):
        return all(_plain_hint(a) for a in typing.get_args(hint) if a is not type(None))
    if origin in (tuple, Sequence, list):
        return all(_plain_hint(a) for a in typing.get_args(hint) if a is not Ellipsis)
    return hint in (bool, int, float, str)


REGISTRY: dict[str, SearcherEntry] = {
    "pymoo-nsga2": SearcherEntry("PymooSearcher", {"algorithm": "nsga2"}),
    "pymoo-nsga3": SearcherEntry("PymooSearcher", {"algorithm": "nsga3"}),
    "optuna-nsga2": SearcherEntry("OptunaSearcher", {"algorithm": "nsga2"}),
    "optuna-tpe": SearcherEntry("OptunaSearcher", {"algorithm": "tpe"}),
    "optuna-gp": SearcherEntry("OptunaSearcher", {"algorithm": "gp"}),
    "portfolio": SearcherEntry("PortfolioSearcher"),
    "surrogate": SearcherEntry("SurrogateSearcher"),
    "random": SearcherEntry("RandomSearcher"),
}


def names() -> list[str]:
    """Registered searcher names."""
    return sorted(REGISTRY)


def check_options(name: str, options: Mapping[str, Any], *, key: str = "search.options") -> None:
    """Refuse options the searcher ``name`` has no keyword for, or values of the wrong type."""
    from nas.spec_fields import Rule, check_value

    if name not in REGISTRY:
        raise ConfigError(format_choice_error("search.algorithm", name, names()))
    if not options:
        return
    settable = REGISTRY[name].settable()
    for option, value in options.items():
        if option not in settable:
            raise ConfigError(
                f"{key}.{option} is not an option of searcher {name!r}; "
                f"allowed options: {sorted(settable)}"
            )
        hint = settable[option][0]
        alternatives = (
            [a for a in typing.get_args(hint) if a is not type(None)]
            if typing.get_origin(hint) in (typing.Union, types.UnionType)
            else [hint]
        )
        if value is None and len(alternatives) < len(typing.get_args(hint)):
            continue
        errors = []
        for alternative in alternatives:
            try:
                check_value(f"{key}.{option}", _as_tuple(value), _tuple_hint(alternative), Rule())
                break
            except ConfigError as exc:
                errors.append(str(exc))
        else:
            raise ConfigError(errors[0])


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _tuple_hint(hint: Any) -> Any:
    """``Sequence[str]`` is checked as ``tuple[str, ...]`` (specs give lists)."""
    if typing.get_origin(hint) in (Sequence, list):
        return tuple[typing.get_args(hint)[0], ...]  # type: ignore[misc]
    return hint


def make_searcher(
    name: str,
    problem: SearchProblem,
    *,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> Searcher:
    """Build a registered searcher; ``options`` set its constructor keywords (checked first)."""
    options = dict(options or {})
    check_options(name, options)
    entry = REGISTRY[name]
    values = {k: _as_tuple(v) for k, v in options.items()}
    try:
        return entry.cls(problem, seed=seed, **entry.fixed, **values)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise ConfigError(f"search.options: {exc}") from exc
        raise ConfigError(f"search.options={options!r}: {exc}") from exc


__all__ = [
    "REGISTRY",
    "Constraint",
    "MetricEvaluator",
    "Objective",
    "OptunaSearcher",
    "PortfolioSearcher",
    "PymooSearcher",
    "RandomSearcher",
    "ResultStore",
    "SearchProblem",
    "SearchResult",
    "Searcher",
    "SearcherEntry",
    "SurrogateSearcher",
    "check_options",
    "make_searcher",
    "measure_front",
    "names",
    "run_search",
]
