"""The measured Pareto front of a run: non-dominated among everything measured, feasible.

A front is only as true as the set it is drawn from. :func:`measured_front` takes every subnet
with a measured value for each metric the problem reads (the measure stage's samples and the
re-measured search front alike), keeps those whose *measured* values satisfy the constraints and
returns the non-dominated ones. When nothing measured is feasible, :class:`InfeasibleError` says
so in one line, naming the constraint and the closest measured subnet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nas import pareto
from nas.errors import ConfigError
from nas.pareto import non_dominated
from nas.search.objectives import Constraint, SearchProblem
from nas.subnet import SubnetConfig


class InfeasibleError(ConfigError):
    """No measured subnet satisfies the constraints (the CLI exits 2 with this line)."""


@dataclass(frozen=True)
class MeasuredSubnet:
    """One subnet and its measured metrics, keyed ``metric`` or ``metric@target``."""

    config: SubnetConfig
    metrics: Mapping[str, float]


def complete(problem: SearchProblem, subnets: Sequence[MeasuredSubnet]) -> list[MeasuredSubnet]:
    """The subnets measured on every metric the problem reads (objectives and constraints)."""
    keys = problem.metric_keys
    return [s for s in subnets if all(k in s.metrics for k in keys)]


def feasible_mask(problem: SearchProblem, subnets: Sequence[MeasuredSubnet]) -> np.ndarray:
    """Which subnets satisfy every constraint on their measured values."""
    G = problem.constraint_matrix([s.metrics for s in subnets])
    if G is None:
        return np.ones(len(subnets), dtype=bool)
    return np.all(G <= 0, axis=1)


def _describe_closest(problem: SearchProblem, subnets: Sequence[MeasuredSubnet]) -> str:
    G = problem.constraint_matrix([s.metrics for s in subnets])
    assert G is not None
    # Scale each column by its bound so that violations of different units compare.
    bounds = np.array(
        [
            abs(b) if b else 1.0
            for c in problem.constraints
            for b in (c.upper, c.lower)
            if b is not None
        ]
    )
    excess = np.clip(G, 0, None) / bounds
    best = int(np.argmin(excess.sum(axis=1)))
    subnet = subnets[best]
    broken = [
        f"{c.key}={subnet.metrics[c.key]:.4g}"
        for c in problem.constraints
        if any(g > 0 for g in c.violations(float(subnet.metrics[c.key])))
    ]
    return f"closest measured subnet {subnet.config.key} has {', '.join(broken)}"


def measured_front(
    problem: SearchProblem, subnets: Sequence[MeasuredSubnet]
) -> list[MeasuredSubnet]:
    """The feasible non-dominated subnets, ordered by the first objective (best first).

    Raises:
        InfeasibleError: no measured subnet satisfies the constraints; names each constraint
            and the closest subnet.
        ConfigError: nothing has been measured on every metric of the problem.
    """
    candidates = complete(problem, subnets)
    if not candidates:
        raise ConfigError(
            f"no subnet of the run was measured on every metric {list(problem.metric_keys)}"
        )
    mask = feasible_mask(problem, candidates)
    if not mask.any():
        constraints = " and ".join(_constraint_text(c) for c in problem.constraints)
        raise InfeasibleError(
            f"no measured subnet satisfies search.constraints {constraints} "
            f"({len(candidates)} measured); {_describe_closest(problem, candidates)}"
        )
    feasible = [s for s, ok in zip(candidates, mask, strict=True) if ok]
    F = problem.objective_matrix([s.metrics for s in feasible])
    front = [feasible[i] for i in non_dominated(F)]
    first = problem.objectives[0]
    return sorted(front, key=lambda s: first.sign * float(s.metrics[first.key]))


def _constraint_text(constraint: Constraint) -> str:
    parts = []
    if constraint.upper is not None:
        parts.append(f"{constraint.key} <= {constraint.upper:g}")
    if constraint.lower is not None:
        parts.append(f"{constraint.key} >= {constraint.lower:g}")
    return " and ".join(parts)


def nondomination_ranks(problem: SearchProblem, subnets: Sequence[MeasuredSubnet]) -> np.ndarray:
    """Rank of each subnet in non-dominated sorting on measured objectives (0 = the front)."""
    return pareto.nondomination_ranks(problem.objective_matrix([s.metrics for s in subnets]))


def thin(front: Sequence[MeasuredSubnet], k: int) -> list[MeasuredSubnet]:
    """At most ``k`` subnets spread evenly along the front, both ends kept."""
    if len(front) <= k:
        return list(front)
    picks = np.unique(np.linspace(0, len(front) - 1, k).round().astype(int))
    return [front[i] for i in picks]
