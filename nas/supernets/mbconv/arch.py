"""Architecture description of an elastic MBConv supernet and the search space it induces.

One frozen value describes the largest network and every elastic choice; both the supernet (to
allocate shared weights) and the search space (to name dimensions) are derived from it, so they
cannot drift apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from nas.errors import ConfigError, format_choice_error
from nas.space import Choice, SearchSpace
from nas.supernets import BIT_CHOICES

ACTIVATIONS: tuple[str, ...] = ("relu", "hswish")


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks; every tuple is the list of choices, ascending."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    stride: int
    kernels: tuple[int, ...]
    expands: tuple[float, ...]

    def __post_init__(self) -> None:
        for key in ("widths", "depths", "kernels", "expands"):
            values = getattr(self, key)
            if not values or tuple(sorted(values)) != tuple(values):
                raise ConfigError(f"stage.{key}={values!r} must be a non-empty ascending tuple")
        if any(k % 2 == 0 for k in self.kernels):
            raise ConfigError(f"stage.kernels={self.kernels!r} must be odd")
        if self.stride not in (1, 2):
            raise ConfigError(format_choice_error("stage.stride", self.stride, [1, 2]))
        if self.depths[0] < 1:
            raise ConfigError(f"stage.depths={self.depths!r} must be >= 1")

    @property
    def max_depth(self) -> int:
        return self.depths[-1]


@dataclass(frozen=True)
class MBConvArch:
    """The largest network plus its elastic choices.

    Args:
        stem_channels: Output channels of the fixed stem convolution.
        stem_stride: Stride of the stem (1 for 8×8 inputs, 2 for ImageNet-sized inputs).
        head_channels: Optional fixed 1×1 conv before pooling (MobileNetV3's 960), or ``None``.
        bits: Per-block quantization bit-width choices (32 means full precision).
        kernel_transform: Learn OFA's kernel transformation matrices for smaller kernels.
        resolution: Input side length used for cost and latency (inputs are square); with
            ``resolutions``, the largest of them.
        resolutions: Elastic input resolutions (Once-for-All), ascending; empty: fixed. A
            non-empty tuple adds a ``resolution`` dimension (see :mod:`nas.data.resolution`).
    """

    in_channels: int
    num_classes: int
    stem_channels: int
    stem_stride: int
    stages: tuple[StageSpec, ...]
    bits: tuple[int, ...] = (32,)
    activation: Literal["relu", "hswish"] = "relu"
    kernel_transform: bool = False
    head_channels: int | None = None
    resolution: int = 32
    resolutions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.resolutions:
            r = self.resolutions
            if tuple(sorted(set(r))) != tuple(r) or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in r
            ):
                raise ConfigError(
                    f"space.options.resolutions={list(r)!r} must be ascending positive integers"
                )
            if self.resolution != r[-1]:
                raise ConfigError(
                    f"resolution={self.resolution} must be the largest of resolutions={list(r)!r}"
                )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                format_choice_error("activation", self.activation, list(ACTIVATIONS))
            )
        for b in self.bits:
            if b not in BIT_CHOICES:
                raise ConfigError(format_choice_error("bits", b, list(BIT_CHOICES)))
        if tuple(sorted(self.bits)) != self.bits:
            raise ConfigError(f"bits={self.bits!r} must be ascending")
        if not self.stages:
            raise ConfigError("an architecture needs at least one stage")

    def search_space(self, name: str) -> SearchSpace:
        """Dimensions ``s{i}.depth``, ``s{i}.width``; per block kernel, expand and bits."""
        dims: list[Choice] = []
        if self.resolutions:
            dims.append(Choice("resolution", self.resolutions))
        for i, stage in enumerate(self.stages):
            dims.append(Choice(f"s{i}.depth", stage.depths))
            dims.append(Choice(f"s{i}.width", stage.widths))
            for j in range(stage.max_depth):
                active_if = (f"s{i}.depth", j) if j >= stage.depths[0] else None
                dims.append(Choice(f"s{i}.b{j}.kernel", stage.kernels, active_if=active_if))
                dims.append(Choice(f"s{i}.b{j}.expand", stage.expands, active_if=active_if))
                dims.append(Choice(f"s{i}.b{j}.bits", self.bits, active_if=active_if))
        described = asdict(self)
        if not self.resolutions:
            del described["resolutions"]  # fixed-resolution spaces keep their fingerprints
        return SearchSpace(name, tuple(dims), metadata={"arch": self, "arch_dict": described})


def mbconv_arch(space: SearchSpace) -> MBConvArch:
    """The MBConv architecture of ``space``, for tools that exist for that family only."""
    arch = space.metadata.get("arch")
    if not isinstance(arch, MBConvArch):
        raise ConfigError(
            f"search space {space.name!r} is not an MBConv space; this tool (per-layer latency "
            "tables, MBConv plans) needs a space built from an MBConvArch"
        )
    return arch
