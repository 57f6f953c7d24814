"""`nas stop`: a live run ends at a clean point, and `nas run` resumes it without losing work.

Real processes: the run is a `nas run` subprocess on its own local Ray instance; the stop is
`nas stop RUN --wait` from another process. It is stopped once in training (after an epoch's
checkpoint) and once in the measure stage (after a stored measurement), then run to the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from nas.cli import main
from tests.test_pipeline import local_ray_env, nas_command, write_spec

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 6

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _wait_for(condition: object, process: subprocess.Popen[str], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if process.poll() is not None:
            raise AssertionError(f"the run ended first:\n{process.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.2)


def _stop(run: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nas", "stop", str(run), "--wait"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _records(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.timeout(1200)
def test_a_stopped_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    run = tmp_path / "run"
    spec = write_spec(tmp_path, output_dir=run)
    spec.write_text(spec.read_text().replace("epochs = 2", f"epochs = {EPOCHS}"))
    metrics = run / "train" / "metrics.csv"

    first = subprocess.Popen(
        nas_command(spec), cwd=REPO, env=local_ray_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for(lambda: _records(metrics) >= 2, first)  # header and one epoch
    stopped = _stop(run)
    assert stopped.returncode == 0, stopped.stderr
    assert "stop requested" in stopped.stdout and stopped.stdout.rstrip().endswith("stopped")
    _, err = first.communicate(timeout=300)
    assert first.returncode == 3, err[-3000:]
    line = next(x for x in err.splitlines() if x.startswith("stopped: "))
    assert "in [train] after epoch" in line and f"of {EPOCHS}" in line
    epochs_before = len(pd.read_csv(metrics))
    assert 1 <= epochs_before < EPOCHS
    assert not (run / "train" / "DONE.json").exists()

    measured = run / "measure" / "results.jsonl"
    second = subprocess.Popen(
        nas_command(spec), cwd=REPO, env=local_ray_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for(lambda: _records(measured) >= 3, second)
    assert _stop(run).returncode == 0
    _, err = second.communicate(timeout=300)
    assert second.returncode == 3, err[-3000:]
    assert "stopped: " in err and "in [measure]" in err
    trained = pd.read_csv(metrics)
    assert trained["epoch"].tolist() == list(range(EPOCHS))  # resumed: no epoch trained twice
    kept = _records(measured)
    assert kept >= 3 and not (run / "measure" / "DONE.json").exists()

    last = subprocess.run(  # to the end of the stage that was stopped
        [sys.executable, "-m", "nas", "measure", str(spec)], cwd=REPO, env=local_ray_env(),
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert last.returncode == 0, last.stderr[-3000:]
    assert (run / "measure" / "DONE.json").exists()
    records = [json.loads(x) for x in measured.read_text().splitlines()]
    keys = [(r["config_key"], r["target"]) for r in records]
    assert len(keys) == len(set(keys))  # nothing measured twice: the stored work was kept
    assert not (run / ".nas-stop").exists()


def test_stop_needs_a_live_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "spec.json").write_text("{}")
    assert main(["stop", str(tmp_path)]) == 2
    assert "has no live run (nothing to stop)" in capsys.readouterr().err
    assert not (tmp_path / ".nas-stop").exists()
