"""The interface every supernet family implements: one set of shared weights for a whole space.

``Supernet(space)`` builds the family's subclass for the space's architecture (the registry in
:mod:`nas.supernets` decides), so callers never name a family. Every subclass provides
``forward(x, config)`` (the subnet ``config`` selects, from the shared weights) and
``export(config)`` (the same subnet as a static module of plain torch layers with equal outputs).
The active shape always travels as an argument: no module holds a hidden "active config".
"""

from __future__ import annotations

from abc import abstractmethod
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn

from nas.space import SearchSpace
from nas.subnet import SubnetConfig


class Supernet(nn.Module):
    """Base of every family's supernet; ``Supernet(space)`` returns the family's subclass.

    Class attributes a family sets:
        uses_batchnorm: Whether subnets have BatchNorm, so that accuracy measurement
            re-calibrates its statistics per subnet (families without it skip that step).

    Example:
        >>> import search_spaces, torch
        >>> space = search_spaces.get("tiny_cnn")
        >>> net = Supernet(space).eval()
        >>> type(net).__name__
        'MBConvSupernet'
        >>> cfg = space.smallest()
        >>> x = torch.randn(2, 1, 8, 8)
        >>> torch.equal(net(x, cfg), net.export(cfg)(x))
        True
    """

    uses_batchnorm: ClassVar[bool] = True
    plan_cache_size: ClassVar[int] = 4096

    def __new__(cls, space: SearchSpace | None = None, *args: Any, **kwargs: Any) -> Supernet:
        # ``space`` is None when pickle or copy rebuild an instance of a concrete subclass
        if cls is Supernet:
            if space is None:
                raise TypeError("Supernet(space) needs the search space to choose its family")
            from nas.supernets import family_of

            cls = family_of(space).supernet_class
        return super().__new__(cls)

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self.arch: Any = space.metadata["arch"]
        self._plans: OrderedDict[SubnetConfig, Any] = OrderedDict()

    @abstractmethod
    def make_plan(self, config: SubnetConfig) -> Any:
        """Validate ``config`` and resolve the concrete shapes of its layers."""

    def plan(self, config: SubnetConfig) -> Any:
        """:meth:`make_plan`, memoised (validation is not free and runs on every forward)."""
        plan = self._plans.get(config)
        if plan is None:
            plan = self.make_plan(config)
            self._plans[config] = plan
            if len(self._plans) > self.plan_cache_size:
                self._plans.popitem(last=False)
        return plan

    @abstractmethod
    def forward(self, x: Tensor, config: SubnetConfig) -> Tensor:
        """Logits of subnet ``config`` on ``x``."""

    @abstractmethod
    def export(self, config: SubnetConfig) -> nn.Module:
        """A static module equal to ``forward(·, config)`` in eval mode."""

    def export_onnx(self, config: SubnetConfig, path: str | Path, *, batch_size: int = 1) -> Path:
        """Write the exported subnet as ONNX (input ``[batch, C, R, R]``, dynamic batch)."""
        from nas.deploy.onnx_export import export_module_onnx

        return export_module_onnx(
            self.export(config).eval(), self.input_shape(batch_size, config), Path(path)
        )

    def input_shape(
        self, batch_size: int = 1, config: SubnetConfig | None = None
    ) -> tuple[int, int, int, int]:
        """The input shape of ``config`` (its ``resolution``), or the space's design shape."""
        from nas.data.resolution import config_resolution

        r = self.arch.resolution
        if config is not None:
            r = config_resolution(self.space, config, r)
        return (batch_size, self.arch.in_channels, r, r)


__all__ = ["Supernet"]
