"""OptunaSearcher: Optuna's multi-objective samplers through ``study.ask`` / ``study.tell``.

Ordered dimensions become an ``IntDistribution`` over the option index (the sampler sees the
order); unordered ones a ``CategoricalDistribution`` over the options. Constraints go through
``Trial.set_constraint`` (Optuna 5's replacement for the samplers' ``constraints_func``, same
``<= 0`` feasible convention); the constrained samplers read them back from each trial.

Resume goes through the ResultStore like every searcher: a fresh in-memory study with the same
seed is replayed from stored results. Pass ``storage`` (e.g.
``JournalStorage(JournalFileBackend(path))``) to also keep Optuna's own log of the trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.samplers import BaseSampler, GPSampler, NSGAIISampler, TPESampler
from optuna.storages import BaseStorage
from optuna.trial import Trial

from nas.errors import ConfigError, format_choice_error
from nas.search.objectives import SearchProblem
from nas.search.optuna_record import quiet_optuna
from nas.space import Choice
from nas.subnet import SubnetConfig

OptunaAlgorithm = Literal["nsga2", "tpe", "gp"]
OPTUNA_ALGORITHMS: tuple[str, ...] = ("nsga2", "tpe", "gp")


class OptunaSearcher:
    """An Optuna study driven by ask/tell.

    Args:
        problem: Space, objectives, constraints.
        algorithm: ``"nsga2"`` (``NSGAIISampler``), ``"tpe"`` (``TPESampler``, multivariate)
            or ``"gp"`` (``GPSampler``: Gaussian-process Bayesian optimisation with log
            expected hypervolume improvement, constrained when the problem has constraints).
            A GP's cost per ask grows with the cube of the trials told, so after
            ``gp_trials`` trials the study hands over to the multivariate ``TPESampler``,
            which reads the same trials.
        seed: Sampler seed; the same seed and the same told values give the same asks.
        batch_size: Trials asked per :meth:`ask` (evaluated in parallel by the loop).
        population_size: NSGA-II population size.
        n_startup_trials: TPE's random start (GP: ``gp_startup_trials``).
        gp_trials: Trials asked from ``GPSampler`` before the hand-over to TPE.
        gp_startup_trials: GP's random start.
        storage: Optuna storage for the study (default: in memory).
        study_name: Name of the study in ``storage``.

    Example:
        >>> from nas.space import Choice, SearchSpace
        >>> space = SearchSpace("demo", tuple(Choice(f"x{i}", (0, 1, 2)) for i in range(3)))
        >>> problem = SearchProblem.from_strings(space, ["a:min", "b:min"])
        >>> searcher = OptunaSearcher(problem, seed=0, batch_size=2)
        >>> len(searcher.ask())
        2
    """

    def __init__(
        self,
        problem: SearchProblem,
        *,
        algorithm: OptunaAlgorithm = "nsga2",
        seed: int | None = None,
        batch_size: int = 1,
        population_size: int = 20,
        n_startup_trials: int = 20,
        gp_trials: int = 100,
        gp_startup_trials: int = 10,
        storage: str | BaseStorage | None = None,
        study_name: str | None = None,
    ) -> None:
        if algorithm not in OPTUNA_ALGORITHMS:
            raise ConfigError(format_choice_error("algorithm", algorithm, list(OPTUNA_ALGORITHMS)))
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be >= 1")
        self._problem = problem
        self._space = problem.space
        sampler: BaseSampler
        if algorithm == "nsga2":
            if population_size < 2:
                raise ConfigError(f"population_size={population_size!r} must be >= 2")
            sampler = NSGAIISampler(population_size=population_size, seed=seed)
        elif algorithm == "gp":
            if gp_trials < 1:
                raise ConfigError(f"gp_trials={gp_trials!r} must be >= 1")
            sampler = GPSampler(seed=seed, n_startup_trials=gp_startup_trials)
        else:
            sampler = TPESampler(
                seed=seed,
                multivariate=True,
                n_startup_trials=n_startup_trials,
            )
        self._handover: tuple[int, BaseSampler] | None = None
        if algorithm == "gp":
            tpe = TPESampler(seed=seed, multivariate=True, n_startup_trials=n_startup_trials)
            self._handover = (gp_trials, tpe)
        with quiet_optuna():  # no "A new study created" line beside the platform's own log
            self._study = optuna.create_study(
                storage=storage,
                sampler=sampler,
                study_name=study_name,
                directions=["minimize"] * problem.n_obj,
                load_if_exists=study_name is not None,
            )
        self._distributions: dict[str, BaseDistribution] = {
            d.name: IntDistribution(0, len(d.options) - 1)
            if d.ordered
            else CategoricalDistribution(d.options)
            for d in cast("tuple[Choice, ...]", self._space.dims)  # option indices: Choice only
        }
        self._batch_size = batch_size
        self._constraint_names = [
            f"{c.key}{op}"
            for c in problem.constraints
            for op, b in (("<=", c.upper), (">=", c.lower))
            if b is not None
        ]
        self._pending: list[Trial] = []

    @property
    def problem(self) -> SearchProblem:
        return self._problem

    @property
    def done(self) -> bool:
        return False

    @property
    def study(self) -> optuna.Study:
        """The wrapped study (for inspection and Optuna's visualisations)."""
        return self._study

    def _decode(self, params: dict[str, object]) -> SubnetConfig:
        values = []
        for d in cast("tuple[Choice, ...]", self._space.dims):  # option indices: Choice only
            value = params[d.name]
            values.append((d.name, d.options[int(value)] if d.ordered else value))  # type: ignore[call-overload]
        return self._space.validate(SubnetConfig(tuple(values)))  # type: ignore[arg-type]

    def ask(self) -> list[SubnetConfig]:
        if self._pending:
            raise ConfigError("ask() called again before the last batch was told")
        if self._handover is not None and len(self._study.trials) >= self._handover[0]:
            self._study.sampler = self._handover[1]
            self._handover = None
        self._pending = [
            self._study.ask(fixed_distributions=self._distributions)
            for _ in range(self._batch_size)
        ]
        return [self._decode(t.params) for t in self._pending]

    def tell(
        self,
        configs: Sequence[SubnetConfig],
        objectives: np.ndarray,
        constraints: np.ndarray | None = None,
    ) -> None:
        n = len(configs)
        if n > len(self._pending) or [self._decode(t.params) for t in self._pending[:n]] != list(
            configs
        ):
            raise ConfigError("tell() must receive the configs of the last ask(), in order")
        F, G = self._problem.told_matrices(n, objectives, constraints)
        for i, trial in enumerate(self._pending[:n]):
            if G is not None:
                for name, g in zip(self._constraint_names, G[i], strict=True):
                    trial.set_constraint(name, float(g))
            self._study.tell(trial, [float(f) for f in F[i]])
        for trial in self._pending[n:]:  # cut at the budget: never evaluated
            self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self._pending = []
