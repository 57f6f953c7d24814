"""mobilenet_like: Once-for-All MobileNetV3-style space (5 stages × up to 4 MBConv blocks).

Per stage depth {2,3,4}; per block kernel {3,5,7} (with OFA's learned kernel transformation) and
expand ratio {3,4,6}; per block bits; optional stage width multipliers. With ``bits=(32,)`` and
``width_mults=(1.0,)`` the dimensions match OFA MobileNetV3 w1.0 (``ks``, ``e``, ``d``).
"""

from __future__ import annotations

from nas.errors import ConfigError
from nas.space import SearchSpace
from nas.supernets.mbconv.arch import MBConvArch, StageSpec

BASE_WIDTHS: tuple[int, ...] = (24, 40, 80, 112, 160)
STRIDES: tuple[int, ...] = (2, 2, 2, 1, 2)


def _round_channels(c: float, divisor: int = 8) -> int:
    return max(divisor, int(c + divisor / 2) // divisor * divisor)


def build(
    *,
    bits: tuple[int, ...] = (4, 8, 32),
    width_mults: tuple[float, ...] = (1.0,),
    in_channels: int = 3,
    num_classes: int = 1000,
    resolution: int = 224,
    head_channels: int | None = 960,
    resolutions: tuple[int, ...] = (),
) -> SearchSpace:
    """Build the space; ``width_mults`` adds per-stage width choices (e.g. ``(0.75, 1.0)``).

    ``resolutions`` (e.g. ``(128, 160, 192, 224)``) makes the input resolution elastic, as in
    Once-for-All; the design ``resolution`` then becomes the largest of them.
    """
    if not width_mults or any(m <= 0 for m in width_mults):
        raise ConfigError(f"width_mults={width_mults!r} must be positive multipliers")
    mults = tuple(sorted(width_mults))
    stages = tuple(
        StageSpec(
            widths=tuple(sorted({_round_channels(w * m) for m in mults})),
            depths=(2, 3, 4),
            stride=s,
            kernels=(3, 5, 7),
            expands=(3, 4, 6),
        )
        for w, s in zip(BASE_WIDTHS, STRIDES, strict=True)
    )
    arch = MBConvArch(
        in_channels=in_channels,
        num_classes=num_classes,
        stem_channels=16,
        stem_stride=2,
        stages=stages,
        bits=tuple(bits),
        activation="hswish",
        kernel_transform=True,
        head_channels=head_channels,
        resolution=max(resolutions) if resolutions else resolution,
        resolutions=tuple(sorted(resolutions)),
    )
    return arch.search_space("mobilenet_like")
