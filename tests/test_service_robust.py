"""HTTP service under malformed, oversized and slow requests, over a real uvicorn server.

Every malformed request gets a 4xx whose ``detail[0].loc`` names the field (or, for what the
HTTP parser rejects, a 4xx and a closed connection); never a 5xx, never a hang. A connection
that was not closed answers a good request right after. Slow heads and bodies are cut at the
configured deadlines; ``/docs`` and ``/redoc`` load nothing from another host.
"""

from __future__ import annotations

import html.parser
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import uvicorn

from nas.errors import ConfigError, IncompatibleArtifactError, UnsafeFileError
from nas.search.front import InfeasibleError
from predictors.apps.service import create_app, server_config
from predictors.bundle import Predictors, build_archive
from predictors.predictor import InvalidConfigError
from tests.test_predictor_bundle import make_bundle

BODY_TIMEOUT = 1.0
HEADER_TIMEOUT = 1.0
KEEP_ALIVE = 3
MAX_BODY = 256 * 1024
MAX_HEADER = 4096
MAX_BATCH = 500
SLACK = 3.0  # seconds past a deadline that a loaded 2-core machine may take to act on it

PROJECT_ERRORS: dict[str, Callable[[], Exception]] = {
    "ConfigError": lambda: ConfigError("widget=3 is not one of [1, 2]"),
    "InfeasibleError": lambda: InfeasibleError("budget=0.5 leaves no feasible subnet"),
    "UnsafeFileError": lambda: UnsafeFileError("path='x.pkl' is a pickle; not loaded"),
    "IncompatibleArtifactError": lambda: IncompatibleArtifactError(
        "space_fingerprint='abc' differs from the bundle's"
    ),
    "InvalidConfigError": lambda: InvalidConfigError(
        "configs[2]: s0.depth=9 is not one of [1, 2]", index=2, key="s0.depth"
    ),
    "no key in message": lambda: ConfigError("the bundle is empty"),
}


@dataclass
class Served:
    port: int
    bundle: Predictors
    good: dict[str, Any]


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    bundle, configs = make_bundle(80)
    archive = build_archive(bundle, bundle.space.sample_many(200, np.random.default_rng(1)))
    bundle = Predictors([bundle[n] for n in bundle.names], archive=archive)
    app = create_app(
        bundle,
        max_batch=MAX_BATCH,
        max_body_bytes=MAX_BODY,
        body_timeout=BODY_TIMEOUT,
        max_header_bytes=MAX_HEADER,
    )

    def raiser(name: str) -> Callable[[], None]:
        def endpoint() -> None:
            raise PROJECT_ERRORS[name]()

        return endpoint

    for name in PROJECT_ERRORS:  # routes that raise each project error from inside the app
        app.add_api_route(
            f"/raise/{name}", raiser(name), methods=["GET", "POST"], include_in_schema=False
        )

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = server_config(
        app,
        port=port,
        header_timeout=HEADER_TIMEOUT,
        max_header_bytes=MAX_HEADER,
        timeout_keep_alive=KEEP_ALIVE,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield Served(port=port, bundle=bundle, good=configs[0].to_dict())
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


# -- a raw HTTP/1.1 client: bytes exactly as written, responses parsed by hand ------------------
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


class Raw:
    """One TCP connection to the server."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def reply(self) -> Reply:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"closed before a response head; got {self.buffer!r}")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            size = int(headers["content-length"])
            while len(self.buffer) < size:
                if not self._fill():
                    raise ConnectionError("closed inside a response body")
            body, self.buffer = self.buffer[:size], self.buffer[size:]
        else:  # no length: the body runs to the end of the connection
            while self._fill():
                pass
            body, self.buffer = self.buffer, b""
        return Reply(status, headers, body)

    def closed_within(self, seconds: float) -> bool:
        """Whether the server closes the connection (EOF or reset) within ``seconds``."""
        self.sock.settimeout(seconds)
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return False


def request(
    method: str,
    target: str,
    body: bytes = b"",
    *,
    content_type: str | None = "application/json",
    headers: tuple[tuple[str, str], ...] = (),
    length: int | None = None,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if body or method == "POST" or length is not None:
        lines.append(f"Content-Length: {len(body) if length is None else length}")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def post(payload: Any) -> bytes:
    return request("POST", "/predict", json.dumps(payload).encode())


def best(query: str) -> bytes:
    return request("GET", f"/best?{query}", content_type=None)


def good_request(served: Served) -> bytes:
    return post({"configs": [served.good]})


def first_loc(reply: Reply) -> list[Any]:
    detail = reply.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    assert {"loc", "msg", "type"} <= set(detail[0]), detail[0]
    return list(detail[0]["loc"])


# -- the malformed requests -------------------------------------------------------------------
# (id, request bytes from the served fixture, key that detail[0].loc must hold (or a tuple of
# keys, one of which it must hold), or None where there is no field to name: unknown routes)
Case = tuple[str, Callable[[Served], bytes], Any]


def _with(served: Served, **changes: Any) -> dict[str, Any]:
    return {**served.good, **changes}


def _raw_json(text: str) -> Callable[[Served], bytes]:
    return lambda s: request("POST", "/predict", text.encode())


def _chunked(total: int) -> bytes:
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(total // len(chunk)))
    return head + body + b"0\r\n\r\n"


BODY_CASES: list[Case] = [
    ("truncated JSON", _raw_json('{"configs": ['), "body"),
    ("not JSON", _raw_json("configs=1"), "body"),
    ("single-quoted JSON", _raw_json("{'configs': []}"), "body"),
    ("trailing garbage", _raw_json('{"configs": []} xyz'), "body"),
    ("nesting too deep", _raw_json("[" * 100_000), "body"),
    ("bad UTF-8", lambda s: request("POST", "/predict", b'{"configs": "\xff\xfe"}'), "body"),
    ("empty body", lambda s: request("POST", "/predict", b""), "body"),
    ("null", _raw_json("null"), "body"),
    ("top-level list", _raw_json("[]"), "body"),
    ("top-level string", _raw_json('"configs"'), "body"),
    ("top-level number", _raw_json("123"), "body"),
    ("empty object", _raw_json("{}"), "configs"),
    ("configs null", lambda s: post({"configs": None}), "configs"),
    ("configs object", lambda s: post({"configs": {}}), "configs"),
    ("configs string", lambda s: post({"configs": "abc"}), "configs"),
    ("configs of ints", lambda s: post({"configs": [1]}), "configs"),
    ("configs of null", lambda s: post({"configs": [None]}), "configs"),
    ("configs of lists", lambda s: post({"configs": [[1, 2]]}), "configs"),
    ("empty configs", lambda s: post({"configs": []}), "configs"),
    ("duplicate key, last empty", _raw_json('{"configs": [{}], "configs": []}'), "configs"),
    ("unknown top-level key", lambda s: post({"configs": [s.good], "confgs": []}), "confgs"),
    ("extra top-level key", lambda s: post({"configs": [s.good], "limit": 3}), "limit"),
    (
        "unknown config key",
        lambda s: post({"configs": [_with(s, **{"s0.b9.kernel": 3})]}),
        "s0.b9.kernel",
    ),
    ("empty config key", lambda s: post({"configs": [_with(s, **{"": 3})]}), ""),
    (
        "missing config key",
        lambda s: post({"configs": [{k: v for k, v in s.good.items() if k != "s1.depth"}]}),
        "s1.depth",
    ),
    ("empty config", lambda s: post({"configs": [{}]}), "s0.depth"),
    (
        "value not an option",
        lambda s: post({"configs": [_with(s, **{"s2.b0.expand": 7})]}),
        "s2.b0.expand",
    ),
    ("value fractional", lambda s: post({"configs": [_with(s, **{"s0.depth": 1.5})]}), "s0.depth"),
    ("value negative", lambda s: post({"configs": [_with(s, **{"s0.depth": -1})]}), "s0.depth"),
    (
        "value huge int",
        lambda s: post({"configs": [_with(s, **{"s0.depth": 10**30})]}),
        "s0.depth",
    ),
    (
        "value numeric string",
        lambda s: post({"configs": [_with(s, **{"s0.depth": "2"})]}),
        "s0.depth",
    ),
    ("value bool", lambda s: post({"configs": [_with(s, **{"s0.depth": True})]}), "s0.depth"),
    ("value list", lambda s: post({"configs": [_with(s, **{"s0.depth": [1]})]}), "s0.depth"),
    ("value object", lambda s: post({"configs": [_with(s, **{"s0.depth": {}})]}), "s0.depth"),
    ("value null", lambda s: post({"configs": [_with(s, **{"s0.depth": None})]}), "s0.depth"),
    ("value NaN", lambda s: _nonfinite_value(s, "NaN"), "s0.depth"),
    ("value Infinity", lambda s: _nonfinite_value(s, "Infinity"), "s0.depth"),
    ("value -Infinity", lambda s: _nonfinite_value(s, "-Infinity"), "s0.depth"),
    ("value 1e400", lambda s: _nonfinite_value(s, "1e400"), "s0.depth"),
    (
        "second config bad",
        lambda s: post({"configs": [s.good, _with(s, **{"s1.width": 7})]}),
        "s1.width",
    ),
    ("batch over max_batch", lambda s: post({"configs": [s.good] * (MAX_BATCH + 1)}), "configs"),
    ("metrics empty", lambda s: post({"configs": [s.good], "metrics": []}), "metrics"),
    ("metrics unknown", lambda s: post({"configs": [s.good], "metrics": ["top5"]}), "metrics"),
    ("metrics string", lambda s: post({"configs": [s.good], "metrics": "top1"}), "metrics"),
    ("metrics of ints", lambda s: post({"configs": [s.good], "metrics": [1]}), "metrics"),
    ("metrics of null", lambda s: post({"configs": [s.good], "metrics": [None]}), "metrics"),
    (
        "return_std string",
        lambda s: post({"configs": [s.good], "return_std": "yes"}),
        "return_std",
    ),
    ("return_std int", lambda s: post({"configs": [s.good], "return_std": 1}), "return_std"),
    ("return_std null", lambda s: post({"configs": [s.good], "return_std": None}), "return_std"),
]


def _nonfinite_value(served: Served, literal: str) -> bytes:
    config = json.dumps(_with(served, **{"s0.depth": 0})).replace(
        '"s0.depth": 0', f'"s0.depth": {literal}'
    )
    return request("POST", "/predict", f'{{"configs": [{config}]}}'.encode())


CONTENT_TYPE_CASES: list[Case] = [
    (
        f"content-type {ctype}",
        lambda s, ctype=ctype: request(
            "POST", "/predict", json.dumps({"configs": [s.good]}).encode(), content_type=ctype
        ),
        "body",
    )
    for ctype in ("text/plain", None, "application/x-www-form-urlencoded", "application/xml")
]

QUERY_CASES: list[Case] = [
    ("max_latency_ms inf", lambda s: best("target=cpu&max_latency_ms=inf"), "max_latency_ms"),
    ("max_latency_ms -inf", lambda s: best("target=cpu&max_latency_ms=-inf"), "max_latency_ms"),
    ("max_latency_ms nan", lambda s: best("target=cpu&max_latency_ms=nan"), "max_latency_ms"),
    ("max_latency_ms 1e400", lambda s: best("target=cpu&max_latency_ms=1e400"), "max_latency_ms"),
    ("max_latency_ms negative", lambda s: best("target=cpu&max_latency_ms=-1"), "max_latency_ms"),
    ("max_latency_ms zero", lambda s: best("target=cpu&max_latency_ms=0"), "max_latency_ms"),
    ("max_latency_ms word", lambda s: best("target=cpu&max_latency_ms=fast"), "max_latency_ms"),
    ("max_latency_ms empty", lambda s: best("target=cpu&max_latency_ms="), "max_latency_ms"),
    ("max_latency_ms NUL", lambda s: best("target=cpu&max_latency_ms=%00"), "max_latency_ms"),
    ("max_latency_ms missing", lambda s: best("target=cpu"), "max_latency_ms"),
    ("target missing", lambda s: best("max_latency_ms=5"), "target"),
    ("target empty", lambda s: best("target=&max_latency_ms=5"), "target"),
    ("target unknown", lambda s: best("target=tpu&max_latency_ms=5"), "target"),
    (
        "objective unknown",
        lambda s: best("target=cpu&max_latency_ms=5&objective=zzz"),
        "objective",
    ),
    ("objective empty", lambda s: best("target=cpu&max_latency_ms=5&objective="), "objective"),
    ("unknown query key", lambda s: best("target=cpu&max_latency_ms=5&objectve=top1"), "objectve"),
]

LIMIT_CASES: list[Case] = [
    (
        "declared body over max_body_bytes",
        lambda s: request("POST", "/predict", b"x" * (MAX_BODY + 1)),
        "content-length",
    ),
    ("chunked body over max_body_bytes", lambda s: _chunked(MAX_BODY + 65536), "body"),
    (
        "one header over max_header_bytes",
        lambda s: request("GET", "/health", headers=(("X-Big", "a" * MAX_HEADER),)),
        "header",  # the app's 431 if the head arrives in one read, else the parser's
    ),
    (
        "many headers",
        lambda s: request(
            "GET", "/health", headers=tuple((f"X-H{i}", "v" * 20) for i in range(300))
        ),
        "header",
    ),
    (
        "long query string",
        lambda s: best("target=cpu&max_latency_ms=5&" + "a" * 8000),
        ("query", "header"),
    ),
    (
        "head of 64 KiB",
        lambda s: request("GET", "/health", headers=(("X-Big", "a" * 65536),)),
        "header",
    ),
]

PROTOCOL_CASES: list[Case] = [
    ("garbage request line", lambda s: b"HELLO\r\n\r\n", "header"),
    ("no HTTP version", lambda s: b"GET /health\r\n\r\n", "header"),
    (
        "content-length not a number",
        lambda s: request("POST", "/predict", length=-1).replace(b"-1", b"abc"),
        "header",
    ),
    ("content-length negative", lambda s: request("POST", "/predict", length=-1), "header"),
    (
        "space in header name",
        lambda s: request("GET", "/health", headers=(("X Bad", "1"),)),
        "header",
    ),
    ("GET on /predict", lambda s: request("GET", "/predict", content_type=None), None),
    ("unknown path", lambda s: request("POST", "/nope", b"{}"), None),
]

CASES = BODY_CASES + CONTENT_TYPE_CASES + QUERY_CASES + LIMIT_CASES + PROTOCOL_CASES


def test_there_are_at_least_60_malformed_requests() -> None:
    assert len(CASES) >= 60
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("build", "key"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_request_is_4xx_naming_the_field(served: Served, build, key) -> None:  # type: ignore[no-untyped-def]
    conn = Raw(served.port)
    try:
        conn.send(build(served))
        t0 = time.monotonic()
        reply = conn.reply()
        assert time.monotonic() - t0 < BODY_TIMEOUT + SLACK
        assert 400 <= reply.status < 500, (reply.status, reply.body[:300])
        if key is not None:
            loc = first_loc(reply)
            keys = key if isinstance(key, tuple) else (key,)
            assert any(k in loc for k in keys), (loc, key)
        if reply.closes:
            assert conn.closed_within(SLACK)
            return
        conn.send(good_request(served))
        after = conn.reply()
        assert after.status == 200, after.body[:300]
        assert len(after.json()["predictions"]) == 1
    finally:
        conn.close()


def test_limits_answer_413_and_431_naming_the_limit_and_close(served: Served) -> None:
    conn = Raw(served.port)
    conn.send(request("POST", "/predict", b"x" * (MAX_BODY + 1)))
    reply = conn.reply()
    assert reply.status == 413 and reply.closes
    assert f"max_body_bytes={MAX_BODY}" in reply.json()["detail"][0]["msg"]
    assert conn.closed_within(SLACK)
    conn.close()
    conn = Raw(served.port)
    conn.send(request("GET", "/health", headers=(("X-Big", "a" * (MAX_HEADER + 100)),)))
    reply = conn.reply()
    assert reply.status == 431 and reply.closes
    assert first_loc(reply) == ["header", "x-big"]
    assert f"max_header_bytes={MAX_HEADER}" in reply.json()["detail"][0]["msg"]
    conn.close()


def test_head_growing_past_the_limit_in_pieces_is_431_and_closed(served: Served) -> None:
    conn = Raw(served.port)
    conn.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (MAX_HEADER // 2))
    time.sleep(0.2)
    conn.send(b"a" * MAX_HEADER)
    reply = conn.reply()
    assert reply.status == 431 and reply.closes
    assert first_loc(reply) == ["header"] and f"max_header_bytes={MAX_HEADER}" in reply.text
    assert conn.closed_within(SLACK)
    conn.close()


def test_a_body_just_under_the_limit_is_served(served: Served) -> None:
    body = json.dumps({"configs": [served.good] * MAX_BATCH}).encode()
    assert len(body) < MAX_BODY
    conn = Raw(served.port)
    head = request("POST", "/predict", length=len(body))
    conn.send(head)
    for i in range(0, len(body), 32_768):  # in pieces, well within the body deadline
        conn.send(body[i : i + 32_768])
    reply = conn.reply()
    assert reply.status == 200 and len(reply.json()["predictions"]) == MAX_BATCH
    conn.close()


@pytest.mark.parametrize("name", list(PROJECT_ERRORS))
def test_every_project_error_is_422_naming_its_key(served: Served, name: str) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{served.port}") as client:
        for method in ("GET", "POST"):
            r = client.request(method, f"/raise/{name}")
            assert r.status_code == 422, r.text
            loc = r.json()["detail"][0]["loc"]
            where = "query" if method == "GET" else "body"
            expected = {
                "ConfigError": [where, "widget"],
                "InfeasibleError": [where, "budget"],
                "UnsafeFileError": [where, "path"],
                "IncompatibleArtifactError": [where, "space_fingerprint"],
                "InvalidConfigError": ["body", "configs", 2, "s0.depth"],
                "no key in message": [where],
            }[name]
            assert loc == expected
            assert client.get("/health").status_code == 200


# -- slow clients -------------------------------------------------------------------------------
def _assert_408_then_closed(conn: Raw, started: float, deadline: float, loc: list[str]) -> None:
    reply = conn.reply()
    waited = time.monotonic() - started
    assert reply.status == 408 and reply.closes, reply.body
    assert first_loc(reply) == loc
    assert deadline - 0.2 <= waited < deadline + SLACK, waited
    assert conn.closed_within(SLACK)


def test_declared_body_never_sent_is_408_and_closed(served: Served) -> None:
    conn = Raw(served.port)
    t0 = time.monotonic()
    conn.send(request("POST", "/predict", length=100) + b'{"configs"')
    _assert_408_then_closed(conn, t0, BODY_TIMEOUT, ["body"])
    conn.close()


def test_body_dripped_a_byte_at_a_time_is_cut_at_the_total_deadline(served: Served) -> None:
    conn = Raw(served.port)
    t0 = time.monotonic()
    conn.send(request("POST", "/predict", length=100))
    conn.sock.settimeout(0.2)
    reply = None
    for _ in range(40):  # one byte every 0.1 s would take 10 s for the whole body
        try:
            conn.send(b" ")
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            if conn._fill():
                break
        except TimeoutError:
            continue
    conn.sock.settimeout(10)
    reply = conn.reply()
    assert reply.status == 408, reply.body
    assert time.monotonic() - t0 < BODY_TIMEOUT + SLACK
    conn.close()


def test_slow_body_to_an_endpoint_that_reads_none_is_cut(served: Served) -> None:
    conn = Raw(served.port)
    t0 = time.monotonic()
    conn.send(request("GET", "/health", length=50) + b"0123456789")
    _assert_408_then_closed(conn, t0, BODY_TIMEOUT, ["body"])
    conn.close()


def test_chunked_body_that_never_ends_is_cut(served: Served) -> None:
    conn = Raw(served.port)
    t0 = time.monotonic()
    conn.send(
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"con\r\n'
    )
    _assert_408_then_closed(conn, t0, BODY_TIMEOUT, ["body"])
    conn.close()


def test_incomplete_head_is_408_and_closed(served: Served) -> None:
    conn = Raw(served.port)
    t0 = time.monotonic()
    conn.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    _assert_408_then_closed(conn, t0, HEADER_TIMEOUT, ["header"])
    conn.close()


def test_head_dripped_after_a_good_request_is_cut(served: Served) -> None:
    conn = Raw(served.port)
    conn.send(good_request(served))
    assert conn.reply().status == 200
    t0 = time.monotonic()
    conn.sock.settimeout(0.2)
    for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40:
        try:
            conn.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            if conn._fill():
                break
        except TimeoutError:
            continue
    conn.sock.settimeout(10)
    reply = conn.reply()
    assert reply.status == 408 and first_loc(reply) == ["header"]
    assert time.monotonic() - t0 < HEADER_TIMEOUT + SLACK
    conn.close()


def test_idle_connections_are_closed_after_keep_alive(served: Served) -> None:
    fresh = Raw(served.port)
    used = Raw(served.port)
    used.send(good_request(served))
    assert used.reply().status == 200
    t0 = time.monotonic()
    assert fresh.closed_within(KEEP_ALIVE + SLACK)
    assert used.closed_within(KEEP_ALIVE + SLACK)
    assert KEEP_ALIVE - 1 <= time.monotonic() - t0 < KEEP_ALIVE + 2 * SLACK
    fresh.close()
    used.close()


def test_50_slow_body_connections_are_all_closed_soon_after_the_deadline(served: Served) -> None:
    conns = [Raw(served.port) for _ in range(50)]
    t0 = time.monotonic()
    for conn in conns:
        conn.send(request("POST", "/predict", length=100) + b"0123456789")
    closed_at: list[float] = []
    for conn in conns:
        reply = conn.reply()
        assert reply.status == 408 and reply.closes
        assert conn.closed_within(SLACK)
        closed_at.append(time.monotonic() - t0)
        conn.close()
    assert max(closed_at) < BODY_TIMEOUT + SLACK, max(closed_at)
    with httpx.Client(base_url=f"http://127.0.0.1:{served.port}") as client:
        assert client.get("/health").status_code == 200


# -- docs served offline -------------------------------------------------------------------------
class _AssetLinks(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


@pytest.mark.parametrize(("page", "expected"), [("/docs", 3), ("/redoc", 2)])
def test_docs_pages_load_every_asset_from_this_server(
    served: Served, page: str, expected: int
) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{served.port}") as client:
        r = client.get(page)
        assert r.status_code == 200
        assert not re.search(r"https?://", r.text), re.findall(r"https?://\S+", r.text)
        if page == "/docs":  # Swagger UI would send the spec's URL to an online validator
            assert '"validatorUrl": null' in r.text
        parser = _AssetLinks()
        parser.feed(r.text)
        assert len(parser.urls) == expected, parser.urls
        for url in parser.urls:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc, url
            asset = client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, url
        assert client.get("/openapi.json").json()["info"]["title"] == "NAS predictors"


def test_limits_are_checked_when_the_app_and_server_are_built(served: Served) -> None:
    for kwargs, key in [
        ({"max_body_bytes": 0}, "max_body_bytes"),
        ({"body_timeout": float("inf")}, "body_timeout"),
        ({"body_timeout": float("nan")}, "body_timeout"),
        ({"max_header_bytes": 1.5}, "max_header_bytes"),
        ({"max_batch": -1}, "max_batch"),
    ]:
        with pytest.raises(ConfigError, match=f"^{key}="):
            create_app(served.bundle, **kwargs)
    app = create_app(served.bundle)
    for kwargs, key in [
        ({"header_timeout": 0}, "header_timeout"),
        ({"header_timeout": float("inf")}, "header_timeout"),
        ({"timeout_keep_alive": -1}, "timeout_keep_alive"),
        ({"max_header_bytes": 0}, "max_header_bytes"),
        ({"port": 70000}, "port"),
    ]:
        with pytest.raises(ConfigError, match=f"^{key}="):
            server_config(app, **kwargs)
