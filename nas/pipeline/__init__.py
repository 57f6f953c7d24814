"""The experiment pipeline: train → measure → fit predictors → search → measure front → export.

One module per stage (``train``, ``measure``, ``fit``, ``search``, ``export``), what they share
in ``context`` and the runner in ``run``. Every stage writes its outputs under
``<output_dir>/<stage>/`` and finishes by writing a ``DONE.json`` marker atomically. Rerunning
skips finished stages; an interrupted stage resumes from its own durable state (Ray Train
checkpoints, append-only result stores, exported cards), so a killed run loses at most the
evaluation or epoch in flight.
"""

from nas.pipeline.context import AccuracyEvaluator, RunContext, stage_done
from nas.pipeline.run import STAGE_FUNCTIONS, run_experiment
from nas.spec.resolve import ResolvedExperiment, resolve, train_config

__all__ = [
    "STAGE_FUNCTIONS",
    "AccuracyEvaluator",
    "ResolvedExperiment",
    "RunContext",
    "resolve",
    "run_experiment",
    "stage_done",
    "train_config",
]
