"""Syne Tune 0.16.0 multi-objective searchers on a table problem, driven offline (no backend).

Driver path: ``syne_tune.optimizer.schedulers.SingleFidelityScheduler`` with
``searcher="regularized_evolution"`` (multi-objective: ``MultiObjectiveRegularizedEvolution``,
MOREA, non-dominated-sort priority, defaults population 100 / sample 10) or
``searcher="random_search"`` (``MultiObjectiveRandomSearcher``), ``do_minimize=True``, one
``choice`` per dimension. The loop is ``suggest()`` → table lookup →
``on_trial_complete(Trial, result)``, one trial at a time, as Syne Tune's local backend would
run it with one worker. Not run: ``EHVI`` (needs BoTorch, a Gaussian-process fit per trial)
and the multi-surrogate searchers (an estimator to configure): see the README.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np


def run(
    method: str,
    X: np.ndarray,
    F: np.ndarray,
    n_options: list[int],
    seed: int,
    budget: int,
) -> np.ndarray:
    """Objective rows of every evaluation of Syne Tune ``method`` ("morea" or "random")."""
    from syne_tune.backend.trial_status import Trial
    from syne_tune.config_space import choice
    from syne_tune.optimizer.schedulers.single_fidelity_scheduler import (
        SingleFidelityScheduler,
    )

    lookup = {tuple(int(v) for v in x): i for i, x in enumerate(X)}
    names = [f"x{d}" for d in range(len(n_options))]
    config_space = {name: choice(list(range(n))) for name, n in zip(names, n_options, strict=True)}
    metrics = [f"f{j}" for j in range(F.shape[1])]
    searcher = {"morea": "regularized_evolution", "random": "random_search"}[method]
    scheduler = SingleFidelityScheduler(
        config_space,
        metrics=metrics,
        do_minimize=True,
        searcher=searcher,
        random_seed=seed,
        searcher_kwargs={"random_seed": seed},  # the scheduler does not pass its seed on
    )
    # Syne Tune's random configs (``sample_random_config``) draw from numpy's global generator,
    # not from the searcher's seeded one: seeding it makes a run repeatable
    np.random.seed(seed)
    calls: list[int] = []
    for trial_id in range(budget):
        suggestion = scheduler.suggest()
        if suggestion is None:
            break
        config = suggestion.config
        i = lookup[tuple(int(config[name]) for name in names)]
        calls.append(i)
        trial = Trial(trial_id=trial_id, config=config, creation_time=datetime.now())
        scheduler.on_trial_complete(trial, {m: float(F[i, j]) for j, m in enumerate(metrics)})
    return F[np.asarray(calls, dtype=np.int64)]
