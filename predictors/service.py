"""HTTP query service over a :class:`~predictors.bundle.Predictors` bundle (FastAPI).

Endpoints: ``POST /predict`` (batch), ``GET /best``, ``GET /health``; OpenAPI docs at ``/docs``.
Bad input answers 422 with FastAPI's error shape (``detail[i].loc`` names the key) and never
stops the service.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool

from nas.errors import ConfigError
from predictors.bundle import Predictors
from predictors.predictor import InvalidConfigError

ConfigValue = StrictInt | StrictFloat | StrictStr
MAX_BATCH = 10_000


class PredictRequest(BaseModel):
    """Configs to predict; each maps every dimension name of the space to a value."""

    model_config = ConfigDict(extra="forbid")
    configs: list[dict[str, ConfigValue]] = Field(min_length=1)
    metrics: list[str] | None = Field(default=None, description="subset of metrics; default all")
    return_std: bool = Field(default=False, description="add '<metric>_std' for ensembles")


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


def _unprocessable(loc: list[Any], message: str, kind: str = "value_error") -> HTTPException:
    return HTTPException(status_code=422, detail=[{"loc": loc, "msg": message, "type": kind}])


def create_app(bundle: Predictors, *, max_batch: int = MAX_BATCH) -> FastAPI:
    """FastAPI app answering from ``bundle``.

    Example:
        >>> # uvicorn.run(create_app(Predictors.load("predictors/")), host="127.0.0.1", port=8000)
    """
    if max_batch < 1:
        raise ConfigError(f"max_batch={max_batch!r} must be >= 1")

    app = FastAPI(
        title="NAS predictors",
        description=(
            f"Accuracy/latency predictors for search space {bundle.space.name!r} "
            f"(fingerprint {bundle.space_fingerprint}); predictors: {list(bundle.names)}."
        ),
        version="1",
    )

    def _predict(request: PredictRequest) -> dict[str, Any]:
        if len(request.configs) > max_batch:
            raise _unprocessable(
                ["body", "configs"],
                f"configs has {len(request.configs)} items; at most {max_batch} per request",
                "too_long",
            )
        if request.metrics is not None:
            for i, metric in enumerate(request.metrics):
                if metric not in bundle.names:
                    raise _unprocessable(
                        ["body", "metrics", i],
                        f"metrics[{i}]={metric!r} is not one of {list(bundle.names)}",
                    )
        try:
            predictions = bundle.predict(
                request.configs, metrics=request.metrics, return_std=request.return_std
            )
        except InvalidConfigError as exc:
            loc: list[Any] = ["body", "configs", exc.index]
            if exc.key is not None:
                loc.append(exc.key)
            raise _unprocessable(loc, str(exc)) from exc
        metrics = list(predictions[0]) if predictions else []
        return {"metrics": metrics, "predictions": predictions}

    @app.post("/predict", response_model=PredictResponse)
    async def predict(request: PredictRequest) -> JSONResponse:
        """Predict every requested metric for a batch of configs."""
        if len(request.configs) <= 16:  # small batches answer faster without a thread hop
            return JSONResponse(_predict(request))
        return JSONResponse(await run_in_threadpool(_predict, request))

    @app.get("/best", response_model=BestResponse, responses={404: {"description": "no match"}})
    def best(
        target: Annotated[str, Query(min_length=1, description="hardware target")],
        max_latency_ms: Annotated[float, Query(gt=0, description="latency bound in ms")],
        objective: Annotated[str, Query(description="metric to maximise")] = "top1",
    ) -> dict[str, Any]:
        """Best archived subnet on ``target`` within ``max_latency_ms``."""
        if not bundle.archive:
            raise HTTPException(status_code=404, detail="this bundle has no Pareto archive")
        try:
            found = bundle.best(target=target, max_latency_ms=max_latency_ms, objective=objective)
        except ConfigError as exc:
            key = "target" if str(exc).startswith("target=") else "objective"
            raise _unprocessable(["query", key], str(exc)) from exc
        if found is None:
            raise HTTPException(
                status_code=404,
                detail=f"no archived subnet has latency_ms@{target} <= {max_latency_ms}",
            )
        return found

    @app.get("/health", response_model=HealthResponse)
    def health() -> dict[str, Any]:
        """Liveness plus what the service answers."""
        return {
            "status": "ok",
            "space": bundle.space.name,
            "space_fingerprint": bundle.space_fingerprint,
            "predictors": list(bundle.names),
            "targets": list(bundle.targets),
            "archive_size": len(bundle.archive),
        }

    return app
