"""Measurement: hardware targets, latency (whole model and lookup table), cost, evaluation.

Names are imported on first use (PEP 562), so reading targets does not import torch.
"""

from __future__ import annotations

from nas.lazy import lazy_getattr

_LAZY = {
    "LatencyProtocol": "nas.measure.latency",
    "LatencyResult": "nas.measure.latency",
    "measure_latency": "nas.measure.latency",
    "HardwareTarget": "nas.measure.targets",
    "TargetRegistry": "nas.measure.targets",
    "default_registry": "nas.measure.targets",
}

__all__ = [
    "HardwareTarget",
    "LatencyProtocol",
    "LatencyResult",
    "TargetRegistry",
    "default_registry",
    "measure_latency",
]

__getattr__ = lazy_getattr(__name__, _LAZY)
