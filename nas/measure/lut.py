"""Latency lookup table for the user's own device, and a whole-config latency predictor.

Each layer of a subnet (the stem, every MBConv block, the head = optional 1×1 conv + pooling +
classifier) is keyed by its shape: ``(kind, in, out, hidden, kernel, stride, bits, resolution
at its input)``, where ``bits`` is the precision the target *executes* (32 for fp32 targets, 8
for int8 targets; see :mod:`nas.deploy.int8` for why a config's fake-quant bits do not change
latency). :func:`build_latency_table` measures every unique key once, in isolation, as a static
module taken from an exported subnet, on the target itself. A config's latency is predicted as
the sum of its layers' entries, optionally mapped through an affine correction
``scale * sum + offset`` fitted by least squares on a few whole-model measurements
(:meth:`LatencyTable.calibrated`): isolated layers pay per-call overhead (input/output copies,
session dispatch, int8 quantize/dequantize at the boundaries) that the whole model pays once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
from torch import Tensor, nn

from nas.data.resolution import config_resolution, has_resolution
from nas.deploy.int8 import GlobalAvgPool
from nas.errors import ConfigError
from nas.measure.latency import LatencyProtocol, measure_latency
from nas.measure.targets import HardwareTarget
from nas.space import Choice, SearchSpace
from nas.subnet import SubnetConfig
from nas.supernets.mbconv.arch import mbconv_arch
from nas.supernets.mbconv.supernet import make_plan

if TYPE_CHECKING:
    from nas.supernets.base import Supernet
    from nas.supernets.mbconv.static import Subnet

LayerKind = Literal["stem", "block", "head"]
FORMAT_VERSION = 1


@dataclass(frozen=True, order=True)
class LayerKey:
    """Shape of one layer as the target executes it (the lookup table's key)."""

    kind: LayerKind
    in_channels: int
    out_channels: int
    hidden_channels: int
    kernel_size: int
    stride: int
    bits: int
    resolution: int

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


LUT_PRECISIONS: tuple[str, ...] = ("fp32", "int8")


def executed_bits(target: HardwareTarget) -> int:
    """Bit-width the target's kernels compute in (one for the whole network).

    ``w4`` and ``mixed`` targets run layers at different bit-widths, which a table keyed by one
    bit-width per target cannot express; they are refused rather than timed as float.
    """
    if target.precision not in LUT_PRECISIONS:
        raise ConfigError(
            f"target.precision={target.precision!r}: latency tables support "
            f"{list(LUT_PRECISIONS)}; measure {target.name!r} on whole subnets instead"
        )
    return 8 if target.precision == "int8" else 32


def _out_size(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


def layer_keys(space: SearchSpace, config: SubnetConfig, target: HardwareTarget) -> list[LayerKey]:
    """The keys of ``config``'s layers on ``target``, in execution order (stem, blocks, head)."""
    arch = mbconv_arch(space)
    plan = make_plan(space, config)
    bits = executed_bits(target)
    size = target.resolution or config_resolution(space, config, arch.resolution)
    keys = [
        LayerKey("stem", arch.in_channels, arch.stem_channels, 0, 3, arch.stem_stride, bits, size)
    ]
    size = _out_size(size, arch.stem_stride)
    for b in plan.blocks:
        keys.append(
            LayerKey(
                "block",
                b.in_channels,
                b.out_channels,
                b.hidden_channels,
                b.kernel_size,
                b.stride,
                bits,
                size,
            )
        )
        size = _out_size(size, b.stride)
    keys.append(
        LayerKey(
            "head", plan.last_channels, arch.num_classes, arch.head_channels or 0, 1, 1, bits, size
        )
    )
    return keys


class _Head(nn.Module):
    """Head conv (or identity), global average pooling and classifier of an exported subnet."""

    def __init__(self, head: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.head = head
        self.pool = GlobalAvgPool()
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.head(x)))


def layer_modules(subnet: Subnet) -> list[nn.Module]:
    """An exported subnet split into the static modules the keys of :func:`layer_keys` name."""
    return [subnet.stem, *subnet.blocks, _Head(subnet.head, subnet.classifier)]


def covering_configs(space: SearchSpace) -> list[SubnetConfig]:
    """Configs that together contain every block shape of an MBConv space (at full depth).

    For each stage, every (previous width, width, kernel, expand) combination is applied to all
    of that stage's blocks of a largest config; this covers block 0 (input = previous width) and
    the later blocks (input = width) of every stage.
    """
    arch = mbconv_arch(space)
    base = space.largest()
    sides: list[dict[str, int]] = (
        [{"resolution": int(r)} for r in cast(Choice, space.dim("resolution")).options]
        if has_resolution(space)
        else [{}]
    )  # an elastic-resolution space: every shape at every resolution
    configs: dict[str, SubnetConfig] = {}
    for i, stage in enumerate(arch.stages):
        prev_widths: tuple[int | None, ...] = arch.stages[i - 1].widths if i > 0 else (None,)
        for prev in prev_widths:
            for width in stage.widths:
                for k in stage.kernels:
                    for e in stage.expands:
                        changes: dict[str, int | float] = {f"s{i}.width": width}
                        if prev is not None:
                            changes[f"s{i - 1}.width"] = prev
                        for j in range(stage.max_depth):
                            changes[f"s{i}.b{j}.kernel"] = k
                            changes[f"s{i}.b{j}.expand"] = e
                        for side in sides:
                            cfg = space.validate(base.replace(**changes, **side))
                            configs.setdefault(cfg.key, cfg)
    return list(configs.values())


@dataclass(frozen=True)
class LatencyTable:
    """Measured per-layer latencies (median ms) on one target, plus an affine correction."""

    target: HardwareTarget
    entries: Mapping[LayerKey, float]
    scale: float = 1.0
    offset_ms: float = 0.0
    protocol: LatencyProtocol = field(default_factory=LatencyProtocol)

    def missing(self, keys: Iterable[LayerKey]) -> list[LayerKey]:
        return sorted({k for k in keys if k not in self.entries})

    def predict_raw(self, space: SearchSpace, config: SubnetConfig) -> float:
        """Sum of the config's layer latencies (ms), without the correction."""
        keys = layer_keys(space, config, self.target)
        missing = self.missing(keys)
        if missing:
            raise ConfigError(
                f"latency table for target {self.target.name!r} has no entry for "
                f"{len(missing)} layer shape(s) of config {config.key}, e.g. {missing[0]}; "
                "build it with configs covering the space (covering_configs)"
            )
        return float(sum(self.entries[k] for k in keys))

    def predict(self, space: SearchSpace, config: SubnetConfig) -> float:
        """Predicted whole-model latency (ms) of ``config`` on the table's target."""
        return self.scale * self.predict_raw(space, config) + self.offset_ms

    def predict_many(self, space: SearchSpace, configs: Sequence[SubnetConfig]) -> np.ndarray:
        return np.array([self.predict(space, c) for c in configs], dtype=np.float64)

    def calibrated(
        self,
        space: SearchSpace,
        configs: Sequence[SubnetConfig],
        measured_ms: Sequence[float],
        *,
        mode: Literal["affine", "offset"] = "affine",
    ) -> LatencyTable:
        """A copy whose correction is fitted (least squares) to whole-model measurements."""
        if mode not in ("affine", "offset"):
            raise ConfigError(f"mode={mode!r} is not one of ['affine', 'offset']")
        raw = np.array([self.predict_raw(space, c) for c in configs], dtype=np.float64)
        y = np.asarray(measured_ms, dtype=np.float64)
        if raw.shape != y.shape or raw.size == 0:
            raise ConfigError(
                f"calibration needs one measurement per config: {raw.size} configs, {y.size} "
                "measurements"
            )
        if mode == "offset" or raw.size < 3 or np.ptp(raw) == 0:
            return dataclasses.replace(self, scale=1.0, offset_ms=float(np.mean(y - raw)))
        scale, offset = np.polyfit(raw, y, deg=1)
        return dataclasses.replace(self, scale=float(scale), offset_ms=float(offset))

    # -- persistence (JSON, atomic) ------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        return {
            "format_version": FORMAT_VERSION,
            "target": self.target.to_dict(),
            "protocol": dataclasses.asdict(self.protocol),
            "scale": self.scale,
            "offset_ms": self.offset_ms,
            "entries": [{**k.to_dict(), "latency_ms": v} for k, v in sorted(self.entries.items())],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LatencyTable:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ConfigError(f"latency table format_version={version!r} is not {FORMAT_VERSION}")
        entries: dict[LayerKey, float] = {}
        for row in data["entries"]:  # type: ignore[attr-defined]
            row = dict(row)
            latency = float(row.pop("latency_ms"))
            entries[LayerKey(**row)] = latency
        return cls(
            target=HardwareTarget.from_dict(data["target"]),  # type: ignore[arg-type]
            entries=entries,
            scale=float(data["scale"]),  # type: ignore[arg-type]
            offset_ms=float(data["offset_ms"]),  # type: ignore[arg-type]
            protocol=LatencyProtocol(**data["protocol"]),  # type: ignore[arg-type]
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write as JSON atomically (temp file + ``os.replace``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.to_dict(), fh, indent=1)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyTable:
        return cls.from_dict(json.loads(Path(path).read_text()))


def build_latency_table(
    supernet: Supernet,
    target: HardwareTarget,
    *,
    configs: Sequence[SubnetConfig] | None = None,
    protocol: LatencyProtocol | None = None,
    seed: int = 0,
) -> LatencyTable:
    """Measure every unique layer shape of ``configs`` (default: :func:`covering_configs`).

    Each shape is measured once, in isolation, on ``target`` with the same protocol as whole
    models, using the static layer of the first exported subnet that contains it.
    """
    protocol = protocol or LatencyProtocol()
    space = supernet.space
    arch = mbconv_arch(space)
    batch = target.batch_size
    entries: dict[LayerKey, float] = {}
    for config in configs if configs is not None else covering_configs(space):
        keys = layer_keys(space, config, target)
        if all(k in entries for k in keys):
            continue
        modules = layer_modules(cast("Subnet", supernet.export(config).eval()))  # MBConv's
        for key, module in zip(keys, modules, strict=True):
            if key in entries:
                continue
            channels = arch.in_channels if key.kind == "stem" else key.in_channels
            shape = (batch, channels, key.resolution, key.resolution)
            entries[key] = measure_latency(
                module, shape, target, protocol=protocol, seed=seed
            ).median_ms
    return LatencyTable(target=target, entries=entries, protocol=protocol)


@dataclass(frozen=True)
class PredictionReport:
    """Agreement of predicted and measured whole-model latencies."""

    n: int
    spearman: float
    kendall_tau: float
    mape: float
    within_10pct: float

    @classmethod
    def compare(cls, predicted: Sequence[float], measured: Sequence[float]) -> PredictionReport:
        from scipy.stats import kendalltau, spearmanr

        p = np.asarray(predicted, dtype=np.float64)
        m = np.asarray(measured, dtype=np.float64)
        rel = np.abs(p - m) / m
        return cls(
            n=int(m.size),
            spearman=float(spearmanr(p, m).statistic),
            kendall_tau=float(kendalltau(p, m).statistic),
            mape=float(rel.mean()),
            within_10pct=float((rel <= 0.10).mean()),
        )


__all__ = [
    "LatencyTable",
    "LayerKey",
    "PredictionReport",
    "build_latency_table",
    "covering_configs",
    "executed_bits",
    "layer_keys",
    "layer_modules",
]
