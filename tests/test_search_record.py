"""OptunaRecord: every searcher's evaluations land once in a journal study, across kills.

Run as a script (``python -m tests.test_search_record STORE JOURNAL BUDGET``) it searches the
analytic problem with pymoo-nsga2, recording into JOURNAL, one slow evaluation at a time.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from matplotlib.image import imread
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from nas.errors import ConfigError
from nas.results import ResultStore
from nas.search import MetricEvaluator, Objective, SearchProblem, make_searcher, run_search
from nas.search.hv_history import write_history
from nas.search.optuna_record import OptunaRecord, open_journal, record_measured_front
from nas.space import Choice, Numeric, SearchSpace
from nas.subnet import SubnetConfig
from tests.test_search_problems import METRICS, analytic_problem, evaluate, evaluator

REPO = Path(__file__).resolve().parents[1]


def _trials(journal: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=open_journal(journal))
    return study.get_trials(deepcopy=False)


@pytest.mark.parametrize("name", ["pymoo-nsga2", "optuna-nsga2", "random"])
def test_each_evaluation_is_one_completed_trial(tmp_path: Path, name: str) -> None:
    problem = analytic_problem(constrained=True)
    journal = tmp_path / "optuna.journal"
    record = OptunaRecord(journal, problem, study_name="run", source="predicted")
    result = run_search(
        make_searcher(name, problem, seed=3),
        evaluator(),
        ResultStore(),
        budget=40,
        chunk_size=4,
        on_evaluated=record.add,
    )
    study = optuna.load_study(study_name="run", storage=open_journal(journal))
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["quality", "cost_ms@toy"]
    trials = study.get_trials(deepcopy=False)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    frame = result.to_frame().set_index("config_key")
    assert sorted(t.user_attrs["config_key"] for t in trials) == sorted(frame.index)
    for t in trials:
        row = frame.loc[t.user_attrs["config_key"]]
        assert t.values == pytest.approx([row["quality"], row["cost_ms@toy"]])
        assert t.params == {k.removeprefix("cfg."): row[k] for k in row.index if "cfg." in k}
        assert t.user_attrs["source"] == "predicted"
        assert t.user_attrs["step"] == row["step"]
        assert t.user_attrs["feasible"] == row["feasible"]
        assert t.constraints == {"0": pytest.approx(row["cost_ms@toy"] - 0.5)}
    assert study.user_attrs["constraints"] == ["cost_ms@toy<=0.5"]


def test_resume_adds_only_what_is_new(tmp_path: Path) -> None:
    problem = analytic_problem()
    journal, store = tmp_path / "optuna.journal", tmp_path / "store.jsonl"

    def search(budget: int) -> int:
        record = OptunaRecord(journal, problem, study_name="run")
        run_search(
            make_searcher("pymoo-nsga2", problem, seed=1),
            evaluator(),
            ResultStore(store),
            budget=budget,
            on_evaluated=record.add,
        )
        return len(record)

    assert search(30) == 30
    assert search(50) == 50  # replays the first 30 from the store, adds 20
    assert search(50) == 50
    keys = [t.user_attrs["config_key"] for t in _trials(journal, "run")]
    assert len(keys) == len(set(keys)) == 50


def test_numeric_dimensions_are_recorded_as_numbers(tmp_path: Path) -> None:
    space = SearchSpace(
        "mixed",
        (
            Choice("kernel", (3, 5, 7)),
            Choice("op", ("conv", "skip"), ordered=False),
            Numeric("resolution", 16, 64, integer=True),
            Numeric("width", 0.5, 1.5),
        ),
    )
    problem = SearchProblem.from_strings(space, ["top1:max", "latency_ms:min"])
    configs = space.sample_many(20, np.random.default_rng(0))
    rows = [{"top1": float(c["width"]), "latency_ms": float(c["resolution"])} for c in configs]
    record = OptunaRecord(tmp_path / "j", problem, study_name="run")
    assert record.add(0, configs, rows) == len({c.key for c in configs})
    trial = _trials(tmp_path / "j", "run")[0]
    assert trial.distributions == {
        "kernel": IntDistribution(3, 7),
        "op": CategoricalDistribution(("conv", "skip")),
        "resolution": IntDistribution(16, 64),
        "width": FloatDistribution(0.5, 1.5),
    }
    assert trial.params == dict(configs[0].items)


def test_other_objectives_in_the_same_study_are_refused(tmp_path: Path) -> None:
    problem = analytic_problem()
    OptunaRecord(tmp_path / "j", problem, study_name="run")
    flipped = SearchProblem(
        problem.space, (Objective("quality", None, "min"), Objective("cost_ms", "toy", "min"))
    )
    with pytest.raises(ConfigError, match=r"'run'.*use another study name"):
        OptunaRecord(tmp_path / "j", flipped, study_name="run")
    OptunaRecord(tmp_path / "j", flipped, study_name="other")  # a second study in the file


def test_a_cut_last_line_is_dropped_on_open(tmp_path: Path) -> None:
    problem = analytic_problem()
    journal = tmp_path / "optuna.journal"
    record = OptunaRecord(journal, problem, study_name="run")
    configs = problem.space.enumerate()[:3]
    record.add(0, configs, [evaluate(c) for c in configs])
    with journal.open("ab") as fh:
        fh.write(b'{"op_code":5,"worker_id":"x","study_id":0,"dat')  # a write cut by a kill
    more = problem.space.enumerate()[:5]
    assert (
        OptunaRecord(journal, problem, study_name="run").add(1, more, [evaluate(c) for c in more])
        == 2
    )
    assert len(_trials(journal, "run")) == 5


_FILLS_THE_LIMIT = """
import resource, signal, sys
from nas.errors import StorageError
from nas.space import Choice, Numeric, SearchSpace
from nas.search.optuna_record import OptunaRecord
from tests.test_search_problems import analytic_problem, evaluate

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
problem = analytic_problem()
record = OptunaRecord(sys.argv[1], problem, study_name="run")
try:
    for i, config in enumerate(problem.space.enumerate()):
        record.add(i, [config], [evaluate(config)])
except StorageError as exc:
    print(f"{len(record)}|{exc}", flush=True)
"""


def test_a_write_past_the_file_size_limit_is_one_error_and_undone(tmp_path: Path) -> None:
    journal = tmp_path / "optuna.journal"
    args = [sys.executable, "-c", _FILLS_THE_LIMIT, str(journal), "40000"]
    out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    n, message = out.stdout.strip().split("|")
    assert f"could not append to {journal}: File too large" in message
    assert journal.stat().st_size <= 40000 and journal.read_bytes().endswith(b"\n")
    assert len(_trials(journal, "run")) == int(n) > 0  # every trial before the failure


def test_measured_front_is_its_own_study(tmp_path: Path) -> None:
    problem = analytic_problem()
    result = run_search(
        make_searcher("random", problem, seed=0), evaluator(), ResultStore(), budget=30
    )
    rows = [evaluate(c) for c in result.front_configs]
    front = pd.DataFrame([{f"{k}.measured": r[k] for k in problem.metric_keys} for r in rows])
    n = record_measured_front(tmp_path / "j", result, front, study_name="run.measured_front")
    assert n == len(result.front) > 0
    trials = _trials(tmp_path / "j", "run.measured_front")
    assert {t.user_attrs["source"] for t in trials} == {"measured"}


def test_history_states_its_reference_point(tmp_path: Path) -> None:
    problem = analytic_problem()
    result = run_search(
        make_searcher("pymoo-nsga2", problem, seed=0), evaluator(), ResultStore(), budget=60
    )
    write_history(result, tmp_path)
    history = pd.read_csv(tmp_path / "history.csv")
    reference = problem.from_minimised(result.reference_point)
    assert history["ref.quality"].unique().tolist() == pytest.approx([reference[0]])
    assert history["ref.cost_ms@toy"].unique().tolist() == pytest.approx([reference[1]])
    assert history["hypervolume"].is_monotonic_increasing
    image = imread(tmp_path / "history.png")
    assert image.shape[0] > 200 and float(np.std(image)) > 0.05


# -- a search killed while it records ------------------------------------------------------------
def _slow(config: SubnetConfig) -> dict[str, float]:
    time.sleep(0.03)
    return dict(evaluate(config))


def main(argv: list[str]) -> None:
    store, journal, budget = argv
    problem = analytic_problem(constrained=True)
    record = OptunaRecord(journal, problem, study_name="run", source="predicted")
    run_search(
        make_searcher("pymoo-nsga2", problem, seed=5),
        MetricEvaluator(_slow, METRICS),
        ResultStore(store),
        budget=int(budget),
        chunk_size=1,
        on_evaluated=record.add,
    )


def _start(tmp: Path, budget: int) -> subprocess.Popen[bytes]:
    args = [str(tmp / "store.jsonl"), str(tmp / "optuna.journal"), str(budget)]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.test_search_record", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.timeout(90)
def test_sigkill_while_recording_then_resume_records_each_config_once(tmp_path: Path) -> None:
    budget = 60
    journal = tmp_path / "optuna.journal"
    proc = _start(tmp_path, budget)
    deadline = time.monotonic() + 60
    while not journal.exists() or journal.read_bytes().count(b"\n") < 25:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(_trials(journal, "run"))
    assert 0 < killed_at < budget
    resumed = _start(tmp_path, budget)
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err.decode()
    keys = [t.user_attrs["config_key"] for t in _trials(journal, "run")]
    stored = {e.config.key for e in ResultStore(tmp_path / "store.jsonl")}
    assert len(keys) == len(set(keys)) == budget
    assert set(keys) == stored


if __name__ == "__main__":
    main(sys.argv[1:])
