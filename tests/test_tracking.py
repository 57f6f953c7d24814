"""`[tracking] mlflow = true`: a real run logged to a real MLflow store (SQLite, the default).

The run is the pipeline test's small spec; the store is read back with MLflow's own client.
A second `nas run` on the finished run logs nothing twice and keeps the same MLflow run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from nas.errors import ConfigError
from nas.pipeline.tracking import mlflow_key
from nas.spec.config import ExperimentSpec
from tests.test_pipeline import local_ray_env, nas_command, write_spec

mlflow = pytest.importorskip("mlflow")
REPO = Path(__file__).resolve().parents[1]


def _client(run: Path) -> tuple[object, str]:
    from mlflow.tracking import MlflowClient

    state = json.loads((run / "mlflow" / "run.json").read_text())
    return MlflowClient(tracking_uri=state["uri"]), state["run_id"]


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(1200)
def test_a_run_is_logged_to_mlflow_once(tmp_path: Path) -> None:
    run = tmp_path / "run"
    spec = write_spec(tmp_path, output_dir=run)
    spec.write_text(spec.read_text() + '\n[tracking]\nmlflow = true\nexperiment = "nas-test"\n')
    for _ in range(2):  # the second run finds every stage done
        done = subprocess.run(
            nas_command(spec), cwd=REPO, env=local_ray_env(), capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert "tracking:" not in done.stdout + done.stderr  # no logging failure reported
    client, run_id = _client(run)
    [experiment] = [e for e in client.search_experiments() if e.name == "nas-test"]
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]  # one MLflow run for both nas runs
    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.params["train.options.epochs"] == "2"
    assert json.loads(logged.data.params["search.objectives"]) == [
        "top1:max",
        "latency_ms@cpu_fp32:min",
    ]
    loss = client.get_metric_history(run_id, "train/loss_largest")
    assert sorted(m.step for m in loss) == [0, 1]  # one point per epoch, not logged twice
    hv = client.get_metric_history(run_id, "search/hypervolume")
    assert len(hv) >= 2 and len({m.step for m in hv}) == len(hv)
    quality = json.loads((run / "predictors" / "quality.json").read_text())
    tau = logged.data.metrics[mlflow_key("predictors/top1/kendall_tau")]
    assert tau == pytest.approx(quality["top1"]["kendall_tau"])
    measure_done = json.loads((run / "measure" / "DONE.json").read_text())
    assert logged.data.metrics["measured_subnets"] == measure_done["n_configs"]  # at its end
    artifacts = {a.path for a in client.list_artifacts(run_id, "export")}
    assert {"export/front.csv", "export/pareto.png"} <= artifacts
    cards = [a.path for a in client.list_artifacts(run_id, "export") if a.is_dir]
    assert cards and all(p.startswith("export/subnet_") for p in cards)


def test_tracking_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"tracking.mlflw is not a valid key"):
        ExperimentSpec.from_dict({"tracking": {"mlflw": True}})
    with pytest.raises(ConfigError, match=r"tracking.mlflow_uri='http://h:5000' is set but"):
        ExperimentSpec.from_dict({"tracking": {"mlflow_uri": "http://h:5000"}})
    assert ExperimentSpec.from_dict({}).tracking.mlflow is False
