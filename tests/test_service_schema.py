"""Schemathesis against the service's own OpenAPI schema: every route, no 5xx, valid answers.

Each operation of ``/openapi.json`` (the app of ``nas serve``, with a Pareto archive, a device
bank, an added device and a devices folder, so every route can answer 200) gets generated
requests, valid and invalid ones (schemathesis' positive and negative modes, plus its examples
and coverage phases, which also try every undeclared method), and every response must pass
schemathesis' checks: no 5xx, a status code, content type and headers the schema declares, a
body that matches the declared schema, invalid input refused with a 4xx. Operations that
declare no query parameters also get generated undeclared ones, which they must ignore: that
keeps their input space from being exhausted after a case or two (``GET /health`` has one
valid request otherwise), so every route gets its full count of cases. The last tests pin the
set of routes (one added to the app and missing from the schema, or the other way round, fails)
and that each route got at least ``NAS_SCHEMA_EXAMPLES`` requests.

``NAS_SCHEMA_EXAMPLES`` sets the generated cases per route (default 200, what CI runs, about
40 s); a longer manual run::

    NAS_SCHEMA_EXAMPLES=2000 python -m pytest -q -p no:cacheprovider -m slow \\
        tests/test_service_schema.py
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance

from predictors.apps.service import create_app
from predictors.bundle import Predictors, build_archive
from predictors.transfer.device_bank import DeviceBank
from tests.test_predictor_bundle import make_bundle
from tests.test_service_transfer import _bank_body

EXAMPLES = int(os.environ.get("NAS_SCHEMA_EXAMPLES", "200"))
# Served by the app but not operations of its schema: the schema itself and the offline docs.
OUTSIDE_SCHEMA = {"/openapi.json", "/docs", "/redoc", "/docs-assets"}

_calls: Counter[str] = Counter()  # requests sent per operation, with the operation's method
_statuses: Counter[tuple[str, int]] = Counter()

UNDECLARED_QUERY = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True),
    st.text(max_size=24),
    max_size=3,
)


def _build_app(devices_dir: Path) -> tuple[FastAPI, dict[str, Any]]:
    """The service with an archive, a bank and one added device; and the bank's PUT body."""
    bundle, _ = make_bundle(60)
    archive = build_archive(bundle, bundle.space.sample_many(200, np.random.default_rng(1)))
    bundle = Predictors([bundle[n] for n in bundle.names], archive=archive)
    body, _ = _bank_body(bundle.space)
    bank = DeviceBank.from_configs(bundle.space, body["configs"], body["latency"])
    app = create_app(bundle, max_batch=200, bank=bank, devices_dir=devices_dir)
    measured = [
        {"config": c, "latency_ms": 1.0 + 0.5 * i} for i, c in enumerate(body["configs"][:8])
    ]
    added = TestClient(app).post("/devices", json={"target": "phone", "measurements": measured})
    assert added.status_code == 200, added.text
    return app, body


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return _build_app(tmp_path_factory.mktemp("devices"))[0]


@pytest.fixture(scope="module")
def api_schema(service: FastAPI) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", service)


schema = schemathesis.pytest.from_fixture("api_schema")


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # Each case is a full request through the app (a fit for POST /devices): slow by design.
    suppress_health_check=[HealthCheck.too_slow],
)


def _check(case: Any) -> None:
    # positive_data_acceptance (a schema-valid request must not be a 4xx) is left out: validity
    # here is semantic beyond JSON Schema (a config must be a point of the search space, a
    # bank's latency lists as long as its configs and its device names safe folder names, ``n``
    # at most the bank's size), so such a request is rightly a 422 naming the key, a status the
    # schema declares with its body's shape, which response_schema_conformance checks.
    response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
    assert response.status_code < 500, response.text
    if case.method.upper() == case.operation.method.upper():
        _calls[case.operation.label] += 1
    _statuses[case.operation.label, response.status_code] += 1


def _takes_no_input(ctx: Any) -> bool:
    """An operation without parameters or body: one request, unless junk is added to it."""
    # The filter sees the operation's raw definition only (not yet its parsed parameters).
    raw = ctx.operation.definition.raw
    return not raw.get("parameters") and "requestBody" not in raw


@pytest.mark.slow
@schema.parametrize()
@FUZZ_SETTINGS
def test_every_route_conforms_to_its_schema(case: Any) -> None:
    _check(case)


@pytest.mark.slow
@schema.include(_takes_no_input).parametrize()
@schema.given(undeclared=UNDECLARED_QUERY)
# No explicit phase: schemathesis runs schema examples only in a test without ``given`` (above).
@settings(FUZZ_SETTINGS, phases=[Phase.generate, Phase.target, Phase.shrink])
def test_routes_without_input_ignore_undeclared_query(
    case: Any, undeclared: dict[str, str]
) -> None:
    case.query = {**(case.query or {}), **undeclared}
    _check(case)


def _served_operations(app: FastAPI) -> set[str]:
    served = set()
    for route in app.routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            served |= {f"{m} {route.path}" for m in route.methods}
        else:
            assert route.path in OUTSIDE_SCHEMA, f"{route.path} is served outside the schema"
    return served


def test_every_route_is_in_the_schema(service: FastAPI, api_schema: Any) -> None:
    """The operations schemathesis exercises are exactly the app's routes."""
    served = _served_operations(service)
    assert {op.ok().label for op in api_schema.get_all_operations()} == served
    assert served >= {"PUT /bank", "GET /references", "POST /devices", "GET /devices"}
    assert served >= {"POST /predict", "GET /best", "GET /space", "GET /health"}


@pytest.mark.slow
def test_every_route_got_its_cases(service: FastAPI) -> None:
    """Run after the fuzzing above (file order): each route got ``EXAMPLES`` requests or more."""
    if not _calls:
        pytest.skip("the schemathesis tests did not run in this session")
    counts = {label: _calls[label] for label in _served_operations(service)}
    assert min(counts.values()) >= EXAMPLES, counts
    assert not [key for key in _statuses if key[1] >= 500], sorted(_statuses.items())


def test_valid_requests_answer_200_matching_the_schema(tmp_path: Path) -> None:
    """What generated input seldom gets right (a bank of the space, a fit, a known target).

    Every check runs here, positive_data_acceptance included, so these 200s and their bodies
    are checked against the schema too. A fresh app: the fuzzed one is left as it was.
    """
    app, bank = _build_app(tmp_path / "devices")
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    measured = [
        {"config": c, "latency_ms": 2.0 + 0.25 * i} for i, c in enumerate(bank["configs"][:8])
    ]
    cases = [
        api["/bank"]["PUT"].Case(body=bank),
        api["/references"]["GET"].Case(query={"n": 5, "seed": 1}),
        api["/devices"]["POST"].Case(body={"target": "watch", "measurements": measured}),
        api["/devices"]["GET"].Case(),
        api["/predict"]["POST"].Case(body={"configs": bank["configs"][:3], "return_std": True}),
        api["/predict"]["POST"].Case(body={"config": {}, "base": "smallest"}),
        api["/best"]["GET"].Case(query={"target": "cpu", "max_latency_ms": 1e9}),
        api["/space"]["GET"].Case(),
        api["/health"]["GET"].Case(),
    ]
    answered = set()
    for case in cases:
        response = case.call_and_validate()
        assert response.status_code == 200, (case.operation.label, response.text)
        answered.add(case.operation.label)
    assert answered == _served_operations(app)
    assert "latency_ms@watch" in app_predictors(api)
    not_found = api["/best"]["GET"].Case(query={"target": "cpu", "max_latency_ms": 1e-9})
    assert not_found.call_and_validate().status_code == 404


def app_predictors(api: Any) -> list[str]:
    return api["/health"]["GET"].Case().call().json()["predictors"]  # type: ignore[no-any-return]


def test_405_lists_every_method_of_the_path(service: FastAPI) -> None:
    """``/devices`` is served by two routes; a 405 must name both methods (RFC 9110, 15.5.6)."""
    client = TestClient(service)
    answer = client.delete("/devices")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, POST"
    assert client.patch("/bank").headers["allow"] == "PUT"
