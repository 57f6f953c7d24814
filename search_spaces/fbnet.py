"""FBNet space: 22 layers × 9 operations (HW-NAS-Bench's CIFAR-100 setting), table-backed.

It has no supernet here; it exists so latency predictors, and their transfer to new devices,
run on the published per-device tables. Every layer is an unordered dimension, so the one-hot
features of :func:`predictors.features.make_features` are one indicator per (layer, operation):
a latency that adds up over layers is linear in them.
"""

from __future__ import annotations

from collections.abc import Sequence

from nas.errors import ConfigError
from nas.space import Choice, SearchSpace
from nas.subnet import SubnetConfig

OPERATIONS: tuple[str, ...] = (
    "k3_e1",
    "k3_e1_g2",
    "k3_e3",
    "k3_e6",
    "k5_e1",
    "k5_e1_g2",
    "k5_e3",
    "k5_e6",
    "skip",
)
"""Kernel, expand ratio and groups of each operation, in the tables' index order."""
N_LAYERS = 22


def layer_name(i: int) -> str:
    return f"layer{i:02d}"


def build(*, layers: int = N_LAYERS) -> SearchSpace:
    """One categorical dimension per layer (``layers`` < 22 builds a smaller space for tests)."""
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= N_LAYERS:
        raise ConfigError(f"layers={layers!r} must be an integer in 1..{N_LAYERS}")
    dims = tuple(Choice(layer_name(i), OPERATIONS, ordered=False) for i in range(layers))
    return SearchSpace("fbnet", dims)


def config_from_op_idx(op_idx: Sequence[int]) -> SubnetConfig:
    """Config from the tables' ``op_idx`` (one operation index per layer)."""
    return SubnetConfig(tuple((layer_name(i), OPERATIONS[int(o)]) for i, o in enumerate(op_idx)))


def op_idx_from_config(config: SubnetConfig) -> list[int]:
    """Inverse of :func:`config_from_op_idx`."""
    return [OPERATIONS.index(str(v)) for _, v in config.items]
