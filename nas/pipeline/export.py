"""The export stage: the measured Pareto front with weights, ONNX, model cards and a plot.

The front is the non-dominated set of every subnet measured in the run, feasible on measured
values, with its contenders' latencies re-measured in one session; each exported subnet is
scored once on the test split, which selection never saw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from nas.artifacts.export import export_subnet, file_sha256, read_card
from nas.data.resolution import images_for
from nas.pipeline.console import progress_bar
from nas.pipeline.context import (
    RunContext,
    latency_protocol,
    load_bundle,
    measured_results,
    measured_subnets,
    stage_done,
)
from nas.pipeline.run_dir import inside_run, relative_to_run
from nas.results import ResultStore
from nas.search.front import MeasuredSubnet
from nas.search.objectives import split_metric_key
from nas.spec.resolve import (
    ACCURACY_METRIC,
    COST_METRICS,
    LATENCY_METRIC,
    TEST_ACCURACY_METRIC,
    ResolvedExperiment,
)
from nas.subnet import SubnetConfig


def _final_latency_store(exp: ResolvedExperiment) -> ResultStore:
    return ResultStore(exp.stage_dir("export") / "latency.jsonl")


def remeasure_competitors(ctx: RunContext, *, max_rounds: int = 6) -> list[MeasuredSubnet]:
    """Re-measure the latency of every front contender in one session; the run's subnets.

    The front's subnets were measured at another time (search stage) than the data set
    (measure stage); load drifting between stages must not decide front membership. Each round
    re-measures the two best non-dominated layers (among feasible subnets) of whatever is not
    yet re-measured, until the front consists of re-measured subnets only.
    """
    from nas.measure.evaluate import measure_configs as measure_latencies
    from nas.search.front import complete, feasible_mask, nondomination_ranks

    exp = ctx.exp
    final = _final_latency_store(exp)
    stores = [measured_results(exp), final]
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
                ctx.supernet,
                todo,
                target,
                final,
                protocol=latency_protocol(exp),
                seed=exp.spec.seed,
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
    from nas.measure.accuracy import evaluate_accuracy
    from nas.search.front import measured_front, thin
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
            )  # re-calibrates BN (where the family has it) on the calib split
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
                class_names=data.class_names,
                extra={
                    "experiment": spec.name,
                    "seed": spec.seed,
                    "accuracy": accuracy,
                    "supernet_checkpoint": relative_to_run(exp.root, checkpoint),
                    "supernet_checkpoint_sha256": checkpoint_hash,
                    "bn_recalibration": (
                        {"split": "calib", "images": n_calib} if supernet.uses_batchnorm else None
                    ),
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
    _plot_front(exp, subnets, front, search_front, out / "pareto.png", exported=chosen)
    archive = [
        {
            "config": s.config.to_dict(),
            "metrics": {k: v for k, v in s.metrics.items() if _is_reported(k)},
        }
        for s in front
    ]
    bundle = load_bundle(exp)
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

    space = ctx.supernet.space
    module = ctx.supernet.export(config).eval()
    calib_x, _ = ctx.data.tensors("calib")
    x, y = ctx.data.tensors("test")
    calib_x, x = images_for(space, config, calib_x), images_for(space, config, x)
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
    exported: Sequence[MeasuredSubnet] = (),
) -> None:
    """The run's front picture: what was measured, what is non-dominated, what was exported.

    Measured subnets (grey), their non-dominated set (staircase), the exported ones (rings), and
    the searched front's predictions (×), each joined to its measured point by a thin line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nas.search.objectives import with_unit

    obj = exp.problem.objectives
    x_obj, y_obj = obj[1], obj[0]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
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
    if exported:
        ax.scatter(
            [s.metrics[x_obj.key] for s in exported],
            [s.metrics[y_obj.key] for s in exported],
            s=90,
            facecolors="none",
            edgecolors="black",
            linewidths=1.2,
            zorder=4,
            label=f"exported ({len(exported)})",
        )
    px, py = f"{x_obj.key}.predicted", f"{y_obj.key}.predicted"
    mx, my = f"{x_obj.key}.measured", f"{y_obj.key}.measured"
    if exp.spec.search.use_predictors and {px, py} <= set(search_front):
        if {mx, my} <= set(search_front):
            for row in search_front[[px, py, mx, my]].dropna().itertuples(index=False):
                ax.plot([row[0], row[2]], [row[1], row[3]], color="C1", lw=0.5, alpha=0.5)
        ax.scatter(
            search_front[px],
            search_front[py],
            marker="x",
            color="C1",
            label="searched front, predicted (line: to its measured point)",
        )
    ax.set_xlabel(f"{with_unit(x_obj.key)}, {x_obj.direction}imised")
    ax.set_ylabel(
        f"{with_unit(y_obj.key)}, {y_obj.direction}imised, {exp.spec.measure.eval_split} split"
    )
    ax.set_title(f"{exp.spec.name}: measured Pareto front on {exp.space.name}", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
