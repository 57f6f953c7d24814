"""Registry of search spaces: name → factory. Tests iterate over it, so every entry is checked."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from nas.errors import ConfigError, format_choice_error
from nas.space import SearchSpace
from search_spaces import mobilenet_like, nas_bench_201, tiny_cnn

REGISTRY: dict[str, Callable[..., SearchSpace]] = {
    "tiny_cnn": tiny_cnn.build,
    "mobilenet_like": mobilenet_like.build,
    "nas_bench_201": nas_bench_201.build,
}
SUPERNET_SPACES: tuple[str, ...] = ("tiny_cnn", "mobilenet_like")


def names() -> list[str]:
    """Registered space names."""
    return sorted(REGISTRY)


def get(name: str, **options: object) -> SearchSpace:
    """Build a registered space; unknown names and options raise ConfigError naming the allowed."""
    if name not in REGISTRY:
        raise ConfigError(format_choice_error("search_space", name, names()))
    try:
        space = REGISTRY[name](**options)
    except TypeError as exc:
        raise ConfigError(f"search_space {name!r}: bad options {sorted(options)}: {exc}") from exc
    # Record how the space was built so artifacts can rebuild it (model cards, predictors).
    return dataclasses.replace(space, metadata={**space.metadata, "options": dict(options)})
