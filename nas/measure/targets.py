"""Hardware targets: where and how a subnet is measured, validated at construction.

A :class:`HardwareTarget` names a runtime (``torch`` or ``onnxruntime``), a precision (``fp32``,
``int8``, ``w4``: 4-bit weight-only linear layers, or ``mixed``: each layer at its block's bits;
the last two ONNX Runtime only), the threads and batch
size to time with, an optional input resolution, and an optional Ray node resource. The resource
is how other machines are reached: a target with ``resource="rpi4"`` only runs on a Ray node
started with ``--resources '{"rpi4": 1}'`` (the execution layer checks that such a node exists
before any work starts).

A precision's kernels may be missing from the installed runtime (``w4`` and ``mixed`` need ONNX
Runtime's ``MatMulNBits``): :meth:`HardwareTarget.require_kernels` refuses such a target with one
line, and :meth:`TargetRegistry.get` (hence spec validation) calls it, so the refusal comes
before any work.

Targets live in an explicit :class:`TargetRegistry` value (no module-level mutable state):
:func:`default_registry` holds the built-in targets for this CPU, and
:meth:`TargetRegistry.extended` adds the user's targets declared in an experiment file.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from nas.errors import ConfigError, format_choice_error
from nas.spec_fields import check_fields, spec_field

Runtime = Literal["torch", "onnxruntime"]
Precision = Literal["fp32", "int8", "w4", "mixed"]
RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime")
PRECISIONS: tuple[str, ...] = ("fp32", "int8", "w4", "mixed")
RUNTIME_PRECISIONS: Mapping[str, tuple[str, ...]] = {
    "torch": ("fp32", "int8"),
    "onnxruntime": ("fp32", "int8", "w4", "mixed"),
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class HardwareTarget:
    """One measurement target.

    Args:
        name: Identifier used in result records and objectives (``latency_ms@<name>``).
        runtime: ``"torch"`` (eager exported module) or ``"onnxruntime"`` (CPU provider).
        precision: ``"fp32"``; ``"int8"`` for real int8 kernels (ONNX Runtime QDQ, or torch's
            x86 quantized backend); ``"w4"`` (runtime ``onnxruntime`` only) for 4-bit
            weight-only linear layers run by ONNX Runtime's ``MatMulNBits`` (other layers stay
            float); ``"mixed"`` (runtime ``onnxruntime`` only) for each layer at the bits its
            block has in the config (:mod:`nas.deploy.mixed_precision`: <= 4 bits on 4-bit
            ``MatMulNBits``, 5-8 on int8 kernels, 32 in float); never fake-quantized float
            timing.
        threads: Intra-op threads the runtime is pinned to while timing.
        batch_size: Images per timed inference.
        resolution: Input side length; ``None`` uses the search space's design resolution.
        resource: Ray custom node resource that pins measurement to a machine; ``None`` runs
            on any node (the local machine when Ray is not used).

    Example:
        >>> HardwareTarget("rpi4_int8", runtime="onnxruntime", precision="int8", resource="rpi4")
        ... # doctest: +ELLIPSIS
        HardwareTarget(name='rpi4_int8', runtime='onnxruntime', precision='int8', ...)
    """

    name: str = spec_field(doc="target name, used as `latency_ms@<name>`")
    runtime: Runtime = spec_field("torch", doc="runtime the latency is measured with")
    precision: Precision = spec_field(
        "fp32",
        doc="fp32; int8 with real int8 kernels; w4: 4-bit weight-only linear layers "
        "(MatMulNBits); mixed: each layer at its block's bits (<= 4: MatMulNBits, 5-8: int8, "
        "32: fp32); w4 and mixed need runtime onnxruntime",
    )
    threads: int = spec_field(1, low=1, high=1024, doc="intra-op threads while timing")
    batch_size: int = spec_field(1, low=1, high=65_536, doc="images per timed inference")
    resolution: int | None = spec_field(
        None, low=1, high=4096, doc="input side (unset: the space's design resolution)"
    )
    resource: str | None = spec_field(
        None, non_empty=True, doc="Ray node resource that pins measurement to a machine"
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(
                f"target.name={self.name!r} must be a non-empty identifier "
                "(letters, digits, '_', '.', '-'; not starting with a digit)"
            )
        check_fields(self, "target.")
        allowed = RUNTIME_PRECISIONS[self.runtime]
        if self.precision not in allowed:
            runtimes = [r for r, ps in RUNTIME_PRECISIONS.items() if self.precision in ps]
            raise ConfigError(
                f"target.precision={self.precision!r} is not allowed with "
                f"target.runtime={self.runtime!r}; allowed precisions for {self.runtime!r}: "
                f"{', '.join(allowed)} ({self.precision!r} needs target.runtime "
                f"{' or '.join(repr(r) for r in runtimes)})"
            )

    def require_kernels(self) -> None:
        """Raise one ConfigError line when the installed runtime lacks this precision's kernels.

        Only ``w4`` and ``mixed`` can be missing (ONNX Runtime's ``MatMulNBits``); the check
        builds a one-node session once per process.
        """
        if self.precision in ("w4", "mixed"):
            from nas.deploy.weight_only import require_w4_kernels

            require_w4_kernels(needed_by=f"target {self.name!r} (precision {self.precision!r})")

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> HardwareTarget:
        """Build from a mapping (an experiment file's ``[[targets]]``); unknown keys raise."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(
                f"target.{unknown[0]} is not a valid key; allowed keys: {sorted(allowed)}"
            )
        if "name" not in data:
            raise ConfigError(f"a target needs a 'name'; given keys {sorted(data)}")
        return cls(**data)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def input_shape(self, in_channels: int, default_resolution: int) -> tuple[int, int, int, int]:
        """``(batch, channels, R, R)`` with this target's resolution or the given default."""
        r = self.resolution or default_resolution
        return (self.batch_size, in_channels, r, r)

    @property
    def ray_resources(self) -> dict[str, float]:
        """Custom Ray resources a measurement task needs (empty: any node)."""
        return {self.resource: 1.0} if self.resource else {}


def builtin_targets() -> tuple[HardwareTarget, ...]:
    """Targets for the machine running the measurement, one thread each (stable timings).

    ``ort_w4`` and ``ort_mixed`` are listed whatever ONNX Runtime is installed; looking them up
    (:meth:`TargetRegistry.get`) refuses them when ``MatMulNBits`` is missing.
    """
    return (
        HardwareTarget("cpu_fp32", runtime="torch", precision="fp32"),
        HardwareTarget("cpu_int8", runtime="torch", precision="int8"),
        HardwareTarget("ort_fp32", runtime="onnxruntime", precision="fp32"),
        HardwareTarget("ort_int8", runtime="onnxruntime", precision="int8"),
        HardwareTarget("ort_w4", runtime="onnxruntime", precision="w4"),
        HardwareTarget("ort_mixed", runtime="onnxruntime", precision="mixed"),
    )


@dataclass(frozen=True)
class TargetRegistry:
    """An immutable name → :class:`HardwareTarget` table; duplicate names raise."""

    targets: tuple[HardwareTarget, ...]

    def __post_init__(self) -> None:
        names = [t.name for t in self.targets]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigError(f"target names {duplicated} are declared more than once")

    def names(self) -> list[str]:
        return sorted(t.name for t in self.targets)

    def get(self, name: str) -> HardwareTarget:
        """The target called ``name``; unknown names raise naming the allowed ones.

        A target whose kernels the installed runtime lacks is refused here
        (:meth:`HardwareTarget.require_kernels`).
        """
        for target in self.targets:
            if target.name == name:
                target.require_kernels()
                return target
        raise ConfigError(format_choice_error("target", name, self.names()))

    def resolve(self, names: Iterable[str]) -> tuple[HardwareTarget, ...]:
        """Look several names up at once (fails on the first unknown one, before any work)."""
        return tuple(self.get(n) for n in names)

    def extended(self, targets: Iterable[HardwareTarget | Mapping[str, object]]) -> TargetRegistry:
        """A new registry with user targets added (plain mappings are validated first)."""
        extra = tuple(
            t if isinstance(t, HardwareTarget) else HardwareTarget.from_dict(t) for t in targets
        )
        return TargetRegistry(self.targets + extra)

    def __iter__(self) -> Iterator[HardwareTarget]:
        return iter(self.targets)

    def __len__(self) -> int:
        return len(self.targets)

    def __contains__(self, name: object) -> bool:
        return any(t.name == name for t in self.targets)


def default_registry() -> TargetRegistry:
    """The built-in targets (see :func:`builtin_targets`)."""
    return TargetRegistry(builtin_targets())


__all__ = [
    "PRECISIONS",
    "RUNTIMES",
    "RUNTIME_PRECISIONS",
    "HardwareTarget",
    "Precision",
    "Runtime",
    "TargetRegistry",
    "builtin_targets",
    "default_registry",
]
