"""Analytic cost of a Vision Transformer subnet: params, MACs and bit-aware size.

MACs count the patch convolution, every linear map once per token, and the two attention
products (``2 · heads · T² · head_dim`` per block); LayerNorm, softmax and GELU are not counted,
as for BatchNorm and activations in the CNN family.
"""

from __future__ import annotations

from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from nas.supernets.cost_model import FLOAT_BYTES, Cost, weight_bytes
from nas.supernets.vit.supernet import make_vit_plan, vit_arch


def vit_cost(space: SearchSpace, config: SubnetConfig, *, resolution: int | None = None) -> Cost:
    """Cost of ``config``; ``resolution`` must be the design one (the position table is fixed)."""
    arch = vit_arch(space)
    if resolution not in (None, arch.resolution):
        from nas.errors import ConfigError

        raise ConfigError(
            f"target.resolution={resolution}: a ViT space has a fixed position table; "
            f"allowed: {arch.resolution} (or unset)"
        )
    plan = make_vit_plan(space, config)
    e, t, hd = plan.embed_dim, arch.num_tokens, arch.head_dim
    params = macs = nbytes = 0

    def add(p: int, m: int, b: int) -> None:
        nonlocal params, macs, nbytes
        params, macs, nbytes = params + p, macs + m, nbytes + b

    def linear(n_in: int, n_out: int, bits: int, positions: int) -> None:
        add(n_in * n_out, n_in * n_out * positions, weight_bytes(n_in * n_out, n_out, bits))
        add(n_out, 0, n_out * FLOAT_BYTES)

    p = arch.in_channels * arch.patch_size**2 * e
    add(p + e, p * arch.num_patches, (p + e) * FLOAT_BYTES)
    extra = t * e + (e if arch.pooling == "cls" else 0)  # position table, class token
    add(extra, 0, extra * FLOAT_BYTES)
    for layer in plan.layers:
        width = layer.heads * hd
        add(4 * e, 0, 4 * e * FLOAT_BYTES)  # two LayerNorms
        linear(e, 3 * width, layer.bits, t)
        add(0, 2 * layer.heads * t * t * hd, 0)
        linear(width, e, layer.bits, t)
        linear(e, layer.mlp_hidden, layer.bits, t)
        linear(layer.mlp_hidden, e, layer.bits, t)
    add(2 * e, 0, 2 * e * FLOAT_BYTES)
    linear(e, arch.num_classes, 32, 1)
    return Cost(params=params, macs=macs, model_size_bytes=nbytes)


__all__ = ["vit_cost"]
