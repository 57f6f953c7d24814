"""tiny_cnn: the laptop default, sized for 8×8 grayscale digits (trains in minutes on 2 cores)."""

from __future__ import annotations

from nas.space import SearchSpace
from nas.supernets.mbconv.arch import MBConvArch, StageSpec


def build(
    *,
    bits: tuple[int, ...] = (4, 8, 32),
    in_channels: int = 1,
    num_classes: int = 10,
    resolution: int = 8,
    resolutions: tuple[int, ...] = (),
) -> SearchSpace:
    """Three MBConv stages; elastic depth, stage width, expand ratio, kernel and bits per block."""
    arch = MBConvArch(
        in_channels=in_channels,
        num_classes=num_classes,
        stem_channels=16,
        stem_stride=1,
        stages=(
            StageSpec(widths=(16, 24), depths=(1, 2), stride=1, kernels=(3, 5), expands=(1, 2, 3)),
            StageSpec(
                widths=(24, 32), depths=(1, 2, 3), stride=2, kernels=(3, 5), expands=(1, 2, 3)
            ),
            StageSpec(widths=(32, 48), depths=(1, 2), stride=2, kernels=(3, 5), expands=(1, 2, 3)),
        ),
        bits=tuple(bits),
        activation="relu",
        kernel_transform=False,
        head_channels=None,
        resolution=max(resolutions) if resolutions else resolution,
        resolutions=tuple(sorted(resolutions)),
    )
    return arch.search_space("tiny_cnn")
