"""HTTP query service over a :class:`~predictors.bundle.Predictors` bundle (FastAPI + uvicorn).

Endpoints: ``POST /predict`` (one config or a batch; partial ones completed from a ``base``),
``GET /space``, ``GET /best``, ``GET /health``; for a new hardware target from a few
measurements ``PUT /bank``, ``GET /references``, ``POST /devices`` and ``GET /devices``
(:mod:`predictors.apps.service_transfer`; an added device answers ``/predict``); OpenAPI at
``/openapi.json``, Swagger UI at ``/docs`` and ReDoc at ``/redoc``, whose scripts, styles and
icon are served from this process (the ``fastapi-offline`` package's copies under
``/docs-assets``), so the pages work on a machine without internet access.

Bad input answers 4xx in FastAPI's error shape, ``{"detail": [{"loc": [...], "msg", "type"}]}``,
with ``loc`` naming the field (``["body", "configs", 3, "s0.depth"]``, ``["query",
"max_latency_ms"]``, ``["header", "content-length"]``), and never stops the service: every
project error (:class:`~nas.errors.ConfigError` and its subclasses,
:class:`~nas.errors.UnsafeFileError`, :class:`~nas.errors.IncompatibleArtifactError`) raised
while answering becomes a 422, never a 500.

Limits, each a keyword of :func:`create_app` or :func:`server_config` (defaults in brackets):

- ``max_batch`` [10,000] configs per ``/predict`` request, else 422 naming ``configs``;
- ``max_body_bytes`` [16 MiB] per request body (a 10,000-config batch of the 70-dimension
  ``mobilenet_like`` space is about 13 MB), else 413 naming the limit; a declared
  ``Content-Length`` over the limit is answered before any of the body is read;
- ``body_timeout`` [10 s] to receive the whole body once the head has arrived (a total
  deadline, so a body sent a byte at a time does not extend it), else 408 and the connection
  is closed;
- ``max_header_bytes`` [16 KiB] for the request line and headers: a head that grows past it
  before it is complete makes uvicorn answer 400 and close; a complete head over it answers
  431 naming the largest header;
- ``header_timeout`` [10 s] for the request head to arrive in full once its first byte has,
  else 408 and the connection is closed;
- ``timeout_keep_alive`` [5 s]: a connection that sends nothing for this long, fresh or after
  a response, is closed.

Any answer that leaves unread body bytes on the connection (408, 413, 431) carries
``Connection: close`` and the server closes the connection after it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
from collections.abc import Sequence
from http import HTTPStatus
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

import h11
import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from nas.errors import ConfigError, IncompatibleArtifactError, UnsafeFileError
from predictors.apps.service_transfer import DeviceRegistry, add_transfer_routes, merge_predictions
from predictors.bundle import Predictors
from predictors.predictor import InvalidConfigError
from predictors.transfer.device_bank import DeviceBank

ConfigValue = StrictInt | StrictFloat | StrictStr
MAX_BATCH = 10_000
MAX_BODY_BYTES = 16 * 1024 * 1024
BODY_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 16 * 1024
HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
DOCS_ASSETS = "/docs-assets"
MAX_ECHO_CHARS = 1000  # longer offending inputs are left out of a 422's detail
PROJECT_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    UnsafeFileError,
    IncompatibleArtifactError,
)
BEST_QUERY = ("target", "max_latency_ms", "objective")

# ``key=value ...`` or ``key[3]=...``: the shape every project error message starts with.
_KEY_PREFIX = re.compile(r"^([A-Za-z_][A-Za-z0-9_.@<>-]*)(?:\[\d+\])?=")


class PredictRequest(BaseModel):
    """One config (``config``) or a list (``configs``); each maps dimension names to values.

    With ``base`` (``smallest``, ``largest`` or an archived config key, see ``GET /space`` and
    ``GET /best``), a config names only the dimensions it changes; the rest come from the base.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"config": {"s0.depth": 2}, "base": "smallest"},
                {"configs": [{"s0.depth": 1}, {"s0.depth": 2}], "base": "largest"},
            ]
        },
    )
    config: dict[str, ConfigValue] | None = Field(default=None, description="one config")
    configs: list[dict[str, ConfigValue]] | None = Field(
        default=None, min_length=1, description="several configs"
    )
    base: StrictStr | None = Field(
        default=None, description="fill left-out dimensions from smallest, largest or a key"
    )
    metrics: list[StrictStr] | None = Field(
        default=None, min_length=1, description="subset of metrics; default all"
    )
    return_std: StrictBool = Field(default=False, description="add '<metric>_std' for ensembles")

    def all_configs(self) -> list[dict[str, ConfigValue]]:
        return [self.config] if self.config is not None else list(self.configs or [])


class PredictResponse(BaseModel):
    metrics: list[str]
    predictions: list[dict[str, float]]


class BestResponse(BaseModel):
    config: dict[str, ConfigValue]
    metrics: dict[str, float]


class HealthResponse(BaseModel):
    status: str
    space: str
    space_fingerprint: str
    predictors: list[str]
    targets: list[str]
    archive_size: int


def _detail(loc: Sequence[Any], message: str, kind: str) -> dict[str, Any]:
    return {"detail": [{"loc": list(loc), "msg": message, "type": kind}]}


def _unprocessable(loc: list[Any], message: str, kind: str = "value_error") -> HTTPException:
    return HTTPException(status_code=422, detail=_detail(loc, message, kind)["detail"])


def _error_loc(request: Request, exc: Exception) -> list[Any]:
    """Where a project error points: the config's index and key, or the key its message names."""
    if isinstance(exc, InvalidConfigError):
        loc: list[Any] = ["body", "configs", exc.index]
        return [*loc, exc.key] if exc.key is not None else loc
    where = "body" if request.method in ("POST", "PUT", "PATCH") else "query"
    match = _KEY_PREFIX.match(str(exc))
    return [where, match.group(1)] if match else [where]


def _echoable(value: Any) -> bool:
    """Whether ``value`` is short and strict JSON (no NaN or Infinity, which JSON lacks)."""
    try:
        return len(json.dumps(value, allow_nan=False)) <= MAX_ECHO_CHARS
    except (ValueError, TypeError, RecursionError):
        return False


def _encodable_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors that always encode: an ``input`` or ``ctx`` that would not is left out.

    Echoing a NaN back made the 422 itself fail to encode: a 500 that dropped the connection.
    """
    out = []
    for error in jsonable_encoder(errors):
        for key in ("input", "ctx"):
            if key in error and not _echoable(error[key]):
                del error[key]
        out.append(error)
    return out


def _check_limit(name: str, value: float, *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name}={value!r} must be a number")
    if not math.isfinite(value) or value <= 0 or (integer and value != int(value)):
        kind = "a positive integer" if integer else "a positive finite number"
        raise ConfigError(f"{name}={value!r} must be {kind}")


# -- transport guards ---------------------------------------------------------------------------
class RequestGuard:
    """ASGI middleware bounding head size, body size and the time to receive the body.

    The body is read in full (within ``body_timeout`` and ``max_body_bytes``) before the app
    runs, so an endpoint that never reads its body cannot leave a half-sent body holding the
    connection; the app then receives the buffered body as one message.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        body_timeout: float = BODY_TIMEOUT_S,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        _check_limit("max_body_bytes", max_body_bytes, integer=True)
        _check_limit("body_timeout", body_timeout)
        _check_limit("max_header_bytes", max_header_bytes, integer=True)
        self.app = app
        self.max_body_bytes = int(max_body_bytes)
        self.body_timeout = float(body_timeout)
        self.max_header_bytes = int(max_header_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        head += sum(len(k) + len(v) + 4 for k, v in headers)
        if head > self.max_header_bytes:
            loc = _largest_part(scope)
            await _reject(
                send,
                431,
                loc,
                f"request head of {head} bytes exceeds max_header_bytes={self.max_header_bytes}",
                "too_large",
            )
            return
        declared = _content_length(headers)
        if declared is not None and declared > self.max_body_bytes:
            await _reject(
                send,
                413,
                ["header", "content-length"],
                f"content-length={declared} exceeds max_body_bytes={self.max_body_bytes}",
                "too_large",
            )
            return
        body = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        more = True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                expected = f" of {declared}" if declared is not None else ""
                await _reject(
                    send,
                    408,
                    ["body"],
                    f"request body not received within body_timeout={self.body_timeout:g} s "
                    f"({len(body)}{expected} bytes arrived)",
                    "timeout",
                )
                return
            if message["type"] == "http.disconnect":
                return  # the client left; there is no one to answer
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.max_body_bytes:
                await _reject(
                    send,
                    413,
                    ["body"],
                    f"request body exceeds max_body_bytes={self.max_body_bytes}",
                    "too_large",
                )
                return
        await self.app(scope, _replay(bytes(body), receive), send)


def _largest_part(scope: Scope) -> list[str]:
    """The ``loc`` of what makes a request head large: a header by name, the query or the path."""
    sizes: dict[tuple[str, ...], int] = {
        ("header", k.decode("latin-1")): len(k) + len(v) for k, v in scope["headers"]
    }
    sizes[("query",)] = len(scope.get("query_string") or b"")
    sizes[("path",)] = len(scope.get("raw_path") or b"")
    largest: tuple[str, ...] = max(sizes, key=sizes.__getitem__)
    return list(largest)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that yields the buffered body once, then the server's own messages."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _reject(send: Send, status: int, loc: list[Any], message: str, kind: str) -> None:
    """Answer ``status`` in FastAPI's error shape and close the connection after it."""
    payload = json.dumps(_detail(loc, message, kind)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})


def guarded_h11_protocol(header_timeout: float = HEADER_TIMEOUT_S) -> type[H11Protocol]:
    """The h11 protocol of uvicorn with a deadline for the request head.

    Uvicorn closes a keep-alive connection that stays idle after a response, but stops that
    timer at the first byte of the next head and never starts it on a fresh connection: a head
    that never completes, or a connection that sends nothing, would be held forever.
    """
    _check_limit("header_timeout", header_timeout)

    class HeaderDeadlineH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # A fresh connection is idle until its first byte, as after a response.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

        def data_received(self, data: bytes) -> None:
            if self._head_deadline is None and self.conn.their_state is h11.IDLE:
                self._head_deadline = self.loop.call_later(header_timeout, self._head_overdue)
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._cancel_head_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_deadline()
            super().connection_lost(exc)

        def _cancel_head_deadline(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def send_400_response(self, msg: str) -> None:
            """The parser's rejection in the service's error shape (uvicorn's is plain text)."""
            limit = self.config.h11_max_incomplete_event_size or MAX_HEADER_BYTES  # h11's own
            if len(self.conn.trailing_data[0]) > limit:
                message = f"request head exceeds max_header_bytes={limit} before it ends"
                self._answer_and_close(431, message, "too_large")
            else:
                message = "the request line or headers are not valid HTTP/1.1"
                self._answer_and_close(400, message, "invalid")

        def _head_overdue(self) -> None:
            self._head_deadline = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            message = f"request head not received within header_timeout={header_timeout:g} s"
            self._answer_and_close(408, message, "timeout")

        def _answer_and_close(self, status: int, message: str, kind: str) -> None:
            """Raw bytes: the head is unparsed, so h11 has no request to answer."""
            payload = json.dumps(_detail(["header"], message, kind)).encode()
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n%s"
                % (status, HTTPStatus(status).phrase.encode(), len(payload), payload)
            )
            self.transport.close()

    return HeaderDeadlineH11Protocol


def server_config(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    header_timeout: float = HEADER_TIMEOUT_S,
    max_header_bytes: int = MAX_HEADER_BYTES,
    timeout_keep_alive: int = KEEP_ALIVE_S,
    log_level: str = "warning",
) -> uvicorn.Config:
    """Settings of uvicorn that bound the request head and idle connections (see module doc).

    Body size and body read deadline are the app's (:func:`create_app`), so they hold under
    any server.
    """
    if not 0 <= int(port) < 65536:
        raise ConfigError(f"port={port!r} must be in 0..65535 (0: any free port)")
    _check_limit("max_header_bytes", max_header_bytes, integer=True)
    _check_limit("timeout_keep_alive", timeout_keep_alive, integer=True)
    return uvicorn.Config(
        app,
        host=host,
        port=int(port),
        http=guarded_h11_protocol(header_timeout),
        h11_max_incomplete_event_size=int(max_header_bytes),
        timeout_keep_alive=int(timeout_keep_alive),
        log_level=log_level,
    )


# -- the app ------------------------------------------------------------------------------------
def create_app(
    bundle: Predictors,
    *,
    max_batch: int = MAX_BATCH,
    max_body_bytes: int = MAX_BODY_BYTES,
    body_timeout: float = BODY_TIMEOUT_S,
    max_header_bytes: int = MAX_HEADER_BYTES,
    bank: DeviceBank | None = None,
    devices_dir: str | os.PathLike[str] | None = None,
) -> FastAPI:
    """FastAPI app answering from ``bundle``, guarded by :class:`RequestGuard`.

    ``bank`` and ``devices_dir`` are the new-device routes'
    (:mod:`predictors.apps.service_transfer`):
    the initial device bank, and where added devices are saved and loaded from at start.

    Example:
        >>> # uvicorn.Server(server_config(create_app(Predictors.load("predictors/")))).run()
    """
    _check_limit("max_batch", max_batch, integer=True)
    _check_limit("max_body_bytes", max_body_bytes, integer=True)
    _check_limit("body_timeout", body_timeout)
    _check_limit("max_header_bytes", max_header_bytes, integer=True)

    app = FastAPI(
        title="NAS predictors",
        description=(
            f"Accuracy/latency predictors for search space {bundle.space.name!r} "
            f"(fingerprint {bundle.space_fingerprint}); predictors: {list(bundle.names)}."
        ),
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(
        RequestGuard,
        max_body_bytes=max_body_bytes,
        body_timeout=body_timeout,
        max_header_bytes=max_header_bytes,
    )

    async def project_error(request: Request, exc: Exception) -> Response:
        """No project error escapes as a 500: each is bad input, answered naming its key."""
        return JSONResponse(
            _detail(_error_loc(request, exc), str(exc), "value_error"), status_code=422
        )

    for error in PROJECT_ERRORS:
        app.add_exception_handler(error, project_error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """A body FastAPI cannot decode (bad UTF-8, nesting too deep) is invalid JSON too."""
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, ValueError | RecursionError):
            message = f"the body is not valid JSON: {type(cause).__name__}: {cause}"
            return JSONResponse(_detail(["body"], message[:300], "json_invalid"), status_code=422)
        if exc.status_code == 405:
            # Starlette's Allow names the first route of the path only (``POST`` for
            # ``/devices``, which GET serves too); a 405 must list them all (RFC 9110, 15.5.6).
            allowed = sorted(
                {
                    method
                    for route in app.router.routes
                    if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE
                    for method in route.methods or ()
                }
            )
            exc = StarletteHTTPException(405, exc.detail, {"Allow": ", ".join(allowed)})
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, echoing no input that is large or not JSON (NaN, Infinity)."""
        return JSONResponse({"detail": _encodable_errors(exc.errors())}, status_code=422)

    _mount_docs(app)
    registry = DeviceRegistry(
        bundle.space,
        bank=bank,
        reserved=bundle.names,
        devices_dir=None if devices_dir is None else Path(devices_dir),
    )
    add_transfer_routes(app, registry, max_batch=max_batch)

    def _predict(request: PredictRequest) -> dict[str, Any]:
        from predictors.partial import complete

        configs = request.all_configs()
        if len(configs) > max_batch:
            raise _unprocessable(
                ["body", "configs"],
                f"configs has {len(configs)} items; at most {max_batch} per request",
                "too_long",
            )
        registered = registry.names
        added: Sequence[str] = registered
        own: list[str] | None = None
        if request.metrics is not None:
            allowed = [*bundle.names, *registered]
            for i, metric in enumerate(request.metrics):
                if metric not in allowed:
                    raise _unprocessable(
                        ["body", "metrics", i],
                        f"metrics[{i}]={metric!r} is not one of {allowed}",
                    )
            own = [m for m in request.metrics if m in bundle.names]
            added = [m for m in request.metrics if m in registered]
        try:
            configs = complete(bundle, configs, request.base)
        except ConfigError as exc:
            raise _unprocessable(["body", "base"], str(exc)) from exc
        if own == []:  # only added devices: validate as the bundle would, predict nothing of it
            bundle[bundle.names[0]].encode(configs)
            predictions: list[dict[str, float]] = [{} for _ in configs]
        else:
            predictions = bundle.predict(configs, metrics=own, return_std=request.return_std)
        predictions = merge_predictions(predictions, registry.predict(configs, added))
        metrics = list(predictions[0]) if predictions else []
        return {"metrics": metrics, "predictions": predictions}

    @app.post("/predict", response_model=PredictResponse)
    async def predict(request: PredictRequest) -> JSONResponse:
        """Predict every requested metric for a batch of configs."""
        if (request.config is None) == (request.configs is None):
            raise _unprocessable(
                ["body", "configs"],
                "give exactly one of 'config' (one config) or 'configs' (a list of configs)",
                "missing",
            )
        if len(request.all_configs()) <= 16:  # small batches answer faster on the loop
            return JSONResponse(_predict(request))
        return JSONResponse(await run_in_threadpool(_predict, request))

    @app.get("/best", response_model=BestResponse, responses={404: {"description": "no match"}})
    def best(
        request: Request,
        target: Annotated[str, Query(min_length=1, description="hardware target")],
        max_latency_ms: Annotated[
            float, Query(gt=0, allow_inf_nan=False, description="latency bound in ms")
        ],
        objective: Annotated[str, Query(min_length=1, description="metric to maximise")] = "top1",
    ) -> dict[str, Any]:
        """Best archived subnet on ``target`` within ``max_latency_ms``."""
        for key in request.query_params:
            if key not in BEST_QUERY:
                raise _unprocessable(
                    ["query", key],
                    f"unknown query parameter {key!r}; allowed: {list(BEST_QUERY)}",
                    "extra_forbidden",
                )
        if not bundle.archive:
            raise HTTPException(status_code=404, detail="this bundle has no Pareto archive")
        found = bundle.best(target=target, max_latency_ms=max_latency_ms, objective=objective)
        if found is None:
            raise HTTPException(
                status_code=404,
                detail=f"no archived subnet has latency_ms@{target} <= {max_latency_ms}",
            )
        return found

    @app.get("/space")
    def space() -> dict[str, Any]:
        """Dimensions, allowed values, and the smallest and largest configs of the space."""
        from nas.space_summary import space_summary

        return space_summary(bundle.space)

    bundle_targets = frozenset(bundle.targets)  # the bundle is fixed; only devices are added

    @app.get("/health", response_model=HealthResponse)
    async def health() -> dict[str, Any]:
        """Liveness plus what the service answers.

        Answered on the event loop, as small ``/predict`` batches are, not queued behind them in
        the thread pool; the bundle's targets are found once, not in the archive per request.
        """
        added = registry.names
        return {
            "status": "ok",
            "space": bundle.space.name,
            "space_fingerprint": bundle.space_fingerprint,
            "predictors": [*bundle.names, *added],
            "targets": sorted({*bundle_targets, *(n.partition("@")[2] for n in added)}),
            "archive_size": len(bundle.archive),
        }

    return app


def _mount_docs(app: FastAPI) -> None:
    """``/docs`` and ``/redoc`` with every asset served from this process, none from a CDN."""
    assets = files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            # Swagger UI would otherwise send the spec's URL to an online validator.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )
