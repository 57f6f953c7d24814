"""SearchSpace: named dimensions with sampling, encoding and validation.

Algorithms see a flat vector (one option index per :class:`Choice`); models see a
:class:`~nas.subnet.SubnetConfig`. Encoding is exact, so ``decode(encode(c)) == c``.

A space may also hold :class:`Numeric` dimensions (a bounded integer or real, such as a
resolution or a channel count measured on a grid): the encoded vector then holds the value itself
in their columns and is ``float64`` instead of ``int64``. Predictors scale such columns to
[0, 1], so values between the measured ones predict by interpolation; searchers that enumerate
options need spaces of :class:`Choice` only (:attr:`SearchSpace.n_options` refuses the others).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from nas.errors import ConfigError, format_choice_error
from nas.subnet import SubnetConfig, Value


@dataclass(frozen=True)
class Choice:
    """One searchable dimension.

    Args:
        name: Unique key, e.g. ``"s1.b0.kernel"``.
        options: Allowed values; for ``ordered`` dimensions, ascending by cost.
        ordered: Whether option order is meaningful (3 < 5 < 7) to samplers and predictors.
        active_if: ``(depth_dim, j)``: the dimension only matters when ``config[depth_dim] > j``
            (a block skipped by elastic depth); inactive values canonicalise to ``options[0]``.
    """

    name: str
    options: tuple[Value, ...]
    ordered: bool = True
    active_if: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        if not self.options:
            raise ConfigError(f"dimension {self.name!r} has no options")
        if len(set(self.options)) != len(self.options):
            raise ConfigError(f"dimension {self.name!r} has duplicated options {self.options}")

    def index(self, value: object) -> int:
        """Index of ``value`` among the options; ConfigError naming the dimension otherwise."""
        for i, option in enumerate(self.options):
            if type(option) is not str and type(value) is not str and not isinstance(value, bool):
                if isinstance(value, int | float) and float(option) == float(value):
                    return i
            elif option == value:
                return i
        raise ConfigError(format_choice_error(self.name, value, list(self.options)))

    def normalise(self, value: object) -> Value:
        """The option equal to ``value`` (``3.0`` becomes ``3`` for an integer option)."""
        return self.options[self.index(value)]

    def encode_value(self, value: object) -> int:
        """Column value of ``value`` in an encoded vector: its option index."""
        return self.index(value)

    def allowed(self) -> list[Value]:
        """What error messages list as the allowed values."""
        return list(self.options)

    def schema(self) -> dict[str, object]:
        """JSON description (artifacts store it; :func:`dimension_from_schema` reads it)."""
        return {
            "name": self.name,
            "options": list(self.options),
            "ordered": self.ordered,
            "active_if": list(self.active_if) if self.active_if is not None else None,
        }


@dataclass(frozen=True)
class Numeric:
    """A bounded integer or real dimension (encoded as its value, not an option index).

    Args:
        name: Unique key, e.g. ``"resolution"``.
        low: Smallest allowed value.
        high: Largest allowed value (> ``low``).
        integer: Only whole numbers are allowed (and configs hold ``int``).
        active_if: As :attr:`Choice.active_if`; inactive values canonicalise to ``low``.

    Example:
        >>> Numeric("width_mult", 0.5, 1.5).normalise(1)
        1.0
        >>> Numeric("channels", 8, 64, integer=True).normalise(100)
        Traceback (most recent call last):
        ...
        nas.errors.ConfigError: channels=100 is outside the allowed values: integers in [8, 64]
    """

    name: str
    low: float
    high: float
    integer: bool = False
    active_if: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        for key in ("low", "high"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"dimension {self.name!r}: {key}={value!r} must be a number")
            if not math.isfinite(value):
                raise ConfigError(f"dimension {self.name!r}: {key}={value!r} must be finite")
            if self.integer and float(value) != int(value):
                raise ConfigError(f"dimension {self.name!r}: {key}={value!r} must be an integer")
        if not self.low < self.high:
            raise ConfigError(
                f"dimension {self.name!r}: low={self.low!r} must be below high={self.high!r}"
            )
        cast = int if self.integer else float
        object.__setattr__(self, "low", cast(self.low))
        object.__setattr__(self, "high", cast(self.high))

    @property
    def ordered(self) -> bool:
        """Numbers are always ordered."""
        return True

    def allowed(self) -> str:
        """What error messages list as the allowed values."""
        kind = "integers" if self.integer else "numbers"
        return f"{kind} in [{self.low}, {self.high}]"

    def normalise(self, value: object) -> Value:
        """``value`` as ``int`` (integer dimensions) or ``float``; ConfigError naming the key."""
        numbers = int | float | np.integer | np.floating
        if isinstance(value, bool) or not isinstance(value, numbers):
            raise ConfigError(
                f"{self.name}={value!r} is not a number; allowed values: {self.allowed()}"
            )
        number = float(value)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            raise ConfigError(
                f"{self.name}={value!r} is outside the allowed values: {self.allowed()}"
            )
        if self.integer:
            if number != int(number):
                raise ConfigError(
                    f"{self.name}={value!r} is not a whole number; allowed values: "
                    f"{self.allowed()}"
                )
            return int(number)
        return number

    def encode_value(self, value: object) -> float:
        """Column value of ``value`` in an encoded vector: the value itself."""
        return float(self.normalise(value))

    def schema(self) -> dict[str, object]:
        """JSON description (artifacts store it; :func:`dimension_from_schema` reads it)."""
        return {
            "name": self.name,
            "numeric": {"low": self.low, "high": self.high, "integer": self.integer},
            "ordered": True,
            "active_if": list(self.active_if) if self.active_if is not None else None,
        }

    def sample(self, rng: np.random.Generator) -> Value:
        """Uniform over the integers or the interval."""
        if self.integer:
            return int(rng.integers(int(self.low), int(self.high) + 1))
        return float(rng.uniform(self.low, self.high))


Dimension = Choice | Numeric
"""One dimension of a search space."""


def dimension_from_schema(schema: Mapping[str, object]) -> Dimension:
    """Rebuild a dimension from :meth:`Choice.schema` or :meth:`Numeric.schema`."""
    active = schema.get("active_if")
    active_if = (str(active[0]), int(active[1])) if active is not None else None  # type: ignore[index]
    numeric = schema.get("numeric")
    if numeric is not None:
        bounds: Mapping[str, object] = numeric  # type: ignore[assignment]
        return Numeric(
            str(schema["name"]),
            bounds["low"],  # type: ignore[arg-type]
            bounds["high"],  # type: ignore[arg-type]
            integer=bool(bounds["integer"]),
            active_if=active_if,
        )
    return Choice(
        str(schema["name"]),
        tuple(schema["options"]),  # type: ignore[arg-type]
        ordered=bool(schema["ordered"]),
        active_if=active_if,
    )


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of dimensions; every function of the platform speaks through it.

    Example:
        >>> space = SearchSpace("demo", (Choice("k", (3, 5)), Choice("e", (1, 2, 4))))
        >>> space.size()
        6
        >>> cfg = space.sample(np.random.default_rng(0))
        >>> space.decode(space.encode(cfg)) == cfg
        True
    """

    name: str
    dims: tuple[Dimension, ...]
    metadata: Mapping[str, object] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        names = [d.name for d in self.dims]
        if len(set(names)) != len(names):
            raise ConfigError(f"search space {self.name!r} has duplicated dimensions")
        by_name = {d.name: d for d in self.dims}
        for dim in self.dims:
            if dim.active_if is not None and dim.active_if[0] not in by_name:
                raise ConfigError(
                    f"{dim.name}.active_if refers to {dim.active_if[0]!r}, "
                    f"not one of {sorted(by_name)}"
                )
            if dim.active_if is not None and not isinstance(by_name[dim.active_if[0]], Choice):
                raise ConfigError(
                    f"{dim.name}.active_if refers to {dim.active_if[0]!r}, a numeric dimension; "
                    "depth dimensions must be Choice"
                )

    # -- introspection -------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dims)

    def dim(self, name: str) -> Dimension:
        """The dimension called ``name``."""
        for d in self.dims:
            if d.name == name:
                return d
        raise ConfigError(format_choice_error("dimension", name, list(self.names)))

    @property
    def has_numeric(self) -> bool:
        """Whether any dimension is :class:`Numeric` (encodings are then ``float64``)."""
        return any(isinstance(d, Numeric) for d in self.dims)

    @property
    def n_options(self) -> np.ndarray:
        """Number of options per dimension (upper bounds for integer encodings are this - 1).

        Raises:
            ConfigError: the space has numeric dimensions (they have no options to count).
        """
        numeric = [d.name for d in self.dims if isinstance(d, Numeric)]
        if numeric:
            raise ConfigError(
                f"search space {self.name!r} has numeric dimension {numeric[0]!r}; option "
                "counts (and the searchers that enumerate options) need Choice dimensions"
            )
        return np.array([len(d.options) for d in self.dims], dtype=np.int64)  # type: ignore[union-attr]

    def size(self) -> int:
        """Number of distinct encodings (product of option counts; integers count each value).

        Raises:
            ConfigError: the space has a real-valued dimension (infinitely many values).
        """
        counts = []
        for d in self.dims:
            if isinstance(d, Numeric):
                if not d.integer:
                    raise ConfigError(
                        f"search space {self.name!r} has real-valued dimension {d.name!r}; "
                        "its size is infinite"
                    )
                counts.append(int(d.high) - int(d.low) + 1)
            else:
                counts.append(len(d.options))
        return math.prod(counts)

    def fingerprint(self) -> str:
        """Hash of names, options and structure; artifacts record it to refuse other spaces."""
        payload = [
            [d.name, list(d.options), d.ordered, d.active_if]
            if isinstance(d, Choice)
            else [d.name, {"numeric": [d.low, d.high], "integer": d.integer}, True, d.active_if]
            for d in self.dims
        ]
        arch = self.metadata.get("arch_dict")
        text = json.dumps([self.name, payload, arch], separators=(",", ":"), default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    # -- validation ----------------------------------------------------------------------------
    def validate(self, config: SubnetConfig | Mapping[str, Value]) -> SubnetConfig:
        """Check keys and values; return the config with values normalised to the option types.

        Raises:
            ConfigError: on an unknown key, a missing key or a value outside a dimension; the
                message names the key, the allowed values and the given value.
        """
        data = config.to_dict() if isinstance(config, SubnetConfig) else dict(config)
        unknown = sorted(set(data) - set(self.names))
        if unknown:
            raise ConfigError(
                f"config key {unknown[0]!r} is not a dimension of search space {self.name!r}; "
                f"allowed keys: {list(self.names)}"
            )
        missing = [n for n in self.names if n not in data]
        if missing:
            raise ConfigError(
                f"config is missing key {missing[0]!r} of search space {self.name!r} "
                f"(allowed values: {self.dim(missing[0]).allowed()})"
            )
        values = []
        for d in self.dims:
            values.append((d.name, d.normalise(data[d.name])))
        return SubnetConfig(tuple(values))

    def contains(self, config: SubnetConfig | Mapping[str, Value]) -> bool:
        """Whether ``config`` validates."""
        try:
            self.validate(config)
        except ConfigError:
            return False
        return True

    # -- encodings -----------------------------------------------------------------------------
    @property
    def encoding_dtype(self) -> type:
        """``int64`` (option indices), or ``float64`` when a dimension is :class:`Numeric`."""
        return np.float64 if self.has_numeric else np.int64

    def encode(self, config: SubnetConfig | Mapping[str, Value]) -> np.ndarray:
        """Option indices (numeric dimensions: their value), shape ``(n_dims,)``.

        The dtype is :attr:`encoding_dtype`: int64 unless the space has numeric dimensions.
        """
        cfg = self.validate(config)
        return np.array([d.encode_value(cfg[d.name]) for d in self.dims], self.encoding_dtype)

    def encode_many(self, configs: Iterable[SubnetConfig | Mapping[str, Value]]) -> np.ndarray:
        """Stack :meth:`encode` over configs, shape ``(n, n_dims)``."""
        rows = [self.encode(c) for c in configs]
        return np.stack(rows) if rows else np.zeros((0, len(self.dims)), self.encoding_dtype)

    def decode(self, x: ArrayLike) -> SubnetConfig:
        """Config from an index vector; floats are rounded (searchers may emit them)."""
        arr = np.asarray(x)
        if arr.shape != (len(self.dims),):
            raise ConfigError(
                f"encoded config has shape {arr.shape}, expected ({len(self.dims)},) "
                f"for search space {self.name!r}"
            )
        idx = np.rint(arr.astype(float)).astype(np.int64)
        values: list[tuple[str, Value]] = []
        for d, i, raw in zip(self.dims, idx, arr, strict=True):
            if isinstance(d, Numeric):
                values.append((d.name, d.normalise(float(raw))))
                continue
            if not 0 <= i < len(d.options):
                raise ConfigError(
                    f"{d.name} index {int(i)} is outside 0..{len(d.options) - 1} "
                    f"(allowed values: {list(d.options)})"
                )
            values.append((d.name, d.options[int(i)]))
        return SubnetConfig(tuple(values))

    def decode_many(self, xs: ArrayLike) -> list[SubnetConfig]:
        """Apply :meth:`decode` row by row."""
        return [self.decode(row) for row in np.atleast_2d(np.asarray(xs))]

    # -- structure ------------------------------------------------------------------------------
    def is_active(self, config: SubnetConfig, name: str) -> bool:
        """Whether dimension ``name`` influences the network for ``config``."""
        dim = self.dim(name)
        if dim.active_if is None:
            return True
        depth_dim, j = dim.active_if
        return int(config[depth_dim]) > j

    def canonical(self, config: SubnetConfig | Mapping[str, Value]) -> SubnetConfig:
        """Same network, inactive dimensions set to their first option (for deduplication)."""
        cfg = self.validate(config)
        values = [
            (d.name, cfg[d.name] if self.is_active(cfg, d.name) else _first(d)) for d in self.dims
        ]
        return SubnetConfig(tuple(values))

    def canonical_indices(self, X: ArrayLike) -> np.ndarray:
        """:meth:`canonical` on option-index rows, vectorised: inactive columns set to 0.

        (Numeric columns: to their ``low``.)

        Example:
            >>> space = SearchSpace("s", (Choice("depth", (1, 2)),
            ...                           Choice("w1", (8, 16), active_if=("depth", 1))))
            >>> space.canonical_indices([[0, 1], [1, 1]]).tolist()
            [[0, 0], [1, 1]]
        """
        out: np.ndarray = np.array(X, dtype=self.encoding_dtype, copy=True).reshape(
            -1, len(self.dims)
        )
        names = self.names
        for column, dim in enumerate(self.dims):
            if dim.active_if is None:
                continue
            depth_name, j = dim.active_if
            depth_column = names.index(depth_name)
            depth_values = self.dims[depth_column].options  # type: ignore[union-attr]
            active = np.array([int(v) > j for v in depth_values])
            inactive = ~active[out[:, depth_column].astype(np.int64)]
            out[inactive, column] = dim.low if isinstance(dim, Numeric) else 0
        return out

    # -- sampling -------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> SubnetConfig:
        """Uniform sample over the encoding (each dimension independently)."""
        if self.has_numeric:
            values = [
                (d.name, d.sample(rng) if isinstance(d, Numeric) else _draw(d, rng))
                for d in self.dims
            ]
            return SubnetConfig(tuple(values))
        idx = [int(rng.integers(len(d.options))) for d in self.dims]  # type: ignore[union-attr]
        return self.decode(np.array(idx))

    def sample_many(self, n: int, rng: np.random.Generator) -> list[SubnetConfig]:
        """``n`` independent samples."""
        return [self.sample(rng) for _ in range(n)]

    def smallest(self) -> SubnetConfig:
        """First option of every dimension (the cheapest network for ordered spaces)."""
        return SubnetConfig(tuple((d.name, _first(d)) for d in self.dims))

    def largest(self) -> SubnetConfig:
        """Last option of every dimension (the most expensive network for ordered spaces)."""
        return SubnetConfig(
            tuple((d.name, d.high if isinstance(d, Numeric) else d.options[-1]) for d in self.dims)
        )

    def enumerate(self) -> list[SubnetConfig]:
        """Every config (only for small spaces: refuses more than a million)."""
        if self.size() > 1_000_000:
            raise ConfigError(f"search space {self.name!r} has {self.size()} configs; too many")
        if self.has_numeric:
            raise ConfigError(f"search space {self.name!r} has numeric dimensions; not enumerable")
        grids = np.indices(tuple(int(n) for n in self.n_options)).reshape(len(self.dims), -1).T
        return [self.decode(row) for row in grids]

    def configs_from_records(self, records: Sequence[Mapping[str, Value]]) -> list[SubnetConfig]:
        """Validate a list of plain dicts (e.g. JSON input) into configs."""
        return [self.validate(r) for r in records]


def _first(dim: Dimension) -> Value:
    """The value of an inactive dimension: the first option, or ``low``."""
    return dim.low if isinstance(dim, Numeric) else dim.options[0]


def _draw(dim: Choice, rng: np.random.Generator) -> Value:
    return dim.options[int(rng.integers(len(dim.options)))]
