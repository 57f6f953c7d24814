"""`nas compare`: fronts of several runs scored with one reference point; what differs is named."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from nas.cli import main
from nas.errors import ConfigError
from nas.pareto import hypervolume
from nas.pipeline.compare import compare_runs, format_comparison, plot_comparison

OBJECTIVES = ["top1:max", "latency_ms@cpu:min"]


def _run(root: Path, points: list[tuple[float, float]], **spec: object) -> Path:
    (root / "export").mkdir(parents=True)
    body = {"name": root.name, "seed": 0, "search": {"objectives": OBJECTIVES}, "train": {}}
    (root / "spec.json").write_text(json.dumps(body | spec))
    with open(root / "export" / "front.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["subnet", "top1.measured", "latency_ms@cpu.measured"])
        writer.writerows([f"s{i}", a, ms] for i, (a, ms) in enumerate(points))
    return root


def test_one_reference_point_scores_every_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # runs named as a user names them: runs/a, runs/b
    a = _run(Path("runs/a"), [(80.0, 2.0), (85.0, 4.0)])
    b = _run(Path("runs/b"), [(82.0, 2.0), (86.0, 4.0)], seed=1, train={"epochs": 12})
    result = compare_runs([a, b])
    # the union's nadir (80 %, 4 ms) pushed out by 10 % of the range (6 pp, 2 ms)
    assert result["reference_point"] == pytest.approx([79.4, 4.2])
    ref = [-79.4, 4.2]
    hv = [r["hypervolume"] for r in result["runs"]]
    assert hv[0] == pytest.approx(hypervolume([[-80, 2], [-85, 4]], ref))
    assert hv[1] == pytest.approx(hypervolume([[-82, 2], [-86, 4]], ref))
    assert hv[1] > hv[0]  # b dominates a point for point
    assert result["differing_keys"] == {"seed": [0, 1], "train.epochs": [None, 12]}
    assert result["runs"][1]["best"] == {"top1": 86.0, "latency_ms@cpu": 2.0}
    text = format_comparison(result)
    assert "seed: 0 | 1" in text and "train.epochs: null | 12" in text
    assert max(len(line) for line in text.splitlines()) <= 120
    picture = plot_comparison(result, tmp_path / "fronts.png")
    assert picture.read_bytes().startswith(b"\x89PNG")


def test_a_given_reference_point_is_used_as_is(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", [(80.0, 2.0)])
    b = _run(tmp_path / "b", [(82.0, 2.0)])
    result = compare_runs([a, b], reference_point=[70.0, 10.0])
    assert [r["hypervolume"] for r in result["runs"]] == pytest.approx([80.0, 96.0])
    assert "none (same spec" in format_comparison(result)
    with pytest.raises(ConfigError, match="--reference-point has 1 values, expected 2"):
        compare_runs([a, b], reference_point=[70.0])


def test_runs_that_cannot_be_compared_are_one_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _run(tmp_path / "a", [(80.0, 2.0)])
    b = _run(tmp_path / "b", [(82.0, 2.0)], search={"objectives": ["top1:max", "macs_m:min"]})
    assert main(["compare", str(a), str(b)]) == 2
    assert capsys.readouterr().err.startswith("error: search.objectives differ")
    assert main(["compare", str(a)]) == 2
    assert "at least two run directories" in capsys.readouterr().err
    (tmp_path / "c").mkdir()
    assert main(["compare", str(a), str(tmp_path / "c")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert main(["compare", str(a), str(a), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["objectives"] == ["top1", "latency_ms@cpu"]
