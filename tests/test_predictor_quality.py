"""QualityReport on known answers; JSON round-trip; table; PNG plot."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nas.errors import ConfigError
from predictors.quality import QualityReport, format_table, plot_predictions


def test_perfect_predictions() -> None:
    y = np.array([1.0, 2.0, 4.0, 8.0])
    r = QualityReport.from_predictions(y, y, n_train=10, metric="m")
    assert (r.kendall_tau, r.spearman, r.mape, r.rmse, r.within_10pct) == (1.0, 1.0, 0.0, 0.0, 1.0)
    assert (r.n_train, r.n_test, r.n_mape_excluded) == (10, 4, 0)


def test_known_values() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.2, 1.9, 4.0, 3.5])  # one discordant pair out of six
    r = QualityReport.from_predictions(y, pred, n_train=3)
    assert r.kendall_tau == pytest.approx(4 / 6)
    assert r.spearman == pytest.approx(0.8)
    assert r.mape == pytest.approx((0.2 + 0.05 + 1 / 3 + 0.125) / 4)
    assert r.rmse == pytest.approx(math.sqrt((0.04 + 0.01 + 1.0 + 0.25) / 4))
    assert r.within_10pct == pytest.approx(0.25)


def test_reversed_ranking_is_minus_one() -> None:
    r = QualityReport.from_predictions([1, 2, 3], [3, 2, 1], n_train=1)
    assert r.kendall_tau == pytest.approx(-1.0) and r.spearman == pytest.approx(-1.0)


def test_mape_mask_excludes_near_zero_truths() -> None:
    y = np.array([0.001, 1.0, 2.0])
    pred = np.array([0.5, 1.0, 2.0])
    full = QualityReport.from_predictions(y, pred, n_train=5)
    masked = QualityReport.from_predictions(y, pred, n_train=5, mape_mask=y > 0.01)
    assert full.mape > 100
    assert masked.mape == 0.0 and masked.n_mape_excluded == 1
    assert masked.kendall_tau == full.kendall_tau  # rank metrics use every sample


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ConfigError, match="shape"):
        QualityReport.from_predictions([1, 2, 3], [1, 2], n_train=1)
    with pytest.raises(ConfigError, match="at least 2"):
        QualityReport.from_predictions([1], [1], n_train=1)


def test_json_round_trip_and_nan(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = QualityReport.from_predictions([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], n_train=2, metric="m")
    assert math.isnan(r.kendall_tau)  # constant truth: τ undefined
    path = r.save(tmp_path / "quality.json")
    data = json.loads(path.read_text())  # strict JSON: NaN stored as null
    assert data["kendall_tau"] is None
    loaded = QualityReport.load(path)
    assert math.isnan(loaded.kendall_tau) and loaded.mape == r.mape and loaded.metric == "m"
    with pytest.raises(ConfigError, match="'tau'"):
        QualityReport.from_dict({**data, "tau": 1.0})


def test_table_lists_every_metric() -> None:
    r = QualityReport.from_predictions([1.0, 2.0, 3.0], [1.0, 2.0, 3.3], n_train=7, metric="top1")
    table = format_table([r, r], labels=["a", "b"])
    lines = table.splitlines()
    assert len(lines) == 4
    for column in ("kendall_tau", "spearman", "MAPE_%", "RMSE", "within_10%", "n_train", "n_test"):
        assert column in lines[0]
    assert "top1" in lines[2] and "3.33" in lines[2]
    assert r.to_table().count("\n") == 2


def test_plot_is_a_png(tmp_path) -> None:  # type: ignore[no-untyped-def]
    y = np.linspace(1, 2, 30)
    r = QualityReport.from_predictions(y, y * 1.01, n_train=5, metric="m")
    path = plot_predictions(y, y * 1.01, tmp_path / "plot.png", report=r)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_tau_interval_holds_tau_and_shrinks_with_more_points() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 200):
        true = rng.normal(size=n)
        pred = true + rng.normal(scale=0.7, size=n)
        report = QualityReport.from_predictions(true, pred, n_train=10)
        low, high = report.kendall_tau_ci95
        assert low < report.kendall_tau < high
        assert not report.tau_includes_chance and report.chance_warning() is None
        widths.append(high - low)
    assert widths[1] < widths[0] / 2


def test_a_ranking_no_better_than_chance_is_flagged() -> None:
    rng = np.random.default_rng(1)
    true, pred = rng.normal(size=30), rng.normal(size=30)
    report = QualityReport.from_predictions(true, pred, n_train=90, metric="top1")
    assert report.tau_includes_chance
    warning = report.chance_warning()
    assert warning is not None
    assert "top1" in warning and "30 held-out" in warning and "includes 0" in warning


def test_within_10pct_is_not_reported_on_a_narrow_metric() -> None:
    true = np.linspace(95.0, 99.0, 20)  # a 4 % range: a constant prediction is within ±10 %
    report = QualityReport.from_predictions(true, np.full(20, 97.0), n_train=10)
    assert report.within_10pct_trivial and np.isnan(report.within_10pct)
    assert "n/a (range < ±10 %)" in report.to_table()
    assert QualityReport.from_dict(report.to_dict()) == report
    wide = QualityReport.from_predictions(
        np.linspace(1, 10, 20), np.linspace(1, 10, 20), n_train=5
    )
    assert not wide.within_10pct_trivial and wide.within_10pct == 1.0
