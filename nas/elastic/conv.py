"""ElasticConv2d: channel-prefix slicing and centre-cropped kernels (OFA kernel transform)."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.elastic.quantization import fake_quant_weight

_MEMO_SIZE = 16


class ElasticConv2d(nn.Module):
    """A convolution whose active in/out channels and kernel size are chosen per call.

    Channels are the first ``in``/``out`` of the shared weight (prefix slicing). A smaller kernel
    is the centre crop of the next larger one; with ``kernel_transform`` the crop passes through a
    learned ``k²×k²`` matrix (initialised to identity), as in Once-for-All, so small kernels can
    specialise without disturbing large ones.

    Args:
        depthwise: One filter per channel (``groups == channels``); in and out channels are equal.
    """

    def __init__(
        self,
        max_in_channels: int,
        max_out_channels: int,
        kernel_sizes: tuple[int, ...],
        *,
        stride: int = 1,
        depthwise: bool = False,
        kernel_transform: bool = False,
    ) -> None:
        super().__init__()
        self.max_in_channels = max_in_channels
        self.max_out_channels = max_out_channels
        self.kernel_sizes = tuple(sorted(kernel_sizes))
        self.stride = stride
        self.depthwise = depthwise
        k_max = self.kernel_sizes[-1]
        in_per_group = 1 if depthwise else max_in_channels
        self.weight = nn.Parameter(torch.empty(max_out_channels, in_per_group, k_max, k_max))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.transforms = nn.ParameterDict()
        if kernel_transform:
            for k in self.kernel_sizes[:-1]:
                self.transforms[str(k)] = nn.Parameter(torch.eye(k * k))
        # Inference-only memo of derived weights, keyed by shape, bits and the version counters
        # of the source parameters (any in-place update, optimizer step or load_state_dict
        # bumps them), so a stale entry can never be returned.
        self._inference_weights: OrderedDict[tuple[int, ...], Tensor] = OrderedDict()

    def active_weight(self, in_channels: int, out_channels: int, kernel_size: int) -> Tensor:
        """The weight of the active sub-convolution (contiguous, so export copies it exactly)."""
        if kernel_size not in self.kernel_sizes:
            raise ValueError(f"kernel_size={kernel_size} is not one of {list(self.kernel_sizes)}")
        weight = self.weight[:out_channels]
        if not self.depthwise:
            weight = weight[:, :in_channels]
        current = self.kernel_sizes[-1]
        for k in reversed(self.kernel_sizes[:-1]):
            if k < kernel_size:
                break
            start = (current - k) // 2
            weight = weight[:, :, start : start + k, start : start + k]
            if str(k) in self.transforms:
                shape = weight.shape
                weight = (weight.reshape(-1, k * k) @ self.transforms[str(k)]).reshape(shape)
            current = k
        return weight.contiguous()

    def forward(
        self,
        x: Tensor,
        *,
        out_channels: int,
        kernel_size: int,
        weight_bits: int = 32,
    ) -> Tensor:
        in_channels = x.shape[1]
        if self.depthwise:
            out_channels = in_channels
        if torch.is_grad_enabled():
            weight = self.derived_weight(in_channels, out_channels, kernel_size, weight_bits)
        else:
            weight = self._memo_weight(in_channels, out_channels, kernel_size, weight_bits)
        groups = in_channels if self.depthwise else 1
        return F.conv2d(x, weight, None, self.stride, kernel_size // 2, 1, groups)

    def derived_weight(
        self, in_channels: int, out_channels: int, kernel_size: int, weight_bits: int
    ) -> Tensor:
        """Active weight, fake-quantized to ``weight_bits``."""
        return fake_quant_weight(
            self.active_weight(in_channels, out_channels, kernel_size), weight_bits
        )

    def _memo_weight(
        self, in_channels: int, out_channels: int, kernel_size: int, weight_bits: int
    ) -> Tensor:
        versions = [self.weight._version] + [t._version for t in self.transforms.values()]
        key = (in_channels, out_channels, kernel_size, weight_bits, *versions)
        weight = self._inference_weights.get(key)
        if weight is None:
            weight = self.derived_weight(in_channels, out_channels, kernel_size, weight_bits)
            self._inference_weights[key] = weight
            if len(self._inference_weights) > _MEMO_SIZE:
                self._inference_weights.popitem(last=False)
        return weight

    @torch.no_grad()
    def export(
        self, in_channels: int, out_channels: int, kernel_size: int, weight_bits: int = 32
    ) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` holding the active (and, below 32 bits, quantized) weight."""
        if self.depthwise:
            out_channels = in_channels
        groups = in_channels if self.depthwise else 1
        conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=self.stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        )
        conv.weight.copy_(self.derived_weight(in_channels, out_channels, kernel_size, weight_bits))
        return conv
