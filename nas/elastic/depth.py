"""ElasticStage: a stage of blocks of which only the first ``depth`` run (elastic depth)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from torch import Tensor, nn

S = TypeVar("S")


class ElasticStage(nn.Module):
    """Holds the deepest stage; a config runs its leading blocks and skips the trailing ones."""

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(
        self,
        x: Tensor,
        settings: Sequence[S],
        run_block: Callable[[nn.Module, Tensor, S], Tensor],
    ) -> Tensor:
        """Run ``run_block(block, x, setting)`` for the first ``len(settings)`` blocks."""
        if len(settings) > len(self.blocks):
            raise ValueError(
                f"depth {len(settings)} exceeds the stage's {len(self.blocks)} blocks"
            )
        for block, setting in zip(self.blocks, settings, strict=False):
            x = run_block(block, x, setting)
        return x
