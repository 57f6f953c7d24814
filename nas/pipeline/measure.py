"""The measure stage: accuracy (fanned out on Ray) and latency per target of sampled subnets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from nas.pipeline.console import progress_bar
from nas.pipeline.context import (
    RunContext,
    accuracy_evaluator,
    executor_for,
    latency_protocol,
    measured_results,
)
from nas.pipeline.run_dir import relative_to_run, stop_here
from nas.search.objectives import NO_TARGET
from nas.spec.resolve import (
    ResolvedExperiment,
)
from nas.subnet import SubnetConfig


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
    store = measured_results(exp)
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
            accuracy_evaluator(ctx),
            target=NO_TARGET,
            store=store,
            executor=executor_for(exp),
            progress=_stoppable(bar.update, exp.root, "accuracy"),
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
                protocol=latency_protocol(exp),
                seed=exp.spec.seed,
                progress=_stoppable(bar.update, exp.root, f"latency {target.name}"),
            )
    return {"n_configs": len(configs), "store": relative_to_run(exp.root, cast(Path, store.path))}


def _stoppable(update: Callable[[int], object], root: Path, what: str) -> Callable[[int], None]:
    """A progress callback that also ends the stage when ``nas stop`` asked for it.

    It is called after a measurement is stored, so stopping there loses nothing.
    """

    def step(n: int = 1) -> None:
        update(n)
        stop_here(root, f"in [measure] ({what}: after a stored measurement)")

    return step
