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

import pandas as pd
import torch

from nas.config import ExperimentSpec
from nas.console import progress_bar, tally_noisy_latency
from nas.data import ImageData, load_data
from nas.errors import ConfigError, format_choice_error
from nas.export import export_subnet, file_sha256, read_card, write_json_atomic
from nas.front import MeasuredSubnet
from nas.measure.cost import compute_cost
from nas.measure.evaluate import measure_config
from nas.measure.latency import LatencyProtocol
from nas.measure.targets import HardwareTarget
from nas.resolve import (  # re-exported: the spec resolved, and the metric names stages share
    ACCURACY_METRIC,
    COST_METRICS,
    LATENCY_METRIC,
    SLOW_ASK_SEARCHERS,
    TEST_ACCURACY_METRIC,
    ResolvedExperiment,
    available_metrics,
    check_data_fits,
    resolve,
    train_config,
)
from nas.results import ResultStore
from nas.run_dir import StaleStagesError, inside_run, relative_to_run
from nas.search.objectives import NO_TARGET, split_metric_key
from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from nas.supernet import Supernet


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
            check_data_fits(self.exp.space, self._data)
        return self._data

    @property
    def supernet(self) -> Supernet:
        if self._supernet is None:
            from nas.training.checkpoint import load_supernet

            done = stage_done(self.exp, "train")
            if done is None:
                raise ConfigError("the train stage has not finished; run `nas train` first")
            checkpoint = inside_run(self.exp.root, done["checkpoint"])
            self._supernet, _ = load_supernet(checkpoint, space=self.exp.space)
            self._supernet.eval()
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
        cpus_per_worker=spec.ray.cpus_per_worker,
        resume=True,
    )
    root = exp.root
    return {
        "checkpoint": relative_to_run(root, result.checkpoint),
        "metrics_csv": relative_to_run(root, result.metrics_csv),
    }


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
    split = exp.spec.measure.eval_split
    n_images = ctx.data.sizes()[split]
    ctx.log(
        f"measure: accuracy of {len(configs)} subnets on the {split} split ({n_images} images; "
        f"{len(store)} records stored)"
    )
    todo = sum(store.get(c, NO_TARGET) is None for c in configs)
    with progress_bar(todo, "accuracy") as bar:
        measure_accuracies(
            configs,
            _accuracy_evaluator(ctx),
            target=NO_TARGET,
            store=store,
            executor=_executor(exp),
            progress=bar.update,
        )
    for target in exp.measured_targets:
        todo = sum(store.get(c, target.name) is None for c in configs)
        ctx.log(f"measure: latency of {len(configs)} subnets on {target.name}")
        with progress_bar(todo, f"latency {target.name}") as bar:
            measure_latencies(
                ctx.supernet,
                configs,
                target,
                store,
                protocol=_protocol(exp),
                seed=exp.spec.seed,
                progress=bar.update,
            )
    return {"n_configs": len(configs), "store": relative_to_run(exp.root, store.path)}


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
        if report.chance_warning() is not None:
            ctx.log(report.chance_warning())
        _plot_predictions(fit, exp.stage_dir("predictors") / f"{_safe(fit.predictor.name)}.png")
    write_json_atomic(exp.stage_dir("predictors") / "quality.json", reports)
    return {"bundle": relative_to_run(exp.root, out), "quality": reports}


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
    from nas.front import measured_front
    from nas.search import MetricEvaluator, make_searcher, measure_front, run_search
    from nas.search.hv_history import write_history
    from nas.search.optuna_record import JOURNAL_FILE, OptunaRecord, record_measured_front

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
    searcher = make_searcher(
        spec.search.algorithm, exp.problem, seed=spec.seed, options=spec.search.options
    )
    if spec.search.use_predictors and spec.search.algorithm in SLOW_ASK_SEARCHERS:
        cost = SLOW_ASK_SEARCHERS[spec.search.algorithm]
        ctx.log(
            f"search: note: {spec.search.algorithm} spends {cost} CPU-seconds per ask, far "
            "more than a predicted evaluation (about a millisecond); pymoo-nsga2 searches "
            "predictors faster. It pays off on measured evaluations (use_predictors = false)."
        )
    ctx.log(
        f"search: {spec.search.algorithm}, budget {spec.search.budget}, "
        f"{'predicted' if spec.search.use_predictors else 'measured'} metrics"
    )
    out = exp.stage_dir("search")
    # every evaluation also lands in an Optuna study: `optuna-dashboard search/optuna.journal`
    record = OptunaRecord(
        out / JOURNAL_FILE, exp.problem, study_name=spec.name, source=evaluator.source
    )
    result = run_search(
        searcher,
        evaluator,
        store,
        budget=spec.search.budget,
        chunk_size=8,
        progress=True,
        on_evaluated=record.add,
    )
    result.to_frame().to_csv(out / "evaluations.csv", index=False)
    write_history(result, out)
    ctx.log(
        f"search: {len(result.configs)} evaluated ({result.n_fresh} fresh), "
        f"front of {len(result.front)}; measuring the front"
    )
    front = measure_front(result, measured, measured_store)
    front.to_csv(out / "front.csv", index=False)
    if evaluator.source == "predicted":
        record_measured_front(
            out / JOURNAL_FILE, result, front, study_name=f"{spec.name}.measured_front"
        )
    # Constraints hold on measured values: say now, before export, when nothing satisfies them.
    measured_front(exp.problem, measured_subnets(exp))
    return {"n_evaluated": len(result.configs), "front_size": len(result.front)}


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
    for store in stores if stores is not None else (_measured_store(exp),):
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
    stores = list(stores) if stores is not None else [_measured_store(exp)]
    return [
        MeasuredSubnet(record.config, measured_metrics(exp, record.config, stores=stores))
        for record in stores[0].evaluations(target=NO_TARGET)
    ]


def _final_latency_store(exp: ResolvedExperiment) -> ResultStore:
    return ResultStore(exp.stage_dir("export") / "latency.jsonl")


def remeasure_competitors(ctx: RunContext, *, max_rounds: int = 6) -> list[MeasuredSubnet]:
    """Re-measure the latency of every front contender in one session; the run's subnets.

    The front's subnets were measured at another time (search stage) than the data set
    (measure stage); load drifting between stages must not decide front membership. Each round
    re-measures the two best non-dominated layers (among feasible subnets) of whatever is not
    yet re-measured, until the front consists of re-measured subnets only.
    """
    from nas.front import complete, feasible_mask, nondomination_ranks
    from nas.measure.evaluate import measure_configs as measure_latencies

    exp = ctx.exp
    final = _final_latency_store(exp)
    stores = [_measured_store(exp), final]
    latency_targets = [t for t in exp.measured_targets if _objective_on(exp, t.name)]
    for _ in range(max_rounds):
        subnets = complete(exp.problem, measured_subnets(exp, stores))
        feasible = [
            s for s, ok in zip(subnets, feasible_mask(exp.problem, subnets), strict=True) if ok
        ]
        pool = feasible or subnets
        ranks = nondomination_ranks(exp.problem, pool)
        todo = [
            s.config
            for s, r in zip(pool, ranks, strict=True)
            if r <= 1 and any(final.get(s.config, t.name) is None for t in latency_targets)
        ]
        front_done = all(
            final.get(s.config, t.name) is not None
            for s, r in zip(pool, ranks, strict=True)
            if r == 0
            for t in latency_targets
        )
        if front_done or not todo:
            break
        for target in latency_targets:
            ctx.log(
                f"export: re-measuring latency of {len(todo)} front contenders on {target.name}"
            )
            measure_latencies(
                ctx.supernet, todo, target, final, protocol=_protocol(exp), seed=exp.spec.seed
            )
    return measured_subnets(exp, stores)


def _objective_on(exp: ResolvedExperiment, target: str) -> bool:
    return any(split_metric_key(k)[1] == target for k in exp.problem.metric_keys)


def accuracy_interval(correct: int, n: int) -> dict[str, Any]:
    """Top-1 (%) with its 95 % Wilson interval and the number of images."""
    from scipy.stats import binomtest

    ci = binomtest(correct, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {
        "top1": 100.0 * correct / n,
        "n_images": n,
        "ci95": [100.0 * ci.low, 100.0 * ci.high],
    }


def run_export(ctx: RunContext) -> dict[str, Any]:
    """Export the measured Pareto front: weights, ONNX, model cards, CSV, plot, archive.

    The front is the non-dominated set of every subnet measured in the run, feasible on
    measured values, with its contenders' latencies re-measured in one session; each exported
    subnet is then scored once on the test split, which selection never saw.
    """
    from nas.front import measured_front, thin
    from nas.measure.accuracy import evaluate_accuracy
    from predictors.bundle import Predictors

    exp = ctx.exp
    spec = exp.spec
    out = exp.stage_dir("export")
    search_front = pd.read_csv(exp.stage_dir("search") / "front.csv")
    subnets = remeasure_competitors(ctx)
    front = measured_front(exp.problem, subnets)
    chosen = thin(front, spec.export.max_subnets)
    ctx.log(
        f"export: {len(front)} of {len(subnets)} measured subnets are non-dominated"
        f"{' and feasible' if exp.problem.constraints else ''}; exporting {len(chosen)}"
    )
    checkpoint = inside_run(exp.root, stage_done(exp, "train")["checkpoint"])  # type: ignore[index]
    checkpoint_hash = _checkpoint_hash(checkpoint)
    supernet = ctx.supernet
    data = ctx.data
    n_calib = spec.measure.calib_images
    n_val = int(data.sizes()[spec.measure.eval_split])
    predicted_by_key = _predicted_rows(search_front) if spec.search.use_predictors else {}
    rows = []
    bar = progress_bar(len(chosen), "export")
    for i, subnet in enumerate(chosen):
        config = subnet.config
        directory = out / f"subnet_{i:02d}_{config.key}"
        if not (directory / "model_card.json").exists():
            test_top1 = evaluate_accuracy(
                supernet, config, data, split="test", n_calib=n_calib
            )  # re-calibrates BN on the calib split, as export needs
            n_test = int(data.sizes()["test"])
            accuracy = {
                "selection_split": spec.measure.eval_split,
                "splits": data.split_note,
                spec.measure.eval_split: accuracy_interval(
                    round(subnet.metrics[ACCURACY_METRIC] * n_val / 100.0), n_val
                ),
                "test": accuracy_interval(round(test_top1 * n_test), n_test),
            }
            measured = {k: v for k, v in subnet.metrics.items() if _is_reported(k)}
            measured[TEST_ACCURACY_METRIC] = 100.0 * test_top1
            measured.update(_deployed_accuracy(ctx, config, n_calib))
            export_subnet(
                supernet,
                config,
                directory,
                measured=measured,
                predicted=predicted_by_key.get(config.key, {}),
                onnx=spec.export.onnx,
                preprocessing=(
                    data.preprocessing.to_dict() if data.preprocessing is not None else None
                ),
                extra={
                    "experiment": spec.name,
                    "seed": spec.seed,
                    "accuracy": accuracy,
                    "supernet_checkpoint": relative_to_run(exp.root, checkpoint),
                    "supernet_checkpoint_sha256": checkpoint_hash,
                    "bn_recalibration": {"split": "calib", "images": n_calib},
                    "hardware_targets": [dataclasses.asdict(t) for t in exp.measured_targets],
                    "objectives": [o.key for o in exp.problem.objectives],
                    "constraints": list(spec.search.constraints),
                    "front": {
                        "measured_subnets": len(subnets),
                        "non_dominated": len(front),
                        "rule": "non-dominated among every measured subnet of the run, "
                        "constraints on measured values",
                    },
                },
            )
        card = read_card(directory)
        rows.append(_front_row(directory, card))
        bar.update(1)
    bar.close()
    table = pd.DataFrame(rows)
    table.to_csv(out / "front.csv", index=False)
    _plot_front(exp, subnets, front, search_front, out / "pareto.png")
    archive = [
        {
            "config": s.config.to_dict(),
            "metrics": {k: v for k, v in s.metrics.items() if _is_reported(k)},
        }
        for s in front
    ]
    bundle = _load_bundle(exp)
    Predictors([bundle[n] for n in bundle.names], archive=archive).save(
        exp.stage_dir("predictors") / "bundle"
    )
    return {
        "n_exported": len(rows),
        "n_measured": len(subnets),
        "n_non_dominated": len(front),
        "front_csv": relative_to_run(exp.root, out / "front.csv"),
    }


def _deployed_accuracy(ctx: RunContext, config: SubnetConfig, n_calib: int) -> dict[str, float]:
    """``top1_test@<target>``: test accuracy of the model each measured target deploys.

    Runs right after the supernet's test evaluation, so BN statistics are this subnet's.
    """
    from nas.measure.deployed_accuracy import deployed_top1

    module = ctx.supernet.export(config).eval()
    calib_x, _ = ctx.data.tensors("calib")
    x, y = ctx.data.tensors("test")
    return {
        f"{TEST_ACCURACY_METRIC}@{t.name}": 100.0
        * deployed_top1(module, t, calib_x=calib_x[:n_calib], x=x, y=y)
        for t in ctx.exp.measured_targets
    }


def _predicted_rows(search_front: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Predicted metrics of the search front, by config key."""
    out: dict[str, dict[str, float]] = {}
    for _, row in search_front.iterrows():
        out[str(row["config_key"])] = {
            c[: -len(".predicted")]: float(row[c]) for c in row.index if c.endswith(".predicted")
        }
    return out


def _front_row(directory: Path, card: Mapping[str, Any]) -> dict[str, Any]:
    """One row of ``export/front.csv``: measured, test and predicted metrics of a card."""
    accuracy = card.get("accuracy", {})
    selection = accuracy.get("selection_split", "val")
    row: dict[str, Any] = {"subnet": directory.name, "config_key": card["config_key"]}
    row.update({f"{k}.measured": v for k, v in card["metrics"]["measured"].items()})
    for split in (selection, "test"):
        if split in accuracy:
            row[f"top1_{split}.n_images"] = accuracy[split]["n_images"]
            row[f"top1_{split}.ci95_low"] = accuracy[split]["ci95"][0]
            row[f"top1_{split}.ci95_high"] = accuracy[split]["ci95"][1]
    row.update({f"{k}.predicted": v for k, v in card["metrics"]["predicted"].items()})
    return row


def _is_reported(key: str) -> bool:
    """Metrics a card and a front row report: accuracy, latency per target, analytic costs once."""
    metric, target = split_metric_key(key)
    if metric in (ACCURACY_METRIC, *COST_METRICS):
        return target is None
    if metric == LATENCY_METRIC:
        return target is not None
    return metric == TEST_ACCURACY_METRIC


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


def _plot_front(
    exp: ResolvedExperiment,
    subnets: Sequence[MeasuredSubnet],
    front: Sequence[MeasuredSubnet],
    search_front: pd.DataFrame,
    path: Path,
) -> None:
    """Measured subnets (points), their non-dominated set (staircase), predicted front (×)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obj = exp.problem.objectives
    x_obj, y_obj = obj[1], obj[0]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    points = [
        (s.metrics[x_obj.key], s.metrics[y_obj.key]) for s in subnets if x_obj.key in s.metrics
    ]
    if points:
        xs, ys = zip(*points, strict=True)
        ax.scatter(xs, ys, s=10, color="lightgrey", label=f"measured subnets ({len(points)})")
    if front:
        f = sorted(front, key=lambda s: x_obj.sign * s.metrics[x_obj.key])
        fx = [s.metrics[x_obj.key] for s in f]
        fy = [s.metrics[y_obj.key] for s in f]
        ax.step(fx, fy, where="post", color="C0", lw=1.2)
        ax.scatter(fx, fy, s=22, color="C0", zorder=3, label=f"measured front ({len(f)})")
    predicted_x, predicted_y = f"{x_obj.key}.predicted", f"{y_obj.key}.predicted"
    if exp.spec.search.use_predictors and {predicted_x, predicted_y} <= set(search_front):
        ax.scatter(
            search_front[predicted_x],
            search_front[predicted_y],
            marker="x",
            color="C1",
            label="searched front (predicted values)",
        )
    ax.set_xlabel(f"{x_obj.key} ({x_obj.direction})")
    ax.set_ylabel(f"{y_obj.key} ({y_obj.direction}), {exp.spec.measure.eval_split} split")
    ax.set_title(f"{exp.spec.name}: measured Pareto front on {exp.space.name}")
    ax.legend(fontsize=8)
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
    """Run the given stages in order, skipping those already done with the same spec.

    A stage whose recorded spec inputs differ from ``spec`` (and every stage after it) is stale:
    the run is refused naming the changed keys, or with ``force`` those stages' outputs move to
    ``superseded/<time>/`` and they are redone. ``force`` with nothing stale redoes the requested
    stages and everything after them. The output directory is locked for the whole run.
    """
    from nas.run_dir import RunLock, stale_stages, supersede

    for stage in stages:
        if stage not in STAGE_FUNCTIONS:
            raise ConfigError(format_choice_error("stage", stage, list(STAGE_FUNCTIONS)))
    exp = resolve(spec, output_dir=output_dir)
    if "train" in stages:
        train_config(spec)  # validate the [train] table before anything starts
    ctx = RunContext(exp, log=log)
    stale, changes = stale_stages(exp.root, spec)
    if stale and not force:
        raise StaleStagesError(
            f"output_dir={str(exp.root)!r} was run with another spec; changed: "
            f"{'; '.join(changes)}. Stages {stale} would be stale: rerun with --force to redo "
            "them (their outputs move to superseded/), or choose another output_dir"
        )
    if any(s != "predictors" and (force or stage_done(exp, s) is None) for s in stages):
        _ = ctx.data  # loads the data and checks it against the space before any output exists
    with RunLock(exp.root):
        if force:
            first = min(stale or stages, key=list(STAGE_FUNCTIONS).index)
            moved = supersede(
                exp.root, list(STAGE_FUNCTIONS)[list(STAGE_FUNCTIONS).index(first) :]
            )
            if moved is not None:
                log(f"--force: earlier outputs of the redone stages moved to {moved}")
        write_json_atomic(exp.root / "spec.json", dataclasses.asdict(spec))
        for stage in stages:
            if stage_done(exp, stage) is not None:
                log(f"[{stage}] done before with the same spec; skipped")
                continue
            _run_stage(ctx, stage)
    return exp


def _run_stage(ctx: RunContext, stage: str) -> None:
    """Run one stage, recording its spec inputs when it starts and in its DONE marker."""
    from nas.run_dir import INPUTS_FILE, stage_inputs

    exp = ctx.exp
    start = time.perf_counter()
    inputs = stage_inputs(exp.spec, stage)
    exp.stage_dir(stage).mkdir(parents=True, exist_ok=True)
    write_json_atomic(exp.stage_dir(stage) / INPUTS_FILE, {"inputs": inputs})
    ctx.log(f"[{stage}] running")
    with tally_noisy_latency() as noise:
        info = STAGE_FUNCTIONS[stage](ctx)
    if noise.line(stage):
        ctx.log(noise.line(stage))
    mark_done(exp, stage, {**info, "inputs": inputs, "seconds": time.perf_counter() - start})
    ctx.log(f"[{stage}] finished in {time.perf_counter() - start:.1f} s")
