"""An exponential moving average of the supernet's weights (``train.ema_decay``).

torch's :class:`~torch.optim.swa_utils.AveragedModel` does the averaging; this wrapper only keeps
it on the trained model's device and hands its tensors to checkpoints. BatchNorm statistics are
averaged too, but every evaluation re-calibrates them per subnet anyway.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverage:
    """``decay``-EMA of ``model``'s parameters and buffers, updated after each optimizer step.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 1, bias=False)
        >>> ema = WeightAverage(net, decay=0.5)
        >>> with torch.no_grad():
        ...     _ = net.weight.fill_(1.0)
        >>> ema.update()  # the first update copies the weights
        >>> with torch.no_grad():
        ...     _ = net.weight.fill_(3.0)
        >>> ema.update()  # then 0.5 * 1 + 0.5 * 3
        >>> ema.module.weight.tolist()
        [[2.0, 2.0]]
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = model
        self.average = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
        )
        self.average.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        """The averaged network (same class as the trained one)."""
        return self.average.module

    def update(self) -> None:
        """Fold the model's current weights into the average."""
        device = next(self.model.parameters()).device
        if next(self.average.parameters()).device != device:  # the model moved (Ray Train GPU)
            self.average.to(device)
        self.average.update_parameters(self.model)

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged weights, keyed like the trained model's own state dict."""
        return self.module.state_dict()

    def load(self, tensors: Mapping[str, Tensor], steps: int) -> None:
        """Restore an average saved after ``steps`` optimizer steps (a resumed run)."""
        self.module.load_state_dict(dict(tensors), strict=True)
        self.average.n_averaged.fill_(max(0, steps))


__all__ = ["WeightAverage"]
