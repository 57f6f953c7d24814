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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.elastic import ElasticActQuant, ElasticLinear
from nas.elastic.quantization import FULL_PRECISION
from nas.elastic.transformer import ElasticGroupedLinear, ElasticLayerNorm
from nas.errors import ConfigError
from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from nas.supernets.base import Supernet
from nas.supernets.vit.arch import ViTArch, mlp_hidden
from nas.supernets.vit.static import (
    Attention,
    PatchEmbedding,
    TransformerBlock,
    ViTSubnet,
    attend,
    embed_patches,
    pool_tokens,
)


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


def _permute_(
    param: Tensor, dim: int, index: Tensor, optimizer: torch.optim.Optimizer | None
) -> None:
    """Reorder ``param`` along ``dim`` in place, and its optimizer state tensors alike."""
    param.copy_(param.index_select(dim, index))
    if optimizer is None:
        return
    for value in optimizer.state.get(param, {}).values():
        if isinstance(value, Tensor) and value.shape == param.shape:
            value.copy_(value.index_select(dim, index))


def _order(importance: Tensor) -> Tensor:
    """Indices from most to least important; ties keep their order."""
    return torch.sort(importance, descending=True, stable=True)[1]


def _same_on_every_worker(index: Tensor) -> Tensor:
    """Rank 0's ``index`` under torch.distributed (DDP workers must permute alike)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast(index, src=0)
    return index


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

    def attention_residual(self, x: Tensor, plan: LayerPlan) -> Tensor:
        """``x`` plus the attention branch: the first half of :meth:`forward`."""
        b, width = plan.bits, plan.heads * self.head_dim
        h = self.qkv(self.qkv_quant(self.norm1(x), bits=b), out_features=width, bits=b)
        h = attend(h, plan.heads, self.head_dim)
        return x + self.proj(self.proj_quant(h, bits=b), out_features=x.shape[-1], bits=b)

    @torch.no_grad()
    def head_importance(self, x: Tensor | None) -> Tensor:
        """One score per head group: its contribution to the residual stream.

        With activations ``x`` (this block's input; every head at 32 bits): the mean L2 norm
        over tokens of each head's output mapped through its columns of the output projection.
        Without: the norm of the head's V rows times the norm of its projection columns.
        """
        hd, heads = self.head_dim, self.qkv.max_out // self.head_dim
        e = self.proj.weight.shape[0]
        proj = self.proj.weight.reshape(e, heads, hd)  # [E, H, hd]
        if x is None:
            v = self.qkv.weight[2 * self.qkv.max_out :].reshape(heads, hd, -1)
            return v.flatten(1).norm(dim=1) * proj.permute(1, 0, 2).flatten(1).norm(dim=1)
        h = self.qkv(self.norm1(x), out_features=self.qkv.max_out, bits=FULL_PRECISION)
        out = attend(h, heads, hd).reshape(*x.shape[:-1], heads, hd)  # [B, T, H, hd]
        contribution = torch.einsum("bthd,ehd->bthe", out, proj)
        return contribution.norm(dim=-1).mean(dim=(0, 1))

    @torch.no_grad()
    def neuron_importance(self, x: Tensor | None) -> Tensor:
        """One score per MLP hidden neuron: its contribution to the residual stream.

        With ``x`` (the residual stream after attention): ``mean |GELU(fc1)|`` times the norm
        of the neuron's fc2 column. Without: the norm of its fc1 row times that column's norm.
        """
        out_norm = self.fc2.weight.norm(dim=0)
        if x is None:
            return self.fc1.weight.norm(dim=1) * out_norm
        h = F.gelu(self.fc1(self.norm2(x), out_features=self.fc1.max_out, bits=FULL_PRECISION))
        return h.abs().mean(dim=tuple(range(h.dim() - 1))) * out_norm

    def permutations(self, heads: Tensor, neurons: Tensor) -> list[tuple[Tensor, int, Tensor]]:
        """``(parameter, dim, index)`` moves putting ``heads`` and ``neurons`` in that order.

        Heads move as whole groups of ``head_dim`` rows in each of Q, K and V and the matching
        columns of the output projection; neurons as fc1 rows and fc2 columns, so the full
        block computes the same function.
        """
        hd, max_out = self.head_dim, self.qkv.max_out
        per_head = (heads[:, None] * hd + torch.arange(hd)).flatten()  # head -> its hd columns
        qkv_rows = torch.cat([g * max_out + per_head for g in range(self.qkv.groups)])
        return [
            (self.qkv.weight, 0, qkv_rows),
            (self.qkv.bias, 0, qkv_rows),
            (self.proj.weight, 1, per_head),
            (self.fc1.weight, 0, neurons),
            (self.fc1.bias, 0, neurons),
            (self.fc2.weight, 1, neurons),
        ]

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

    def _blocks(self) -> Iterable[ElasticTransformerBlock]:
        """``self.blocks``, typed as the transformer blocks it holds."""
        return cast("Iterable[ElasticTransformerBlock]", self.blocks)

    def zero_init_residuals(self) -> int:
        """Zero each block's output projections (attention ``proj``, MLP ``fc2``) and biases.

        Every block then starts as the identity on the residual stream (as a zero-initialised
        last BN scale does in a CNN). Returns how many blocks were zeroed.
        """
        for block in self._blocks():
            for layer in (block.proj, block.fc2):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        return len(self.blocks)

    def make_plan(self, config: SubnetConfig) -> ViTPlan:
        """Validated shapes of ``config``."""
        return make_vit_plan(self.space, config)

    def forward(self, x: Tensor, config: SubnetConfig) -> Tensor:
        """Logits of subnet ``config`` on ``x``."""
        plan = self.plan(config)
        e = plan.embed_dim
        cls = self.cls_token[:, :, :e] if self.cls_token is not None else None
        bias = cast(Tensor, self.patch.bias)  # nn.Conv2d's default bias=True
        patches = F.conv2d(x, self.patch.weight[:e], bias[:e], stride=self.patch.stride)
        tokens = embed_patches(patches, cls, self.position[:, :, :e])
        for block, layer in zip(self._blocks(), plan.layers, strict=False):
            tokens = block(tokens, layer)
        return self.classifier(pool_tokens(self.norm(tokens), self.arch.pooling))

    def full_tokens(self, x: Tensor) -> Tensor:
        """The first block's input at the full embedding width (what the largest subnet sees)."""
        cls = self.cls_token
        patches = F.conv2d(x, self.patch.weight, self.patch.bias, stride=self.patch.stride)
        return embed_patches(patches, cls, self.position)

    @torch.no_grad()
    def reorder_by_importance(
        self, x: Tensor | None = None, optimizer: torch.optim.Optimizer | None = None
    ) -> list[dict[str, list[int]]]:
        """Permute every block's heads and MLP neurons so the most important come first.

        DynaBERT / Minitron re-ordering before elastic training: prefix slicing then keeps the
        heads and neurons that matter most, so smaller subnets start from better weights. The
        largest subnet's function is unchanged (up to float summation order): head groups move
        together across Q, K, V and the output projection's columns, neurons across fc1's rows
        and fc2's columns. Importance comes from activations of the largest subnet on ``x``
        (a fixed batch: every worker passes the same one) or, with ``x=None``, from weights.
        Ties keep their order (stable sort), so equal inputs give equal permutations.

        Args:
            x: A fixed batch of images for activation importance (``None``: weights).
            optimizer: Its state tensors shaped like a moved parameter (Adam moments, SGD
                momentum) move the same way, so training continues consistently.

        Returns:
            Per block, the old index of each new head and neuron.
        """
        tokens = None if x is None else self.full_tokens(x)
        orders: list[dict[str, list[int]]] = []
        was_training = self.training
        self.eval()
        for block in self._blocks():
            heads = _order(block.head_importance(tokens))
            full = LayerPlan(len(heads), block.fc1.max_out, FULL_PRECISION)
            mid = None if tokens is None else block.attention_residual(tokens, full)
            neurons = _order(block.neuron_importance(mid))
            heads, neurons = _same_on_every_worker(heads), _same_on_every_worker(neurons)
            if tokens is not None:  # the next block's input: this block's (unchanged) output
                tokens = block(tokens, full)
            for param, dim, index in block.permutations(heads, neurons):
                _permute_(param, dim, index, optimizer)
            orders.append({"heads": heads.tolist(), "neurons": neurons.tolist()})
        self.train(was_training)
        return orders

    @torch.no_grad()
    def export(self, config: SubnetConfig) -> ViTSubnet:
        """A static :class:`~nas.supernets.vit.static.ViTSubnet` equal to ``forward(·, cfg)``."""
        plan = self.plan(config)
        e, arch = plan.embed_dim, self.arch
        conv = nn.Conv2d(arch.in_channels, e, arch.patch_size, stride=arch.patch_size)
        conv.weight.copy_(self.patch.weight[:e])
        # both have nn.Conv2d's default bias=True
        cast(Tensor, conv.bias).copy_(cast(Tensor, self.patch.bias)[:e])
        cls = self.cls_token[:, :, :e].clone() if self.cls_token is not None else None
        subnet = ViTSubnet(
            embedding=PatchEmbedding(conv, cls, self.position[:, :, :e].clone()),
            blocks=nn.Sequential(
                *(
                    b.export(e, layer)
                    for b, layer in zip(self._blocks(), plan.layers, strict=False)
                )
            ),
            norm=self.norm.export(e),
            classifier=self.classifier.export(e),
            pooling=arch.pooling,
        )
        for p in subnet.parameters():
            p.requires_grad_(False)
        return subnet.train(self.training)


__all__ = ["LayerPlan", "ViTPlan", "ViTSupernet", "make_vit_plan", "vit_arch"]
