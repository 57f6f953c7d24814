"""Measurement: hardware targets, latency (whole model and lookup table), cost, evaluation."""

from nas.measure.latency import LatencyProtocol, LatencyResult, measure_latency
from nas.measure.targets import HardwareTarget, TargetRegistry, default_registry

__all__ = [
    "HardwareTarget",
    "LatencyProtocol",
    "LatencyResult",
    "TargetRegistry",
    "default_registry",
    "measure_latency",
]
