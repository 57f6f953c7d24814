"""Resume after SIGKILL: a real search process is killed mid-run and restarted on its store.

Run as a script (``python -m tests.test_search_resume STORE LOG NAME BUDGET SEED OUT``) it searches
the analytic problem, appending one line to LOG per real evaluation, and writes the result CSV
to OUT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from nas.results import ResultStore
from nas.search import MetricEvaluator, make_searcher, run_search
from nas.subnet import SubnetConfig
from tests.test_search_problems import METRICS, analytic_problem, evaluate

REPO = Path(__file__).resolve().parents[1]
BUDGET = 60
KILL_AFTER = 20


class _LoggedEvaluate:
    """Evaluates and appends the config key to a log, durably, per call."""

    def __init__(self, log: Path, delay: float) -> None:
        self.log = log
        self.delay = delay

    def __call__(self, config: SubnetConfig) -> dict[str, float]:
        time.sleep(self.delay)
        out = dict(evaluate(config))
        with open(self.log, "a") as fh:
            fh.write(config.key + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return out


def main(argv: list[str]) -> None:
    store_path, log, name, budget, seed, out = argv
    problem = analytic_problem(constrained=True)
    searcher = make_searcher(name, problem, seed=int(seed))
    evaluator = MetricEvaluator(_LoggedEvaluate(Path(log), delay=0.05), METRICS)
    result = run_search(
        searcher, evaluator, ResultStore(store_path), budget=int(budget), chunk_size=1
    )
    result.to_csv(out)


def _run(tmp: Path, tag: str, store: Path, name: str) -> subprocess.Popen[bytes]:
    args = [str(store), str(tmp / f"{tag}.log"), name, str(BUDGET), "7", str(tmp / f"{tag}.csv")]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.test_search_resume", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", ["pymoo-nsga2", "optuna-nsga2", "surrogate"])
def test_sigkill_resume_equals_uninterrupted(tmp_path: Path, name: str) -> None:
    store = tmp_path / "killed.jsonl"
    proc = _run(tmp_path, "killed", store, name)
    deadline = time.monotonic() + 120
    while len(_lines(tmp_path / "killed.log")) < KILL_AFTER:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stored_keys = {e.config.key for e in ResultStore(store)}
    # the kill may land between an evaluation's log line and its store append: that one is
    # not finished and may run again
    assert KILL_AFTER - 1 <= len(stored_keys) < BUDGET

    resumed = _run(tmp_path, "resumed", store, name)
    clean = _run(tmp_path, "clean", tmp_path / "clean.jsonl", name)
    for p in (resumed, clean):
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()

    resumed_calls = _lines(tmp_path / "resumed.log")
    clean_calls = _lines(tmp_path / "clean.log")
    assert len(clean_calls) == BUDGET
    # no evaluation that finished (reached the store) before the kill ran again
    assert not set(resumed_calls) & stored_keys
    assert len(resumed_calls) == BUDGET - len(stored_keys)
    front = pd.read_csv(tmp_path / "resumed.csv")
    expected = pd.read_csv(tmp_path / "clean.csv")
    pd.testing.assert_frame_equal(
        front.drop(columns="replayed"), expected.drop(columns="replayed")
    )
    assert sorted(front.loc[front.on_front, "config_key"]) == sorted(
        expected.loc[expected.on_front, "config_key"]
    )


def test_interrupted_by_exception_resumes_without_repeats(tmp_path: Path) -> None:
    problem = analytic_problem()
    calls: list[str] = []

    class Boom(RuntimeError):
        pass

    def failing(cfg: SubnetConfig) -> dict[str, float]:
        if len(calls) == 17:
            raise Boom
        calls.append(cfg.key)
        return dict(evaluate(cfg))

    store = ResultStore(tmp_path / "r.jsonl")
    with pytest.raises(Boom):
        run_search(
            make_searcher("pymoo-nsga2", problem, seed=2),
            MetricEvaluator(failing, METRICS),
            store,
            budget=50,
            chunk_size=1,
        )
    assert len(ResultStore(tmp_path / "r.jsonl")) > 0
    before = list(calls)
    calls.clear()
    ok = MetricEvaluator(lambda c: calls.append(c.key) or dict(evaluate(c)), METRICS)
    resumed = run_search(
        make_searcher("pymoo-nsga2", problem, seed=2),
        ok,
        ResultStore(tmp_path / "r.jsonl"),
        budget=50,
    )
    calls_resumed = list(calls)
    calls.clear()
    clean = run_search(make_searcher("pymoo-nsga2", problem, seed=2), ok, ResultStore(), budget=50)
    assert [c.key for c in resumed.configs] == [c.key for c in clean.configs]
    assert not set(before) & set(calls_resumed)
    assert len(before) + len(calls_resumed) == 50


if __name__ == "__main__":
    main(sys.argv[1:])
