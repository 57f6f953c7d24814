"""What a search space offers: dimensions, allowed values, and its smallest and largest configs.

Behind ``nas space NAME`` and the service's ``GET /space``, so users read the dimension names
and values from the platform instead of copying them out of model cards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nas.errors import ConfigError, format_choice_error
from nas.space import Choice, Numeric, SearchSpace


def build_named_space(name: str, options: Mapping[str, Any] | None = None) -> SearchSpace:
    """A registered space by name; unknown names and options name the allowed ones."""
    import search_spaces

    if name not in search_spaces.REGISTRY:
        raise ConfigError(format_choice_error("NAME", name, search_spaces.names()))
    return search_spaces.get(name, **dict(options or {}))


def space_summary(space: SearchSpace) -> dict[str, Any]:
    """Dimensions (name, values, ordered, when active), size, smallest and largest configs."""
    try:
        size: int | None = space.size()
    except ConfigError:  # a real-valued dimension: infinitely many configs
        size = None
    return {
        "name": space.name,
        "fingerprint": space.fingerprint(),
        "size": size,
        "dimensions": [_dimension(d) for d in space.dims],
        "smallest": space.smallest().to_dict(),
        "largest": space.largest().to_dict(),
    }


def _dimension(d: Choice | Numeric) -> dict[str, Any]:
    """One dimension: a choice lists its values; a numeric one gives ``[low, high]``."""
    active = None if d.active_if is None else f"{d.active_if[0]} > {d.active_if[1]}"
    if isinstance(d, Numeric):
        kind = "integers" if d.integer else "reals"
        return {"name": d.name, "kind": kind, "values": [d.low, d.high], "ordered": True,
                "active_if": active}  # fmt: skip
    return {"name": d.name, "kind": "choice", "values": list(d.options), "ordered": d.ordered,
            "active_if": active}  # fmt: skip


def format_summary(summary: Mapping[str, Any]) -> str:
    """The table ``nas space NAME`` prints."""
    dims = summary["dimensions"]
    width = max(len("dimension"), *(len(d["name"]) for d in dims))
    lines = [
        f"space {summary['name']} (fingerprint {summary['fingerprint']}): "
        f"{len(dims)} dimensions, "
        + ("infinitely many" if summary["size"] is None else f"{summary['size']:,}")
        + " configs",
        f"{'dimension':<{width}}  {'values':<24} {'smallest':>9} {'largest':>8}  active when",
    ]
    for d in dims:
        values = ", ".join(str(v) for v in d["values"])
        if d.get("kind") in ("integers", "reals"):
            values = f"{d['kind']} in [{values}]"
        lines.append(
            f"{d['name']:<{width}}  {values:<24} {summary['smallest'][d['name']]!s:>9} "
            f"{summary['largest'][d['name']]!s:>8}  {d['active_if'] or 'always'}"
        )
    return "\n".join(lines)
