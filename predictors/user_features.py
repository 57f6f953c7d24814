"""User feature hooks: extra predictor features computed from a config (e.g. per-layer MACs).

A hook is a function ``config -> np.ndarray`` of a fixed length, registered under a name::

    from predictors.user_features import register
    register("my_macs", my_macs, n_features=20, spaces=("ofa_mbv3_table",))
    make_predictor(space, kind="gbr", user_features="my_macs")

Every predictor kind accepts ``user_features=`` (it extends the features step of
:func:`predictors.features.make_features`): the hook's columns, standardised, are appended to
the encoded features. Pipelines store only the hook's *name*, so a saved predictor stays free of
code; the process that loads it must register the same hook before predicting.

A hook that returns another shape, or non-finite values, raises a :class:`ConfigError` naming
the hook, the config's position and the shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from nas.errors import ConfigError, format_choice_error
from nas.space import Numeric, SearchSpace
from nas.subnet import SubnetConfig

Hook = Callable[[SubnetConfig], np.ndarray]


@dataclass(frozen=True)
class FeatureHook:
    """A registered hook: the function, its output length and the spaces it is meant for."""

    name: str
    fn: Hook
    n_features: int
    spaces: tuple[str, ...] = ()


REGISTRY: dict[str, FeatureHook] = {}
"""Registered hooks: name → :class:`FeatureHook`. The conformance suite iterates it."""


def register(
    name: str, fn: Hook, *, n_features: int, spaces: Sequence[str] = (), replace: bool = False
) -> FeatureHook:
    """Register ``fn`` as the hook ``name`` returning ``n_features`` values per config.

    Args:
        name: Key that ``user_features=`` takes.
        fn: ``config -> array`` of shape ``(n_features,)``.
        n_features: Length of every returned array.
        spaces: Names of the search spaces the hook understands (empty: any).
        replace: Allow re-registering an existing name.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"user_features name={name!r} must be a non-empty string")
    if not callable(fn):
        raise ConfigError(f"user_features {name!r}: fn={fn!r} is not callable")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ConfigError(f"user_features {name!r}: n_features={n_features!r} must be >= 1")
    if name in REGISTRY and not replace:
        raise ConfigError(f"user_features {name!r} is already registered (pass replace=True)")
    hook = FeatureHook(name, fn, n_features, tuple(spaces))
    REGISTRY[name] = hook
    return hook


def names() -> list[str]:
    """Registered hook names."""
    return sorted(REGISTRY)


def get(name: str) -> FeatureHook:
    """The hook ``name``; ConfigError naming the registered ones otherwise."""
    if name not in REGISTRY:
        raise ConfigError(format_choice_error("user_features", name, names()))
    return REGISTRY[name]


def check_hook(name: str, space: SearchSpace) -> FeatureHook:
    """The hook ``name``, refusing one registered for other spaces."""
    hook = get(name)
    if hook.spaces and space.name not in hook.spaces:
        raise ConfigError(
            f"user_features={name!r} is for search spaces {list(hook.spaces)}, not {space.name!r}"
        )
    return hook


def space_columns(space: SearchSpace) -> dict[str, list[object]]:
    """Keyword arguments of :func:`apply_user_features` describing ``space``'s dimensions."""
    return {
        "names": list(space.names),
        "options": [None if isinstance(d, Numeric) else list(d.options) for d in space.dims],
        "lows": [d.low if isinstance(d, Numeric) else None for d in space.dims],
        "integers": [isinstance(d, Numeric) and d.integer for d in space.dims],
    }


def apply_user_features(
    X: np.ndarray,
    *,
    hook: str,
    names: list[str],
    options: list[list[object] | None],
    lows: list[float | None],
    integers: list[bool],
) -> np.ndarray:
    """The hook's values for each encoded row, shape ``(n, n_features)``.

    Rows are decoded with ``names`` and ``options`` (masked ``-1`` indices become the first
    option, masked numeric ``NaN`` values the column's smallest value), so the hook sees the
    canonical config. Stored in pipelines by name only (see the module doc).
    """
    entry = get(hook)
    X = np.asarray(X)
    out = np.empty((len(X), entry.n_features))
    for r, row in enumerate(X):
        items: list[tuple[str, object]] = []
        for name, opts, low, integer, value in zip(
            names, options, lows, integers, row, strict=True
        ):
            if opts is None:
                number = float(value) if np.isfinite(value) else float(low)  # type: ignore[arg-type]
                items.append((name, int(number) if integer else number))
            else:
                items.append((name, opts[max(int(value), 0)]))
        config = SubnetConfig(tuple(items))  # type: ignore[arg-type]
        values = np.asarray(entry.fn(config), dtype=float)
        if values.shape != (entry.n_features,):
            raise ConfigError(
                f"user_features hook {hook!r} returned shape {values.shape} for configs[{r}]; "
                f"it is registered with n_features={entry.n_features}, so expected "
                f"({entry.n_features},)"
            )
        if not np.isfinite(values).all():
            raise ConfigError(
                f"user_features hook {hook!r} returned non-finite values for configs[{r}]"
            )
        out[r] = values
    return out


def _ofa_block_macs(config: SubnetConfig) -> np.ndarray:
    from search_spaces.ofa_mbv3_table import block_macs

    return block_macs(config)


register("ofa_block_macs", _ofa_block_macs, n_features=20, spaces=("ofa_mbv3_table",))
