"""ElasticBatchNorm2d: BatchNorm over the first C channels of shared parameters and statistics."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose active width is the input's channel count.

    Training updates the running statistics of the active prefix in place (views of the shared
    buffers). ``momentum=None`` gives a cumulative average, which BN re-calibration uses.
    """

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        if self.training and self.track_running_stats:
            tracked = cast(Tensor, self.num_batches_tracked)  # a buffer with track_running_stats
            tracked.add_(1)
            factor = 1.0 / float(tracked) if self.momentum is None else self.momentum
        else:
            factor = 0.0
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(
            x,
            self.running_mean[:c] if self.running_mean is not None else None,
            self.running_var[:c] if self.running_var is not None else None,
            self.weight[:c],
            self.bias[:c],
            use_batch_stats,
            factor,
            self.eps,
        )

    @torch.no_grad()
    def export(self, channels: int) -> nn.BatchNorm2d:
        """A plain ``nn.BatchNorm2d`` with the active parameters and running statistics."""
        bn = nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum)
        bn.weight.copy_(self.weight[:channels])
        bn.bias.copy_(self.bias[:channels])
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        assert bn.running_mean is not None and bn.running_var is not None
        assert bn.num_batches_tracked is not None
        bn.running_mean.copy_(self.running_mean[:channels])
        bn.running_var.copy_(self.running_var[:channels])
        bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn
