"""Static modules an exported subnet is made of: plain torch layers, no elastic logic.

Their forward passes repeat the supernet's arithmetic in the same order, which is what makes an
exported subnet reproduce the supernet's outputs exactly.
"""

from __future__ import annotations

from torch import Tensor, nn


class MBConv(nn.Module):
    """Inverted residual block: 1×1 expand, k×k depthwise, 1×1 project (+ identity shortcut)."""

    def __init__(
        self,
        *,
        expand: nn.Sequential,
        depthwise: nn.Sequential,
        project: nn.Sequential,
        activation: nn.Module,
        residual: bool,
    ) -> None:
        super().__init__()
        self.expand = expand
        self.depthwise = depthwise
        self.project = project
        self.activation = activation
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.activation(self.expand(x))
        out = self.activation(self.depthwise(out))
        out = self.project(out)
        return x + out if self.residual else out


class Subnet(nn.Module):
    """A standalone network: stem, MBConv blocks, optional 1×1 head, global pool, classifier."""

    def __init__(
        self,
        *,
        stem: nn.Sequential,
        blocks: nn.Sequential,
        head: nn.Sequential | None,
        classifier: nn.Linear,
    ) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = blocks
        self.head = head if head is not None else nn.Identity()
        self.classifier = classifier

    def features(self, x: Tensor) -> Tensor:
        """Pooled features before the classifier."""
        x = self.head(self.blocks(self.stem(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
