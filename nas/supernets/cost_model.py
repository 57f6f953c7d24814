"""The cost value every family's analytic model returns, and the bit-aware weight size rule.

Kept below the families and :mod:`nas.measure.cost` so both use one definition without a cycle.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from nas.elastic.quantization import FULL_PRECISION

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


def weight_bytes(numel: int, out_channels: int, bits: int) -> int:
    """Packed weights plus one fp32 scale per output channel when quantized."""
    if bits >= FULL_PRECISION:
        return numel * FLOAT_BYTES
    return math.ceil(numel * bits / 8) + out_channels * FLOAT_BYTES
