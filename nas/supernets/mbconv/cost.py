"""Analytic cost of an MBConv subnet: params, MACs and bit-aware size, layer by layer."""

from __future__ import annotations

from nas.data.resolution import config_resolution
from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from nas.supernets.cost_model import FLOAT_BYTES, Cost, weight_bytes
from nas.supernets.mbconv.arch import mbconv_arch
from nas.supernets.mbconv.supernet import make_plan


def _out_size(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


def mbconv_cost(
    space: SearchSpace, config: SubnetConfig, *, resolution: int | None = None
) -> Cost:
    """Cost of ``config`` at ``resolution`` (default: the space's design resolution)."""
    arch = mbconv_arch(space)
    plan = make_plan(space, config)
    size = resolution or config_resolution(space, config, arch.resolution)
    params = macs = nbytes = 0

    def add(p: int, m: int, b: int) -> None:
        nonlocal params, macs, nbytes
        params, macs, nbytes = params + p, macs + m, nbytes + b

    # stem conv + BN
    size = _out_size(size, arch.stem_stride)
    p = arch.in_channels * arch.stem_channels * 9
    add(p, p * size * size, p * FLOAT_BYTES)
    add(2 * arch.stem_channels, 0, 2 * arch.stem_channels * FLOAT_BYTES)
    for block in plan.blocks:
        cin, hid, cout, k, bits = (
            block.in_channels,
            block.hidden_channels,
            block.out_channels,
            block.kernel_size,
            block.bits,
        )
        p = cin * hid
        add(p, p * size * size, weight_bytes(p, hid, bits))
        size = _out_size(size, block.stride)
        p = hid * k * k
        add(p, p * size * size, weight_bytes(p, hid, bits))
        p = hid * cout
        add(p, p * size * size, weight_bytes(p, cout, bits))
        bn = 2 * (hid + hid + cout)
        add(bn, 0, bn * FLOAT_BYTES)
    features = plan.last_channels
    if arch.head_channels is not None:
        p = features * arch.head_channels
        add(p, p * size * size, p * FLOAT_BYTES)
        add(2 * arch.head_channels, 0, 2 * arch.head_channels * FLOAT_BYTES)
        features = arch.head_channels
    p = features * arch.num_classes + arch.num_classes
    add(p, features * arch.num_classes, p * FLOAT_BYTES)
    return Cost(params=params, macs=macs, model_size_bytes=nbytes)
