"""Elastic quantization bit-width for activations: one learnable scale per bit-width (LSQ).

Weights need no state: :func:`nas.elastic.quantization.fake_quant_weight` derives per-channel
scales from
the active weight. Activations need a clipping range, and one range cannot serve 4 and 8 bits at
once, so each bit-width choice owns its scale. 32 bits is the identity.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nas.elastic.quantization import (
    FULL_PRECISION,
    FakeQuantize,
    fake_quant_activation,
    fake_quant_weight,
    qmax_for,
)

__all__ = ["ElasticActQuant", "fake_quant_weight"]


class ElasticActQuant(nn.Module):
    """Activation fake-quantizer with a learnable scale per bit-width choice.

    The scale gradient is rescaled as in LSQ (``1/sqrt(numel * qmax)``) so it trains at the pace
    of the weights.

    Args:
        init_range: Initial clipping range (±), in units of a batch-normalised activation.
    """

    def __init__(self, bits_choices: tuple[int, ...], *, init_range: float = 4.0) -> None:
        super().__init__()
        self.bits_choices = tuple(bits_choices)
        self.scales = nn.ParameterDict(
            {
                str(b): nn.Parameter(torch.tensor(init_range / qmax_for(b)))
                for b in self.bits_choices
                if b < FULL_PRECISION
            }
        )

    def scale(self, bits: int) -> Tensor:
        """The positive scale used at ``bits``."""
        return self.scales[str(bits)].abs() + 1e-8

    def forward(self, x: Tensor, *, bits: int) -> Tensor:
        if bits >= FULL_PRECISION:
            return x
        scale = self.scale(bits)
        if self.training:
            g = 1.0 / math.sqrt(x.numel() * qmax_for(bits))
            scale = scale * g + (scale - scale * g).detach()
        return fake_quant_activation(x, scale, bits)

    @torch.no_grad()
    def export(self, bits: int) -> nn.Module:
        """A static :class:`~nas.elastic.quantization.FakeQuantize`; ``nn.Identity`` at 32 bits."""
        if bits >= FULL_PRECISION:
            return nn.Identity()
        return FakeQuantize(self.scale(bits).detach().clone(), bits)
