"""Fake-quantization arithmetic shared by elastic layers and exported static modules.

Values are exact: the straight-through estimator is written as ``round(x) + (x - x.detach())``,
whose value is exactly ``round(x)``, so a supernet and its exported module agree bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

FULL_PRECISION = 32


def round_ste(x: Tensor) -> Tensor:
    """Round half to even, with an identity gradient (straight-through estimator)."""
    return torch.round(x).detach() + (x - x.detach())


def qmax_for(bits: int) -> int:
    """Largest signed integer level of a symmetric ``bits``-bit grid."""
    return 2 ** (bits - 1) - 1


def fake_quant_weight(weight: Tensor, bits: int) -> Tensor:
    """Quantize-dequantize ``weight`` with symmetric per-output-channel scales."""
    if bits >= FULL_PRECISION:
        return weight
    qmax = qmax_for(bits)
    amax = weight.detach().abs().amax(dim=tuple(range(1, weight.dim())), keepdim=True)
    scale = torch.clamp(amax, min=1e-8) / qmax
    return torch.clamp(round_ste(weight / scale), -qmax, qmax) * scale


def fake_quant_activation(x: Tensor, scale: Tensor, bits: int) -> Tensor:
    """Quantize-dequantize with a per-tensor scale on a symmetric grid."""
    qmax = qmax_for(bits)
    return torch.clamp(round_ste(x / scale), -qmax, qmax) * scale


class FakeQuantize(nn.Module):
    """Per-tensor fake quantization with a frozen scale (exports to ONNX as Div/Round/Clip/Mul)."""

    scale: Tensor  # a buffer (register_buffer below)

    def __init__(self, scale: Tensor | float, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).reshape(()))

    def forward(self, x: Tensor) -> Tensor:
        return fake_quant_activation(x, self.scale, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, scale={float(self.scale):.6g}"
