"""SearchSpace: named discrete dimensions with sampling, integer encoding and validation.

Algorithms see a flat integer vector (one option index per dimension); models see a
:class:`~nas.subnet.SubnetConfig`. Encoding is exact, so ``decode(encode(c)) == c``.
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
                if isinstance(value, int | float) and float(option) == float(value):  # type: ignore[arg-type]
                    return i
            elif option == value:
                return i
        raise ConfigError(format_choice_error(self.name, value, list(self.options)))


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
    dims: tuple[Choice, ...]
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

    # -- introspection -------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dims)

    def dim(self, name: str) -> Choice:
        """The dimension called ``name``."""
        for d in self.dims:
            if d.name == name:
                return d
        raise ConfigError(format_choice_error("dimension", name, list(self.names)))

    @property
    def n_options(self) -> np.ndarray:
        """Number of options per dimension (upper bounds for integer encodings are this - 1)."""
        return np.array([len(d.options) for d in self.dims], dtype=np.int64)

    def size(self) -> int:
        """Number of distinct encodings (product of option counts)."""
        return math.prod(len(d.options) for d in self.dims)

    def fingerprint(self) -> str:
        """Hash of names, options and structure; artifacts record it to refuse other spaces."""
        payload = [[d.name, list(d.options), d.ordered, d.active_if] for d in self.dims]
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
                f"(allowed values: {list(self.dim(missing[0]).options)})"
            )
        values = []
        for d in self.dims:
            values.append((d.name, d.options[d.index(data[d.name])]))
        return SubnetConfig(tuple(values))

    def contains(self, config: SubnetConfig | Mapping[str, Value]) -> bool:
        """Whether ``config`` validates."""
        try:
            self.validate(config)
        except ConfigError:
            return False
        return True

    # -- encodings -----------------------------------------------------------------------------
    def encode(self, config: SubnetConfig | Mapping[str, Value]) -> np.ndarray:
        """Option indices, shape ``(n_dims,)``, dtype int64."""
        cfg = self.validate(config)
        return np.array([d.index(cfg[d.name]) for d in self.dims], dtype=np.int64)

    def encode_many(self, configs: Iterable[SubnetConfig | Mapping[str, Value]]) -> np.ndarray:
        """Stack :meth:`encode` over configs, shape ``(n, n_dims)``."""
        rows = [self.encode(c) for c in configs]
        return np.stack(rows) if rows else np.zeros((0, len(self.dims)), dtype=np.int64)

    def decode(self, x: ArrayLike) -> SubnetConfig:
        """Config from an index vector; floats are rounded (searchers may emit them)."""
        arr = np.asarray(x)
        if arr.shape != (len(self.dims),):
            raise ConfigError(
                f"encoded config has shape {arr.shape}, expected ({len(self.dims)},) "
                f"for search space {self.name!r}"
            )
        idx = np.rint(arr.astype(float)).astype(np.int64)
        values = []
        for d, i in zip(self.dims, idx, strict=True):
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
        return int(config[depth_dim]) > j  # type: ignore[arg-type]

    def canonical(self, config: SubnetConfig | Mapping[str, Value]) -> SubnetConfig:
        """Same network, inactive dimensions set to their first option (for deduplication)."""
        cfg = self.validate(config)
        values = [
            (d.name, cfg[d.name] if self.is_active(cfg, d.name) else d.options[0])
            for d in self.dims
        ]
        return SubnetConfig(tuple(values))

    def canonical_indices(self, X: ArrayLike) -> np.ndarray:
        """:meth:`canonical` on option-index rows, vectorised: inactive columns set to 0.

        Example:
            >>> space = SearchSpace("s", (Choice("depth", (1, 2)),
            ...                           Choice("w1", (8, 16), active_if=("depth", 1))))
            >>> space.canonical_indices([[0, 1], [1, 1]]).tolist()
            [[0, 0], [1, 1]]
        """
        out = np.array(X, dtype=np.int64, copy=True).reshape(-1, len(self.dims))
        names = self.names
        for column, dim in enumerate(self.dims):
            if dim.active_if is None:
                continue
            depth_name, j = dim.active_if
            depth_column = names.index(depth_name)
            depth_values = self.dims[depth_column].options
            active = np.array([int(v) > j for v in depth_values])  # type: ignore[call-overload]
            out[~active[out[:, depth_column]], column] = 0
        return out

    # -- sampling -------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> SubnetConfig:
        """Uniform sample over the encoding (each dimension independently)."""
        idx = [int(rng.integers(len(d.options))) for d in self.dims]
        return self.decode(np.array(idx))

    def sample_many(self, n: int, rng: np.random.Generator) -> list[SubnetConfig]:
        """``n`` independent samples."""
        return [self.sample(rng) for _ in range(n)]

    def smallest(self) -> SubnetConfig:
        """First option of every dimension (the cheapest network for ordered spaces)."""
        return self.decode(np.zeros(len(self.dims), dtype=np.int64))

    def largest(self) -> SubnetConfig:
        """Last option of every dimension (the most expensive network for ordered spaces)."""
        return self.decode(self.n_options - 1)

    def enumerate(self) -> list[SubnetConfig]:
        """Every config (only for small spaces: refuses more than a million)."""
        if self.size() > 1_000_000:
            raise ConfigError(f"search space {self.name!r} has {self.size()} configs; too many")
        grids = np.indices(tuple(int(n) for n in self.n_options)).reshape(len(self.dims), -1).T
        return [self.decode(row) for row in grids]

    def configs_from_records(self, records: Sequence[Mapping[str, Value]]) -> list[SubnetConfig]:
        """Validate a list of plain dicts (e.g. JSON input) into configs."""
        return [self.validate(r) for r in records]
