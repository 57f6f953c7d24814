"""A new device over HTTP: PUT /bank, GET /references, POST /devices, then /predict answers it.

Known answer: the new device is an exact linear function of a bank device, so its predictions
must match that device's latencies; every bad input is a 422 whose ``loc`` names the field.
"""

from __future__ import annotations

import csv
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from scipy.stats import spearmanr

from nas.measure.cost import compute_cost
from predictors.apps.service import create_app, server_config
from predictors.transfer.device_bank import DeviceBank
from predictors.transfer.few_shot import fit_transfer
from tests.test_predictor_bundle import make_bundle

README = Path(__file__).resolve().parents[1] / "README.md"


def _bank_body(space: Any, n: int = 120, seed: int = 2) -> tuple[dict[str, Any], dict[str, float]]:
    """A bank of two devices on the bundle's space (MACs- and params-driven) and a third one.

    Returns the PUT /bank body and the new device's exact latency per config key (3 x the
    MACs device: a linear function of a bank device).
    """
    X = space.canonical_indices(
        space.encode_many(space.sample_many(n, np.random.default_rng(seed)))
    )
    configs = space.decode_many(np.unique(X, axis=0))
    costs = [compute_cost(space, c) for c in configs]
    macs = np.array([c.macs for c in costs], dtype=float) / 1e5
    params = np.array([c.params for c in costs], dtype=float) / 1e4
    body = {
        "configs": [c.to_dict() for c in configs],
        "latency": {"dsp": (macs + 0.1).tolist(), "npu": (params + 0.2).tolist()},
    }
    truth = {c.key: float(3 * m) for c, m in zip(configs, macs + 0.1, strict=True)}
    return body, truth


@pytest.fixture(scope="module")
def setup() -> tuple[Any, dict[str, Any], dict[str, float]]:
    bundle, _ = make_bundle(60)
    body, truth = _bank_body(bundle.space)
    return bundle, body, truth


@pytest.fixture()
def client(setup: tuple[Any, dict[str, Any], dict[str, float]]) -> TestClient:
    bundle, _, _ = setup
    return TestClient(create_app(bundle))


def _key(space: Any, config: Any) -> str:
    """Key of the canonical form of ``config`` (inactive dimensions do not matter)."""
    X = space.canonical_indices(space.encode_many([space.validate(config)]))
    return space.decode_many(X)[0].key  # type: ignore[no-any-return]


def _loc(response: Any) -> list[Any]:
    assert response.status_code == 422, response.text
    return response.json()["detail"][0]["loc"]  # type: ignore[no-any-return]


def _measure(client: TestClient, truth: dict[str, float], space: Any, n: int) -> list[dict]:  # type: ignore[type-arg]
    refs = client.get("/references", params={"n": n, "seed": 0})
    assert refs.status_code == 200, refs.text
    configs = refs.json()["configs"]
    assert len(configs) == n and len({json.dumps(c, sort_keys=True) for c in configs}) == n
    return [{"config": c, "latency_ms": truth[_key(space, c)]} for c in configs]


def test_add_device_then_predict_it(client: TestClient, setup: Any) -> None:
    bundle, body, truth = setup
    assert client.put("/bank", json=body).json() == {
        "devices": ["dsp", "npu"],
        "architectures": len(body["configs"]),
    }
    measurements = _measure(client, truth, bundle.space, 6)
    added = client.post("/devices", json={"target": "phone", "measurements": measurements})
    assert added.status_code == 200, added.text
    summary = added.json()
    assert summary["name"] == "latency_ms@phone" and summary["n_train"] == 6
    assert list(summary["device_weights"]) == ["dsp"] and not summary["replaced"]
    assert summary["leave_one_out"]["spearman"] > 0.99

    configs = body["configs"]
    answer = client.post("/predict", json={"configs": configs}).json()
    assert answer["metrics"] == [*bundle.names, "latency_ms@phone"]
    got = [row["latency_ms@phone"] for row in answer["predictions"]]
    want = [truth[_key(bundle.space, c)] for c in configs]
    assert got == pytest.approx(want, rel=1e-6)
    # the same as the Python API on the same bank and measurements
    bank = DeviceBank.from_configs(bundle.space, configs, body["latency"])
    pairs = [(m["config"], m["latency_ms"]) for m in measurements]
    direct = fit_transfer(bank, pairs, target="phone").predict(configs)
    assert got == pytest.approx(direct.tolist(), rel=1e-9)
    # a config outside the bank (modelled, not looked up) still ranks with the truth
    outside = [c for c in bundle.space.sample_many(40, np.random.default_rng(9))]
    only = client.post(
        "/predict",
        json={"configs": [c.to_dict() for c in outside], "metrics": ["latency_ms@phone"]},
    ).json()
    assert only["metrics"] == ["latency_ms@phone"]
    cost = [compute_cost(bundle.space, c).macs for c in outside]
    assert spearmanr(cost, [r["latency_ms@phone"] for r in only["predictions"]]).statistic > 0.9

    health = client.get("/health").json()
    assert "latency_ms@phone" in health["predictors"] and "phone" in health["targets"]
    listed = client.get("/devices").json()
    assert listed["bank"] == {"devices": ["dsp", "npu"], "architectures": len(configs)}
    assert [d["name"] for d in listed["devices"]] == ["latency_ms@phone"]
    again = client.post("/devices", json={"target": "phone", "measurements": measurements})
    assert again.json()["replaced"] is True


def test_bank_in_the_body_and_saved_devices(setup: Any, tmp_path: Path) -> None:
    bundle, body, truth = setup
    first = TestClient(create_app(bundle, devices_dir=tmp_path / "devices"))
    configs = body["configs"][:8]
    measurements = [{"config": c, "latency_ms": truth[_key(bundle.space, c)]} for c in configs]
    answer = first.post(
        "/devices", json={"target": "board", "measurements": measurements, "bank": body}
    )
    assert answer.status_code == 200, answer.text
    assert first.get("/devices").json()["bank"] is None  # the body's bank is not kept
    assert (tmp_path / "devices" / "board" / "manifest.json").is_file()
    restarted = TestClient(create_app(bundle, devices_dir=tmp_path / "devices"))
    rows = restarted.post("/predict", json={"config": configs[0]}).json()["predictions"]
    assert rows[0]["latency_ms@board"] == pytest.approx(measurements[0]["latency_ms"], rel=1e-6)


def test_bad_input_is_422_naming_the_field(client: TestClient, setup: Any) -> None:
    _, body, _ = setup
    good = [{"config": c, "latency_ms": 2.0 + i} for i, c in enumerate(body["configs"][:5])]
    # no bank yet
    assert _loc(client.get("/references")) == ["query", "bank"]
    assert _loc(client.post("/devices", json={"target": "x", "measurements": good})) == [
        "body",
        "bank",
    ]
    # bad banks
    key = next(iter(body["configs"][0]))
    bad_config = {**body, "configs": [{**body["configs"][0], key: "nope"}, *body["configs"][1:]]}
    assert _loc(client.put("/bank", json=bad_config)) == ["body", "configs", 0, key]
    short = {**body, "latency": {"dsp": body["latency"]["dsp"][:-1]}}
    assert _loc(client.put("/bank", json=short)) == ["body", "latency", "dsp"]
    zero = {**body, "latency": {"dsp": [0.0, *body["latency"]["dsp"][1:]]}}
    assert _loc(client.put("/bank", json=zero)) == ["body", "latency", "dsp", 0]
    twice = {
        "configs": [body["configs"][0], body["configs"][0]],
        "latency": {"dsp": [1.0, 2.0]},
    }
    assert _loc(client.put("/bank", json=twice)) == ["body", "configs"]
    at = {**body, "latency": {"a@b": body["latency"]["dsp"]}}
    assert _loc(client.put("/bank", json=at)) == ["body", "latency", "a@b"]
    assert client.put("/bank", json=body).status_code == 200
    # bad references query
    assert _loc(client.get("/references", params={"n": 0})) == ["query", "n"]
    assert _loc(client.get("/references", params={"n": 10**6})) == ["query", "n"]
    assert _loc(client.get("/references", params={"seed": -1})) == ["query", "seed"]

    # bad measurements
    def post(**change: Any) -> Any:
        return client.post("/devices", json={"target": "x", "measurements": good, **change})

    assert _loc(post(measurements=good[:2])) == ["body", "measurements"]
    negative = [good[0], {**good[1], "latency_ms": -1.0}, *good[2:]]
    assert _loc(post(measurements=negative)) == ["body", "measurements", 1, "latency_ms"]
    text = [good[0], {**good[1], "latency_ms": "3"}, *good[2:]]
    assert _loc(post(measurements=text)) == ["body", "measurements", 1, "latency_ms"]
    outside = [good[0], good[1], {**good[2], "config": {**good[2]["config"], key: 99}}, *good[3:]]
    assert _loc(post(measurements=outside)) == ["body", "measurements", 2, "config", key]
    assert _loc(post(target="a@b")) == ["body", "target"]
    assert _loc(post(target="")) == ["body", "target"]
    assert _loc(post(target="dsp")) == ["body", "target"]  # a bank device
    assert _loc(post(target="cpu")) == ["body", "target"]  # the bundle's latency_ms@cpu
    assert _loc(post(widget=1)) == ["body", "widget"]
    assert _loc(client.post("/predict", json={"config": good[0]["config"], "metrics": ["x"]})) == [
        "body",
        "metrics",
        0,
    ]
    assert client.get("/devices").json()["devices"] == []  # nothing half-added


# -- the README's HTTP example, against a real uvicorn server -----------------------------------
def readme_http_example() -> str:
    """The ``python`` block of the README section on new hardware targets."""
    section = README.read_text().split("### A new hardware target from a few measurements", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture()
def server(setup: Any) -> Iterator[str]:
    bundle, _, _ = setup
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(create_app(bundle), port=port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


def test_readme_http_example_runs(
    server: str, setup: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle, body, truth = setup
    with (tmp_path / "bank.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["config", *(f"lat_{d}" for d in body["latency"])])
        for i, config in enumerate(body["configs"]):
            writer.writerow([json.dumps(config), *(v[i] for v in body["latency"].values())])
    monkeypatch.chdir(tmp_path)
    code = readme_http_example()
    assert 'URL = "http://127.0.0.1:8000"' in code
    namespace: dict[str, Any] = {
        "__name__": "readme_http_example",
        "measure_on_new_device": lambda config: truth[_key(bundle.space, config)],
    }
    exec(compile(code.replace("http://127.0.0.1:8000", server), str(README), "exec"), namespace)
    assert namespace["added"]["name"] == "latency_ms@my_phone"
    assert namespace["added"]["leave_one_out"]["spearman"] > 0.99
    predicted = namespace["predicted"]["predictions"]
    config = namespace["to_measure"][0]
    assert predicted[0]["latency_ms@my_phone"] == pytest.approx(
        truth[_key(bundle.space, config)], rel=1e-6
    )
