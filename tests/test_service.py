"""HTTP service: /predict, /best, /health, OpenAPI; bad input answers 422 naming the key."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from predictors.apps.service import create_app
from predictors.bundle import Predictors, build_archive
from tests.test_predictor_bundle import make_bundle


@pytest.fixture(scope="module")
def served():  # type: ignore[no-untyped-def]
    bundle, configs = make_bundle(80)
    archive = build_archive(bundle, bundle.space.sample_many(200, np.random.default_rng(1)))
    bundle = Predictors([bundle[n] for n in bundle.names], archive=archive)
    client = TestClient(create_app(bundle, max_batch=500))
    return client, bundle, configs


def _loc_and_msg(response) -> tuple[list, str]:  # type: ignore[no-untyped-def,type-arg]
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    return detail[0]["loc"], detail[0]["msg"]


def test_health(served) -> None:  # type: ignore[no-untyped-def]
    client, bundle, _ = served
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["space"] == "tiny_cnn"
    assert body["predictors"] == list(bundle.names)
    assert body["targets"] == ["cpu", "gpu"] and body["archive_size"] == len(bundle.archive)


def test_predict_batch_matches_python(served) -> None:  # type: ignore[no-untyped-def]
    client, bundle, configs = served
    payload = [c.to_dict() for c in configs[:40]]
    r = client.post("/predict", json={"configs": payload})
    assert r.status_code == 200
    body = r.json()
    assert body["metrics"] == list(bundle.names)
    expected = bundle.predict(configs[:40])
    for got, want in zip(body["predictions"], expected, strict=True):
        assert got == pytest.approx(want)
    one = client.post(
        "/predict", json={"configs": payload[:1], "metrics": ["top1"], "return_std": True}
    )
    assert one.status_code == 200 and list(one.json()["predictions"][0]) == ["top1"]
    std = client.post("/predict", json={"configs": payload[:2], "return_std": True}).json()
    assert "latency_ms@cpu_std" in std["metrics"]


def test_malformed_json_is_422_and_service_keeps_serving(served) -> None:  # type: ignore[no-untyped-def]
    client, _, configs = served
    r = client.post(
        "/predict", content=b'{"configs": [', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "json_invalid"
    ok = client.post("/predict", json={"configs": [configs[0].to_dict()]})
    assert ok.status_code == 200


def test_unknown_config_key_is_422_naming_it(served) -> None:  # type: ignore[no-untyped-def]
    client, _, configs = served
    bad = {**configs[0].to_dict(), "s0.b9.kernel": 3}
    r = client.post("/predict", json={"configs": [configs[1].to_dict(), bad]})
    assert r.status_code == 422
    loc, msg = _loc_and_msg(r)
    assert loc == ["body", "configs", 1, "s0.b9.kernel"]
    assert "'s0.b9.kernel' is not a dimension" in msg


def test_out_of_space_value_is_422_naming_key_and_allowed(served) -> None:  # type: ignore[no-untyped-def]
    client, _, configs = served
    bad = {**configs[0].to_dict(), "s2.b0.expand": 7}
    r = client.post("/predict", json={"configs": [bad]})
    assert r.status_code == 422
    loc, msg = _loc_and_msg(r)
    assert loc == ["body", "configs", 0, "s2.b0.expand"]
    assert "s2.b0.expand=7 is not one of [1, 2, 3]" in msg
    missing = configs[0].to_dict()
    del missing["s1.depth"]
    loc, msg = _loc_and_msg(client.post("/predict", json={"configs": [missing]}))
    assert loc == ["body", "configs", 0, "s1.depth"] and "missing key 's1.depth'" in msg


def test_wrong_types_and_unknown_fields_are_422(served) -> None:  # type: ignore[no-untyped-def]
    client, _, configs = served
    cases = [
        ({"configs": [{**configs[0].to_dict(), "s0.depth": True}]}, "s0.depth"),
        ({"configs": [{**configs[0].to_dict(), "s0.depth": [1]}]}, "s0.depth"),
        ({"configs": [configs[0].to_dict()], "confgs": []}, "confgs"),
        ({"configs": []}, "configs"),
        ({"configs": [1]}, "configs"),
        ({"configs": [configs[0].to_dict()], "metrics": ["top5"]}, "metrics"),
        ({"configs": [configs[0].to_dict()] * 501}, "configs"),
    ]
    for payload, key in cases:
        r = client.post("/predict", json=payload)
        assert r.status_code == 422, payload
        loc, _ = _loc_and_msg(r)
        assert key in loc, (loc, key)
    assert client.get("/health").status_code == 200


def test_best(served) -> None:  # type: ignore[no-untyped-def]
    client, bundle, _ = served
    r = client.get("/best", params={"target": "cpu", "max_latency_ms": 1e9})
    assert r.status_code == 200
    assert r.json() == bundle.best(target="cpu", max_latency_ms=1e9)
    r = client.get("/best", params={"target": "cpu", "max_latency_ms": 1e-9})
    assert r.status_code == 404 and "latency_ms@cpu <= 1e-09" in r.json()["detail"]
    r = client.get("/best", params={"target": "tpu", "max_latency_ms": 5})
    assert r.status_code == 422
    loc, msg = _loc_and_msg(r)
    assert loc == ["query", "target"] and "['cpu', 'gpu']" in msg
    for params, key in [
        ({"target": "cpu"}, "max_latency_ms"),
        ({"target": "cpu", "max_latency_ms": -1}, "max_latency_ms"),
        ({"target": "cpu", "max_latency_ms": "fast"}, "max_latency_ms"),
    ]:
        r = client.get("/best", params=params)
        assert r.status_code == 422
        assert key in _loc_and_msg(r)[0]


def test_openapi_documents_the_endpoints(served) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = served
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/best", "/health"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200
