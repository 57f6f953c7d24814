"""Logging a run to MLflow (``[tracking] mlflow = true``): one MLflow run per run directory.

After each stage finishes, what it wrote is logged: the spec as parameters (and ``spec.json``),
the training metrics of every epoch (``train/*``, step = epoch), the measured subnets
(``measure/results.jsonl``), each predictor's quality (``predictors/<metric>/*``) with its
picture, the search's hypervolume per step (``search/hypervolume``) with its history, and the
exported front (``front.csv``, ``pareto.png``, every model card). The MLflow run id is kept in
``<output_dir>/mlflow/run.json`` with the stages already logged, so a resumed run goes on
logging into the same MLflow run and logs nothing twice. The default store is SQLite inside the
run directory; ``tracking.mlflow_uri`` names another (an MLflow server: ``http://host:5000``).
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from nas.artifacts.export import write_json_atomic
from nas.errors import ConfigError
from nas.pipeline.compare import flatten

TRACKING_DIR = "mlflow"
STATE_FILE = "run.json"
_KEY_CHARS = re.compile(r"[^\w.\-/ :]")  # what MLflow accepts in metric and parameter keys
_PARAM_LIMIT = 6000  # MLflow's longest parameter value


def mlflow_key(name: str) -> str:
    """A metric name as MLflow accepts it (``@`` and other signs become ``_``).

    >>> mlflow_key("predictors.latency_ms@cpu_fp32.kendall_tau")
    'predictors.latency_ms_at_cpu_fp32.kendall_tau'
    """
    return _KEY_CHARS.sub("_", name.replace("@", "_at_"))


class MlflowTracker:
    """Logs each finished stage of one run directory into one MLflow run."""

    def __init__(self, root: Path, spec: Mapping[str, Any], *, uri: str, experiment: str) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise ConfigError(
                "tracking.mlflow = true needs MLflow: pip install 'nas-platform[tracking]' "
                "(or mlflow-skinny)"
            ) from exc
        self.root = Path(root)
        self.folder = self.root / TRACKING_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self.uri = uri or f"sqlite:///{(self.folder / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=self.uri)
        state_path = self.folder / STATE_FILE
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        self.logged: list[str] = list(state.get("logged", []))
        run_id = state.get("run_id") if state.get("uri") == self.uri else None
        if run_id is None:
            run_id = self._new_run(spec, experiment)
            self.logged = []
        self.run_id: str = run_id
        self._save()

    def _new_run(self, spec: Mapping[str, Any], experiment: str) -> str:
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            experiment_id = found.experiment_id
        elif self.uri.startswith("sqlite:") and str(self.folder.resolve()) in self.uri:
            experiment_id = self.client.create_experiment(
                experiment, artifact_location=(self.folder / "artifacts").resolve().as_uri()
            )
        else:
            experiment_id = self.client.create_experiment(experiment)
        run = self.client.create_run(
            experiment_id,
            run_name=str(spec.get("name", "run")),
            tags={"nas.output_dir": str(self.root.resolve()), "nas.seed": str(spec.get("seed"))},
        )
        run_id = str(run.info.run_id)
        from mlflow.entities import Param

        params = [
            Param(mlflow_key(k), json.dumps(v)[:_PARAM_LIMIT]) for k, v in flatten(spec).items()
        ]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 per batch
            self.client.log_batch(run_id, params=params[start : start + 100])
        if (self.root / "spec.json").exists():
            self.client.log_artifact(run_id, str(self.root / "spec.json"))
        return run_id

    def _save(self) -> None:
        write_json_atomic(
            self.folder / STATE_FILE,
            {"uri": self.uri, "run_id": self.run_id, "logged": self.logged},
        )

    def stage_done(self, stage: str) -> None:
        """Log what ``stage`` wrote, once per MLflow run."""
        if stage in self.logged:
            return
        getattr(self, f"_log_{stage}")(self.root / stage)
        self.logged.append(stage)
        self._save()

    def finish(self, status: str) -> None:
        """Mark the MLflow run ``FINISHED``, ``KILLED`` (stopped) or ``FAILED``."""
        self.client.set_terminated(self.run_id, status=status)

    def _metrics(self, values: Iterator[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(mlflow_key(k), float(v), now, step)
            for k, v, step in values
            if isinstance(v, int | float) and math.isfinite(v)
        ]
        for start in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[start : start + 1000])

    def _artifacts(self, folder: Path, *patterns: str) -> None:
        for pattern in patterns:
            for path in sorted(folder.glob(pattern)):
                if path.is_file():
                    relative = path.parent.relative_to(self.root)
                    self.client.log_artifact(self.run_id, str(path), str(relative))

    def _log_train(self, folder: Path) -> None:
        rows = _csv_numbers(folder / "metrics.csv")
        self._metrics(
            (f"train/{k}", v, int(row.get("epoch", i)))
            for i, row in enumerate(rows)
            for k, v in row.items()
            if k != "epoch"
        )
        self._artifacts(folder, "metrics.csv", "DONE.json")

    def _log_measure(self, folder: Path) -> None:
        path = folder / "results.jsonl"
        keys = set()
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    keys.add(json.loads(line)["config_key"])
                except (ValueError, KeyError, TypeError):
                    continue
        self._metrics(iter([("measured_subnets", float(len(keys)), 0)]))
        self._artifacts(folder, "results.jsonl", "DONE.json")

    def _log_predictors(self, folder: Path) -> None:
        path = folder / "quality.json"
        quality = json.loads(path.read_text()) if path.exists() else {}
        self._metrics(
            (f"predictors/{name}/{k}", v, 0)
            for name, report in quality.items()
            for k, v in report.items()
            if isinstance(v, int | float)
        )
        self._artifacts(folder, "quality.json", "*.png")

    def _log_search(self, folder: Path) -> None:
        for row in _csv_numbers(folder / "history.csv"):
            step = int(row.get("step", 0))
            self._metrics(
                (f"search/{k}", v, step) for k, v in row.items() if k not in ("step", "ref")
            )
        self._artifacts(folder, "history.csv", "history.png", "front.csv", "DONE.json")

    def _log_export(self, folder: Path) -> None:
        self._artifacts(folder, "front.csv", "pareto.png", "DONE.json", "*/model_card.json")


def _csv_numbers(path: Path) -> list[dict[str, float]]:
    """The numeric cells of a CSV, per row (text cells left out)."""
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            numbers = {}
            for k, v in row.items():
                try:
                    numbers[k] = float(v)
                except (TypeError, ValueError):
                    continue
            rows.append(numbers)
    return rows


def tracker_for(root: Path, spec: Any) -> MlflowTracker | None:
    """The tracker a spec asks for, or ``None`` when tracking is off."""
    import dataclasses

    tracking = spec.tracking
    if not tracking.mlflow:
        return None
    return MlflowTracker(
        root,
        dataclasses.asdict(spec),
        uri=tracking.mlflow_uri,
        experiment=tracking.experiment or spec.name,
    )


__all__ = ["MlflowTracker", "mlflow_key", "tracker_for"]
