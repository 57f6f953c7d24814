"""Elastic transformer layers: LayerNorm and linear maps over prefixes of shared widths.

Each takes its active widths as arguments and exports a plain ``nn.LayerNorm`` / ``nn.Linear``
holding exactly the tensor the elastic forward computes with, so exports match bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.elastic.quantization import fake_quant_weight


class ElasticLayerNorm(nn.Module):
    """LayerNorm over the first ``width`` features, with the first ``width`` affine terms."""

    def __init__(self, max_width: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(max_width))
        self.bias = nn.Parameter(torch.zeros(max_width))

    def forward(self, x: Tensor) -> Tensor:
        width = x.shape[-1]
        return F.layer_norm(x, (width,), self.weight[:width], self.bias[:width], self.eps)

    @torch.no_grad()
    def export(self, width: int) -> nn.LayerNorm:
        norm = nn.LayerNorm(width, eps=self.eps)
        norm.weight.copy_(self.weight[:width])
        norm.bias.copy_(self.bias[:width])
        return norm


class ElasticGroupedLinear(nn.Module):
    """A linear map whose outputs are ``groups`` equal blocks, each sliced to a prefix.

    With ``groups=1`` it is a linear map over a prefix of inputs and a prefix of outputs (MLP,
    projections). With ``groups=3`` it is a fused Q/K/V map: the active outputs are the first
    ``out_features`` rows of each of the three blocks, i.e. the same heads of Q, K and V.
    """

    def __init__(self, max_in: int, max_out: int, *, groups: int = 1) -> None:
        super().__init__()
        self.groups = groups
        self.max_out = max_out
        self.weight = nn.Parameter(torch.empty(groups * max_out, max_in))
        self.bias = nn.Parameter(torch.zeros(groups * max_out))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def derived(self, in_features: int, out_features: int, bits: int) -> tuple[Tensor, Tensor]:
        """The active weight (fake-quantized below 32 bits, per output row) and bias."""
        rows = [
            slice(g * self.max_out, g * self.max_out + out_features) for g in range(self.groups)
        ]
        if self.groups == 1:
            weight = self.weight[rows[0], :in_features].contiguous()
            bias = self.bias[rows[0]].contiguous()
        else:
            weight = torch.cat([self.weight[r, :in_features] for r in rows])
            bias = torch.cat([self.bias[r] for r in rows])
        return fake_quant_weight(weight, bits), bias

    def forward(self, x: Tensor, *, out_features: int, bits: int) -> Tensor:
        if torch.is_grad_enabled():
            weight, bias = self.derived(x.shape[-1], out_features, bits)
        else:
            weight, bias = self._inference_weights(x.shape[-1], out_features, bits)
        return F.linear(x, weight, bias)

    def _inference_weights(
        self, in_features: int, out_features: int, bits: int
    ) -> tuple[Tensor, Tensor]:
        """:meth:`derived`, kept while the shared tensors are unchanged (no-grad forwards).

        Evaluating many subnets re-slices and re-quantizes the same weights on every batch; the
        cache is keyed by the active shape and bit-width and dropped whenever the shared weight
        or bias is modified (optimizer steps, loading, re-ordering), so values are identical.
        """
        state = (
            self.weight.data_ptr(),
            self.weight._version,
            self.bias.data_ptr(),
            self.bias._version,
        )
        if getattr(self, "_cache_state", None) != state:
            self._cache_state = state
            self._cache: dict[tuple[int, int, int], tuple[Tensor, Tensor]] = {}
        key = (in_features, out_features, bits)
        if key not in self._cache:
            self._cache[key] = self.derived(in_features, out_features, bits)
        return self._cache[key]

    @torch.no_grad()
    def export(self, in_features: int, out_features: int, bits: int) -> nn.Linear:
        weight, bias = self.derived(in_features, out_features, bits)
        linear = nn.Linear(in_features, self.groups * out_features)
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
        return linear


__all__ = ["ElasticGroupedLinear", "ElasticLayerNorm"]
