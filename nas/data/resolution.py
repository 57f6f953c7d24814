"""Elastic input resolution: a ``resolution`` dimension, and the images resized to match it.

Once-for-All's fourth elastic dimension. A space that declares a dimension named
``resolution`` runs each subnet on images of that side; every consumer (training, accuracy,
latency, cost, export) asks :func:`config_resolution`, so no family or stage special-cases it.
Training draws one resolution per step, shared by every subnet of the step and every Ray Train
worker (seeded by the step, as the sandwich subnets are).
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nas.space import Choice, SearchSpace
from nas.subnet import SubnetConfig

RESOLUTION_DIM = "resolution"
_STREAM = 0x5E5  # separates the per-step resolution draw from the sandwich subnets' draws


def has_resolution(space: SearchSpace) -> bool:
    """Whether ``space`` searches the input resolution."""
    return RESOLUTION_DIM in space.names


def config_resolution(space: SearchSpace, config: SubnetConfig, default: int) -> int:
    """The input side ``config`` runs at: its ``resolution`` value, else ``default``."""
    if has_resolution(space):
        return int(config[RESOLUTION_DIM])
    return default


def resize(images: Tensor, side: int) -> Tensor:
    """``images`` (``[N, C, H, W]``) at ``side × side``, bilinear (half-pixel centres).

    No antialiasing: the same resize is what an exported ONNX graph runs (``Resize``, linear,
    opset 17), so training, measurement and deployment see identical pixels.
    """
    if images.shape[-1] == side and images.shape[-2] == side:
        return images
    return interpolate(images, side)


def interpolate(images: Tensor, side: int) -> Tensor:
    """The resize itself, unconditionally (what exported graphs trace)."""
    return F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)


def step_resolution(space: SearchSpace, seed: int, step: int) -> int | None:
    """The resolution of global training step ``step`` (``None``: the space has no such dim)."""
    if not has_resolution(space):
        return None
    options = cast(Choice, space.dim(RESOLUTION_DIM)).options  # resolutions: a Choice
    return int(options[int(np.random.default_rng([seed, step, _STREAM]).integers(len(options)))])


def at_resolution(space: SearchSpace, config: SubnetConfig, side: int | None) -> SubnetConfig:
    """``config`` with its resolution set to ``side`` (unchanged without a resolution dim)."""
    if side is None or not has_resolution(space):
        return config
    return config.replace(**{RESOLUTION_DIM: side})


@torch.no_grad()
def images_for(space: SearchSpace, config: SubnetConfig, images: Tensor) -> Tensor:
    """``images`` resized to ``config``'s resolution (unchanged without a resolution dim)."""
    if not has_resolution(space):
        return images
    return resize(images, int(config[RESOLUTION_DIM]))


__all__ = [
    "RESOLUTION_DIM",
    "at_resolution",
    "config_resolution",
    "has_resolution",
    "images_for",
    "interpolate",
    "resize",
    "step_resolution",
]
