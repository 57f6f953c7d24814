"""vit_tiny: a Vision Transformer space sized for 8×8 grey digits (tests and smoke runs).

2×2 patches give 16 tokens plus a class token; elastic depth, embedding, heads, MLP ratio and
bits per block. Small enough that its supernet trains an epoch in seconds on 2 cores.
"""

from __future__ import annotations

from nas.space import SearchSpace
from nas.supernets.vit.arch import ViTArch


def build(
    *,
    bits: tuple[int, ...] = (4, 8, 32),
    in_channels: int = 1,
    num_classes: int = 10,
    resolution: int = 8,
    patch_size: int = 2,
    embed_dims: tuple[int, ...] = (16, 24, 32),
    depths: tuple[int, ...] = (1, 2, 3),
    heads: tuple[int, ...] = (1, 2),
    mlp_ratios: tuple[float, ...] = (1.0, 2.0),
    pooling: str = "cls",
) -> SearchSpace:
    """Up to 3 blocks of up to 2 heads (head width 16) on a 32-wide embedding."""
    arch = ViTArch(
        in_channels=in_channels,
        num_classes=num_classes,
        resolution=resolution,
        patch_size=patch_size,
        embed_dims=tuple(embed_dims),
        depths=tuple(depths),
        heads=tuple(heads),
        mlp_ratios=tuple(float(r) for r in mlp_ratios),
        bits=tuple(bits),
        pooling=pooling,  # type: ignore[arg-type]
    )
    return arch.search_space("vit_tiny")
