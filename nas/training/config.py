"""TrainConfig: every knob of supernet training, validated on construction.

Example:
    >>> TrainConfig(epochs=3, batch_size=32).n_random
    2
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nas.errors import ConfigError, format_choice_error

OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
LR_SCHEDULES: tuple[str, ...] = ("cosine", "constant")
PHASES: tuple[str, ...] = ("largest", "kernel", "depth", "width", "bits")
AUGMENTATIONS: tuple[str, ...] = ("none", "shift")


def _positive(key: str, value: object, *, allow_zero: bool = False, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(
            f"train.{key}={value!r} must be {'an integer' if integer else 'a number'}"
        )
    if value < 0 or (value == 0 and not allow_zero):  # type: ignore[operator]
        raise ConfigError(f"train.{key}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


@dataclass(frozen=True)
class TrainConfig:
    """Supernet training settings (the experiment spec's ``[train]`` table).

    Args:
        batch_size: Global batch size, split evenly over the Ray Train workers.
        n_random: Random subnets trained per step besides the largest and smallest (sandwich).
        distill: Train the non-largest subnets on the largest one's soft outputs (in-place
            distillation) instead of the labels.
        distill_temperature: Softmax temperature of the distillation targets.
        distill_weight: Share of the distillation loss in a student's loss; the rest is the
            label loss (1.0: pure in-place distillation as in BigNAS). The defaults (3.0, 0.5)
            were chosen on the validation split of the bundled digits (benchmarks/README.md).
        augment: Training-time augmentation of each batch, shared by all subnets of a step:
            ``none`` or ``shift`` (random shift of up to one pixel in each direction, edges
            replicated), seeded by ``(seed, global step, worker rank)``
            (:mod:`nas.training.augment`). ``none`` is the default: on the validation split of
            the bundled digits, ``shift`` lowered the top-1 of the smallest and largest subnets
            at 12 and 24 epochs, with or without distillation (benchmarks/README.md).
        micro_batches: Gradient accumulation: each worker's batch is processed in this many
            chunks (BatchNorm statistics are per chunk, as they are per worker under DDP).
        phases: Progressive shrinking, in order (``largest``, ``kernel``, ``depth``, ``width``,
            ``bits``); each phase makes its dimension kind elastic. Empty: all elastic at once.
        phase_epochs: Epochs of each phase; the epochs after the last phase are fully elastic.
        calib_images: Calibration images for BN re-calibration before per-epoch evaluation.
    """

    epochs: int = 12
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 3e-5
    optimizer: str = "sgd"
    lr_schedule: str = "cosine"
    warmup_epochs: int = 0
    n_random: int = 2
    distill: bool = True
    distill_temperature: float = 3.0
    distill_weight: float = 0.5
    label_smoothing: float = 0.0
    augment: str = "none"
    micro_batches: int = 1
    grad_clip: float = 0.0
    phases: tuple[str, ...] = ()
    phase_epochs: tuple[int, ...] = ()
    calib_images: int = 256
    eval_split: str = "val"
    seed: int = 0
    keep_checkpoints: int = 2
    max_failures: int = 2

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "micro_batches", "calib_images", "keep_checkpoints"):
            _positive(key, getattr(self, key), integer=True)
        for key in ("warmup_epochs", "n_random", "seed", "max_failures"):
            _positive(key, getattr(self, key), integer=True, allow_zero=True)
        for key in ("lr", "distill_temperature"):
            _positive(key, getattr(self, key))
        for key in ("momentum", "weight_decay", "label_smoothing", "grad_clip"):
            _positive(key, getattr(self, key), allow_zero=True)
        if not isinstance(self.distill, bool):
            raise ConfigError(f"train.distill={self.distill!r} must be true or false")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(format_choice_error("train.optimizer", self.optimizer, OPTIMIZERS))
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                format_choice_error("train.lr_schedule", self.lr_schedule, LR_SCHEDULES)
            )
        if self.augment not in AUGMENTATIONS:
            raise ConfigError(format_choice_error("train.augment", self.augment, AUGMENTATIONS))
        if self.eval_split not in ("val", "test"):
            raise ConfigError(
                format_choice_error("train.eval_split", self.eval_split, ["val", "test"])
            )
        if not 0 <= self.distill_weight <= 1:
            raise ConfigError(f"train.distill_weight={self.distill_weight!r} must be in [0, 1]")
        if self.label_smoothing >= 1:
            raise ConfigError(f"train.label_smoothing={self.label_smoothing!r} must be < 1")
        if self.batch_size % self.micro_batches:
            raise ConfigError(
                f"train.batch_size={self.batch_size} must be divisible by "
                f"train.micro_batches={self.micro_batches}"
            )
        self._check_phases()

    def _check_phases(self) -> None:
        for phase in self.phases:
            if phase not in PHASES:
                raise ConfigError(format_choice_error("train.phases", phase, PHASES))
        order = [PHASES.index(p) for p in self.phases]
        if order != sorted(set(order)):
            raise ConfigError(
                f"train.phases={list(self.phases)!r} must be distinct and in the order {PHASES}"
            )
        if len(self.phase_epochs) != len(self.phases):
            raise ConfigError(
                f"train.phase_epochs={list(self.phase_epochs)!r} needs one entry per phase "
                f"{list(self.phases)!r}"
            )
        for n in self.phase_epochs:
            _positive("phase_epochs", n, integer=True)
        if sum(self.phase_epochs) > self.epochs:
            raise ConfigError(
                f"train.phase_epochs={list(self.phase_epochs)!r} sum to more than "
                f"train.epochs={self.epochs}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from plain data; unknown keys are errors naming the allowed keys."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in allowed:
                raise ConfigError(
                    f"train.{key} is not a valid key; allowed keys: {sorted(allowed)}"
                )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
