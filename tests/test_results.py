from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from nas.errors import ConfigError
from nas.results import Evaluation, ResultStore
from nas.subnet import SubnetConfig

ROOT = Path(__file__).resolve().parents[1]

WRITER = """
import sys
from nas.results import Evaluation, ResultStore
from nas.subnet import SubnetConfig
store = ResultStore(sys.argv[1])
pad = {f"m{j}": float(j) for j in range(400)}  # ~8 kB records: a kill often lands mid-write
i = 0
while True:
    store.append(Evaluation(SubnetConfig.from_dict({"i": i}), "cpu_fp32", {"i": float(i), **pad}))
    print(i, flush=True)
    i += 1
"""


def _ev(i: int, target: str = "cpu_fp32", **metrics: float) -> Evaluation:
    return Evaluation(SubnetConfig.from_dict({"i": i}), target, {"i": float(i), **metrics})


def test_append_reload_and_frame(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    store = ResultStore(path)
    store.extend([_ev(0, latency_ms=1.0), _ev(1, latency_ms=2.0), _ev(0, "ort_int8")])
    reloaded = ResultStore(path)
    assert len(reloaded) == 3
    frame = reloaded.to_frame()
    assert set(frame["target"]) == {"cpu_fp32", "ort_int8"}
    assert {"config_key", "source", "timestamp", "cfg.i", "latency_ms"} <= set(frame.columns)
    assert reloaded.get(SubnetConfig.from_dict({"i": 1}), "cpu_fp32").metrics["latency_ms"] == 2.0
    assert (SubnetConfig.from_dict({"i": 0}), "ort_int8") in reloaded
    assert (SubnetConfig.from_dict({"i": 5}), "ort_int8") not in reloaded


def test_dedup_by_config_and_target_last_write_wins(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    store = ResultStore(path)
    store.append(_ev(0, latency_ms=1.0))
    store.append(_ev(0, latency_ms=3.0))
    for s in (store, ResultStore(path)):
        assert len(s) == 1
        assert s.evaluations(target="cpu_fp32")[0].metrics["latency_ms"] == 3.0
        assert len(s.to_frame()) == 1
    assert path.read_text().count("\n") == 2  # history kept on disk


def test_measured_and_predicted_are_kept_apart(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.jsonl")
    cfg = SubnetConfig.from_dict({"i": 0})
    store.append(Evaluation(cfg, "cpu_fp32", {"latency_ms": 1.0}, source="predicted"))
    assert (cfg, "cpu_fp32") not in store  # only measured records count as done
    store.append(Evaluation(cfg, "cpu_fp32", {"latency_ms": 1.2}))
    assert len(store.evaluations(source="predicted")) == 1
    assert store.get(cfg, "cpu_fp32").metrics["latency_ms"] == 1.2
    with pytest.raises(ConfigError, match="source"):
        Evaluation(cfg, "cpu_fp32", {}, source="guessed")  # type: ignore[arg-type]


def test_torn_last_line_is_skipped_with_warning_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    ResultStore(path).extend([_ev(0), _ev(1)])
    with open(path, "ab") as fh:
        fh.write(b'{"config_key":"abc","config":{"i":2},"tar')
    with pytest.warns(RuntimeWarning, match="torn"):
        store = ResultStore(path)
    assert len(store) == 2
    store.append(_ev(3))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(line.endswith("}") for line in lines)
    assert len(ResultStore(path)) == 3


def test_corrupt_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    ResultStore(path).append(_ev(0))
    with open(path, "ab") as fh:
        fh.write(b"not json\n")
    with pytest.warns(RuntimeWarning, match="torn"):
        ResultStore(path)  # a bad *last* line is treated as torn and skipped
    with open(path, "ab") as fh:
        fh.write(b'{"i": 1}\n')
    with pytest.raises(ConfigError, match=":2"):
        ResultStore(path)


def test_sigkill_mid_run_loses_no_acknowledged_record(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    acknowledged: list[int] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        acknowledged.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert len(acknowledged) == 40
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a torn tail is expected, not required
        store = ResultStore(path)
    found = {int(e.metrics["i"]) for e in store}
    assert set(acknowledged) <= found
    assert found == set(range(len(found)))  # nothing earlier lost, no gaps
    store.append(_ev(10_000))  # the store stays writable after the crash
    assert len(ResultStore(path)) == len(found) + 1
