"""The fit stage: one predictor per searched metric, with its held-out quality report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from nas.artifacts.export import write_json_atomic
from nas.pipeline.context import (
    RunContext,
    measured_results,
)
from nas.pipeline.run_dir import relative_to_run
from nas.search.objectives import NO_TARGET
from nas.spec.resolve import (
    ACCURACY_METRIC,
    LATENCY_METRIC,
)


def run_predictors(ctx: RunContext) -> dict[str, Any]:
    """Fit one predictor per searched metric on the measured data; report held-out quality."""
    from predictors.bundle import Predictors
    from predictors.dataset import train_from_store

    exp = ctx.exp
    store = measured_results(exp)
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
        if report is None:  # fitting always scores the held-out split; nothing to report else
            raise RuntimeError(f"predictor {fit.predictor.name} was fitted without a report")
        reports[fit.predictor.name] = report.to_dict()
        ctx.log(report.to_table())
        warning = report.chance_warning()
        if warning is not None:
            ctx.log(warning)
        _plot_predictions(fit, exp.stage_dir("predictors") / f"{_safe(fit.predictor.name)}.png")
    write_json_atomic(exp.stage_dir("predictors") / "quality.json", reports)
    return {"bundle": relative_to_run(exp.root, out), "quality": reports}


def _safe(name: str) -> str:
    return name.replace("@", "_at_").replace("/", "_")


def _plot_predictions(fit: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nas.search.objectives import with_unit

    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    ax.scatter(fit.y_test, fit.y_pred, s=12)
    lo = float(min(fit.y_test.min(), fit.y_pred.min()))
    hi = float(max(fit.y_test.max(), fit.y_pred.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
    q = fit.predictor.quality
    low, high = q.kendall_tau_ci95
    interval = "" if math.isnan(low) else f" [{low:.2f}, {high:.2f}]"
    ax.set_title(
        f"{fit.predictor.name}\nKendall τ {q.kendall_tau:.2f}{interval} (95 %), "
        f"{q.n_test} held-out subnets",
        fontsize=9,
    )
    ax.set_xlabel(f"measured {with_unit(fit.predictor.name)}")
    ax.set_ylabel(f"predicted {with_unit(fit.predictor.name)}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
