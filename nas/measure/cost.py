"""Analytic cost of a subnet (params, MACs, bit-aware model size) and a counter on real modules.

The analytic model answers in microseconds, so searchers can use it as an objective; the
module counter checks it on exported networks (tests assert they agree exactly).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from nas.elastic.quantization import FakeQuantize
from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from nas.supernets.cost_model import FLOAT_BYTES, Cost, weight_bytes


def compute_cost(
    space: SearchSpace, config: SubnetConfig, *, resolution: int | None = None
) -> Cost:
    """Cost of ``config`` at ``resolution`` (default: the space's design resolution).

    Each supernet family has its own analytic model (:mod:`nas.supernets`); this asks the
    family the space belongs to.
    """
    from nas.supernets import compute_cost as family_cost

    return family_cost(space, config, resolution=resolution)


def count_module_cost(module: nn.Module, input_shape: tuple[int, ...]) -> Cost:
    """Count params, MACs (via hooks) and bit-aware size of a static module.

    MACs: a convolution's weight per output position, a linear map's weight per position it is
    applied at (every token of a transformer), plus ``matmul_macs(tokens)`` of modules that
    declare it (attention products). A convolution's or linear map's bit-width is read from the
    :class:`~nas.elastic.quantization.FakeQuantize` immediately preceding it in its
    ``nn.Sequential`` (how
    exported subnets are built).
    """
    macs = 0

    def conv_hook(mod: nn.Module, _: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal macs
        assert isinstance(mod, nn.Conv2d)
        per_position = mod.weight.numel()
        macs += per_position * out.shape[2] * out.shape[3]

    def linear_hook(mod: nn.Module, _: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal macs
        assert isinstance(mod, nn.Linear)
        macs += mod.weight.numel() * (out.numel() // out.shape[-1])

    def matmul_hook(mod: nn.Module, inputs: tuple[Tensor, ...], _: Tensor) -> None:
        nonlocal macs
        macs += int(mod.matmul_macs(inputs[0].shape[1]))  # type: ignore[operator]

    handles = []
    for mod in module.modules():
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
        elif callable(getattr(mod, "matmul_macs", None)):
            handles.append(mod.register_forward_hook(matmul_hook))
    try:
        with torch.no_grad():
            was_training = module.training
            module.eval()
            module(torch.zeros((1, *input_shape[1:])))
            module.train(was_training)
    finally:
        for h in handles:
            h.remove()

    weight_bits: dict[int, int] = {}
    for mod in module.modules():
        if isinstance(mod, nn.Sequential):
            children = list(mod.children())
            for prev, cur in itertools.pairwise(children):
                if isinstance(prev, FakeQuantize) and isinstance(cur, nn.Conv2d | nn.Linear):
                    weight_bits[id(cur)] = prev.bits
    nbytes = 0
    for mod in module.modules():
        for name, param in mod.named_parameters(recurse=False):
            if name == "weight" and id(mod) in weight_bits:
                rows = param.shape[0]
                nbytes += weight_bytes(param.numel(), rows, weight_bits[id(mod)])
            else:
                nbytes += param.numel() * FLOAT_BYTES
    params = sum(p.numel() for p in module.parameters())
    return Cost(params=params, macs=macs, model_size_bytes=nbytes)
