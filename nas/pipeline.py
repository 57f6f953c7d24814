"""The experiment pipeline: train → measure → fit predictors → search → measure front → export.

Every stage writes its outputs under ``<output_dir>/<stage>/`` and finishes by writing a
``DONE.json`` marker atomically. Rerunning skips finished stages; an interrupted stage resumes
from its own durable state (Ray Train checkpoints, append-only result stores, exported cards),
so a killed run loses at most the evaluation or epoch in flight.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from nas.config import ExperimentSpec
from nas.data import ImageData, load_data
from nas.errors import ConfigError, format_choice_error
from nas.export import export_subnet, file_sha256, read_card, write_json_atomic
from nas.measure.cost import compute_cost
from nas.measure.evaluate import measure_config
from nas.measure.latency import LatencyProtocol
from nas.measure.targets import HardwareTarget, TargetRegistry, default_registry
from nas.results import ResultStore
from nas.search.objectives import NO_TARGET, SearchProblem, split_metric_key
from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from nas.supernet import Supernet

COST_METRICS: tuple[str, ...] = ("params_m", "macs_m", "model_size_bytes")
ACCURACY_METRIC = "top1"
LATENCY_METRIC = "latency_ms"


# -- the spec, resolved -------------------------------------------------------------------------
@dataclass(frozen=True)
class ResolvedExperiment:
    """A spec with its space, targets and search problem built and cross-checked."""

    spec: ExperimentSpec
    space: SearchSpace
    targets: TargetRegistry
    measured_targets: tuple[HardwareTarget, ...]
    problem: SearchProblem
    root: Path

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage


def available_metrics(targets: Sequence[HardwareTarget]) -> list[str]:
    """Metric keys the pipeline can provide: accuracy, analytic costs, latency per target."""
    return [ACCURACY_METRIC, *COST_METRICS, *(f"{LATENCY_METRIC}@{t.name}" for t in targets)]


def resolve(spec: ExperimentSpec, *, output_dir: str | Path | None = None) -> ResolvedExperiment:
    """Build and cross-check everything the spec names, before any work starts.

    Raises:
        ConfigError: unknown target, objective or constraint on a metric nobody measures.
    """
    space = spec.space.build()
    registry = default_registry().extended(spec.targets)
    measured = registry.resolve(spec.measure.targets)
    problem = SearchProblem.from_strings(space, spec.search.objectives, spec.search.constraints)
    provided = available_metrics(measured)
    for key in problem.metric_keys:
        _, target = split_metric_key(key)
        if target is not None and target not in spec.measure.targets:
            raise ConfigError(
                f"search metric {key!r} is on target {target!r}, which measure.targets does not "
                f"measure; allowed targets: {list(spec.measure.targets)}"
            )
        if key not in provided:
            raise ConfigError(format_choice_error("search metric", key, provided))
    root = Path(output_dir or spec.output_dir)
    return ResolvedExperiment(spec, space, registry, measured, problem, root)


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
                d.kind, path=d.path, resolution=d.resolution, seed=self.exp.spec.seed
            )
            _check_data_fits(self.exp.space, self._data)
        return self._data

    @property
    def supernet(self) -> Supernet:
        if self._supernet is None:
            from nas.training.checkpoint import load_supernet

            done = stage_done(self.exp, "train")
            if done is None:
                raise ConfigError("the train stage has not finished; run `nas train` first")
            self._supernet, _ = load_supernet(Path(done["checkpoint"]), space=self.exp.space)
            self._supernet.eval()
        return self._supernet


def _check_data_fits(space: SearchSpace, data: ImageData) -> None:
    from nas.arch import arch_of

    arch = arch_of(space)
    if data.in_channels != arch.in_channels or data.num_classes > arch.num_classes:
        raise ConfigError(
            f"data set {data.name!r} has {data.in_channels} channels and {data.num_classes} "
            f"classes; search space {space.name!r} expects {arch.in_channels} channels and at "
            f"most {arch.num_classes} classes (set space.options in_channels/num_classes)"
        )


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


def _executor(exp: ResolvedExperiment) -> Any:
    """Ray fan-out for accuracy (a local Ray instance unless ``ray.address`` is set)."""
    from nas.execution.ray_executor import RayExecutor

    return RayExecutor(address=exp.spec.ray.address, num_cpus=1)


def _protocol(exp: ResolvedExperiment) -> LatencyProtocol:
    m = exp.spec.measure
    return LatencyProtocol(warmup=m.latency_warmup, repeats=m.latency_repeats)


def _accuracy_evaluator(ctx: RunContext) -> AccuracyEvaluator:
    m = ctx.exp.spec.measure
    return AccuracyEvaluator(ctx.supernet, ctx.data, m.eval_split, m.calib_images)


def _measured_store(exp: ResolvedExperiment) -> ResultStore:
    return ResultStore(exp.stage_dir("measure") / "results.jsonl")


# -- stages -------------------------------------------------------------------------------------
def run_train(ctx: RunContext) -> dict[str, Any]:
    """Train the supernet on Ray Train (resumes from the last checkpoint of the run dir)."""
    from nas.execution.ray_training import train_supernet

    exp = ctx.exp
    spec = exp.spec
    result = train_supernet(
        exp.space,
        ctx.data,
        train_config(spec),
        run_dir=exp.stage_dir("train"),
        num_workers=spec.ray.num_workers,
        address=spec.ray.address,
        use_gpu=spec.ray.use_gpu,
        resume=True,
    )
    checkpoint = Path(result.checkpoint)
    return {"checkpoint": str(checkpoint), "metrics_csv": str(result.metrics_csv)}


def train_config(spec: ExperimentSpec) -> Any:
    """The spec's ``[train]`` table as a validated ``TrainConfig`` (seeded by the spec)."""
    from nas.training.config import TrainConfig

    config = TrainConfig.from_dict({"seed": spec.seed, **dict(spec.train.options)})
    workers = spec.ray.num_workers
    if config.batch_size % (workers * config.micro_batches):
        raise ConfigError(
            f"train.batch_size={config.batch_size} must be divisible by ray.num_workers="
            f"{workers} × train.micro_batches={config.micro_batches}"
        )
    return config


def dataset_configs(exp: ResolvedExperiment) -> list[SubnetConfig]:
    """The subnets measured for the predictors: smallest, largest and seeded uniform samples."""
    from predictors.dataset import sample_configs

    space = exp.space
    n = exp.spec.measure.n_samples
    configs = {
        c.key: c for c in (space.canonical(space.smallest()), space.canonical(space.largest()))
    }
    for c in sample_configs(space, n, seed=exp.spec.seed):
        configs.setdefault(c.key, c)
    return list(configs.values())[: max(n, 2)]


def run_measure(ctx: RunContext) -> dict[str, Any]:
    """Accuracy (fanned out on Ray) and latency per target (one at a time) of the data set."""
    from nas.measure.evaluate import measure_configs as measure_latencies
    from predictors.dataset import measure_configs as measure_accuracies

    exp = ctx.exp
    store = _measured_store(exp)
    configs = dataset_configs(exp)
    ctx.log(f"measure: accuracy of {len(configs)} subnets ({len(store)} records stored)")
    measure_accuracies(
        configs,
        _accuracy_evaluator(ctx),
        target=NO_TARGET,
        store=store,
        executor=_executor(exp),
    )
    for target in exp.measured_targets:
        ctx.log(f"measure: latency of {len(configs)} subnets on {target.name}")
        measure_latencies(
            ctx.supernet, configs, target, store, protocol=_protocol(exp), seed=exp.spec.seed
        )
    return {"n_configs": len(configs), "store": str(store.path)}


def run_predictors(ctx: RunContext) -> dict[str, Any]:
    """Fit one predictor per searched metric on the measured data; report held-out quality."""
    from predictors.bundle import Predictors
    from predictors.dataset import train_from_store

    exp = ctx.exp
    store = _measured_store(exp)
    kind = exp.spec.predictors.kind
    fits = [
        train_from_store(
            store,
            exp.space,
            metric=ACCURACY_METRIC,
            target=NO_TARGET,
            predictor_target="",
            kind=kind,
            test_size=exp.spec.predictors.test_fraction,
            random_state=exp.spec.seed,
        )
    ]
    for target in exp.measured_targets:
        fits.append(
            train_from_store(
                store,
                exp.space,
                metric=LATENCY_METRIC,
                target=target.name,
                kind=kind,
                test_size=exp.spec.predictors.test_fraction,
                random_state=exp.spec.seed,
            )
        )
    bundle = Predictors([f.predictor for f in fits])
    out = exp.stage_dir("predictors") / "bundle"
    bundle.save(out)
    reports = {}
    for fit in fits:
        report = fit.predictor.quality
        reports[fit.predictor.name] = report.to_dict()
        ctx.log(report.to_table())
        _plot_predictions(fit, exp.stage_dir("predictors") / f"{_safe(fit.predictor.name)}.png")
    write_json_atomic(exp.stage_dir("predictors") / "quality.json", reports)
    return {"bundle": str(out), "quality": reports}


def _safe(name: str) -> str:
    return name.replace("@", "_at_").replace("/", "_")


def _plot_predictions(fit: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(fit.y_test, fit.y_pred, s=12)
    lo = float(min(fit.y_test.min(), fit.y_pred.min()))
    hi = float(max(fit.y_test.max(), fit.y_pred.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
    q = fit.predictor.quality
    ax.set_title(f"{fit.predictor.name}: tau={q.kendall_tau:.2f}, n_test={q.n_test}")
    ax.set_xlabel("measured")
    ax.set_ylabel("predicted")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _load_bundle(exp: ResolvedExperiment) -> Any:
    from predictors.bundle import Predictors

    return Predictors.load(exp.stage_dir("predictors") / "bundle", space=exp.space)


def run_search_stage(ctx: RunContext) -> dict[str, Any]:
    """Search (on predicted or measured metrics), then measure the front for real."""
    from nas.search import MetricEvaluator, make_searcher, measure_front, run_search

    exp = ctx.exp
    spec = exp.spec
    measured_store = _measured_store(exp)
    measurer = SubnetMeasurer(
        _accuracy_evaluator(ctx), exp.measured_targets, _protocol(exp), spec.seed
    )
    measured = MetricEvaluator(measurer, tuple(available_metrics(exp.measured_targets)))
    if spec.search.use_predictors:
        bundle = _load_bundle(exp)
        keys = tuple([*bundle.names, *COST_METRICS])
        evaluator = MetricEvaluator(PredictedMetrics(bundle, exp.space), keys, "predicted")
        store = ResultStore(exp.stage_dir("search") / "predicted.jsonl")
    else:
        evaluator, store = measured, measured_store
    searcher = make_searcher(spec.search.algorithm, exp.problem, seed=spec.seed)
    ctx.log(
        f"search: {spec.search.algorithm}, budget {spec.search.budget}, "
        f"{'predicted' if spec.search.use_predictors else 'measured'} metrics"
    )
    result = run_search(
        searcher, evaluator, store, budget=spec.search.budget, chunk_size=8, progress=True
    )
    out = exp.stage_dir("search")
    result.to_frame().to_csv(out / "evaluations.csv", index=False)
    result.history.to_csv(out / "history.csv", index=False)
    ctx.log(
        f"search: {len(result.configs)} evaluated ({result.n_fresh} fresh), "
        f"front of {len(result.front)}; measuring the front"
    )
    front = measure_front(result, measured, measured_store)
    front.to_csv(out / "front.csv", index=False)
    return {"n_evaluated": len(result.configs), "front_size": len(result.front)}


def _front_configs(
    exp: ResolvedExperiment, front: pd.DataFrame
) -> list[tuple[SubnetConfig, pd.Series]]:
    """Measured-front rows, ordered by the first objective, thinned to ``export.max_subnets``."""
    rows = front[front["measured_on_front"].astype(bool)] if len(front) else front
    if rows.empty:
        rows = front
    first = exp.problem.objectives[0]
    rows = rows.sort_values(f"{first.key}.measured", ascending=first.direction == "min")
    k = exp.spec.export.max_subnets
    if len(rows) > k:
        picks = np.unique(np.linspace(0, len(rows) - 1, k).round().astype(int))
        rows = rows.iloc[picks]
    out = []
    for _, row in rows.iterrows():
        values = {c[4:]: _plain(row[c]) for c in rows.columns if c.startswith("cfg.")}
        out.append((exp.space.validate(values), row))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def measured_metrics(exp: ResolvedExperiment, config: SubnetConfig) -> dict[str, float]:
    """Every measured metric of ``config`` in the store, keyed ``metric`` or ``metric@target``."""
    store = _measured_store(exp)
    out: dict[str, float] = {}
    record = store.get(config, NO_TARGET)
    if record is not None:
        out.update({k: float(v) for k, v in record.metrics.items()})
    for target in exp.measured_targets:
        record = store.get(config, target.name)
        if record is not None:
            out.update({f"{k}@{target.name}": float(v) for k, v in record.metrics.items()})
    return out


def run_export(ctx: RunContext) -> dict[str, Any]:
    """Export the measured Pareto front: weights, ONNX, model cards, CSV, plot, archive."""
    from nas.training.recalibrate import recalibrate_bn
    from predictors.bundle import Predictors

    exp = ctx.exp
    spec = exp.spec
    out = exp.stage_dir("export")
    front = pd.read_csv(exp.stage_dir("search") / "front.csv")
    checkpoint = Path(stage_done(exp, "train")["checkpoint"])  # type: ignore[index]
    checkpoint_hash = _checkpoint_hash(checkpoint)
    supernet = ctx.supernet
    calib_x, _ = ctx.data.tensors("calib")
    calib_x = calib_x[: spec.measure.calib_images]
    rows = []
    for i, (config, row) in enumerate(_front_configs(exp, front)):
        directory = out / f"subnet_{i:02d}_{config.key}"
        measured = measured_metrics(exp, config)
        predicted = {
            c[: -len(".predicted")]: float(row[c]) for c in row.index if c.endswith(".predicted")
        }
        if not (directory / "model_card.json").exists():
            recalibrate_bn(supernet, config, calib_x)
            export_subnet(
                supernet,
                config,
                directory,
                measured=measured,
                predicted=predicted if spec.search.use_predictors else {},
                onnx=spec.export.onnx,
                extra={
                    "experiment": spec.name,
                    "seed": spec.seed,
                    "supernet_checkpoint": str(checkpoint),
                    "supernet_checkpoint_sha256": checkpoint_hash,
                    "bn_recalibration": {"split": "calib", "images": len(calib_x)},
                    "hardware_targets": [dataclasses.asdict(t) for t in exp.measured_targets],
                    "objectives": [o.key for o in exp.problem.objectives],
                },
            )
        card = read_card(directory)
        rows.append(
            {
                "subnet": directory.name,
                "config_key": config.key,
                **{
                    f"{k}.measured": v
                    for k, v in card["metrics"]["measured"].items()
                    if _is_reported(k)
                },
                **{f"{k}.predicted": v for k, v in card["metrics"]["predicted"].items()},
            }
        )
    table = pd.DataFrame(rows)
    table.to_csv(out / "front.csv", index=False)
    _plot_front(exp, front, out / "pareto.png")
    archive = [
        {
            "config": cfg.to_dict(),
            "metrics": {k: v for k, v in measured_metrics(exp, cfg).items() if _is_reported(k)},
        }
        for cfg, _ in _front_configs(exp, front)
    ]
    bundle = _load_bundle(exp)
    Predictors([bundle[n] for n in bundle.names], archive=archive).save(
        exp.stage_dir("predictors") / "bundle"
    )
    return {"n_exported": len(rows), "front_csv": str(out / "front.csv")}


def _is_reported(key: str) -> bool:
    metric = key.split("@", 1)[0]
    return metric in (ACCURACY_METRIC, LATENCY_METRIC, *COST_METRICS)


def _checkpoint_hash(checkpoint: Path) -> str:
    files = (
        sorted(p for p in checkpoint.rglob("*") if p.is_file())
        if checkpoint.is_dir()
        else [checkpoint]
    )
    import hashlib

    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(file_sha256(f).encode())
    return digest.hexdigest()


def _plot_front(exp: ResolvedExperiment, front: pd.DataFrame, path: Path) -> None:
    """Measured data set (grey), measured front (line) and predicted points (crosses)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obj = exp.problem.objectives
    x_key, y_key = obj[1].key, obj[0].key
    store = _measured_store(exp)
    rows = []
    for record in store.evaluations(target=NO_TARGET):
        m = measured_metrics(exp, record.config)
        if x_key in m and y_key in m:
            rows.append((m[x_key], m[y_key]))
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if rows:
        xs, ys = zip(*rows, strict=True)
        ax.scatter(xs, ys, s=10, color="lightgrey", label="measured subnets")
    if len(front):
        f = front.sort_values(f"{x_key}.measured")
        ax.plot(
            f[f"{x_key}.measured"],
            f[f"{y_key}.measured"],
            "o-",
            color="C0",
            label="front (measured)",
        )
        if f"{x_key}.predicted" in f and exp.spec.search.use_predictors:
            ax.scatter(
                f[f"{x_key}.predicted"],
                f[f"{y_key}.predicted"],
                marker="x",
                color="C1",
                label="front (predicted)",
            )
    ax.set_xlabel(x_key)
    ax.set_ylabel(y_key)
    ax.set_title(f"{exp.spec.name}: Pareto front on {exp.space.name}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


STAGE_FUNCTIONS: dict[str, Callable[[RunContext], dict[str, Any]]] = {
    "train": run_train,
    "measure": run_measure,
    "predictors": run_predictors,
    "search": run_search_stage,
    "export": run_export,
}


def run_experiment(
    spec: ExperimentSpec,
    *,
    stages: Sequence[str] = tuple(STAGE_FUNCTIONS),
    output_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    force: bool = False,
) -> ResolvedExperiment:
    """Run the given stages in order, skipping those already done (unless ``force``)."""
    for stage in stages:
        if stage not in STAGE_FUNCTIONS:
            raise ConfigError(format_choice_error("stage", stage, list(STAGE_FUNCTIONS)))
    exp = resolve(spec, output_dir=output_dir)
    if "train" in stages:
        train_config(spec)  # validate the [train] table before anything starts
    ctx = RunContext(exp, log=log)
    if any(s != "predictors" and (force or stage_done(exp, s) is None) for s in stages):
        _ = ctx.data  # loads the data and checks it against the space before any output exists
    exp.root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(exp.root / "spec.json", dataclasses.asdict(spec))
    for stage in stages:
        if not force and stage_done(exp, stage) is not None:
            log(f"[{stage}] done before; skipped")
            continue
        start = time.perf_counter()
        exp.stage_dir(stage).mkdir(parents=True, exist_ok=True)
        log(f"[{stage}] running")
        info = STAGE_FUNCTIONS[stage](ctx)
        mark_done(exp, stage, {**info, "seconds": time.perf_counter() - start})
        log(f"[{stage}] finished in {time.perf_counter() - start:.1f} s")
    return exp
