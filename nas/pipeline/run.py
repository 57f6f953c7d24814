"""Running stages in order: skip those done with the same spec, refuse or supersede stale ones."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nas.artifacts.export import write_json_atomic
from nas.errors import ConfigError, RunStopped, format_choice_error
from nas.pipeline.console import tally_noisy_latency
from nas.pipeline.context import (
    RunContext,
    mark_done,
    stage_done,
)
from nas.pipeline.export import run_export
from nas.pipeline.fit import run_predictors
from nas.pipeline.measure import run_measure
from nas.pipeline.search import run_search_stage
from nas.pipeline.tracking import MlflowTracker, tracker_for
from nas.pipeline.train import run_train
from nas.spec.config import ExperimentSpec
from nas.spec.resolve import (
    ResolvedExperiment,
    resolve,
)

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
    from nas.pipeline.run_dir import (
        RunLock,
        clear_stop,
        finish_superseding,
        outdated_by,
        refuse_stale,
        stale_stages,
        stop_here,
        supersede,
    )

    for stage in stages:
        if stage not in STAGE_FUNCTIONS:
            raise ConfigError(format_choice_error("stage", stage, list(STAGE_FUNCTIONS)))
    exp = resolve(spec, output_dir=output_dir)
    if "train" in stages:
        _ = exp.train  # validate the [train] table before anything starts
    ctx = RunContext(exp, log=log)
    if exp.root.exists():
        with RunLock(exp.root):
            finished = finish_superseding(exp.root)
        if finished is not None:
            log(f"an interrupted --force is completed: its stages moved to {finished}")
    stale, _ = stale_stages(exp.root, spec)
    if not force:
        refuse_stale(exp.root, spec)
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
        clear_stop(exp.root)  # a request left from an earlier run is not for this one
        tracker = tracker_for(exp.root, spec)
        try:
            for stage in stages:
                stop_here(exp.root, f"before [{stage}]")
                if stage_done(exp, stage) is not None:
                    newer = outdated_by(exp.root, stage)
                    if newer is None:
                        log(f"[{stage}] done before with the same spec; skipped")
                        _track(tracker, stage, log)
                        continue
                    later = list(STAGE_FUNCTIONS)[list(STAGE_FUNCTIONS).index(stage) :]
                    moved = supersede(exp.root, later)
                    log(
                        f"[{stage}] [{newer}] was redone after it: its outputs and those of the "
                        f"stages after it moved to {moved}; redoing"
                    )
                _run_stage(ctx, stage)
                _track(tracker, stage, log)
        except RunStopped:
            _finish(tracker, "KILLED", log)
            raise
        except BaseException:
            _finish(tracker, "FAILED", log)
            raise
        _finish(tracker, "FINISHED" if stage_done(exp, "export") is not None else "RUNNING", log)
    return exp


def _track(tracker: MlflowTracker | None, stage: str, log: Callable[[str], None]) -> None:
    """Log a finished stage to the tracker; a tracker that fails does not stop the run."""
    if tracker is None:
        return
    try:
        tracker.stage_done(stage)
    except Exception as exc:  # a tracking server away is the tracker's problem, not the run's
        log(f"tracking: [{stage}] could not be logged to MLflow ({exc}); the run goes on")


def _finish(tracker: MlflowTracker | None, status: str, log: Callable[[str], None]) -> None:
    if tracker is None or status == "RUNNING":
        return
    try:
        tracker.finish(status)
    except Exception as exc:
        log(f"tracking: the MLflow run could not be marked {status} ({exc})")


def _run_stage(ctx: RunContext, stage: str) -> None:
    """Run one stage, recording its spec inputs when it starts and in its DONE marker."""
    from nas.pipeline.run_dir import INPUTS_FILE, stage_inputs

    exp = ctx.exp
    start = time.perf_counter()
    inputs = stage_inputs(exp.spec, stage)
    exp.stage_dir(stage).mkdir(parents=True, exist_ok=True)
    write_json_atomic(exp.stage_dir(stage) / INPUTS_FILE, {"inputs": inputs})
    ctx.log(f"[{stage}] running")
    with tally_noisy_latency() as noise:
        info = STAGE_FUNCTIONS[stage](ctx)
    noisy = noise.line(stage)
    if noisy:
        ctx.log(noisy)
    mark_done(exp, stage, {**info, "inputs": inputs, "seconds": time.perf_counter() - start})
    ctx.log(f"[{stage}] finished in {time.perf_counter() - start:.1f} s")
