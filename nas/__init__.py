"""Weight-sharing neural architecture search: elastic supernets, measurement, predictors, search.

Public entry points are re-exported here, imported on first use (PEP 562) so that the command
line starts without importing torch; Ray-dependent code lives in :mod:`nas.execution`.
"""

from __future__ import annotations

from nas.errors import ConfigError, IncompatibleArtifactError, UnsafeFileError
from nas.lazy import lazy_getattr

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

__getattr__ = lazy_getattr(__name__, _LAZY)
