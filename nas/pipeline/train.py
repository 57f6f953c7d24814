"""The train stage: the supernet on Ray Train, resumed from the run's last verified checkpoint."""

from __future__ import annotations

from typing import Any

from nas.pipeline.context import (
    RunContext,
)
from nas.pipeline.run_dir import STOP_FILE, relative_to_run


def run_train(ctx: RunContext) -> dict[str, Any]:
    """Train the supernet on Ray Train (resumes from the last checkpoint of the run dir)."""
    from nas.execution.ray_training import train_supernet

    exp = ctx.exp
    spec = exp.spec
    result = train_supernet(
        exp.space,
        ctx.data,
        exp.train,
        run_dir=exp.stage_dir("train"),
        num_workers=spec.ray.num_workers,
        address=spec.ray.address,
        use_gpu=spec.ray.use_gpu,
        cpus_per_worker=spec.ray.cpus_per_worker,
        resume=True,
        stop_file=exp.root / STOP_FILE,
    )
    root = exp.root
    return {
        "checkpoint": relative_to_run(root, result.checkpoint),
        "metrics_csv": relative_to_run(root, result.metrics_csv),
    }
