"""BatchNorm re-calibration: re-estimate one subnet's BN statistics from calibration images.

Shared BN statistics are a mix over every subnet trained; a subnet's own statistics must be
re-estimated before its accuracy is measured or it is exported (OFA, BigNAS). Statistics are a
cumulative average over batches (``momentum=None``), so with a single batch (the default) they
equal the mean and unbiased variance of a direct pass over the calibration data.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nas.elastic import ElasticBatchNorm2d
from nas.subnet import SubnetConfig


@torch.no_grad()
def recalibrate_bn(  # noqa: D417
    supernet: nn.Module,
    config: SubnetConfig,
    images: Tensor,
    *,
    batch_size: int | None = None,
) -> nn.Module:
    """Reset every BN layer's running statistics and re-estimate them for ``config`` in place.

    Args:
        images: Calibration images (held out from the data accuracy is reported on).
        batch_size: Images per forward pass; ``None`` passes all at once (exact statistics).

    Returns:
        ``supernet``, left in the train/eval mode it had.
    """
    if len(images) == 0:
        raise ValueError("recalibrate_bn needs at least one calibration image")
    norms = [m for m in supernet.modules() if isinstance(m, ElasticBatchNorm2d)]
    if not norms:
        return supernet  # a family without BatchNorm (transformers) has nothing to re-estimate
    momenta = [m.momentum for m in norms]
    was_training = supernet.training
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        supernet.train()
        for batch in images.split(batch_size or len(images)):
            supernet(batch, config)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        supernet.train(was_training)
    return supernet
