"""Weight-sharing neural architecture search: elastic supernets, measurement, predictors, search.

Public entry points are re-exported here; Ray-dependent code lives in :mod:`nas.execution`.
"""

from nas.errors import ConfigError, IncompatibleArtifactError, UnsafeFileError
from nas.results import Evaluation, ResultStore
from nas.space import Choice, SearchSpace
from nas.subnet import SubnetConfig
from nas.supernet import Supernet

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
