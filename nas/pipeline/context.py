"""What the stages share: run markers, the run context (data, supernet), evaluators, stores."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from nas.artifacts.export import write_json_atomic
from nas.data.datasets import ImageData, load_data
from nas.errors import ConfigError
from nas.measure.cost import compute_cost
from nas.measure.evaluate import measure_config
from nas.measure.latency import LatencyProtocol
from nas.measure.targets import HardwareTarget
from nas.pipeline.run_dir import inside_run
from nas.results import ResultStore
from nas.search.front import MeasuredSubnet
from nas.search.objectives import NO_TARGET
from nas.space import SearchSpace
from nas.spec.resolve import (
    ACCURACY_METRIC,
    LATENCY_METRIC,
    ResolvedExperiment,
    check_data_fits,
)
from nas.subnet import SubnetConfig
from nas.supernets.base import Supernet


# -- stage bookkeeping --------------------------------------------------------------------------
def stage_done(exp: ResolvedExperiment, stage: str) -> dict[str, Any] | None:
    """The DONE marker of ``stage``, if the stage finished."""
    marker = exp.stage_dir(stage) / "DONE.json"
    return json.loads(marker.read_text()) if marker.exists() else None


def mark_done(exp: ResolvedExperiment, stage: str, info: Mapping[str, Any]) -> None:
    write_json_atomic(exp.stage_dir(stage) / "DONE.json", {"finished_at": time.time(), **info})


@dataclass
class RunContext:
    """Objects shared between stages within one process (rebuilt from disk after a restart)."""

    exp: ResolvedExperiment
    log: Callable[[str], None] = print
    _data: ImageData | None = None
    _supernet: Supernet | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> ImageData:
        if self._data is None:
            d = self.exp.spec.data
            if d.path is not None and not Path(d.path).exists():
                raise ConfigError(f"data.path={d.path!r} does not exist (data.kind={d.kind!r})")
            self._data = load_data(
                d.kind,
                path=d.path,
                resolution=d.resolution,
                seed=self.exp.spec.seed,
                sizes=d.split_sizes(),
            )
            check_data_fits(self.exp.space, self._data, kind=d.kind)
        return self._data

    @property
    def supernet(self) -> Supernet:
        if self._supernet is None:
            from nas.training.checkpoint import load_supernet

            done = stage_done(self.exp, "train")
            if done is None:
                raise ConfigError("the train stage has not finished; run `nas train` first")
            checkpoint = inside_run(self.exp.root, done["checkpoint"])
            model, _ = load_supernet(checkpoint, space=self.exp.space)
            self._supernet = cast(Supernet, model.eval())
        return self._supernet


# -- evaluation functions ------------------------------------------------------------------------
@dataclass
class AccuracyEvaluator:
    """``config -> {"top1": %, costs}`` from supernet weights after BN re-calibration.

    Holds its own copy of the supernet, so re-calibration in a Ray worker (or here) never
    disturbs the caller's weights; picklable for Ray.
    """

    supernet: Supernet
    data: ImageData
    split: str
    calib_images: int

    def __call__(self, config: SubnetConfig) -> dict[str, float]:
        from nas.measure.accuracy import evaluate_accuracy

        torch.set_num_threads(1)
        accuracy = evaluate_accuracy(
            self.supernet, config, self.data, split=self.split, n_calib=self.calib_images
        )
        row = {ACCURACY_METRIC: 100.0 * float(accuracy)}
        row.update(compute_cost(self.supernet.space, config).metrics())
        return row


@dataclass
class SubnetMeasurer:
    """``config -> row`` of every metric key: accuracy, analytic costs, latency per target."""

    accuracy: AccuracyEvaluator
    targets: tuple[HardwareTarget, ...]
    protocol: LatencyProtocol
    seed: int = 0

    def __call__(self, config: SubnetConfig) -> dict[str, float]:
        row = dict(self.accuracy(config))
        for target in self.targets:
            evaluation = measure_config(
                self.accuracy.supernet, config, target, protocol=self.protocol, seed=self.seed
            )
            row[f"{LATENCY_METRIC}@{target.name}"] = float(evaluation.metrics[LATENCY_METRIC])
        return row


@dataclass(frozen=True)
class PredictedMetrics:
    """``config -> row`` from the predictor bundle, with exact analytic costs."""

    bundle: Any
    space: SearchSpace

    def __call__(self, config: SubnetConfig) -> dict[str, float]:
        row = dict(self.bundle.predict([config])[0])
        row.update(compute_cost(self.space, config).metrics())
        return row


def executor_for(exp: ResolvedExperiment) -> Any:
    """Ray fan-out for accuracy (a local Ray instance unless ``ray.address`` is set)."""
    from nas.execution.ray_executor import RayExecutor

    return RayExecutor(address=exp.spec.ray.address, num_cpus=1)


def latency_protocol(exp: ResolvedExperiment) -> LatencyProtocol:
    m = exp.spec.measure
    return LatencyProtocol(warmup=m.latency_warmup, repeats=m.latency_repeats)


def accuracy_evaluator(ctx: RunContext) -> AccuracyEvaluator:
    m = ctx.exp.spec.measure
    return AccuracyEvaluator(ctx.supernet, ctx.data, m.eval_split, m.calib_images)


def measured_results(exp: ResolvedExperiment) -> ResultStore:
    return ResultStore(exp.stage_dir("measure") / "results.jsonl")


def load_bundle(exp: ResolvedExperiment) -> Any:
    from predictors.bundle import Predictors

    return Predictors.load(exp.stage_dir("predictors") / "bundle", space=exp.space)


def measured_metrics(
    exp: ResolvedExperiment,
    config: SubnetConfig,
    *,
    stores: Sequence[ResultStore] | None = None,
) -> dict[str, float]:
    """Every measured metric of ``config``, keyed ``metric`` or ``metric@target``.

    ``stores`` are read in order, later ones overriding earlier ones (the export stage's
    same-session latencies override the measure stage's); default: the measure store alone.
    """
    out: dict[str, float] = {}
    for store in stores if stores is not None else (measured_results(exp),):
        record = store.get(config, NO_TARGET)
        if record is not None:
            out.update({k: float(v) for k, v in record.metrics.items()})
        for target in exp.measured_targets:
            record = store.get(config, target.name)
            if record is not None:
                out.update({f"{k}@{target.name}": float(v) for k, v in record.metrics.items()})
    return out


def measured_subnets(
    exp: ResolvedExperiment, stores: Sequence[ResultStore] | None = None
) -> list[MeasuredSubnet]:
    """Every subnet of the run with a measured accuracy, with all its measured metrics."""
    stores = list(stores) if stores is not None else [measured_results(exp)]
    return [
        MeasuredSubnet(record.config, measured_metrics(exp, record.config, stores=stores))
        for record in stores[0].evaluations(target=NO_TARGET)
    ]
