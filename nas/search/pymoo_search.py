"""PymooSearcher: pymoo's NSGA-II / NSGA-III through their ask-and-tell interface.

Follows pymoo's ``examples/algorithms/ask_and_tell.py``: ``algorithm.setup(problem, seed=...)``,
``ask()`` → decode → (the loop evaluates) → ``Evaluator().eval(StaticProblem(problem, F=F, G=G),
pop)`` → ``tell(infills=pop)``. Variables are option indices with ``IntegerRandomSampling``,
and SBX / PM on floats rounded back by ``RoundingRepair`` (pymoo's integer recipe).

Duplicate elimination is pymoo's ``DefaultDuplicateElimination`` widened to treat every config
already told as a duplicate, so mating keeps producing configs that cost a real evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.moo.nsga3 import NSGA3
from pymoo.core.algorithm import Algorithm
from pymoo.core.duplicate import DefaultDuplicateElimination
from pymoo.core.evaluator import Evaluator as PymooEvaluator
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.termination import NoTermination
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.problems.static import StaticProblem
from pymoo.util.ref_dirs import get_reference_directions

from nas.errors import ConfigError, format_choice_error
from nas.search.objectives import SearchProblem
from nas.subnet import SubnetConfig

PymooAlgorithm = Literal["nsga2", "nsga3"]
PYMOO_ALGORITHMS: tuple[str, ...] = ("nsga2", "nsga3")


class _SeenDuplicateElimination(DefaultDuplicateElimination):
    """pymoo's distance-based elimination, plus: an index vector already told is a duplicate."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[bytes] = set()

    def _do(self, pop, other, is_duplicate):  # type: ignore[no-untyped-def]
        is_duplicate = super()._do(pop, other, is_duplicate)
        X = np.rint(np.asarray(pop.get("X"), dtype=float)).astype(np.int64)
        for i, row in enumerate(X):
            if row.tobytes() in self.seen:
                is_duplicate[i] = True
        return is_duplicate


class PymooSearcher:
    """A pymoo multi-objective GA over the option indices of a search space.

    Args:
        problem: Space, objectives, constraints.
        algorithm: ``"nsga2"`` or ``"nsga3"`` (pymoo's AGE-MOEA needs numba, not installed).
        pop_size: Population (and offspring batch) size.
        seed: Seeds pymoo's generator; the same seed and the same told values give the same asks.
        crossover_eta, mutation_eta: SBX / PM distribution indices (small = wide jumps, which
            suits few options per dimension).
        crossover_prob: Probability that a pair mates by SBX.
        mutation_prob: Per-variable mutation probability (``None``: ``1 / n_dims``).
        skip_seen: Treat configs already told as duplicates (no re-evaluation of the same point).

    Example:
        >>> from nas.space import Choice, SearchSpace
        >>> space = SearchSpace("demo", tuple(Choice(f"x{i}", (0, 1, 2)) for i in range(3)))
        >>> problem = SearchProblem.from_strings(space, ["a:min", "b:min"])
        >>> searcher = PymooSearcher(problem, pop_size=4, seed=0)
        >>> len(searcher.ask())
        4
    """

    def __init__(
        self,
        problem: SearchProblem,
        *,
        algorithm: PymooAlgorithm = "nsga2",
        pop_size: int = 20,
        seed: int | None = None,
        crossover_eta: float = 3.0,
        crossover_prob: float = 0.9,
        mutation_eta: float = 3.0,
        mutation_prob: float | None = None,
        skip_seen: bool = True,
    ) -> None:
        if algorithm not in PYMOO_ALGORITHMS:
            raise ConfigError(format_choice_error("algorithm", algorithm, list(PYMOO_ALGORITHMS)))
        if pop_size < 2:
            raise ConfigError(f"pop_size={pop_size!r} must be >= 2")
        self._problem = problem
        self._space = problem.space
        n_var = len(self._space.dims)
        self._pymoo_problem = Problem(
            n_var=n_var,
            n_obj=problem.n_obj,
            n_ieq_constr=problem.n_constr,
            xl=np.zeros(n_var),
            xu=(self._space.n_options - 1).astype(float),
            vtype=int,
        )
        self._dedup = _SeenDuplicateElimination() if skip_seen else DefaultDuplicateElimination()
        operators = {
            "sampling": IntegerRandomSampling(),
            "crossover": SBX(prob=crossover_prob, eta=crossover_eta, vtype=float),
            "mutation": PM(prob=1.0, prob_var=mutation_prob, eta=mutation_eta, vtype=float),
            "repair": RoundingRepair(),
            "eliminate_duplicates": self._dedup,
        }
        self._algorithm = _make_algorithm(algorithm, problem.n_obj, pop_size, operators)
        self._algorithm.setup(self._pymoo_problem, termination=NoTermination(), seed=seed)
        self._pending: Population | None = None
        self._done = False

    @property
    def problem(self) -> SearchProblem:
        return self._problem

    @property
    def done(self) -> bool:
        return self._done

    @property
    def algorithm(self) -> Algorithm:
        """The wrapped pymoo algorithm (for inspection; drive it through ask/tell)."""
        return self._algorithm

    def ask(self) -> list[SubnetConfig]:
        if self._done:
            return []
        pop = self._algorithm.ask()
        if pop is None or len(pop) == 0:
            self._done = True  # mating found no config that has not been evaluated
            return []
        self._pending = pop
        return [self._space.decode(x) for x in pop.get("X")]

    def tell(
        self,
        configs: Sequence[SubnetConfig],
        objectives: np.ndarray,
        constraints: np.ndarray | None = None,
    ) -> None:
        if self._pending is None:
            raise ConfigError("tell() called without a pending ask()")
        pop = self._pending
        n = len(configs)
        asked = [self._space.decode(x) for x in pop.get("X")[:n]]
        if n > len(pop) or asked != list(configs):
            raise ConfigError("tell() must receive the configs of the last ask(), in order")
        if n == 0:
            return
        pop = pop[:n]
        F = np.asarray(objectives, dtype=float).reshape(n, self._problem.n_obj)
        values = {"F": F}
        if self._problem.n_constr:
            if constraints is None:
                raise ConfigError(
                    f"tell() needs constraints of shape ({n}, {self._problem.n_constr})"
                )
            values["G"] = np.asarray(constraints, dtype=float).reshape(n, self._problem.n_constr)
        PymooEvaluator().eval(StaticProblem(self._pymoo_problem, **values), pop)
        self._algorithm.tell(infills=pop)
        self._pending = None
        X = np.rint(np.asarray(pop.get("X"), dtype=float)).astype(np.int64)
        if isinstance(self._dedup, _SeenDuplicateElimination):
            self._dedup.seen.update(row.tobytes() for row in X)


def _make_algorithm(
    name: str, n_obj: int, pop_size: int, operators: dict[str, object]
) -> Algorithm:
    if name == "nsga2":
        return NSGA2(pop_size=pop_size, **operators)
    n_partitions = max(1, pop_size - 1) if n_obj == 2 else 12 if n_obj == 3 else 4
    ref_dirs = get_reference_directions("das-dennis", n_obj, n_partitions=n_partitions)
    return NSGA3(ref_dirs=ref_dirs, pop_size=max(pop_size, len(ref_dirs)), **operators)
