"""Static modules of an exported Vision Transformer subnet: plain torch layers, no elastic logic.

The supernet's forward calls the same functions (:func:`attend`, :func:`embed_patches`,
:func:`pool_tokens`), so an exported subnet repeats its arithmetic op for op and reproduces its
outputs exactly. Linear layers below 32 bits sit in an ``nn.Sequential`` after the
:class:`~nas.elastic.quantization.FakeQuantize` of their input, which is how cost counting and
int8 / 4-bit
deployment read their bit-width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def attend(qkv: Tensor, heads: int, head_dim: int) -> Tensor:
    """Scaled dot-product attention over fused ``[q | k | v]`` projections, heads concatenated."""
    b, t, _ = qkv.shape
    parts = qkv.reshape(b, t, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = parts[0], parts[1], parts[2]
    scores = (q @ k.transpose(-2, -1)) * (head_dim**-0.5)
    out = scores.softmax(dim=-1) @ v
    return out.transpose(1, 2).reshape(b, t, heads * head_dim)


def embed_patches(patches: Tensor, cls_token: Tensor | None, position: Tensor) -> Tensor:
    """Patch-conv output ``[B, E, H, W]`` → tokens ``[B, T, E]`` with class token and positions."""
    tokens = patches.flatten(2).transpose(1, 2)
    if cls_token is not None:
        tokens = torch.cat([cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
    return tokens + position


def pool_tokens(tokens: Tensor, pooling: str) -> Tensor:
    """The classification token, or the mean over patch tokens."""
    return tokens[:, 0] if pooling == "cls" else tokens.mean(dim=1)


class PatchEmbedding(nn.Module):
    """Non-overlapping patch convolution, optional class token, learned position table."""

    def __init__(self, conv: nn.Conv2d, cls_token: Tensor | None, position: Tensor) -> None:
        super().__init__()
        self.conv = conv
        self.cls_token = nn.Parameter(cls_token) if cls_token is not None else None
        self.position = nn.Parameter(position)

    def forward(self, x: Tensor) -> Tensor:
        return embed_patches(self.conv(x), self.cls_token, self.position)


class Attention(nn.Module):
    """Multi-head self-attention with a fused Q/K/V projection."""

    def __init__(self, qkv: nn.Sequential, proj: nn.Sequential, heads: int, head_dim: int) -> None:
        super().__init__()
        self.qkv = qkv
        self.proj = proj
        self.heads = heads
        self.head_dim = head_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(attend(self.qkv(x), self.heads, self.head_dim))

    def matmul_macs(self, tokens: int) -> int:
        """Multiply-accumulates of the two attention products (scores and weighted values)."""
        return 2 * self.heads * tokens * tokens * self.head_dim


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(
        self, norm1: nn.LayerNorm, attention: Attention, norm2: nn.LayerNorm, mlp: nn.Sequential
    ) -> None:
        super().__init__()
        self.norm1 = norm1
        self.attention = attention
        self.norm2 = norm2
        self.mlp = mlp

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTSubnet(nn.Module):
    """A standalone Vision Transformer: patch embedding, blocks, norm, pooling, classifier."""

    def __init__(
        self,
        *,
        embedding: PatchEmbedding,
        blocks: nn.Sequential,
        norm: nn.LayerNorm,
        classifier: nn.Linear,
        pooling: str,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.blocks = blocks
        self.norm = norm
        self.classifier = classifier
        self.pooling = pooling

    def features(self, x: Tensor) -> Tensor:
        """Pooled features before the classifier."""
        return pool_tokens(self.norm(self.blocks(self.embedding(x))), self.pooling)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


__all__ = [
    "Attention",
    "PatchEmbedding",
    "TransformerBlock",
    "ViTSubnet",
    "attend",
    "embed_patches",
    "pool_tokens",
]
