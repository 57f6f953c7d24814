"""Device bank: latencies of the same architectures measured on several devices.

A new device is rarely unlike every known one: its latency ranking is close to a combination of
the rankings of devices already measured. :class:`DeviceBank` holds those measurements (one row
per distinct canonical architecture of one search space, one column per device) so that
:mod:`predictors.transfer.few_shot` can fit a new device from a handful of its own measurements.

Architectures outside the bank are represented by per-device ridge models of log-latency on the
layer-wise one-hot features of :func:`predictors.features.make_features` (fitted on the whole bank
on first use), so a transferred predictor answers for every config of the space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import Ridge

from nas.errors import ConfigError
from nas.space import Choice, SearchSpace
from nas.subnet import SubnetConfig
from predictors.features import make_features
from predictors.predictor import ConfigEncoder, ConfigLike

BANK_RIDGE_ALPHA = 1.0
"""Ridge penalty of the bank's per-device models for architectures outside the bank."""
REFERENCE_COMPONENTS = 3
"""Principal components of the bank's latency-rank space that reference choice spreads over."""
REPRESENTATIONS: dict[str, int] = {"raw": 1, "smooth": 1, "both": 2}
"""How an architecture is represented by the bank, and how many columns per device that takes:
``raw`` its measured log-latencies, ``smooth`` the bank's per-device models of them (the
measurement less what the layer-wise features cannot explain: mostly timing noise), ``both``
the two side by side."""


def _check_name(name: object, *, key: str) -> str:
    if not isinstance(name, str) or not name or "@" in name:
        raise ConfigError(f"{key}={name!r} must be a non-empty device name without '@'")
    return name


def check_latencies(values: Any, *, key: str) -> np.ndarray:
    """Latencies as a float vector; ConfigError naming ``key[i]`` for NaN, inf or values <= 0."""
    try:
        array = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key} must be numbers (milliseconds): {exc}") from exc
    bad = np.flatnonzero(~np.isfinite(array) | (array <= 0))
    if bad.size:
        i = int(bad[0])
        raise ConfigError(
            f"{key}[{i}]={float(array[i])!r}: latencies must be finite and > 0 "
            f"({bad.size} bad value(s) in all)"
        )
    return array


def check_representation(representation: object) -> str:
    """``representation`` if it is one of :data:`REPRESENTATIONS`, else a ConfigError naming it."""
    if representation not in REPRESENTATIONS:
        raise ConfigError(
            f"representation={representation!r} is not one of {list(REPRESENTATIONS)}"
        )
    return representation


def row_keys(X: np.ndarray) -> list[bytes]:
    """Hashable key per option-index row (for lookups)."""
    rows = np.ascontiguousarray(np.asarray(X, dtype=np.int64))
    return [row.tobytes() for row in rows]


@dataclass(frozen=True, eq=False)
class DeviceBank:
    """Latency of ``X``'s architectures on each of ``devices``, for one search space.

    Args:
        space: Search space of the architectures.
        X: Canonical option indices (``space.canonical_indices``), one distinct row each.
        devices: Device names, one per column of ``latency``.
        latency: Milliseconds, shape ``(len(X), len(devices))``, finite and > 0.
        metric: Name of the metric (``latency_ms``).

    Example:
        >>> import search_spaces
        >>> space = search_spaces.get("nas_bench_201")
        >>> configs = space.sample_many(40, np.random.default_rng(0))
        >>> X = space.encode_many(configs)
        >>> bank = DeviceBank.from_configs(
        ...     space, configs, {"a": 1 + (X == 3).sum(1), "b": 2 + (X == 2).sum(1)}
        ... )
        >>> bank.devices, len(bank.references(5, seed=0))
        (('a', 'b'), 5)
    """

    space: SearchSpace
    X: np.ndarray
    devices: tuple[str, ...]
    latency: np.ndarray
    metric: str = "latency_ms"

    def __post_init__(self) -> None:
        X = np.asarray(self.X, dtype=np.int64)
        if X.ndim != 2 or X.shape[1] != len(self.space.dims):
            raise ConfigError(
                f"bank.X has shape {X.shape}, expected (n, {len(self.space.dims)}) for search "
                f"space {self.space.name!r}"
            )
        devices = tuple(_check_name(d, key="bank.devices[]") for d in self.devices)
        if not devices or len(set(devices)) != len(devices):
            raise ConfigError(f"bank.devices={list(devices)!r} must be distinct and non-empty")
        latency = np.asarray(self.latency, dtype=float)
        if latency.shape != (len(X), len(devices)):
            raise ConfigError(
                f"bank.latency has shape {latency.shape}, expected {(len(X), len(devices))}"
            )
        for j, device in enumerate(devices):
            check_latencies(latency[:, j], key=f"bank.latency[{device!r}]")
        if len(X) < 2:
            raise ConfigError(f"bank has {len(X)} architecture(s); it needs at least 2")
        n_options = self.space.n_options[None, :]
        outside = (X < 0) | (n_options <= X)
        if outside.any():
            i, column = (int(v[0]) for v in np.nonzero(outside))
            dim = cast(Choice, self.space.dims[column])  # n_options refused Numeric ones
            raise ConfigError(
                f"bank.X[{i}]: {dim.name} index {int(X[i, column])} is outside "
                f"0..{len(dim.options) - 1} (allowed values: {list(dim.options)})"
            )
        canonical = self.space.canonical_indices(X)
        keys = row_keys(canonical)
        lookup: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key in lookup:
                raise ConfigError(
                    f"bank.X rows {lookup[key]} and {i} are the same architecture; average "
                    "repeated measurements before building the bank"
                )
            lookup[key] = i
        object.__setattr__(self, "X", canonical)
        object.__setattr__(self, "devices", devices)
        object.__setattr__(self, "latency", latency)
        object.__setattr__(self, "_lookup", lookup)
        object.__setattr__(self, "_models", None)
        object.__setattr__(self, "_points", None)
        object.__setattr__(self, "_features", None)
        object.__setattr__(self, "_smooth", None)
        object.__setattr__(self, "_choices", {})

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_configs(
        cls,
        space: SearchSpace,
        configs: Sequence[ConfigLike],
        latency: Mapping[str, Sequence[float] | np.ndarray],
        *,
        metric: str = "latency_ms",
    ) -> DeviceBank:
        """Bank from configs and ``{device: latencies in config order}``.

        Raises:
            ConfigError: an invalid config (naming its position and key), a device whose
                latencies are not one finite positive value per config, repeated architectures.
        """
        X = ConfigEncoder(space)(configs)
        columns = []
        for device, values in latency.items():
            column = check_latencies(values, key=f"bank.latency[{device!r}]")
            if len(column) != len(X):
                raise ConfigError(
                    f"bank.latency[{device!r}] has {len(column)} values for {len(X)} configs"
                )
            columns.append(column)
        matrix = np.stack(columns, axis=1) if columns else np.zeros((len(X), 0))
        return cls(space, X, tuple(latency), matrix, metric=metric)

    def without(self, *devices: str) -> DeviceBank:
        """The bank less some devices (e.g. the one a benchmark leaves out as the target)."""
        unknown = [d for d in devices if d not in self.devices]
        if unknown:
            raise ConfigError(f"device={unknown[0]!r} is not one of {list(self.devices)}")
        keep = [j for j, d in enumerate(self.devices) if d not in devices]
        return DeviceBank(
            self.space,
            self.X,
            tuple(self.devices[j] for j in keep),
            self.latency[:, keep],
            metric=self.metric,
        )

    # -- lookups -------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """Fingerprint of the bank's search space."""
        return self.space.fingerprint()

    def __len__(self) -> int:
        return len(self.X)

    def rows(self, X: np.ndarray) -> np.ndarray:
        """Bank row of each option-index row (canonicalised first), ``-1`` where absent."""
        canonical = self.space.canonical_indices(X)
        lookup: dict[bytes, int] = self._lookup  # type: ignore[attr-defined]
        return np.array([lookup.get(k, -1) for k in row_keys(canonical)], dtype=np.int64)

    def configs(self) -> list[SubnetConfig]:
        """The bank's architectures as configs, in row order."""
        return self.space.decode_many(self.X)

    # -- representation ------------------------------------------------------------------------
    def bank_models(self) -> tuple[Any, np.ndarray, np.ndarray]:
        """``(features, coef, intercept)``: per-device ridge of log-latency on the features.

        ``features`` is the fitted transformer of :func:`make_features` (one-hot encoding, every
        dimension one-hot per layer); ``coef`` has shape ``(n_features, n_devices)``.
        """
        cached = self._models  # type: ignore[attr-defined]
        if cached is None:
            features = make_features(self.space, encoding="onehot").fit(self.X)
            ridge = Ridge(alpha=BANK_RIDGE_ALPHA).fit(self.features(), np.log(self.latency))
            n = len(self.devices)  # a one-device bank gets 1-D coefficients from sklearn
            coef = np.asarray(ridge.coef_).reshape(n, -1).T.copy()
            cached = (features, coef, np.asarray(ridge.intercept_).reshape(n))
            object.__setattr__(self, "_models", cached)
        return cached

    def features(self) -> np.ndarray:
        """One-hot features of the bank's architectures (as :meth:`bank_models` uses; cached)."""
        cached = self._features  # type: ignore[attr-defined]
        if cached is None:
            cached = make_features(self.space, encoding="onehot").fit_transform(self.X)
            object.__setattr__(self, "_features", cached)
        return cached

    def log_latency(self, X: np.ndarray) -> np.ndarray:
        """Log-latency per device of each row: measured where in the bank, else modelled."""
        X = np.asarray(X, dtype=np.int64).reshape(-1, len(self.space.dims))
        rows = self.rows(X)
        out = np.empty((len(X), len(self.devices)))
        known = rows >= 0
        out[known] = np.log(self.latency[rows[known]])
        if (~known).any():
            features, coef, intercept = self.bank_models()
            out[~known] = features.transform(X[~known]) @ coef + intercept
        return out

    def smooth_log_latency(self) -> np.ndarray:
        """The bank models' log-latency of every bank architecture, per device (cached)."""
        cached = self._smooth  # type: ignore[attr-defined]
        if cached is None:
            _, coef, intercept = self.bank_models()
            cached = self.features() @ coef + intercept
            object.__setattr__(self, "_smooth", cached)
        return cached

    def represent(self, X: np.ndarray, representation: str) -> np.ndarray:
        """Columns of each row under ``representation`` (:data:`REPRESENTATIONS`).

        Rows outside the bank have only modelled latencies, so ``raw`` and ``smooth`` agree there.
        """
        check_representation(representation)
        raw = self.log_latency(X)
        if representation == "raw":
            return raw
        X = np.asarray(X, dtype=np.int64).reshape(-1, len(self.space.dims))
        rows = self.rows(X)
        smooth = raw.copy()
        known = rows >= 0
        smooth[known] = self.smooth_log_latency()[rows[known]]
        return smooth if representation == "smooth" else np.hstack([raw, smooth])

    def bank_representation(self, representation: str) -> np.ndarray:
        """:meth:`represent` of the bank's own rows, in row order."""
        check_representation(representation)
        raw = np.log(self.latency)
        if representation == "raw":
            return raw
        smooth = self.smooth_log_latency()
        return smooth if representation == "smooth" else np.hstack([raw, smooth])

    def choice_cache(self) -> dict[Any, Any]:
        """Per-bank memo of target-independent choices (:func:`predictors.transfer.few_shot`)."""
        return self._choices  # type: ignore[attr-defined]

    # -- reference architectures ---------------------------------------------------------------
    def references(self, n: int, *, seed: int = 0) -> list[SubnetConfig]:
        """``n`` bank architectures to measure on a new device, spread over the bank's rankings.

        Each device's latencies become ranks in [0, 1]; the architectures are points in the first
        :data:`REFERENCE_COMPONENTS` principal components of those ranks, and the choice is
        farthest-point (maximin) from a start drawn with ``seed``: fast and slow, and the
        architectures on which devices disagree most, all get measured. Deterministic given
        ``seed``.
        """
        return self.space.decode_many(self.X[self.reference_rows(n, seed=seed)])

    def reference_rows(self, n: int, *, seed: int = 0) -> np.ndarray:
        """Bank rows of :meth:`references`."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= n <= len(self):
            raise ConfigError(f"n={n!r} reference architectures must be in 1..{len(self)}")
        points = self._rank_points()
        rng = np.random.default_rng(seed)
        chosen = [int(rng.integers(len(points)))]
        distance = ((points - points[chosen[0]]) ** 2).sum(axis=1)
        distance[chosen[0]] = -np.inf  # never chosen twice, even among equal points
        for _ in range(n - 1):
            j = int(np.argmax(distance))
            chosen.append(j)
            distance = np.minimum(distance, ((points - points[j]) ** 2).sum(axis=1))
            distance[chosen] = -np.inf
        return np.asarray(chosen, dtype=np.int64)

    def _rank_points(self) -> np.ndarray:
        """Architectures in the leading principal components of the per-device ranks (cached)."""
        points = self._points  # type: ignore[attr-defined]
        if points is None:
            ranks = np.column_stack([rankdata(c) / len(c) for c in self.latency.T])
            ranks -= ranks.mean(axis=0)
            _, _, vt = np.linalg.svd(ranks, full_matrices=False)
            points = ranks @ vt[:REFERENCE_COMPONENTS].T
            object.__setattr__(self, "_points", points)
        return points
