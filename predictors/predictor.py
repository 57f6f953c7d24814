"""Predictor: a fitted pipeline plus the space, metric and quality it belongs to.

The pipeline speaks encoded matrices; :class:`Predictor` speaks configs (``SubnetConfig`` or plain
dicts), validates them against the space and names the offending key on bad input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.errors import ConfigError
from nas.space import SearchSpace
from nas.subnet import SubnetConfig, Value
from predictors.features import compile_features
from predictors.quality import QualityReport

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

ConfigLike = SubnetConfig | Mapping[str, Value]


class InvalidConfigError(ConfigError):
    """A config in a batch is invalid; carries its position and the offending key."""

    def __init__(self, message: str, *, index: int, key: str | None) -> None:
        super().__init__(message)
        self.index = index
        self.key = key


class ConfigEncoder:
    """Batch version of ``space.encode_many`` with a lookup-table fast path.

    Values are looked up in one dict per dimension (``3`` and ``3.0`` hash alike, as
    :meth:`Choice.index` treats them alike); any miss falls back to ``space.validate`` so the
    error message is the space's own, prefixed with the config's position in the batch.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self._names = space.names
        self._lookup = [
            {o: i for i, o in enumerate(getattr(d, "options", ()))} for d in space.dims
        ]

    def __call__(self, configs: Iterable[ConfigLike]) -> np.ndarray:
        if self.space.has_numeric:  # values, not indices: every config through the space
            encoded = [self._slow(i, c) for i, c in enumerate(configs)]
            if not encoded:
                return np.zeros((0, len(self._names)), dtype=np.float64)
            return np.stack(encoded).astype(np.float64)
        rows: list[list[int]] = []
        n = len(self._names)
        for index, config in enumerate(configs):
            data = config.to_dict() if isinstance(config, SubnetConfig) else config
            try:
                if not isinstance(data, Mapping) or len(data) != n:
                    raise KeyError
                rows.append([lut[data[name]] for name, lut in zip(self._names, self._lookup)])  # noqa: B905
            except (KeyError, TypeError):
                rows.append(self._slow(index, config).tolist())
        if not rows:
            return np.zeros((0, n), dtype=np.int64)
        return np.asarray(rows, dtype=np.int64)

    def _slow(self, index: int, config: object) -> np.ndarray:
        if not isinstance(config, SubnetConfig | Mapping):
            raise InvalidConfigError(
                f"configs[{index}] must be a mapping of dimension name -> value, "
                f"got {type(config).__name__}",
                index=index,
                key=None,
            )
        try:
            return self.space.encode(config)
        except ConfigError as exc:
            raise InvalidConfigError(
                f"configs[{index}]: {exc}", index=index, key=self._offending_key(config)
            ) from exc

    def _offending_key(self, config: ConfigLike) -> str | None:
        data = config.to_dict() if isinstance(config, SubnetConfig) else dict(config)
        for key in data:
            if key not in self._names:
                return str(key)
        for name in self._names:
            if name not in data:
                return name
        for dim in self.space.dims:
            try:
                dim.normalise(data[dim.name])
            except ConfigError:
                return dim.name
        return None


@dataclass(frozen=True, eq=False)
class Predictor:
    """One fitted metric predictor for configs of ``space``.

    Args:
        space: Search space the configs must belong to.
        pipeline: Fitted pipeline taking ``space.encode_many(configs)``.
        metric: Predicted metric, e.g. ``"top1"`` or ``"latency_ms"``.
        target: Hardware target of the metric, if it depends on one.
        kind: Predictor kind the pipeline was made with (see :func:`predictors.models.kinds`).
        quality: Held-out quality, if measured.
        space_fingerprint: Fingerprint of the space the predictor was trained on (default:
            ``space.fingerprint()``; a loaded predictor keeps the saved one).

    Example:
        >>> import search_spaces
        >>> from predictors.models import make_predictor
        >>> space = search_spaces.get("nas_bench_201")
        >>> configs = space.sample_many(50, np.random.default_rng(0))
        >>> X = space.encode_many(configs)
        >>> pipe = make_predictor(space, kind="ridge").fit(X, (X == 3).sum(axis=1))
        >>> p = Predictor(space, pipe, metric="n_conv3x3")
        >>> p.predict([space.largest()]).round().tolist()
        [0.0]
    """

    space: SearchSpace
    pipeline: Pipeline
    metric: str
    target: str | None = None
    kind: str = ""
    quality: QualityReport | None = None
    space_fingerprint: str = ""

    def __post_init__(self) -> None:
        if not self.space_fingerprint:
            object.__setattr__(self, "space_fingerprint", self.space.fingerprint())
        if not self.metric or "@" in self.metric:
            raise ConfigError(f"metric={self.metric!r} must be a non-empty name without '@'")
        if self.target is not None and (not self.target or "@" in self.target):
            raise ConfigError(f"target={self.target!r} must be a non-empty name without '@'")
        object.__setattr__(self, "_encoder", ConfigEncoder(self.space))
        object.__setattr__(self, "_fast", _fast_features(self.space, self.pipeline))

    @property
    def name(self) -> str:
        """``metric`` or ``metric@target``: the key of this predictor in a bundle."""
        return self.metric if self.target is None else f"{self.metric}@{self.target}"

    @property
    def supports_std(self) -> bool:
        """Whether ``predict(..., return_std=True)`` is available."""
        regressor = self.pipeline.steps[-1][1]
        return hasattr(regressor, "predict") and "return_std" in _predict_params(regressor)

    def encode(self, configs: Iterable[ConfigLike]) -> np.ndarray:
        """Validated option-index matrix; :class:`InvalidConfigError` names index and key."""
        return self._encoder(configs)  # type: ignore[attr-defined]

    def predict(self, configs: Sequence[ConfigLike], *, return_std: bool = False) -> Any:
        """Predicted metric per config (and the ensemble's std if ``return_std``)."""
        return self.predict_encoded(self.encode(configs), return_std=return_std)

    def predict_encoded(self, X: np.ndarray, *, return_std: bool = False) -> Any:
        """Predict from an option-index matrix (no validation beyond the pipeline's)."""
        if X.shape[0] == 0:
            empty = np.zeros(0)
            return (empty, empty) if return_std else empty
        if return_std:
            if not self.supports_std:
                raise ConfigError(
                    f"predictor {self.name!r} of kind {self.kind!r} has no uncertainty estimate; "
                    "return_std=True needs kind 'ensemble'"
                )
            mean, std = self._predict(X, return_std=True)
            return np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
        return np.asarray(self._predict(X), dtype=float)

    def _predict(self, X: np.ndarray, **params: Any) -> Any:
        """``pipeline.predict``, through the compiled features when they were verified."""
        fast = self._fast  # type: ignore[attr-defined]
        if fast is not None and self.pipeline.steps[0][1] is fast[0]:
            try:
                features = fast[1](X)
            except ValueError:  # let the stock steps raise their own error
                return self.pipeline.predict(X, **params)
            return self.pipeline.steps[-1][1].predict(features, **params)
        return self.pipeline.predict(X, **params)


def _fast_features(space: SearchSpace, pipeline: Pipeline) -> tuple[object, Any] | None:
    """``(features step, compiled function)`` if it reproduces the step exactly on a probe batch.

    Only ``Pipeline([("features", ...), ("regressor", ...)])`` qualifies (what
    :func:`predictors.models.make_predictor` builds); anything else keeps ``pipeline.predict``.
    """
    steps = getattr(pipeline, "steps", None)
    if not isinstance(steps, list) or len(steps) != 2:
        return None
    step = steps[0][1]
    fn = compile_features(step)
    if fn is None:
        return None
    rng = np.random.default_rng(0)
    probe = space.encode_many([space.smallest(), space.largest(), *space.sample_many(30, rng)])
    try:
        fast, stock = fn(probe), np.asarray(step.transform(probe))
        same = (  # same values, dtype and memory layout, so BLAS sums in the same order
            fast.dtype == stock.dtype
            and fast.flags.c_contiguous == stock.flags.c_contiguous
            and fast.flags.f_contiguous == stock.flags.f_contiguous
            and np.array_equal(fast, stock)
        )
    except Exception:  # unfitted or foreign step: no fast path
        return None
    return (step, fn) if same else None


def _predict_params(estimator: object) -> tuple[str, ...]:
    import inspect

    try:
        return tuple(inspect.signature(estimator.predict).parameters)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return ()
