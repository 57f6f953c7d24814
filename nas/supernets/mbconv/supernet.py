"""The MBConv family: one set of shared weights for every config of an MBConv search space.

``forward(x, config)`` runs the subnet ``config`` selects; ``export(config)`` returns it as a
static :class:`~nas.supernets.mbconv.static.Subnet` made of plain torch layers with the sliced,
transformed and
(below 32 bits) quantized weights copied in.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from nas.elastic import (
    ElasticActQuant,
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticLinear,
    ElasticStage,
)
from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from nas.supernets.base import Supernet
from nas.supernets.mbconv.arch import MBConvArch, mbconv_arch
from nas.supernets.mbconv.static import MBConv, Subnet


@dataclass(frozen=True)
class BlockPlan:
    """The concrete shape one block takes under a config."""

    in_channels: int
    out_channels: int
    hidden_channels: int
    kernel_size: int
    stride: int
    bits: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclass(frozen=True)
class SubnetPlan:
    """Per-stage block plans plus the width feeding the head."""

    stages: tuple[tuple[BlockPlan, ...], ...]
    last_channels: int

    @property
    def blocks(self) -> tuple[BlockPlan, ...]:
        return tuple(b for stage in self.stages for b in stage)


def hidden_channels(in_channels: int, expand: float) -> int:
    """Width of a block's expanded representation."""
    return max(1, round(in_channels * expand))


def make_plan(space: SearchSpace, config: SubnetConfig) -> SubnetPlan:
    """Validate ``config`` against ``space`` and resolve every block's shape."""
    arch = mbconv_arch(space)
    cfg = space.validate(config)
    in_channels = arch.stem_channels
    stages = []
    for i, stage in enumerate(arch.stages):
        width = int(cfg[f"s{i}.width"])
        blocks = []
        for j in range(int(cfg[f"s{i}.depth"])):
            blocks.append(
                BlockPlan(
                    in_channels=in_channels,
                    out_channels=width,
                    hidden_channels=hidden_channels(in_channels, float(cfg[f"s{i}.b{j}.expand"])),
                    kernel_size=int(cfg[f"s{i}.b{j}.kernel"]),
                    stride=stage.stride if j == 0 else 1,
                    bits=int(cfg[f"s{i}.b{j}.bits"]),
                )
            )
            in_channels = width
        stages.append(tuple(blocks))
    return SubnetPlan(tuple(stages), in_channels)


def _activation(name: str) -> nn.Module:
    return nn.Hardswish() if name == "hswish" else nn.ReLU()


class ElasticMBConv(nn.Module):
    """MBConv with elastic input/output width, expand ratio, kernel and bit-width."""

    def __init__(
        self,
        *,
        max_in: int,
        max_out: int,
        max_hidden: int,
        kernels: tuple[int, ...],
        stride: int,
        bits: tuple[int, ...],
        kernel_transform: bool,
    ) -> None:
        super().__init__()
        self.expand_quant = ElasticActQuant(bits)
        self.expand_conv = ElasticConv2d(max_in, max_hidden, (1,))
        self.expand_bn = ElasticBatchNorm2d(max_hidden)
        self.depthwise_quant = ElasticActQuant(bits)
        self.depthwise_conv = ElasticConv2d(
            max_hidden,
            max_hidden,
            kernels,
            stride=stride,
            depthwise=True,
            kernel_transform=kernel_transform,
        )
        self.depthwise_bn = ElasticBatchNorm2d(max_hidden)
        self.project_quant = ElasticActQuant(bits)
        self.project_conv = ElasticConv2d(max_hidden, max_out, (1,))
        self.project_bn = ElasticBatchNorm2d(max_out)

    def forward(self, x: Tensor, plan: BlockPlan, activation: nn.Module) -> Tensor:
        b = plan.bits
        out = self.expand_conv(
            self.expand_quant(x, bits=b),
            out_channels=plan.hidden_channels,
            kernel_size=1,
            weight_bits=b,
        )
        out = activation(self.expand_bn(out))
        out = self.depthwise_conv(
            self.depthwise_quant(out, bits=b),
            out_channels=plan.hidden_channels,
            kernel_size=plan.kernel_size,
            weight_bits=b,
        )
        out = activation(self.depthwise_bn(out))
        out = self.project_conv(
            self.project_quant(out, bits=b),
            out_channels=plan.out_channels,
            kernel_size=1,
            weight_bits=b,
        )
        out = self.project_bn(out)
        return x + out if plan.residual else out

    @torch.no_grad()
    def export(self, plan: BlockPlan, activation: nn.Module) -> MBConv:
        b = plan.bits
        return MBConv(
            expand=nn.Sequential(
                self.expand_quant.export(b),
                self.expand_conv.export(plan.in_channels, plan.hidden_channels, 1, b),
                self.expand_bn.export(plan.hidden_channels),
            ),
            depthwise=nn.Sequential(
                self.depthwise_quant.export(b),
                self.depthwise_conv.export(
                    plan.hidden_channels, plan.hidden_channels, plan.kernel_size, b
                ),
                self.depthwise_bn.export(plan.hidden_channels),
            ),
            project=nn.Sequential(
                self.project_quant.export(b),
                self.project_conv.export(plan.hidden_channels, plan.out_channels, 1, b),
                self.project_bn.export(plan.out_channels),
            ),
            activation=copy.deepcopy(activation),
            residual=plan.residual,
        )


class MBConvSupernet(Supernet):
    """Weight-sharing supernet of an MBConv search space (build it as ``Supernet(space)``)."""

    uses_batchnorm = True

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        self.arch: MBConvArch = mbconv_arch(space)
        arch = self.arch
        self.activation = _activation(arch.activation)
        self.stem_conv = nn.Conv2d(
            arch.in_channels, arch.stem_channels, 3, arch.stem_stride, 1, bias=False
        )
        self.stem_bn = ElasticBatchNorm2d(arch.stem_channels)
        stages = []
        max_in = arch.stem_channels
        for stage in arch.stages:
            blocks = []
            for j in range(stage.max_depth):
                block_in = max_in if j == 0 else stage.widths[-1]
                blocks.append(
                    ElasticMBConv(
                        max_in=block_in,
                        max_out=stage.widths[-1],
                        max_hidden=hidden_channels(block_in, stage.expands[-1]),
                        kernels=stage.kernels,
                        stride=stage.stride if j == 0 else 1,
                        bits=arch.bits,
                        kernel_transform=arch.kernel_transform,
                    )
                )
            stages.append(ElasticStage(blocks))
            max_in = stage.widths[-1]
        self.stages = nn.ModuleList(stages)
        self.head_conv: ElasticConv2d | None = None
        self.head_bn: ElasticBatchNorm2d | None = None
        features = max_in
        if arch.head_channels is not None:
            self.head_conv = ElasticConv2d(max_in, arch.head_channels, (1,))
            self.head_bn = ElasticBatchNorm2d(arch.head_channels)
            features = arch.head_channels
        self.classifier = ElasticLinear(features, arch.num_classes)

    def zero_init_residuals(self) -> int:
        """Zero the last BN scale of every block that is residual in every config (BigNAS).

        Those are the blocks after the first of each stage (stride 1, the stage's width in and
        out); each then starts as the identity. Returns how many blocks were zeroed.
        """
        zeroed = 0
        for stage in cast("Iterable[ElasticStage]", self.stages):
            for block in cast("list[ElasticMBConv]", list(stage.blocks))[1:]:
                nn.init.zeros_(block.project_bn.weight)
                zeroed += 1
        return zeroed

    # -- configs -------------------------------------------------------------------------------
    def make_plan(self, config: SubnetConfig) -> SubnetPlan:
        """Validated block shapes of ``config``."""
        return make_plan(self.space, config)

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: Tensor, config: SubnetConfig) -> Tensor:
        """Logits of subnet ``config`` on ``x``."""
        plan = self.plan(config)
        x = self.activation(self.stem_bn(self.stem_conv(x)))
        for stage, block_plans in zip(self.stages, plan.stages, strict=True):
            x = stage(x, block_plans, self._run_block)
        if self.head_conv is not None and self.head_bn is not None:
            out_channels = self.head_conv.max_out_channels
            x = self.activation(
                self.head_bn(self.head_conv(x, out_channels=out_channels, kernel_size=1))
            )
        return self.classifier(x.mean(dim=(2, 3)))

    def _run_block(self, block: nn.Module, x: Tensor, plan: BlockPlan) -> Tensor:
        return block(x, plan, self.activation)

    # -- export --------------------------------------------------------------------------------
    @torch.no_grad()
    def export(self, config: SubnetConfig) -> Subnet:
        """A static :class:`~nas.supernets.mbconv.static.Subnet` equal to ``forward(·, cfg)``."""
        plan = self.plan(config)
        blocks = [
            block.export(block_plan, self.activation)
            for stage, block_plans in zip(
                cast("Iterable[ElasticStage]", self.stages), plan.stages, strict=True
            )
            for block, block_plan in zip(
                cast("Iterable[ElasticMBConv]", stage.blocks), block_plans, strict=False
            )
        ]
        head = None
        if self.head_conv is not None and self.head_bn is not None:
            c = self.head_conv.max_out_channels
            head = nn.Sequential(
                self.head_conv.export(plan.last_channels, c, 1),
                self.head_bn.export(c),
                copy.deepcopy(self.activation),
            )
        subnet = Subnet(
            stem=nn.Sequential(
                copy.deepcopy(self.stem_conv),
                self.stem_bn.export(self.arch.stem_channels),
                copy.deepcopy(self.activation),
            ),
            blocks=nn.Sequential(*blocks),
            head=head,
            classifier=self.classifier.export(
                plan.last_channels if head is None else self.head_conv.max_out_channels  # type: ignore[union-attr]
            ),
        )
        for p in subnet.parameters():
            p.requires_grad_(False)
        return subnet.train(self.training)


__all__ = ["BlockPlan", "MBConvSupernet", "SubnetPlan", "make_plan"]
