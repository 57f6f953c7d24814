"""Partial configs completed from a named base, so a query names only what it changes.

``smallest`` and ``largest`` are the space's extremes; any other base is the config key of a
subnet in the bundle's Pareto archive (``nas best`` and ``nas status`` print keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nas.errors import ConfigError, format_choice_error
from predictors.bundle import Predictors

NAMED_BASES: tuple[str, ...] = ("smallest", "largest")


def base_config(bundle: Predictors, base: str) -> dict[str, Any]:
    """The full config a base names (raises naming ``base`` and the allowed names)."""
    space = bundle.space
    if base == "smallest":
        return space.smallest().to_dict()
    if base == "largest":
        return space.largest().to_dict()
    keys = {}
    for record in bundle.archive:
        config = space.validate(record["config"])
        keys[config.key] = config.to_dict()
    if base not in keys:
        raise ConfigError(format_choice_error("base", base, [*NAMED_BASES, *sorted(keys)]))
    return keys[base]


def complete(
    bundle: Predictors, configs: Sequence[Mapping[str, Any]], base: str | None
) -> list[dict[str, Any]]:
    """``configs`` with every dimension they leave out taken from ``base`` (none: unchanged).

    Keys the space does not have are kept, so validation names them (``configs[i].<key>``).
    """
    if base is None:
        return [dict(c) for c in configs]
    full = base_config(bundle, base)
    return [{**full, **c} for c in configs]
