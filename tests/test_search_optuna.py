"""OptunaSearcher: journal storage equals in memory; GP asks replay and hand over to TPE."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from nas.errors import ConfigError
from nas.search import OptunaSearcher, ResultStore, run_search
from tests.test_search_problems import analytic_problem, evaluator


def test_journal_storage_matches_in_memory_and_logs_trials(tmp_path: Path) -> None:
    problem = analytic_problem(constrained=True)
    journal = str(tmp_path / "study.log")
    on_disk = OptunaSearcher(
        problem,
        seed=1,
        storage=JournalStorage(JournalFileBackend(journal)),
        study_name="nb",
    )
    a = run_search(on_disk, evaluator(), ResultStore(), budget=30)
    b = run_search(OptunaSearcher(problem, seed=1), evaluator(), ResultStore(), budget=30)
    assert [c.key for c in a.configs] == [c.key for c in b.configs]
    loaded = optuna.load_study(
        study_name="nb", storage=JournalStorage(JournalFileBackend(journal))
    )
    done = [t for t in loaded.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) >= 30
    assert all(len(t.constraints) == 1 for t in done)


def test_gp_hands_over_to_tpe_and_replays_the_same_asks() -> None:
    problem = analytic_problem(constrained=True)
    searcher = OptunaSearcher(problem, algorithm="gp", seed=3, gp_trials=12, gp_startup_trials=4)
    assert isinstance(searcher.study.sampler, optuna.samplers.GPSampler)
    first = run_search(searcher, evaluator(), ResultStore(), budget=12)
    assert isinstance(searcher.study.sampler, optuna.samplers.GPSampler)
    longer = run_search(
        OptunaSearcher(problem, algorithm="gp", seed=3, gp_trials=12, gp_startup_trials=4),
        evaluator(),
        ResultStore(),
        budget=16,
    )
    # the GP asks are a deterministic function of seed and told values
    assert [c.key for c in longer.configs[:12]] == [c.key for c in first.configs]
    again = OptunaSearcher(problem, algorithm="gp", seed=3, gp_trials=12, gp_startup_trials=4)
    run_search(again, evaluator(), ResultStore(), budget=16)
    assert isinstance(again.study.sampler, optuna.samplers.TPESampler)
    # the GP saw the constraint of every trial (constrained log-EHVI)
    assert all(len(t.constraints) == 1 for t in again.study.trials)


def test_gp_trials_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="gp_trials"):
        OptunaSearcher(analytic_problem(), algorithm="gp", gp_trials=0)
