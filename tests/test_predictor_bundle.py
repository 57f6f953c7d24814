"""Predictors bundle: several metrics at once, Pareto archive queries, save/load, CLI functions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import search_spaces
from nas.errors import ConfigError, IncompatibleArtifactError, UnsafeFileError
from nas.measure.cost import compute_cost
from nas.pareto import non_dominated
from predictors.apps.commands import best_command, parse_configs, predict_command
from predictors.bundle import ARCHIVE_FILE, BUNDLE_FILE, Predictors, build_archive
from predictors.dataset import fit_predictor
from predictors.predictor import InvalidConfigError


def make_bundle(n: int = 120) -> tuple[Predictors, list]:  # type: ignore[type-arg]
    """tiny_cnn with analytic metrics: top1 grows with log MACs, latencies follow MACs/params."""
    space = search_spaces.get("tiny_cnn")
    configs = space.sample_many(n, np.random.default_rng(0))
    costs = [compute_cost(space, c) for c in configs]
    macs = np.array([c.macs for c in costs], dtype=float)
    params = np.array([c.params for c in costs], dtype=float)
    top1 = 80 + 5 * np.log(macs / macs.min())
    fits = [
        fit_predictor(space, configs, top1, metric="top1", kind="ridge"),
        fit_predictor(
            space, configs, macs / 1e5, metric="latency_ms", target="cpu", kind="ensemble"
        ),
        fit_predictor(space, configs, params / 1e4, metric="latency_ms", target="gpu", kind="gbr"),
    ]
    bundle = Predictors([f.predictor for f in fits])
    return bundle, configs


@pytest.fixture(scope="module")
def bundle_and_configs():  # type: ignore[no-untyped-def]
    bundle, configs = make_bundle()
    candidates = bundle.space.sample_many(300, np.random.default_rng(1))
    archive = build_archive(bundle, candidates)
    return Predictors([bundle[n] for n in bundle.names], archive=archive), configs, candidates


def test_predict_answers_every_metric(bundle_and_configs) -> None:  # type: ignore[no-untyped-def]
    bundle, configs, _ = bundle_and_configs
    rows = bundle.predict(configs[:5])
    assert len(rows) == 5
    assert all(set(r) == {"top1", "latency_ms@cpu", "latency_ms@gpu"} for r in rows)
    for name in bundle.names:
        np.testing.assert_allclose([r[name] for r in rows], bundle[name].predict(configs[:5]))
    with_std = bundle.predict(configs[:5], return_std=True)
    assert set(with_std[0]) == {"top1", "latency_ms@cpu", "latency_ms@cpu_std", "latency_ms@gpu"}
    assert all(r["latency_ms@cpu_std"] >= 0 for r in with_std)
    only = bundle.predict([c.to_dict() for c in configs[:2]], metrics=["top1"])
    assert [set(r) for r in only] == [{"top1"}, {"top1"}]


def test_predict_names_bad_metric_and_bad_config(bundle_and_configs) -> None:  # type: ignore[no-untyped-def]
    bundle, configs, _ = bundle_and_configs
    with pytest.raises(ConfigError, match=r"metric='top5' is not one of \['top1'"):
        bundle.predict(configs[:1], metrics=["top5"])
    bad = {**configs[1].to_dict(), "s1.width": 40}
    with pytest.raises(
        InvalidConfigError, match=r"configs\[1\]: s1\.width=40 is not one of \[24, 32\]"
    ) as info:
        bundle.predict([configs[0], bad])
    assert (info.value.index, info.value.key) == (1, "s1.width")
    unknown = {**configs[0].to_dict(), "s9.depth": 1}
    with pytest.raises(InvalidConfigError, match=r"'s9\.depth' is not a dimension") as info:
        bundle.predict([unknown])
    assert info.value.key == "s9.depth"
    missing = configs[0].to_dict()
    del missing["s2.width"]
    with pytest.raises(InvalidConfigError, match=r"missing key 's2\.width'"):
        bundle.predict([missing])


def test_archive_is_the_union_of_per_target_fronts(bundle_and_configs) -> None:  # type: ignore[no-untyped-def]
    bundle, _, candidates = bundle_and_configs
    preds = bundle.predict(candidates)
    for target in ("cpu", "gpu"):
        F = np.array([[-p["top1"], p[f"latency_ms@{target}"]] for p in preds])
        front = {candidates[i].key for i in non_dominated(F)}
        archived = {bundle.space.validate(r["config"]).key for r in bundle.archive}
        assert front <= archived
    assert len(bundle.archive) < len(candidates)


def test_best_is_the_best_feasible_candidate(bundle_and_configs) -> None:  # type: ignore[no-untyped-def]
    bundle, _, candidates = bundle_and_configs
    preds = bundle.predict(candidates)
    lat = np.array([p["latency_ms@cpu"] for p in preds])
    top1 = np.array([p["top1"] for p in preds])
    for bound in np.quantile(lat, [0.1, 0.5, 0.9]):
        found = bundle.best(target="cpu", max_latency_ms=float(bound))
        assert found is not None
        assert found["metrics"]["latency_ms@cpu"] <= bound
        assert found["metrics"]["top1"] == pytest.approx(top1[lat <= bound].max())
    assert bundle.best(target="cpu", max_latency_ms=float(lat.min()) / 2) is None


def test_best_names_bad_target_objective_and_bound(bundle_and_configs) -> None:  # type: ignore[no-untyped-def]
    bundle, _, _ = bundle_and_configs
    with pytest.raises(ConfigError, match=r"target='tpu' is not one of \['cpu', 'gpu'\]"):
        bundle.best(target="tpu", max_latency_ms=5)
    with pytest.raises(ConfigError, match="objective='top5' is not one of"):
        bundle.best(target="cpu", max_latency_ms=5, objective="top5")
    with pytest.raises(ConfigError, match="max_latency_ms=-1"):
        bundle.best(target="cpu", max_latency_ms=-1)
    without = Predictors([bundle[n] for n in bundle.names])
    with pytest.raises(ConfigError, match="no Pareto archive"):
        without.best(target="cpu", max_latency_ms=5)


def test_bundle_round_trip_and_cli_functions(bundle_and_configs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bundle, configs, _ = bundle_and_configs
    directory = bundle.save(tmp_path / "bundle")
    assert (directory / BUNDLE_FILE).is_file() and (directory / ARCHIVE_FILE).is_file()
    loaded = Predictors.load(directory, space=bundle.space)
    assert loaded.names == bundle.names and loaded.archive == bundle.archive
    assert loaded.predict(configs[:20]) == bundle.predict(configs[:20])
    out = predict_command(directory, [c.to_dict() for c in configs[:3]])
    assert [o["config"] for o in out] == [c.to_dict() for c in configs[:3]]
    assert [o["predictions"] for o in out] == bundle.predict(configs[:3])
    best = bundle.best(target="gpu", max_latency_ms=1e9)
    assert best is not None
    assert best_command(directory, "gpu", 1e9) == {
        "config_key": bundle.space.validate(best["config"]).key,
        **best,
        "export_dir": None,  # a bundle outside a run directory has no exported subnets
    }


def test_bundle_refuses_mixed_spaces_and_pickles(bundle_and_configs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bundle, _, _ = bundle_and_configs
    other_space = search_spaces.get("nas_bench_201")
    X = other_space.encode_many(other_space.sample_many(30, np.random.default_rng(0)))
    from predictors.models import make_predictor
    from predictors.predictor import Predictor

    other = Predictor(
        other_space, make_predictor(other_space, kind="ridge").fit(X, X[:, 0]), metric="x"
    )
    with pytest.raises(IncompatibleArtifactError, match="share a search space"):
        Predictors([bundle["top1"], other])
    directory = bundle.save(tmp_path / "b")
    (directory / "archive.pickle").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(UnsafeFileError, match="looks like a pickle"):
        Predictors.load(directory)


def test_parse_configs_accepts_object_list_and_jsonl() -> None:
    assert parse_configs('{"a": 1}') == [{"a": 1}]
    assert parse_configs('[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]
    assert parse_configs('{"a": 1}\n\n{"a": 2}\n') == [{"a": 1}, {"a": 2}]
    with pytest.raises(ConfigError, match="line 2 is not valid JSON"):
        parse_configs('{"a": 1}\n{"a": \n')
    with pytest.raises(ConfigError, match=r"configs\[0\] must be a JSON object"):
        parse_configs("[1, 2]")


def test_archive_file_is_jsonl_of_config_and_metrics(bundle_and_configs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bundle, _, _ = bundle_and_configs
    directory = bundle.save(tmp_path / "c")
    lines = Path(directory / ARCHIVE_FILE).read_text().splitlines()
    assert len(lines) == len(bundle.archive)
    assert set(json.loads(lines[0])) == {"config", "metrics"}
