"""The Vision Transformer family: shared weights for every config of a ``ViTArch`` space.

Every elastic dimension is a prefix of a shared tensor (AutoFormer / HAT weight entanglement):
the embedding width slices the patch convolution, class token, position table, every LayerNorm
and every linear map's input; a block's heads slice the same head groups of Q, K and V and the
matching columns of the output projection; its MLP ratio slices the first hidden neurons;
depth runs the first blocks. Below 32 bits a block's linear layers fake-quantize their weights
(per output row) and inputs (one learned scale per bit-width). There is no BatchNorm, so
accuracy measurement has nothing to re-calibrate (``uses_batchnorm = False``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.elastic import ElasticActQuant, ElasticLinear
from nas.elastic.transformer import ElasticGroupedLinear, ElasticLayerNorm
from nas.errors import ConfigError
from nas.space import SearchSpace
from nas.static_vit import (
    Attention,
    PatchEmbedding,
    TransformerBlock,
    ViTSubnet,
    attend,
    embed_patches,
    pool_tokens,
)
from nas.subnet import SubnetConfig
from nas.supernets.base import Supernet
from nas.vit_arch import ViTArch, mlp_hidden

_PLAN_CACHE_SIZE = 4096


@dataclass(frozen=True)
class LayerPlan:
    """The concrete shape one transformer block takes under a config."""

    heads: int
    mlp_hidden: int
    bits: int


@dataclass(frozen=True)
class ViTPlan:
    """The embedding width and the plans of the active blocks."""

    embed_dim: int
    layers: tuple[LayerPlan, ...]


def vit_arch(space: SearchSpace) -> ViTArch:
    """The ViT architecture of ``space`` (ConfigError for any other space)."""
    arch = space.metadata.get("arch")
    if not isinstance(arch, ViTArch):
        raise ConfigError(f"search space {space.name!r} is not built from a ViTArch")
    return arch


def make_vit_plan(space: SearchSpace, config: SubnetConfig) -> ViTPlan:
    """Validate ``config`` against ``space`` and resolve every active block's shape."""
    vit_arch(space)
    cfg = space.validate(config)
    embed = int(cfg["embed_dim"])
    layers = tuple(
        LayerPlan(
            heads=int(cfg[f"l{j}.heads"]),
            mlp_hidden=mlp_hidden(embed, float(cfg[f"l{j}.mlp_ratio"])),
            bits=int(cfg[f"l{j}.bits"]),
        )
        for j in range(int(cfg["depth"]))
    )
    return ViTPlan(embed, layers)


class ElasticTransformerBlock(nn.Module):
    """Pre-norm transformer block with elastic width, heads, MLP hidden size and bits."""

    def __init__(self, arch: ViTArch) -> None:
        super().__init__()
        e, hd = arch.embed_dims[-1], arch.head_dim
        self.head_dim = hd
        max_hidden = mlp_hidden(e, arch.mlp_ratios[-1])
        self.norm1 = ElasticLayerNorm(e)
        self.qkv_quant = ElasticActQuant(arch.bits)
        self.qkv = ElasticGroupedLinear(e, arch.heads[-1] * hd, groups=3)
        self.proj_quant = ElasticActQuant(arch.bits)
        self.proj = ElasticGroupedLinear(arch.heads[-1] * hd, e)
        self.norm2 = ElasticLayerNorm(e)
        self.fc1_quant = ElasticActQuant(arch.bits)
        self.fc1 = ElasticGroupedLinear(e, max_hidden)
        self.fc2_quant = ElasticActQuant(arch.bits)
        self.fc2 = ElasticGroupedLinear(max_hidden, e)

    def forward(self, x: Tensor, plan: LayerPlan) -> Tensor:
        e, b, width = x.shape[-1], plan.bits, plan.heads * self.head_dim
        h = self.qkv(self.qkv_quant(self.norm1(x), bits=b), out_features=width, bits=b)
        h = attend(h, plan.heads, self.head_dim)
        x = x + self.proj(self.proj_quant(h, bits=b), out_features=e, bits=b)
        h = self.fc1(self.fc1_quant(self.norm2(x), bits=b), out_features=plan.mlp_hidden, bits=b)
        h = F.gelu(h)
        return x + self.fc2(self.fc2_quant(h, bits=b), out_features=e, bits=b)

    @torch.no_grad()
    def export(self, embed: int, plan: LayerPlan) -> TransformerBlock:
        b, width = plan.bits, plan.heads * self.head_dim
        attention = Attention(
            qkv=nn.Sequential(self.qkv_quant.export(b), self.qkv.export(embed, width, b)),
            proj=nn.Sequential(self.proj_quant.export(b), self.proj.export(width, embed, b)),
            heads=plan.heads,
            head_dim=self.head_dim,
        )
        mlp = nn.Sequential(
            self.fc1_quant.export(b),
            self.fc1.export(embed, plan.mlp_hidden, b),
            nn.GELU(),
            self.fc2_quant.export(b),
            self.fc2.export(plan.mlp_hidden, embed, b),
        )
        return TransformerBlock(self.norm1.export(embed), attention, self.norm2.export(embed), mlp)


class ViTSupernet(Supernet):
    """Weight-sharing supernet of a Vision Transformer space (build it as ``Supernet(space)``).

    Example:
        >>> import search_spaces, torch
        >>> space = search_spaces.get("vit_tiny")
        >>> net = Supernet(space).eval()
        >>> cfg = space.smallest()
        >>> x = torch.randn(2, 1, 8, 8)
        >>> torch.equal(net(x, cfg), net.export(cfg)(x))
        True
    """

    uses_batchnorm = False

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        self.arch: ViTArch = vit_arch(space)
        arch = self.arch
        e = arch.embed_dims[-1]
        p = arch.patch_size
        self.patch = nn.Conv2d(arch.in_channels, e, p, stride=p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e)) if arch.pooling == "cls" else None
        self.position = nn.Parameter(torch.empty(1, arch.num_tokens, e))
        nn.init.trunc_normal_(self.position, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(ElasticTransformerBlock(arch) for _ in range(arch.max_depth))
        self.norm = ElasticLayerNorm(e)
        self.classifier = ElasticLinear(e, arch.num_classes)
        nn.init.zeros_(self.classifier.bias)
        self._plans: OrderedDict[SubnetConfig, ViTPlan] = OrderedDict()

    def plan(self, config: SubnetConfig) -> ViTPlan:
        """Validated shapes of ``config`` (memoised: validation is not free)."""
        plan = self._plans.get(config)
        if plan is None:
            plan = make_vit_plan(self.space, config)
            self._plans[config] = plan
            if len(self._plans) > _PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        return plan

    def forward(self, x: Tensor, config: SubnetConfig) -> Tensor:
        """Logits of subnet ``config`` on ``x``."""
        plan = self.plan(config)
        e = plan.embed_dim
        cls = self.cls_token[:, :, :e] if self.cls_token is not None else None
        patches = F.conv2d(x, self.patch.weight[:e], self.patch.bias[:e], stride=self.patch.stride)
        tokens = embed_patches(patches, cls, self.position[:, :, :e])
        for block, layer in zip(self.blocks, plan.layers, strict=False):
            tokens = block(tokens, layer)
        return self.classifier(pool_tokens(self.norm(tokens), self.arch.pooling))

    @torch.no_grad()
    def export(self, config: SubnetConfig) -> ViTSubnet:
        """A static :class:`~nas.static_vit.ViTSubnet` equal to ``forward(·, config)``."""
        plan = self.plan(config)
        e, arch = plan.embed_dim, self.arch
        conv = nn.Conv2d(arch.in_channels, e, arch.patch_size, stride=arch.patch_size)
        conv.weight.copy_(self.patch.weight[:e])
        conv.bias.copy_(self.patch.bias[:e])
        cls = self.cls_token[:, :, :e].clone() if self.cls_token is not None else None
        subnet = ViTSubnet(
            embedding=PatchEmbedding(conv, cls, self.position[:, :, :e].clone()),
            blocks=nn.Sequential(
                *(b.export(e, layer) for b, layer in zip(self.blocks, plan.layers, strict=False))
            ),
            norm=self.norm.export(e),
            classifier=self.classifier.export(e),
            pooling=arch.pooling,
        )
        for p in subnet.parameters():
            p.requires_grad_(False)
        return subnet.train(self.training)


__all__ = ["LayerPlan", "ViTPlan", "ViTSupernet", "make_vit_plan", "vit_arch"]
