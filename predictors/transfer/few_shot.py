"""Few-shot latency predictor for a new device, from a device bank and a handful of measurements.

Method: an architecture is represented by its log-latencies on the bank's devices, and the new
device's log-latency is fitted as ``intercept + Σ_d w_d · z_d + F β``: **non-negative**
weights on the bank devices (the prior that matters at 5–20 samples: a new device is slower
where its neighbours are slower) plus, when leave-one-out says it pays, a strongly penalised
correction ``β`` on the layer-wise one-hot features ``F`` for what no bank device explains.
:mod:`predictors.transfer.fit` has the estimator and its model selection.

``z_d`` is the *representation* (:data:`~predictors.transfer.device_bank.REPRESENTATIONS`): the
measured
log-latency, the bank's per-device model of it (``smooth``: the timing noise of a bank device
is not the new device's, and copying it costs ranking), or both columns. Which one is chosen
per bank and sample size, without the target, by :func:`choose_representation`: each bank
device in turn plays the new device, is fitted from ``n`` reference architectures by the other
devices under each candidate, and the candidate with the best mean Spearman on the rest of the
bank wins.

:meth:`DeviceBank.references` chooses which architectures to measure on the new device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from threadpoolctl import threadpool_limits

from nas.errors import ConfigError
from nas.space import SearchSpace
from predictors.consistency import check_duplicates
from predictors.features import make_features
from predictors.predictor import ConfigEncoder, ConfigLike
from predictors.quality import QualityReport
from predictors.transfer.device_bank import (
    REPRESENTATIONS,
    DeviceBank,
    check_latencies,
    check_representation,
    row_keys,
)
from predictors.transfer.fit import ALPHAS, LAMBDAS, select

MIN_TARGET_SAMPLES = 3
"""Fewest target measurements, and distinct configs among them, :func:`fit_transfer` accepts
(leave-one-out needs three)."""
KIND = "transfer"
AUTO_CANDIDATES: tuple[str, ...] = ("both", "smooth")
"""Representations :func:`choose_representation` compares (ties: the first)."""
MAX_ABS_LOG_LATENCY = 100.0
"""Largest ``|log(ms)|`` a fit may predict for a bank architecture (``exp`` stays finite)."""
VALIDATION_DRAWS = 2
"""Reference draws (seeds 0, 1) per bank device in :func:`choose_representation`."""
MIN_RELATIVE_GAIN = 0.02
"""Share of the ranking error (1 - Spearman) left by ``both`` that another representation must
remove to replace it (a bank that cannot predict its own devices gives no evidence)."""


# -- the predictor --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class TransferPredictor:
    """Latency predictor of one device fitted by :func:`fit_transfer`; JSON-only state.

    Speaks like :class:`predictors.predictor.Predictor` (``name``, ``predict``,
    ``predict_encoded``, ``encode``, ``quality``); saved by
    :func:`predictors.transfer.persistence.save_transfer`.

    Args:
        space: Search space of the configs.
        metric: Predicted metric (``latency_ms``).
        target: The new device.
        devices: Bank devices, in the order of ``weights``.
        weights: Non-negative weight per bank device and representation column (on
            log-latency): ``len(devices)`` values, or twice that for ``both`` (raw first).
        intercept: Intercept on log-latency.
        alpha: Chosen penalty on the weights.
        lam: Chosen penalty on the per-feature correction (``None``: no correction).
        bank_X: Canonical option indices of the bank's architectures.
        bank_log_pred: Predicted log-latency of each bank architecture (from its measurements).
        fallback_coef: Linear model of log-latency on the one-hot features for architectures
            outside the bank (the weights applied to the bank's per-device models).
        fallback_intercept: Its intercept.
        n_train: Target measurements fitted.
        quality: Leave-one-out quality on the target measurements, if computed.
        representation: How the bank represents an architecture (``raw``, ``smooth``, ``both``).
        space_fingerprint: Fingerprint of the space (default ``space.fingerprint()``).
    """

    space: SearchSpace
    metric: str
    target: str
    devices: tuple[str, ...]
    weights: np.ndarray
    intercept: float
    alpha: float
    lam: float | None
    bank_X: np.ndarray
    bank_log_pred: np.ndarray
    fallback_coef: np.ndarray
    fallback_intercept: float
    n_train: int
    quality: QualityReport | None = None
    representation: str = "raw"
    space_fingerprint: str = ""
    kind: str = field(default=KIND, init=False)

    def __post_init__(self) -> None:
        if not self.space_fingerprint:
            object.__setattr__(self, "space_fingerprint", self.space.fingerprint())
        if not self.target or "@" in self.target:
            raise ConfigError(f"target={self.target!r} must be a non-empty name without '@'")
        if not self.metric or "@" in self.metric:
            raise ConfigError(f"metric={self.metric!r} must be a non-empty name without '@'")
        blocks = REPRESENTATIONS[check_representation(self.representation)]
        if len(self.weights) != blocks * len(self.devices):
            raise ConfigError(
                f"weights has {len(self.weights)} values; representation "
                f"{self.representation!r} of {len(self.devices)} devices needs "
                f"{blocks * len(self.devices)}"
            )
        features = make_features(self.space, encoding="onehot").fit(self.bank_X[:2])
        n_features = features.transform(self.bank_X[:1]).shape[1]
        if len(self.fallback_coef) != n_features:
            raise ConfigError(
                f"fallback_coef has {len(self.fallback_coef)} values; the one-hot features of "
                f"search space {self.space.name!r} have {n_features}"
            )
        if len(self.bank_log_pred) != len(self.bank_X):
            raise ConfigError(
                f"bank_log_pred has {len(self.bank_log_pred)} values for {len(self.bank_X)} "
                "bank architectures"
            )
        lookup = {k: i for i, k in enumerate(row_keys(self.bank_X))}
        object.__setattr__(self, "_features", features)
        object.__setattr__(self, "_lookup", lookup)
        object.__setattr__(self, "_encoder", ConfigEncoder(self.space))

    @property
    def name(self) -> str:
        """``metric@target``, as a predictor bundle keys it."""
        return f"{self.metric}@{self.target}"

    @property
    def supports_std(self) -> bool:
        """No uncertainty estimate (``return_std`` is refused)."""
        return False

    def encode(self, configs: Sequence[ConfigLike]) -> np.ndarray:
        """Validated option-index matrix; :class:`InvalidConfigError` names index and key."""
        return self._encoder(configs)  # type: ignore[attr-defined]

    def predict(self, configs: Sequence[ConfigLike], *, return_std: bool = False) -> np.ndarray:
        """Predicted latency (ms) per config."""
        return self.predict_encoded(self.encode(configs), return_std=return_std)

    def predict_encoded(self, X: np.ndarray, *, return_std: bool = False) -> np.ndarray:
        """Predict from an option-index matrix (rows outside the bank use the fallback)."""
        if return_std:
            raise ConfigError(
                f"predictor {self.name!r} of kind {KIND!r} has no uncertainty estimate; "
                "return_std=True needs kind 'ensemble'"
            )
        X = np.asarray(X, dtype=np.int64).reshape(-1, len(self.space.dims))
        if len(X) == 0:
            return np.zeros(0)
        canonical = self.space.canonical_indices(X)
        lookup: dict[bytes, int] = self._lookup  # type: ignore[attr-defined]
        rows = np.array([lookup.get(k, -1) for k in row_keys(canonical)], dtype=np.int64)
        out = np.empty(len(X))
        known = rows >= 0
        out[known] = self.bank_log_pred[rows[known]]
        if (~known).any():
            features = self._features.transform(canonical[~known])  # type: ignore[attr-defined]
            out[~known] = features @ self.fallback_coef + self.fallback_intercept
        return np.exp(out)

    def device_weights(self) -> dict[str, float]:
        """Bank device → weight, largest first, zeros left out (which devices it leans on)."""
        total = np.asarray(self.weights).reshape(-1, len(self.devices)).sum(axis=0)
        pairs = sorted(zip(self.devices, total.tolist(), strict=True), key=lambda p: -p[1])
        tiny = 1e-9 * max(float(total.max(initial=0.0)), 1.0)
        return {d: float(w) for d, w in pairs if w > tiny}


# -- fitting --------------------------------------------------------------------------------------
def check_distinct(space: SearchSpace, X: np.ndarray, *, key: str) -> None:
    """ConfigError naming ``key`` unless ``X`` holds :data:`MIN_TARGET_SAMPLES` distinct configs.

    Repeats of one architecture give the fit one point: its weights would be fitted to nothing.
    """
    distinct = len(set(row_keys(space.canonical_indices(X))))
    if distinct < MIN_TARGET_SAMPLES:
        raise ConfigError(
            f"{key} has {len(X)} measurement(s) of {distinct} distinct config(s); at least "
            f"{MIN_TARGET_SAMPLES} distinct configs are needed (see DeviceBank.references)"
        )


def _check_finite(predictor: TransferPredictor, held_out: np.ndarray) -> None:
    """ConfigError unless every number of the fit is finite (an inf is refused when saved)."""
    parts: dict[str, np.ndarray | float] = {
        "weights": predictor.weights,
        "intercept": predictor.intercept,
        "bank_log_pred": predictor.bank_log_pred,
        "fallback_coef": predictor.fallback_coef,
        "fallback_intercept": predictor.fallback_intercept,
    }
    for name, values in parts.items():
        if not np.isfinite(values).all():
            raise ConfigError(
                f"target_measurements: the fit's {name} is not finite; the latencies are out of "
                "any physical range (milliseconds expected)"
            )
    predicted = np.concatenate([predictor.bank_log_pred, held_out])
    if np.abs(predicted).max(initial=0.0) > MAX_ABS_LOG_LATENCY:
        raise ConfigError(
            "target_measurements: the fit predicts latencies beyond "
            f"exp({MAX_ABS_LOG_LATENCY:g}) ms; the latencies are out of any physical range"
        )


def _split_measurements(
    measurements: Sequence[tuple[ConfigLike, float]],
) -> tuple[list[ConfigLike], list[Any]]:
    if isinstance(measurements, str | bytes) or not isinstance(measurements, Sequence):
        raise ConfigError(
            "target_measurements must be a list of (config, latency_ms) pairs, got "
            f"{type(measurements).__name__}"
        )
    configs, values = [], []
    for i, item in enumerate(measurements):
        if not isinstance(item, Sequence) or isinstance(item, str | bytes) or len(item) != 2:
            raise ConfigError(
                f"target_measurements[{i}] must be a (config, latency_ms) pair, got {item!r}"
            )
        configs.append(item[0])
        values.append(item[1])
    return configs, values


def fit_transfer(
    bank: DeviceBank,
    target_measurements: Sequence[tuple[ConfigLike, float]],
    *,
    target: str,
    space: SearchSpace | None = None,
    alphas: Sequence[float] = ALPHAS,
    lambdas: Sequence[float] = LAMBDAS,
    features: bool = True,
    quality: bool = True,
    representation: str = "auto",
) -> TransferPredictor:
    """Latency predictor of device ``target`` from a few of its measurements and ``bank``.

    Args:
        bank: Other devices' latencies for the same search space.
        target_measurements: ``(config, latency_ms)`` pairs measured on the new device; at least
            :data:`MIN_TARGET_SAMPLES`. Configs need not be in the bank (their bank latencies
            are then modelled), but :meth:`DeviceBank.references` chooses good ones.
        target: Name of the new device (not one of the bank's).
        space: If given, the space the measurements belong to; it must be the bank's.
        alphas: Candidate penalties on the bank weights (:data:`~predictors.transfer.fit.ALPHAS`).
        lambdas: Candidate penalties on the feature correction
            (:data:`~predictors.transfer.fit.LAMBDAS`).
        features: Consider the per-feature correction at all.
        quality: Attach the leave-one-out :class:`QualityReport` (skip it to fit faster).
        representation: ``auto`` (:func:`choose_representation`) or one of
            :data:`~predictors.transfer.device_bank.REPRESENTATIONS`.

    Raises:
        ConfigError: naming the key: a bank of another space (``bank``), too few or bad
            measurements (``target_measurements``), configs outside the space
            (``target_measurements[i]`` and the dimension), NaN or non-positive latencies,
            a ``target`` that is a bank device, bad ``alphas`` or ``representation``.

    Example:
        >>> import search_spaces
        >>> space = search_spaces.get("nas_bench_201")
        >>> configs = space.sample_many(300, np.random.default_rng(0))
        >>> unique = list({c.key: c for c in configs}.values())
        >>> X = space.encode_many(unique)
        >>> bank = DeviceBank.from_configs(
        ...     space, unique, {"gpu": 1 + (X == 3).sum(1), "cpu": 1 + (X >= 2).sum(1)}
        ... )
        >>> refs = bank.references(6, seed=0)
        >>> new = [(c, 2.0 * float(1 + (space.encode(c) == 3).sum())) for c in refs]
        >>> p = fit_transfer(bank, new, target="phone")
        >>> sorted(p.device_weights())
        ['gpu']
    """
    if space is not None and space.fingerprint() != bank.fingerprint:
        raise ConfigError(
            f"bank is for search space {bank.space.name!r} (fingerprint {bank.fingerprint}), "
            f"not {space.name!r} (fingerprint {space.fingerprint()}); build the bank from "
            "measurements of the same space"
        )
    if not isinstance(target, str) or not target or "@" in target:
        raise ConfigError(f"target={target!r} must be a non-empty device name without '@'")
    if target in bank.devices:
        raise ConfigError(
            f"target={target!r} is already a device of the bank {list(bank.devices)}; fit from "
            f"bank.without({target!r})"
        )
    for key, grid, zero_ok in (("alphas", alphas, True), ("lambdas", lambdas, False)):
        values = [float(a) for a in grid]
        if not values or any(
            not np.isfinite(a) or a < 0 or (a == 0 and not zero_ok) for a in values
        ):
            bound = ">= 0" if zero_ok else "> 0"
            raise ConfigError(
                f"{key}={list(grid)!r} must be a non-empty list of finite values {bound}"
            )
    if representation != "auto":
        check_representation(representation)
    configs, values = _split_measurements(target_measurements)
    if len(configs) < MIN_TARGET_SAMPLES:
        raise ConfigError(
            f"target_measurements has {len(configs)} sample(s); fit_transfer needs at least "
            f"{MIN_TARGET_SAMPLES} (5-20 is typical: see DeviceBank.references)"
        )
    try:
        X = ConfigEncoder(bank.space)(configs)
    except ConfigError as exc:
        raise type(exc)(f"target_measurements: {exc}", **_error_fields(exc)) from exc
    check_distinct(bank.space, X, key="target_measurements")
    y = check_latencies(values, key="target_measurements latency_ms")
    check_duplicates(bank.space, X, y, metric=f"{bank.metric}@{target}")
    t = np.log(y)
    transformer, coef, bank_intercept = bank.bank_models()
    F = transformer.transform(X) if features else None
    with threadpool_limits(limits=1):  # hundreds of tiny solves: threads only add overhead
        if representation == "auto":
            representation = choose_representation(bank, len(y))
        Z = bank.represent(X, representation)
        model, held_out = select(Z, t, F, alphas=alphas, lambdas=lambdas)
    w, intercept = model.w, model.intercept
    total = w.reshape(-1, len(bank.devices)).sum(axis=0)  # per device, over representations
    beta = model.beta if model.beta is not None else np.zeros(coef.shape[0])
    predictor = TransferPredictor(
        space=bank.space,
        metric=bank.metric,
        target=target,
        devices=bank.devices,
        weights=w,
        intercept=intercept,
        alpha=model.alpha,
        lam=model.lam,
        bank_X=bank.X,
        bank_log_pred=intercept
        + bank.bank_representation(representation) @ w
        + bank.features() @ beta,
        fallback_coef=coef @ total + beta,
        fallback_intercept=intercept + float(bank_intercept @ total),
        n_train=len(y),
        representation=representation,
    )
    _check_finite(predictor, held_out)
    if not quality:
        return predictor
    report = QualityReport.from_predictions(
        y, np.exp(held_out), n_train=len(y) - 1, metric=f"{bank.metric}@{target}"
    )
    return replace(predictor, quality=report)


def choose_representation(bank: DeviceBank, n: int) -> str:
    """The representation that transfers best within ``bank`` at ``n`` samples (module doc).

    Each bank device is fitted (bank weights only, no feature correction) from
    ``bank.reference_rows(n, seed)`` for seeds ``0..VALIDATION_DRAWS-1`` by the other devices'
    columns, and scored by Spearman on the other bank rows. ``smooth`` is chosen only when its
    mean gain over ``both`` (paired by device and draw) exceeds one standard error and
    :data:`MIN_RELATIVE_GAIN` of the error ``both`` leaves; a bank of one
    device, or too few rows to score, gets ``both`` (whose weights may still prefer either
    column). Memoised per bank and ``n``; :func:`representation_scores` returns the scores.
    """
    return representation_scores(bank, n)[0]


def representation_scores(bank: DeviceBank, n: int) -> tuple[str, dict[str, float]]:
    """``(choice, {candidate: mean Spearman})`` behind :func:`choose_representation`."""
    cache = bank.choice_cache()
    key = ("representation", int(n))
    if key in cache:
        return cache[key]
    D = len(bank.devices)
    scores: dict[str, float] = {}
    first = AUTO_CANDIDATES[0]
    choice = first
    if D >= 2 and len(bank) - n >= 3:
        refs = [bank.reference_rows(n, seed=s) for s in range(VALIDATION_DRAWS)]
        target = np.log(bank.latency)
        rhos: dict[str, np.ndarray] = {}
        for candidate in AUTO_CANDIDATES:
            Zb = bank.bank_representation(candidate)
            blocks = REPRESENTATIONS[candidate]
            values = []
            for d in range(D):
                others = [b * D + k for b in range(blocks) for k in range(D) if k != d]
                for rows in refs:
                    model, _ = select(Zb[np.ix_(rows, np.asarray(others))], target[rows, d])
                    rest = np.ones(len(bank), dtype=bool)
                    rest[rows] = False
                    pred = model.predict(Zb[rest][:, others], None)
                    constant = np.ptp(pred) == 0  # all weights zero: no ranking at all
                    rho = 0.0 if constant else spearmanr(pred, target[rest, d]).statistic
                    values.append(float(rho))
            rhos[candidate] = np.nan_to_num(np.asarray(values), nan=0.0)
            scores[candidate] = float(rhos[candidate].mean())
        for candidate in AUTO_CANDIDATES[1:]:
            gain = rhos[candidate] - rhos[first]
            material = MIN_RELATIVE_GAIN * (1.0 - scores[first])
            if (
                gain.mean() > max(gain.std() / np.sqrt(len(gain)), material)
                and scores[candidate] > scores[choice]
            ):
                choice = candidate
    cache[key] = (choice, scores)
    return choice, scores


def _error_fields(exc: ConfigError) -> dict[str, Any]:
    """Keyword fields of a ConfigError subclass (InvalidConfigError's index and key)."""
    if hasattr(exc, "index") and hasattr(exc, "key"):
        return {"index": exc.index, "key": exc.key}
    return {}
