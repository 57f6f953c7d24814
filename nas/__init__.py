"""Weight-sharing neural architecture search: elastic supernets, measurement, predictors, search.

Public entry points are re-exported here, imported on first use (PEP 562) so that the command
line starts without importing torch; Ray-dependent code lives in :mod:`nas.execution`.
"""

from __future__ import annotations

import importlib
from typing import Any

from nas.errors import ConfigError, IncompatibleArtifactError, UnsafeFileError

_LAZY = {
    "Evaluation": "nas.results",
    "ResultStore": "nas.results",
    "Choice": "nas.space",
    "SearchSpace": "nas.space",
    "SubnetConfig": "nas.subnet",
    "Supernet": "nas.supernet",
}

__all__ = [
    "Choice",
    "ConfigError",
    "Evaluation",
    "IncompatibleArtifactError",
    "ResultStore",
    "SearchSpace",
    "SubnetConfig",
    "Supernet",
    "UnsafeFileError",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nas' has no attribute {name!r}")
