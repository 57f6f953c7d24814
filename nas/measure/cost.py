"""Analytic cost of a subnet (params, MACs, bit-aware model size) and a counter on real modules.

The analytic model answers in microseconds, so searchers can use it as an objective; the
module counter checks it on exported networks (tests assert they agree exactly).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from nas.arch import arch_of
from nas.quantization import FULL_PRECISION
from nas.space import SearchSpace
from nas.static import FakeQuantize
from nas.subnet import SubnetConfig
from nas.supernet import make_plan

FLOAT_BYTES = 4


@dataclass(frozen=True)
class Cost:
    """Size and compute of one network for a single input image."""

    params: int
    macs: int
    model_size_bytes: int

    def metrics(self) -> dict[str, float]:
        """As metric names with units (``params_m``, ``macs_m``, ``model_size_bytes``)."""
        return {
            "params_m": self.params / 1e6,
            "macs_m": self.macs / 1e6,
            "model_size_bytes": float(self.model_size_bytes),
        }

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _out_size(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


def _weight_bytes(numel: int, out_channels: int, bits: int) -> int:
    """Packed weights plus one fp32 scale per output channel when quantized."""
    if bits >= FULL_PRECISION:
        return numel * FLOAT_BYTES
    return math.ceil(numel * bits / 8) + out_channels * FLOAT_BYTES


def compute_cost(
    space: SearchSpace, config: SubnetConfig, *, resolution: int | None = None
) -> Cost:
    """Cost of ``config`` at ``resolution`` (default: the space's design resolution)."""
    arch = arch_of(space)
    plan = make_plan(space, config)
    size = resolution or arch.resolution
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
        add(p, p * size * size, _weight_bytes(p, hid, bits))
        size = _out_size(size, block.stride)
        p = hid * k * k
        add(p, p * size * size, _weight_bytes(p, hid, bits))
        p = hid * cout
        add(p, p * size * size, _weight_bytes(p, cout, bits))
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


def count_module_cost(module: nn.Module, input_shape: tuple[int, ...]) -> Cost:
    """Count params, MACs (conv and linear, via hooks) and bit-aware size of a static module.

    A convolution's bit-width is read from the :class:`~nas.static.FakeQuantize` that
    immediately precedes it in its ``nn.Sequential`` (how exported subnets are built).
    """
    macs = 0

    def conv_hook(mod: nn.Module, _: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal macs
        assert isinstance(mod, nn.Conv2d)
        per_position = mod.weight.numel()
        macs += per_position * out.shape[2] * out.shape[3]

    def linear_hook(mod: nn.Module, _: tuple[Tensor, ...], __: Tensor) -> None:
        nonlocal macs
        assert isinstance(mod, nn.Linear)
        macs += mod.weight.numel()

    handles = []
    for mod in module.modules():
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            was_training = module.training
            module.eval()
            module(torch.zeros((1, *input_shape[1:])))
            module.train(was_training)
    finally:
        for h in handles:
            h.remove()

    conv_bits: dict[int, int] = {}
    for mod in module.modules():
        if isinstance(mod, nn.Sequential):
            children = list(mod.children())
            for prev, cur in itertools.pairwise(children):
                if isinstance(prev, FakeQuantize) and isinstance(cur, nn.Conv2d):
                    conv_bits[id(cur)] = prev.bits
    nbytes = 0
    for mod in module.modules():
        for name, param in mod.named_parameters(recurse=False):
            if isinstance(mod, nn.Conv2d) and name == "weight" and id(mod) in conv_bits:
                nbytes += _weight_bytes(param.numel(), mod.out_channels, conv_bits[id(mod)])
            else:
                nbytes += param.numel() * FLOAT_BYTES
    params = sum(p.numel() for p in module.parameters())
    return Cost(params=params, macs=macs, model_size_bytes=nbytes)
