"""The new-device routes refuse what would break them, and a devices folder is checked at start.

Non-finite and unphysical numbers, too few distinct configs and unsafe device names are 422s
naming the field, with a body that is always strict JSON; a failed fit leaves nothing on disk;
a bad saved device refuses the start with one error naming its file.
"""

from __future__ import annotations

import json
import shutil
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

from nas.errors import ConfigError, IncompatibleArtifactError
from predictors.apps.service import create_app, server_config
from predictors.apps.service_transfer import MAX_DEVICES, MAX_LATENCY_MS, MIN_LATENCY_MS
from predictors.transfer.device_bank import DeviceBank
from predictors.transfer.few_shot import fit_transfer
from predictors.transfer.persistence import MANIFEST_FILE, save_transfer
from tests.test_predictor_bundle import make_bundle
from tests.test_service_robust import Raw, request
from tests.test_service_transfer import _bank_body

NON_FINITE = ("NaN", "Infinity", "-Infinity", "1e309")
BAD_NAMES = ("../../etc", "a\x00b", "a\u202eb", "", "a@b", ".hidden", "a/b", "x" * 101)


@pytest.fixture(scope="module")
def setup() -> tuple[Any, dict[str, Any]]:
    bundle, _ = make_bundle(60)
    body, _ = _bank_body(bundle.space)
    return bundle, body


@pytest.fixture()
def client(setup: tuple[Any, dict[str, Any]]) -> TestClient:
    bundle, body = setup
    client = TestClient(create_app(bundle))
    assert client.put("/bank", json=body).status_code == 200
    return client


def _strict_json(text: str) -> Any:
    """The body parsed as strict JSON (NaN and Infinity are not JSON)."""

    def refuse(literal: str) -> None:
        raise AssertionError(f"{literal} in a response body: {text[:200]}")

    return json.loads(text, parse_constant=refuse)


def _loc(response: Any) -> list[Any]:
    assert response.status_code == 422, response.text
    return _strict_json(response.text)["detail"][0]["loc"]  # type: ignore[no-any-return]


def _measurements(body: dict[str, Any], n: int = 6, ms: float = 2.0) -> list[dict[str, Any]]:
    return [{"config": c, "latency_ms": ms + i} for i, c in enumerate(body["configs"][:n])]


def _with_literal(payload: dict[str, Any], marker: float, literal: str) -> bytes:
    """``payload`` as JSON with the number ``marker`` written as ``literal`` (not JSON)."""
    text = json.dumps(payload)
    assert text.count(repr(marker)) == 1
    return text.replace(repr(marker), literal).encode()


def _non_finite_cases(body: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], list[Any]]]:
    """(method, path, payload holding the marker 777.125, loc the 422 must name)."""
    marker = 777.125
    bank = {**body, "latency": {**body["latency"], "dsp": [marker, *body["latency"]["dsp"][1:]]}}
    measured = _measurements(body)
    measured[2] = {**measured[2], "latency_ms": marker}
    first = body["configs"][0]
    key = next(iter(first))
    return [
        ("PUT", "/bank", bank, ["body", "latency", "dsp", 0]),
        (
            "POST",
            "/devices",
            {"target": "t", "measurements": measured},
            ["body", "measurements", 2, "latency_ms"],
        ),
        (
            "POST",
            "/devices",
            {"target": "t", "measurements": _measurements(body), "bank": bank},
            ["body", "bank", "latency", "dsp", 0],
        ),
        ("POST", "/predict", {"config": {**first, key: marker}}, ["body", "configs", 0, key]),
    ]


@pytest.mark.parametrize("literal", NON_FINITE)
def test_non_finite_numbers_are_422_naming_the_field(
    client: TestClient, setup: Any, literal: str
) -> None:
    _, body = setup
    for method, path, payload, loc in _non_finite_cases(body):
        raw = _with_literal(payload, 777.125, literal)
        answer = client.request(
            method, path, content=raw, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 422, (path, answer.text)
        assert _loc(answer) == loc, (path, answer.text)
    assert client.get("/devices").json()["devices"] == []


@pytest.fixture()
def server(setup: Any) -> Iterator[int]:
    bundle, _ = setup
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(bundle)
    server = uvicorn.Server(server_config(app, port=port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


def test_non_finite_numbers_keep_the_connection_alive(server: int, setup: Any) -> None:
    _, body = setup
    conn = Raw(server)
    try:
        for method, path, payload, loc in _non_finite_cases(body):
            for literal in NON_FINITE:
                conn.send(request(method, path, _with_literal(payload, 777.125, literal)))
                reply = conn.reply()
                assert reply.status == 422 and not reply.closes, (path, literal, reply.text)
                assert _strict_json(reply.text)["detail"][0]["loc"] == loc
        conn.send(request("PUT", "/bank", json.dumps(body).encode()))
        assert conn.reply().status == 200  # the same connection still serves
    finally:
        conn.close()


@pytest.mark.parametrize("ms", [1e300, 1e308, MAX_LATENCY_MS * 1.5, MIN_LATENCY_MS / 2])
def test_unphysical_latencies_are_422_and_nothing_is_saved(
    setup: Any, tmp_path: Path, ms: float
) -> None:
    bundle, body = setup
    devices = tmp_path / "devices"
    client = TestClient(create_app(bundle, devices_dir=devices))
    measured = _measurements(body)
    measured[1] = {**measured[1], "latency_ms": ms}
    answer = client.post("/devices", json={"target": "t", "measurements": measured, "bank": body})
    assert _loc(answer) == ["body", "measurements", 1, "latency_ms"]
    assert "1e-06..1e+07 ms" in answer.json()["detail"][0]["msg"]
    bank = {**body, "latency": {**body["latency"], "npu": [*body["latency"]["npu"][:-1], ms]}}
    last = len(body["configs"]) - 1
    assert _loc(client.put("/bank", json=bank)) == ["body", "latency", "npu", last]
    assert not devices.exists() or not any(devices.iterdir())  # no folder left behind
    scaled = [{**m, "latency_ms": 1e6 * m["latency_ms"]} for m in _measurements(body)]
    slow = client.post("/devices", json={"target": "t", "measurements": scaled, "bank": body})
    assert slow.status_code == 200, slow.text  # the bounds still admit a slow device
    assert sorted(p.name for p in devices.iterdir()) == ["t"]


def test_a_fit_that_is_not_finite_is_refused_and_writes_nothing(
    setup: Any, tmp_path: Path
) -> None:
    bundle, body = setup
    bank = DeviceBank.from_configs(bundle.space, body["configs"], body["latency"])
    pairs = [(c, 1e300 * (i + 1)) for i, c in enumerate(body["configs"][:6])]
    with pytest.raises(ConfigError, match="target_measurements: the fit"):
        fit_transfer(bank, pairs, target="huge")
    good = fit_transfer(
        bank, [(c, 2.0 + i) for i, c in enumerate(body["configs"][:6])], target="g"
    )
    broken = type(good)(
        **{
            **{f: getattr(good, f) for f in good.__dataclass_fields__ if f != "kind"},
            "intercept": float("inf"),
        }
    )
    with pytest.raises(ValueError):
        save_transfer(broken, tmp_path / "devices" / "g")
    assert not (tmp_path / "devices" / "g").exists()


def test_too_few_distinct_configs_are_422(client: TestClient, setup: Any) -> None:
    bundle, body = setup
    first, second = body["configs"][:2]
    one = [{"config": first, "latency_ms": 2.0 + i} for i in range(10)]
    two = [{"config": c, "latency_ms": 2.0 + i} for i, c in enumerate([first, second] * 5)]
    for measured, distinct in ((one, 1), (two, 2)):
        answer = client.post("/devices", json={"target": "t", "measurements": measured})
        assert _loc(answer) == ["body", "measurements"]
        message = answer.json()["detail"][0]["msg"]
        assert f"10 measurement(s) of {distinct} distinct config(s)" in message
        assert "at least 3 distinct configs" in message
    assert client.get("/devices").json()["devices"] == []
    bank = DeviceBank.from_configs(bundle.space, body["configs"], body["latency"])
    with pytest.raises(ConfigError, match="target_measurements has 10 measurement"):
        fit_transfer(bank, [(m["config"], m["latency_ms"]) for m in one], target="t")


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bank_device_names_follow_the_target_rule(
    client: TestClient, setup: Any, name: str
) -> None:
    _, body = setup
    bank = {**body, "latency": {name: body["latency"]["dsp"], "npu": body["latency"]["npu"]}}
    answer = client.put("/bank", json=bank)
    assert _loc(answer) == ["body", "latency", name]
    assert "must match" in answer.json()["detail"][0]["msg"]
    request = {"target": "t", "measurements": _measurements(body), "bank": bank}
    assert _loc(client.post("/devices", json=request)) == ["body", "bank", "latency", name]
    target = client.post("/devices", json={"target": name, "measurements": _measurements(body)})
    assert _loc(target) == ["body", "target"]  # the rule the bank names now share
    assert client.get("/devices").json()["bank"]["devices"] == ["dsp", "npu"]


# -- a devices folder at start ------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(setup: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One saved device, ``board`` (its folder is copied and edited per case)."""
    bundle, body = setup
    bank = DeviceBank.from_configs(bundle.space, body["configs"], body["latency"])
    pairs = [(c, 2.0 + i) for i, c in enumerate(body["configs"][:6])]
    folder = tmp_path_factory.mktemp("saved") / "board"
    save_transfer(fit_transfer(bank, pairs, target="board"), folder)
    return folder


def _edited(saved: Path, root: Path, edit: Any, folder: str = "board") -> Path:
    """A devices folder holding ``saved`` under ``folder``, its manifest changed by ``edit``."""
    target = root / "devices" / folder
    shutil.copytree(saved, target)
    manifest = json.loads((target / MANIFEST_FILE).read_text())
    text = edit(manifest)
    (target / MANIFEST_FILE).write_text(text if isinstance(text, str) else json.dumps(manifest))
    return root / "devices"


def _model(**changes: Any) -> Any:
    return lambda m: m["model"].update(changes)


BAD_MANIFESTS: list[tuple[str, Any, str]] = [
    ("target is not the folder", lambda m: m.update(target="other"), "is not its folder's name"),
    ("unsafe target", lambda m: m.update(target="../x"), "must match"),
    ("another metric", lambda m: m.update(metric="top1"), "metric='top1' is not 'latency_ms'"),
    ("nested 100,000 deep", lambda m: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("n_train 0", _model(n_train=0), "model.n_train=0 must be >= 1"),
    ("n_train -3", _model(n_train=-3), "model.n_train=-3 must be >= 1"),
    ("repeated device", _model(devices=["dsp", "dsp"]), "names 'dsp' twice"),
    ("unsafe device", _model(devices=["dsp", "../../etc"]), "must match"),
    ("NaN weight", lambda m: m["model"]["weights"].__setitem__(0, float("nan")), "non-finite"),
    ("huge weight", lambda m: m["model"]["weights"].__setitem__(0, 1e300), "weights must be in"),
    ("negative weight", lambda m: m["model"]["weights"].__setitem__(0, -2.0), "weights must be"),
    (
        "absurd log-latency",
        lambda m: m["model"]["bank_log_pred"].__setitem__(3, 1000.0),
        "model.bank_log_pred must be",
    ),
]


@pytest.mark.parametrize(
    ("case", "edit", "message"), BAD_MANIFESTS, ids=[c[0] for c in BAD_MANIFESTS]
)
def test_a_bad_saved_device_refuses_the_start_naming_its_file(
    setup: Any, saved: Path, tmp_path: Path, case: str, edit: Any, message: str
) -> None:
    bundle, _ = setup
    devices = _edited(saved, tmp_path, edit)
    with pytest.raises(IncompatibleArtifactError) as raised:
        create_app(bundle, devices_dir=devices)
    text = str(raised.value)
    assert "\n" not in text and message in text, text
    assert text.startswith(str(devices / "board")), text


def test_more_saved_devices_than_the_cap_refuse_the_start(
    setup: Any, saved: Path, tmp_path: Path
) -> None:
    bundle, _ = setup
    devices = tmp_path / "devices"
    for i in range(MAX_DEVICES + 1):
        _edited(saved, tmp_path, lambda m, i=i: m.update(target=f"d{i}"), folder=f"d{i}")
    with pytest.raises(IncompatibleArtifactError, match=f"holds {MAX_DEVICES + 1} saved devices"):
        create_app(bundle, devices_dir=devices)
    shutil.rmtree(devices / f"d{MAX_DEVICES}")
    app = TestClient(create_app(bundle, devices_dir=devices))  # exactly the cap loads
    assert len(app.get("/devices").json()["devices"]) == MAX_DEVICES


def test_a_good_saved_device_still_loads(setup: Any, saved: Path, tmp_path: Path) -> None:
    bundle, body = setup
    devices = _edited(saved, tmp_path, lambda m: None)
    rows = TestClient(create_app(bundle, devices_dir=devices)).post(
        "/predict", json={"config": body["configs"][0]}
    )
    assert np.isfinite(rows.json()["predictions"][0]["latency_ms@board"])
