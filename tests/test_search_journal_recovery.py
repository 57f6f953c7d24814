"""A corrupted Optuna journal never stops a resume: it is set aside and rebuilt from the store.

A real search (pymoo-nsga2 on the analytic problem) records into a journal; a garbage line or a
binary line is written into the middle of it; the resumed search warns once naming the set-aside
file, evaluates nothing again, and leaves a journal with every stored config once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import optuna
import pytest

from nas.results import ResultStore
from nas.search import MetricEvaluator, make_searcher, run_search
from nas.search.optuna_record import JournalSetAsideWarning, OptunaRecord, open_journal
from nas.subnet import SubnetConfig
from tests.test_search_problems import METRICS, analytic_problem, evaluate

BUDGET = 30
DAMAGE = {"garbage line": b"{this is not json\n", "binary line": b"\xff\xfe\x00\x9c\x80garbage\n"}


class _Counted:
    """The analytic metrics, counting the evaluations actually run."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, config: SubnetConfig) -> Mapping[str, float]:
        self.calls += 1
        return evaluate(config)


def _search(tmp: Path, warnings: list[str] | None) -> tuple[int, OptunaRecord]:
    """Run (or resume) the search on ``tmp``'s store and journal; evaluations run, the record."""
    problem = analytic_problem(constrained=True)
    warn = warnings.append if warnings is not None else None
    record = OptunaRecord(tmp / "optuna.journal", problem, study_name="run", warn=warn)
    counted = _Counted()
    run_search(
        make_searcher("pymoo-nsga2", problem, seed=5),
        MetricEvaluator(counted, METRICS),
        ResultStore(tmp / "store.jsonl"),
        budget=BUDGET,
        chunk_size=4,
        on_evaluated=record.add,
    )
    return counted.calls, record


def _damage(journal: Path, line: bytes) -> None:
    """Write ``line`` into the middle of ``journal`` (a torn last line is another matter)."""
    lines = journal.read_bytes().splitlines(keepends=True)
    middle = len(lines) // 2
    journal.write_bytes(b"".join([*lines[:middle], line, *lines[middle:]]))


def _keys(journal: Path) -> list[str]:
    study = optuna.load_study(study_name="run", storage=open_journal(journal))
    return [t.user_attrs["config_key"] for t in study.get_trials(deepcopy=False)]


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_corrupted_journal_is_set_aside_and_rebuilt_on_resume(
    tmp_path: Path, damage: str
) -> None:
    journal = tmp_path / "optuna.journal"
    calls, _ = _search(tmp_path, [])
    assert calls == BUDGET and len(_keys(journal)) == BUDGET
    _damage(journal, DAMAGE[damage])
    with pytest.raises((ValueError, UnicodeDecodeError)):
        open_journal(journal)  # what stopped the resume with a traceback before

    warnings: list[str] = []
    calls, record = _search(tmp_path, warnings)
    assert calls == 0  # nothing evaluated again: the store holds every result
    aside = tmp_path / "optuna.journal.corrupt-1"
    assert aside.is_file() and DAMAGE[damage] in aside.read_bytes()  # kept as it was
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert f"{journal} could not be read" in warnings[0] and str(aside) in warnings[0]
    stored = {e.config.key for e in ResultStore(tmp_path / "store.jsonl")}
    keys = _keys(journal)
    assert len(record) == len(keys) == len(set(keys)) == BUDGET and set(keys) == stored

    calls, _ = _search(tmp_path, warnings)  # the rebuilt journal resumes like any other
    assert calls == 0 and len(warnings) == 1 and len(_keys(journal)) == BUDGET


def test_a_second_corruption_takes_the_next_name_and_warns_by_default(tmp_path: Path) -> None:
    journal = tmp_path / "optuna.journal"
    _search(tmp_path, None)
    for n in (1, 2):
        _damage(journal, DAMAGE["garbage line"])
        with pytest.warns(JournalSetAsideWarning, match=f"optuna.journal.corrupt-{n}"):
            calls, _ = _search(tmp_path, None)
        assert calls == 0 and (tmp_path / f"optuna.journal.corrupt-{n}").is_file()
        assert len(_keys(journal)) == BUDGET
