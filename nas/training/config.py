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

from nas.errors import ConfigError
from nas.spec_fields import check_fields, spec_field

OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
LR_SCHEDULES: tuple[str, ...] = ("cosine", "constant")
PHASES: tuple[str, ...] = ("largest", "kernel", "depth", "width", "bits")
AUGMENTATIONS: tuple[str, ...] = ("none", "shift")
REORDERS: tuple[str, ...] = ("none", "activations", "weights")
SMOOTHING_SCOPES: tuple[str, ...] = ("all", "largest")


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
        reorder: Importance re-ordering of attention heads and MLP neurons (DynaBERT /
            Minitron) at the end of the ``largest`` phase, so prefix slicing keeps the most
            important ones: ``activations`` (on a fixed batch of training images), ``weights``,
            or ``none``. Needs ``largest`` in ``phases`` and a family that supports it.
        lr_floor: The cosine schedule ends at this fraction of ``lr`` instead of zero (BigNAS
            ends at a constant floor, so the last epochs still move the shared weights).
        label_smoothing_on: ``all`` subnets, or only the ``largest`` (BigNAS regularises the
            largest only; the students learn from its soft outputs and the labels unsmoothed).
        zero_init_residual: Zero the last normalisation scale (MBConv) or output projections
            (transformer) of every always-residual block, so each starts as the identity.
        ema_decay: Keep an exponential moving average of the weights (0: off). The average is
            what is evaluated, checkpointed as the supernet and handed to measurement; the raw
            weights travel in the checkpoint for resume.
        warm_start: A training checkpoint directory (``<run>/train/checkpoints/epoch_NNNN``)
            of the same space whose weights start training; optimizer and schedule start anew.
    """

    epochs: int = spec_field(12, low=1, high=10_000, doc="training epochs")
    batch_size: int = spec_field(64, low=1, high=65_536, doc="global batch size")
    lr: float = spec_field(0.1, low=0.0, low_open=True, high=100.0, doc="peak learning rate")
    momentum: float = spec_field(0.9, low=0.0, high=1.0, high_open=True, doc="SGD momentum")
    weight_decay: float = spec_field(3e-5, low=0.0, high=1.0, doc="L2 weight decay")
    optimizer: str = spec_field("sgd", choices=OPTIMIZERS, doc="optimizer")
    lr_schedule: str = spec_field("cosine", choices=LR_SCHEDULES, doc="learning-rate schedule")
    warmup_epochs: int = spec_field(0, low=0, high=10_000, doc="linear warm-up epochs")
    n_random: int = spec_field(2, low=0, high=64, doc="random subnets per step (sandwich rule)")
    distill: bool = spec_field(True, doc="in-place distillation from the largest subnet")
    distill_temperature: float = spec_field(
        3.0, low=0.0, low_open=True, high=100.0, doc="distillation softmax temperature"
    )
    distill_weight: float = spec_field(
        0.5, low=0.0, high=1.0, doc="share of the distillation loss"
    )
    label_smoothing: float = spec_field(
        0.0, low=0.0, high=1.0, high_open=True, doc="label smoothing"
    )
    augment: str = spec_field("none", choices=AUGMENTATIONS, doc="training augmentation")
    micro_batches: int = spec_field(1, low=1, high=1024, doc="gradient accumulation chunks")
    grad_clip: float = spec_field(0.0, low=0.0, high=1e6, doc="gradient norm clip (0: off)")
    phases: tuple[str, ...] = spec_field(
        (), choices=PHASES, max_items=len(PHASES), doc="progressive shrinking phases, in order"
    )
    phase_epochs: tuple[int, ...] = spec_field(
        (), low=1, high=10_000, max_items=len(PHASES), doc="epochs of each phase"
    )
    calib_images: int = spec_field(
        256, low=1, high=1_000_000, doc="BN re-calibration images per evaluation"
    )
    eval_split: str = spec_field("val", choices=("val", "test"), doc="per-epoch evaluation split")
    seed: int = spec_field(0, low=0, high=2**32 - 1, doc="training seed (default: the spec's)")
    keep_checkpoints: int = spec_field(2, low=1, high=1000, doc="checkpoints kept on disk")
    max_failures: int = spec_field(2, low=0, high=100, doc="worker failures Ray Train retries")
    reorder: str = spec_field(
        "none", choices=REORDERS, doc="re-order heads/MLP neurons after the largest phase"
    )
    lr_floor: float = spec_field(
        0.0, low=0.0, high=1.0, doc="cosine schedule's final LR as a fraction of lr"
    )
    label_smoothing_on: str = spec_field(
        "all", choices=SMOOTHING_SCOPES, doc="which subnets label smoothing applies to"
    )
    zero_init_residual: bool = spec_field(
        False, doc="residual blocks start as the identity (last BN scale / projection zero)"
    )
    ema_decay: float = spec_field(
        0.0, low=0.0, high=1.0, high_open=True, doc="weight EMA decay per step (0: off)"
    )
    warm_start: str = spec_field("", doc="checkpoint directory whose weights start training")

    def __post_init__(self) -> None:
        check_fields(self, "train.")
        if self.warmup_epochs > self.epochs:
            raise ConfigError(
                f"train.warmup_epochs={self.warmup_epochs} must be <= train.epochs={self.epochs}"
            )
        if self.batch_size % self.micro_batches:
            raise ConfigError(
                f"train.batch_size={self.batch_size} must be divisible by "
                f"train.micro_batches={self.micro_batches}"
            )
        self._check_phases()

    def _check_phases(self) -> None:
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
        if self.reorder != "none" and "largest" not in self.phases:
            raise ConfigError(
                f"train.reorder={self.reorder!r} re-orders at the end of the 'largest' phase: "
                f"add it to train.phases (now {list(self.phases)!r})"
            )
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
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})  # type: ignore[arg-type]
