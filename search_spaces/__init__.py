"""Registry of search spaces: name → factory. Tests iterate over it, so every entry is checked."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, cast

from nas.errors import ConfigError, IncompatibleArtifactError, format_choice_error
from nas.space import SearchSpace
from search_spaces import (
    fashion_cnn,
    fbnet,
    mobilenet_like,
    nas_bench_201,
    ofa_mbv3_table,
    tiny_cnn,
    vit_fashion,
    vit_tiny,
)

REGISTRY: dict[str, Callable[..., SearchSpace]] = {
    "fashion_cnn": fashion_cnn.build,
    "tiny_cnn": tiny_cnn.build,
    "mobilenet_like": mobilenet_like.build,
    "nas_bench_201": nas_bench_201.build,
    "fbnet": fbnet.build,
    "ofa_mbv3_table": ofa_mbv3_table.build,
    "vit_fashion": vit_fashion.build,
    "vit_tiny": vit_tiny.build,
}
SUPERNET_SPACES: tuple[str, ...] = (
    "fashion_cnn",
    "tiny_cnn",
    "mobilenet_like",
    "vit_fashion",
    "vit_tiny",
)
"""Spaces with a supernet (of a family in :mod:`nas.supernets`); the others (NAS-Bench-201,
FBNet, OFA table) are table-backed. A conformance test checks this list against the registry."""


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


def describe(space: SearchSpace) -> dict[str, Any]:
    """How artifacts (checkpoints, model cards) record the space they belong to."""
    return {
        "name": space.name,
        "options": dict(cast("Mapping[str, Any]", space.metadata.get("options", {}))),
        "fingerprint": space.fingerprint(),
    }


def rebuild(description: Mapping[str, Any], *, artifact: str) -> SearchSpace:
    """The space :func:`describe` recorded, refusing one whose definition has changed since.

    Raises:
        IncompatibleArtifactError: the rebuilt space's fingerprint differs from the recorded one.
    """
    options = {
        k: tuple(v) if isinstance(v, list) else v for k, v in description["options"].items()
    }
    space = get(description["name"], **options)
    if space.fingerprint() != description["fingerprint"]:
        raise IncompatibleArtifactError(
            f"{artifact}: search space {description['name']!r} now has fingerprint "
            f"{space.fingerprint()}; the artifact was made for {description['fingerprint']}"
        )
    return space
