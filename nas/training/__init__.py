"""Supernet training in plain torch: sandwich rule, in-place distillation, BN re-calibration.

Nothing here imports Ray; :mod:`nas.execution.ray_training` runs these pieces on Ray Train.
Names are imported on first use, so reading a ``TrainConfig`` does not import torch.
"""

from nas.lazy import lazy_getattr

_LAZY = {
    "TrainConfig": "nas.training.config",
    "recalibrate_bn": "nas.training.recalibrate",
    "ProgressiveSchedule": "nas.training.sampling",
    "sandwich_configs": "nas.training.sampling",
    "SandwichObjective": "nas.training.step",
    "StepLosses": "nas.training.step",
    "sandwich_backward": "nas.training.step",
}

__all__ = [
    "ProgressiveSchedule",
    "SandwichObjective",
    "StepLosses",
    "TrainConfig",
    "recalibrate_bn",
    "sandwich_backward",
    "sandwich_configs",
]

__getattr__ = lazy_getattr(__name__, _LAZY)
