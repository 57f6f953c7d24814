"""Build predictor datasets through the measurement layer and train predictors from them.

The flow is ``sample_configs → measure_configs (evaluate mapped by an Executor, stored in the
ResultStore) → fit_predictor (held-out QualityReport)``. ``evaluate`` is any callable returning
metrics for a config, e.g. accuracy from supernet weights after BN recalibration, or latency on a
hardware target; this module never knows which.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from nas.errors import ConfigError
from nas.execution.base import Executor
from nas.execution.local import LocalExecutor
from nas.results import Evaluation, ResultStore
from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from predictors.consistency import check_duplicates
from predictors.features import Encoding
from predictors.models import make_predictor, search_predictor
from predictors.predictor import Predictor
from predictors.quality import QualityReport


def sample_configs(space: SearchSpace, n: int, *, seed: int | None = 0) -> list[SubnetConfig]:
    """``n`` distinct canonical configs (inactive dimensions reset), sampled uniformly.

    Distinct canonical configs keep the same network from landing in train and test.
    """
    if n < 1:
        raise ConfigError(f"n={n!r} must be >= 1")
    rng = np.random.default_rng(seed)
    seen: dict[str, SubnetConfig] = {}
    attempts = 0
    while len(seen) < n:
        attempts += 1
        if attempts > 100 * n:
            raise ConfigError(
                f"n={n} distinct configs requested, but only {len(seen)} found in "
                f"search space {space.name!r}"
            )
        cfg = space.canonical(space.sample(rng))
        seen.setdefault(cfg.key, cfg)
    return list(seen.values())


def measure_configs(
    configs: Sequence[SubnetConfig],
    evaluate: Callable[[SubnetConfig], Mapping[str, float]],
    *,
    target: str,
    store: ResultStore,
    executor: Executor | None = None,
    progress: Callable[[int], object] | None = None,
) -> list[Evaluation]:
    """Evaluate the configs not yet in ``store`` for ``target`` and append them; return all.

    Each evaluation is appended as soon as it finishes, so an interruption loses only the
    evaluations in flight; re-running evaluates only what is missing (resume by the store).
    ``progress`` (e.g. a tqdm bar's ``update``) is called with 1 per finished evaluation.
    """
    todo = [c for c in configs if store.get(c, target) is None]

    def record(index: int, metrics: Mapping[str, float]) -> None:
        values = {k: float(v) for k, v in metrics.items()}
        store.append(Evaluation(config=todo[index], target=target, metrics=values))
        if progress is not None:
            progress(1)

    (executor or LocalExecutor()).map(evaluate, todo, on_result=record)
    evaluations = [store.get(c, target) for c in configs]
    return [e for e in evaluations if e is not None]


def training_data(
    store: ResultStore, space: SearchSpace, *, metric: str, target: str
) -> tuple[list[SubnetConfig], np.ndarray]:
    """Measured configs of ``space`` on ``target`` that have ``metric``, and its values."""
    configs, values = [], []
    for e in store.evaluations(target=target, source="measured"):
        if metric in e.metrics and space.contains(e.config):
            configs.append(space.validate(e.config))
            values.append(float(e.metrics[metric]))
    if not configs:
        raise ConfigError(
            f"the store has no measured {metric!r} on target={target!r} for search space "
            f"{space.name!r}"
        )
    return configs, np.asarray(values)


@dataclass(frozen=True)
class FitResult:
    """A fitted predictor and its held-out predictions (for the plot)."""

    predictor: Predictor
    y_test: np.ndarray
    y_pred: np.ndarray


def fit_predictor(  # noqa: D417
    space: SearchSpace,
    configs: Sequence[SubnetConfig],
    y: np.ndarray,
    *,
    metric: str,
    target: str | None = None,
    kind: str = "gbr",
    encoding: Encoding = "ordinal",
    test_size: float = 0.25,
    random_state: int = 0,
    search: bool = False,
    refit: bool = False,
    user_features: str | None = None,
) -> FitResult:
    """Split, fit on the training part and report quality on the held-out part.

    Args:
        search: Tune the regressor with :func:`predictors.models.search_predictor`.
        refit: Refit on all samples afterwards (the report then describes the model trained on
            ``n_train`` samples, a conservative estimate for the refit one).
        user_features: A hook of :mod:`predictors.user_features` appended to the features.

    Warns:
        UnencodedFactorWarning: identical encodings measured with widely different values
            (:mod:`predictors.consistency`).
    """
    X = space.encode_many(configs)
    y = np.asarray(y, dtype=float)
    if len(X) != len(y):
        raise ConfigError(f"{len(X)} configs but {len(y)} values")
    if len(X) < 8:
        raise ConfigError(f"fit_predictor needs at least 8 samples, got {len(X)}")
    name = metric if target is None else f"{metric}@{target}"
    check_duplicates(space, X, y, metric=name)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=random_state
    )

    def fitted(X_fit: np.ndarray, y_fit: np.ndarray) -> Pipeline:
        if search:
            return search_predictor(
                space,
                X_fit,
                y_fit,
                kind=kind,
                encoding=encoding,
                random_state=random_state,
                cv=min(3, len(X_fit) // 2),
                user_features=user_features,
            ).best_estimator_
        return make_predictor(
            space,
            kind=kind,
            encoding=encoding,
            random_state=random_state,
            user_features=user_features,
        ).fit(X_fit, y_fit)

    held_out = fitted(X_train, y_train)
    y_pred = np.asarray(held_out.predict(X_test), dtype=float)
    report = QualityReport.from_predictions(y_test, y_pred, n_train=len(X_train), metric=name)
    final = fitted(X, y) if refit else held_out
    predictor = Predictor(
        space,
        final,
        metric=metric,
        target=target,
        kind=kind,
        quality=report,
    )
    return FitResult(predictor=predictor, y_test=y_test, y_pred=y_pred)


def train_from_store(  # noqa: D417
    store: ResultStore,
    space: SearchSpace,
    *,
    metric: str,
    target: str,
    predictor_target: str | None = None,
    kind: str = "gbr",
    test_size: float = 0.25,
    random_state: int = 0,
) -> FitResult:
    """:func:`fit_predictor` on the store's measurements of ``metric`` on ``target``.

    Args:
        predictor_target: Target recorded on the predictor (default ``target``); pass ``None``
            explicitly via ``predictor_target=""`` for metrics that do not depend on hardware.
    """
    configs, y = training_data(store, space, metric=metric, target=target)
    recorded = target if predictor_target is None else (predictor_target or None)
    return fit_predictor(
        space,
        configs,
        y,
        metric=metric,
        target=recorded,
        kind=kind,
        test_size=test_size,
        random_state=random_state,
    )
