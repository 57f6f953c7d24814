"""OptunaRecord: every searcher's evaluations land once in a journal study, across kills.

Run as a script (``python -m tests.test_search_record STORE JOURNAL BUDGET``) it searches the
analytic problem with pymoo-nsga2, recording into JOURNAL, one slow evaluation at a time.
"""

from __future__ import annotations

import logging
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

import search_spaces
from nas.errors import ConfigError
from nas.results import ResultStore
from nas.search import MetricEvaluator, Objective, SearchProblem, make_searcher, run_search
from nas.search.front import MeasuredSubnet
from nas.search.hv_history import write_history
from nas.search.optuna_record import (
    FIXED_PARAMS_ATTR,
    OptunaRecord,
    StudyRebuiltWarning,
    config_from_params,
    distributions,
    drop_legacy_study,
    fixed_params,
    open_journal,
    quiet_optuna,
    record_measured,
    record_measured_front,
)
from nas.search.optuna_search import OptunaSearcher
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
        "kernel": IntDistribution(3, 7, step=2),
        "op": CategoricalDistribution(("conv", "skip")),
        "resolution": IntDistribution(16, 64),
        "width": FloatDistribution(0.5, 1.5),
    }
    assert trial.params == dict(configs[0].items)


# -- distributions that hold exactly the space's choices -----------------------------------------
def _values(dist: optuna.distributions.BaseDistribution) -> set[object]:
    if isinstance(dist, CategoricalDistribution):
        return set(dist.choices)
    assert isinstance(dist, IntDistribution)
    return set(range(dist.low, dist.high + 1, dist.step))


def _fashion_problem() -> SearchProblem:
    """The default run's space: widths (8, 16, 24), seven ``bits`` dimensions fixed at 32."""
    space = search_spaces.get("fashion_cnn", bits=(32,))
    return SearchProblem.from_strings(space, ["top1:max", "latency_ms@cpu:min"])


def _fashion_rows(configs: list[SubnetConfig]) -> list[dict[str, float]]:
    """Synthetic but config-dependent values (only the record's bookkeeping is under test)."""
    rows = []
    for c in configs:
        size = sum(float(v) for k, v in c.items if k.endswith((".width", ".expand", ".depth")))
        rows.append({"top1": size / 100, "latency_ms@cpu": size / 10 + float(c["s0.b0.kernel"])})
    return rows


def test_distributions_hold_exactly_the_space_choices() -> None:
    space = SearchSpace(
        "kinds",
        (
            Choice("width", (8, 16, 24)),
            Choice("expand", (1, 2, 3)),
            Choice("kernel", (3, 7, 5)),  # an arithmetic progression out of order
            Choice("channels", (1, 2, 4)),  # not a progression
            Choice("ratio", (0.25, 0.5, 0.75)),  # floats: categories, exact
            Choice("bits", (32,)),
            Choice("op", (3, 5), ordered=False),
            Choice("act", ("relu", "gelu")),
            Numeric("resolution", 16, 64, integer=True),
        ),
    )
    dists = distributions(space)
    assert dists["width"] == IntDistribution(8, 24, step=8)
    assert dists["kernel"] == IntDistribution(3, 7, step=2)
    assert dists["channels"] == CategoricalDistribution((1, 2, 4))
    assert dists["ratio"] == CategoricalDistribution((0.25, 0.5, 0.75))
    assert dists["op"] == CategoricalDistribution((3, 5))
    assert "bits" not in dists and fixed_params(space) == {"bits": 32}
    for d in space.dims:
        if isinstance(d, Choice) and d.name in dists:
            assert _values(dists[d.name]) == set(d.options), d.name

    fashion = _fashion_problem().space
    dists = distributions(fashion)
    fixed = fixed_params(fashion)
    assert sorted(fixed) == sorted(d.name for d in fashion.dims if d.name.endswith(".bits"))
    assert len(fixed) == 7 and set(fixed.values()) == {32}
    assert set(dists) == set(fashion.names) - set(fixed)
    for name, dist in dists.items():
        assert _values(dist) == set(fashion.dim(name).options), name  # type: ignore[union-attr]


def _record_fashion(journal: Path, n: int = 40) -> tuple[SearchProblem, list[SubnetConfig]]:
    problem = _fashion_problem()
    configs = problem.space.sample_many(n, np.random.default_rng(0))
    OptunaRecord(journal, problem, study_name="run.search.predicted", source="predicted").add(
        0, configs, _fashion_rows(configs)
    )
    return problem, configs


def test_constant_dimensions_are_study_attributes_not_parameters(tmp_path: Path) -> None:
    problem, configs = _record_fashion(tmp_path / "j")
    study = optuna.load_study(
        study_name="run.search.predicted", storage=open_journal(tmp_path / "j")
    )
    fixed = fixed_params(problem.space)
    assert study.user_attrs[FIXED_PARAMS_ATTR] == fixed
    assert study.user_attrs["source"] == "predicted"
    by_key = {c.key: c for c in configs}
    for trial in study.trials:
        assert not set(trial.params) & set(fixed)
        assert trial.distributions == distributions(problem.space)
        config = by_key[trial.user_attrs["config_key"]]
        assert config_from_params(problem.space, trial.params) == problem.space.validate(config)


@pytest.mark.parametrize(
    "sampler",
    [
        lambda: optuna.samplers.TPESampler(seed=0, n_startup_trials=5),
        lambda: optuna.samplers.TPESampler(seed=0, multivariate=True, n_startup_trials=5),
        lambda: optuna.samplers.NSGAIISampler(seed=0, population_size=10),
        lambda: optuna.samplers.RandomSampler(seed=0),
    ],
    ids=["tpe", "tpe-multivariate", "nsga2", "random"],
)
def test_a_user_continuing_the_study_with_an_optuna_sampler_gets_only_valid_configs(
    tmp_path: Path, sampler: object
) -> None:
    _record_fashion(tmp_path / "j")
    space = search_spaces.get("fashion_cnn", bits=(32,))  # as a user rebuilds it
    study = optuna.load_study(
        study_name="run.search.predicted", storage=open_journal(tmp_path / "j")
    )
    study.sampler = sampler()  # type: ignore[operator]
    recorded = study.trials[0].distributions
    fixed = study.user_attrs[FIXED_PARAMS_ATTR]
    widths: set[object] = set()
    for _ in range(30):
        trial = study.ask(fixed_distributions=recorded)
        config = space.validate({**fixed, **trial.params})  # ConfigError on any invalid value
        widths.add(trial.params["s0.width"])
        study.tell(trial, list(_fashion_rows([config])[0].values()))
    assert widths <= {8, 16, 24}
    assert len(study.trials) == 40 + 30


def test_optimize_with_suggest_calls_from_the_recorded_distributions(tmp_path: Path) -> None:
    _record_fashion(tmp_path / "j")
    space = search_spaces.get("fashion_cnn", bits=(32,))
    study = optuna.load_study(
        study_name="run.search.predicted", storage=open_journal(tmp_path / "j")
    )
    study.sampler = optuna.samplers.TPESampler(seed=1, n_startup_trials=5)
    recorded = study.trials[0].distributions
    seen: list[SubnetConfig] = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        params: dict[str, object] = {}
        for name, dist in recorded.items():
            if isinstance(dist, IntDistribution):
                params[name] = trial.suggest_int(name, dist.low, dist.high, step=dist.step)
            else:
                assert isinstance(dist, CategoricalDistribution)
                params[name] = trial.suggest_categorical(name, dist.choices)  # type: ignore[arg-type]
        config = config_from_params(space, params)
        seen.append(config)
        row = _fashion_rows([config])[0]
        return row["top1"], row["latency_ms@cpu"]

    study.optimize(objective, n_trials=20)
    assert len(seen) == 20 and all(space.contains(c) for c in seen)


def test_the_measured_study_holds_every_distinct_measured_subnet(tmp_path: Path) -> None:
    problem = _fashion_problem()
    configs = problem.space.sample_many(30, np.random.default_rng(1))
    rows = _fashion_rows(configs)
    subnets = [MeasuredSubnet(c, r) for c, r in zip(configs, rows, strict=True)]
    subnets += subnets[:5]  # measured again (the front re-measured): one trial each
    subnets.append(MeasuredSubnet(configs[0], {"top1": 0.5}))  # no latency: not complete
    distinct = {s.config.key for s in subnets if "latency_ms@cpu" in s.metrics}
    n = record_measured(tmp_path / "j", problem, subnets, study_name="run.measured")
    assert n == len(distinct)
    assert record_measured(tmp_path / "j", problem, subnets, study_name="run.measured") == 0
    study = optuna.load_study(study_name="run.measured", storage=open_journal(tmp_path / "j"))
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.user_attrs["source"] == "measured"
    assert {t.user_attrs["config_key"] for t in study.trials} == distinct
    by_key = {c.key: r for c, r in zip(configs, rows, strict=True)}
    for t in study.trials:
        expected = by_key[t.user_attrs["config_key"]]
        assert t.values == pytest.approx([expected["top1"], expected["latency_ms@cpu"]])
        assert t.user_attrs["source"] == "measured"


def test_a_study_recorded_with_the_old_distributions_is_rebuilt(tmp_path: Path) -> None:
    problem = _fashion_problem()
    configs = problem.space.sample_many(5, np.random.default_rng(2))
    storage = open_journal(tmp_path / "j")
    with quiet_optuna():
        old = optuna.create_study(
            storage=storage, study_name="run.measured_front", directions=["maximize", "minimize"]
        )
    old_dists = {  # what earlier versions recorded: a width range, the constant bits
        d.name: IntDistribution(min(d.options), max(d.options))  # type: ignore[union-attr]
        for d in problem.space.dims
    }
    for c, row in zip(configs, _fashion_rows(configs), strict=True):
        old.add_trial(
            optuna.trial.create_trial(
                params=dict(c.items), distributions=old_dists, values=list(row.values())
            )
        )
    messages: list[str] = []
    record = OptunaRecord(
        tmp_path / "j", problem, study_name="run.measured_front", warn=messages.append
    )
    assert len(record) == 0 and len(messages) == 1
    assert "'run.measured_front'" in messages[0] and "rebuilt" in messages[0]
    assert record.add(None, configs, _fashion_rows(configs)) == 5
    study = optuna.load_study(
        study_name="run.measured_front", storage=open_journal(tmp_path / "j")
    )
    assert all(t.distributions == distributions(problem.space) for t in study.trials)
    assert len(study.trials) == 5
    with pytest.warns(StudyRebuiltWarning):  # default: a warning
        old_dists_study = optuna.create_study(
            storage=open_journal(tmp_path / "k"),
            study_name="s",
            directions=["maximize", "minimize"],
        )
        old_dists_study.add_trial(
            optuna.trial.create_trial(
                params=dict(configs[0].items), distributions=old_dists, values=[0.1, 1.0]
            )
        )
        OptunaRecord(tmp_path / "k", problem, study_name="s")


def test_the_run_named_study_of_earlier_versions_is_dropped(tmp_path: Path) -> None:
    problem, _ = _record_fashion(tmp_path / "j")
    OptunaRecord(tmp_path / "j", problem, study_name="run", source="predicted")  # old name
    with quiet_optuna():
        optuna.create_study(storage=open_journal(tmp_path / "j"), study_name="mine")
    assert drop_legacy_study(tmp_path / "j", "run", problem)
    assert not drop_legacy_study(tmp_path / "j", "run", problem)  # gone
    assert not drop_legacy_study(tmp_path / "j", "mine", problem)  # not a record: kept
    names = {s.study_name for s in open_journal(tmp_path / "j").get_all_studies()}
    assert names == {"run.search.predicted", "mine"}


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_studies_the_platform_creates_log_no_info_line(tmp_path: Path) -> None:
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    handler = _Lines()
    optuna.logging.get_logger("optuna").addHandler(handler)
    try:
        problem = analytic_problem()
        OptunaRecord(tmp_path / "j", problem, study_name="run")
        OptunaSearcher(problem, seed=0)
        assert not [line for line in handler.lines if "A new study created" in line]
        assert optuna.logging.get_verbosity() == optuna.logging.INFO  # the user's, restored
        with quiet_optuna():
            optuna.logging.get_logger("optuna").warning("a warning of the user's")
        assert handler.lines[-1] == "a warning of the user's"
        optuna.create_study()  # a study of the user's own still says so
        assert "A new study created" in handler.lines[-1]
    finally:
        optuna.logging.get_logger("optuna").removeHandler(handler)
        optuna.logging.set_verbosity(before)


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
