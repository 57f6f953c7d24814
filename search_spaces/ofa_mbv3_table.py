"""OFA MobileNetV3 (w1.0) with input resolution, table-backed (HELP's latency tables).

Dimensions: ``resolution`` (128–224 in steps of 4), and per stage ``s{i}.depth`` in {2, 3, 4}
with, per block, ``s{i}.b{j}.kernel`` in {3, 5, 7} and ``s{i}.b{j}.expand`` in {3, 4, 6}; blocks
2 and 3 of a stage count only when the depth reaches them (``active_if``), as in Once-for-All.
Unlike ``mobilenet_like`` it has no supernet and no bits; it exists for latency predictors and
their transfer to new devices. :func:`block_macs` gives the analytic multiply-accumulates per
block, a layer-wise feature for :mod:`predictors.user_features` and a MACs baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nas.space import Choice, SearchSpace
from nas.subnet import SubnetConfig, Value

RESOLUTIONS: tuple[int, ...] = tuple(range(128, 225, 4))
KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANDS: tuple[int, ...] = (3, 4, 6)
DEPTHS: tuple[int, ...] = (2, 3, 4)
WIDTHS: tuple[int, ...] = (24, 40, 80, 112, 160)
STRIDES: tuple[int, ...] = (2, 2, 2, 1, 2)
N_STAGES, MAX_BLOCKS = 5, 4


def build() -> SearchSpace:
    """Resolution, then depth, kernels and expand ratios per stage."""
    dims = [Choice("resolution", RESOLUTIONS)]
    for i in range(N_STAGES):
        depth = f"s{i}.depth"
        dims.append(Choice(depth, DEPTHS))
        for j in range(MAX_BLOCKS):
            gate = (depth, j) if j >= min(DEPTHS) else None
            dims.append(Choice(f"s{i}.b{j}.kernel", KERNELS, active_if=gate))
            dims.append(Choice(f"s{i}.b{j}.expand", EXPANDS, active_if=gate))
    return SearchSpace("ofa_mbv3_table", tuple(dims))


def config_from_row(ks: Sequence[int], e: Sequence[int], d: Sequence[int], r: int) -> SubnetConfig:
    """Config from a table row (``ks``, ``e`` per block, ``d`` per stage, resolution ``r``)."""
    items: list[tuple[str, Value]] = [("resolution", int(r))]
    for i in range(N_STAGES):
        items.append((f"s{i}.depth", int(d[i])))
        for j in range(MAX_BLOCKS):
            k = MAX_BLOCKS * i + j
            items += [(f"s{i}.b{j}.kernel", int(ks[k])), (f"s{i}.b{j}.expand", int(e[k]))]
    return SubnetConfig(tuple(items))


def _divisible(value: float, divisor: int = 8) -> int:
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def block_macs(config: SubnetConfig | Mapping[str, Value]) -> np.ndarray:
    """Millions of multiply-accumulates of each of the 20 MBConv blocks (0 when skipped).

    Expand 1×1, depthwise k×k and project 1×1 convolutions at the block's feature-map size
    (stem stride 2, a fixed 16-channel first block, stage strides 2, 2, 2, 1, 2); the stem, head
    and squeeze-excite layers are left out (the same for every config, or negligible).

    Example:
        >>> space = build()
        >>> macs = block_macs(space.largest())
        >>> macs.shape, bool(macs.sum() > block_macs(space.smallest()).sum())
        ((20,), True)
    """
    out = np.zeros(N_STAGES * MAX_BLOCKS)
    size = int(config["resolution"]) // 2  # after the stem
    channels = 16
    for i in range(N_STAGES):
        for j in range(int(config[f"s{i}.depth"])):
            stride = STRIDES[i] if j == 0 else 1
            after = -(-size // stride)
            kernel, expand = int(config[f"s{i}.b{j}.kernel"]), int(config[f"s{i}.b{j}.expand"])
            mid = _divisible(channels * expand)
            macs = size * size * channels * mid + after * after * mid * (kernel * kernel)
            macs += after * after * mid * WIDTHS[i]
            out[MAX_BLOCKS * i + j] = macs / 1e6
            size, channels = after, WIDTHS[i]
    return out
