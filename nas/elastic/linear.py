"""ElasticLinear: a classifier whose input width follows the active feature width."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ElasticLinear(nn.Linear):
    """``nn.Linear`` over the first ``in_features`` inputs of the shared weight."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight[:, : x.shape[1]].contiguous(), self.bias)

    @torch.no_grad()
    def export(self, in_features: int) -> nn.Linear:
        """A plain ``nn.Linear`` with the active weight."""
        linear = nn.Linear(in_features, self.out_features, bias=self.bias is not None)
        linear.weight.copy_(self.weight[:, :in_features])
        if self.bias is not None:
            linear.bias.copy_(self.bias)
        return linear
