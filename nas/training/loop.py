"""The epoch loop of supernet training, shared by in-process runs and Ray Train workers.

:func:`train_locally` trains in this process (tests, benchmarks, a laptop without Ray); the Ray
Train launcher in :mod:`nas.execution.ray_training` calls the same :func:`train_epoch`,
:func:`make_optimizer` and :func:`make_scheduler` inside each worker.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from nas.data.datasets import ImageData
from nas.data.resolution import at_resolution, resize, step_resolution
from nas.errors import ConfigError
from nas.measure.accuracy import evaluate_accuracy
from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from nas.training.augment import augment_batch
from nas.training.checkpoint import (
    RAW_PREFIX,
    latest_checkpoint,
    load_checkpoint,
    optimizer_state_dict,
    save_checkpoint,
)
from nas.training.config import TrainConfig
from nas.training.ema import WeightAverage
from nas.training.sampling import ProgressiveSchedule, sandwich_configs
from nas.training.step import SandwichObjective, sandwich_backward

if TYPE_CHECKING:
    from nas.supernets.base import Supernet

METRICS_FILE = "metrics.csv"
EVAL_STREAM = 2**31  # seed stream of the per-epoch random subnet, apart from step streams
REORDER_IMAGES = 512  # the fixed batch (first training images) activation importance sees


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW; no weight decay on 1-D parameters (BN, biases, quant scales)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LR factor: linear warm-up, then cosine decay to ``lr_floor`` (or constant)."""
    warmup = config.warmup_epochs * steps_per_epoch
    total = max(1, config.epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.lr_schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return config.lr_floor + (1.0 - config.lr_floor) * cosine

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_loader(
    data: ImageData, config: TrainConfig, epoch: int, *, world_size: int = 1, rank: int = 0
) -> DataLoader:
    """This worker's shard of the shuffled training split for ``epoch``.

    The global batch ``config.batch_size`` is split evenly over ``world_size`` workers; the
    order depends only on ``(seed, epoch)``, so a resumed epoch sees the same batches.
    """
    if config.batch_size % world_size:
        raise ConfigError(
            f"train.batch_size={config.batch_size} must be divisible by the number of Ray "
            f"Train workers ({world_size})"
        )
    x, y = data.tensors("train")
    dataset = TensorDataset(x, y)
    sampler: DistributedSampler[int] = DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=config.seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    return DataLoader(
        dataset, batch_size=config.batch_size // world_size, sampler=sampler, drop_last=True
    )


def steps_per_epoch(data: ImageData, config: TrainConfig, world_size: int = 1) -> int:
    """Optimizer steps per epoch (incomplete trailing batches are dropped)."""
    n = data.sizes()["train"] // world_size
    steps = n // (config.batch_size // world_size)
    if steps < 1:
        raise ConfigError(
            f"train.batch_size={config.batch_size} exceeds the {data.sizes()['train']} training "
            "images"
        )
    return steps


@dataclass(frozen=True)
class EpochStats:
    """What one epoch of training did (this worker's view)."""

    loss_largest: float
    loss_students: float
    train_top1_largest: float
    samples: int
    seconds: float
    steps: int
    phase: str

    def metrics(self) -> dict[str, float | str]:
        return {
            "loss_largest": self.loss_largest,
            "loss_students": self.loss_students,
            "train_top1_largest": self.train_top1_largest,
            "samples_per_s": self.samples / max(self.seconds, 1e-9),
            "train_seconds": self.seconds,
            "phase": self.phase,
        }


def train_epoch(
    objective: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    space: SearchSpace,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    epoch: int,
    start_step: int,
    device: torch.device | str = "cpu",
    rank: int = 0,
    ema: WeightAverage | None = None,
) -> EpochStats:
    """One epoch of sandwich-rule steps; subnets are seeded by ``(seed, global step, k)``.

    ``objective`` is a :class:`~nas.training.step.SandwichObjective`, DDP-wrapped on Ray.
    Each batch is augmented (``config.augment``) once per step, seeded by
    ``(seed, global step, rank)``, and every subnet of the step sees the same images.
    """
    schedule = ProgressiveSchedule.from_config(config)
    elastic = schedule.elastic_kinds(epoch)
    objective.train()
    totals = [0.0, 0.0]
    correct = samples = steps = 0
    start = time.perf_counter()
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        x = augment_batch(x, config.augment, seed=config.seed, step=start_step + steps, rank=rank)
        largest, students = sandwich_configs(
            space,
            seed=config.seed,
            step=start_step + steps,
            n_random=config.n_random,
            elastic=elastic,
        )
        side = step_resolution(space, config.seed, start_step + steps)
        if side is not None:  # one resolution per step, for every subnet and every worker
            x = resize(x, side)
            largest = at_resolution(space, largest, side)
            students = [at_resolution(space, s, side) for s in students]
        optimizer.zero_grad(set_to_none=True)
        losses = sandwich_backward(
            objective,
            x,
            y,
            largest,
            students,
            distill=config.distill,
            temperature=config.distill_temperature,
            distill_weight=config.distill_weight,
            label_smoothing=config.label_smoothing,
            students_smoothing=config.label_smoothing
            if config.label_smoothing_on == "all"
            else 0.0,
            micro_batches=config.micro_batches,
        )
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(objective.parameters(), config.grad_clip)
        optimizer.step()
        if ema is not None:
            ema.update()
        if scheduler is not None:
            scheduler.step()
        totals[0] += losses.largest
        totals[1] += losses.students
        correct += losses.correct_largest
        samples += losses.n
        steps += 1
    return EpochStats(
        loss_largest=totals[0] / max(1, steps),
        loss_students=totals[1] / max(1, steps),
        train_top1_largest=100.0 * correct / max(1, samples),
        samples=samples,
        seconds=time.perf_counter() - start,
        steps=steps,
        phase=schedule.phase(epoch),
    )


def evaluation_configs(space: SearchSpace, seed: int) -> dict[str, SubnetConfig]:
    """The subnets reported every epoch: largest, smallest and one fixed random subnet."""
    return {
        "largest": space.largest(),
        "smallest": space.smallest(),
        "random": space.sample(np.random.default_rng([seed, EVAL_STREAM])),
    }


def evaluate_subnets(
    supernet: nn.Module,
    data: ImageData,
    configs: Mapping[str, SubnetConfig],
    *,
    n_calib: int,
    split: str = "val",
) -> dict[str, float]:
    """``top1_<name>`` (%) of each config after BN re-calibration, on a copy of the supernet."""
    probe = copy.deepcopy(supernet)
    return {
        f"top1_{name}": 100.0 * evaluate_accuracy(probe, cfg, data, split=split, n_calib=n_calib)
        for name, cfg in configs.items()
    }


def epoch_row(epoch: int, optimizer: torch.optim.Optimizer, stats: EpochStats) -> dict[str, Any]:
    """The metrics row of a trained epoch (evaluation columns are added by the caller)."""
    return {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], **stats.metrics()}


def evaluate_epoch(supernet: Supernet, data: ImageData, config: TrainConfig) -> dict[str, float]:
    """Top-1 of the largest, smallest and fixed random subnet after BN re-calibration."""
    return evaluate_subnets(
        supernet,
        data,
        evaluation_configs(supernet.space, config.seed),
        n_calib=config.calib_images,
        split=config.eval_split,
    )


def save_epoch_checkpoint(
    directory: str | Path,
    *,
    model: Supernet,
    config: TrainConfig,
    epoch: int,
    global_step: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    row: Mapping[str, Any],
    ema: WeightAverage | None = None,
) -> Path:
    """The checkpoint written after ``epoch`` (0-based) finished (the average as the model)."""
    return save_checkpoint(
        directory,
        model=model,
        space=model.space,
        epoch=epoch + 1,
        global_step=global_step,
        train_config=config.to_dict(),
        optimizer=optimizer,
        scheduler=scheduler,
        metrics=row,
        model_tensors=None if ema is None else ema.state_dict(),
        raw_tensors=None if ema is None else model.state_dict(),
    )


def write_metrics_row(path: Path, row: Mapping[str, Any]) -> pd.DataFrame:
    """Add one epoch's row to the metrics CSV atomically, replacing rows of later epochs.

    Rows of epochs redone after a resume are replaced, so the file has one row per epoch.
    """
    frame = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if len(frame):
        frame = frame[frame["epoch"] < row["epoch"]]
    frame = pd.concat([frame, pd.DataFrame([dict(row)])], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".csv", dir=path.parent)
    os.close(fd)
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return frame


def format_epoch_line(row: Mapping[str, Any], epochs: int) -> str:
    """The per-epoch progress line."""
    return (
        f"epoch {int(row['epoch']) + 1}/{epochs} [{row['phase']}] "
        f"loss: largest (labels) {row['loss_largest']:.3f}, students (mean, distillation×T² "
        f"+ labels mix) {row['loss_students']:.3f} | "
        f"top1 largest {row['top1_largest']:.1f}% smallest {row['top1_smallest']:.1f}% "
        f"random {row['top1_random']:.1f}% | {row['samples_per_s']:.0f} img/s, "
        f"{row['train_seconds']:.1f} s"
    )


def check_reorder_support(model: nn.Module, config: TrainConfig) -> None:
    """Refuse ``train.reorder`` for a family whose supernet cannot re-order its weights."""
    if config.reorder != "none" and not hasattr(model, "reorder_by_importance"):
        raise ConfigError(
            f"train.reorder={config.reorder!r} is not supported by {type(model).__name__} "
            "(no importance re-ordering); use 'none'"
        )


def reorders_after(config: TrainConfig, epoch: int) -> bool:
    """Whether ``epoch`` is the last of the ``largest`` phase and re-ordering is on."""
    if config.reorder == "none":
        return False
    schedule = ProgressiveSchedule.from_config(config)
    return schedule.phase(epoch) == "largest" and schedule.phase(epoch + 1) != "largest"


def restore_training(
    checkpoint_path: Path | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    ema: WeightAverage | None = None,
) -> tuple[int, int]:
    """Load a checkpoint into model, optimizer, schedule and average; ``(start epoch, step)``."""
    if checkpoint_path is None:
        return 0, 0
    checkpoint = load_checkpoint(checkpoint_path)
    raw = {
        k.removeprefix(RAW_PREFIX): v
        for k, v in checkpoint.optimizer.items()
        if k.startswith(RAW_PREFIX)
    }
    model.load_state_dict(raw or checkpoint.model, strict=True)
    step = int(checkpoint.state["global_step"])
    if ema is not None:
        ema.load(checkpoint.model if raw else model.state_dict(), step)
    if checkpoint.state.get("optimizer") is not None:
        optimizer.load_state_dict(
            optimizer_state_dict(checkpoint.optimizer, checkpoint.state["optimizer"])
        )
    if checkpoint.state.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint.state["scheduler"])
    if "rng.torch" in checkpoint.optimizer:
        torch.set_rng_state(checkpoint.optimizer["rng.torch"])
    return checkpoint.epoch, step


def check_zero_init_support(model: nn.Module, config: TrainConfig) -> None:
    """Refuse ``train.zero_init_residual`` for a family that cannot zero its residual branches."""
    if config.zero_init_residual and not hasattr(model, "zero_init_residuals"):
        raise ConfigError(
            f"train.zero_init_residual=true is not supported by {type(model).__name__} "
            "(no zero_init_residuals); use false"
        )


def warm_start_into(model: Supernet, path: str | Path) -> None:
    """Copy the weights of the training checkpoint at ``path`` (same space) into ``model``."""
    from nas.training.checkpoint import load_supernet

    trained, _ = load_supernet(path, space=model.space)
    model.load_state_dict(trained.state_dict(), strict=True)


@dataclass
class Trainer:
    """A supernet with its optimizer and schedule, and where its training stands.

    The in-process loop (:func:`train_locally`) and every Ray Train worker
    (:mod:`nas.execution.ray_training`) run their epochs through this one object, so both
    train, count steps and checkpoint alike; only where the work runs differs.
    """

    space: SearchSpace
    data: ImageData
    config: TrainConfig
    model: Supernet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    world_size: int = 1
    rank: int = 0
    start_epoch: int = 0
    step: int = 0
    ema: WeightAverage | None = None

    @property
    def evaluated_model(self) -> Supernet:
        """What is evaluated and handed on: the weight average when there is one."""
        return cast("Supernet", self.model if self.ema is None else self.ema.module)

    @classmethod
    def create(
        cls,
        space: SearchSpace,
        data: ImageData,
        config: TrainConfig,
        *,
        world_size: int = 1,
        rank: int = 0,
    ) -> Trainer:
        """A fresh supernet (seeded by ``config.seed``) with its optimizer and schedule."""
        from nas.supernets import family_of

        torch.manual_seed(config.seed)
        # what Supernet(space) builds, typed as the family's class
        model = family_of(space).supernet_class(space)
        check_reorder_support(model, config)
        check_zero_init_support(model, config)
        if config.zero_init_residual:
            model.zero_init_residuals()  # type: ignore[operator]
        if config.warm_start:
            warm_start_into(model, config.warm_start)
        optimizer = make_optimizer(model, config)
        scheduler = make_scheduler(optimizer, config, steps_per_epoch(data, config, world_size))
        ema = WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
        return cls(space, data, config, model, optimizer, scheduler, world_size, rank, ema=ema)

    def restore(self, checkpoint_path: Path | None) -> None:
        """Continue from a checkpoint (``None``: from the start)."""
        self.start_epoch, self.step = restore_training(
            checkpoint_path, self.model, self.optimizer, self.scheduler, self.ema
        )

    def run_epoch(
        self, objective: nn.Module, epoch: int, *, device: torch.device | str = "cpu"
    ) -> dict[str, Any]:
        """One epoch of this worker's share of the data; its metrics row (no evaluation)."""
        stats = train_epoch(
            objective,
            epoch_loader(
                self.data, self.config, epoch, world_size=self.world_size, rank=self.rank
            ),
            space=self.space,
            config=self.config,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            epoch=epoch,
            start_step=self.step,
            device=device,
            rank=self.rank,
            ema=self.ema,
        )
        self.step += stats.steps
        if reorders_after(self.config, epoch):
            self.reorder(device)
        return epoch_row(epoch, self.optimizer, stats)

    def reorder(self, device: torch.device | str = "cpu") -> None:
        """Importance re-ordering of the shared weights and the optimizer state, in place.

        Every worker holds the same weights and the same training split, so every worker
        computes the same permutation (the supernet also broadcasts it from rank 0).
        """
        x = None
        if self.config.reorder == "activations":
            x = self.data.tensors("train")[0][:REORDER_IMAGES].to(device)
        self.model.reorder_by_importance(x, self.optimizer)  # type: ignore[operator]
        if self.ema is not None:  # the average restarts from the re-ordered weights
            self.ema = WeightAverage(self.model, self.config.ema_decay)

    def save(self, directory: str | Path, epoch: int, row: Mapping[str, Any]) -> None:
        """Checkpoint the finished ``epoch`` (weights, optimizer, schedule, RNG, its row)."""
        save_epoch_checkpoint(
            directory,
            model=self.model,
            config=self.config,
            epoch=epoch,
            global_step=self.step,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            row=row,
            ema=self.ema,
        )


def train_locally(
    space: SearchSpace,
    data: ImageData,
    config: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    log: Callable[[str], None] | None = print,
    evaluate: bool = True,
) -> tuple[nn.Module, pd.DataFrame]:
    """Train a supernet in this process; with ``run_dir``, checkpoint every epoch and resume.

    Returns:
        The trained supernet and the per-epoch metrics.
    """
    trainer = Trainer.create(space, data, config)
    root = Path(run_dir) if run_dir is not None else None
    trainer.restore(latest_checkpoint(root / "checkpoints") if root is not None else None)
    objective = SandwichObjective(trainer.model)
    rows: list[dict[str, Any]] = []
    for epoch in range(trainer.start_epoch, config.epochs):
        row = trainer.run_epoch(objective, epoch)
        if evaluate:
            row.update(evaluate_epoch(trainer.evaluated_model, data, config))
            if log is not None:
                log(format_epoch_line(row, config.epochs))
        rows.append(row)
        if root is not None:
            trainer.save(root / "checkpoints" / f"epoch_{epoch + 1:04d}", epoch, row)
            write_metrics_row(root / METRICS_FILE, row)
    metrics = (
        pd.read_csv(root / METRICS_FILE)
        if root is not None and (root / METRICS_FILE).exists()
        else pd.DataFrame(rows)
    )
    return trainer.evaluated_model, metrics
