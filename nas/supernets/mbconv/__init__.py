"""The MBConv supernet family: architecture, shared-weight supernet, static subnet, cost model.

The supernet's names are re-exported here, imported on first use (the architecture is torch-free).
"""

from __future__ import annotations

from nas.lazy import lazy_getattr

_LAZY = {
    "BlockPlan": "nas.supernets.mbconv.supernet",
    "MBConvSupernet": "nas.supernets.mbconv.supernet",
    "SubnetPlan": "nas.supernets.mbconv.supernet",
    "make_plan": "nas.supernets.mbconv.supernet",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
