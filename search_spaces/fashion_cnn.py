"""fashion_cnn: the default space, sized for 28×28 grey images (Fashion-MNIST, MNIST family).

A stride-2 stem takes the 28×28 input to 14×14, then three MBConv stages (14, 7, 4 pixels) with
elastic depth, stage width, expand ratio, kernel and bits per block. The smallest subnet is about
a tenth of the largest in MACs, so the space spans a real accuracy / latency trade-off, and its
largest subnet still trains in minutes on 2 CPU cores.
"""

from __future__ import annotations

from nas.space import SearchSpace
from nas.supernets.mbconv.arch import MBConvArch, StageSpec


def build(
    *,
    bits: tuple[int, ...] = (4, 8, 32),
    in_channels: int = 1,
    num_classes: int = 10,
    resolution: int = 28,
    resolutions: tuple[int, ...] = (),
) -> SearchSpace:
    """Three MBConv stages after a stride-2 stem; every stage width has three choices."""
    arch = MBConvArch(
        in_channels=in_channels,
        num_classes=num_classes,
        stem_channels=16,
        stem_stride=2,
        stages=(
            StageSpec(
                widths=(8, 16, 24), depths=(1, 2), stride=1, kernels=(3, 5), expands=(1, 2, 3)
            ),
            StageSpec(
                widths=(16, 24, 32), depths=(1, 2, 3), stride=2, kernels=(3, 5), expands=(1, 2, 3)
            ),
            StageSpec(
                widths=(24, 32, 48), depths=(1, 2), stride=2, kernels=(3, 5), expands=(1, 2, 3)
            ),
        ),
        bits=tuple(bits),
        activation="relu",
        kernel_transform=False,
        head_channels=None,
        resolution=max(resolutions) if resolutions else resolution,
        resolutions=tuple(sorted(resolutions)),
    )
    return arch.search_space("fashion_cnn")
