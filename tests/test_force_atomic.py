"""``--force`` supersedes all of its stages or, after a kill, a rerun completes what it began."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nas.errors import ConfigError
from nas.pipeline import run_dir
from nas.pipeline.run_dir import (
    STAGE_ORDER,
    SUPERSEDED_DIR,
    SUPERSEDING_FILE,
    finish_superseding,
    outdated_by,
    supersede,
)


def _finished_run(root: Path, times: dict[str, float] | None = None) -> None:
    for i, stage in enumerate(STAGE_ORDER):
        (root / stage).mkdir(parents=True)
        at = (times or {}).get(stage, 100.0 + i)
        (root / stage / "DONE.json").write_text(json.dumps({"finished_at": at}))


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs in the process."""


def test_a_force_killed_between_its_moves_is_completed_by_the_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _finished_run(tmp_path)
    real_replace = os.replace
    moves: list[str] = []

    def replace_then_die(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        if Path(src).is_dir():  # a stage folder's move (files are written by rename too)
            if moves:
                raise Killed
            moves.append(str(src))
        real_replace(src, dst)

    monkeypatch.setattr(run_dir.os, "replace", replace_then_die)
    with pytest.raises(Killed):
        supersede(tmp_path, list(STAGE_ORDER))
    monkeypatch.setattr(run_dir.os, "replace", real_replace)
    assert (tmp_path / SUPERSEDING_FILE).exists()  # the plan outlives the kill
    assert not (tmp_path / "train").exists() and (tmp_path / "export").exists()  # half moved

    target = finish_superseding(tmp_path)
    assert target is not None and target.parent.name == SUPERSEDED_DIR
    assert sorted(p.name for p in target.iterdir()) == sorted(STAGE_ORDER)
    assert not any((tmp_path / s).exists() for s in STAGE_ORDER)
    assert not (tmp_path / SUPERSEDING_FILE).exists()
    assert finish_superseding(tmp_path) is None  # nothing left to do


def test_a_plan_aiming_outside_superseded_is_refused(tmp_path: Path) -> None:
    _finished_run(tmp_path)
    (tmp_path / SUPERSEDING_FILE).write_text(json.dumps({"stages": ["train"], "target": ".."}))
    with pytest.raises(ConfigError, match="not under superseded/"):
        finish_superseding(tmp_path)
    assert (tmp_path / "train").exists()
    (tmp_path / SUPERSEDING_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable plan"):
        finish_superseding(tmp_path)


def test_a_stage_finished_before_an_earlier_one_was_redone_is_outdated(tmp_path: Path) -> None:
    _finished_run(tmp_path, {"train": 500.0})  # train redone after everything else
    assert [outdated_by(tmp_path, s) for s in STAGE_ORDER] == [None] + ["train"] * 4
    fresh = tmp_path / "fresh"
    _finished_run(fresh)
    assert [outdated_by(fresh, s) for s in STAGE_ORDER] == [None] * 5
