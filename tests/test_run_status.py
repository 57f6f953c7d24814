"""`nas status` on a run directory: distinct subnets counted once, rounded, narrow tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

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
