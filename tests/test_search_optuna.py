"""OptunaSearcher with Optuna's journal storage: same asks as in memory, trials on disk."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

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
