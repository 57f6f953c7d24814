"""SubnetConfig: one point of a search space, as an immutable, hashable, JSON-friendly value."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from nas.errors import ConfigError

Value = int | float | str


@dataclass(frozen=True)
class SubnetConfig:
    """A named assignment of every dimension of a search space.

    The values are stored as an ordered tuple of ``(name, value)`` pairs so the config is hashable
    and its order follows the search space. Use :meth:`SearchSpace.validate` to check it against a
    space; this class only guarantees a well-formed mapping.

    Example:
        >>> cfg = SubnetConfig.from_dict({"s0.depth": 2, "s0.b0.kernel": 3})
        >>> cfg["s0.depth"]
        2
    """

    items: tuple[tuple[str, Value], ...]

    def __post_init__(self) -> None:
        names = [name for name, _ in self.items]
        if len(set(names)) != len(names):
            duplicated = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"config has duplicated keys {duplicated}")
        for name, value in self.items:
            if not isinstance(name, str):
                raise ConfigError(f"config key {name!r} must be a string")
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ConfigError(f"config[{name!r}]={value!r} must be an int, float or str")

    def __getitem__(self, name: str) -> Value:
        for key, value in self.items:
            if key == name:
                return value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def get(self, name: str, default: Value | None = None) -> Value | None:
        """Return the value of ``name`` or ``default``."""
        try:
            return self[name]
        except KeyError:
            return default

    def to_dict(self) -> dict[str, Value]:
        """Plain dict in dimension order (JSON-serialisable)."""
        return dict(self.items)

    @classmethod
    def from_dict(cls, data: Mapping[str, Value]) -> SubnetConfig:
        """Build from a mapping; values stay as given (``SearchSpace.validate`` normalises)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a subnet config must be a mapping of name -> value, got {data!r}")
        return cls(tuple((str(k), v) for k, v in data.items()))

    def to_json(self) -> str:
        """Canonical JSON (keys in dimension order, no spaces)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @property
    def key(self) -> str:
        """Stable id from canonical JSON with sorted keys: equal configs, equal keys."""
        canonical = json.dumps(dict(sorted(self.items)), separators=(",", ":"))
        return hashlib.sha1(canonical.encode()).hexdigest()[:16]

    def replace(self, **changes: Value) -> SubnetConfig:
        """Return a copy with some values changed (keys must exist)."""
        unknown = sorted(set(changes) - set(self))
        if unknown:
            raise ConfigError(f"cannot replace unknown keys {unknown}; allowed: {list(self)}")
        return SubnetConfig(tuple((n, changes.get(n, v)) for n, v in self.items))
