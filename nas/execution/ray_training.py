"""Supernet training on Ray Train: ``TorchTrainer`` workers running the plain-torch core.

DDP over gloo on CPU, NCCL on GPU (Ray Train sets up the process group). Rank 0 evaluates the
largest, smallest and a random subnet after every epoch, writes ``metrics.csv`` (which the
driver follows to print one progress line per epoch), writes a checkpoint in our safe format
(:mod:`nas.training.checkpoint`) and reports it to Ray Train with the epoch's metrics; all ranks
report the metrics. A failed worker restarts from the last reported checkpoint
(``FailureConfig``); a stopped run (driver killed) resumes from the newest finished checkpoint
under its run directory (passed to the workers of a new attempt), so at most the epoch in flight
is lost. On a multi-node cluster the run directory must be on storage every node reaches, as
Ray Train requires of ``storage_path``.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import ray
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from nas.data.datasets import ImageData
from nas.errors import ConfigError, RunStopped, StorageError
from nas.execution.placement import ensure_ray
from nas.space import SearchSpace
from nas.training.checkpoint import latest_checkpoint, load_checkpoint
from nas.training.config import TrainConfig
from nas.training.loop import (
    METRICS_FILE,
    Trainer,
    evaluate_epoch,
    format_epoch_line,
    steps_per_epoch,
    write_metrics_row,
)
from nas.training.step import SandwichObjective

RAY_RUNS = "ray"  # Ray Train's storage below the run directory


@dataclass(frozen=True)
class TrainResult:
    """Where a finished training run left its outputs."""

    checkpoint: Path
    metrics_csv: Path
    metrics: pd.DataFrame
    epochs: int


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """Runs in every Ray Train worker: the shared Trainer, DDP-wrapped, rank 0 checkpointing."""
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    space: SearchSpace = loop_config["space"]
    data: ImageData = loop_config["data"]
    config: TrainConfig = loop_config["config"]
    run_dir = Path(loop_config["run_dir"])
    torch.set_num_threads(int(loop_config["threads"]))
    trainer = Trainer.create(space, data, config, world_size=world, rank=rank)
    reported = ray.train.get_checkpoint()  # set when Ray Train restarted a failed worker group
    if reported is not None:
        with reported.as_directory() as directory:
            trainer.restore(Path(directory))
    else:  # a new attempt resumes from the newest checkpoint of earlier attempts, if any
        resume_from = loop_config["resume_from"]
        trainer.restore(Path(resume_from) if resume_from else None)
    model = trainer.model
    objective = ray.train.torch.prepare_model(
        SandwichObjective(model), parallel_strategy_kwargs={"find_unused_parameters": True}
    )
    device = ray.train.torch.get_device()
    for epoch in range(trainer.start_epoch, config.epochs):
        row = trainer.run_epoch(objective, epoch, device=device)
        row["samples_per_s"] = float(row["samples_per_s"]) * world  # all workers together
        row["workers"] = world
        if rank != 0:
            ray.train.report({k: v for k, v in row.items() if k != "phase"})
            if _all_agree_to_stop(loop_config.get("stop_file"), device):
                break
            continue
        evaluated = trainer.evaluated_model
        row.update(
            evaluate_epoch(evaluated.cpu() if device.type != "cpu" else evaluated, data, config)
        )
        evaluated.to(device)
        write_metrics_row(run_dir / METRICS_FILE, row)
        with tempfile.TemporaryDirectory() as tmp:
            trainer.save(tmp, epoch, row)
            ray.train.report(
                {k: v for k, v in row.items() if k != "phase"},
                checkpoint=Checkpoint.from_directory(tmp),
                checkpoint_dir_name=f"epoch_{epoch + 1:04d}",
            )
        if _all_agree_to_stop(loop_config.get("stop_file"), device):
            break  # after the epoch's checkpoint: `nas run` resumes from it


def _all_agree_to_stop(stop_file: str | None, device: torch.device) -> bool:
    """Whether a stop was requested, decided once for all workers (a max over ranks).

    Each worker looks at the request file, and the workers then agree: a rank that saw no
    request yet must not start an epoch the others have left, or its collectives would hang.
    """
    if stop_file is None:
        return False
    flag = torch.tensor([1.0 if Path(stop_file).exists() else 0.0], device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item() > 0)


class EpochPrinter:
    """Prints each new row of ``metrics.csv`` as a progress line while training runs.

    The driver follows the file rank 0 writes instead of forwarding worker logs, so the console
    shows one line per epoch and none of Ray's internal log traffic.
    """

    def __init__(self, metrics_csv: Path, epochs: int, *, interval_s: float = 0.5) -> None:
        self.metrics_csv = metrics_csv
        self.epochs = epochs
        self.interval_s = interval_s
        self._printed: set[int] = set()
        if metrics_csv.exists():  # rows of earlier attempts were printed by them
            self._printed.update(int(e) for e in pd.read_csv(metrics_csv)["epoch"])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._start = time.monotonic()
        self._done_before = len(self._printed)

    def __enter__(self) -> EpochPrinter:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._print_new()

    def _follow(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._print_new()

    def _print_new(self) -> None:
        try:
            frame = pd.read_csv(self.metrics_csv)
        except (OSError, pd.errors.EmptyDataError):
            return
        for row in frame.to_dict("records"):
            epoch = int(row["epoch"])
            if epoch not in self._printed:
                self._printed.add(epoch)
                print(f"{format_epoch_line(row, self.epochs)} | {self._eta()}", flush=True)

    def _eta(self) -> str:
        """Time left at this attempt's mean epoch time so far (setup included)."""
        done = len(self._printed) - self._done_before
        left = max(self.epochs - len(self._printed), 0)
        per_epoch = (time.monotonic() - self._start) / max(done, 1)
        return f"eta {per_epoch * left:.0f} s" if left else "done"


def _attempt_name(ray_dir: Path) -> str:
    n = len(list(ray_dir.glob("attempt_*"))) if ray_dir.exists() else 0
    return f"attempt_{n:03d}"


def check_cluster(num_workers: int, cpus_per_worker: float, use_gpu: bool) -> None:
    """Refuse before any work when the cluster cannot host the requested workers."""
    resources = ray.cluster_resources()
    need_cpu = num_workers * cpus_per_worker
    if resources.get("CPU", 0.0) < need_cpu:
        raise ConfigError(
            f"ray.num_workers={num_workers} needs {need_cpu:g} CPUs, the Ray cluster has "
            f"{resources.get('CPU', 0.0):g}; lower ray.num_workers or add nodes"
        )
    if use_gpu and resources.get("GPU", 0.0) < num_workers:
        raise ConfigError(
            f"ray.use_gpu=true with ray.num_workers={num_workers} needs {num_workers} GPUs, "
            f"the Ray cluster has {resources.get('GPU', 0.0):g}"
        )


def train_supernet(  # noqa: D417
    space: SearchSpace,
    data: ImageData,
    config: TrainConfig,
    *,
    run_dir: str | Path,
    num_workers: int = 1,
    address: str | None = None,
    use_gpu: bool = False,
    cpus_per_worker: float = 1.0,
    resume: bool = True,
    stop_file: str | Path | None = None,
) -> TrainResult:
    """Train (or finish training) a supernet with Ray Train; return the final checkpoint.

    Args:
        run_dir: Holds Ray Train's storage (checkpoints) and ``metrics.csv``; rerunning with the
            same directory resumes from its newest finished checkpoint.
        address: An existing Ray cluster (``None``: connect to or start a local instance).
        resume: ``False`` discards what ``run_dir`` holds and starts over.
        stop_file: When this file appears, training ends after the current epoch's checkpoint
            and :class:`~nas.errors.RunStopped` is raised (``nas stop``); rerunning resumes.

    Raises:
        ConfigError: the cluster lacks the CPUs/GPUs for ``num_workers``, or the batch size does
            not split over the workers (raised before training starts).
    """
    if num_workers < 1:
        raise ConfigError(f"ray.num_workers={num_workers!r} must be >= 1")
    if config.batch_size % (num_workers * config.micro_batches):
        raise ConfigError(
            f"train.batch_size={config.batch_size} must be divisible by ray.num_workers="
            f"{num_workers} × train.micro_batches={config.micro_batches}"
        )
    steps_per_epoch(data, config, num_workers)
    run_dir = Path(run_dir).resolve()
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ray_dir = run_dir / RAY_RUNS
    latest = latest_checkpoint(ray_dir)
    if latest is not None and load_checkpoint(latest).epoch >= config.epochs:
        return _result(run_dir, latest, config)
    ensure_ray(address)
    check_cluster(num_workers, cpus_per_worker, use_gpu)
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "space": space,
            "data": data,
            "config": config,
            "run_dir": str(run_dir),
            "threads": max(1, int(cpus_per_worker)),
            "resume_from": str(latest) if latest is not None else None,
            "stop_file": str(stop_file) if stop_file is not None else None,
        },
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=num_workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": cpus_per_worker},
        ),
        run_config=RunConfig(
            name=_attempt_name(ray_dir),
            storage_path=str(ray_dir),
            failure_config=FailureConfig(max_failures=config.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=config.keep_checkpoints),
        ),
    )
    with EpochPrinter(run_dir / METRICS_FILE, config.epochs):
        try:
            result = trainer.fit()
        except Exception as exc:
            raise _as_storage_error(exc, ray_dir) from exc
    if result.error is not None:
        raise _as_storage_error(result.error, ray_dir) from result.error
    final = latest_checkpoint(ray_dir)
    if final is None:
        raise RuntimeError(f"training finished without a checkpoint under {ray_dir}")
    done = load_checkpoint(final).epoch
    if done < config.epochs:  # the loop left early: only a stop request does that
        raise RunStopped(
            f"stopped on request in [train] after epoch {done} of {config.epochs} (its "
            "checkpoint is kept); `nas run` with the same spec resumes from it"
        )
    return _result(run_dir, final, config)


WRITE_FAILURES = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def _as_storage_error(exc: BaseException, ray_dir: Path) -> BaseException:
    """A failed checkpoint write inside a worker as one StorageError line; others unchanged.

    Ray wraps a worker's exception (task errors, worker-group errors, causes); the write
    failure is found by walking those links.
    """
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        error = todo.pop()
        if not isinstance(error, BaseException) or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, StorageError) or (
            isinstance(error, OSError) and error.errno in WRITE_FAILURES
        ):
            return StorageError(
                f"training could not write a checkpoint under {ray_dir}: "
                f"{error.strerror or error}; verified checkpoints are kept (rerun to resume)"
            )
        todo += [error.__cause__, error.__context__, getattr(error, "cause", None)]
        failures = getattr(error, "worker_failures", None)
        if isinstance(failures, dict):
            todo += list(failures.values())
    return exc


def _result(run_dir: Path, checkpoint: Path, config: TrainConfig) -> TrainResult:
    metrics_csv = run_dir / METRICS_FILE
    metrics = pd.read_csv(metrics_csv) if metrics_csv.exists() else pd.DataFrame()
    return TrainResult(checkpoint, metrics_csv, metrics, config.epochs)


__all__ = ["TrainResult", "check_cluster", "train_supernet"]
