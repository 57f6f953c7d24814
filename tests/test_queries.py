"""Discoverable queries: `nas space`, partial configs from a base, one config or a list, /space.

The service and the CLI answer from a real saved bundle; bad input is one line (CLI, exit 2) or a
422 naming the field (HTTP).
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

import search_spaces
from nas.cli import main
from predictors.apps.service import create_app
from predictors.bundle import Predictors, build_archive
from tests.test_predictor_bundle import make_bundle


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    bundle, _ = make_bundle(80)
    archive = build_archive(bundle, bundle.space.sample_many(60, np.random.default_rng(2)))
    bundle = Predictors([bundle[n] for n in bundle.names], archive=archive)
    path = tmp_path_factory.mktemp("bundle") / "bundle"
    bundle.save(path)
    return path, Predictors.load(path)


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", search_spaces.names())
def test_nas_space_lists_every_dimension_with_its_values(name: str) -> None:
    code, out, _ = _cli("space", name, "--json")
    assert code == 0
    summary = json.loads(out)
    space = search_spaces.get(name)
    assert [d["name"] for d in summary["dimensions"]] == list(space.names)
    for d in summary["dimensions"]:
        assert d["values"] == list(space.dim(d["name"]).options)
    assert space.validate(summary["smallest"]) == space.smallest()
    assert space.validate(summary["largest"]) == space.largest()
    code, text, _ = _cli("space", name)
    assert code == 0 and all(n in text for n in space.names)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (("space", "no_such_space"), "NAME"),
        (("space", "tiny_cnn", "--options", "{bad json"), "--options"),
        (("space", "tiny_cnn", "--options", "[1]"), "--options"),
        (("space", "tiny_cnn", "--options", '{"depths": 3}'), "depths"),
        (("status", "/no/such/run"), "OUTPUT_DIR"),
        (("runs", "/no/such/folder"), "FOLDER"),
    ],
)
def test_bad_queries_get_one_line_naming_the_key(argv: tuple[str, ...], named: str) -> None:
    code, _, err = _cli(*argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and named in lines[0], lines


def test_predict_completes_a_partial_config_from_a_base(saved) -> None:  # type: ignore[no-untyped-def]
    path, bundle = saved
    space = bundle.space
    change = {space.names[0]: space.dim(space.names[0]).options[-1]}
    code, out, _ = _cli(
        "predict", "--predictors", str(path), "--config", json.dumps(change), "--base", "smallest"
    )
    assert code == 0
    row = json.loads(out)
    full = {**space.smallest().to_dict(), **change}
    assert row["config"] == space.validate(full).to_dict()
    # the CLI prints 6 significant digits
    assert row["predictions"] == pytest.approx(bundle.predict([full])[0], rel=1e-5)
    key = space.validate(bundle.archive[0]["config"]).key
    code, out, _ = _cli("predict", "--predictors", str(path), "--config", "{}", "--base", key)
    assert (
        code == 0
        and json.loads(out)["config"] == space.validate(bundle.archive[0]["config"]).to_dict()
    )
    code, _, err = _cli("predict", "--predictors", str(path), "--config", "{}", "--base", "nope")
    assert code == 2 and "base='nope'" in err and "smallest" in err
    code, _, err = _cli(
        "predict", "--predictors", str(path), "--config", '{"no.such": 1}', "--base", "largest"
    )
    assert code == 2 and "no.such" in err


def test_best_names_the_config_key(saved) -> None:  # type: ignore[no-untyped-def]
    path, bundle = saved
    code, out, _ = _cli(
        "best", "--predictors", str(path), "--target", "cpu", "--max-latency-ms", "1e9"
    )
    assert code == 0
    best = json.loads(out)
    assert best["config_key"] == bundle.space.validate(best["config"]).key
    assert best["export_dir"] is None  # a bundle outside a run directory has no exports


def test_service_takes_one_config_a_list_and_a_base(saved) -> None:  # type: ignore[no-untyped-def]
    _, bundle = saved
    client = TestClient(create_app(bundle))
    space = bundle.space
    name = space.names[0]
    change = {name: space.dim(name).options[-1]}
    one = client.post("/predict", json={"config": change, "base": "largest"})
    assert one.status_code == 200, one.text
    full = {**space.largest().to_dict(), **change}
    assert one.json()["predictions"][0] == pytest.approx(bundle.predict([full])[0])
    many = client.post("/predict", json={"configs": [change, {}], "base": "smallest"})
    assert many.status_code == 200 and len(many.json()["predictions"]) == 2
    assert client.post("/predict", json={"config": space.smallest().to_dict()}).status_code == 200
    bad_base = client.post("/predict", json={"config": {}, "base": "nope"})
    assert bad_base.status_code == 422 and bad_base.json()["detail"][0]["loc"] == ["body", "base"]
    both = client.post("/predict", json={"config": {}, "configs": [{}], "base": "smallest"})
    assert both.status_code == 422 and both.json()["detail"][0]["loc"] == ["body", "configs"]
    described = client.get("/space").json()
    assert [d["name"] for d in described["dimensions"]] == list(space.names)
    schema = client.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]
    assert schema["examples"]  # the docs show a request to copy
