"""Supernet training in plain torch: sandwich rule, in-place distillation, BN re-calibration.

Nothing here imports Ray; :mod:`nas.execution.ray_training` runs these pieces on Ray Train.
"""

from nas.training.config import TrainConfig
from nas.training.recalibrate import recalibrate_bn
from nas.training.sampling import ProgressiveSchedule, sandwich_configs
from nas.training.step import SandwichObjective, StepLosses, sandwich_backward

__all__ = [
    "ProgressiveSchedule",
    "SandwichObjective",
    "StepLosses",
    "TrainConfig",
    "recalibrate_bn",
    "sandwich_backward",
    "sandwich_configs",
]
