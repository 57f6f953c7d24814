"""Predictor pipelines: features of encoded configs → a stock scikit-learn regressor.

Every kind is a plain :class:`~sklearn.pipeline.Pipeline`, so ``fit``, ``predict``, ``clone``,
``get_params`` and :class:`~sklearn.model_selection.GridSearchCV` work unchanged. The only class
of our own is :class:`MeanStdEnsemble`, a :class:`~sklearn.ensemble.VotingRegressor` whose
``predict`` can also return the spread of its members (``return_std=True``); ``Pipeline.predict``
forwards that keyword to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import kendalltau
from sklearn.base import RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import (
    GradientBoostingRegressor,
    RandomForestRegressor,
    VotingRegressor,
)
from sklearn.linear_model import Ridge
from sklearn.metrics import make_scorer
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from nas.errors import ConfigError, format_choice_error
from nas.space import SearchSpace
from predictors.features import Encoding, cell_edges, make_features


class MeanStdEnsemble(VotingRegressor):
    """Average of several regressors; ``predict(X, return_std=True)`` adds their spread.

    The standard deviation across members is a cheap uncertainty estimate: members disagree
    where the training data says little. The constructor is :class:`VotingRegressor`'s.

    Example:
        >>> from sklearn.linear_model import Ridge
        >>> from sklearn.tree import DecisionTreeRegressor
        >>> X, y = np.arange(20.0).reshape(-1, 1), np.arange(20.0) ** 1.5
        >>> ens = MeanStdEnsemble([("ridge", Ridge()), ("tree", DecisionTreeRegressor())])
        >>> mean, std = ens.fit(X, y).predict(X[:2], return_std=True)
        >>> mean.shape, bool((std >= 0).all())
        ((2,), True)
    """

    def predict(self, X: Any, return_std: bool = False) -> Any:  # noqa: D417
        """Mean prediction of the members, and their (weighted) standard deviation if asked.

        Args:
            return_std: Also return the per-sample standard deviation across members.
        """
        check_is_fitted(self)
        members = self.transform(X)  # (n_samples, n_members)
        weights = None
        if self.weights is not None:
            weights = np.asarray(
                [
                    w
                    for (_, est), w in zip(self.estimators, self.weights, strict=True)
                    if est != "drop"
                ]
            )
        mean = np.average(members, axis=1, weights=weights)
        if not return_std:
            return mean
        variance = np.average((members - mean[:, None]) ** 2, axis=1, weights=weights)
        return mean, np.sqrt(variance)


def _ridge(random_state: int) -> RegressorMixin:
    return Ridge(alpha=1.0)


def _rf(random_state: int) -> RegressorMixin:
    return RandomForestRegressor(
        n_estimators=100, min_samples_leaf=1, max_features=0.5, random_state=random_state
    )


def _gbr(random_state: int) -> RegressorMixin:
    return GradientBoostingRegressor(
        n_estimators=300,
        learning_rate=0.05,
        max_depth=3,
        subsample=0.8,
        random_state=random_state,
    )


def _mlp(random_state: int) -> RegressorMixin:
    return TransformedTargetRegressor(
        regressor=MLPRegressor(
            hidden_layer_sizes=(128, 128),
            alpha=1e-3,
            learning_rate_init=1e-3,
            max_iter=1000,
            early_stopping=False,
            random_state=random_state,
        ),
        transformer=StandardScaler(),
    )


def _ensemble(random_state: int) -> RegressorMixin:
    return MeanStdEnsemble(
        [
            ("ridge", _ridge(random_state)),
            ("gbr", _gbr(random_state)),
            ("mlp", _mlp(random_state)),
        ]
    )


REGRESSORS: dict[str, Callable[[int], RegressorMixin]] = {
    "ridge": _ridge,
    "rf": _rf,
    "gbr": _gbr,
    "mlp": _mlp,
    "ensemble": _ensemble,
}
"""Predictor kinds: name → factory of the final regressor given ``random_state``."""

PARAM_GRIDS: dict[str, dict[str, list[object]]] = {
    "ridge": {"regressor__alpha": [0.001, 0.01, 0.1, 1.0, 10.0]},
    "rf": {"regressor__max_features": [0.33, 0.5, 1.0], "regressor__min_samples_leaf": [1, 3]},
    "gbr": {"regressor__max_depth": [2, 3, 4], "regressor__n_estimators": [200, 500]},
    "mlp": {"regressor__regressor__alpha": [1e-4, 1e-3, 1e-2]},
    "ensemble": {"regressor__ridge__alpha": [0.1, 1.0, 10.0]},
}
"""Small grids for :func:`search_predictor`, in ``Pipeline`` parameter names."""

CELL_PARAM_GRIDS: dict[str, dict[str, list[object]]] = {
    "ridge": {"regressor__alpha": [0.01, 0.1, 1.0, 10.0, 30.0, 100.0]},
}
"""Grids that replace :data:`PARAM_GRIDS` on cell spaces: with the per-operation counts of
:func:`predictors.features.make_features`, a strong ridge penalty shrinks the per-edge one-hots
towards a per-operation cost, which cross-validation on NAS-Bench-201 latency often prefers."""

UNCERTAINTY_KINDS: frozenset[str] = frozenset({"ensemble"})


def kinds() -> list[str]:
    """Registered predictor kinds."""
    return sorted(REGRESSORS)


def _check_kind(kind: str) -> None:
    if kind not in REGRESSORS:
        raise ConfigError(format_choice_error("kind", kind, kinds()))


def make_predictor(
    space: SearchSpace,
    *,
    kind: str = "gbr",
    encoding: Encoding = "ordinal",
    cell_pruning: bool | None = None,
    cell_paths: bool = False,
    random_state: int = 0,
    user_features: str | None = None,
) -> Pipeline:
    """Unfitted pipeline ``features → regressor`` taking ``space.encode_many(configs)`` as X.

    Args:
        space: Search space of the configs.
        kind: One of :func:`kinds`.
        encoding: Feature encoding, see :func:`predictors.features.make_features`.
        cell_pruning: Effective-operation features for cell spaces (default: automatic).
        cell_paths: Path-count and longest-path features for cell spaces (default: off).
        random_state: Seed of the regressor.
        user_features: A hook of :mod:`predictors.user_features` whose columns are appended
            (every kind accepts it).

    Example:
        >>> import search_spaces
        >>> space = search_spaces.get("nas_bench_201")
        >>> configs = space.sample_many(40, np.random.default_rng(0))
        >>> X = space.encode_many(configs)
        >>> y = (X == 3).sum(axis=1).astype(float)  # number of 3x3 convolutions
        >>> pipe = make_predictor(space, kind="ridge").fit(X, y)
        >>> bool(np.abs(pipe.predict(X) - y).max() < 0.5)
        True
    """
    _check_kind(kind)
    return Pipeline(
        [
            (
                "features",
                make_features(
                    space,
                    encoding=encoding,
                    cell_pruning=cell_pruning,
                    cell_paths=cell_paths,
                    user_features=user_features,
                ),
            ),
            ("regressor", REGRESSORS[kind](random_state)),
        ]
    )


def kendall_tau_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Kendall τ-b of predictions against truth (0 where it is undefined)."""
    tau = kendalltau(y_true, y_pred).statistic
    return 0.0 if not np.isfinite(tau) else float(tau)


def search_predictor(  # noqa: D417
    space: SearchSpace,
    X: np.ndarray,
    y: np.ndarray,
    *,
    kind: str = "gbr",
    encoding: Encoding = "ordinal",
    random_state: int = 0,
    cv: int = 3,
    scoring: str | Callable[..., float] | None = None,
    user_features: str | None = None,
) -> GridSearchCV:
    """Fit :class:`GridSearchCV` over :data:`PARAM_GRIDS` ``[kind]``; use ``.best_estimator_``.

    For cell spaces the grid also chooses whether to add effective-operation features, and uses
    :data:`CELL_PARAM_GRIDS` where it has the kind.

    Args:
        scoring: Model selection score; Kendall τ by default, because searches use the ranking.
        user_features: A hook of :mod:`predictors.user_features` (kept in every grid point).
    """
    _check_kind(kind)
    grid: dict[str, list[object]] = dict(PARAM_GRIDS[kind])
    if cell_edges(space) is not None:  # let CV decide whether effective-op features help
        grid.update(CELL_PARAM_GRIDS.get(kind, {}))
        grid["features"] = [
            make_features(
                space, encoding=encoding, cell_pruning=pruning, user_features=user_features
            )
            for pruning in (True, False)
        ]
    search = GridSearchCV(
        make_predictor(
            space,
            kind=kind,
            encoding=encoding,
            random_state=random_state,
            user_features=user_features,
        ),
        grid,
        scoring=scoring if scoring is not None else make_scorer(kendall_tau_score),
        cv=KFold(n_splits=cv, shuffle=True, random_state=random_state),
        refit=True,
    )
    return search.fit(X, y)
