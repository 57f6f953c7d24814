"""Objectives and constraints as data, and the search problem they define over a space.

Metric keys name a metric and, where it depends on hardware, a target: ``"top1"``,
``"latency_ms@cpu_int8"``. Objectives parse from ``"top1:max"`` or ``"latency_ms@cpu_int8:min"``;
constraints from ``"latency_ms@cpu_fp32 <= 5"`` or ``"top1 >= 0.7"``. Searchers always minimise:
:meth:`SearchProblem.objective_matrix` negates maximised metrics, and
:meth:`SearchProblem.constraint_matrix` gives pymoo's ``G <= 0`` form (Optuna's convention too).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from nas.errors import ConfigError, format_choice_error
from nas.space import SearchSpace

Direction = Literal["min", "max"]
DIRECTIONS: tuple[str, ...] = ("max", "min")
NO_TARGET = "any"
"""Store target of metrics that do not depend on hardware (``top1``, ``params_m``)."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_CONSTRAINT = re.compile(r"^\s*(?P<key>[^<>=\s]+)\s*(?P<op><=|>=)\s*(?P<bound>\S+)\s*$")


def metric_key(metric: str, target: str | None) -> str:
    """``"metric@target"``, or ``"metric"`` when the metric has no target."""
    return metric if target is None else f"{metric}@{target}"


def split_metric_key(key: str) -> tuple[str, str | None]:
    """Inverse of :func:`metric_key`; ConfigError on a malformed key."""
    metric, sep, target = key.strip().partition("@")
    if not _NAME.match(metric) or (sep and not _NAME.match(target)):
        raise ConfigError(
            f"metric key {key!r} is not of the form 'metric' or 'metric@target' "
            "(letters, digits, '_', '.', '-')"
        )
    return metric, (target if sep else None)


# Units of the built-in metrics, for axes and tables (a metric not listed has none).
METRIC_UNITS: dict[str, str] = {
    "top1": "%",
    "top1_test": "%",
    "latency_ms": "ms",
    "macs_m": "M MACs",
    "params_m": "M params",
    "model_size_bytes": "bytes",
}


def with_unit(key: str) -> str:
    """A metric key with its unit, for an axis label.

    >>> with_unit("latency_ms@cpu_fp32"), with_unit("top1"), with_unit("my_score")
    ('latency_ms@cpu_fp32 (ms)', 'top1 (%)', 'my_score')
    """
    unit = METRIC_UNITS.get(key.split("@")[0].split(".")[0])
    return f"{key} ({unit})" if unit else key


@dataclass(frozen=True)
class Objective:
    """One metric to optimise.

    Example:
        >>> Objective.parse("latency_ms@cpu_int8:min")
        Objective(metric='latency_ms', target='cpu_int8', direction='min')
    """

    metric: str
    target: str | None = None
    direction: Direction = "min"

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ConfigError(
                format_choice_error(
                    f"objective {self.key!r} direction", self.direction, DIRECTIONS
                )
            )
        split_metric_key(self.key)

    @property
    def key(self) -> str:
        return metric_key(self.metric, self.target)

    @property
    def sign(self) -> float:
        """Factor that turns the metric into a minimised value."""
        return -1.0 if self.direction == "max" else 1.0

    @classmethod
    def parse(cls, text: str) -> Objective:
        """From ``"metric[@target]:min|max"``."""
        key, sep, direction = text.strip().rpartition(":")
        if not sep:
            raise ConfigError(
                f"objective {text!r} must be 'metric[@target]:direction' with direction one of "
                f"{list(DIRECTIONS)}"
            )
        metric, target = split_metric_key(key)
        direction = direction.strip()
        if direction not in DIRECTIONS:
            raise ConfigError(
                format_choice_error(f"objective {key!r} direction", direction, list(DIRECTIONS))
            )
        return cls(metric, target, direction)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Constraint:
    """A bound on a metric: ``lower <= value <= upper`` (at least one bound).

    Example:
        >>> Constraint.parse("latency_ms@cpu_fp32 <= 5")
        Constraint(metric='latency_ms', target='cpu_fp32', upper=5.0, lower=None)
    """

    metric: str
    target: str | None = None
    upper: float | None = None
    lower: float | None = None

    def __post_init__(self) -> None:
        split_metric_key(self.key)
        if self.upper is None and self.lower is None:
            raise ConfigError(f"constraint on {self.key!r} needs an upper or a lower bound")
        for name, bound in (("upper", self.upper), ("lower", self.lower)):
            if bound is not None and not math.isfinite(bound):
                raise ConfigError(f"constraint {self.key!r} {name}={bound!r} must be finite")
        if self.upper is not None and self.lower is not None and self.lower > self.upper:
            raise ConfigError(
                f"constraint {self.key!r} has lower={self.lower} > upper={self.upper}; "
                "no value can satisfy it"
            )

    @property
    def key(self) -> str:
        return metric_key(self.metric, self.target)

    @property
    def n_values(self) -> int:
        """Number of ``G <= 0`` columns (one per bound)."""
        return int(self.upper is not None) + int(self.lower is not None)

    def violations(self, value: float) -> list[float]:
        """``G`` entries (``<= 0`` is feasible): ``value - upper`` and/or ``lower - value``."""
        out = []
        if self.upper is not None:
            out.append(value - self.upper)
        if self.lower is not None:
            out.append(self.lower - value)
        return out

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """From ``"metric[@target] <= bound"`` or ``"metric[@target] >= bound"``."""
        match = _CONSTRAINT.match(text)
        if match is None:
            raise ConfigError(
                f"constraint {text!r} must be 'metric[@target] <= bound' or "
                "'metric[@target] >= bound'"
            )
        metric, target = split_metric_key(match["key"])
        try:
            bound = float(match["bound"])
        except ValueError:
            raise ConfigError(
                f"constraint {text!r}: bound {match['bound']!r} is not a number"
            ) from None
        if match["op"] == "<=":
            return cls(metric, target, upper=bound)
        return cls(metric, target, lower=bound)


def _told_matrix(name: str, values: ArrayLike, n: int, columns: int) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.size != n * columns:
        raise ConfigError(f"tell() needs {name} of shape ({n}, {columns}), got {arr.shape}")
    return arr.reshape(n, columns)


@dataclass(frozen=True)
class SearchProblem:
    """A space, two or more objectives and optional constraints: what a searcher solves.

    Example:
        >>> from nas.space import Choice
        >>> space = SearchSpace("demo", (Choice("k", (3, 5, 7)),))
        >>> problem = SearchProblem.from_strings(space, ["top1:max", "latency_ms@cpu:min"],
        ...                                      ["latency_ms@cpu <= 5"])
        >>> problem.metric_keys
        ('top1', 'latency_ms@cpu')
    """

    space: SearchSpace
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...] = ()

    def __post_init__(self) -> None:
        if len(self.objectives) < 2:
            raise ConfigError(
                f"objectives={[o.key for o in self.objectives]} must name 2 or more metrics "
                "(this is a multi-objective search)"
            )
        keys = [o.key for o in self.objectives]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"objectives={keys} name the same metric twice")

    @classmethod
    def from_strings(
        cls, space: SearchSpace, objectives: Iterable[str], constraints: Iterable[str] = ()
    ) -> SearchProblem:
        return cls(
            space,
            tuple(Objective.parse(o) for o in objectives),
            tuple(Constraint.parse(c) for c in constraints),
        )

    @property
    def n_obj(self) -> int:
        return len(self.objectives)

    @property
    def n_constr(self) -> int:
        """Number of ``G`` columns (a two-sided constraint gives two)."""
        return sum(c.n_values for c in self.constraints)

    @property
    def metric_keys(self) -> tuple[str, ...]:
        """Every metric key the problem reads, objectives first, without repeats."""
        keys = [o.key for o in self.objectives]
        keys += [c.key for c in self.constraints if c.key not in keys]
        return tuple(dict.fromkeys(keys))

    def check_metrics(self, available: Iterable[str]) -> None:
        """ConfigError naming the first objective/constraint key nobody provides."""
        allowed = sorted(set(available))
        for role, key in [("objective", o.key) for o in self.objectives] + [
            ("constraint", c.key) for c in self.constraints
        ]:
            if key not in allowed:
                raise ConfigError(format_choice_error(f"{role} metric", key, allowed))

    def objective_matrix(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """``F`` (n, n_obj), minimised: maximised metrics are negated."""
        return np.array(
            [[o.sign * float(row[o.key]) for o in self.objectives] for row in rows],
            dtype=float,
        ).reshape(len(rows), self.n_obj)

    def constraint_matrix(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray | None:
        """``G`` (n, n_constr) with ``G <= 0`` feasible, or ``None`` without constraints."""
        if not self.constraints:
            return None
        return np.array(
            [
                [g for c in self.constraints for g in c.violations(float(row[c.key]))]
                for row in rows
            ],
            dtype=float,
        ).reshape(len(rows), self.n_constr)

    def told_matrices(
        self, n: int, objectives: ArrayLike, constraints: ArrayLike | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``F`` (n, n_obj) and ``G`` (n, n_constr, ``None`` without constraints) of a ``tell()``.

        Every searcher's ``tell()`` takes the same arguments; one check here gives them all the
        same error, naming the expected shape, when a matrix is missing or misshapen.
        """
        F = _told_matrix("objectives", objectives, n, self.n_obj)
        if not self.n_constr:
            return F, None
        if constraints is None:
            raise ConfigError(f"tell() needs constraints of shape ({n}, {self.n_constr})")
        return F, _told_matrix("constraints", constraints, n, self.n_constr)

    def to_minimised(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """A point in natural units (one value per objective) → minimised coordinates."""
        arr = np.asarray(values, dtype=float)
        if arr.shape != (self.n_obj,):
            raise ConfigError(
                f"reference_point has shape {arr.shape}, expected ({self.n_obj},) for objectives "
                f"{[o.key for o in self.objectives]}"
            )
        return arr * np.array([o.sign for o in self.objectives])

    def from_minimised(self, F: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`objective_matrix` on a matrix ``F``."""
        return np.asarray(F, dtype=float) * np.array([o.sign for o in self.objectives])
