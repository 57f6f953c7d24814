"""DyNAS-T 1.6.0 LINAS and Evolutionary on a table problem, through their public classes.

Driver path: ``dynast.search.search_tactic.LINAS`` / ``Evolutionary`` with
``supernet="bootstrapnas_image_classification"``, DyNAS-T's extension point for user
supernets: ``bootstrapnas_supernetwork`` is an object with ``get_search_space`` /
``get_config_from_pymoo`` / ``activate_config`` / ``get_active_subnet`` (here: the option-index
row of the table), and ``metric_eval_fns`` gives the ``accuracy_top1``, ``latency``, ``macs``
and ``params`` measurements (here: table lookups). Nothing of DyNAS-T is changed; its defaults
hold (population 50, LINAS inner loop of 5,000 predicted evaluations with its own Ridge/SVR
predictors, NSGA-II for two objectives, U-NSGA-III for three).

Objective slots: ``accuracy_top1`` = 1 − f0 (DyNAS-T maximises it), ``latency`` = f1 and, for
three objectives, ``params`` = f2 (``macs`` = f2 too, measured but not optimised). The tactics
end by converting their last population to BootstrapNAS's own format, which imports ``nncf``
(not installed); by then every evaluation has run, and the driver reads those, not that value.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import joblib
import numpy as np

from benchmarks.peers import standins


class _Subnet:
    """What ``get_active_subnet`` returns: the option-index row (``.to(device)`` is a no-op)."""

    def __init__(self, row: tuple[int, ...]) -> None:
        self.row = row

    def to(self, device: str) -> _Subnet:
        return self


class TableSupernet:
    """DyNAS-T's user-supernet interface over the option indices of a table problem."""

    def __init__(self, n_options: list[int]) -> None:
        self.n_options = n_options
        self._active: tuple[int, ...] | None = None

    def get_search_space(self) -> dict[str, Any]:
        return {"width": {i: list(range(n)) for i, n in enumerate(self.n_options)}}

    def get_config_from_pymoo(self, pymoo_vector: list[int]) -> tuple[int, ...]:
        return tuple(int(np.rint(v)) for v in pymoo_vector)

    def activate_config(self, config: tuple[int, ...]) -> None:
        self._active = config

    def get_active_subnet(self) -> _Subnet:
        assert self._active is not None
        return _Subnet(self._active)


def run(
    method: str,
    X: np.ndarray,
    F: np.ndarray,
    n_options: list[int],
    seed: int,
    budget: int,
) -> np.ndarray:
    """Objective rows of every evaluation of DyNAS-T ``method`` ("linas" or "evolutionary")."""
    standins.install()
    import logging

    from dynast.search.search_tactic import LINAS, Evolutionary
    from dynast.utils import log

    log.setLevel(logging.WARNING)

    lookup = {tuple(int(v) for v in x): i for i, x in enumerate(X)}
    calls: list[int] = []

    def accuracy(model: _Subnet) -> float:
        i = lookup[model.row]
        calls.append(i)
        return float(1.0 - F[i, 0])

    def latency(model: _Subnet) -> tuple[float, float]:
        return float(F[lookup[model.row], 1]), 0.0

    def third(model: _Subnet) -> float:
        i = lookup[model.row]
        return float(F[i, 2]) if F.shape[1] > 2 else 0.0

    metrics = ["accuracy_top1", "latency"] + (["params"] if F.shape[1] > 2 else [])
    cls = {"linas": LINAS, "evolutionary": Evolutionary}[method]
    with tempfile.TemporaryDirectory() as tmp:
        tactic = cls(
            supernet="bootstrapnas_image_classification",
            optimization_metrics=metrics,
            measurements=["accuracy_top1", "latency", "macs", "params"],
            num_evals=budget,
            results_path=os.path.join(tmp, "results.csv"),
            seed=seed,
            bootstrapnas_supernetwork=TableSupernet(n_options),
            metric_eval_fns={
                "accuracy_top1": accuracy,
                "latency": latency,
                "macs": third,
                "params": third,
            },
        )
        try:
            # sequential joblib: DyNAS-T's predictor grid searches ask for every core
            # (``n_jobs=-1``); on the benchmark's one worker per core that only adds process
            # start-ups. The fits and their results are the same.
            with joblib.parallel_config(backend="sequential"):
                tactic.search()
        except ModuleNotFoundError as exc:
            # the search has finished; only the conversion of the returned population to
            # BootstrapNAS's format (which needs nncf) fails, and that value is not used
            if exc.name != "nncf" or len(calls) < budget:
                raise
    return F[np.asarray(calls[:budget], dtype=np.int64)]
