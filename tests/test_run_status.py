"""`nas status` on a run directory: distinct subnets counted once, rounded, narrow tables."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas.cli import main
from nas.pipeline.run_dir import RunLock
from nas.pipeline.run_status import format_status, run_status
from nas.results import Evaluation, ResultStore
from nas.subnet import SubnetConfig


def _run_dir(tmp_path: Path) -> Path:
    root = tmp_path / "run"
    (root / "measure").mkdir(parents=True)
    (root / "search").mkdir()
    (root / "export").mkdir()
    (root / "spec.json").write_text(json.dumps({"name": "tiny"}))
    configs = [SubnetConfig.from_dict({"w": w}) for w in (8, 16, 24)]
    measured = ResultStore(root / "measure" / "results.jsonl")
    for config in configs:  # every subnet on two targets, one of them measured twice
        measured.append(Evaluation(config, "any", {"macs_m": 1.0}))
        measured.append(Evaluation(config, "cpu", {"latency_ms@cpu": 2.0}))
    measured.append(Evaluation(configs[0], "cpu", {"latency_ms@cpu": 2.1}))
    predicted = ResultStore(root / "search" / "predicted.jsonl")
    for config in configs[:2]:
        for target in ("any", "cpu"):
            predicted.append(Evaluation(config, target, {"top1": 80.0}, source="predicted"))
    with open(root / "search" / "history.csv", "w", newline="") as fh:
        fh.write("step,n_evals,hypervolume,ref.top1\n0,2,76.00481922177184,80.8686513076794\n")
    columns = [
        "subnet", "config_key", "top1.measured", "model_size_bytes.measured",
        "latency_ms@cpu.measured", "top1_test.measured", "top1_test@cpu.measured",
        "top1_test@int8.measured", "top1.predicted",
    ]  # fmt: skip
    rows = [
        ["subnet_00", "k0", "83.42500000000001", "249768.0", "16.1377185", "86.91", "86.91",
         "86.5", "83.4"],
        ["subnet_01", "k1", "80.1", "1000.0", "", "85.0", "85.0", "nan", "80.0"],
    ]  # fmt: skip
    with open(root / "export" / "front.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([columns, *rows])
    return root


def test_counts_are_distinct_subnets_not_records(tmp_path: Path) -> None:
    status = run_status(_run_dir(tmp_path))
    assert status["measured_subnets"] == 3
    assert status["measured"] == {"any": 3, "cpu": 3}
    assert status["searched"] == 2  # two configs, each with a record per target


def test_text_is_rounded_narrow_and_marks_missing_values(tmp_path: Path) -> None:
    text = format_status(run_status(_run_dir(tmp_path)))
    assert "measured subnets: 3 (per target: any 3, cpu 3)" in text
    assert "searched subnets (predicted values): 2" in text
    assert "hypervolume 76, ref.top1 80.87" in text
    assert "83.43" in text and "83.42500000000001" not in text
    assert "249.8" in text  # size in kB
    assert max(len(line) for line in text.splitlines()) <= 120
    header = next(line for line in text.splitlines() if line.strip().startswith("subnet "))
    shown = ["subnet", "top1", "size_kB", "latency_ms@cpu", "top1_test", "top1_test@int8"]
    assert header.split() == shown  # top1_test@cpu repeats top1_test everywhere: left out
    last = text.splitlines()[-1].split()
    assert last[0] == "subnet_01" and last.count("–") == 2  # no latency, nan accuracy


def _training_run(tmp_path: Path, epochs_done: int) -> Path:
    root = tmp_path / "live"
    (root / "train").mkdir(parents=True)
    spec = {"name": "live", "train": {"options": {"epochs": 6}}}
    (root / "spec.json").write_text(json.dumps(spec))
    (root / "train" / "INPUTS.json").write_text("{}")
    with open(root / "train" / "metrics.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", "loss_largest", "top1_largest", "lr"])
        writer.writerows([e, 0.5 / (e + 1), 80 + e, 0.1] for e in range(epochs_done))
    return root


REPO = Path(__file__).resolve().parents[1]


def test_progress_of_a_started_stage(tmp_path: Path) -> None:
    root = _training_run(tmp_path, epochs_done=2)
    status = run_status(root)
    progress = status["progress"]
    assert (progress["stage"], progress["done"], progress["total"]) == ("train", 2, 6)
    assert progress["eta_s"] is None  # interrupted (no live run): no ETA
    assert progress["latest"]["top1_largest"] == 81.0
    text = format_status(status)
    assert "progress: train 2/6 epochs (33%)" in text
    assert "last epoch: epoch 1, loss_largest 0.25, top1_largest 81" in text
    with RunLock(root):
        from nas.pipeline.run_status import stage_progress

        live = run_status(root)
        started = (root / "train" / "INPUTS.json").stat().st_mtime
        again = stage_progress(root, json.loads((root / "spec.json").read_text()),
                               live["stages"], 0, 0, now=started + 60)  # fmt: skip
    assert live["stages"]["train"]["state"] == "in flight"
    assert again is not None and again["eta_s"] == 120.0  # 2 epochs a minute, 4 to go


def test_watch_refreshes_while_live_and_ends_with_the_run(tmp_path: Path) -> None:
    root = _training_run(tmp_path, epochs_done=1)
    command = [sys.executable, "-m", "nas", "status", str(root), "--watch", "0.2"]
    with RunLock(root):
        watcher = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
        time.sleep(3.0)
    out, _ = watcher.communicate(timeout=60)
    assert watcher.returncode == 0
    views = out.count("run ")
    assert views >= 2, out  # refreshed while the lock was held, then one last view
    live_lines = [line for line in out.splitlines() if line.startswith("  live: ")]
    assert live_lines[0].startswith("  live: PID ") and live_lines[-1] == "  live: no"
    assert "\x1b" not in out  # not a terminal: no screen control codes
    assert run_status(root)["running"] is None


def test_watch_takes_only_a_positive_interval(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", ".", "--watch", "0"]) == 2
    assert "--watch=0.0 must be a positive number of seconds" in capsys.readouterr().err
